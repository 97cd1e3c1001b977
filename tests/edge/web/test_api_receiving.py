"""Scan-to-receive over HTTP: signing keys, drafts from a delivery note, scans, confirm, ASNs, errors."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from edge.devices.asn import AsnInput, AsnLine, record_asn
from edge.devices.delivery_note import NoteLine, generate_key_pair, key_id, public_key_text
from edge.security.roles import Role
from tests.edge.web.apibox import COLA_CASE, COLA_PIECE, MILK_BARCODE, T0, Box, assert_error_shape
from tools.delivery_note import sign_note

pytestmark = pytest.mark.anyio

MILK_EXPIRY = date(2024, 6, 7)


async def call(
    box: Box, path: str, body: Any = None, *, role: Role = Role.CLERK, key: str | None = None
) -> httpx.Response:
    headers = {**box.auth(role), "Idempotency-Key": key or str(uuid.uuid4())}
    return await box.client.post(f"/api/v1{path}", json=body, headers=headers)


async def prepare(box: Box) -> tuple[Any, str]:
    """A purchase order of sup-1 (2 cases of cola, 12 bottles of milk) and sup-1's signing key registered."""
    order = {
        "counterparty": "sup-1",
        "lines": [{"code": COLA_CASE, "qty": 2, "price_fen": 5424}, {"code": "MILK", "qty": 12, "price_fen": 900}],
    }
    response = await box.post("purchase_order", order, key="po-1")
    assert response.status_code == 201, response.text
    private, public = generate_key_pair()
    response = await box.client.post(
        "/api/v1/suppliers/sup-1/signing-keys",
        json={"public_key": public_key_text(public)},
        headers=box.auth(Role.PURCHASER),
    )
    assert response.status_code == 200, response.text
    assert response.json()["key_id"] == key_id(public) and response.json()["active"] is True
    return private, await po_no(box)


async def po_no(box: Box) -> str:
    documents = (await box.client.get("/api/v1/documents?type=purchase_order", headers=box.auth(Role.MANAGER))).json()
    return str(documents[0]["doc_no"])


def qr(private: Any, po: str, **kw: Any) -> str:
    lines = kw.pop("lines", (NoteLine(COLA_CASE, 2), NoteLine(MILK_BARCODE, 12, "M0601", MILK_EXPIRY)))
    return sign_note(
        private,
        supplier="sup-1",
        asn_id=kw.pop("asn_id", "ASN-1"),
        po_no=po,
        lines=lines,
        issued_at=kw.pop("issued_at", T0 - timedelta(hours=1)),
        **kw,
    )


async def test_a_clerk_receives_a_delivery_note_through_the_api(box: Box) -> None:
    private, po = await prepare(box)
    opened = await call(box, "/receiving/drafts", {"qr": qr(private, po), "location": "backroom"})
    assert opened.status_code == 200, opened.text
    draft = opened.json()["detail"]["draft"]
    assert [(e["sku"], e["qty_base"]) for e in opened.json()["detail"]["expected"]] == [("COLA", 48), ("MILK", 12)]
    scan = await call(box, f"/receiving/drafts/{draft}/scans", {"code": COLA_PIECE, "qty": 40}, key="scan-1")
    assert scan.status_code == 200 and scan.json()["detail"]["scanned"] == 40
    again = await call(box, f"/receiving/drafts/{draft}/scans", {"code": COLA_PIECE, "qty": 40}, key="scan-1")
    assert again.headers["Idempotent-Replayed"] == "true" and again.json()["detail"] == scan.json()["detail"]
    milk = {"code": MILK_BARCODE, "qty": 12, "lot": "M0601"}
    assert (await call(box, f"/receiving/drafts/{draft}/scans", milk)).json()["detail"]["status"] == "ok"
    done = await call(box, f"/receiving/drafts/{draft}/confirm", {})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["document"] == body["detail"]["receipt"]["id"]
    assert body["detail"]["differences"] == [
        {"kind": "short", "sku": "COLA", "expected": 48, "received": 40, "lot": None, "expiry": None, "line_no": 1}
    ]
    receipt = (await box.client.get(f"/api/v1/documents/{body['document']}", headers=box.auth(Role.MANAGER))).json()
    assert (receipt["type"], receipt["counterparty"], receipt["location"]) == ("receipt", "sup-1", "backroom")
    assert receipt["voucher"] is not None
    shown = (await box.client.get(f"/api/v1/receiving/drafts/{draft}", headers=box.auth(Role.AUDITOR))).json()
    assert (shown["state"], shown["receipt_id"]) == ("confirmed", body["document"])
    assert shown["scanned"] == [
        {"sku": "COLA", "lot": None, "expiry": None, "qty_base": 40},
        {"sku": "MILK", "lot": "M0601", "expiry": MILK_EXPIRY.isoformat(), "qty_base": 12},
    ]
    listed = (await box.client.get("/api/v1/receiving/drafts?state=confirmed", headers=box.auth(Role.CLERK))).json()
    assert [(d["id"], d["lines"], d["po_no"]) for d in listed] == [(draft, 2, po)]
    replay = await call(box, "/receiving/drafts", {"qr": qr(private, po)})
    assert replay.status_code == 409
    assert assert_error_shape(replay)["code"] == "note_already_received"


async def test_forged_stale_and_garbage_notes_are_refused_with_the_reason(box: Box) -> None:
    private, po = await prepare(box)
    other, _ = generate_key_pair()
    cases = [
        (qr(other, po), 403, "note_unknown_key"),
        (qr(private, po, issued_at=T0 - timedelta(days=40)), 422, "note_expired"),
        ("SBDN1:" + "A" * 40, 422, "note_malformed"),
        ("https://example.com/not-a-note", 422, "note_malformed"),
    ]
    for text, status, code in cases:
        response = await call(box, "/receiving/drafts", {"qr": text})
        assert response.status_code == status, (code, response.text)
        assert assert_error_shape(response)["code"] == code
    assert box.count("receipt_drafts") == 0 and box.count("delivery_notes") == 0


async def test_draft_errors_have_their_status(box: Box) -> None:
    private, po = await prepare(box)
    draft = (await call(box, "/receiving/drafts", {"qr": qr(private, po)})).json()["detail"]["draft"]
    missing = await call(box, "/receiving/drafts/999/scans", {"code": COLA_PIECE})
    assert missing.status_code == 404 and assert_error_shape(missing)["code"] == "unknown_draft"
    unknown = await call(box, f"/receiving/drafts/{draft}/scans", {"code": "NOPE"})
    assert unknown.status_code == 422 and assert_error_shape(unknown)["code"] == "scan_refused"
    both = await call(box, f"/receiving/drafts/{draft}/scans", {"code": COLA_PIECE, "qty": 1, "scale": "scale-1"})
    assert both.status_code == 422
    nothing = await call(box, f"/receiving/drafts/{draft}/confirm")
    assert nothing.status_code == 422 and assert_error_shape(nothing)["code"] == "nothing_to_receive"
    no_key = await box.client.post(f"/api/v1/receiving/drafts/{draft}/cancel", headers=box.auth(Role.CLERK))
    assert no_key.status_code == 400 and assert_error_shape(no_key)["code"] == "idempotency_key_missing"
    assert (await call(box, f"/receiving/drafts/{draft}/cancel")).json()["detail"]["state"] == "cancelled"
    closed = await call(box, f"/receiving/drafts/{draft}/confirm", {"as_announced": True})
    assert closed.status_code == 409 and assert_error_shape(closed)["code"] == "draft_closed"
    got = await box.client.get("/api/v1/receiving/drafts/999", headers=box.auth(Role.CLERK))
    assert got.status_code == 404


async def test_an_accountant_may_not_receive(box: Box) -> None:
    response = await call(box, "/receiving/drafts", {"qr": "SBDN1:x"}, role=Role.ACCOUNTANT)
    assert response.status_code == 403
    assert assert_error_shape(response)["detail"] == {"permission": "documents:write:receipt", "role": "accountant"}


async def test_signing_keys_are_listed_revoked_and_checked(box: Box) -> None:
    private, po = await prepare(box)
    headers = box.auth(Role.PURCHASER)
    (listed,) = (await box.client.get("/api/v1/suppliers/sup-1/signing-keys", headers=headers)).json()
    revoke = await box.client.post(f"/api/v1/suppliers/sup-1/signing-keys/{listed['key_id']}/revoke", headers=headers)
    assert revoke.status_code == 200 and revoke.json()["active"] is False
    refused = await call(box, "/receiving/drafts", {"qr": qr(private, po)})
    assert refused.status_code == 403 and assert_error_shape(refused)["code"] == "note_key_revoked"
    bad = await box.client.post(
        "/api/v1/suppliers/sup-1/signing-keys", json={"public_key": "not a key"}, headers=headers
    )
    assert bad.status_code == 422 and assert_error_shape(bad)["code"] == "signing_key_invalid"
    clerk = await box.client.post(
        "/api/v1/suppliers/sup-1/signing-keys", json={"public_key": listed["public_key"]}, headers=box.auth("clerk")
    )
    assert clerk.status_code == 403


async def test_staff_read_asns(box: Box) -> None:
    await prepare(box)
    documents = (await box.client.get("/api/v1/documents?type=purchase_order", headers=box.auth(Role.MANAGER))).json()
    asn = AsnInput("ASN-7", documents[0]["id"], date(2024, 5, 31), (AsnLine(COLA_CASE, 1),))
    stored = await box.writer.execute(record_asn, "sup-1", asn, T0)
    assert stored.outcome == "created"
    listed = (await box.client.get("/api/v1/asns?supplier=sup-1&state=open", headers=box.auth(Role.CLERK))).json()
    assert [(a["asn_id"], a["lines"][0]["qty_base"]) for a in listed] == [("ASN-7", 24)]
    one = await box.client.get("/api/v1/asns/sup-1/ASN-7", headers=box.auth(Role.AUDITOR))
    assert one.status_code == 200 and one.json()["po_no"] == documents[0]["doc_no"]
    missing = await box.client.get("/api/v1/asns/sup-1/NOPE", headers=box.auth(Role.AUDITOR))
    assert missing.status_code == 404 and assert_error_shape(missing)["code"] == "unknown_asn"
