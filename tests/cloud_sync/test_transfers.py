"""Transfers at the aggregator, derived from two real stores' outbox rows: in transit, received (with the counted
quantities and differences), settled; cancelled when the sender reverses before receipt; other stores' stock."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud_sync.db import create_engine, migrate
from cloud_sync.errors import CloudError
from cloud_sync.tables import stock
from cloud_sync.transfers.queries import company_stock, received_in_transit, store_request
from edge.ledger.commands import DocType, Line, PostDocument, ReverseDocument
from edge.ledger.posting import shipped_parts
from edge.sync.transfers import ShippedPart, parse_parts, receipt_command, settle_command
from tests.cloud_sync.aggregator import StoreSession, build_app, register_store
from tests.edge.finance.books_store import open_books, post_one


class Box:
    """A real ledger and its outbox, sent to the aggregator in batches like the box's uploader would."""

    def __init__(self, path: Path, session: StoreSession) -> None:
        self.conn = open_books(path)
        self.session = session
        self.sent = 0
        self.batch = 0

    def push(self) -> None:
        rows = [
            {"seq": r[0], "kind": r[1], "document_id": r[2], "payload": json.loads(r[3])}
            for r in self.conn.execute(
                "SELECT seq, kind, document_id, payload FROM outbox WHERE seq > ? ORDER BY seq", (self.sent,)
            )
        ]
        if not rows:
            return
        self.batch += 1
        answer = asyncio.run(self.session.send_batch(self.batch, rows))
        assert answer.status_code == 200, answer.text
        self.sent = rows[-1]["seq"]

    def get(self, target: str) -> Any:
        answer = asyncio.run(self.session.get(target))
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture
def boxes(cloud_db_url: str, tmp_path: Path) -> tuple[Box, Box]:
    app = build_app(cloud_db_url)
    engine = app.state.engine
    a = Box(tmp_path / "a.db", StoreSession(app, "s1", register_store(engine, "s1", lat=31.23, lon=121.47)))
    b = Box(tmp_path / "b.db", StoreSession(app, "s2", register_store(engine, "s2", lat=31.30, lon=121.50)))
    register_store(engine, "s3", company="co-2")  # another company: never seen
    return a, b


def _stock(box: Box) -> None:
    assert post_one(
        box.conn, PostDocument("rc-1", DocType.RECEIPT, (Line("A1", 12, price_fen=113),), counterparty="sup1")
    ).ok
    milk = (Line("M1", 8, price_fen=433, lot="L1", expiry=date(2026, 12, 1)),)
    assert post_one(box.conn, PostDocument("rc-2", DocType.RECEIPT, milk, counterparty="sup1")).ok


def _ship(box: Box) -> tuple[int, str]:
    lines = (Line("A1", 10), Line("M1", 5))
    shipped = post_one(box.conn, PostDocument("to-1", DocType.TRANSFER_OUT, lines, counterparty="s2"))
    assert shipped.ok, shipped
    return shipped.document_id or 0, shipped.doc_no or ""


def _engine(box: Box) -> sa.Engine:
    engine: sa.Engine = box.session.app.state.engine
    return engine


def test_a_transfer_goes_in_transit_received_short_and_settled(boxes: tuple[Box, Box]) -> None:
    a, b = boxes
    _stock(a)
    out_id, doc_no = _ship(a)
    a.push()
    incoming = b.get("/api/v1/sync/transfers?direction=incoming")["transfers"]
    assert [t["state"] for t in incoming] == ["in_transit"] and incoming[0]["out_doc_no"] == doc_no
    assert a.get("/api/v1/sync/transfers?direction=incoming")["transfers"] == []
    transfer = incoming[0]
    parts = parse_parts(transfer["parts"])
    assert [(p.sku, p.lot, p.qty, p.expiry) for p in parts] == [("A1", "", 10, None), ("M1", "L1", 5, "2026-12-01")]
    assert (
        sum(p.value_fen for p in parts)
        == transfer["shipped_value_fen"]
        == sum(v for *_, v in shipped_parts(a.conn, out_id))
    )
    counts = {1: 9, 2: 5}
    got = post_one(b.conn, receipt_command(key="ti", from_store="s1", doc_no=doc_no, parts=parts, counts=counts))
    assert got.ok, got
    b.push()
    [received] = a.get("/api/v1/sync/transfers?direction=outgoing&state=received")["transfers"]
    assert [p["received_qty"] for p in received["parts"]] == [9, 5]
    assert received["in_doc_no"] == got.doc_no
    # Received but not settled: A's transit still holds the goods B has booked; counted once company-wide.
    with _engine(a).connect() as conn:
        assert received_in_transit(conn) == {("s1", "A1", ""): 10, ("s1", "M1", "L1"): 5}
        assert company_stock(conn, "co-1", "A1") == {"on_hand": 2 + 9, "in_transit": 0, "total": 11}
    settled = [
        ShippedPart(p.part_no, p.sku, p.lot, p.qty, p.value_fen, p.expiry, p.received_qty)
        for p in parse_parts(received["parts"])
    ]
    assert post_one(a.conn, settle_command(key="ts", transfer_out_id=out_id, parts=settled, received_ref=None)).ok
    a.push()
    [done] = b.get("/api/v1/sync/transfers?direction=incoming&state=settled")["transfers"]
    assert done["received_value_fen"] == received["received_value_fen"]
    with _engine(a).connect() as conn:
        assert received_in_transit(conn) == {}
        transit = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(stock.c.qty), 0)).where(stock.c.location == "transit")
        ).scalar_one()
        assert transit == 0
        assert company_stock(conn, "co-1", "A1") == {"on_hand": 11, "in_transit": 0, "total": 11}
        gl = conn.execute(
            sa.text("SELECT COALESCE(SUM(debit_fen - credit_fen), 0) FROM gl_period WHERE account = '1402'")
        ).scalar_one()
        assert gl == 0  # consolidated 1402 nets to zero after settlement


def test_a_transfer_out_reversed_before_receipt_is_cancelled(boxes: tuple[Box, Box]) -> None:
    a, b = boxes
    _stock(a)
    out_id, _ = _ship(a)
    assert post_one(a.conn, ReverseDocument("rv", out_id)).ok
    a.push()
    [cancelled] = b.get("/api/v1/sync/transfers?direction=incoming")["transfers"]
    assert cancelled["state"] == "cancelled"


def test_a_receipt_reversed_before_settlement_puts_the_transfer_back_in_transit(boxes: tuple[Box, Box]) -> None:
    a, b = boxes
    _stock(a)
    _, doc_no = _ship(a)
    a.push()
    parts = parse_parts(b.get("/api/v1/sync/transfers?direction=incoming")["transfers"][0]["parts"])
    got = post_one(b.conn, receipt_command(key="ti", from_store="s1", doc_no=doc_no, parts=parts, counts={1: 10}))
    assert post_one(b.conn, ReverseDocument("rv", got.document_id or 0)).ok
    b.push()
    [back] = b.get("/api/v1/sync/transfers?direction=incoming")["transfers"]
    assert back["state"] == "in_transit" and back["parts"][0]["received_qty"] is None


def test_peer_stock_lists_other_stores_of_the_company_with_shelf_life_and_distance(boxes: tuple[Box, Box]) -> None:
    a, b = boxes
    _stock(a)
    a.push()
    peers = b.get("/api/v1/sync/peer-stock?sku=M1")
    [row] = peers["stores"]
    assert row["store"] == "s1" and row["qty"] == 8 and row["distance_km"] is not None and 5 < row["distance_km"] < 15
    assert (
        row["min_shelf_life_days"] == (date(2026, 12, 1) - date.fromisoformat(peers["as_of"])).days
        or row["min_shelf_life_days"] == 0
    )
    assert a.get("/api/v1/sync/peer-stock?sku=M1")["stores"] == []  # B has none; s3 is another company
    bad = asyncio.run(a.session.get("/api/v1/sync/transfers?direction=sideways"))
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_direction"


def _post(session: StoreSession, target: str, body: bytes) -> Any:
    async def go() -> Any:
        async with session.client() as c:
            return await c.post(target, content=body, headers=session.headers("POST", target, body))

    return asyncio.run(go())


def test_transfer_requests_reach_the_source_store_once_and_garbage_is_refused(boxes: tuple[Box, Box]) -> None:
    a, b = boxes
    request = {
        "request_id": 3,
        "from_store": "s1",
        "sku": "M1",
        "qty": 2,
        "unit": "箱",
        "qty_base": 24,
        "cold_chain": "chilled",
        "deadline": None,
        "note": "急需",
    }
    target = "/api/v1/sync/transfer-requests"
    first = _post(b.session, target, json.dumps(request).encode())
    assert first.status_code == 200 and first.json()["status"] == "stored", first.text
    again = _post(b.session, target, json.dumps(request).encode())
    assert again.json() == {"id": first.json()["id"], "status": "duplicate"}
    [asked] = a.get(target + "?direction=incoming")["requests"]
    assert (asked["to_store"], asked["qty_base"], asked["note"]) == ("s2", 24, "急需")
    assert b.get(target + "?direction=incoming")["requests"] == []
    for bad in (
        b"not json",
        b"[]",
        json.dumps({**request, "from_store": "s3"}).encode(),
        json.dumps({**request, "qty": 0}).encode(),
        json.dumps({**request, "extra": 1}).encode(),
    ):
        refused = _post(b.session, target, bad)
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] in ("transfer_request_invalid", "unknown_source_store")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            st.sampled_from(["request_id", "from_store", "sku", "qty", "unit", "qty_base", "cold_chain", "x"]),
            st.none() | st.booleans() | st.integers(-5, 2**63) | st.text(max_size=70),
        ).map(lambda d: json.dumps(d).encode()),
    )
)
def test_a_transfer_request_body_is_stored_or_refused_with_422_never_a_crash(
    tmp_path_factory: pytest.TempPathFactory, body: bytes
) -> None:
    engine = _request_engine(tmp_path_factory)
    with engine.begin() as conn:
        try:
            answer = store_request(conn, "s2", body, datetime(2026, 12, 5, tzinfo=UTC))
        except CloudError as error:
            assert error.status == 422
            return
    assert answer["status"] in ("stored", "duplicate")


_ENGINES: dict[str, sa.Engine] = {}


def _request_engine(factory: pytest.TempPathFactory) -> sa.Engine:
    if "e" not in _ENGINES:
        engine = create_engine(f"sqlite:///{factory.mktemp('requests') / 'cloud.db'}")
        migrate(engine)
        register_store(engine, "s1")
        register_store(engine, "s2")
        _ENGINES["e"] = engine
    return _ENGINES["e"]
