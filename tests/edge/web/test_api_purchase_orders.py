"""What the purchasing and finance pages read over HTTP: POs with their approval state, vouchers by date."""

from __future__ import annotations

from datetime import timedelta

import pytest

from edge.security.roles import Role
from tests.edge.web.apibox import T0, Box, assert_error_shape

pytestmark = pytest.mark.anyio


async def order(box: Box, cases: int, key: str) -> int:
    body = {"counterparty": "sup-1", "lines": [{"code": "COLA", "qty": cases, "unit": "case", "price_fen": 5424}]}
    response = await box.post("purchase_order", body, role=Role.PURCHASER, key=key)
    assert response.status_code == 201, response.text
    return int(response.json()["document_id"])


async def test_purchase_orders_list_newest_first_with_approval_and_reversal(box: Box) -> None:
    first = await order(box, 2, "po-1")
    second = await order(box, 3, "po-2")
    third = await order(box, 1, "po-3")
    approved = await box.client.post(f"/api/v1/purchase-orders/{first}/approve", headers=box.auth(Role.MANAGER))
    assert approved.status_code == 200, approved.text
    reversed_ = await box.client.post(
        f"/api/v1/documents/{third}/reverse", headers={**box.auth(Role.MANAGER), "Idempotency-Key": "rev-po-3"}
    )
    assert reversed_.status_code == 201, reversed_.text

    listed = await box.client.get("/api/v1/purchase-orders", headers=box.auth(Role.CLERK))
    assert listed.status_code == 200, listed.text
    rows = listed.json()
    assert [row["id"] for row in rows] == [third, second, first]
    by_id = {row["id"]: row for row in rows}
    assert by_id[first]["approval"]["approved_by"] == "manager"
    assert by_id[second]["approval"] is None and by_id[second]["reversed_by"] is None
    assert by_id[third]["reversed_by"] == reversed_.json()["document_id"]
    assert by_id[second]["supplier"] == "sup-1" and by_id[second]["supplier_name"] == "华润饮料"
    assert by_id[second]["gross_fen"] is None  # the clerk sees no amounts (amounts:read)
    by_purchaser = await box.client.get(f"/api/v1/purchase-orders/{second}", headers=box.auth(Role.PURCHASER))
    assert by_purchaser.json()["gross_fen"] == 3 * 5424

    pending = await box.client.get("/api/v1/purchase-orders?approved=false", headers=box.auth(Role.PURCHASER))
    assert [row["id"] for row in pending.json()] == [third, second]
    done = await box.client.get("/api/v1/purchase-orders?approved=true&limit=1", headers=box.auth(Role.PURCHASER))
    assert [row["id"] for row in done.json()] == [first]

    one = await box.client.get(f"/api/v1/purchase-orders/{first}", headers=box.auth(Role.AUDITOR))
    assert one.status_code == 200 and one.json() == {
        **by_id[first],
        "gross_fen": 2 * 5424,
        "tax_fen": one.json()["tax_fen"],
    }
    assert one.json()["tax_fen"] > 0


async def test_a_document_that_is_no_purchase_order_is_404(box: Box) -> None:
    receipt = await box.receive("COLA", 5)
    for document_id in (receipt, 999_999):
        response = await box.client.get(f"/api/v1/purchase-orders/{document_id}", headers=box.auth(Role.MANAGER))
        assert response.status_code == 404
        assert assert_error_shape(response)["code"] == "unknown_compliance_record"
    bad = await box.client.get("/api/v1/purchase-orders/0", headers=box.auth(Role.MANAGER))
    assert bad.status_code == 422


async def test_vouchers_are_filtered_by_their_date(box: Box) -> None:
    """`since`/`until` on `GET /api/v1/vouchers` (the finance page's period filter) include both ends."""
    first = await box.receive("COLA", 5)
    box.clock.advance(timedelta(days=1))
    box.tokens.clear()  # issued for the earlier day
    second = await box.receive("COLA", 6)
    box.clock.advance(timedelta(days=1))
    box.tokens.clear()  # issued for the earlier day
    third = await box.receive("COLA", 7)
    day1 = T0.date()

    async def documents(**params: str) -> list[int]:
        response = await box.client.get("/api/v1/vouchers", params=params, headers=box.auth(Role.ACCOUNTANT))
        assert response.status_code == 200, response.text
        return [voucher["document_id"] for voucher in response.json()]

    assert await documents() == [third, second, first]
    assert await documents(since=str(day1 + timedelta(days=1))) == [third, second]
    assert await documents(until=str(day1 + timedelta(days=1))) == [second, first]
    assert await documents(since=str(day1 + timedelta(days=1)), until=str(day1 + timedelta(days=1))) == [second]
    assert await documents(since=str(day1 + timedelta(days=3))) == []
    bad = await box.client.get("/api/v1/vouchers?since=2024-13-01", headers=box.auth(Role.ACCOUNTANT))
    assert bad.status_code == 422
