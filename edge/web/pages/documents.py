"""Documents (单据): the list with filters, one document with its lines, moves and voucher, reversal after a
confirmation, and the forms that post goods receipts, transfers out, stocktakes and write-offs.

Forms are checked here first (every problem shown next to its field) and then by the API, whose refusals are put
back next to the field they name; a form carries an idempotency key, so a double submit posts once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi.responses import Response
from starlette.datastructures import FormData

from edge.web.pages.client import ApiFailure
from edge.web.pages.framework import Page, PageContext, PageRouter
from edge.web.pages.stock import item_name, offset_of, path_part, places

router = PageRouter()

LIST_PAGE = 50
MAX_DOCUMENT_ID = 2**63 - 1
NAMED_ITEMS = 50  # a document page looks up at most this many item names
# The API's limits (edge/ledger/posting.py, edge/web/schemas.py); the API checks them again.
MAX_LINES = 200  # lines a page form takes (the API takes up to 1000)
MAX_QTY = 10_000_000
MAX_PRICE_FEN = 1_000_000_000
MAX_TEXT = 500
MAX_CODE = 64
FORM_LINES = 5
MASTER_CODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")

DOC_TYPES = (
    "purchase_order",
    "receipt",
    "sale",
    "customer_return",
    "supplier_return",
    "transfer_out",
    "transfer_in",
    "stocktake",
    "write_off",
    "gift_out",
    "sample_in",
    "reversal",
    "purchase_invoice",
    "credit_note",
    "supplier_payment",
    "loss_approval",
    "transfer_settle",
)
RETURN_REASONS = ("damaged_packaging", "taste", "late_delivery", "quality", "other")
NOT_REVERSIBLE = frozenset({"reversal", "transfer_settle"})
WRITE_OFF_REASONS = (
    "expired",
    "damaged",
    "spoiled",
    "theft",
    "natural_disaster",
    "reasonable_loss",
    "count_difference",
    "other",
)


@dataclass(frozen=True, slots=True)
class FormKind:
    """One new-document form: the line columns it asks for and the smallest quantity a line may have."""

    doc_type: str
    columns: tuple[str, ...]
    min_qty: int = 1


FORMS: dict[str, FormKind] = {
    "receipt": FormKind("receipt", ("code", "qty", "unit", "price", "lot", "expiry")),
    "transfer_out": FormKind("transfer_out", ("code", "qty", "unit", "lot")),
    "stocktake": FormKind("stocktake", ("code", "qty", "lot"), min_qty=0),
    "write_off": FormKind("write_off", ("code", "qty", "unit", "lot")),
}


def not_found(page: PageContext) -> Response:
    return page.render("error.html", status=404, title_key="error.not_found.title", body_key="error.not_found.body")


def form_refusal(failure: ApiFailure) -> bool:
    """A refusal the form shows next to its fields; anything else (login, permission, the box failing) goes to
    the framework's pages. 503 (the writer is busy) is worth a retry from the same form."""
    return failure.status not in (401, 403) and (failure.status < 500 or failure.status == 503)


async def counterparties(page: PageContext) -> dict[str, str]:
    """Supplier and store id -> name, for the counterparty of a document."""
    suppliers, stores = await asyncio.gather(page.api.get("/api/v1/suppliers"), page.api.get("/api/v1/stores"))
    return {**{s["id"]: s["name"] for s in stores}, **{s["id"]: s["name"] for s in suppliers}}


def _text(value: object) -> str:
    return value.strip() if isinstance(value, str) else ""


def _day(value: str) -> date | None:
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


# --- the list ---------------------------------------------------------------------------------------------------


@router.get("/documents")
async def document_list(
    page: Page, type: str = "", since: str = "", until: str = "", q: str = "", sku: str = "", offset: str = ""
) -> Response:
    """Documents newest first, filtered by type, business date, number or counterparty, and item."""
    filters: dict[str, Any] = {
        "type": type.strip(),
        "since": since.strip(),
        "until": until.strip(),
        "q": q.strip(),
        "sku": sku.strip(),
    }
    errors: dict[str, str] = {}
    if filters["type"] and filters["type"] not in DOC_TYPES:
        errors["type"] = page.t("documents.error.choice_invalid")
    for name in ("since", "until"):
        if filters[name] and _day(filters[name]) is None:
            errors[name] = page.t("documents.error.date_invalid")
    for name in ("q", "sku"):
        if len(filters[name]) > MAX_CODE or CONTROL.search(filters[name]):
            errors[name] = page.t("documents.error.code_invalid")
    start = offset_of(offset)
    documents: list[dict[str, Any]] = []
    if errors:
        names = await counterparties(page)
    else:
        documents, names = await asyncio.gather(
            page.api.get("/api/v1/documents", limit=LIST_PAGE + 1, offset=start, **filters), counterparties(page)
        )
    query = {k: v for k, v in filters.items() if v and k not in errors}
    return page.render(
        "documents/list.html",
        status=422 if errors else 200,
        documents=documents[:LIST_PAGE],
        counterparties=names,
        more=len(documents) > LIST_PAGE,
        offset=start,
        page_size=LIST_PAGE,
        filters=filters,
        query=query,
        errors=errors,
        doc_types=DOC_TYPES,
        forms=[kind for kind in FORMS if page.can(f"documents:write:{kind}")],
    )


# --- one document ----------------------------------------------------------------------------------------------


async def _item_names(page: PageContext, skus: Sequence[str]) -> dict[str, str]:
    async def one(sku: str) -> tuple[str, str]:
        try:
            return sku, item_name(await page.api.get(f"/api/v1/items/{path_part(sku)}"), page.lang)
        except ApiFailure as failure:
            if failure.status == 404:
                return sku, sku
            raise

    wanted = list(dict.fromkeys(skus))[:NAMED_ITEMS]
    return dict(await asyncio.gather(*(one(sku) for sku in wanted)))


def _reversible(document: Mapping[str, Any]) -> bool:
    return document.get("reversed_by") is None and document.get("type") not in NOT_REVERSIBLE


async def _document(page: PageContext, document_id: int) -> dict[str, Any] | None:
    if not 1 <= document_id <= MAX_DOCUMENT_ID:
        return None
    document: dict[str, Any] = await page.api.get(f"/api/v1/documents/{document_id}")
    return document


@router.get("/documents/{document_id:int}")
async def document_detail(page: Page, document_id: int) -> Response:
    """Header, lines, stock moves and voucher (for roles that read the books); the reverse button."""
    document = await _document(page, document_id)
    if document is None:
        return not_found(page)
    names, locations, parties = await asyncio.gather(
        _item_names(page, [line["sku"] for line in document["lines"]]), places(page), counterparties(page)
    )
    return page.render(
        "documents/detail.html",
        doc=document,
        names=names,
        places=locations,
        counterparties=parties,
        can_reverse=page.can("documents:reverse") and _reversible(document),
        known_reasons=frozenset(WRITE_OFF_REASONS + RETURN_REASONS),
        show_cost=page.can("stock:valuation"),
    )


@router.get("/documents/{document_id:int}/reverse")
async def reverse_form(page: Page, document_id: int) -> Response:
    """What reversing means, the reason and a confirmation box: nothing is posted from a GET."""
    page.require("documents:reverse")
    document = await _document(page, document_id)
    if document is None:
        return not_found(page)
    return page.render("documents/reverse.html", doc=document, values={}, errors={}, open=_reversible(document))


@router.post("/documents/{document_id:int}/reverse")
async def reverse(page: Page, document_id: int) -> Response:
    """Post the reversal once the user ticked the confirmation; a refusal is shown on the same form."""
    page.require("documents:reverse")
    document = await _document(page, document_id)
    if document is None:
        return not_found(page)
    form = await page.form()
    values = {"reason_text": _text(form.get("reason_text")), "confirm": _text(form.get("confirm"))}
    errors: dict[str, str] = {}
    if values["confirm"] != "yes":
        errors["confirm"] = page.t("documents.reverse.confirm_required")
    if len(values["reason_text"]) > MAX_TEXT or "\x00" in values["reason_text"]:
        errors["reason_text"] = page.t("documents.error.text_invalid")
    if document.get("type") in NOT_REVERSIBLE:
        errors["form"] = page.t("documents.reverse.not_allowed")
    # Already reversed: the API decides. The same form sent twice (a double click) replays the first answer by its
    # idempotency key and lands on the reversal; a new attempt is refused with the API's words.
    if not errors:
        body = {"reason_text": values["reason_text"]} if values["reason_text"] else None
        try:
            posted = await page.api.post(
                f"/api/v1/documents/{document_id}/reverse", json=body, key=await page.form_key()
            )
        except ApiFailure as failure:
            if not form_refusal(failure):
                raise
            errors = {**failure.field_errors(page.lang), "form": failure.text(page.lang)}
        else:
            return page.redirect(
                f"/documents/{posted['document_id']}", flash="documents.reverse.done", arg=posted["doc_no"]
            )
    return page.render(
        "documents/reverse.html",
        status=409 if "form" in errors else 422,
        doc=document,
        values=values,
        errors=errors,
        open=_reversible(document),
    )


# --- new documents ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class ParsedForm:
    body: dict[str, Any]
    values: dict[str, str]
    errors: dict[str, str]
    rows: list[int]  # the form row of each line sent, in order (API line i+1 is form row rows[i])
    row_count: int


def _row_indices(form: FormData) -> list[int]:
    indices: set[int] = set()
    for key in form:
        match = re.fullmatch(r"lines-([0-9]{1,4})-[a-z]+", key)
        if match and int(match.group(1)) < MAX_LINES:
            indices.add(int(match.group(1)))
    return sorted(indices)


def _fen(text: str) -> int | None:
    """ "12.50" yuan -> 1250 fen; None unless a plain amount with at most two decimals."""
    if not re.fullmatch(r"[0-9]{1,10}(\.[0-9]{1,2})?", text):
        return None
    try:
        fen = int(Decimal(text) * 100)
    except InvalidOperation:
        return None
    return fen if 0 <= fen <= MAX_PRICE_FEN else None


def parse_document_form(
    page: PageContext, kind: FormKind, form: FormData, choices: Mapping[str, set[str]]
) -> ParsedForm:
    """The form as an API body, and every problem by field name (`lines-3-qty`, `reason_text`, ...)."""
    t = page.t
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    body: dict[str, Any] = {}
    for name in ("location", "counterparty", "ref_id", "to_location", "reason", "reason_text", "note"):
        values[name] = _text(form.get(name))[: MAX_TEXT + 1]
    if values["location"]:
        if values["location"] in choices["locations"]:
            body["location"] = values["location"]
        else:
            errors["location"] = t("documents.error.choice_invalid")
    if values["note"]:
        if len(values["note"]) > MAX_TEXT or "\x00" in values["note"]:
            errors["note"] = t("documents.error.text_invalid")
        else:
            body["note"] = values["note"]
    if kind.doc_type == "receipt":
        if values["counterparty"]:
            if values["counterparty"] in choices["suppliers"]:
                body["counterparty"] = values["counterparty"]
            else:
                errors["counterparty"] = t("documents.error.choice_invalid")
        if values["ref_id"]:
            if re.fullmatch(r"[0-9]{1,18}", values["ref_id"]) and int(values["ref_id"]) >= 1:
                body["ref_id"] = int(values["ref_id"])
            else:
                errors["ref_id"] = t("documents.error.id_invalid")
    if kind.doc_type == "transfer_out":
        if not values["counterparty"]:
            errors["counterparty"] = t("documents.error.store_required")
        elif values["counterparty"] in choices["stores"]:
            body["counterparty"] = values["counterparty"]
        else:
            errors["counterparty"] = t("documents.error.choice_invalid")
        if values["to_location"]:
            if MASTER_CODE.match(values["to_location"]):
                body["to_location"] = values["to_location"]
            else:
                errors["to_location"] = t("documents.error.code_invalid")
    if kind.doc_type == "write_off":
        if not values["reason"]:
            errors["reason"] = t("documents.error.reason_required")
        elif values["reason"] in WRITE_OFF_REASONS:
            body["reason"] = values["reason"]
        else:
            errors["reason"] = t("documents.error.choice_invalid")
        if values["reason_text"]:
            if len(values["reason_text"]) > MAX_TEXT or "\x00" in values["reason_text"]:
                errors["reason_text"] = t("documents.error.text_invalid")
            else:
                body["reason_text"] = values["reason_text"]
        elif values["reason"] == "other":
            errors["reason_text"] = t("documents.error.reason_text_required")
    lines: list[dict[str, Any]] = []
    rows: list[int] = []
    indices = _row_indices(form)
    for i in indices:
        cells = {c: _text(form.get(f"lines-{i}-{c}"))[: MAX_TEXT + 1] for c in kind.columns}
        for column, value in cells.items():
            values[f"lines-{i}-{column}"] = value
        if not any(cells.values()):
            continue
        line, line_errors = _parse_line(page, kind, i, cells)
        errors.update(line_errors)
        lines.append(line)
        rows.append(i)
    if not lines:
        errors["lines"] = t("documents.error.no_lines")
    body["lines"] = lines
    return ParsedForm(body, values, errors, rows, max([FORM_LINES, *(i + 2 for i in indices)]))


def _parse_line(
    page: PageContext, kind: FormKind, i: int, cells: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    t = page.t
    line: dict[str, Any] = {}
    errors: dict[str, str] = {}
    field = f"lines-{i}-"
    code = cells.get("code", "")
    if not code:
        errors[field + "code"] = t("documents.error.code_required")
    elif len(code) > MAX_CODE or CONTROL.search(code):
        errors[field + "code"] = t("documents.error.code_invalid")
    else:
        line["code"] = code
    qty = cells.get("qty", "")
    if not qty:
        errors[field + "qty"] = t("documents.error.qty_required")
    elif re.fullmatch(r"[0-9]{1,9}", qty) and kind.min_qty <= int(qty) <= MAX_QTY:
        line["qty"] = int(qty)
    else:
        errors[field + "qty"] = t("documents.error.qty_invalid", min=kind.min_qty, max=f"{MAX_QTY:,}")
    for name in ("unit", "lot"):
        value = cells.get(name, "")
        if not value:
            continue
        if len(value) > MAX_CODE or CONTROL.search(value):
            errors[field + name] = t("documents.error.code_invalid")
        else:
            line[name] = value
    price = cells.get("price", "")
    if price:
        fen = _fen(price)
        if fen is None:
            errors[field + "price"] = t("documents.error.price_invalid")
        else:
            line["price_fen"] = fen
    expiry = cells.get("expiry", "")
    if expiry:
        if _day(expiry) is None:
            errors[field + "expiry"] = t("documents.error.date_invalid")
        else:
            line["expiry"] = expiry
    return line, errors


API_LINE_FIELD = {"price_fen": "price", "code": "code", "qty": "qty", "unit": "unit", "lot": "lot", "expiry": "expiry"}


def api_errors(page: PageContext, failure: ApiFailure, parsed: ParsedForm) -> dict[str, str]:
    """The API's refusal next to the field it names: a line's field (`lines[0].qty`, or `line` 1 with `field`),
    the line of the item it names (unknown item, not enough stock), a header field, or the form as a whole."""
    message = failure.text(page.lang)
    en = page.lang == "en"
    errors: dict[str, str] = {}

    def line_field(number: int, name: str) -> str | None:
        if 0 <= number < len(parsed.rows):
            return f"lines-{parsed.rows[number]}-{API_LINE_FIELD.get(name, 'code')}"
        return None

    for problem in failure.detail.get("errors", ()):
        if not isinstance(problem, dict):
            continue
        path = str(problem.get("field", ""))
        text = str(problem.get("message_en" if en else "message", "")) or message
        match = re.fullmatch(r"lines\[([0-9]+)\](?:\.([a-z_]+))?", path)
        if match:
            key = line_field(int(match.group(1)), match.group(2) or "code")
            if key:
                errors.setdefault(key, text)
        elif path in ("location", "counterparty", "ref_id", "to_location", "reason", "reason_text", "note"):
            errors.setdefault(path, text)
    detail = failure.detail
    line_no = detail.get("line")
    if isinstance(line_no, int):
        key = line_field(line_no - 1, str(detail.get("field") or "code"))
        if key:
            errors.setdefault(key, message)
    elif isinstance(detail.get("item"), str):
        item = detail["item"]
        column = "qty" if failure.code in ("insufficient_stock", "lot_expired") else "code"
        for number, row in enumerate(parsed.rows):
            sent = parsed.body["lines"][number]
            if item in (sent.get("code"), parsed.values.get(f"lines-{row}-code")):
                errors.setdefault(f"lines-{row}-{column}", message)
                break
    elif isinstance(detail.get("field"), str) and detail["field"] in parsed.values:
        errors.setdefault(detail["field"], message)
    errors["form"] = message
    return errors


async def _nothing() -> list[Any]:
    return []


async def _choices(page: PageContext, kind: FormKind) -> dict[str, Any]:
    locations, suppliers, stores = await asyncio.gather(
        page.api.get("/api/v1/locations"),
        page.api.get("/api/v1/suppliers") if kind.doc_type == "receipt" else _nothing(),
        page.api.get("/api/v1/stores") if kind.doc_type == "transfer_out" else _nothing(),
    )
    en = page.lang == "en"
    return {
        "locations": [
            (r["code"], (r.get("name_en") if en else r.get("name")) or r["code"])
            for r in locations
            if r.get("kind") != "transit"
        ],
        "suppliers": [(r["id"], r["name"]) for r in suppliers if r.get("active", True)],
        "stores": [(r["id"], r["name"]) for r in stores if not r.get("is_local")],
    }


def _render_form(
    page: PageContext,
    kind: FormKind,
    choices: Mapping[str, Any],
    values: Mapping[str, str],
    errors: Mapping[str, str],
    rows: int,
    status: int = 200,
) -> Response:
    return page.render(
        "documents/new.html",
        status=status,
        kind=kind,
        choices=choices,
        values=values,
        errors=errors,
        rows=min(max(rows, FORM_LINES), MAX_LINES),
        max_rows=MAX_LINES,
        reasons=WRITE_OFF_REASONS,
    )


def _kind(page: PageContext, name: str) -> FormKind | None:
    kind = FORMS.get(name)
    if kind is not None:
        page.require(f"documents:write:{kind.doc_type}")
    return kind


@router.get("/documents/new/{name}")
async def new_document(page: Page, name: str, rows: str = "") -> Response:
    kind = _kind(page, name)
    if kind is None:
        return not_found(page)
    choices = await _choices(page, kind)
    wanted = offset_of(rows) or FORM_LINES
    return _render_form(page, kind, choices, {}, {}, wanted)


@router.post("/documents/new/{name}")
async def post_document(page: Page, name: str) -> Response:
    """Check the form, post it through the API, and open the posted document; or the form again with errors."""
    kind = _kind(page, name)
    if kind is None:
        return not_found(page)
    choices = await _choices(page, kind)
    codes = {key: {code for code, _ in options} for key, options in choices.items()}
    parsed = parse_document_form(page, kind, await page.form(), codes)
    if parsed.errors:
        return _render_form(page, kind, choices, parsed.values, parsed.errors, parsed.row_count, status=422)
    try:
        posted = await page.api.post(f"/api/v1/documents/{kind.doc_type}", json=parsed.body, key=await page.form_key())
    except ApiFailure as failure:
        if not form_refusal(failure):
            raise
        errors = api_errors(page, failure, parsed)
        status = 409 if failure.status == 409 else 422
        return _render_form(page, kind, choices, parsed.values, errors, parsed.row_count, status=status)
    return page.redirect(f"/documents/{posted['document_id']}", flash="documents.posted", arg=posted["doc_no"])
