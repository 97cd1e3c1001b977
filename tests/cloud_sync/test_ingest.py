"""Ingest of outbox batches: applied once and strictly in order whatever the network does (duplicates, replays,
reordering, two replicas at once, a crash mid-batch), conflicts and garbage refused without a 500."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.db import create_engine, migrate
from cloud_sync.errors import CloudError
from cloud_sync.facts import store_totals
from cloud_sync.ingest import Head, ingest_batch
from cloud_sync.tables import batches, compliance_suppliers, item_activity, items, lots, rejections, sync_state
from edge.sync.protocol import MAX_COMPRESSED_BYTES, SERVER_TIME_HEADER, batch_body, encode_body
from tests.cloud_sync.aggregator import StoreSession, build_app, register_store, rows_of, sale


def raw_batch(store: str, seq: int, rows: list[dict[str, Any]]) -> bytes:
    return batch_body(
        store,
        seq,
        [
            (r["seq"], r["kind"], "2026-12-05T00:00:00+00:00", r.get("document_id"), json.dumps(r["payload"]))
            for r in rows
        ],
    )


def totals(app: FastAPI, store: str = "s1") -> dict[str, Any]:
    with app.state.engine.connect() as conn:
        return store_totals(conn, store)


def send(session: StoreSession, seq: int, rows: list[dict[str, Any]], query: str = "") -> httpx.Response:
    return asyncio.run(session.send_batch(seq, rows, query))


@pytest.fixture
def session(cloud_db_url: str) -> StoreSession:
    app = build_app(cloud_db_url)
    return StoreSession(app, "s1", register_store(app.state.engine, "s1"))


def test_a_batch_of_sales_becomes_documents_stock_sales_and_ledger(session: StoreSession) -> None:
    answer = send(session, 1, rows_of([sale(1, qty=2, price=300, cost=400), sale(2, qty=1, price=300, cost=200)]))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert {k: body[k] for k in ("store", "seq", "status", "applied_through", "missing")} == {
        "store": "s1",
        "seq": 1,
        "status": "applied",
        "applied_through": 1,
        "missing": [],
    }
    t = totals(session.app)
    assert t["documents"] == 2
    assert t["stock"] == {"qty": -3, "value_fen": -600}
    assert t["stock_lines"] == {"COLA|floor|": [-3, -600]}
    assert t["sales"] == {"qty": 3, "gross_fen": 900, "tax_fen": 69 + 35, "cost_fen": 600}
    assert t["gl"]["1001"] == [900, 0]
    assert t["gl"]["5401"] == [600, 0]
    assert sum(d for d, _ in t["gl"].values()) == sum(c for _, c in t["gl"].values())
    with session.app.state.engine.connect() as conn:
        activity = conn.execute(sa.select(item_activity.c.last_outbound_date)).scalar_one()
    assert activity == "2026-12-05"


def test_the_same_batch_again_is_a_duplicate_and_changes_nothing(session: StoreSession) -> None:
    rows = rows_of([sale(1), sale(2)])
    assert send(session, 1, rows).json()["status"] == "applied"
    before = totals(session.app)
    again = send(session, 1, rows)
    assert again.status_code == 200
    assert again.json()["status"] == "duplicate"
    assert again.json()["applied_through"] == 1
    assert totals(session.app) == before


def test_the_same_seq_with_other_rows_is_a_conflict_kept_in_rejections(session: StoreSession) -> None:
    assert send(session, 1, rows_of([sale(1, qty=1)])).status_code == 200
    before = totals(session.app)
    answer = send(session, 1, rows_of([sale(1, qty=9)]))
    assert answer.status_code == 409
    assert answer.json()["code"] == "batch_conflict"
    assert answer.json()["detail"]["seq"] == 1
    assert totals(session.app) == before
    with session.app.state.engine.connect() as conn:
        assert conn.execute(sa.select(rejections.c.code)).scalars().all() == ["batch_conflict"]
    metrics = session.app.state.metrics.registry
    assert metrics.get_sample_value("storebox_cloud_rejections_total", {"code": "batch_conflict"}) == 1


def test_batches_beyond_a_gap_wait_and_are_applied_when_it_fills(session: StoreSession) -> None:
    b1, b2, b3 = rows_of([sale(1)], 1), rows_of([sale(2)], 2), rows_of([sale(3)], 3)
    third = send(session, 3, b3).json()
    assert (third["status"], third["applied_through"], third["missing"]) == ("queued", 0, [1, 2])
    assert totals(session.app)["documents"] == 0
    second = send(session, 2, b2).json()
    assert (second["status"], second["applied_through"], second["missing"]) == ("queued", 0, [1])
    assert send(session, 3, b3).json()["status"] == "duplicate"  # a queued batch sent again
    first = send(session, 1, b1).json()
    assert (first["status"], first["applied_through"], first["missing"]) == ("applied", 3, [])
    assert totals(session.app)["documents"] == 3
    with session.app.state.engine.connect() as conn:
        stored = conn.execute(sa.select(batches.c.seq, batches.c.applied_at, batches.c.body)).all()
    assert sorted(r.seq for r in stored) == [1, 2, 3]
    assert all(r.applied_at is not None and r.body is None for r in stored)
    replay = send(session, 2, b2).json()
    assert replay["status"] == "duplicate"
    assert totals(session.app)["documents"] == 3


def test_the_state_names_the_missing_batches(session: StoreSession) -> None:
    send(session, 1, rows_of([sale(1)], 1))
    send(session, 4, rows_of([sale(4)], 4))
    state = asyncio.run(session.get("/api/v1/sync/state")).json()
    assert state["applied_through"] == 1
    assert state["missing"] == [2, 3]
    assert state["last_batch_at"] is not None


def test_rows_sent_again_in_a_later_batch_count_once(session: StoreSession) -> None:
    send(session, 1, rows_of([sale(1), sale(2)], 1))
    answer = send(session, 2, rows_of([sale(2), sale(3)], 2))  # the box re-batched: row 2 again
    assert answer.json()["status"] == "applied"
    t = totals(session.app)
    assert t["documents"] == 3
    assert t["sales"]["qty"] == 6


def reversal(doc_id: int, of: dict[str, Any]) -> dict[str, Any]:
    p = copy.deepcopy(of)
    d = p["document"]
    d.update(id=doc_id, doc_no=f"RV-{doc_id}", type="reversal", reverses_id=of["document"]["id"])
    for name in ("gross_fen", "tax_fen", "cost_fen"):
        d[name] = -d[name]
    for line in p["lines"]:
        for name in ("qty", "qty_base", "gross_fen", "tax_fen"):
            line[name] = -line[name]
    p["moves"] = [[n, s, loc, lot, -q, -v] for n, s, loc, lot, q, v in p["moves"]]
    p["voucher"]["voucher_no"] = f"记-{doc_id}"
    p["voucher"]["lines"] = [[a, c, d_] for a, d_, c in p["voucher"]["lines"]]
    return p


def test_a_reversed_sale_takes_its_sales_back_in_the_same_batch_or_a_later_one(session: StoreSession) -> None:
    first, second = sale(1, qty=2), sale(2, qty=5)
    send(session, 1, rows_of([first, second, reversal(3, first)], 1))
    send(session, 2, rows_of([reversal(4, second)], 4))
    t = totals(session.app)
    assert t["documents"] == 4
    assert t["sales"] == {"qty": 0, "gross_fen": 0, "tax_fen": 0, "cost_fen": 0}
    assert t["stock"] == {"qty": 0, "value_fen": 0}
    assert t["stock_lines"] == {}


def test_a_customer_return_counts_against_sales(session: StoreSession) -> None:
    ret = sale(2, qty=1, price=300, cost=200)
    ret["document"]["type"] = "customer_return"
    ret["moves"] = [[1, "COLA", "floor", "", 1, 200]]
    send(session, 1, rows_of([sale(1, qty=2, price=300, cost=400), ret]))
    assert totals(session.app)["sales"] == {"qty": 1, "gross_fen": 300, "tax_fen": 69 - 35, "cost_fen": 200}


def test_snapshots_replace_items_and_compliance_and_unknown_kinds_are_skipped(session: StoreSession) -> None:
    item = {"sku": "COLA", "name": "可乐", "name_en": "Cola", "category": "drinks", "shelf_life_days": 365}
    supplier = {"id": "sup-1", "name": "供应商", "frozen": True, "papers": [], "next_expiry": "2027-01-31"}
    receipt = sale(2, qty=10)
    receipt["document"]["type"] = "receipt"
    receipt["lines"][0].update(lot="L1", expiry="2027-03-01")
    receipt["moves"] = [[1, "COLA", "floor", "L1", 10, 2000]]
    rows = [
        {"seq": 1, "kind": "state.items", "payload": {"items": [item, {"sku": "TEA", "name": "茶"}]}},
        {"seq": 2, "kind": "state.compliance", "payload": {"suppliers": [supplier]}},
        {"seq": 3, "kind": "something.new", "payload": {"whatever": [1, 2]}},
        {"seq": 4, "kind": "document.posted", "document_id": 2, "payload": receipt},
        {"seq": 5, "kind": "state.items", "payload": {"items": [item]}},
    ]
    assert send(session, 1, rows).json()["status"] == "applied"
    with session.app.state.engine.connect() as conn:
        assert conn.execute(sa.select(items.c.sku, items.c.name_en)).all() == [("COLA", "Cola")]
        sup = conn.execute(sa.select(compliance_suppliers)).one()
        assert (sup.supplier, sup.frozen, sup.next_expiry) == ("sup-1", 1, "2027-01-31")
        assert conn.execute(sa.select(lots.c.sku, lots.c.lot, lots.c.expiry)).all() == [("COLA", "L1", "2027-03-01")]
        assert conn.execute(sa.select(sa.func.count()).select_from(item_activity)).scalar_one() == 0
    assert totals(session.app)["stock_lines"] == {"COLA|floor|L1": [10, 2000]}


def test_the_outbox_head_gives_the_sync_lag_on_the_aggregator_clock(session: StoreSession) -> None:
    box_now = datetime.now(UTC) - timedelta(hours=3)  # the box's clock is three hours slow
    oldest = box_now - timedelta(minutes=10)
    query = httpx.QueryParams(
        {"head": "40", "pending": "7", "oldest": oldest.isoformat(), "sent_at": box_now.isoformat()}
    )
    assert send(session, 1, rows_of([sale(1)]), f"?{query}").status_code == 200
    with session.app.state.engine.connect() as conn:
        state = conn.execute(sa.select(sync_state)).one()
    assert (state.head_seq, state.pending_rows) == (40, 7)
    assert abs(state.clock_offset_s - 3 * 3600) < 120
    lag = datetime.now(UTC) - datetime.fromisoformat(state.oldest_pending_at)
    assert timedelta(minutes=8) < lag < timedelta(minutes=12)


def test_a_heartbeat_answers_the_state_and_notes_the_contact(session: StoreSession) -> None:
    send(session, 2, rows_of([sale(2)], 2))
    query = httpx.QueryParams({"head": "9", "pending": "0", "sent_at": datetime.now(UTC).isoformat()})
    answer = asyncio.run(session.post_json(f"/api/v1/sync/heartbeat?{query}", {}))
    assert answer.status_code == 200, answer.text
    assert (answer.json()["applied_through"], answer.json()["missing"]) == (0, [1])
    with session.app.state.engine.connect() as conn:
        state = conn.execute(sa.select(sync_state)).one()
    assert (state.head_seq, state.pending_rows, state.oldest_pending_at) == (9, 0, None)
    assert state.last_contact_at is not None


def test_a_body_over_the_limit_is_refused_with_413(session: StoreSession) -> None:
    target = "/api/v1/sync/batches"
    body = b"\0" * (MAX_COMPRESSED_BYTES + 1)

    async def go() -> httpx.Response:
        async with session.client() as c:
            return await c.post(target, content=body, headers=session.headers("POST", target, body))

    answer = asyncio.run(go())
    assert answer.status_code == 413
    assert answer.json()["code"] == "batch_too_large"


def test_a_failing_apply_leaves_nothing_behind(session: StoreSession, monkeypatch: pytest.MonkeyPatch) -> None:
    import cloud_sync.transfers.derive as derive

    def boom(conn: sa.Connection, store: str, rows: Any) -> None:
        raise RuntimeError("killed mid-batch")

    rows = rows_of([sale(1), sale(2)])
    raw = raw_batch("s1", 1, rows)
    body = encode_body(raw)
    target = "/api/v1/sync/batches"

    async def go() -> httpx.Response:
        # As a real server does: the 500 answer goes out, the exception is not raised into the client.
        transport = httpx.ASGITransport(app=session.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://aggregator") as c:
            headers = session.headers("POST", target, body, **{"Content-Encoding": "gzip"})
            return await c.post(target, content=body, headers=headers)

    with monkeypatch.context() as m:
        m.setattr(derive, "apply_rows", boom)
        answer = asyncio.run(go())
    assert answer.status_code == 500
    assert answer.json()["code"] == "internal_error"
    assert SERVER_TIME_HEADER in answer.headers
    assert "Traceback" not in answer.text and "killed" not in answer.text
    with session.app.state.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(batches)).scalar_one() == 0
    assert totals(session.app)["documents"] == 0
    assert totals(session.app)["stock"] == {"qty": 0, "value_fen": 0}
    assert send(session, 1, rows).json()["status"] == "applied"
    assert totals(session.app)["documents"] == 2


def race(engines: list[sa.Engine], raw: bytes) -> list[Any]:
    """The same batch given to every engine (a replica each) at the same moment; their answers or errors."""
    results: list[Any] = []
    barrier = threading.Barrier(len(engines))

    def run(engine: sa.Engine) -> None:
        barrier.wait()
        try:
            results.append(
                ingest_batch(engine, "s1", raw, compressed=False, head=Head(), now=datetime.now(UTC))["status"]
            )
        except Exception as exc:
            results.append(exc)

    threads = [threading.Thread(target=run, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_replicas_receiving_the_same_batch_apply_it_once(cloud_db_url: str) -> None:
    engines = [create_engine(cloud_db_url), create_engine(cloud_db_url)]
    migrate(engines[0])
    register_store(engines[0], "s1")
    for round_ in range(5):
        raw = raw_batch("s1", round_ + 1, rows_of([sale(10 * round_ + i) for i in range(1, 4)], 10 * round_ + 1))
        results = race(engines, raw)
        assert sorted(map(str, results)) == ["applied", "duplicate"], results
    with engines[0].connect() as conn:
        assert store_totals(conn, "s1")["documents"] == 15
    for e in engines:
        e.dispose()


# --- garbage ---------------------------------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=80),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
PATHS = [
    ("v",),
    ("seq",),
    ("rows",),
    ("rows", 0),
    ("rows", 0, "seq"),
    ("rows", 0, "kind"),
    ("rows", 0, "created_at"),
    ("rows", 0, "payload"),
    ("rows", 0, "payload", "document"),
    ("rows", 0, "payload", "document", "id"),
    ("rows", 0, "payload", "document", "type"),
    ("rows", 0, "payload", "document", "business_date"),
    ("rows", 0, "payload", "document", "doc_no"),
    ("rows", 0, "payload", "document", "gross_fen"),
    ("rows", 0, "payload", "document", "reverses_id"),
    ("rows", 0, "payload", "document", "external_ref"),
    ("rows", 0, "payload", "lines"),
    ("rows", 0, "payload", "lines", 0),
    ("rows", 0, "payload", "lines", 0, "qty_base"),
    ("rows", 0, "payload", "lines", 0, "sku"),
    ("rows", 0, "payload", "lines", 0, "lot"),
    ("rows", 0, "payload", "lines", 0, "expiry"),
    ("rows", 0, "payload", "moves"),
    ("rows", 0, "payload", "moves", 0),
    ("rows", 0, "payload", "moves", 0, 4),
    ("rows", 0, "payload", "voucher"),
    ("rows", 0, "payload", "voucher", "lines", 0),
    ("rows", 0, "payload", "voucher", "lines", 0, 1),
    ("rows", 1, "payload", "items"),
    ("rows", 1, "payload", "items", 0),
    ("rows", 1, "payload", "items", 0, "name_en"),
    ("rows", 1, "payload", "items", 0, "shelf_life_days"),
    ("rows", 2, "payload", "suppliers", 0, "papers"),
    ("rows", 2, "payload", "suppliers", 0, "frozen_at"),
    ("rows", 2, "payload", "suppliers", 0, "next_expiry"),
]


def good_batch(seq: int) -> dict[str, Any]:
    doc = sale(seq)
    doc["lines"][0]["lot"] = "L1"
    doc["lines"][0]["expiry"] = "2027-01-01"
    return {
        "v": 1,
        "store": "s1",
        "seq": seq,
        "rows": [
            {"seq": 3 * seq, "kind": "document.posted", "created_at": "2026-12-05T00:00:00Z", "payload": doc},
            {
                "seq": 3 * seq + 1,
                "kind": "state.items",
                "created_at": "2026-12-05T00:00:00Z",
                "payload": {"items": [{"sku": "COLA", "name": "可乐", "shelf_life_days": 30}]},
            },
            {
                "seq": 3 * seq + 2,
                "kind": "state.compliance",
                "created_at": "2026-12-05T00:00:00Z",
                "payload": {"suppliers": [{"id": "s", "name": "n", "papers": [], "frozen_at": None}]},
            },
        ],
    }


def put(value: Any, path: tuple[str | int, ...], new: Any) -> bool:
    for step in path[:-1]:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        value[path[-1]] = new
    except (IndexError, TypeError):
        return False
    return True


@pytest.fixture
def garbage_engine(cloud_db_url: str) -> sa.Engine:
    engine = create_engine(cloud_db_url)
    migrate(engine)
    register_store(engine, "s1")
    return engine


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(st.tuples(st.sampled_from(PATHS), JSON), min_size=1, max_size=3), gzip_it=st.booleans())
def test_garbage_is_refused_naming_what_is_wrong_and_never_crashes(
    garbage_engine: sa.Engine, changes: list[tuple[tuple[str | int, ...], Any]], gzip_it: bool
) -> None:
    with garbage_engine.connect() as conn:
        seq = int(conn.execute(sa.select(sync_state.c.applied_through)).scalar() or 0) + 1
    batch = good_batch(seq)
    for path, value in changes:
        put(batch, path, value)
    raw = json.dumps(batch, ensure_ascii=False).encode()
    body = encode_body(raw) if gzip_it else raw
    try:
        answer = ingest_batch(garbage_engine, "s1", body, compressed=gzip_it, head=Head(), now=datetime.now(UTC))
    except CloudError as error:
        assert error.code in ("batch_invalid", "batch_too_large", "store_mismatch", "batch_conflict"), error.code
        assert error.message and error.message_en
        if error.code == "batch_invalid" and "row" in error.detail:
            assert error.detail["field"]
        return
    assert answer["status"] in ("applied", "queued", "duplicate")


@given(data=st.binary(max_size=300))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_bytes_that_are_not_a_batch_are_invalid(garbage_engine: sa.Engine, data: bytes) -> None:
    for compressed in (True, False):
        with pytest.raises(CloudError) as refused:
            ingest_batch(garbage_engine, "s1", data, compressed=compressed, head=Head(), now=datetime.now(UTC))
        assert refused.value.code in ("batch_invalid", "store_mismatch")
        assert refused.value.status in (403, 422)


def test_garbage_over_http_is_422_naming_the_row_and_field(session: StoreSession) -> None:
    bad = sale(1)
    bad["lines"][0]["qty_base"] = "two"
    rows = rows_of([sale(1), bad], 1)
    rows[1]["payload"]["document"]["id"] = 2
    answer = send(session, 1, rows)
    assert answer.status_code == 422
    body = answer.json()
    assert body["code"] == "batch_invalid"
    assert body["detail"] == {"row": 2, "field": "lines[0].qty_base"}
    assert "第 2 行" in body["message"] and "row 2" in body["message_en"]
    with session.app.state.engine.connect() as conn:
        assert conn.execute(sa.select(rejections.c.code, rejections.c.store)).all() == [("batch_invalid", "s1")]


def test_the_last_outbound_date_is_the_newest_outbound_document(session: StoreSession) -> None:
    later, earlier = sale(1, day="2026-12-05"), sale(2, day="2026-12-03")
    transfer = sale(3, sku="TEA", day="2026-12-04")
    transfer["document"]["type"] = "transfer_out"
    transfer["voucher"] = None
    receipt = sale(4, sku="MILK", day="2026-12-06")
    receipt["document"]["type"] = "receipt"
    receipt["moves"] = [[1, "MILK", "floor", "", 5, 500]]
    send(session, 1, rows_of([later, transfer], 1))
    send(session, 2, rows_of([earlier, receipt], 3))
    with session.app.state.engine.connect() as conn:
        activity = dict(conn.execute(sa.select(item_activity.c.sku, item_activity.c.last_outbound_date)).all())
    assert activity == {"COLA": "2026-12-05", "TEA": "2026-12-04"}


KILLED_MID_BATCH = """
import sys, threading
from datetime import UTC, datetime
from pathlib import Path
import cloud_sync.transfers.derive as derive
from cloud_sync.db import create_engine
from cloud_sync.ingest import Head, ingest_batch

def hang(conn, store, rows):
    Path(sys.argv[3]).write_text("in the batch")  # every fact of the batch is written, not committed
    threading.Event().wait()

derive.apply_rows = hang
ingest_batch(create_engine(sys.argv[1]), "s1", Path(sys.argv[2]).read_bytes(), compressed=False, head=Head(),
             now=datetime.now(UTC))
"""


@pytest.mark.slow
def test_an_aggregator_killed_mid_batch_keeps_nothing_of_it(cloud_db_url: str, tmp_path: Any) -> None:
    import signal
    import subprocess
    import sys
    import time

    engine = create_engine(cloud_db_url)
    migrate(engine)
    register_store(engine, "s1")
    raw = raw_batch("s1", 1, rows_of([sale(i) for i in range(1, 501)]))
    (tmp_path / "batch.json").write_bytes(raw)
    marker = tmp_path / "marker"
    worker = subprocess.Popen(
        [sys.executable, "-c", KILLED_MID_BATCH, cloud_db_url, str(tmp_path / "batch.json"), str(marker)]
    )
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert worker.poll() is None, "the worker ended before reaching the batch"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)
    with engine.connect() as conn:
        assert store_totals(conn, "s1")["documents"] == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(batches)).scalar_one() == 0
    answer = ingest_batch(engine, "s1", raw, compressed=False, head=Head(), now=datetime.now(UTC))
    assert (answer["status"], answer["applied_through"]) == ("applied", 1)
    with engine.connect() as conn:
        assert store_totals(conn, "s1")["documents"] == 500
    engine.dispose()


def test_a_nul_character_in_any_text_does_not_stall_the_store(session: StoreSession) -> None:
    """PostgreSQL cannot store NUL in text: it is kept as U+FFFD on both databases and the batch applies."""
    poisoned = sale(1, sku="A\x00B")
    items_row = {
        "seq": 2,
        "kind": "state.items",
        "payload": {"items": [{"sku": "A\x00B", "name": "酱油\x00X", "base_unit": "瓶"}]},
    }
    answer = send(session, 1, [*rows_of([poisoned]), items_row])
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "applied"
    with session.app.state.engine.connect() as conn:
        stored = conn.execute(sa.select(items.c.sku, items.c.name)).one()
    assert tuple(stored) == ("A\ufffdB", "酱油\ufffdX")
    assert "A\ufffdB|floor|" in totals(session.app)["stock_lines"]
    again = send(session, 1, [*rows_of([poisoned]), items_row])
    assert again.json()["status"] == "duplicate"  # the digest is of the bytes as sent


def test_hq_sync_lag_shows_a_store_whose_batches_are_refused(session: StoreSession) -> None:
    from cloud_sync.hq.queries import run_page, sync_lag_query

    def lag() -> dict[str, Any]:
        with session.app.state.engine.connect() as conn:
            item: dict[str, Any] = run_page(conn, sync_lag_query(datetime.now(UTC), timedelta(minutes=30)), 10, 0)[
                "items"
            ][0]
        return item

    assert send(session, 1, rows_of([sale(1)])).status_code == 200
    assert lag()["refused"] is False
    assert send(session, 1, rows_of([sale(2)])).status_code == 409  # what a box restored from a backup sends
    refused = lag()
    assert refused["refused"] is True and refused["last_refusal_code"] == "batch_conflict"
    assert send(session, 2, rows_of([sale(3)], 2)).status_code == 200
    assert lag()["refused"] is False
