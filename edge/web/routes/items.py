"""Items (商品): the master data, search by name, pinyin, SKU or barcode, sales by day, and barcode lookup."""

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from edge.ledger import queries
from edge.ledger.errors import UnknownItem
from edge.ledger.masterdata import VAT_RATES_BP, update_item
from edge.replenishment.history import daily_sales
from edge.security.users import User
from edge.web.deps import Deps, Reader, read, require
from edge.web.errors import ApiError, error_responses
from edge.web.routes.emergency import item_index
from edge.web.schemas import BarcodeLookupOut, ItemDetailOut, ItemOut, text_without_nul

router = APIRouter(prefix="/api/v1", tags=["items"], responses=error_responses(401, 403, 422, 500))


@router.get("/items", response_model=list[ItemOut], dependencies=[require("items:read")], summary="Items / 商品列表")
def list_items(
    reader: Reader,
    q: Annotated[str | None, Query(min_length=1, max_length=100, description="part of SKU, name or barcode")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    with_stock: Annotated[
        bool, Query(description="add each item's on hand over all locations (`on_hand_total`)")
    ] = False,
) -> list[dict[str, Any]]:
    """Items in SKU order; `q` matches part of the SKU, the Chinese or English name, or a barcode."""
    items = queries.list_items(reader, q=q, limit=limit, offset=offset)
    if with_stock:
        totals = queries.on_hand_totals(reader, [item["sku"] for item in items])
        items = [{**item, "on_hand_total": totals[item["sku"]]} for item in items]
    return items


class ItemFoundOut(BaseModel):
    sku: str
    name: str
    name_en: str | None
    base_unit: str
    score: float | None = Field(description="0..100 from the item index; null for a plain substring match")
    matched_by: str = Field(description="barcode, sku, name, pinyin, english, or text (part of SKU or barcode)")
    on_hand: dict[str, int] = Field(description="location -> quantity on hand in base units")
    total: int = Field(description="on hand at every location, in base units")


class ItemSearchOut(BaseModel):
    query: str
    items: list[ItemFoundOut]


def _found(conn: Any, sku: str, name: str, name_en: str | None, unit: str, score: float | None, how: str) -> Any:
    on_hand = queries.on_hand(conn, sku)
    return {
        "sku": sku,
        "name": name,
        "name_en": name_en,
        "base_unit": unit,
        "score": score,
        "matched_by": how,
        "on_hand": on_hand,
        "total": sum(on_hand.values()),
    }


@router.get(
    "/items/search",
    response_model=ItemSearchOut,
    dependencies=[require("items:read")],
    summary="Find items by name, pinyin, SKU or barcode / 商品搜索",
)
def search_items(
    request: Request,
    reader: Reader,
    q: Annotated[str, Query(min_length=1, max_length=100, description="name, pinyin (initials), SKU or barcode")],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """Best match first: the item index (Chinese name, homophones, full pinyin or initials such as `kkkl` for
    可口可乐, English name, exact SKU or barcode), then items whose SKU, name or barcode merely contains `q`.
    Active items only; the index is rebuilt when the master data changes (by its fingerprint)."""
    index = item_index(request, reader)
    items = []
    seen: set[str] = set()
    for candidate in index.search(q, limit=limit):
        item = index.items[candidate.sku]
        items.append(
            _found(
                reader,
                item.sku,
                item.name,
                item.name_en,
                item.base_unit,
                round(candidate.score, 1),
                candidate.matched_by,
            )
        )
        seen.add(item.sku)
    if len(items) < limit and q.strip():
        for row in queries.list_items(reader, q=q.strip(), limit=limit):
            if row["sku"] not in seen and row["active"] and len(items) < limit:
                items.append(_found(reader, row["sku"], row["name"], row["name_en"], row["base_unit"], None, "text"))
                seen.add(row["sku"])
    return {"query": q, "items": items}


class SalesDayOut(BaseModel):
    date: str
    qty: int = Field(description="net sales of the day in base units (sales minus customer returns)")


class ItemSalesOut(BaseModel):
    sku: str
    base_unit: str
    days: list[SalesDayOut]


@router.get(
    "/items/{sku}/sales",
    response_model=ItemSalesOut,
    dependencies=[require("stock:read")],
    responses=error_responses(404),
    summary="An item's sales by day / 商品日销量",
)
def item_sales(
    reader: Reader,
    deps: Deps,
    sku: Annotated[str, Path(min_length=1, max_length=64)],
    days: Annotated[int, Query(ge=1, le=730, description="this many business days up to today")] = 90,
) -> dict[str, Any]:
    """Net sales per business day, every location summed, imported history included; oldest first."""
    item = queries.get_item(reader, sku)
    if item is None:
        raise UnknownItem(sku)
    today = deps.today()
    return {
        "sku": sku,
        "base_unit": item["base_unit"],
        "days": daily_sales(reader, sku, today - timedelta(days=days - 1), today),
    }


@router.get(
    "/items/{sku}",
    response_model=ItemDetailOut,
    dependencies=[require("items:read")],
    responses=error_responses(404),
    summary="One item with units, barcodes and stock / 商品详情",
)
def get_item(reader: Reader, sku: Annotated[str, Path(min_length=1, max_length=64)]) -> dict[str, Any]:
    item = queries.get_item(reader, sku)
    if item is None:
        raise UnknownItem(sku)
    return item


class ItemChangeIn(BaseModel):
    """What may change on an item; documents already posted keep the rate and prices they were posted with."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[str, AfterValidator(text_without_nul)] | None = Field(None, min_length=1, max_length=200)
    name_en: Annotated[str, AfterValidator(text_without_nul)] | None = Field(None, max_length=200)
    vat_rate_bp: int | None = Field(
        None, description=f"VAT rate in basis points, one of {', '.join(map(str, VAT_RATES_BP))} (13%, 9%, 6%, 3%, 0)"
    )
    price_fen: int | None = Field(None, ge=0, le=1_000_000_000, description="selling price per base unit, VAT included")
    cost_fen: int | None = Field(None, ge=0, le=1_000_000_000, description="purchase price per base unit, VAT included")
    active: bool | None = None


@router.patch(
    "/items/{sku}",
    response_model=ItemDetailOut,
    responses=error_responses(404, 409, 413, 503),
    summary="Change an item's VAT rate, prices or names / 修改商品",
)
async def change_item(
    sku: Annotated[str, Path(min_length=1, max_length=64)],
    body: Annotated[ItemChangeIn, Body()],
    deps: Deps,
    user: Annotated[User, require("items:write")],
) -> dict[str, Any]:
    """Applies to postings from now on; each change (old and new value) is in the audit trail."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise ApiError(
            422, "validation_error", "没有要修改的字段", "nothing to change", fields=list(ItemChangeIn.model_fields)
        )
    await deps.writer.execute(update_item, sku, changes, user.username, deps.clock().isoformat())
    item = await read(deps, queries.get_item, sku)
    if item is None:
        raise UnknownItem(sku)
    return item


@router.get(
    "/barcodes/{code}",
    response_model=BarcodeLookupOut,
    dependencies=[require("items:read")],
    responses=error_responses(404),
    summary="Look up a barcode / 条码查询",
)
def lookup_barcode(reader: Reader, code: Annotated[str, Path(min_length=1, max_length=64)]) -> dict[str, Any]:
    """The item and unit of a barcode (a case barcode answers the case unit and its factor)."""
    found = queries.lookup_barcode(reader, code)
    if found is None:
        raise UnknownItem(code)
    return found
