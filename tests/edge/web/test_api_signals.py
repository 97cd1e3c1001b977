"""Signals over real HTTP: pushes with idempotency keys and permissions, refusals naming the record, reads,
learned lead times from real POs and receipts, return spikes and the supplier quality score."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.edge.web.apibox import Box, assert_error_shape

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)


def at(box: Box, when: datetime) -> None:
    """Move the box's clock (tokens are issued anew: they expire after 8 hours)."""
    box.clock.now = when
    box.tokens.clear()


async def push(box: Box, kind: str, body: Any, *, key: str = "k-1", role: str = "purchaser") -> httpx.Response:
    headers = {**box.auth(role), "Idempotency-Key": key}
    return await box.client.post(f"/api/v1/signals/{kind}", json=body, headers=headers)


PROMO = [{"sku": "COLA", "start": "2026-12-08", "end": "2026-12-14", "discount": 0.2, "kind": "折扣", "note": "双十二"}]


async def test_a_push_is_stored_once_per_key_and_read_back(box: Box) -> None:
    at(box, NOW)
    first = await push(box, "promotion", PROMO)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["kind"], body["records"], body["accepted"], body["replayed"]) == ("promotion", 1, 1, False)
    again = await push(box, "promotion", PROMO)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["batch"] == body["batch"]
    reused = await push(box, "promotion", [{**PROMO[0], "discount": 0.3}])
    assert reused.status_code == 422 and assert_error_shape(reused)["code"] == "idempotency_key_reused"
    listed = await box.client.get("/api/v1/signals/promotion", headers=box.auth("clerk"))
    assert listed.status_code == 200
    assert [(p["sku"], p["discount"], p["kind"], p["note"]) for p in listed.json()] == [("COLA", 0.2, "折扣", "双十二")]


async def test_writing_needs_signals_write_and_a_key(box: Box) -> None:
    at(box, NOW)
    denied = await push(box, "promotion", PROMO, role="clerk")
    assert denied.status_code == 403
    no_key = await box.client.post("/api/v1/signals/promotion", json=PROMO, headers=box.auth("manager"))
    assert no_key.status_code == 400 and assert_error_shape(no_key)["code"] == "idempotency_key_missing"
    anonymous = await box.client.get("/api/v1/signals/weather")
    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("record", "status", "code", "field"),
    [
        ({**PROMO[0], "sku": "NOPE"}, 422, "invalid_signal", "sku"),
        ({**PROMO[0], "discount": 2}, 422, "validation_error", None),
        ({**PROMO[0], "end": "2026-12-01"}, 422, "validation_error", None),
    ],
)
async def test_a_bad_record_refuses_the_whole_push(
    box: Box, record: dict[str, Any], status: int, code: str, field: str | None
) -> None:
    at(box, NOW)
    response = await push(box, "promotion", [PROMO[0], record])
    assert response.status_code == status, response.text
    error = assert_error_shape(response)
    assert error["code"] == code
    if field is not None:
        assert error["detail"]["index"] == 1 and error["detail"]["field"] == field
    else:
        assert error["detail"]["errors"][0]["field"].startswith("[1]")
    listed = await box.client.get("/api/v1/signals/promotion", headers=box.auth("manager"))
    assert listed.json() == []


async def test_unknown_kind_is_404(box: Box) -> None:
    response = await box.client.get("/api/v1/signals/horoscope", headers=box.auth("manager"))
    assert response.status_code == 404 and assert_error_shape(response)["code"] == "unknown_signal_kind"


async def test_online_orders_are_kept_once_per_channel_and_order(box: Box) -> None:
    at(box, NOW)
    order = {
        "channel": "meituan",
        "order_id": "MT1",
        "ts": "2026-12-04T19:30:00+08:00",
        "lines": [{"sku": "COLA", "qty": 2}],
    }
    first = await push(box, "online-sales", [order], key="o-1")
    assert first.status_code == 201 and first.json()["accepted"] == 1
    second = await push(box, "online_sales", [order, {**order, "order_id": "MT2"}], key="o-2")
    assert (second.json()["accepted"], second.json()["duplicates"]) == (1, 1)
    listed = await box.client.get("/api/v1/signals/online-sales", headers=box.auth("auditor"))
    assert sorted(o["order_id"] for o in listed.json()) == ["MT1", "MT2"]
    assert listed.json()[0]["day"] == "2026-12-04"


async def test_every_kind_accepts_its_documented_example(box: Box) -> None:
    at(box, NOW)
    examples: dict[str, list[dict[str, Any]]] = {
        "weather": [{"date": "2026-12-06", "temp_max_c": 12.5, "temp_min_c": 3, "rain_mm": 0}],
        "supplier-delay": [{"supplier": "sup-1", "delay_days": 3, "from": "2026-12-05", "reason": "暴雪"}],
        "trend": [{"keyword": "可乐", "date": "2026-12-05", "score": 92}],
        "search-bounce": [{"sku": "MILK", "date": "2026-12-05", "rate": 0.35, "baseline": 0.2}],
        "cart-abandonment": [{"sku": "RICE", "date": "2026-12-04", "rate": 0.8}],
    }
    for i, (kind, body) in enumerate(examples.items()):
        response = await push(box, kind, body, key=f"ex-{i}")
        assert response.status_code == 201, (kind, response.text)
    trend = (await box.client.get("/api/v1/signals/trend", headers=box.auth("manager"))).json()
    assert [(t["sku"], t["keyword"], t["score"]) for t in trend] == [("COLA", "可乐", 92.0)]
    lead = (await box.client.get("/api/v1/signals/lead-times", headers=box.auth("manager"))).json()
    assert {r["supplier"]: r["delay_days"] for r in lead}.get("sup-1", 3) == 3


async def test_lead_times_are_learned_from_pos_and_receipts(box: Box) -> None:
    at(box, NOW - timedelta(days=20))
    for i, days in enumerate((2, 4, 3)):
        po = await box.post(
            "purchase_order",
            {"counterparty": "sup-1", "lines": [{"code": "COLA", "qty": 2, "unit": "case", "price_fen": 5424}]},
            role="purchaser",
            key=f"po-{i}",
        )
        assert po.status_code == 201, po.text
        at(box, box.clock.now + timedelta(days=days))
        receipt = await box.post(
            "receipt",
            {
                "counterparty": "sup-1",
                "ref_id": po.json()["document_id"],
                "lines": [{"code": "COLA", "qty": 2, "unit": "case", "price_fen": 5424}],
            },
            key=f"rc-{i}",
        )
        assert receipt.status_code == 201, receipt.text
    at(box, NOW)
    rows = (await box.client.get("/api/v1/signals/lead-times", headers=box.auth("purchaser"))).json()
    sup = next(r for r in rows if r["supplier"] == "sup-1")
    assert sup["observations"] == 3
    assert sup["mean_days"] == pytest.approx((3 * 3 + 5 * 3.0) / 8)  # shrunk towards the default 3 days


async def test_a_return_spike_is_raised_once_and_lowers_the_quality_score(box: Box) -> None:
    at(box, NOW - timedelta(days=3))
    await box.receive("COLA", 50)
    sale = await box.post("sale", {"lines": [{"code": "COLA", "qty": 20}]}, role="clerk", key="sale")
    for i in range(4):
        returned = await box.post(
            "customer_return",
            {"lines": [{"code": "COLA", "qty": 1}], "reason": "包装破损", "ref_id": sale.json()["document_id"]},
            role="clerk",
            key=f"ret-{i}",
        )
        assert returned.status_code == 201, returned.text
    at(box, NOW)
    before = (await box.client.get("/api/v1/suppliers/sup-1/quality", headers=box.auth("manager"))).json()
    assert before["returned_qty"] == 4 and before["sold_qty"] == 20
    assert before["score"] == pytest.approx(100 - 100 * 3.0 * 4 / 20)
    checked = await box.client.post("/api/v1/signals/return-spikes/check", headers=box.auth("manager"))
    assert checked.status_code == 200, checked.text
    found = {(s["scope"], s["subject"], s["reason"]) for s in checked.json()}
    assert found == {("item", "COLA", "damaged_packaging"), ("supplier", "sup-1", "damaged_packaging")}
    again = await box.client.post("/api/v1/signals/return-spikes/check", headers=box.auth("manager"))
    assert again.json() == []  # raised once per spike
    listed = (await box.client.get("/api/v1/signals/return-spikes?open=true", headers=box.auth("clerk"))).json()
    assert len(listed) == 2 and listed[0]["message"].startswith("退货激增")
    after = (await box.client.get("/api/v1/suppliers/sup-1/quality", headers=box.auth("auditor"))).json()
    assert after["score"] == pytest.approx(before["score"] - 2 * 5)
    missing = await box.client.get("/api/v1/suppliers/nobody/quality", headers=box.auth("auditor"))
    assert missing.status_code == 404 and assert_error_shape(missing)["code"] == "unknown_supplier"
