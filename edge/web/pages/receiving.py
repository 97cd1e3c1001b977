"""Receiving pages (扫码收货): a delivery note's QR text typed by a handheld scanner (keyboard wedge) or pasted opens
a receipt draft; the goods are scanned against what the note announced; confirm posts the receipt, cancel drops
the draft. Everything goes through /api/v1/receiving/... (docs/scan-to-receive.md)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi.responses import Response
from starlette.datastructures import UploadFile as StarletteUploadFile

from edge.web.pages.client import ApiFailure
from edge.web.pages.framework import Page, PageRouter

router = PageRouter()

API = "/api/v1/receiving/drafts"
MAX_QR = 4296  # the largest alphanumeric QR code; the API's limit of a note's text
MAX_SCAN_QTY = 10_000_000
CODE = re.compile(r"^[!-~]{1,200}$")
LOT = re.compile(r"^[A-Za-z0-9._/-]{1,64}$")
LOCATION = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
# Refusals of a draft action that the user can act on; anything else is the framework's error page.
ACTION_REFUSALS = (403, 404, 409, 422)


def form_text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def action_message(page: Page, answer: dict[str, Any]) -> str:
    """The ack's message in the page's language."""
    return str(answer["message_en"] if page.lang == "en" else answer["message"])


def refusal(failure: ApiFailure) -> bool:
    """A refusal the user can act on at the form (a note refused, a scan refused, a closed draft); a permission
    refusal or anything else is the framework's error page."""
    return failure.status in ACTION_REFUSALS and failure.code != "permission_denied"


# --- the start: scan or paste a delivery note --------------------------------------------------------------------


async def _nothing() -> list[dict[str, Any]]:
    return []


async def _start_page(
    page: Page,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    drafts, done, locations = await asyncio.gather(
        page.api.get(API, state="open", limit=50),
        page.api.get(API, limit=20),
        page.api.get("/api/v1/locations") if page.can("locations:read") else _nothing(),
    )
    return page.render(
        "receiving/start.html",
        status=status,
        drafts=drafts,
        recent=[d for d in done if d["state"] != "open"],
        locations=[loc for loc in locations if loc.get("kind") != "transit"],
        errors=errors or {},
        values=values or {},
    )


@router.get("/receiving")
async def start_page(page: Page) -> Response:
    """The QR field (a scanner types into it and presses Enter), open drafts and recent receipts."""
    return await _start_page(page)


@router.post("/receiving/open")
async def open_draft(page: Page) -> Response:
    form = await page.form()
    raw = form.get("qr")
    # A scanner's text is taken as typed, spaces included (they are part of the base45 text); only the line end a
    # scanner or a paste adds is dropped.
    qr = raw.strip("\r\n") if isinstance(raw, str) else ""
    location = form_text(form, "location")
    values = {"qr": qr, "location": location}
    errors: dict[str, str] = {}
    if not qr.strip():
        errors["qr"] = page.t("receiving.error.qr_empty")
    elif len(qr) > MAX_QR:
        errors["qr"] = page.t("receiving.error.qr_too_long", n=MAX_QR)
    if location and not LOCATION.match(location):
        errors["location"] = page.t("receiving.error.location")
    if errors:
        return await _start_page(page, errors=errors, values=values, status=422)
    body: dict[str, Any] = {"qr": qr}
    if location:
        body["location"] = location
    try:
        opened = await page.api.post(API, json=body, key=await page.form_key())
    except ApiFailure as failure:
        if not refusal(failure):
            raise
        field = "location" if "location" in failure.field_errors(page.lang) else "qr"
        return await _start_page(page, errors={field: failure.text(page.lang)}, values=values, status=failure.status)
    detail = opened["detail"]
    flash = "receiving.flash.resumed" if detail.get("resumed") else "receiving.flash.opened"
    return page.redirect(f"/receiving/{detail['draft']}", flash=flash, arg=str(detail.get("po_no", "")))


@router.post("/receiving/photo")
async def open_draft_from_photo(page: Page) -> Response:
    """A photo of the note from a phone's camera: the API reads its QR code and opens the draft as above."""
    form = await page.form()
    photo = form.get("photo")
    location = form_text(form, "location")
    values = {"location": location}
    data = await photo.read() if isinstance(photo, StarletteUploadFile) else b""
    if not data:
        return await _start_page(
            page, errors={"photo": page.t("receiving.error.photo_empty")}, values=values, status=422
        )
    if location and not LOCATION.match(location):
        return await _start_page(
            page, errors={"location": page.t("receiving.error.location")}, values=values, status=422
        )
    assert isinstance(photo, StarletteUploadFile)
    files = {"photo": (photo.filename or "photo.jpg", data, photo.content_type or "application/octet-stream")}
    try:
        opened = await page.api.post(
            f"{API}/photo", files=files, data={"location": location} if location else None, key=await page.form_key()
        )
    except ApiFailure as failure:
        if not refusal(failure):
            raise
        field = "location" if "location" in failure.field_errors(page.lang) else "photo"
        return await _start_page(page, errors={field: failure.text(page.lang)}, values=values, status=failure.status)
    detail = opened["detail"]
    flash = "receiving.flash.resumed" if detail.get("resumed") else "receiving.flash.opened"
    return page.redirect(f"/receiving/{detail['draft']}", flash=flash, arg=str(detail.get("po_no", "")))


# --- one draft ----------------------------------------------------------------------------------------------------


async def _units(page: Page, skus: set[str]) -> dict[str, dict[str, Any]]:
    """Name and base unit of each item on the draft, for quantities in words."""
    if not page.can("items:read"):
        return {}
    ordered = sorted(skus)
    answers = await asyncio.gather(*(page.api.get(f"/api/v1/items/{sku}") for sku in ordered), return_exceptions=True)
    items: dict[str, dict[str, Any]] = {}
    for sku, answer in zip(ordered, answers, strict=True):
        if isinstance(answer, dict):
            items[sku] = answer
        elif not (isinstance(answer, ApiFailure) and answer.status == 404):  # an item gone: shown by its SKU
            raise answer
    return items


def compare(draft: dict[str, Any]) -> list[dict[str, Any]]:
    """Expected against scanned, per item (base units): one row per item announced, then the items scanned that
    the note does not name."""
    scanned: dict[str, int] = {}
    for row in draft["scanned"]:
        scanned[row["sku"]] = scanned.get(row["sku"], 0) + int(row["qty_base"])
    rows: list[dict[str, Any]] = []
    by_sku: dict[str, dict[str, Any]] = {}
    for line in draft["expected"]:
        row = by_sku.get(line["sku"])
        if row is None:
            row = {"sku": line["sku"], "name": line["name"], "lines": [], "expected": 0, "on_po": True}
            by_sku[line["sku"]] = row
            rows.append(row)
        row["lines"].append(line)
        row["expected"] += int(line["qty_base"])
        row["on_po"] = row["on_po"] and bool(line["on_po"])
    for row in rows:
        row["scanned"] = scanned.pop(row["sku"], 0)
        row["status"] = (
            "done" if row["scanned"] == row["expected"] else ("over" if row["scanned"] > row["expected"] else "short")
        )
    for sku, qty in scanned.items():
        rows.append(
            {
                "sku": sku,
                "name": None,
                "lines": [],
                "expected": 0,
                "on_po": None,
                "scanned": qty,
                "status": "not_on_note",
            }
        )
    return rows


async def _draft_page(
    page: Page,
    draft_id: int,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    last: dict[str, Any] | None = None,
    status: int = 200,
) -> Response:
    draft = await page.api.get(f"{API}/{draft_id}")
    rows = compare(draft)
    items = await _units(page, {r["sku"] for r in rows})
    return page.render(
        "receiving/draft.html",
        status=status,
        draft=draft,
        rows=rows,
        items=items,
        last=last,
        last_message=action_message(page, last) if last else None,
        errors=errors or {},
        values=values or {},
    )


@router.get("/receiving/{draft_id:int}")
async def draft_page(page: Page, draft_id: int) -> Response:
    """Expected against scanned; the scan field; confirm or cancel. A confirmed draft shows what was received and
    what differed."""
    return await _draft_page(page, draft_id)


@router.post("/receiving/{draft_id:int}/scan")
async def scan(page: Page, draft_id: int) -> Response:
    form = await page.form()
    code, qty_text, lot, expiry = (form_text(form, k) for k in ("code", "qty", "lot", "expiry"))
    values = {"code": code, "qty": qty_text, "lot": lot, "expiry": expiry}
    errors: dict[str, str] = {}
    body: dict[str, Any] = {"code": code}
    if not code:
        errors["code"] = page.t("receiving.error.code_empty")
    elif not CODE.match(code):
        errors["code"] = page.t("receiving.error.code")
    if qty_text:
        if re.fullmatch(r"-?[0-9]{1,9}", qty_text) and int(qty_text) != 0 and abs(int(qty_text)) <= MAX_SCAN_QTY:
            body["qty"] = int(qty_text)
        else:
            errors["qty"] = page.t("receiving.error.qty", n=MAX_SCAN_QTY)
    if lot:
        if LOT.match(lot):
            body["lot"] = lot
        else:
            errors["lot"] = page.t("receiving.error.lot")
    if expiry:
        if DATE.match(expiry):
            body["expiry"] = expiry
        else:
            errors["expiry"] = page.t("receiving.error.expiry")
    if errors:
        return await _draft_page(page, draft_id, errors=errors, values=values, status=422)
    try:
        answer = await page.api.post(f"{API}/{draft_id}/scans", json=body, key=await page.form_key())
    except ApiFailure as failure:
        if not refusal(failure):
            raise
        found = {k: v for k, v in failure.field_errors(page.lang).items() if k in values}
        return await _draft_page(
            page, draft_id, errors=found or {"code": failure.text(page.lang)}, values=values, status=failure.status
        )
    # The scan's answer is shown on the page at once (no redirect: the message is the box's, in words). Sending
    # the form again replays the same Idempotency-Key: the scan counts once.
    return await _draft_page(page, draft_id, last=answer)


@router.post("/receiving/{draft_id:int}/confirm")
async def confirm(page: Page, draft_id: int) -> Response:
    form = await page.form()
    as_announced = form_text(form, "as_announced") in ("1", "on", "yes", "true")
    try:
        answer = await page.api.post(
            f"{API}/{draft_id}/confirm", json={"as_announced": as_announced}, key=await page.form_key()
        )
    except ApiFailure as failure:
        if not refusal(failure):
            raise
        return await _draft_page(page, draft_id, errors={"confirm": failure.text(page.lang)}, status=failure.status)
    receipt = answer["detail"].get("receipt") or {}
    return page.redirect(f"/receiving/{draft_id}", flash="receiving.flash.received", arg=str(receipt.get("doc_no", "")))


@router.post("/receiving/{draft_id:int}/cancel")
async def cancel(page: Page, draft_id: int) -> Response:
    await page.form()
    try:
        await page.api.post(f"{API}/{draft_id}/cancel", key=await page.form_key())
    except ApiFailure as failure:
        if not refusal(failure):
            raise
        return await _draft_page(page, draft_id, errors={"cancel": failure.text(page.lang)}, status=failure.status)
    return page.redirect("/receiving", flash="receiving.flash.cancelled", arg=str(draft_id))
