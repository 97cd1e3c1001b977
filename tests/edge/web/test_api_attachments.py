"""GET /api/v1/attachments: photos and signatures the terminals sent, by what they belong to."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import pytest
from PIL import Image

from edge.bus.event_kinds import decode_options, device_event_kinds
from edge.bus.payloads import DecodedEvent, decode_event, event_key
from edge.bus.storage import run_event_job
from edge.db import connect
from edge.devices.attachments import ATTACHMENTS_DIR
from edge.security.roles import Role
from tests.edge.web.apibox import Box, assert_error_shape

pytestmark = pytest.mark.anyio

SIGNATURE = b'<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0 L10 10" stroke="black"/></svg>'


def photo(colour: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (64, 48), (colour, 90, 30)).save(out, format="JPEG")
    return out.getvalue()


async def attach(box: Box, device: str, name: str, content: bytes, purpose: str, **ref: Any) -> dict[str, Any]:
    """Send a file as the ingest would: each chunk decoded and run as its writer job."""
    pieces = [content[i : i + 500] for i in range(0, len(content), 500)]
    outcome: Any = None
    for seq, piece in enumerate(pieces):
        data = {
            "attachment": name,
            "purpose": purpose,
            **ref,
            "seq": seq,
            "count": len(pieces),
            "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(),
            "data": base64.b64encode(piece).decode(),
        }
        event_id = f"{name}-{seq}"
        payload = json.dumps({"id": event_id, "ts": "2024-06-01T10:00:00+08:00", "data": data}).encode()
        options = decode_options(box.deps.settings)
        decoded = decode_event(device, "attachment", payload, kinds=device_event_kinds(), options=options)
        assert isinstance(decoded, DecodedEvent) and decoded.job is not None
        key = event_key(device, event_id)
        outcome = await box.writer.execute_posting(run_event_job, key, "attachment", decoded.job.fn, decoded.job.args)
    assert outcome.ok, outcome
    return dict(outcome.detail)


async def test_a_receipts_photos_and_signature_are_listed_by_what_they_belong_to(box: Box) -> None:
    first = await attach(box, "pda-1", "ph-1", photo(10), "photo", asn="ASN-9", supplier="sup-1")
    await attach(box, "pda-1", "ph-2", photo(20), "photo", draft=4)
    sig = await attach(box, "pda-2", "sig-1", SIGNATURE, "signature", asn="ASN-9", supplier="sup-1")
    await attach(box, "pda-2", "ph-3", photo(30), "photo", receipt=77)

    clerk = box.auth(Role.CLERK)
    asn_9 = {"asn": "ASN-9", "supplier": "sup-1"}
    by_asn = (await box.client.get("/api/v1/attachments", params=asn_9, headers=clerk)).json()
    assert [(a["attachment"], a["purpose"], a["mime"]) for a in by_asn] == [
        ("ph-1", "photo", "image/jpeg"),
        ("sig-1", "signature", "image/svg+xml"),
    ]
    either = await box.client.get("/api/v1/attachments", params={**asn_9, "draft": 4}, headers=clerk)
    assert [a["attachment"] for a in either.json()] == ["ph-1", "ph-2", "sig-1"]
    receipt = await box.client.get("/api/v1/attachments", params={"receipt": 77}, headers=clerk)
    assert [a["attachment"] for a in receipt.json()] == ["ph-3"]
    signatures = await box.client.get("/api/v1/attachments", params={"purpose": "signature"}, headers=clerk)
    assert [a["id"] for a in signatures.json()] == [sig["stored"]]
    mine = await box.client.get(
        "/api/v1/attachments", params={"device": "pda-1", "limit": 1, "offset": 1}, headers=clerk
    )
    assert [a["attachment"] for a in mine.json()] == ["ph-2"]

    one = await box.client.get(f"/api/v1/attachments/{first['stored']}", headers=box.auth(Role.AUDITOR))
    assert one.status_code == 200
    assert one.json() == {
        "id": first["stored"],
        "device": "pda-1",
        "attachment": "ph-1",
        "purpose": "photo",
        "ref_kind": "asn",
        "ref": "ASN-9",
        "supplier": "sup-1",
        "sha256": hashlib.sha256(photo(10)).hexdigest(),
        "size": len(photo(10)),
        "mime": "image/jpeg",
        "taken_at": "2024-06-01T10:00:00+08:00",
        "stored_at": one.json()["stored_at"],
    }


async def test_the_file_itself_comes_with_its_type_and_inert(box: Box) -> None:
    stored = await attach(box, "pda-1", "sig-1", SIGNATURE, "signature", draft=1)
    response = await box.client.get(f"/api/v1/attachments/{stored['stored']}/file", headers=box.auth(Role.CLERK))
    assert response.status_code == 200 and response.content == SIGNATURE
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert "sandbox" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_unknown_or_lost_attachments_are_404_and_bad_filters_422(box: Box) -> None:
    clerk = box.auth(Role.CLERK)
    missing = await box.client.get("/api/v1/attachments/999", headers=clerk)
    assert missing.status_code == 404 and assert_error_shape(missing)["code"] == "unknown_attachment"
    stored = await attach(box, "pda-1", "ph-1", photo(40), "photo", asn="A-1", supplier="sup-1")
    for path in (box.db_path.parent / ATTACHMENTS_DIR).glob("??/*"):
        path.unlink()  # removed by hand on the box
    lost = await box.client.get(f"/api/v1/attachments/{stored['stored']}/file", headers=clerk)
    assert lost.status_code == 404 and assert_error_shape(lost)["code"] == "unknown_attachment"
    bad = await box.client.get("/api/v1/attachments", params={"asn": "has space", "supplier": "sup-1"}, headers=clerk)
    assert bad.status_code == 422
    alone = await box.client.get("/api/v1/attachments", params={"asn": "A-1"}, headers=clerk)
    assert alone.status_code == 422 and assert_error_shape(alone)["detail"] == {"fields": ["asn", "supplier"]}
    assert (await box.client.get("/api/v1/attachments", params={"purpose": "selfie"}, headers=clerk)).status_code == 422


async def test_a_photo_sent_offline_with_the_asn_id_is_listed_with_the_draft_and_its_receipt(box: Box) -> None:
    po = await box.post(
        "purchase_order", {"counterparty": "sup-1", "lines": [{"code": "COLA", "qty": 24, "price_fen": 226}]}, key="po"
    )
    assert po.status_code == 201, po.text
    receipt_id = await box.receive("COLA", 24)
    # The handheld knew only the delivery note's ASN id; then a draft of that ASN was opened and confirmed.
    offline = await attach(box, "pda-1", "ph-offline", photo(50), "photo", asn="ASN-42", supplier="sup-1")
    later = await attach(box, "pda-1", "sig-later", SIGNATURE, "signature", draft=7)
    await attach(box, "pda-1", "ph-other", photo(60), "photo", asn="ASN-43", supplier="sup-1")
    conn = connect(box.db_path)
    try:
        conn.execute(
            "INSERT INTO receipt_drafts (id, state, supplier, po_id, asn_id, note_nonce, note_hash, opened_by,"
            " opened_at, receipt_id) VALUES (7, 'confirmed', 'sup-1', ?, 'ASN-42', 'n', 'h', 'pda-1', ?, ?)",
            (po.json()["document_id"], "2024-06-01T10:00:00+08:00", receipt_id),
        )
    finally:
        conn.close()
    clerk = box.auth(Role.CLERK)
    for params in ({"draft": 7}, {"asn": "ASN-42", "supplier": "sup-1"}, {"receipt": receipt_id}):
        listed = (await box.client.get("/api/v1/attachments", params=params, headers=clerk)).json()
        assert [a["id"] for a in listed] == [offline["stored"], later["stored"]], params


async def test_a_photo_for_one_suppliers_asn_is_not_shown_on_another_suppliers_draft_of_the_same_asn_id(
    box: Box,
) -> None:
    po = await box.post(
        "purchase_order", {"counterparty": "sup-1", "lines": [{"code": "COLA", "qty": 24, "price_fen": 226}]}, key="po"
    )
    assert po.status_code == 201, po.text
    # ASN ids are each supplier's own: sup-bev's DN-B-51 and sup-cold's DN-B-51 are two shipments.
    bev = await attach(box, "pda-1", "ph-bev", photo(70), "photo", asn="DN-B-51", supplier="sup-bev")
    cold = await attach(box, "pda-2", "ph-cold", photo(80), "photo", asn="DN-B-51", supplier="sup-cold")
    conn = connect(box.db_path)
    try:
        conn.execute("INSERT INTO suppliers (id, name) VALUES ('sup-cold', '冷链供应商')")
        conn.execute(
            "INSERT INTO receipt_drafts (id, state, supplier, po_id, asn_id, note_nonce, note_hash, opened_by,"
            " opened_at) VALUES (5, 'open', 'sup-cold', ?, 'DN-B-51', 'n', 'h', 'pda-2', ?)",
            (po.json()["document_id"], "2024-06-01T10:00:00+08:00"),
        )
    finally:
        conn.close()
    clerk = box.auth(Role.CLERK)
    on_draft = (await box.client.get("/api/v1/attachments", params={"draft": 5}, headers=clerk)).json()
    assert [a["id"] for a in on_draft] == [cold["stored"]]
    assert (cold["asn"], cold["supplier"]) == ("DN-B-51", "sup-cold")
    by_bev = await box.client.get(
        "/api/v1/attachments", params={"asn": "DN-B-51", "supplier": "sup-bev"}, headers=clerk
    )
    assert [a["id"] for a in by_bev.json()] == [bev["stored"]]
