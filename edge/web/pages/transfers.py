"""Cross-store transfers (门店调拨): for an item, the other stores' stock, last outbound and remaining shelf life
(live from the aggregator, else the last snapshot); transfers coming in and going out; receiving one that came in."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from fastapi.responses import Response

from edge.web.pages.client import ApiFailure
from edge.web.pages.documents import CONTROL, MAX_TEXT, form_refusal, not_found
from edge.web.pages.framework import Page, PageContext, PageRouter
from edge.web.pages.stock import item_name, path_part

router = PageRouter()

MAX_COUNT = 10_000_000
MAX_TRANSFER_ID = 2**62
MAX_QUERY = 100


async def _item(page: PageContext, text: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The item `text` names exactly (SKU or barcode), or the candidates a search finds."""
    try:
        return await page.api.get(f"/api/v1/items/{path_part(text)}"), []
    except ApiFailure as failure:
        if failure.status not in (404, 422):
            raise
    found = (await page.api.get("/api/v1/items/search", q=text, limit=10))["items"]
    if len(found) == 1 or (found and found[0]["matched_by"] in ("sku", "barcode")):
        return await page.api.get(f"/api/v1/items/{path_part(found[0]['sku'])}"), []
    return None, found


async def _sources(page: PageContext, sku: str) -> dict[str, Any]:
    """Live from the aggregator; when it cannot answer, the last snapshot (peer_stock) with the reason."""
    try:
        live = await page.api.get("/api/v1/transfers/sources", sku=sku)
        return {"rows": live["sources"], "as_of": live.get("as_of"), "live": True, "problem": None}
    except ApiFailure as failure:
        if failure.status in (401, 403):
            raise
        problem = failure.text(page.lang)
    rows: list[dict[str, Any]] = []
    if page.can("replenishment:read"):
        snapshot = await page.api.get("/api/v1/replenishment/peer-stock", sku=sku, limit=1000)
        rows = sorted(snapshot, key=lambda r: (r["qty"] <= 0, -(r.get("min_shelf_life_days") or 0), r["store"]))
        rows = [{**r, "rank": i, "usable": None} for i, r in enumerate(rows, start=1)]
    return {"rows": rows, "as_of": None, "live": False, "problem": problem}


async def _transfers(page: PageContext, direction: str) -> tuple[list[dict[str, Any]], str | None]:
    try:
        answer = await page.api.get(f"/api/v1/transfers/{direction}")
    except ApiFailure as failure:
        if failure.status in (401, 403):
            raise
        return [], failure.text(page.lang)
    return answer["transfers"], None


async def _store_names(page: PageContext) -> dict[str, str]:
    return {s["id"]: s["name"] for s in await page.api.get("/api/v1/stores")}


@router.get("/transfers")
async def transfers(page: Page, sku: str = "") -> Response:
    """The item look-up with the other stores' stock, then incoming and outgoing transfers."""
    text = sku.strip()
    errors: dict[str, str] = {}
    item: dict[str, Any] | None = None
    candidates: list[dict[str, Any]] = []
    sources: dict[str, Any] | None = None
    if len(text) > MAX_QUERY or CONTROL.search(text):
        errors["sku"] = page.t("transfers.error.query_invalid")
    elif text:
        item, candidates = await _item(page, text)
        if item is not None:
            sources = await _sources(page, item["sku"])
    (incoming, incoming_problem), (outgoing, outgoing_problem), stores = await asyncio.gather(
        _transfers(page, "incoming"), _transfers(page, "outgoing"), _store_names(page)
    )
    return page.render(
        "transfers/index.html",
        status=422 if errors else 200,
        sku=text if not errors else sku,
        errors=errors,
        item=item,
        name=item_name(item, page.lang) if item else "",
        candidates=candidates,
        sources=sources,
        incoming=incoming,
        outgoing=outgoing,
        problem=incoming_problem or outgoing_problem,
        stores=stores,
        item_name=item_name,
    )


# --- receiving an incoming transfer ----------------------------------------------------------------------------


async def _incoming(page: PageContext, transfer_id: int) -> dict[str, Any] | None:
    if not 1 <= transfer_id <= MAX_TRANSFER_ID:
        return None
    listed, _ = await _transfers(page, "incoming")
    return next((t for t in listed if t["id"] == transfer_id), None)


async def _receive_page(
    page: PageContext,
    transfer: Mapping[str, Any],
    values: Mapping[str, str],
    errors: Mapping[str, str],
    status: int = 200,
) -> Response:
    locations, stores = await asyncio.gather(page.api.get("/api/v1/locations"), _store_names(page))
    en = page.lang == "en"
    options = [
        (r["code"], (r.get("name_en") if en else r.get("name")) or r["code"])
        for r in locations
        if r.get("kind") != "transit"
    ]
    return page.render(
        "transfers/receive.html",
        status=status,
        transfer=transfer,
        store=stores.get(transfer["from_store"], transfer["from_store"]),
        locations=options,
        values=values,
        errors=errors,
    )


@router.get("/transfers/incoming/{transfer_id:int}")
async def receive_form(page: Page, transfer_id: int) -> Response:
    """The parts as shipped with a count for each (the shipped quantity to start with)."""
    page.require("transfers:write")
    transfer = await _incoming(page, transfer_id)
    if transfer is None:
        return not_found(page)
    values = {f"part-{p['part_no']}": str(p["qty"]) for p in transfer["parts"]}
    return await _receive_page(page, transfer, values, {})


@router.post("/transfers/incoming/{transfer_id:int}")
async def receive(page: Page, transfer_id: int) -> Response:
    """Post the transfer in for the counted quantities, then open it."""
    page.require("transfers:write")
    transfer = await _incoming(page, transfer_id)
    if transfer is None:
        return not_found(page)
    if transfer.get("received_here"):  # a second submit, or someone else was quicker: show what was received
        return page.redirect(f"/documents/{transfer['received_here']['document_id']}")
    form = await page.form()
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    lines = []
    for part in transfer["parts"]:
        name = f"part-{part['part_no']}"
        raw = form.get(name)
        value = raw.strip()[:20] if isinstance(raw, str) else ""
        values[name] = value
        if re.fullmatch(r"[0-9]{1,8}", value) and int(value) <= MAX_COUNT:
            lines.append({"part_no": part["part_no"], "qty": int(value)})
        else:
            errors[name] = page.t("transfers.error.qty_invalid", max=f"{MAX_COUNT:,}")
    for name in ("location", "note"):
        raw = form.get(name)
        values[name] = raw.strip()[: MAX_TEXT + 1] if isinstance(raw, str) else ""
    known = {r["code"] for r in await page.api.get("/api/v1/locations")}
    if values["location"] and values["location"] not in known:
        errors["location"] = page.t("transfers.error.choice_invalid")
    if len(values["note"]) > MAX_TEXT or "\x00" in values["note"]:
        errors["note"] = page.t("transfers.error.text_invalid")
    if errors:
        return await _receive_page(page, transfer, values, errors, status=422)
    body: dict[str, Any] = {"lines": lines}
    if values["location"]:
        body["location"] = values["location"]
    if values["note"]:
        body["note"] = values["note"]
    try:
        posted = await page.api.post(
            f"/api/v1/transfers/incoming/{transfer_id}/receive", json=body, key=await page.form_key()
        )
    except ApiFailure as failure:
        if not form_refusal(failure):
            raise
        problems = dict(failure.field_errors(page.lang))
        part = failure.detail.get("part")
        if isinstance(part, int) and f"part-{part}" in values:
            problems[f"part-{part}"] = failure.text(page.lang)
        problems["form"] = failure.text(page.lang)
        status = 409 if failure.status == 409 else 422
        return await _receive_page(page, transfer, values, problems, status=status)
    return page.redirect(f"/documents/{posted['document_id']}", flash="transfers.receive.done", arg=posted["doc_no"])
