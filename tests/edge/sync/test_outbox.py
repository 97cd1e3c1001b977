"""The outbox as sync reads it, on a real migrated box database: batches cover the outbox in order, no row twice
and none skipped, at most `max_rows` each; a recorded batch is rebuilt byte for byte (so a resend after a crash
is the same batch); the body is the JSON the aggregator parses; compaction deletes only what is acknowledged,
applied and past the retention, and leaves a watermark."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.db import connect
from edge.sync import outbox
from edge.sync.protocol import batch_digest, decode_body, encode_body

STORE = "store-001"
NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


@pytest.fixture
def conn(sync_template_db: Path, tmp_path: Path) -> Iterator[sqlite3.Connection]:
    path = tmp_path / "storebox.db"
    shutil.copyfile(sync_template_db, path)
    connection = connect(path)
    yield connection
    connection.close()


def add_rows(conn: sqlite3.Connection, payloads: list[object]) -> None:
    conn.executemany(
        "INSERT INTO outbox (document_id, kind, payload, created_at) VALUES (NULL, 'test.row', ?, ?)",
        [(json.dumps(p, ensure_ascii=False), NOW.isoformat()) for p in payloads],
    )


def upload(conn: sqlite3.Connection, max_rows: int, applied: bool = True) -> list[outbox.Batch]:
    """Form, record and acknowledge every batch, as a round does."""
    sent = []
    while (batch := outbox.next_batch(conn, STORE, max_rows)) is not None:
        outbox.record_batch(conn, batch.seq, batch.first_row, batch.last_row, len(batch.rows), batch.digest, "t")
        assert outbox.recorded_batch(conn, STORE, batch.seq) == batch
        outbox.mark_acked(conn, batch.seq, "applied", batch.seq if applied else 0, NOW.isoformat())
        sent.append(batch)
    return sent


payload = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payloads=st.lists(payload, min_size=0, max_size=40), max_rows=st.integers(1, 12))
def test_batches_cover_the_outbox_in_order_and_parse_back(
    conn: sqlite3.Connection, payloads: list[object], max_rows: int
) -> None:
    conn.execute("DELETE FROM sync_batches")
    conn.execute("DELETE FROM outbox")
    add_rows(conn, payloads)
    batches = upload(conn, max_rows)
    assert [b.seq for b in batches] == list(range(1, len(batches) + 1))
    seen = [row[0] for b in batches for row in b.rows]
    assert seen == [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")]
    assert all(1 <= len(b.rows) <= max_rows for b in batches)
    for batch in batches:
        parsed = decode_body(encode_body(batch.body), compressed=True)
        assert parsed["store"] == STORE and parsed["seq"] == batch.seq and parsed["v"] == 1
        assert [r["seq"] for r in parsed["rows"]] == [row[0] for row in batch.rows]
        assert [r["payload"] for r in parsed["rows"]] == [json.loads(row[4]) for row in batch.rows]
        assert batch.digest == batch_digest(batch.body)
    assert outbox.pending(conn).rows == 0


def test_a_recorded_unacknowledged_batch_is_sent_again_unchanged_even_after_new_rows(conn: sqlite3.Connection) -> None:
    add_rows(conn, [{"n": n} for n in range(5)])
    first = outbox.next_batch(conn, STORE, 10)
    assert first is not None
    outbox.record_batch(conn, first.seq, first.first_row, first.last_row, len(first.rows), first.digest, "t")
    add_rows(conn, [{"n": n} for n in range(5, 9)])  # posted while batch 1 was on the wire (then a crash)
    again = outbox.next_batch(conn, STORE, 10)
    assert again == first  # the same rows, the same bytes, the same digest
    outbox.mark_acked(conn, 1, "applied", 1, NOW.isoformat())
    second = outbox.next_batch(conn, STORE, 10)
    assert second is not None and second.seq == 2 and second.first_row == first.last_row + 1
    assert outbox.pending(conn).rows == 4


def test_batch_after_a_resent_old_batch_is_the_next_unacknowledged_not_seq_plus_one(conn: sqlite3.Connection) -> None:
    add_rows(conn, [{"n": n} for n in range(9)])
    upload(conn, 3)
    outbox.unacknowledge(conn, [1])
    resend = outbox.next_batch(conn, STORE, 3)
    assert resend is not None and resend.seq == 1
    assert outbox.batch_after(conn, STORE, 3, 1, resend.last_row) is None
    add_rows(conn, [{"n": 9}])
    following = outbox.batch_after(conn, STORE, 3, 1, resend.last_row)
    assert following is not None and following.seq == 4 and following.first_row == 10


def test_compaction_keeps_rows_not_applied_or_within_retention_and_records_the_watermark(
    conn: sqlite3.Connection,
) -> None:
    add_rows(conn, [{"n": n} for n in range(10)])
    upload(conn, 4, applied=False)  # acknowledged (stored) but the aggregator applied none yet
    later = NOW + timedelta(days=31)
    assert outbox.compact(conn, later, 30) == 0
    outbox.set_state(conn, {"applied_through": "2"})
    assert outbox.compact(conn, NOW + timedelta(days=29), 30) == 0  # within the retention
    assert outbox.compact(conn, later, 30) == 8  # batches 1 and 2: rows 1..8
    assert [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")] == [9, 10]
    assert outbox.get_state(conn, "compacted_through_row") == "8"
    assert outbox.compact(conn, later, 30) == 0
    assert outbox.recorded_batch(conn, STORE, 1) is None  # its rows are gone: it can no longer be rebuilt
    assert outbox.pending(conn).rows == 0


def test_unacknowledged_rows_are_never_compacted(conn: sqlite3.Connection) -> None:
    add_rows(conn, [{"n": n} for n in range(6)])
    upload(conn, 3)
    outbox.unacknowledge(conn, [2])
    assert outbox.compact(conn, NOW + timedelta(days=400), 30) == 3  # batch 1 only: batch 2 waits
    assert [r[0] for r in conn.execute("SELECT seq FROM outbox ORDER BY seq")] == [4, 5, 6]
    assert outbox.pending(conn).rows == 3
