"""Price agreements over real HTTP: recording one, the price list, the contract and the PO revisions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.edge.web.apibox import Box, assert_error_shape
from tests.edge.web.test_api_invoices import add_seller

pytestmark = pytest.mark.anyio


def agreement(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "supplier_id": "sup-1",
        "sku": "COLA",
        "price_fen": 215,
        "valid_from": "2024-06-01",
        "valid_to": "2024-06-30",
        "contract_no": "HT-2024-001",
        "note": "年度谈判",
    }
    data.update(overrides)
    return data


async def record(box: Box, data: dict[str, Any], *, key: str = "pa-1", role: str = "purchaser") -> Any:
    headers = {**box.auth(role), "Idempotency-Key": key}
    return await box.client.post("/api/v1/price-agreements", json=data, headers=headers)


async def test_recording_an_agreement_revises_the_open_po_and_fills_the_price_list(box: Box) -> None:
    po = await box.post(
        "purchase_order",
        {"counterparty": "sup-1", "lines": [{"code": "COLA", "qty": 2, "unit": "case", "price_fen": 5424}]},
        role="purchaser",
        key="po-1",
    )
    po_id = po.json()["document_id"]
    response = await record(box, agreement())
    assert response.status_code == 201, response.text
    recorded = response.json()
    assert recorded["replayed"] is False and recorded["price"] == "2.15"
    assert [(r["po_id"], r["old_price_fen"], r["new_price_fen"]) for r in recorded["revisions"]] == [
        (po_id, 5424, 5160)
    ]
    again = await record(box, agreement())
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    listed = await box.client.get(
        "/api/v1/suppliers/sup-1/prices", params={"on": "2024-06-10"}, headers=box.auth("auditor")
    )
    assert [(p["sku"], p["price_fen"], p["item_name"]) for p in listed.json()] == [("COLA", 215, "可乐 330ml")]
    today = await box.client.get("/api/v1/suppliers/sup-1/prices", headers=box.auth("purchaser"))
    assert [p["sku"] for p in today.json()] == ["COLA"]  # the box's clock is 2024-06-01
    contract = (await box.client.get("/api/v1/contracts/HT-2024-001", headers=box.auth("auditor"))).json()
    assert contract["supplier_id"] == "sup-1" and len(contract["agreements"]) == 1
    revisions = await box.client.get(f"/api/v1/purchase-orders/{po_id}/price-revisions", headers=box.auth("auditor"))
    assert [r["new_price_fen"] for r in revisions.json()] == [5160]
    # The PO itself is unchanged: the ledger is append-only.
    document = await box.client.get(f"/api/v1/documents/{po_id}", headers=box.auth("purchaser"))
    assert document.json()["lines"][0]["price_fen"] == 5424
    all_agreements = await box.client.get(
        "/api/v1/price-agreements", params={"sku": "COLA"}, headers=box.auth("auditor")
    )
    assert len(all_agreements.json()) == 1


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"price_fen": 0}, 422, "validation_error"),
        ({"price_fen": 2.5}, 422, "validation_error"),
        ({"valid_to": "2024-05-01"}, 422, "invalid_price_agreement"),
        ({"valid_from": "June"}, 422, "validation_error"),
        ({"supplier_id": "nobody"}, 404, "unknown_supplier"),
        ({"sku": "NOPE"}, 404, "unknown_item"),
        ({"contract_no": "HT/1"}, 422, "invalid_price_agreement"),
    ],
)
async def test_bad_agreements_are_refused(box: Box, change: dict[str, Any], status: int, code: str) -> None:
    response = await record(box, agreement(**change))
    assert response.status_code == status, response.text
    assert assert_error_shape(response)["code"] == code
    assert box.count("price_agreements") == 0


async def test_a_contract_belongs_to_one_supplier(box: Box) -> None:
    assert (await record(box, agreement())).status_code == 201
    add_seller(box.db_path)
    response = await record(box, agreement(supplier_id="sup-9"), key="pa-2")
    assert response.status_code == 409 and assert_error_shape(response)["code"] == "contract_supplier_mismatch"


async def test_reading_needs_prices_read_and_writing_prices_write(box: Box) -> None:
    assert (await record(box, agreement(), role="accountant")).status_code == 403
    assert (await box.client.get("/api/v1/price-agreements", headers=box.auth("clerk"))).status_code == 403
    missing = await box.client.get("/api/v1/contracts/HT-none", headers=box.auth("purchaser"))
    assert missing.status_code == 404 and assert_error_shape(missing)["code"] == "unknown_contract"
    nobody = await box.client.get("/api/v1/suppliers/nobody/prices", headers=box.auth("purchaser"))
    assert nobody.status_code == 404
