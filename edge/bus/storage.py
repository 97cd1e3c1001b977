"""SQL of the bus tables: dead letters (死信), sensor readings, event job outcomes. Writes run in the writer."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.bus.payloads import JobOutcome, TemperatureReading
from edge.devices.cold_chain import utc_text
from edge.ledger.posting import PostingContext

DEAD_LETTER_PAYLOAD_CAP = 4096  # bytes of a dead payload kept; enough to see what a device sent


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A device event that will not be posted, as kept for the operator."""

    received_at: datetime
    device: str
    topic: str
    event_id: str | None
    payload: bytes
    reason_code: str
    reason: str
    reason_en: str


def insert_dead_letters(conn: sqlite3.Connection, letters: Sequence[DeadLetter]) -> int:
    """Keep `letters`, each payload cut to DEAD_LETTER_PAYLOAD_CAP bytes; return how many."""
    conn.executemany(
        "INSERT INTO dead_letters (received_at, device, topic, event_id, payload, payload_size,"
        " reason_code, reason, reason_en) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                d.received_at.isoformat(),
                d.device,
                d.topic[:300],
                d.event_id,
                d.payload[:DEAD_LETTER_PAYLOAD_CAP],
                len(d.payload),
                d.reason_code,
                d.reason[:500],
                d.reason_en[:500],
            )
            for d in letters
        ],
    )
    return len(letters)


def list_dead_letters(
    conn: sqlite3.Connection, *, device: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """The newest dead letters first, payload as text where it decodes (else hex)."""
    where, params = ("WHERE device = ?", [device]) if device else ("", [])
    rows = conn.execute(
        "SELECT id, received_at, device, topic, event_id, payload, payload_size, reason_code, reason, reason_en"
        f" FROM dead_letters {where} ORDER BY id DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    ).fetchall()
    result = []
    for row in rows:
        payload = bytes(row["payload"])
        try:
            text, encoding = payload.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = payload.hex(), "hex"
        result.append(
            {
                "id": row["id"],
                "received_at": row["received_at"],
                "device": row["device"],
                "topic": row["topic"],
                "event_id": row["event_id"],
                "payload": text,
                "payload_encoding": encoding,
                "payload_size": row["payload_size"],
                "reason_code": row["reason_code"],
                "reason": row["reason"],
                "reason_en": row["reason_en"],
            }
        )
    return result


def insert_readings(
    conn: sqlite3.Connection, readings: Sequence[TemperatureReading], received_at: datetime
) -> list[TemperatureReading]:
    """Store temperature readings; a resent event id (same device) is kept once. Return those refused.

    A reading without a location belongs to the room its sensor is placed in (`devices.location`). A reading
    naming a location the box does not know belongs to no room and could raise no alarm: it is refused (not
    stored), and the ingest answers it `unknown_location` and keeps it as a dead letter. The cold chain
    (edge/devices/cold_chain.py) takes the stored readings into rollups and excursions after the commit.
    """
    named = sorted({r.location for r in readings if r.location is not None})
    known = {
        row[0]
        for row in conn.execute(
            "SELECT code FROM locations WHERE code IN (SELECT value FROM json_each(?))", (json.dumps(named),)
        )
    }
    refused = [r for r in readings if r.location is not None and r.location not in known]
    conn.executemany(
        "INSERT OR IGNORE INTO sensor_readings (device, event_id, ts, ts_utc, received_at, location, milli_celsius)"
        " VALUES (?, ?, ?, ?, ?, COALESCE(?, (SELECT location FROM devices WHERE id = ?)), ?)",
        [
            (
                r.device,
                r.event_id,
                r.ts.isoformat(),
                utc_text(r.ts),
                received_at.isoformat(),
                r.location,
                r.device,
                r.milli_celsius,
            )
            for r in readings
            if r.location is None or r.location in known
        ],
    )
    return refused


def run_event_job(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    key: str,
    kind: str,
    fn: Callable[..., JobOutcome],
    args: tuple[Any, ...],
) -> JobOutcome:
    """Run a device event's writer job once per idempotency `key`; a resent event gets the first outcome.

    Runs in the writer, inside the job's savepoint: if `fn` raises, neither its writes nor the outcome stay.
    """
    row = conn.execute("SELECT outcome FROM event_outcomes WHERE key = ?", (key,)).fetchone()
    if row is not None:
        stored = json.loads(row["outcome"])
        return JobOutcome(
            ok=bool(stored["ok"]),
            code=stored["code"],
            message=stored["message"],
            message_en=stored["message_en"],
            document=stored.get("document"),
            detail=stored.get("detail"),
            replayed=True,
        )
    outcome = fn(conn, ctx, *args)
    body = {
        "ok": outcome.ok,
        "code": outcome.code,
        "message": outcome.message,
        "message_en": outcome.message_en,
        "document": outcome.document,
        "detail": outcome.detail,
    }
    conn.execute(
        "INSERT INTO event_outcomes (key, kind, ok, outcome, ts) VALUES (?, ?, ?, ?, ?)",
        (key, kind, int(outcome.ok), json.dumps(body, ensure_ascii=False), ctx.now.isoformat()),
    )
    return outcome
