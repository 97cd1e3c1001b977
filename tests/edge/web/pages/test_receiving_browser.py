"""Receiving a delivery by its QR code in a real browser against a real demo box: the supplier's signed note is
typed into the QR field as a scanner would, the goods are scanned, the receipt is confirmed, and the API shows
the posted receipt."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from edge.devices.delivery_note import NoteLine, generate_key_pair, public_key_text
from tests.edge.web.pages.browser import log_in
from tools.box_process import BoxProcess
from tools.delivery_note import sign_note

pytestmark = pytest.mark.browser

SUPPLIER = "sup-bev"  # 上海惠康饮品: drinks, papers complete in the demo


def manager_api(box: BoxProcess) -> httpx.Client:
    user = box.demo_json()["users"]["manager"]
    token = httpx.post(
        f"{box.url}/api/v1/auth/token", data={"username": user["username"], "password": user["password"]}, timeout=30
    )
    assert token.status_code == 200, token.text
    return httpx.Client(
        base_url=box.url, headers={"Authorization": f"Bearer {token.json()['access_token']}"}, timeout=30
    )


def post(client: httpx.Client, path: str, body: Any) -> Any:
    response = client.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_a_delivery_is_received_by_its_qr_code_from_the_page(page: Any, demo_box: BoxProcess) -> None:
    drink = next(i for i in demo_box.demo_json()["items"] if i["sku"].startswith("DR"))
    private, public = generate_key_pair()
    with manager_api(demo_box) as client:
        post(client, f"/api/v1/suppliers/{SUPPLIER}/signing-keys", {"public_key": public_key_text(public)})
        order = {"counterparty": SUPPLIER, "lines": [{"code": drink["barcode"], "qty": 24, "price_fen": 250}]}
        po = post(client, "/api/v1/documents/purchase_order", order)
    note = sign_note(
        private,
        supplier=SUPPLIER,
        asn_id=f"ASN-BROWSER-{uuid.uuid4().hex[:8]}",
        po_no=po["doc_no"],
        lines=[NoteLine(drink["barcode"], 24)],
        issued_at=datetime.now(UTC) - timedelta(minutes=1),
    )

    log_in(page, demo_box, "manager", path="/receiving")
    page.fill("#f-qr", note)  # a keyboard-wedge scanner types the text and presses Enter
    page.press("#f-qr", "Enter")
    page.wait_for_url(re.compile(r".*/receiving/\d+$"))
    draft_id = int(page.url.rsplit("/", 1)[1])
    row = page.locator(f"#expected tr[data-sku='{drink['sku']}']")
    assert row.get_attribute("data-expected") == "24" and row.get_attribute("data-scanned") == "0"

    page.fill("#f-code", drink["barcode"])
    page.fill("#f-qty", "24")
    page.press("#f-code", "Enter")
    page.wait_for_selector("#last-scan")
    assert "24/24" in page.inner_text("#last-scan")
    assert page.locator(f"#expected tr[data-sku='{drink['sku']}']").get_attribute("data-scanned") == "24"

    page.locator("#confirm-form button[type=submit]").click()
    page.wait_for_selector("#result")
    assert page.locator("h1 span").get_attribute("data-state") == "confirmed"

    with manager_api(demo_box) as client:
        draft = client.get(f"/api/v1/receiving/drafts/{draft_id}").json()
        assert draft["state"] == "confirmed" and draft["receipt_id"], draft
        receipt = client.get(f"/api/v1/documents/{draft['receipt_id']}").json()
    assert (receipt["type"], receipt["counterparty"], receipt["ref_id"]) == ("receipt", SUPPLIER, po["document_id"])
    assert [(line["sku"], line["qty_base"]) for line in receipt["lines"]] == [(drink["sku"], 24)]
    assert receipt["doc_no"] in page.inner_text("p.flash")
