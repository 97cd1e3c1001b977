from __future__ import annotations

from typing import Any

import pytest

from tests.edge.web.apibox import COLA_CASE, COLA_PIECE, Box, assert_error_shape

pytestmark = pytest.mark.anyio


async def get(box: Box, path: str, role: str = "auditor", **params: Any) -> Any:
    response = await box.client.get(path, params=params, headers=box.auth(role))
    assert response.status_code == 200, response.text
    return response.json()


async def test_items_search_by_name_sku_or_barcode_and_page(box: Box) -> None:
    assert [i["sku"] for i in await get(box, "/api/v1/items")] == ["COLA", "MILK", "RICE"]
    assert [i["sku"] for i in await get(box, "/api/v1/items", q="牛奶")] == ["MILK"]
    assert [i["sku"] for i in await get(box, "/api/v1/items", q=COLA_CASE[-5:])] == ["COLA"]
    assert [i["sku"] for i in await get(box, "/api/v1/items", limit=1, offset=1)] == ["MILK"]


async def test_item_detail_has_units_barcodes_and_stock(box: Box) -> None:
    await box.receive("COLA", 30)
    item = await get(box, "/api/v1/items/COLA", role="clerk")
    assert isinstance(item, dict)
    assert item["units"] == {"piece": 1, "case": 24}
    assert item["barcodes"] == [{"code": COLA_CASE, "unit": "case"}, {"code": COLA_PIECE, "unit": "piece"}]
    assert item["on_hand"] == {"floor": 30}
    assert item["lot_tracked"] is False


async def test_unknown_item_and_barcode_are_404(box: Box) -> None:
    for path in ("/api/v1/items/NOPE", "/api/v1/barcodes/0000000000000"):
        response = await box.client.get(path, headers=box.auth("clerk"))
        assert response.status_code == 404
        assert assert_error_shape(response)["code"] == "unknown_item"


async def test_case_barcode_answers_the_case_unit(box: Box) -> None:
    found = await get(box, f"/api/v1/barcodes/{COLA_CASE}", role="clerk")
    assert found == {
        "barcode": COLA_CASE,
        "unit": "case",
        "factor": 24,
        "sku": "COLA",
        "name": "可乐 330ml",
        "name_en": "Cola 330ml",
        "base_unit": "piece",
        "price_fen": 350,
    }


async def test_master_data_lists(box: Box) -> None:
    assert [loc["code"] for loc in await get(box, "/api/v1/locations")] == ["backroom", "cold", "floor", "transit"]
    assert [s["id"] for s in await get(box, "/api/v1/suppliers")] == ["sup-1"]
    stores = await get(box, "/api/v1/stores")
    assert [(s["id"], s["is_local"]) for s in stores] == [("store-001", True), ("store-002", False)]


async def test_stock_is_a_list_of_rows_filtered_and_paged(box: Box) -> None:
    await box.receive("COLA", 10)
    await box.receive("MILK", 4, price_fen=900, lot="L240601", expiry="2024-06-08", location="cold")
    await box.receive("RICE", 2, price_fen=3600, location="backroom")
    rows = await get(box, "/api/v1/stock", role="clerk")
    assert isinstance(rows, list)
    assert [(r["sku"], r["location"], r["lot"], r["qty"]) for r in rows] == [
        ("COLA", "floor", "", 10),
        ("MILK", "cold", "L240601", 4),
        ("RICE", "backroom", "", 2),
    ]
    for row in rows:
        assert {"sku", "location", "lot", "qty", "value_fen"} <= set(row)
        assert isinstance(row["value_fen"], int)
    assert rows[1]["expiry"] == "2024-06-08"
    assert [r["sku"] for r in await get(box, "/api/v1/stock", location="cold")] == ["MILK"]
    assert [r["sku"] for r in await get(box, "/api/v1/stock", lot="L240601")] == ["MILK"]
    assert [r["sku"] for r in await get(box, "/api/v1/stock", limit=1, offset=2)] == ["RICE"]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 10001}, {"offset": -1}, {"limit": "many"}])
async def test_stock_paging_limits_are_enforced(box: Box, params: dict[str, object]) -> None:
    response = await box.client.get("/api/v1/stock", params=params, headers=box.auth("clerk"))
    assert response.status_code == 422
    body = assert_error_shape(response)
    assert next(iter(params)) in body["message"]


async def test_stock_limit_of_10000_is_allowed(box: Box) -> None:
    assert await get(box, "/api/v1/stock", limit=10000) == []


async def test_valuation_totals_by_location(box: Box) -> None:
    await box.receive("COLA", 10, price_fen=113)
    await box.receive("RICE", 1, price_fen=3600, location="backroom")
    valuation = await get(box, "/api/v1/stock/valuation", role="accountant")
    assert isinstance(valuation, dict)
    assert set(valuation) == {"value_fen", "by_location"}
    assert valuation["by_location"] == {"floor": 1000, "backroom": 3303}
    assert valuation["value_fen"] == 4303


async def test_moves_documents_and_vouchers_filter_by_document(box: Box) -> None:
    first = await box.receive("COLA", 10)
    second = await box.receive("RICE", 1, price_fen=3600)
    moves = await get(box, "/api/v1/stock/moves", document_id=second)
    assert [(m["sku"], m["qty"]) for m in moves] == [("RICE", 1)]
    assert [m["document_id"] for m in await get(box, "/api/v1/stock/moves", sku="COLA")] == [first]
    documents = await get(box, "/api/v1/documents", type="receipt")
    assert [d["id"] for d in documents] == [second, first]
    assert await get(box, "/api/v1/documents", type="sale") == []
    vouchers = await get(box, "/api/v1/vouchers", document_id=first)
    assert [v["document_id"] for v in vouchers] == [first]
    assert len(await get(box, "/api/v1/vouchers", limit=1)) == 1


async def test_unknown_document_type_filter_is_422(box: Box) -> None:
    response = await box.client.get("/api/v1/documents", params={"type": "invoice"}, headers=box.auth("auditor"))
    assert response.status_code == 422
    assert "type" in assert_error_shape(response)["message"]


async def test_unknown_document_is_404(box: Box) -> None:
    response = await box.client.get("/api/v1/documents/42", headers=box.auth("auditor"))
    assert response.status_code == 404
    assert assert_error_shape(response)["detail"] == {"document": 42}


async def test_clerk_reads_documents_without_their_voucher_or_amounts(box: Box) -> None:
    document_id = await box.receive("COLA", 10)
    as_clerk = await get(box, f"/api/v1/documents/{document_id}", role="clerk")
    as_accountant = await get(box, f"/api/v1/documents/{document_id}", role="accountant")
    assert isinstance(as_clerk, dict) and isinstance(as_accountant, dict)
    assert as_clerk["voucher"] is None
    assert as_accountant["voucher"]["document_id"] == document_id
    assert as_accountant["gross_fen"] > 0 and as_accountant["moves"][0]["value_fen"] > 0
    # The clerk sees what moved, not what it cost (amounts:read): every amount is null, the rest the same.
    assert as_clerk["gross_fen"] is None and as_clerk["tax_fen"] is None and as_clerk["cost_fen"] is None
    assert [(m["sku"], m["qty"], m["value_fen"]) for m in as_clerk["moves"]] == [
        (m["sku"], m["qty"], None) for m in as_accountant["moves"]
    ]
    assert all(line["gross_fen"] is None and line["price_fen"] is None for line in as_clerk["lines"])
    listed = await get(box, "/api/v1/documents", role="clerk")
    assert isinstance(listed, list) and listed[0]["id"] == document_id and listed[0]["gross_fen"] is None


async def test_ledger_verify_reports_a_clean_ledger(box: Box) -> None:
    await box.receive("COLA", 10)
    await box.post("sale", {"lines": [{"code": "COLA", "qty": 3}]}, key="s")
    response = await box.client.post("/api/v1/ledger/verify", headers=box.auth("auditor"))
    assert response.status_code == 200
    report = response.json()
    assert report["ok"] is True
    assert report["balances"] == [] and report["vouchers"] == [] and report["audit"] == []
    assert report["checked"]["documents"] == 2
