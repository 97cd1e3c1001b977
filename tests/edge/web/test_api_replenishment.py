"""Replenishment over HTTP: item supplier parameters, running the plan, suggestions, approving into a PO (the
finance guards apply), rejecting with a reason, the history import, permissions and garbage bodies."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.security.roles import Role
from tests.edge.web.apibox import Box, ServedBox, assert_error_shape

pytestmark = pytest.mark.anyio


async def set_up(box: Box) -> dict[str, int]:
    """COLA bought from sup-1 by the case, received and sold today so that the plan orders."""
    headers = {**box.auth(Role.MANAGER), "Idempotency-Key": "sup-cola"}
    response = await box.client.put(
        "/api/v1/replenishment/items/COLA/supplier",
        json={"supplier": "sup-1", "unit": "case", "moq": 1, "lead_time_days": 3},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["suppliers"][0]["pack"] == 24
    await box.receive("COLA", 100)
    response = await box.post("sale", {"lines": [{"code": "COLA", "qty": 90}], "payment": "cash"}, key="sale-1")
    assert response.status_code == 201, response.text
    history = "sku,location,date,qty\n" + "".join(f"COLA,floor,2024-05-{d:02d},40\n" for d in range(1, 32))
    response = await box.client.post(
        "/api/v1/replenishment/history",
        content=history.encode(),
        headers={**box.auth(Role.MANAGER), "Idempotency-Key": "hist-1", "Content-Type": "text/csv"},
        params={"source": "old-pos.csv"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["rows"] == 31
    again = await box.client.post(
        "/api/v1/replenishment/history",
        content=history.encode(),
        headers={**box.auth(Role.MANAGER), "Idempotency-Key": "hist-1", "Content-Type": "text/csv"},
    )
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == response.json()["id"]
    response = await box.client.post("/api/v1/replenishment/run", json={}, headers=box.auth(Role.PURCHASER))
    assert response.status_code == 200, response.text
    assert response.json()["series"] == 1 and response.json()["rows"] == 1
    page = (await box.client.get("/api/v1/replenishment/suggestions", headers=box.auth(Role.CLERK))).json()
    assert page["total"] == 1
    return {"suggestion": page["items"][0]["id"]}


async def test_run_list_and_approve_into_a_purchase_order(box: Box) -> None:
    ids = await set_up(box)
    one = await box.client.get(f"/api/v1/replenishment/suggestions/{ids['suggestion']}", headers=box.auth("auditor"))
    body = one.json()
    assert body["sku"] == "COLA" and body["unit"] == "case" and body["qty"] >= 1
    assert "建议订" in body["explanation"] and "order" in body["explanation_en"]
    assert body["inputs"]["on_hand"] == 10
    headers = {**box.auth(Role.PURCHASER), "Idempotency-Key": "approve-1"}
    url = f"/api/v1/replenishment/suggestions/{ids['suggestion']}/approve"
    approved = await box.client.post(url, json={"qty": 5}, headers=headers)
    assert approved.status_code == 200, approved.text
    assert approved.json()["state"] == "approved" and approved.json()["approved_qty"] == 5
    po_id = approved.json()["po_id"]
    document = await box.client.get(f"/api/v1/documents/{po_id}", headers=box.auth(Role.MANAGER))
    assert document.status_code == 200, document.text
    po = document.json()
    assert po["type"] == "purchase_order" and po["counterparty"] == "sup-1"
    assert [(line["sku"], line["unit"], line["qty"]) for line in po["lines"]] == [("COLA", "case", 5)]
    again = await box.client.post(url, json={"qty": 5}, headers=headers)
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["po_id"] == po_id
    later = await box.client.post(url, headers={**box.auth(Role.PURCHASER), "Idempotency-Key": "approve-2"})
    assert later.status_code == 409 and assert_error_shape(later)["code"] == "suggestion_not_open"
    runs = (await box.client.get("/api/v1/replenishment/runs", headers=box.auth(Role.CLERK))).json()
    assert runs[0]["trigger"] == "api" and runs[0]["rows"] == 1
    item = (await box.client.get("/api/v1/replenishment/items/COLA", headers=box.auth(Role.CLERK))).json()
    assert item["locations"][0]["on_order"] == 5 * 24
    assert len(item["locations"][0]["forecast"]) == 14 and item["suppliers"][0]["supplier"] == "sup-1"
    profile = item["locations"][0]["hourly_profile"]  # COLA sells about 40 a day: a fast mover
    assert profile is not None and len(profile) == 24 and abs(sum(profile) - 1) < 1e-3
    # The 90 sold at 02:00 UTC are 10:00 in Shanghai.
    assert profile[10] == max(profile)


async def test_a_frozen_supplier_refuses_the_approval_and_the_suggestion_stays_open(box: Box) -> None:
    ids = await set_up(box)
    freeze = await box.client.post(
        "/api/v1/suppliers/sup-1/freezes",
        json={"note": "资质待核"},
        headers={**box.auth(Role.ADMIN), "Idempotency-Key": "freeze-1"},
    )
    assert freeze.status_code in (200, 201), freeze.text
    url = f"/api/v1/replenishment/suggestions/{ids['suggestion']}/approve"
    refused = await box.client.post(url, headers={**box.auth(Role.MANAGER), "Idempotency-Key": "a-1"})
    assert refused.status_code == 409, refused.text
    assert assert_error_shape(refused)["code"] == "supplier_frozen"
    one = await box.client.get(f"/api/v1/replenishment/suggestions/{ids['suggestion']}", headers=box.auth("clerk"))
    assert one.json()["state"] == "open"
    batch = await box.client.post(
        "/api/v1/replenishment/suggestions/approve",
        json={"suggestions": [{"id": ids["suggestion"]}]},
        headers={**box.auth(Role.MANAGER), "Idempotency-Key": "a-2"},
    )
    assert batch.status_code == 200 and batch.json()["refused"][0]["code"] == "supplier_frozen"


async def test_reject_needs_a_reason_and_keeps_it(box: Box) -> None:
    ids = await set_up(box)
    url = f"/api/v1/replenishment/suggestions/{ids['suggestion']}/reject"
    missing = await box.client.post(url, json={}, headers={**box.auth(Role.MANAGER), "Idempotency-Key": "r-0"})
    assert missing.status_code == 422 and assert_error_shape(missing)["code"] == "validation_error"
    done = await box.client.post(
        url, json={"reason": "促销结束，暂停订货"}, headers={**box.auth(Role.MANAGER), "Idempotency-Key": "r-1"}
    )
    assert done.status_code == 200, done.text
    assert done.json()["state"] == "rejected" and done.json()["reject_reason"] == "促销结束，暂停订货"
    listed = await box.client.get(
        "/api/v1/replenishment/suggestions", params={"state": "rejected"}, headers=box.auth(Role.AUDITOR)
    )
    assert listed.json()["items"][0]["reject_reason"] == "促销结束，暂停订货"


async def test_permissions(box: Box) -> None:
    await set_up(box)
    clerk = {**box.auth(Role.CLERK), "Idempotency-Key": "c-1"}
    assert (await box.client.post("/api/v1/replenishment/run", headers=clerk)).status_code == 403
    forbidden = await box.client.post("/api/v1/replenishment/suggestions/1/approve", headers=clerk)
    assert forbidden.status_code == 403 and assert_error_shape(forbidden)["code"]
    unknown = await box.client.get("/api/v1/replenishment/suggestions/999", headers=box.auth(Role.CLERK))
    assert unknown.status_code == 404 and assert_error_shape(unknown)["code"] == "suggestion_not_found"
    assert (await box.client.get("/api/v1/replenishment/suggestions")).status_code == 401


async def test_a_bad_history_file_is_refused_by_line(box: Box) -> None:
    response = await box.client.post(
        "/api/v1/replenishment/history",
        content=b"sku,location,date,qty\nCOLA,floor,2024-05-01,ten\nNOPE,floor,2024-05-02,1\n",
        headers={**box.auth(Role.MANAGER), "Idempotency-Key": "h-1", "Content-Type": "text/csv"},
    )
    assert response.status_code == 422
    body = assert_error_shape(response)
    assert body["code"] == "history_invalid" and body["detail"]["problems"][0]["line"] == 2


bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
GARBAGE_TARGETS = (
    ("post", "/api/v1/replenishment/suggestions/1/approve"),
    ("post", "/api/v1/replenishment/suggestions/approve"),
    ("post", "/api/v1/replenishment/suggestions/1/reject"),
    ("post", "/api/v1/replenishment/run"),
    ("put", "/api/v1/replenishment/items/COLA/supplier"),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(GARBAGE_TARGETS), body=bodies)
async def test_garbage_bodies_are_answered_with_a_json_error(box: Box, target: tuple[str, str], body: object) -> None:
    method, url = target
    headers = {**box.auth(Role.ADMIN), "Idempotency-Key": "garbage"}
    response = await box.client.request(method, url, json=body, headers=headers)
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert_error_shape(response)


def test_suggestions_over_real_http(served_box: ServedBox) -> None:
    with httpx.Client(base_url=served_box.url, timeout=30) as client:
        response = client.get("/api/v1/replenishment/suggestions", headers=served_box.auth(Role.MANAGER))
        assert response.status_code == 200 and response.json()["items"] == []
        run = client.post("/api/v1/replenishment/run", json={"skus": ["COLA"]}, headers=served_box.auth("manager"))
        assert run.status_code == 200 and run.json()["partial"] is True
        item = client.get("/api/v1/replenishment/items/RICE", headers=served_box.auth(Role.MANAGER))
        assert item.status_code == 404 and item.json()["code"] == "item_not_planned"
