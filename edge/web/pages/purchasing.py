"""Purchasing (采购): purchase orders and their approval, and the three-way-match exception queue (三单匹配异常).

Everything goes through the API: `GET /api/v1/purchase-orders` (with approval state), `POST
/api/v1/purchase-orders/{id}/approve`, `GET /api/v1/invoices/exceptions[/{id}]` and the five resolutions under
`/api/v1/invoices/exceptions/{id}/...`; the API decides who may do what (docs/three-way-match.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Path, Query
from fastapi.responses import Response

from edge.web.pages.client import ApiFailure
from edge.web.pages.framework import Page, PageContext, PageRouter

router = PageRouter()

PER_PAGE = 50
MAX_NAMED_LINES = 100
MAX_ID = 2**63 - 1
MAX_NOTE = 500
ACTIONS = ("accept", "approve", "request-credit-note", "reject", "recheck")
# Which resolutions make sense in which invoice status (the API refuses the rest with a message anyway).
OFFERED: dict[str, tuple[str, ...]] = {
    "exception": ("accept", "request-credit-note", "reject", "recheck"),
    "awaiting_credit_note": ("accept", "reject", "recheck"),
    "pending_approval": ("approve", "reject", "recheck"),
}
PERMISSION = {action: "invoices:approve" if action == "approve" else "invoices:resolve" for action in ACTIONS}
REASON_CODES = frozenset(
    {
        "short_delivery",
        "over_order",
        "price_difference",
        "tax_difference",
        "late_invoice",
        "no_po",
        "unknown_item",
        "unknown_unit",
        "unknown_supplier",
        "rate_mismatch",
        "unknown_receipt",
        "credit_for_posted_invoice",
    }
)
FILTERS = {"all": None, "pending": False, "approved": True}
PoId = Path(ge=1, le=MAX_ID)
ExceptionId = Path(ge=1, le=MAX_ID)


def reason_key(code: str) -> str:
    return f"purchasing.reason.{code if code in REASON_CODES else 'other'}"


async def _open_exceptions(page: PageContext) -> int | None:
    if not page.can("invoices:read"):
        return None
    return len(await page.api.get("/api/v1/invoices/exceptions", limit=1000))


# --- purchase orders -------------------------------------------------------------------------------------------


@router.get("/purchasing")
async def purchase_orders(
    page: Page,
    show: str = Query("all", max_length=20),
    n: int = Query(1, ge=1, le=100_000, alias="page"),
) -> Response:
    """Purchase orders, newest first, with their approval state; approve from the list where allowed."""
    show = show if show in FILTERS else "all"
    orders, open_exceptions = await asyncio.gather(
        page.api.get("/api/v1/purchase-orders", approved=FILTERS[show], limit=PER_PAGE + 1, offset=(n - 1) * PER_PAGE),
        _open_exceptions(page),
    )
    return page.render(
        "purchasing/orders.html",
        orders=orders[:PER_PAGE],
        more=len(orders) > PER_PAGE,
        n=n,
        show=show,
        filters=list(FILTERS),
        open_exceptions=open_exceptions,
    )


async def _item_names(page: PageContext, skus: list[str]) -> dict[str, str]:
    """The items' names in the page's language, for the lines of one order (a few dozen at most)."""
    distinct = list(dict.fromkeys(skus))[:MAX_NAMED_LINES]
    items = await asyncio.gather(*(page.api.get(f"/api/v1/items/{sku}") for sku in distinct), return_exceptions=True)
    names: dict[str, str] = {}
    for sku, item in zip(distinct, items, strict=True):
        if isinstance(item, dict):
            names[sku] = str((page.lang == "en" and item.get("name_en")) or item.get("name") or sku)
    return names


async def _order_context(page: PageContext, po_id: int) -> dict[str, Any]:
    order, document = await asyncio.gather(
        page.api.get(f"/api/v1/purchase-orders/{po_id}"), page.api.get(f"/api/v1/documents/{po_id}")
    )
    names = await _item_names(page, [line["sku"] for line in document.get("lines", ())])
    return {"order": order, "document": document, "names": names}


@router.get("/purchasing/{po_id:int}")
async def purchase_order(page: Page, po_id: int = PoId) -> Response:
    return page.render("purchasing/order.html", **await _order_context(page, po_id))


@router.post("/purchasing/{po_id:int}/approve")
async def approve_purchase_order(page: Page, po_id: int = PoId) -> Response:
    """Approve; a refusal (supplier frozen, papers incomplete, already approved) is shown on the order's page."""
    back = str((await page.form()).get("back") or "")
    try:
        approval = await page.api.post(f"/api/v1/purchase-orders/{po_id}/approve", key=await page.form_key())
    except ApiFailure as failure:
        if failure.status in (401, 403, 404):
            raise
        context = await _order_context(page, po_id)
        return page.render("purchasing/order.html", status=failure.status, error=failure.text(page.lang), **context)
    order = await page.api.get(f"/api/v1/purchase-orders/{approval['document_id']}")
    target = "/purchasing" if back == "list" else f"/purchasing/{po_id}"
    return page.redirect(target, flash="purchasing.approved_flash", arg=order["doc_no"])


# --- three-way-match exceptions --------------------------------------------------------------------------------


@router.get("/purchasing/exceptions")
async def exceptions(page: Page, show: str = Query("open", max_length=20)) -> Response:
    """The queue: open exceptions oldest first (or all), each with its first reason in words."""
    show = "all" if show == "all" else "open"
    rows = await page.api.get("/api/v1/invoices/exceptions", open=show == "open", limit=1000)
    return page.render("purchasing/exceptions.html", rows=rows, show=show, reason_key=reason_key)


def _offered(page: PageContext, exception: dict[str, Any]) -> list[str]:
    if not exception.get("open"):
        return []
    status = exception["invoice"]["status"]
    return [action for action in OFFERED.get(status, ()) if page.can(PERMISSION[action])]


async def _exception_page(
    page: PageContext,
    exception_id: int,
    *,
    status: int = 200,
    error: str | None = None,
    errors: dict[str, dict[str, str]] | None = None,
    notes: dict[str, str] | None = None,
) -> Response:
    exception = await page.api.get(f"/api/v1/invoices/exceptions/{exception_id}")
    return page.render(
        "purchasing/exception.html",
        status=status,
        exc=exception,
        invoice=exception["invoice"],
        actions=_offered(page, exception),
        reason_key=reason_key,
        error=error,
        errors=errors or {},
        notes=notes or {},
    )


@router.get("/purchasing/exceptions/{exception_id:int}")
async def exception_detail(page: Page, exception_id: int = ExceptionId) -> Response:
    return await _exception_page(page, exception_id)


@router.post("/purchasing/exceptions/{exception_id:int}/{action}")
async def resolve_exception(page: Page, action: str, exception_id: int = ExceptionId) -> Response:
    """One of the five resolutions with an optional note; a refusal is shown next to the form that sent it."""
    if action not in ACTIONS:
        return page.render("error.html", status=404, title_key="error.not_found.title", body_key="error.not_found.body")
    raw = (await page.form()).get("note")
    note = raw.strip() if isinstance(raw, str) else ""
    if len(note) > MAX_NOTE or "\x00" in note:
        message = page.t("purchasing.exception.note_help")
        return await _exception_page(
            page, exception_id, status=422, errors={action: {"note": message}}, notes={action: note[:MAX_NOTE]}
        )
    try:
        await page.api.post(
            f"/api/v1/invoices/exceptions/{exception_id}/{action}",
            json={"note": note} if note else None,
            key=await page.form_key(),
        )
    except ApiFailure as failure:
        if failure.status in (401, 403, 404):
            raise
        fields = failure.field_errors(page.lang)
        return await _exception_page(
            page,
            exception_id,
            status=failure.status,
            error=None if fields else failure.text(page.lang),
            errors={action: fields} if fields else None,
            notes={action: note},
        )
    return page.redirect(
        f"/purchasing/exceptions/{exception_id}", flash=f"purchasing.done.{action}", arg=str(exception_id)
    )
