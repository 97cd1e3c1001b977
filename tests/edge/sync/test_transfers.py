"""Box side of cross-store transfers: parsers of the aggregator's answers (hypothesis), ranking of sources, and the
receiving API over a real box (its own SQLite file, the real ledger writer) with its permissions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.db import connect
from edge.replenishment.emergency_orders import PeerStockRow
from edge.sync import transfers as tr
from edge.web.api import create_api
from tests.edge.web.apibox import Box, Clock, build_deps, make_writer, seed

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=30,
)
part_like = st.fixed_dictionaries(
    {"sku": st.text(max_size=70), "qty": st.integers(-3, 10**12), "value_fen": st.integers(-3, 10**14)},
    optional={
        "lot": st.text(max_size=70) | st.none(),
        "expiry": st.text(max_size=12) | st.dates().map(date.isoformat) | st.none(),
        "received_qty": st.integers(-2, 100) | st.none() | st.booleans(),
    },
)


@given(st.one_of(json_values, st.lists(part_like, max_size=5)))
def test_parse_parts_accepts_well_formed_parts_and_refuses_anything_else_cleanly(raw: Any) -> None:
    try:
        parts = tr.parse_parts(raw)
    except tr.InvalidCount:
        return
    assert parts and all(p.qty >= 1 and p.value_fen >= 0 and isinstance(p.sku, str) for p in parts)
    assert [p.part_no for p in parts] == list(range(1, len(parts) + 1))


@given(json_values)
def test_parse_peer_rows_never_fails_other_than_cleanly(raw: Any) -> None:
    try:
        rows = tr.parse_peer_rows(raw, "COLA", datetime(2026, 12, 5, tzinfo=UTC))
    except tr.InvalidCount:
        return
    assert all(r.qty >= 0 for r in rows)


@given(st.text(max_size=80), st.from_regex(r"[A-Za-z0-9_.\-]{1,64}", fullmatch=True))
def test_external_refs_round_trip_and_junk_is_not_a_ref(junk: str, doc_no: str) -> None:
    assert tr.parse_external_ref(tr.external_ref("store-001", doc_no)) == ("store-001", doc_no)
    parsed = tr.parse_external_ref(junk)
    assert parsed is None or tr.external_ref(*parsed) == junk


def test_sources_rank_stock_then_cold_chain_then_shelf_life_then_distance() -> None:
    now = datetime(2026, 12, 5, tzinfo=UTC)

    def row(store: str, qty: int, cold: bool, shelf: int | None, km: float | None) -> PeerStockRow:
        return PeerStockRow(store, "MILK", qty, "chilled", cold, now, None, shelf, km)

    ranked = tr.rank_sources(
        [
            row("empty", 0, True, 9, 1.0),
            row("warm", 50, False, 9, 1.0),
            row("far", 5, True, 6, 30.0),
            row("near", 5, True, 6, 2.0),
            row("fresh", 5, True, 8, 40.0),
        ],
        "chilled",
    )
    assert [r["store"] for r in ranked] == ["fresh", "near", "far", "warm", "empty"]
    assert [r["usable"] for r in ranked] == [True, True, True, False, False]


INCOMING = {
    "id": 7,
    "from_store": "store-002",
    "to_store": "store-001",
    "out_doc_id": 41,
    "out_doc_no": "TO20261205-000041",
    "shipped_date": "2026-12-05",
    "state": "in_transit",
    "shipped_value_fen": 4053 + 5400,
    "received_value_fen": None,
    "in_doc_no": None,
    "settle_doc_no": None,
    "parts": [
        {"part_no": 1, "sku": "COLA", "lot": "", "qty": 20, "value_fen": 4053, "expiry": None},
        {"part_no": 2, "sku": "MILK", "lot": "M-9", "qty": 6, "value_fen": 5400, "expiry": "2026-12-11"},
    ],
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Box]:
    db_path = tmp_path / "storebox.db"
    seed(db_path)
    clock = Clock()
    writer = make_writer(db_path, clock)
    writer.start()
    deps = build_deps(db_path, clock, writer)
    app = create_api(deps)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://box") as client:
        yield Box(db_path, clock, writer, deps, app, client)
    await writer.close()


@pytest.mark.anyio
async def test_an_incoming_transfer_is_received_at_the_senders_value_with_lots_and_expiries(box: Box) -> None:
    await box.writer.execute(tr.store_transfers, "incoming", [INCOMING], "2026-12-05T10:00:00+00:00")
    listed = await box.client.get("/api/v1/transfers/incoming", headers=box.auth("clerk"))
    assert listed.status_code == 200, listed.text
    [shown] = listed.json()["transfers"]
    assert shown["external_ref"] == "transfer:store-002:TO20261205-000041" and shown["received_here"] is None
    body = {"lines": [{"part_no": 1, "qty": 18}, {"part_no": 2, "qty": 6}]}
    refused = await box.client.post(
        "/api/v1/transfers/incoming/7/receive", json=body, headers={**box.auth("accountant"), "Idempotency-Key": "r1"}
    )
    assert refused.status_code == 403
    got = await box.client.post(
        "/api/v1/transfers/incoming/7/receive", json=body, headers={**box.auth("clerk"), "Idempotency-Key": "r1"}
    )
    assert got.status_code == 201, got.text
    again = await box.client.post(
        "/api/v1/transfers/incoming/7/receive", json=body, headers={**box.auth("clerk"), "Idempotency-Key": "r1"}
    )
    assert again.status_code == 201 and again.headers.get("Idempotent-Replayed") == "true"
    twice = await box.client.post(
        "/api/v1/transfers/incoming/7/receive", json=body, headers={**box.auth("clerk"), "Idempotency-Key": "r2"}
    )
    assert twice.status_code == 422 and twice.json()["detail"]["field"] == "external_ref"
    conn = connect(box.db_path, readonly=True)
    try:
        doc_id = got.json()["document_id"]
        lines = conn.execute(
            "SELECT sku, qty_base, lot, expiry, gross_fen FROM document_lines WHERE document_id = ? ORDER BY line_no",
            (doc_id,),
        ).fetchall()
        assert [tuple(r) for r in lines] == [("COLA", 18, None, None, 3648), ("MILK", 6, "M-9", "2026-12-11", 5400)]
        moves = conn.execute("SELECT SUM(value_fen) FROM stock_moves WHERE document_id = ?", (doc_id,)).fetchone()[0]
        assert moves == 3648 + 5400
        payload = json.loads(conn.execute("SELECT payload FROM outbox WHERE document_id = ?", (doc_id,)).fetchone()[0])
        assert payload["document"]["external_ref"] == "transfer:store-002:TO20261205-000041"
        assert conn.execute("SELECT 1 FROM stores WHERE id = 'store-002'").fetchone() is not None
    finally:
        conn.close()
    listed = await box.client.get("/api/v1/transfers/incoming", headers=box.auth("auditor"))
    assert listed.json()["transfers"][0]["received_here"]["document_id"] == doc_id


@pytest.mark.anyio
async def test_receiving_refuses_unknown_transfers_parts_and_missing_sync(box: Box) -> None:
    await box.writer.execute(tr.store_transfers, "incoming", [INCOMING], "2026-12-05T10:00:00+00:00")
    headers = {**box.auth("manager"), "Idempotency-Key": "k"}
    unknown = await box.client.post(
        "/api/v1/transfers/incoming/8/receive", json={"lines": [{"part_no": 1, "qty": 1}]}, headers=headers
    )
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_transfer"
    bad_part = await box.client.post(
        "/api/v1/transfers/incoming/7/receive", json={"lines": [{"part_no": 3, "qty": 1}]}, headers=headers
    )
    assert bad_part.status_code == 422 and bad_part.json()["code"] == "invalid_count"
    nothing = await box.client.post(
        "/api/v1/transfers/incoming/7/receive", json={"lines": [{"part_no": 1, "qty": 0}]}, headers=headers
    )
    assert nothing.status_code == 422
    sources = await box.client.get("/api/v1/transfers/sources?sku=COLA", headers=box.auth("clerk"))
    assert sources.status_code == 409 and sources.json()["code"] == "sync_not_configured"
