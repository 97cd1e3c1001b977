from __future__ import annotations

from datetime import timedelta

import pytest

from edge.security.roles import Role
from tests.edge.web.apibox import COLA_CASE, COLA_PIECE, Box, assert_error_shape

pytestmark = pytest.mark.anyio


async def stock_of(box: Box, sku: str) -> dict[str, int]:
    response = await box.client.get("/api/v1/stock", params={"sku": sku}, headers=box.auth("clerk"))
    assert response.status_code == 200
    totals: dict[str, int] = {}
    for row in response.json():
        totals[row["location"]] = totals.get(row["location"], 0) + row["qty"]
    return totals


async def test_receipt_by_case_barcode_posts_document_moves_and_voucher(box: Box) -> None:
    response = await box.post(
        "receipt",
        {"counterparty": "sup-1", "lines": [{"code": COLA_CASE, "qty": 2, "price_fen": 5424}]},
        role="purchaser",
        key="rc-1",
    )
    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers
    body = response.json()
    document = body["document"]
    assert body["document_id"] == document["id"]
    assert body["doc_no"] == document["doc_no"] and body["doc_no"].startswith("RC")
    assert document["type"] == "receipt"
    assert document["actor"] == "purchaser"
    assert document["command_key"] == "api:rc-1"
    assert [(line["sku"], line["unit"], line["qty"], line["qty_base"]) for line in document["lines"]] == [
        ("COLA", "case", 2, 48)
    ]
    assert [(m["sku"], m["location"], m["qty"]) for m in document["moves"]] == [("COLA", "floor", 48)]
    assert document["voucher"] is None  # a purchaser does not see the books
    assert await stock_of(box, "COLA") == {"floor": 48}


async def test_manager_sees_the_voucher_and_it_balances(box: Box) -> None:
    await box.receive("COLA", 10)
    response = await box.post("sale", {"lines": [{"code": COLA_PIECE, "qty": 3}], "payment": "wechat"}, key="s1")
    assert response.status_code == 201, response.text
    voucher = response.json()["document"]["voucher"]
    assert voucher is not None
    assert sum(line["debit_fen"] for line in voucher["lines"]) == sum(line["credit_fen"] for line in voucher["lines"])
    assert voucher["lines"][0]["account"] == "1012"


async def test_replayed_key_answers_the_first_result_and_posts_nothing(box: Box) -> None:
    await box.receive("COLA", 10)
    sale = {"lines": [{"code": COLA_PIECE, "qty": 4}]}
    first = await box.post("sale", sale, role="clerk", key="pos-7-000123")
    before = box.counts()
    again = await box.post("sale", sale, role="clerk", key="pos-7-000123")
    assert again.status_code == first.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert box.counts() == before
    assert await stock_of(box, "COLA") == {"floor": 6}


async def test_replayed_refusal_answers_the_same_refusal(box: Box) -> None:
    sale = {"lines": [{"code": "COLA", "qty": 1}]}
    first = await box.post("sale", sale, role="clerk", key="k-refused")
    again = await box.post("sale", sale, role="clerk", key="k-refused")
    assert first.status_code == again.status_code == 409
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


async def test_key_reused_for_another_body_is_refused(box: Box) -> None:
    await box.receive("COLA", 10)
    assert (await box.post("sale", {"lines": [{"code": "COLA", "qty": 1}]}, key="same")).status_code == 201
    response = await box.post("sale", {"lines": [{"code": "COLA", "qty": 2}]}, key="same")
    assert response.status_code == 422
    assert assert_error_shape(response)["code"] == "idempotency_key_reused"


async def test_insufficient_stock_is_409_naming_item_location_and_shortfall(box: Box) -> None:
    await box.receive("COLA", 2)
    before = box.counts()
    response = await box.post("sale", {"lines": [{"code": COLA_PIECE, "qty": 5}]}, role="clerk", key="short")
    assert response.status_code == 409
    body = assert_error_shape(response)
    assert body["code"] == "insufficient_stock"
    assert body["detail"]["item"] == "COLA"
    assert body["detail"]["location"] == "floor"
    assert body["detail"]["shortfall"] == 3
    assert "COLA" in body["message"] and "floor" in body["message"] and "3" in body["message"]
    assert "short by 3" in body["message_en"]
    after = box.counts()
    assert after == before


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "idempotency_key_missing"),
        ({"Idempotency-Key": ""}, "idempotency_key_invalid"),
        ({"Idempotency-Key": "k" * 201}, "idempotency_key_invalid"),
        ({"Idempotency-Key": "has space"}, "idempotency_key_invalid"),
    ],
)
async def test_write_without_a_valid_idempotency_key_is_400(box: Box, headers: dict[str, str], code: str) -> None:
    response = await box.client.post(
        "/api/v1/documents/sale",
        json={"lines": [{"code": "COLA", "qty": 1}]},
        headers={**box.auth("clerk"), **headers},
    )
    assert response.status_code == 400
    body = assert_error_shape(response)
    assert body["code"] == code
    assert "Idempotency-Key" in body["message"] and "Idempotency-Key" in body["message_en"]
    assert box.count("documents") == 0


async def test_key_of_200_characters_is_accepted(box: Box) -> None:
    await box.receive("COLA", 1)
    response = await box.post("sale", {"lines": [{"code": "COLA", "qty": 1}]}, key="k" * 200)
    assert response.status_code == 201


async def test_device_header_is_recorded_and_validated(box: Box) -> None:
    await box.receive("COLA", 5)
    ok = await box.post("sale", {"lines": [{"code": "COLA", "qty": 1}]}, key="d1", **{"X-Device-Id": "pos-01"})
    assert ok.status_code == 201
    assert ok.json()["document"]["device"] == "pos-01"
    bad = await box.post("sale", {"lines": [{"code": "COLA", "qty": 1}]}, key="d2", **{"X-Device-Id": "POS 01"})
    assert bad.status_code == 422
    assert "X-Device-Id" in assert_error_shape(bad)["message"]


async def test_reversal_takes_the_stock_back_once(box: Box) -> None:
    receipt_id = await box.receive("COLA", 10)
    response = await box.client.post(
        f"/api/v1/documents/{receipt_id}/reverse",
        json={"reason_text": "录错数量 wrong quantity"},
        headers={**box.auth("manager"), "Idempotency-Key": "rev-1"},
    )
    assert response.status_code == 201, response.text
    reversal = response.json()["document"]
    assert reversal["type"] == "reversal"
    assert reversal["reverses_id"] == receipt_id
    assert await stock_of(box, "COLA") == {}
    original = await box.client.get(f"/api/v1/documents/{receipt_id}", headers=box.auth("auditor"))
    assert original.json()["reversed_by"] == reversal["id"]
    again = await box.client.post(
        f"/api/v1/documents/{receipt_id}/reverse", headers={**box.auth("manager"), "Idempotency-Key": "rev-2"}
    )
    assert again.status_code == 409
    assert assert_error_shape(again)["code"] == "already_reversed"


async def test_reversing_an_unknown_document_is_404(box: Box) -> None:
    response = await box.client.post(
        "/api/v1/documents/999/reverse", headers={**box.auth("manager"), "Idempotency-Key": "rev-x"}
    )
    assert response.status_code == 404
    assert assert_error_shape(response)["code"] == "unknown_document"


async def test_customer_return_accepts_the_chinese_reason(box: Box) -> None:
    await box.receive("COLA", 5)
    sale = await box.post("sale", {"lines": [{"code": "COLA", "qty": 2}]}, role="clerk", key="s")
    response = await box.post(
        "customer_return",
        {"lines": [{"code": "COLA", "qty": 1}], "reason": "包装破损", "ref_id": sale.json()["document_id"]},
        role="clerk",
        key="r",
    )
    assert response.status_code == 201, response.text
    assert response.json()["document"]["reason"] == "damaged_packaging"


async def test_stocktake_counts_zero_and_write_off_needs_a_reason(box: Box) -> None:
    await box.receive("COLA", 5)
    count = await box.post("stocktake", {"lines": [{"code": "COLA", "qty": 0}]}, role="clerk", key="st")
    assert count.status_code == 201, count.text
    assert await stock_of(box, "COLA") == {}
    write_off = await box.post("write_off", {"lines": [{"code": "RICE", "qty": 1}]}, key="wo")
    assert write_off.status_code == 422
    assert "reason" in assert_error_shape(write_off)["message"]


async def test_unknown_item_is_404_naming_the_code(box: Box) -> None:
    response = await box.post("sale", {"lines": [{"code": "NOPE", "qty": 1}]}, key="u")
    assert response.status_code == 404
    body = assert_error_shape(response)
    assert (body["code"], body["detail"]) == ("unknown_item", {"item": "NOPE"})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"lines": [{"code": "COLA", "qty": 1.5}]}, "lines[0].qty"),
        ({"lines": [{"code": "COLA", "qty": "2"}]}, "lines[0].qty"),
        ({"lines": [{"code": "COLA", "qty": 0}]}, "lines[0].qty"),
        ({"lines": [{"code": "COLA", "qty": 1, "price_fen": -1}]}, "lines[0].price_fen"),
        ({"lines": [{"code": "COLA", "quantity": 1}]}, "lines[0].qty"),
        ({"lines": []}, "lines"),
        ({"lines": [{"code": "COLA", "qty": 1}], "colour": "red"}, "colour"),
        ({"lines": [{"code": "COLA", "qty": 1, "expiry": "31/12/2024"}]}, "lines[0].expiry"),
    ],
)
async def test_invalid_body_is_422_naming_the_field_in_both_languages(box: Box, body: dict, field: str) -> None:
    response = await box.post("sale", body, role=Role.CLERK, key="v")
    assert response.status_code == 422
    error = assert_error_shape(response)
    assert error["code"] == "validation_error"
    assert field in error["message"] and field in error["message_en"]
    assert field in [problem["field"] for problem in error["detail"]["errors"]]
    assert box.count("documents") == 0


async def test_purchase_order_requires_a_supplier(box: Box) -> None:
    response = await box.post("purchase_order", {"lines": [{"code": "COLA", "qty": 1}]}, role="purchaser", key="po")
    assert response.status_code == 422
    assert "counterparty" in assert_error_shape(response)["message"]


async def test_the_list_filters_by_type_business_date_number_counterparty_and_item(box: Box) -> None:
    cola = await box.receive("COLA", 24)
    await box.receive("RICE", 2, price_fen=3600)
    box.clock.advance(timedelta(days=1))
    box.tokens.clear()  # issued yesterday, expired now
    sold = await box.post("sale", {"lines": [{"code": "COLA", "qty": 1}]}, key="filter-sale")
    assert sold.status_code == 201, sold.text
    today = box.deps.today().isoformat()

    async def ids(**params: str) -> list[int]:
        answer = await box.client.get("/api/v1/documents", params=params, headers=box.auth("clerk"))
        assert answer.status_code == 200, answer.text
        return [d["id"] for d in answer.json()]

    sale = sold.json()["document_id"]
    assert await ids(since=today) == [sale]
    assert sale not in await ids(until=(box.deps.today() - timedelta(days=1)).isoformat())
    assert await ids(sku="COLA") == [sale, cola]
    assert await ids(type="receipt", sku="COLA") == [cola]
    assert await ids(q=sold.json()["doc_no"][-4:].lower(), since=today) == [sale]
    assert len(await ids(q="SUP-1")) == 2  # the counterparty, in any case
    for bad in ({"since": "yesterday"}, {"until": "2024-13-01"}, {"q": "x" * 65}):
        answer = await box.client.get("/api/v1/documents", params=bad, headers=box.auth("clerk"))
        assert answer.status_code == 422, answer.text
