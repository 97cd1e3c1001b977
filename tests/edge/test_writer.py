"""The one writer: group commit in its own process, answers only after commit, failures stay per job."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from edge.db import connect, migrate
from edge.finance.rulebook import rule_book
from edge.finance.setup import prepare_books
from edge.ledger import masterdata
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.posting import PostingContext
from edge.security.errors import SecurityError
from edge.security.users import create_user
from edge.writer import LedgerWriter, WriterClosed, WriterJobFailed

RULES = rule_book()
pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _context() -> PostingContext:
    return PostingContext(now=datetime(2026, 11, 25, 2, 0, tzinfo=UTC), business_date=date(2026, 11, 25), rules=RULES)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "storebox.db"
    conn = connect(path)
    migrate(conn)
    conn.execute("BEGIN")
    prepare_books(conn)
    masterdata.add_location(conn, "floor", "卖场", "sales floor", "floor", "ambient")
    masterdata.add_item(conn, "A1", "可乐", base_unit="听", price_fen=300, cost_fen=200)
    conn.execute("COMMIT")
    conn.close()
    return path


@pytest.fixture
async def writer(db_path: Path) -> AsyncIterator[LedgerWriter]:
    w = LedgerWriter(db_path, context=_context, batch_max=16)
    w.start()
    yield w
    await w.close()


def receipt(key: str, qty: int) -> PostDocument:
    return PostDocument(key, DocType.RECEIPT, (Line("A1", qty, price_fen=226),))


def sale(key: str, qty: int) -> PostDocument:
    return PostDocument(key, DocType.SALE, (Line("A1", qty),))


def _boom(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO stores (id, name) VALUES ('half', 'written')")
    raise ValueError("boom")


def _unpicklable(conn: sqlite3.Connection) -> object:
    return lambda: None


async def test_a_failing_job_does_not_fail_its_neighbours_and_leaves_nothing(
    writer: LedgerWriter, db_path: Path
) -> None:
    results = await asyncio.gather(
        writer.post(receipt("r1", 10)),
        writer.execute(_boom),
        writer.post(sale("s1", 99)),
        writer.post(sale("s2", 4)),
        return_exceptions=True,
    )
    assert results[0].ok and results[3].ok
    assert isinstance(results[1], ValueError)
    assert results[2].code == "insufficient_stock"
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT COUNT(*) FROM stores WHERE id = 'half'").fetchone()[0] == 0
    assert conn.execute("SELECT qty FROM balances WHERE sku = 'A1'").fetchone()[0] == 6


async def test_domain_errors_cross_the_process_boundary_as_themselves(writer: LedgerWriter) -> None:
    with pytest.raises(SecurityError) as err:
        await writer.execute(create_user, "x", "short", "clerk")
    assert err.value.code and err.value.message and err.value.message_en
    with pytest.raises(WriterJobFailed):
        await writer.execute(_unpicklable)


async def test_listeners_hear_only_new_successful_postings_after_commit(writer: LedgerWriter, db_path: Path) -> None:
    heard: list[list[str]] = []

    def listener(results: list) -> None:  # type: ignore[type-arg]
        # By the time a listener runs, a reader sees the posting.
        conn = sqlite3.connect(db_path)
        count = conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0]
        conn.close()
        assert count >= 1
        heard.append([r.key for r in results])

    writer.add_listener(listener)
    await writer.post(receipt("r1", 5))
    await writer.post(receipt("r1", 5))  # a replay: not news
    await writer.post(sale("s-too-many", 50))  # a refusal: not news
    assert heard == [["r1"]]


async def test_close_finishes_what_was_queued_then_refuses(db_path: Path) -> None:
    w = LedgerWriter(db_path, context=_context, batch_max=4)
    w.start()
    pending = [asyncio.ensure_future(w.post(receipt(f"r{i}", 1))) for i in range(20)]
    await asyncio.sleep(0)
    await w.close()
    assert all(p.result().ok for p in pending)
    assert not w.running
    with pytest.raises(WriterClosed):
        await w.post(receipt("late", 1))


async def test_a_dead_writer_process_fails_waiting_callers_instead_of_hanging(db_path: Path) -> None:
    w = LedgerWriter(db_path, context=_context)
    w.start()
    assert (await w.post(receipt("r1", 1))).ok
    assert w._process is not None and w._process.pid is not None
    os.kill(w._process.pid, signal.SIGKILL)
    await asyncio.to_thread(w._process.join, 10)
    with pytest.raises(WriterClosed):
        for i in range(100):
            await asyncio.wait_for(w.post(receipt(f"after-{i}", 1)), 10)
    assert not w.running
    await w.close()
