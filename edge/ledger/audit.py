"""Audit trail (审计日志): one row per act, each hash chained to the one before, so tampering shows."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

GENESIS = "0" * 64


def row_hash(prev_hash: str, ts: str, actor: str, device: str | None, action: str, obj: str, detail: str) -> str:
    body = json.dumps([prev_hash, ts, actor, device, action, obj, detail], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def append_audit(
    conn: sqlite3.Connection,
    *,
    ts: str,
    actor: str,
    device: str | None,
    action: str,
    object: str,
    detail: dict[str, Any],
) -> str:
    """Append one audit row chained to the last; return its hash."""
    row = conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    prev = row[0] if row else GENESIS
    detail_text = json.dumps(detail, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    digest = row_hash(prev, ts, actor, device, action, object, detail_text)
    conn.execute(
        "INSERT INTO audit (ts, actor, device, action, object, detail, prev_hash, hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (ts, actor, device, action, object, detail_text, prev, digest),
    )
    return digest


def verify_chain(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every break in the chain: a row whose prev_hash or hash does not match. Empty when intact."""
    problems: list[dict[str, Any]] = []
    prev = GENESIS
    for r in conn.execute(
        "SELECT seq, ts, actor, device, action, object, detail, prev_hash, hash FROM audit ORDER BY seq"
    ):
        expected = row_hash(prev, r[1], r[2], r[3], r[4], r[5], r[6])
        if r[7] != prev:
            problems.append({"seq": r[0], "problem": "prev_hash does not match the previous row"})
        elif r[8] != expected:
            problems.append({"seq": r[0], "problem": "hash does not match the row's content"})
        prev = r[8]
    return problems
