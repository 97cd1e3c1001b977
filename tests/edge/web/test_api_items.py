"""Changing an item over HTTP: its VAT rate (13%, 9%, 6%, 3%, 0) applies to postings from then on."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.edge.web.apibox import Box, ServedBox, assert_error_shape, readonly


async def change(box: Box, sku: str, body: Any, role: str = "manager") -> Any:
    return await box.client.patch(f"/api/v1/items/{sku}", json=body, headers=box.auth(role))


def tax_lines(box: Box, document_id: int) -> list[tuple[str, int, int]]:
    conn = readonly(box.db_path)
    try:
        rows = conn.execute(
            "SELECT account, debit_fen, credit_fen FROM voucher_lines l JOIN vouchers v ON v.id = l.voucher_id"
            " WHERE v.document_id = ? AND account LIKE '2221%' ORDER BY line_no",
            (document_id,),
        ).fetchall()
        return [tuple(r) for r in rows]
    finally:
        conn.close()


@pytest.mark.parametrize(("rate", "tax"), [(1300, 574), (900, 412), (600, 282), (300, 145), (0, None)])
@pytest.mark.anyio
async def test_each_vat_rate_applies_to_the_next_sale(box: Box, rate: int, tax: int | None) -> None:
    await box.receive("RICE", 5, price_fen=3600)
    changed = await change(box, "RICE", {"vat_rate_bp": rate})
    assert changed.status_code == 200, changed.text
    assert changed.json()["vat_rate_bp"] == rate
    sold = await box.post("sale", {"lines": [{"code": "RICE", "qty": 1}]}, key=f"sale-{rate}")
    assert sold.status_code == 201, sold.text
    # One bag at 49.90 including VAT: 4990 x rate / (10000 + rate), rounded half-up once.
    assert tax_lines(box, sold.json()["document_id"]) == ([("22210102", 0, tax)] if tax else [])


@pytest.mark.anyio
async def test_a_change_is_audited_and_posted_documents_keep_their_rate(box: Box) -> None:
    await box.receive("COLA", 24)
    first = await box.post("sale", {"lines": [{"code": "COLA", "qty": 1}]}, key="sale-1")
    assert (await change(box, "COLA", {"vat_rate_bp": 900, "price_fen": 400, "name_en": "Cola can"})).status_code == 200
    conn = readonly(box.db_path)
    try:
        line = conn.execute(
            "SELECT vat_rate_bp, price_fen FROM document_lines WHERE document_id = ?", (first.json()["document_id"],)
        ).fetchone()
        assert tuple(line) == (1300, 350)
        audit = conn.execute("SELECT actor, action, object, detail FROM audit WHERE action = 'item.update'").fetchall()
        assert [(a[0], a[1], a[2]) for a in audit] == [("manager", "item.update", "item:COLA")]
        assert json.loads(audit[0][3])["vat_rate_bp"] == {"old": 1300, "new": 900}
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"vat_rate_bp": 500}, 422, "invalid_command"),
        ({"vat_rate_bp": "13%"}, 422, "validation_error"),
        ({"price_fen": -1}, 422, "validation_error"),
        ({"sku": "OTHER"}, 422, "validation_error"),
        ({}, 422, "validation_error"),
        ({"name": ""}, 422, "validation_error"),
    ],
)
@pytest.mark.anyio
async def test_a_bad_change_is_refused_and_changes_nothing(box: Box, body: Any, status: int, code: str) -> None:
    before = (await box.client.get("/api/v1/items/COLA", headers=box.auth("clerk"))).json()
    response = await change(box, "COLA", body)
    assert response.status_code == status, response.text
    assert assert_error_shape(response)["code"] == code
    assert (await box.client.get("/api/v1/items/COLA", headers=box.auth("clerk"))).json() == before


@pytest.mark.anyio
async def test_unknown_items_and_roles_without_the_permission_are_refused(box: Box) -> None:
    assert (await change(box, "NOPE", {"vat_rate_bp": 900})).status_code == 404
    for role in ("clerk", "accountant", "auditor"):
        assert (await change(box, "COLA", {"vat_rate_bp": 900}, role=role)).status_code == 403
    assert (await change(box, "COLA", {"vat_rate_bp": 900}, role="purchaser")).status_code == 200


garbage = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["name", "vat_rate_bp", "price_fen", "cost_fen", "active", "x"]), garbage))
def test_garbage_changes_are_refused_cleanly_or_applied_whole(served_box: ServedBox, body: dict[str, Any]) -> None:
    with httpx.Client(base_url=served_box.url, headers=served_box.auth("admin"), timeout=10) as http:
        before = http.get("/api/v1/items/RICE").json()
        response = http.patch(
            "/api/v1/items/RICE",
            content=json.dumps(body, allow_nan=True).encode(),
            headers={"Content-Type": "application/json"},
        )
        after = http.get("/api/v1/items/RICE").json()
    if response.status_code == 200:
        assert all(after[k] == v for k, v in body.items())
    else:
        assert 400 <= response.status_code < 500, response.text
        assert_error_shape(response)
        assert after == before


@pytest.mark.anyio
async def test_an_item_name_with_a_nul_character_is_refused(box: Box) -> None:
    """No database downstream stores NUL in text (PostgreSQL at HQ refuses it): refused at the door."""
    answer = await change(box, "COLA", {"name": "可乐\u0000X"})
    assert answer.status_code == 422, answer.text
    assert_error_shape(answer)
    assert (await change(box, "COLA", {"name": "可乐 X"})).status_code == 200


# --- search (the page's stock search box) -----------------------------------------------------------------------


async def search(box: Box, q: str, role: str = "clerk", **params: Any) -> httpx.Response:
    return await box.client.get("/api/v1/items/search", params={"q": q, **params}, headers=box.auth(role))


@pytest.mark.parametrize(
    ("query", "sku", "how"),
    [
        ("kl", "COLA", "pinyin"),  # pinyin initials of 可乐
        ("kele", "COLA", "pinyin"),
        ("xianniunai", "MILK", "pinyin"),
        ("鲜牛奶", "MILK", "name"),
        ("fresh", "MILK", "english"),
        ("cola", "COLA", "sku"),
        ("6901234567809", "COLA", "barcode"),  # the case barcode
        ("690987", "MILK", "text"),  # part of a barcode
        ("RIC", "RICE", "text"),  # part of a SKU
    ],
)
@pytest.mark.anyio
async def test_search_finds_items_by_name_pinyin_sku_and_barcode(box: Box, query: str, sku: str, how: str) -> None:
    await box.receive("COLA", 48)
    answer = await search(box, query)
    assert answer.status_code == 200, answer.text
    found = answer.json()["items"]
    assert found[0]["sku"] == sku, found
    assert found[0]["matched_by"] == how
    if sku == "COLA":
        assert found[0]["on_hand"] == {"floor": 48} and found[0]["total"] == 48


@pytest.mark.anyio
async def test_search_follows_a_changed_name_and_leaves_out_inactive_items(box: Box) -> None:
    assert (await search(box, "shuijiao")).json()["items"] == []
    built = box.app.state.emergency_index
    assert (await search(box, "kl")).status_code == 200
    assert box.app.state.emergency_index is built  # same master data, same index (shared with emergency requests)
    assert (await change(box, "RICE", {"name": "三全水饺 1kg"})).status_code == 200
    assert [i["sku"] for i in (await search(box, "shuijiao")).json()["items"]] == ["RICE"]
    assert (await change(box, "RICE", {"active": False})).status_code == 200
    assert (await search(box, "shuijiao")).json()["items"] == []


@pytest.mark.anyio
async def test_search_needs_a_query_and_a_login(box: Box) -> None:
    for params in ({"q": ""}, {"q": "x" * 101}, {"q": "kl", "limit": 0}, {}):
        answer = await box.client.get("/api/v1/items/search", params=params, headers=box.auth("clerk"))
        assert answer.status_code == 422, answer.text
        assert_error_shape(answer)
    assert (await box.client.get("/api/v1/items/search", params={"q": "kl"})).status_code == 401
    assert (await search(box, "   ")).json()["items"] == []  # blanks name nothing (not every name with a space)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(q=st.text(min_size=1, max_size=100))
def test_any_query_answers_a_list_or_a_clean_refusal(served_box: ServedBox, q: str) -> None:
    with httpx.Client(base_url=served_box.url, headers=served_box.auth("clerk"), timeout=10) as http:
        response = http.get("/api/v1/items/search", params={"q": q})
    if response.status_code == 200:
        assert isinstance(response.json()["items"], list)
    else:
        assert response.status_code == 422, response.text
        assert_error_shape(response)


@pytest.mark.anyio
async def test_item_sales_by_day_net_of_returns_and_reversals(box: Box) -> None:
    await box.receive("COLA", 48)
    for key, qty in (("s1", 3), ("s2", 2)):
        assert (await box.post("sale", {"lines": [{"code": "COLA", "qty": qty}]}, key=key)).status_code == 201
    returned = await box.post(
        "customer_return", {"lines": [{"code": "COLA", "qty": 1}], "reason": "taste"}, key="r1", role="manager"
    )
    assert returned.status_code == 201, returned.text
    third = await box.post("sale", {"lines": [{"code": "COLA", "qty": 4}]}, key="s3")
    reverse = await box.client.post(
        f"/api/v1/documents/{third.json()['document_id']}/reverse",
        headers={**box.auth("manager"), "Idempotency-Key": "rev-s3"},
    )
    assert reverse.status_code == 201, reverse.text
    answer = await box.client.get("/api/v1/items/COLA/sales", params={"days": 7}, headers=box.auth("clerk"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["base_unit"] == "piece"
    assert len(body["days"]) == 7
    assert body["days"][-1] == {"date": box.deps.today().isoformat(), "qty": 4}
    assert all(day["qty"] == 0 for day in body["days"][:-1])
    assert (await box.client.get("/api/v1/items/NOPE/sales", headers=box.auth("clerk"))).status_code == 404
    bad = await box.client.get("/api/v1/items/COLA/sales", params={"days": 0}, headers=box.auth("clerk"))
    assert bad.status_code == 422


@pytest.mark.anyio
async def test_item_sales_include_imported_history_on_its_day(box: Box) -> None:
    yesterday = box.deps.today() - timedelta(days=1)
    csv = f"sku,location,date,qty\nCOLA,floor,{yesterday.isoformat()},7\nCOLA,backroom,{yesterday.isoformat()},2\n"
    imported = await box.client.post(
        "/api/v1/replenishment/history",
        params={"source": "old-pos.csv"},
        content=csv.encode(),
        headers={**box.auth("manager"), "Content-Type": "text/csv", "Idempotency-Key": "hist-1"},
    )
    assert imported.status_code in (200, 201), imported.text
    days = (await box.client.get("/api/v1/items/COLA/sales", params={"days": 2}, headers=box.auth("clerk"))).json()
    assert days["days"] == [{"date": yesterday.isoformat(), "qty": 9}, {"date": box.deps.today().isoformat(), "qty": 0}]


@pytest.mark.anyio
async def test_the_item_list_can_carry_each_items_on_hand(box: Box) -> None:
    await box.receive("COLA", 10)
    await box.receive("RICE", 2, price_fen=3600, location="backroom")
    plain = await box.client.get("/api/v1/items", headers=box.auth("clerk"))
    assert all(item["on_hand_total"] is None for item in plain.json())
    listed = await box.client.get("/api/v1/items?with_stock=true", headers=box.auth("clerk"))
    totals = {item["sku"]: item["on_hand_total"] for item in listed.json()}
    assert totals == {"COLA": 10, "MILK": 0, "RICE": 2}
