"""Changing an item over HTTP: its VAT rate (13%, 9%, 6%, 3%, 0) applies to postings from then on."""

from __future__ import annotations

import json
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
