"""Supplier pages (供应商与资质档案): the suppliers, each one's papers with upload and the OCR reading side by side
with the image to confirm or reject, and the compliance desk: expiry warnings, payment freezes, review tickets
and bank account changes. Everything goes through the API (docs/suppliers.md)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi.responses import Response
from starlette.exceptions import HTTPException

from edge.web.pages.client import ApiFailure
from edge.web.pages.framework import Page, PageRouter

router = PageRouter()

SUPPLIER_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
PAPER_KINDS = ("business_licence", "bank_account", "general_taxpayer", "food_licence")
PAPER_FIELDS = (
    "name",
    "credit_code",
    "address",
    "legal_rep",
    "valid_from",
    "valid_to",
    "established",
    "bank_name",
    "bank_account",
    "licence_no",
)
DATE_FIELDS = ("valid_from", "valid_to", "established")
MAX_UPLOAD = 100 * 1024 * 1024  # the most the box's setting allows; the API applies the box's own limit
MAX_TEXT = 500
MAX_STATUS_CALLS = 200  # suppliers whose status the list fetches one by one
# Codes of refusals that are about one field of a form, when the error itself names none.
CODE_FIELDS = {"invalid_credit_code": "credit_code"}


def form_text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def api_errors(page: Page, failure: ApiFailure, fields: tuple[str, ...], fallback: str) -> dict[str, str]:
    """The API's refusal next to the field it is about (`fallback` when it names none of the form's)."""
    errors = {k: v for k, v in failure.field_errors(page.lang).items() if k in fields}
    missing = failure.detail.get("missing")
    if isinstance(missing, list):  # a paper lacking fields its kind needs: each one is marked
        for name in missing:
            if name in fields:
                errors.setdefault(name, page.t("suppliers.error.required"))
    named = CODE_FIELDS.get(failure.code)
    if named in fields and named not in errors:
        errors[named] = failure.text(page.lang)
    if not errors:
        errors[fallback] = failure.text(page.lang)
    return errors


def reason_problem(page: Page, text: str) -> str | None:
    if not text:
        return page.t("suppliers.error.required")
    if len(text) > MAX_TEXT:
        return page.t("suppliers.error.too_long", n=MAX_TEXT)
    return None


# --- the list ---------------------------------------------------------------------------------------------------


async def _standings(page: Page, suppliers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each supplier's qualification status (complete, frozen, payable, problems in words), for a store's few
    dozen suppliers; none for a reader without `compliance:read`."""
    states: dict[str, dict[str, Any]] = {}
    if not page.can("compliance:read") or len(suppliers) > MAX_STATUS_CALLS:
        return states
    answers = await asyncio.gather(
        *(page.api.get(f"/api/v1/suppliers/{s['id']}/compliance") for s in suppliers), return_exceptions=True
    )
    for supplier, answer in zip(suppliers, answers, strict=True):
        if isinstance(answer, dict):
            states[supplier["id"]] = answer
        elif isinstance(answer, BaseException) and not isinstance(answer, ApiFailure):
            raise answer
    return states


async def _list_page(
    page: Page, *, errors: dict[str, str] | None = None, values: dict[str, str] | None = None, status: int = 200
) -> Response:
    suppliers: list[dict[str, Any]] = await page.api.get("/api/v1/suppliers")
    states = await _standings(page, suppliers)
    return page.render(
        "suppliers/list.html",
        status=status,
        suppliers=suppliers,
        states=states,
        errors=errors or {},
        values=values or {},
    )


@router.get("/suppliers")
async def suppliers_page(page: Page) -> Response:
    """Every supplier with its standing: papers complete, frozen, payable."""
    return await _list_page(page)


@router.post("/suppliers")
async def create_supplier(page: Page) -> Response:
    form = await page.form()
    names = ("id", "name", "credit_code", "contact", "phone", "registered_address")
    values = {k: form_text(form, k) for k in names}
    food = form_text(form, "food_supplier") in ("1", "on", "yes", "true")
    values["food_supplier"] = "1" if food else ""
    errors: dict[str, str] = {}
    if not SUPPLIER_ID.match(values["id"]):
        errors["id"] = page.t("suppliers.error.id")
    if not values["name"]:
        errors["name"] = page.t("suppliers.error.required")
    limits = {"name": 200, "credit_code": 40, "contact": 100, "phone": 50, "registered_address": 500}
    for key, limit in limits.items():
        if len(values[key]) > limit:
            errors[key] = page.t("suppliers.error.too_long", n=limit)
    if errors:
        return await _list_page(page, errors=errors, values=values, status=422)
    body: dict[str, Any] = {k: (values[k] or None) for k in names}
    body["food_supplier"] = food
    try:
        await page.api.post("/api/v1/suppliers", json=body, key=form_text(form, "_idem") or None)
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        errors = api_errors(page, failure, names, "id")
        return await _list_page(page, errors=errors, values=values, status=failure.status)
    return page.redirect(f"/suppliers/{values['id']}", flash="suppliers.flash.created", arg=values["id"])


# --- one supplier -------------------------------------------------------------------------------------------------


async def _supplier_page(
    page: Page,
    supplier_id: str,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    supplier, standing, papers = await asyncio.gather(
        page.api.get(f"/api/v1/suppliers/{supplier_id}"),
        page.api.get(f"/api/v1/suppliers/{supplier_id}/compliance"),
        page.api.get(f"/api/v1/suppliers/{supplier_id}/papers"),
    )
    keys: list[dict[str, Any]] = []
    if page.can("suppliers:read"):
        keys = await page.api.get(f"/api/v1/suppliers/{supplier_id}/signing-keys")
    return page.render(
        "suppliers/supplier.html",
        status=status,
        supplier=supplier,
        standing=standing,
        papers=sorted(papers, key=lambda p: -int(p["id"])),
        keys=keys,
        kinds=PAPER_KINDS,
        errors=errors or {},
        values=values or {},
    )


def _checked_id(supplier_id: str) -> str:
    """A supplier id from the URL as the API takes it; anything else is simply not found."""
    if not SUPPLIER_ID.match(supplier_id):
        raise HTTPException(404)
    return supplier_id


@router.get("/suppliers/{supplier_id}")
async def supplier_page(page: Page, supplier_id: str) -> Response:
    """The supplier, its standing, its papers (newest first) and the upload form."""
    return await _supplier_page(page, _checked_id(supplier_id))


@router.post("/suppliers/{supplier_id}/papers")
async def upload_paper(page: Page, supplier_id: str) -> Response:
    """Upload a paper: the box reads it by OCR; then the reading is reviewed side by side with the image."""
    supplier_id = _checked_id(supplier_id)
    form = await page.form()
    kind = form_text(form, "kind")
    upload = form.get("file")
    errors: dict[str, str] = {}
    if kind not in PAPER_KINDS:
        errors["kind"] = page.t("suppliers.error.kind")
    data = b""
    filename = "paper"
    if upload is None or isinstance(upload, str) or not hasattr(upload, "read"):
        errors["file"] = page.t("suppliers.error.file_missing")
    else:
        data = await upload.read(MAX_UPLOAD + 1)
        filename = (getattr(upload, "filename", None) or "paper")[:200]
        if not data:
            errors["file"] = page.t("suppliers.error.file_missing")
    values = {"kind": kind}
    if errors:
        return await _supplier_page(page, supplier_id, errors=errors, values=values, status=422)
    try:
        paper = await page.api.post(
            f"/api/v1/suppliers/{supplier_id}/papers",
            data={"kind": kind},
            files={"file": (filename, data, "application/octet-stream")},
            key=form_text(form, "_idem") or None,
        )
    except ApiFailure as failure:
        if failure.status not in (409, 413, 415, 422):
            raise
        errors = api_errors(page, failure, ("kind",), "file")
        return await _supplier_page(page, supplier_id, errors=errors, values=values, status=failure.status)
    return page.redirect(
        f"/suppliers/{supplier_id}/papers/{paper['id']}", flash="suppliers.flash.uploaded", arg=str(paper["id"])
    )


@router.post("/suppliers/{supplier_id}/signing-keys")
async def add_signing_key(page: Page, supplier_id: str) -> Response:
    """Register the public key the supplier signs its delivery notes with (docs/scan-to-receive.md)."""
    supplier_id = _checked_id(supplier_id)
    form = await page.form()
    public_key = form_text(form, "public_key")
    replace = form_text(form, "replace") in ("1", "on", "yes", "true")
    values = {"public_key": public_key, "replace": "1" if replace else ""}
    problem = None
    if not public_key:
        problem = page.t("suppliers.error.required")
    elif len(public_key) > 1000:
        problem = page.t("suppliers.error.too_long", n=1000)
    if problem:
        return await _supplier_page(page, supplier_id, errors={"public_key": problem}, values=values, status=422)
    try:
        key = await page.api.post(
            f"/api/v1/suppliers/{supplier_id}/signing-keys", json={"public_key": public_key, "replace": replace}
        )
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        errors = api_errors(page, failure, ("public_key",), "public_key")
        return await _supplier_page(page, supplier_id, errors=errors, values=values, status=failure.status)
    return page.redirect(f"/suppliers/{supplier_id}", flash="suppliers.flash.key_added", arg=str(key["key_id"]))


# --- one paper: the reading beside the image --------------------------------------------------------------------


async def _paper(page: Page, supplier_id: str, paper_id: int) -> dict[str, Any]:
    paper: dict[str, Any] = await page.api.get(f"/api/v1/papers/{paper_id}")
    if paper["supplier"] != supplier_id:
        raise HTTPException(404)
    return paper


async def _paper_page(
    page: Page,
    supplier_id: str,
    paper_id: int,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    supplier_id = _checked_id(supplier_id)
    paper = await _paper(page, supplier_id, paper_id)
    ocr = await page.api.get(f"/api/v1/papers/{paper_id}/ocr")
    shown = paper["fields"] if paper["fields"] is not None else paper["proposed"]["fields"]
    notes: dict[str, list[str]] = {}
    for note in paper["proposed"]["notes"]:
        notes.setdefault(note["field"], []).append(note["message_en"] if page.lang == "en" else note["message"])
    if values is None:
        values = {k: ("" if shown.get(k) is None else str(shown[k])) for k in PAPER_FIELDS}
        values["long_term"] = "1" if shown.get("long_term") else ""
    return page.render(
        "suppliers/paper.html",
        status=status,
        supplier_id=supplier_id,
        paper=paper,
        ocr=ocr,
        notes=notes,
        field_names=PAPER_FIELDS,
        date_fields=DATE_FIELDS,
        errors=errors or {},
        values=values,
    )


@router.get("/suppliers/{supplier_id}/papers/{paper_id:int}")
async def paper_page(page: Page, supplier_id: str, paper_id: int) -> Response:
    """The paper's image beside the fields OCR read, with what to check; confirm (corrected) or reject."""
    return await _paper_page(page, supplier_id, paper_id)


@router.get("/suppliers/{supplier_id}/papers/{paper_id:int}/file")
async def paper_file(page: Page, supplier_id: str, paper_id: int) -> Response:
    """The uploaded file itself, for the image beside the reading (the API needs the user's token, the browser
    has the page's session)."""
    await _paper(page, _checked_id(supplier_id), paper_id)
    answer = await page.api.get(f"/api/v1/papers/{paper_id}/file", raw=True)
    return Response(
        answer.content,
        media_type=answer.headers.get("content-type", "application/octet-stream"),
        headers={
            "Content-Disposition": answer.headers.get("content-disposition", "inline"),
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/suppliers/{supplier_id}/papers/{paper_id:int}/confirm")
async def confirm_paper(page: Page, supplier_id: str, paper_id: int) -> Response:
    form = await page.form()
    values = {k: form_text(form, k) for k in PAPER_FIELDS}
    long_term = form_text(form, "long_term") in ("1", "on", "yes", "true")
    values["long_term"] = "1" if long_term else ""
    errors: dict[str, str] = {}
    for key in PAPER_FIELDS:
        limit = 40 if key in DATE_FIELDS else MAX_TEXT
        if len(values[key]) > limit:
            errors[key] = page.t("suppliers.error.too_long", n=limit)
    if errors:
        return await _paper_page(page, supplier_id, paper_id, errors=errors, values=values, status=422)
    fields: dict[str, Any] = {k: (values[k] or None) for k in PAPER_FIELDS}
    fields["long_term"] = long_term
    try:
        result = await page.api.post(f"/api/v1/papers/{paper_id}/confirm", json={"fields": fields})
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        errors = api_errors(page, failure, PAPER_FIELDS, "confirm")
        return await _paper_page(page, supplier_id, paper_id, errors=errors, values=values, status=failure.status)
    target = f"/suppliers/{supplier_id}/papers/{paper_id}"
    if result.get("freeze"):
        return page.redirect(target, flash="suppliers.flash.confirm_froze", arg=str(result["freeze"]))
    if result.get("bank_change"):
        return page.redirect(target, flash="suppliers.flash.confirm_bank_change", arg=str(result["bank_change"]))
    return page.redirect(target, flash="suppliers.flash.confirmed", arg=str(paper_id))


@router.post("/suppliers/{supplier_id}/papers/{paper_id:int}/reject")
async def reject_paper(page: Page, supplier_id: str, paper_id: int) -> Response:
    form = await page.form()
    reason = form_text(form, "reason")
    problem = reason_problem(page, reason)
    if problem:
        return await _paper_page(page, supplier_id, paper_id, errors={"reason": problem}, status=422)
    await _paper(page, _checked_id(supplier_id), paper_id)
    try:
        await page.api.post(f"/api/v1/papers/{paper_id}/reject", json={"reason": reason})
    except ApiFailure as failure:
        if failure.status not in (409, 422):
            raise
        errors = api_errors(page, failure, ("reason",), "reason")
        return await _paper_page(page, supplier_id, paper_id, errors=errors, status=failure.status)
    return page.redirect(f"/suppliers/{supplier_id}/papers/{paper_id}", flash="suppliers.flash.rejected")


# --- the compliance desk ----------------------------------------------------------------------------------------


async def _compliance_page(
    page: Page,
    *,
    errors: dict[str, dict[str, str]] | None = None,
    values: dict[str, dict[str, str]] | None = None,
    status: int = 200,
) -> Response:
    alerts, freezes, tickets, changes, suppliers = await asyncio.gather(
        page.api.get("/api/v1/compliance/alerts", limit=200),
        page.api.get("/api/v1/freezes", open="true"),
        page.api.get("/api/v1/review-tickets", state="open"),
        page.api.get("/api/v1/bank-account-changes", state="pending"),
        page.api.get("/api/v1/suppliers"),
    )
    states = await _standings(page, [s for s in suppliers if s.get("active", True)])
    unpayable = [(s, states[s["id"]]) for s in suppliers if s["id"] in states and not states[s["id"]]["payable"]]
    listed = {f"freeze-{f['id']}" for f in freezes} | {f"ticket-{t['id']}" for t in tickets}
    listed |= {f"change-{c['id']}" for c in changes}
    # A refusal about a record no longer listed (decided meanwhile) is said at the top of the page.
    elsewhere = [
        message for form_id, found in (errors or {}).items() if form_id not in listed for message in found.values()
    ]
    return page.render(
        "suppliers/compliance.html",
        status=status,
        elsewhere=elsewhere,
        unpayable=unpayable,
        alerts=alerts,
        freezes=freezes,
        tickets=tickets,
        changes=changes,
        errors=errors or {},
        values=values or {},
    )


@router.get("/compliance")
async def compliance_page(page: Page) -> Response:
    """Papers about to expire or expired, open payment freezes, open review tickets, pending bank changes."""
    return await _compliance_page(page)


async def _decide(
    page: Page,
    form_id: str,
    path: str,
    body: dict[str, Any],
    field: str,
    values: dict[str, str],
    flash: str,
    record: int,
) -> Response:
    """Post a reviewer's decision; a refusal shows next to the decided record's own form."""
    try:
        await page.api.post(path, json=body)
    except ApiFailure as failure:
        if failure.status not in (404, 409, 422):
            raise
        errors = {form_id: api_errors(page, failure, (field,), field)}
        return await _compliance_page(page, errors=errors, values={form_id: values}, status=failure.status)
    return page.redirect("/compliance", flash=flash, arg=str(record))


@router.post("/compliance/tickets/{ticket_id:int}/resolve")
async def resolve_ticket(page: Page, ticket_id: int) -> Response:
    form = await page.form()
    resolution = form_text(form, "resolution")
    accept = form_text(form, "accept_licence_address") in ("1", "on", "yes", "true")
    form_id = f"ticket-{ticket_id}"
    values = {"resolution": resolution, "accept_licence_address": "1" if accept else ""}
    problem = reason_problem(page, resolution)
    if problem:
        return await _compliance_page(
            page, errors={form_id: {"resolution": problem}}, values={form_id: values}, status=422
        )
    body = {"resolution": resolution, "accept_licence_address": accept}
    path = f"/api/v1/review-tickets/{ticket_id}/resolve"
    flash = "suppliers.flash.ticket_resolved"
    return await _decide(page, form_id, path, body, "resolution", values, flash, ticket_id)


@router.post("/compliance/freezes/{freeze_id:int}/lift")
async def lift_freeze(page: Page, freeze_id: int) -> Response:
    form = await page.form()
    reason = form_text(form, "reason")
    form_id = f"freeze-{freeze_id}"
    values = {"reason": reason}
    problem = reason_problem(page, reason)
    if problem:
        return await _compliance_page(page, errors={form_id: {"reason": problem}}, values={form_id: values}, status=422)
    path = f"/api/v1/freezes/{freeze_id}/lift"
    flash = "suppliers.flash.freeze_lifted"
    return await _decide(page, form_id, path, {"reason": reason}, "reason", values, flash, freeze_id)


@router.post("/compliance/bank-changes/{change_id:int}/{decision}")
async def decide_bank_change(page: Page, change_id: int, decision: str) -> Response:
    if decision not in ("approve", "reject"):
        raise HTTPException(404)
    form = await page.form()
    note = form_text(form, "note")
    form_id = f"change-{change_id}"
    values = {"note": note}
    problem = reason_problem(page, note) if decision == "reject" or len(note) > MAX_TEXT else None
    if problem:
        return await _compliance_page(page, errors={form_id: {"note": problem}}, values={form_id: values}, status=422)
    flash = "suppliers.flash.bank_change_approved" if decision == "approve" else "suppliers.flash.bank_change_rejected"
    body = {"note": note or None} if decision == "approve" else {"note": note}
    path = f"/api/v1/bank-account-changes/{change_id}/{decision}"
    field = "note" if decision == "reject" else "approve"
    return await _decide(page, form_id, path, body, field, values, flash, change_id)
