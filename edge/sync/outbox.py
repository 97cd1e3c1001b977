"""The outbox as sync reads it: batches in order, recorded before they are sent, acknowledged, compacted.

Functions over a connection, no I/O beyond it. Reads run on reader connections; `record_batch`, `mark_acked`,
`mark_failed`, `set_state` and `compact` run in the writer's transaction (module-level, so they pickle).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta

from edge.sync.protocol import batch_body, batch_digest

OutboxRow = tuple[int, str, str, int | None, str]  # seq, kind, created_at, document_id, payload JSON text


@dataclass(frozen=True, slots=True)
class Batch:
    seq: int
    rows: list[OutboxRow]
    body: bytes  # uncompressed; its sha256 is the digest the aggregator keeps

    @property
    def first_row(self) -> int:
        return self.rows[0][0]

    @property
    def last_row(self) -> int:
        return self.rows[-1][0]

    @property
    def digest(self) -> str:
        return batch_digest(self.body)


@dataclass(frozen=True, slots=True)
class Pending:
    head_seq: int  # the newest outbox row
    rows: int  # rows not yet acknowledged
    oldest_at: str | None  # created_at of the oldest of them


def get_state(conn: sqlite3.Connection, key: str) -> str | None:
    row = conn.execute("SELECT value FROM sync_state WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_state(conn: sqlite3.Connection, values: dict[str, str]) -> None:
    conn.executemany(
        "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        list(values.items()),
    )


def _rows(conn: sqlite3.Connection, after: int, limit: int, through: int | None = None) -> list[OutboxRow]:
    if through is None:
        cursor = conn.execute(
            "SELECT seq, kind, created_at, document_id, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
    else:
        cursor = conn.execute(
            "SELECT seq, kind, created_at, document_id, payload FROM outbox WHERE seq > ? AND seq <= ? ORDER BY seq",
            (after, through),
        )
    return [(int(r[0]), str(r[1]), str(r[2]), None if r[3] is None else int(r[3]), str(r[4])) for r in cursor]


def recorded_batch(conn: sqlite3.Connection, store: str, seq: int) -> Batch | None:
    """A batch recorded earlier, rebuilt byte for byte from its outbox rows (None when they were compacted)."""
    row = conn.execute("SELECT first_row, last_row, row_count FROM sync_batches WHERE seq = ?", (seq,)).fetchone()
    if row is None:
        return None
    rows = _rows(conn, int(row[0]) - 1, 0, through=int(row[1]))
    if len(rows) != int(row[2]):
        return None
    return Batch(seq, rows, batch_body(store, seq, rows))


def next_batch(conn: sqlite3.Connection, store: str, max_rows: int) -> Batch | None:
    """The first batch not yet acknowledged (recorded and unsent, or a new one from the rows after the last)."""
    unacked = conn.execute("SELECT MIN(seq) FROM sync_batches WHERE acked_at IS NULL").fetchone()[0]
    if unacked is not None:
        return recorded_batch(conn, store, int(unacked))
    last = conn.execute("SELECT seq, last_row FROM sync_batches ORDER BY seq DESC LIMIT 1").fetchone()
    seq, after = (int(last[0]) + 1, int(last[1])) if last else (1, int(get_state(conn, "compacted_through_row") or 0))
    rows = _rows(conn, after, max_rows)
    if not rows:
        return None
    return Batch(seq, rows, batch_body(store, seq, rows))


def batch_after(conn: sqlite3.Connection, store: str, max_rows: int, seq: int, last_row: int) -> Batch | None:
    """The batch that follows batch `seq` (ending at outbox row `last_row`): recorded already, or new. Read while
    `seq` is still on the wire, so that building, compressing and sending overlap."""
    # What next_batch will answer once `seq` is acknowledged: another unacknowledged batch (one the aggregator
    # asked for again, or recorded before a crash), else a new one after the newest recorded. Not simply seq + 1:
    # when `seq` is an old batch sent again, seq + 1 may be acknowledged already.
    unacked = conn.execute("SELECT MIN(seq) FROM sync_batches WHERE acked_at IS NULL AND seq != ?", (seq,)).fetchone()[
        0
    ]
    if unacked is not None:
        return recorded_batch(conn, store, int(unacked))
    newest = conn.execute("SELECT seq, last_row FROM sync_batches ORDER BY seq DESC LIMIT 1").fetchone()
    next_seq, after = (
        (seq + 1, last_row) if newest is None or int(newest[0]) <= seq else (int(newest[0]) + 1, int(newest[1]))
    )
    rows = _rows(conn, after, max_rows)
    return Batch(next_seq, rows, batch_body(store, next_seq, rows)) if rows else None


def record_batch(
    conn: sqlite3.Connection, seq: int, first_row: int, last_row: int, count: int, digest: str, now: str
) -> None:
    """Remember a batch before it is sent (idempotent: a batch recorded before is left as it is)."""
    conn.execute(
        "INSERT INTO sync_batches (seq, first_row, last_row, row_count, digest, created_at) VALUES (?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (seq) DO NOTHING",
        (seq, first_row, last_row, count, digest, now),
    )


def record_and_send(
    conn: sqlite3.Connection, seq: int, first_row: int, last_row: int, count: int, digest: str, now: str
) -> None:
    """Record a batch (if new) and count an attempt to send it, in one writer transaction."""
    record_batch(conn, seq, first_row, last_row, count, digest, now)
    mark_sent(conn, seq, now)


def mark_sent(conn: sqlite3.Connection, seq: int, now: str) -> None:
    conn.execute("UPDATE sync_batches SET sent_at = ?, attempts = attempts + 1 WHERE seq = ?", (now, seq))


def mark_acked(conn: sqlite3.Connection, seq: int, status: str, applied_through: int, now: str) -> None:
    """The aggregator stored batch `seq`: the batch and its outbox rows are acknowledged."""
    row = conn.execute("SELECT first_row, last_row FROM sync_batches WHERE seq = ?", (seq,)).fetchone()
    if row is None:
        return
    conn.execute(
        "UPDATE sync_batches SET acked_at = COALESCE(acked_at, ?), status = ?, last_error = NULL WHERE seq = ?",
        (now, status, seq),
    )
    conn.execute("UPDATE outbox SET acked_at = ? WHERE seq BETWEEN ? AND ? AND acked_at IS NULL", (now, row[0], row[1]))
    set_state(conn, {"applied_through": str(applied_through), "last_ack_at": now})


def mark_failed(conn: sqlite3.Connection, seq: int, error: str) -> None:
    conn.execute("UPDATE sync_batches SET last_error = ? WHERE seq = ?", (error[:500], seq))


def unacknowledge(conn: sqlite3.Connection, seqs: list[int]) -> None:
    """The aggregator says it is missing these (it lost them): send them again."""
    conn.executemany("UPDATE sync_batches SET acked_at = NULL, status = 'missing' WHERE seq = ?", [(s,) for s in seqs])


def pending(conn: sqlite3.Connection) -> Pending:
    head = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0])
    acked = conn.execute("SELECT MAX(last_row) FROM sync_batches WHERE acked_at IS NOT NULL").fetchone()[0]
    first_unacked = conn.execute("SELECT MIN(first_row) FROM sync_batches WHERE acked_at IS NULL").fetchone()[0]
    after = int(acked or get_state(conn, "compacted_through_row") or 0)
    if first_unacked is not None:
        after = min(after, int(first_unacked) - 1)
    # Outbox seqs have no holes above the compaction watermark (AUTOINCREMENT, rows deleted only by compaction,
    # a rolled-back insert gives its number back), so the count is a subtraction, not a scan of a week's backlog.
    oldest = conn.execute("SELECT created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1", (after,)).fetchone()
    return Pending(head, max(0, head - after), None if oldest is None else str(oldest[0]))


def pending_after(conn: sqlite3.Connection, last_row: int) -> Pending:
    """What is left to send after the batch ending at outbox row `last_row` (sent with that batch)."""
    head = int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0])
    oldest = conn.execute("SELECT created_at FROM outbox WHERE seq > ? ORDER BY seq LIMIT 1", (last_row,)).fetchone()
    return Pending(head, max(0, head - last_row), None if oldest is None else str(oldest[0]))


def compact(conn: sqlite3.Connection, now: datetime, retention_days: int) -> int:
    """Delete outbox rows whose batch was acknowledged, applied by the aggregator and acknowledged longer than the
    retention period ago; record the watermark so `ledger verify` knows their documents had their row."""
    applied = int(get_state(conn, "applied_through") or 0)
    cutoff = (now - timedelta(days=retention_days)).isoformat()
    through: int | None = None
    # Only a prefix of batches, all acknowledged long enough ago and applied: nothing after a gap goes.
    for seq, last_row, acked_at in conn.execute("SELECT seq, last_row, acked_at FROM sync_batches ORDER BY seq"):
        if seq > applied or acked_at is None or acked_at >= cutoff:
            break
        through = int(last_row)
    if through is None:
        return 0
    already = int(get_state(conn, "compacted_through_row") or 0)
    if through <= already:
        return 0
    document = conn.execute(
        "SELECT COALESCE(MAX(document_id), 0) FROM outbox WHERE seq <= ? AND seq > ?", (through, already)
    ).fetchone()[0]
    deleted = conn.execute("DELETE FROM outbox WHERE seq <= ? AND seq > ?", (through, already)).rowcount
    previous_doc = int(get_state(conn, "compacted_through_document") or 0)
    set_state(
        conn,
        {"compacted_through_row": str(through), "compacted_through_document": str(max(previous_doc, int(document)))},
    )
    return int(deleted)
