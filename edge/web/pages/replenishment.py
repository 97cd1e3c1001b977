"""Replenishment pages (补货): reorder suggestions with their reasons, approving them into purchase orders one by one
or together, rejecting with a reason, and the emergency request box that reads plain Chinese and shows the parse
before anything is created. Everything goes through /api/v1/replenishment/... (docs/replenishment.md,
docs/emergency-requests.md)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi.responses import Response

from edge.web.pages.client import ApiFailure
from edge.web.pages.framework import Page, PageRouter

router = PageRouter()

API = "/api/v1/replenishment"
PAGE_SIZE = 50
MAX_ORDER_PACKS = 100_000  # the API's limit of one suggestion's quantity (purchase units)
MAX_BATCH = 500
MAX_REASON = 500
MAX_NOTE = 500
MAX_TEXT = 5000
STATES = ("open", "approved", "rejected", "superseded", "all")
CODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
EMERGENCY_MODES = ("transfer", "purchase")


# --- reading form values ----------------------------------------------------------------------------------------


def form_text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def whole_number(page: Page, text: str, low: int, high: int) -> tuple[int | None, str | None]:
    """A whole number low..high typed in a form, or the message to show next to the field."""
    if not re.fullmatch(r"[0-9]{1,12}", text):
        return None, page.t("replenishment.error.whole_number", low=low, high=high)
    value = int(text)
    if not low <= value <= high:
        return None, page.t("replenishment.error.whole_number", low=low, high=high)
    return value, None


def api_errors(page: Page, failure: ApiFailure, fields: tuple[str, ...], fallback: str) -> dict[str, str]:
    """The API's refusal as messages next to the form's fields; one that names no field of the form goes to
    `fallback` (the field it is about)."""
    errors = {k: v for k, v in failure.field_errors(page.lang).items() if k in fields}
    if not errors:
        errors[fallback] = failure.text(page.lang)
    return errors


# --- suggestions ------------------------------------------------------------------------------------------------


async def _suppliers(page: Page) -> list[dict[str, Any]]:
    if not page.can("suppliers:read"):
        return []
    rows: list[dict[str, Any]] = await page.api.get("/api/v1/suppliers")
    return rows


async def _list_page(
    page: Page,
    *,
    state: str,
    supplier: str,
    sku: str,
    offset: int,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    result: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    listing = await page.api.get(
        f"{API}/suggestions",
        state=state,
        supplier=supplier or None,
        sku=sku or None,
        limit=PAGE_SIZE,
        offset=offset,
    )
    return page.render(
        "replenishment/suggestions.html",
        status=status,
        listing=listing,
        state=state,
        states=STATES,
        supplier=supplier,
        sku=sku,
        offset=offset,
        page_size=PAGE_SIZE,
        suppliers=await _suppliers(page),
        errors=errors or {},
        values=values or {},
        result=result,
    )


def _filters(state: str | None, supplier: str | None, sku: str | None, offset: str | None) -> dict[str, Any]:
    """Query filters as the API takes them; anything else is ignored (a hand-typed URL never errors)."""
    return {
        "state": state if state in STATES else "open",
        "supplier": supplier if supplier and CODE.match(supplier) else "",
        "sku": sku if sku and CODE.match(sku) else "",
        "offset": int(offset) if offset and re.fullmatch(r"[0-9]{1,9}", offset) else 0,
    }


@router.get("/replenishment")
async def suggestions_page(
    page: Page,
    state: str | None = None,
    supplier: str | None = None,
    sku: str | None = None,
    offset: str | None = None,
) -> Response:
    """Open suggestions first by order-by date, each with its explanation; select several to approve together."""
    return await _list_page(page, **_filters(state, supplier, sku, offset))


@router.post("/replenishment/approve")
async def approve_many(page: Page) -> Response:
    """Approve the ticked suggestions, each with the quantity typed: one purchase order per supplier."""
    form = await page.form()
    errors: dict[str, str] = {}
    lines: list[dict[str, int]] = []
    seen: set[int] = set()
    for raw in form.getlist("id"):
        if not isinstance(raw, str) or not re.fullmatch(r"[0-9]{1,18}", raw) or int(raw) < 1 or int(raw) in seen:
            errors["id"] = page.t("replenishment.error.bad_selection")
            continue
        suggestion = int(raw)
        seen.add(suggestion)
        line = {"id": suggestion}
        typed = form_text(form, f"qty-{suggestion}")
        if typed:
            qty, problem = whole_number(page, typed, 1, MAX_ORDER_PACKS)
            if problem:
                errors[f"qty-{suggestion}"] = problem
            elif qty is not None:
                line["qty"] = qty
        lines.append(line)
    if not lines and "id" not in errors:
        errors["id"] = page.t("replenishment.error.none_selected")
    if len(lines) > MAX_BATCH:
        errors["id"] = page.t("replenishment.error.too_many", n=MAX_BATCH)
    note = form_text(form, "note")
    if len(note) > MAX_NOTE:
        errors["note"] = page.t("replenishment.error.too_long", n=MAX_NOTE)
    values: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str) and not k.startswith("_")}
    values["_picked"] = [v for v in form.getlist("id") if isinstance(v, str)]
    # The list as it was shown (its filters ride along in the form), to show the errors on.
    filters = _filters(*(form_text(form, k) or None for k in ("state", "supplier", "sku", "offset")))
    if errors:
        return await _list_page(page, **filters, errors=errors, values=values, status=422)
    body: dict[str, Any] = {"suggestions": lines}
    if note:
        body["note"] = note
    try:
        result = await page.api.post(f"{API}/suggestions/approve", json=body, key=await page.form_key())
    except ApiFailure as failure:
        if failure.status not in (404, 409, 422):
            raise
        errors = api_errors(page, failure, ("note",), "id")
        return await _list_page(page, **filters, errors=errors, values=values, status=failure.status)
    if result["refused"]:
        # Some suppliers refused (a freeze, papers missing): the list again, with what was made and why the rest
        # was not, in the box's words.
        return await _list_page(page, **filters, result=result)
    made = ", ".join(po["po_doc_no"] for po in result["approved"])
    return page.redirect("/replenishment", flash="replenishment.flash.po_created", arg=made)


@router.post("/replenishment/run")
async def run_plan(page: Page) -> Response:
    """Run the plan now (it also runs by itself on its schedule)."""
    await page.form()
    run = await page.api.post(f"{API}/run", json={})
    return page.redirect("/replenishment", flash="replenishment.flash.run", arg=str(run["rows"]))


async def _detail(
    page: Page,
    suggestion_id: int,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    suggestion = await page.api.get(f"{API}/suggestions/{suggestion_id}")
    return page.render(
        "replenishment/suggestion.html",
        status=status,
        s=suggestion,
        errors=errors or {},
        values=values or {},
    )


@router.get("/replenishment/{suggestion_id:int}")
async def suggestion_page(page: Page, suggestion_id: int) -> Response:
    """One suggestion: the explanation, the numbers behind it, the signals; approve (another quantity) or reject."""
    return await _detail(page, suggestion_id)


@router.post("/replenishment/{suggestion_id:int}/approve")
async def approve_one(page: Page, suggestion_id: int) -> Response:
    form = await page.form()
    errors: dict[str, str] = {}
    body: dict[str, Any] = {}
    typed = form_text(form, "qty")
    if typed:
        qty, problem = whole_number(page, typed, 1, MAX_ORDER_PACKS)
        if problem:
            errors["qty"] = problem
        body["qty"] = qty
    note = form_text(form, "note")
    if len(note) > MAX_NOTE:
        errors["note"] = page.t("replenishment.error.too_long", n=MAX_NOTE)
    elif note:
        body["note"] = note
    values = {"qty": typed, "note": note}
    if errors:
        return await _detail(page, suggestion_id, errors=errors, values=values, status=422)
    try:
        done = await page.api.post(
            f"{API}/suggestions/{suggestion_id}/approve", json=body or None, key=await page.form_key()
        )
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        errors = api_errors(page, failure, ("qty", "note"), "qty")
        return await _detail(page, suggestion_id, errors=errors, values=values, status=failure.status)
    return page.redirect(
        f"/replenishment/{suggestion_id}", flash="replenishment.flash.approved", arg=done["po_doc_no"] or ""
    )


@router.post("/replenishment/{suggestion_id:int}/reject")
async def reject_one(page: Page, suggestion_id: int) -> Response:
    form = await page.form()
    reason = form_text(form, "reason")
    problem = None
    if not reason:
        problem = page.t("replenishment.error.reason_required")
    elif len(reason) > MAX_REASON:
        problem = page.t("replenishment.error.too_long", n=MAX_REASON)
    if problem:
        return await _detail(page, suggestion_id, errors={"reason": problem}, values={"reason": reason}, status=422)
    try:
        await page.api.post(
            f"{API}/suggestions/{suggestion_id}/reject", json={"reason": reason}, key=await page.form_key()
        )
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        errors = api_errors(page, failure, ("reason",), "reason")
        return await _detail(page, suggestion_id, errors=errors, values={"reason": reason}, status=failure.status)
    return page.redirect(f"/replenishment/{suggestion_id}", flash="replenishment.flash.rejected")


# --- emergency requests -----------------------------------------------------------------------------------------


async def _emergency_page(
    page: Page,
    *,
    text: str = "",
    parsed: dict[str, Any] | None = None,
    overrides: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    history: list[dict[str, Any]] = []
    if page.can("replenishment:read"):
        history = await page.api.get(f"{API}/emergency", limit=20)
    return page.render(
        "replenishment/emergency.html",
        status=status,
        text=text,
        parsed=parsed,
        overrides=overrides or {},
        history=history,
        modes=EMERGENCY_MODES,
        errors=errors or {},
        values=values or {},
    )


@router.get("/replenishment/emergency")
async def emergency_page(page: Page) -> Response:
    """The request box: say what is needed; the parse is shown before anything is created."""
    return await _emergency_page(page)


def _overrides(page: Page, form: Any) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The corrections typed under a parse, as the API takes them; errors by field; the values as typed."""
    overrides: dict[str, Any] = {}
    errors: dict[str, str] = {}
    values: dict[str, str] = {}
    sku = form_text(form, "sku")
    values["sku"] = sku
    if sku:
        if CODE.match(sku):
            overrides["sku"] = sku
        else:
            errors["sku"] = page.t("replenishment.error.sku")
    quantity = form_text(form, "quantity")
    values["quantity"] = quantity
    if quantity:
        if re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,3})?", quantity) and float(quantity) > 0:
            number = float(quantity)
            overrides["quantity"] = int(number) if number.is_integer() else number
        else:
            errors["quantity"] = page.t("replenishment.error.quantity")
    unit = form_text(form, "unit")
    values["unit"] = unit
    if unit:
        if len(unit) <= 16:
            overrides["unit"] = unit
        else:
            errors["unit"] = page.t("replenishment.error.too_long", n=16)
    deadline = form_text(form, "deadline")
    values["deadline"] = deadline
    if deadline:
        try:
            moment = datetime.fromisoformat(deadline)
        except ValueError:
            errors["deadline"] = page.t("replenishment.error.deadline")
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=page.tz)
            overrides["deadline"] = moment.isoformat()
    mode = form_text(form, "mode")
    values["mode"] = mode
    if mode:
        if mode in EMERGENCY_MODES:
            overrides["mode"] = mode
        else:
            errors["mode"] = page.t("replenishment.error.mode")
    vehicle = form_text(form, "vehicle")
    values["vehicle"] = vehicle
    if vehicle in ("yes", "no"):
        overrides["vehicle"] = vehicle == "yes"
    elif vehicle:
        errors["vehicle"] = page.t("replenishment.error.mode")
    return overrides, errors, values


def _text(page: Page, form: Any) -> tuple[str, str | None]:
    raw = form.get("text")
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return text, page.t("replenishment.emergency.error.empty")
    if len(text) > MAX_TEXT:
        return text[:MAX_TEXT], page.t("replenishment.error.too_long", n=MAX_TEXT)
    return text, None


@router.post("/replenishment/emergency/parse")
async def emergency_parse(page: Page) -> Response:
    """Read the text (with the corrections typed under an earlier parse) and show what was understood and what
    creating would do. Writes nothing."""
    form = await page.form()
    text, problem = _text(page, form)
    if problem:
        return await _emergency_page(page, text=text, errors={"text": problem}, status=422)
    overrides, errors, values = _overrides(page, form)
    if errors:
        return await _emergency_page(page, text=text, errors=errors, values=values, status=422)
    body: dict[str, Any] = {"text": text}
    if overrides:
        body["overrides"] = overrides
    try:
        parsed = await page.api.post(f"{API}/emergency/parse", json=body)
    except ApiFailure as failure:
        if failure.status != 422:
            raise
        errors = api_errors(page, failure, ("text", "sku", "quantity", "unit", "deadline", "mode"), "text")
        return await _emergency_page(page, text=text, errors=errors, values=values, status=422)
    return await _emergency_page(page, text=text, parsed=parsed, overrides=overrides, values=values)


@router.post("/replenishment/emergency/create")
async def emergency_create(page: Page) -> Response:
    """Create what the parse shown proposed: the text and the corrections it was shown with."""
    form = await page.form()
    text, problem = _text(page, form)
    if problem:
        return await _emergency_page(page, text=text, errors={"text": problem}, status=422)
    overrides, errors, values = _overrides(page, form)
    if errors:
        return await _emergency_page(page, text=text, errors=errors, values=values, status=422)
    body: dict[str, Any] = {"text": text}
    if overrides:
        body["overrides"] = overrides
    try:
        created = await page.api.post(f"{API}/emergency", json=body, key=await page.form_key())
    except ApiFailure as failure:
        if failure.status not in (400, 409, 422):
            raise
        try:
            parsed = await page.api.post(f"{API}/emergency/parse", json=body)
        except ApiFailure:
            parsed = None
        errors = {"create": failure.text(page.lang)}
        return await _emergency_page(
            page, text=text, parsed=parsed, overrides=overrides, values=values, errors=errors, status=failure.status
        )
    if created["action"] == "transfer":
        return page.redirect(
            "/replenishment/emergency", flash="replenishment.emergency.flash.transfer", arg=str(created["transfer_id"])
        )
    return page.redirect(
        "/replenishment/emergency", flash="replenishment.emergency.flash.purchase", arg=str(created["document_id"])
    )
