"""Emergency requests over real HTTP: parse (nothing written), create once per key, neighbours' stock, transfer
requests, the urgent purchase order through the ledger and its finance guard."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from typing import Any

import pytest

from edge.db import connect
from edge.security.roles import Role
from tests.edge.web.apibox import Box, assert_error_shape

pytestmark = pytest.mark.anyio

PARSE = "/api/v1/replenishment/emergency/parse"
CREATE = "/api/v1/replenishment/emergency"
PEER = "/api/v1/replenishment/peer-stock"
TRANSFERS = "/api/v1/replenishment/transfer-requests"


async def parse(box: Box, text: str, role: Role = Role.CLERK) -> dict[str, Any]:
    response = await box.client.post(PARSE, json={"text": text}, headers=box.auth(role))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def load_peers(box: Box, store: str, rows: list[dict[str, Any]]) -> Any:
    return await box.client.post(PEER, json={"store": store, "rows": rows}, headers=box.auth(Role.PURCHASER))


def rows_of(box: Box, sql: str) -> list[sqlite3.Row]:
    conn = connect(box.db_path, readonly=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


async def test_parse_reads_the_text_and_writes_nothing(box: Box) -> None:
    before = box.counts()
    body = await parse(box, "急需 可乐 5箱 明早前到 车载调拨")
    p = body["parse"]
    assert (p["sku"], p["quantity"], p["unit"], p["item_unit"], p["qty_base"]) == ("COLA", 5, "箱", "case", 120)
    assert p["vehicle"] and p["urgent"] and p["mode"] == "transfer" and p["complete"]
    assert p["deadline"] == "2024-06-02T08:00:00+08:00"  # T0 is 10:00 in Shanghai
    assert "可乐" in body["summary"] and "vehicle transfer" in body["summary_en"]
    # No neighbour has it and no PO or receipt names a supplier yet: nothing to propose.
    assert body["proposal"]["action"] == "none"
    assert box.counts() == before
    assert box.count("emergency_requests") == 0


async def test_neighbour_with_stock_gets_a_draft_transfer_request_once_per_key(box: Box) -> None:
    loaded = await load_peers(box, "store-002", [{"sku": "COLA", "qty": 500, "eta_minutes": 30}])
    assert loaded.status_code == 200, loaded.text
    assert loaded.json()["rows"] == 1
    body = await parse(box, "可乐 5箱 明早前 调拨")
    assert body["proposal"]["action"] == "transfer"
    assert body["proposal"]["source_store"] == "store-002"
    assert (body["proposal"]["qty"], body["proposal"]["unit"]) == (5, "case")

    headers = {**box.auth(Role.CLERK), "Idempotency-Key": "em-1"}
    first = await box.client.post(CREATE, json={"text": "可乐 5箱 明早前 调拨"}, headers=headers)
    assert first.status_code == 201, first.text
    created = first.json()
    assert created["action"] == "transfer" and created["transfer_id"] and not created["replayed"]
    again = await box.client.post(CREATE, json={"text": "可乐 5箱 明早前 调拨"}, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == created["id"]
    assert box.count("transfer_requests") == 1
    other = await box.client.post(CREATE, json={"text": "可乐 6箱 明早前 调拨"}, headers=headers)
    assert other.status_code == 409 and assert_error_shape(other)["code"] == "emergency_key_reused"

    listed = await box.client.get(TRANSFERS, headers=box.auth(Role.AUDITOR))
    assert [(t["from_store"], t["to_store"], t["qty_base"], t["state"]) for t in listed.json()] == [
        ("store-002", "store-001", 120, "draft")
    ]
    cancel = f"{TRANSFERS}/{created['transfer_id']}/cancel"
    done = await box.client.post(cancel, json={"reason": "自己找到了"}, headers=box.auth(Role.CLERK))
    assert done.status_code == 200 and done.json()["state"] == "cancelled"
    twice = await box.client.post(cancel, json={"reason": "again"}, headers=box.auth(Role.CLERK))
    assert twice.status_code == 200 and twice.json()["cancel_reason"] == "自己找到了"
    history = await box.client.get(CREATE, headers=box.auth(Role.MANAGER))
    assert [e["id"] for e in history.json()] == [created["id"]]


async def test_cold_chain_that_the_neighbour_cannot_keep_becomes_an_urgent_po_through_the_ledger(box: Box) -> None:
    await box.receive("MILK", 12, price_fen=900)  # the supplier of its last receipt: sup-1
    loaded = await load_peers(
        box, "store-002", [{"sku": "MILK", "qty": 100, "storage_class": "chilled", "cold_chain_capable": False}]
    )
    assert loaded.status_code == 200, loaded.text
    text = "鲜牛奶 24瓶 冷藏 0-4度 今晚8点前"
    body = await parse(box, text)
    assert body["parse"]["cold_chain"] == "chilled"
    proposal = body["proposal"]
    assert proposal["action"] == "purchase" and proposal["supplier"] == "sup-1"
    assert proposal["options"][0]["eligible"] is False
    assert "cannot ship chilled" in proposal["options"][0]["reasons_en"]

    response = await box.client.post(
        CREATE, json={"text": text}, headers={**box.auth(Role.PURCHASER), "Idempotency-Key": "em-po"}
    )
    assert response.status_code == 201, response.text
    document_id = response.json()["document_id"]
    doc = rows_of(box, f"SELECT type, counterparty, note FROM documents WHERE id = {int(document_id)}")[0]
    assert doc["type"] == "purchase_order" and doc["counterparty"] == "sup-1"
    assert "紧急采购" in doc["note"] and "2024-06-01 20:00" in doc["note"]


async def test_overrides_settle_an_ambiguous_or_incomplete_request(box: Box) -> None:
    await load_peers(box, "store-002", [{"sku": "RICE", "qty": 40}])
    incomplete = await box.client.post(
        CREATE, json={"text": "大米 明天"}, headers={**box.auth(Role.CLERK), "Idempotency-Key": "em-x"}
    )
    assert incomplete.status_code == 422
    assert assert_error_shape(incomplete)["code"] == "emergency_incomplete"
    fixed = await box.client.post(
        CREATE,
        json={"text": "大米 明天", "overrides": {"quantity": 3, "mode": "transfer"}},
        headers={**box.auth(Role.CLERK), "Idempotency-Key": "em-y"},
    )
    assert fixed.status_code == 201, fixed.text
    assert fixed.json()["qty_base"] == 3


async def test_parse_with_overrides_shows_what_the_create_would_do_and_writes_nothing(box: Box) -> None:
    await load_peers(box, "store-002", [{"sku": "RICE", "qty": 40}])
    before = box.counts()
    body = {"text": "大米 明天", "overrides": {"quantity": 3, "mode": "transfer"}}
    response = await box.client.post(PARSE, json=body, headers=box.auth(Role.CLERK))
    assert response.status_code == 200, response.text
    shown = response.json()
    assert (shown["parse"]["quantity"], shown["parse"]["qty_base"], shown["parse"]["complete"]) == (3, 3, True)
    assert shown["proposal"]["action"] == "transfer" and shown["proposal"]["qty_base"] == 3
    assert box.counts() == before and box.count("emergency_requests") == 0
    bad = await box.client.post(
        PARSE, json={"text": "大米", "overrides": {"quantity": -1}}, headers=box.auth(Role.CLERK)
    )
    assert bad.status_code == 422 and assert_error_shape(bad)["code"] == "validation_error"


async def test_peer_stock_is_validated_and_replaced_whole(box: Box) -> None:
    bad = await load_peers(box, "store-002", [{"sku": "COLA", "qty": 5}, {"sku": "NOPE", "qty": 1}])
    assert bad.status_code == 422
    body = assert_error_shape(bad)
    assert body["code"] == "peer_stock_invalid" and body["detail"]["problems"][0]["row"] == 1
    assert box.count("peer_stock") == 0
    local = await load_peers(box, "store-001", [{"sku": "COLA", "qty": 5}])
    assert local.status_code == 422
    assert (
        await load_peers(box, "store-002", [{"sku": "COLA", "qty": 5}, {"sku": "RICE", "qty": 2}])
    ).status_code == 200
    assert (await load_peers(box, "store-002", [{"sku": "MILK", "qty": 7}])).status_code == 200
    assert [(r["sku"], r["qty"]) for r in rows_of(box, "SELECT sku, qty FROM peer_stock")] == [("MILK", 7)]
    clerk = await box.client.post(PEER, json={"store": "store-002", "rows": []}, headers=box.auth(Role.CLERK))
    assert clerk.status_code == 403


@pytest.mark.parametrize("text", ["", " ", "\x00\x01", "箱" * 6000, "急" * 600])
async def test_unusable_text_is_a_clear_422(box: Box, text: str) -> None:
    response = await box.client.post(PARSE, json={"text": text}, headers=box.auth(Role.CLERK))
    assert response.status_code == 422, response.text
    assert_error_shape(response)


async def test_auditor_may_read_but_not_parse(box: Box) -> None:
    response = await box.client.post(PARSE, json={"text": "可乐 5箱"}, headers=box.auth(Role.AUDITOR))
    assert response.status_code == 403
    assert (await box.client.get(CREATE, headers=box.auth(Role.AUDITOR))).status_code == 200


async def test_a_retry_later_is_still_the_same_request(box: Box) -> None:
    await load_peers(box, "store-002", [{"sku": "COLA", "qty": 500}])
    headers = {**box.auth(Role.CLERK), "Idempotency-Key": "em-later"}
    body = {"text": "可乐 2箱 2小时内", "overrides": {"vehicle": True}}
    first = await box.client.post(CREATE, json=body, headers=headers)
    assert first.status_code == 201, first.text
    box.clock.advance(timedelta(minutes=3))  # the deadline read now would be 3 minutes later
    again = await box.client.post(CREATE, json=body, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


async def test_a_stale_report_is_not_used(box: Box) -> None:
    stale = (box.clock() - timedelta(days=3)).isoformat()
    response = await box.client.post(
        PEER,
        json={"store": "store-002", "as_of": stale, "rows": [{"sku": "COLA", "qty": 500}]},
        headers=box.auth(Role.MANAGER),
    )
    assert response.status_code == 200, response.text
    proposal = (await parse(box, "可乐 2箱 调拨"))["proposal"]
    assert proposal["action"] == "none"
    assert "stock report too old" in proposal["options"][0]["reasons_en"][0]
