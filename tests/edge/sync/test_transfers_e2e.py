"""End to end: two real boxes (own data dirs, own ledger writers, the real sync service) and a real aggregator
(`python -m cloud_sync serve`, uvicorn on 127.0.0.1): A ships, B sees it incoming and receives short, A settles;
both books checks pass, consolidated 1402 is zero and the aggregator never counts the goods twice."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cloud_sync.db import create_engine
from cloud_sync.transfers.queries import company_stock
from edge.db import connect
from edge.finance.books import books_check
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.verify import verify_ledger
from edge.sync import transfers as tr
from tests.edge.sync.harness import AggregatorProcess, SyncedBox

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _read(box: SyncedBox, fn: Any, *args: Any) -> Any:
    conn = connect(box.db_path, readonly=True)
    try:
        return fn(conn, *args)
    finally:
        conn.close()


def _gl(conn: Any, account: str) -> int:
    return int(
        conn.execute(
            "SELECT COALESCE(SUM(debit_fen - credit_fen), 0) FROM voucher_lines WHERE account = ?", (account,)
        ).fetchone()[0]
    )


def _draft_request(conn: Any, from_store: str) -> None:
    """A transfer request as issue 5's emergency orders leave it: a draft asking `from_store` to ship."""
    conn.execute(
        "INSERT INTO transfer_requests (id, from_store, to_store, sku, qty, unit, qty_base, cold_chain, state,"
        " created_by, created_at) VALUES (1, ?, 'store-002', 'MILK', 4, 'bottle', 4, 'chilled', 'draft', 'mgr',"
        " '2026-12-05T09:00:00+00:00')",
        (from_store,),
    )


async def _push(box: SyncedBox) -> None:
    assert box.sync is not None
    await box.sync.push_now()
    assert box.pending() == 0


async def _pull(box: SyncedBox) -> None:
    assert box.sync is not None
    await tr.pull(box.sync.client, box.sync.ctx)


async def _totals_agree(box: SyncedBox) -> None:
    assert box.sync is not None
    remote = await box.sync.client.get_json("/api/v1/sync/totals")
    assert remote == box.totals()


async def test_a_transfer_shipped_received_short_and_settled_keeps_both_stores_books(
    cloud_db_url: str, tmp_path: Path
) -> None:
    aggregator = AggregatorProcess(cloud_db_url, tmp_path)
    aggregator.cli("migrate")
    key_a = aggregator.cli(
        "stores",
        "add",
        "store-001",
        "--name",
        "一号店",
        "--company",
        "co-1",
        "--cold-chain",
        "--lat",
        "31.23",
        "--lon",
        "121.47",
    )["key"]
    key_b = aggregator.cli(
        "stores", "add", "store-002", "--name", "二号店", "--company", "co-1", "--lat", "31.30", "--lon", "121.50"
    )["key"]
    aggregator.start()
    a = SyncedBox(tmp_path / "a", aggregator.url, key_a, store="store-001")
    b = SyncedBox(tmp_path / "b", aggregator.url, key_b, store="store-002")
    await a.start(run_loop=False)
    await b.start(run_loop=False)
    engine = create_engine(cloud_db_url)
    try:
        expiry = (datetime.now(UTC) + timedelta(days=6)).date()
        await a.receive("COLA", 30, price_fen=229)
        await a.receive("MILK", 10, price_fen=901, lot="M-1", expiry=expiry)
        shipped = await a.writer.post(
            PostDocument("ship-1", DocType.TRANSFER_OUT, (Line("COLA", 20), Line("MILK", 6)), counterparty="store-002")
        )
        assert shipped.ok, shipped
        await _push(a)

        # B asks where to get milk: A, with 4 left, cold chain, the lot's shelf life, about 8 km away.
        assert b.sync is not None
        found = await tr.sources(b.sync.client, b.settings, b.writer, b.sync.ctx.open_reader, "MILK", b.clock)
        [source] = found["sources"]
        assert (source["store"], source["qty"], source["cold_chain_capable"], source["usable"]) == (
            "store-001",
            4,
            True,
            True,
        )
        assert source["min_shelf_life_days"] in (5, 6) and 5 < source["distance_km"] < 15
        assert _read(
            b, lambda c: [tuple(r) for r in c.execute("SELECT store, qty FROM peer_stock WHERE sku = 'MILK'")]
        ) == [("store-001", 4)]

        # B asks A for 4 more bottles: the draft request goes to A through the aggregator and becomes sent.
        await b.writer.execute(_draft_request, "store-001")
        # B sees it incoming and counts 18 of the 20 cola, all the milk.
        await _pull(b)
        assert _read(b, lambda c: c.execute("SELECT state FROM transfer_requests").fetchone()[0]) == "sent"
        await _pull(a)
        [asked] = _read(a, tr.list_requests)
        assert (asked["to_store"], asked["sku"], asked["qty_base"], asked["cold_chain"]) == (
            "store-002",
            "MILK",
            4,
            "chilled",
        )
        [incoming] = _read(b, tr.list_local, "incoming", None)
        assert incoming["state"] == "in_transit" and incoming["out_doc_no"] == shipped.doc_no
        parts = {p["sku"]: p for p in incoming["parts"]}
        assert parts["MILK"]["lot"] == "M-1" and parts["MILK"]["expiry"] == expiry.isoformat()
        counts = {parts["COLA"]["part_no"]: 18, parts["MILK"]["part_no"]: 6}
        got = await b.writer.execute_posting(
            tr.receive_incoming, incoming["id"], counts, None, "keeper", "e2e-receive", None
        )
        assert got["ok"], got
        await _push(b)
        with engine.connect() as conn:
            # Received, not yet settled: A's transit still holds 20 cola, B has 18; counted once.
            assert company_stock(conn, "co-1", "COLA") == {"on_hand": 10 + 18, "in_transit": 0, "total": 28}

        # A sees it received and settles by itself; the shortage of 2 cola goes to 1901 at A's cost.
        await _pull(a)
        await _push(a)
        [outgoing] = _read(a, tr.list_local, "outgoing", None)
        assert outgoing["state"] == "received"  # as pulled, before the settlement was uploaded
        await _pull(a)
        [outgoing] = _read(a, tr.list_local, "outgoing", None)
        assert outgoing["state"] == "settled" and outgoing["settle_doc_no"]
        await _pull(b)
        assert _read(b, tr.list_local, "incoming", "settled")[0]["id"] == incoming["id"]

        for box in (a, b):
            report = _read(box, books_check)
            assert report.ok, report.problems
            assert _read(box, verify_ledger)["ok"]
            await _totals_agree(box)
        a1402, a1901 = _read(a, _gl, "1402"), _read(a, _gl, "1901")
        b1402 = _read(b, _gl, "1402")
        assert a1402 + b1402 == 0
        cola = next(p for p in outgoing["parts"] if p["sku"] == "COLA")
        # Two cans short at A's cost (net of VAT): the shipped value less the 18 received, pro rata, half-up.
        assert a1901 == cola["value_fen"] - (2 * cola["value_fen"] * 18 + 20) // 40 > 0
        with engine.connect() as conn:
            gl = conn.execute(
                sa.text("SELECT COALESCE(SUM(debit_fen - credit_fen), 0) FROM gl_period WHERE account = '1402'")
            ).scalar_one()
            assert gl == 0
            assert company_stock(conn, "co-1", "COLA") == {"on_hand": 28, "in_transit": 0, "total": 28}
            transit = conn.execute(sa.text("SELECT COALESCE(SUM(qty), 0) FROM stock WHERE location = 'transit'"))
            assert transit.scalar_one() == 0
        assert date.fromisoformat(outgoing["shipped_date"])
    finally:
        engine.dispose()
        await a.stop()
        await b.stop()
        if a.sync is not None:
            await a.sync.client.aclose()
        if b.sync is not None:
            await b.sync.client.aclose()
        aggregator.stop()
