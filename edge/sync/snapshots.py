"""State the aggregator needs beside the documents: the item master (names, categories, storage class) and the
suppliers' compliance (freezes, papers and their expiry). Each goes upstream as an outbox row (`state.items`,
`state.compliance`) holding the whole state, written only when it changed since the last one sent."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from typing import Any

from edge.sync.outbox import get_state, set_state


def items_state(conn: sqlite3.Connection) -> dict[str, Any]:
    rows = conn.execute(
        "SELECT i.sku, i.name, i.name_en, i.category, c.name, c.name_en, i.storage_class, i.base_unit,"
        " i.shelf_life_days FROM items i LEFT JOIN categories c ON c.code = i.category ORDER BY i.sku"
    ).fetchall()
    keys = (
        "sku", "name", "name_en", "category", "category_name", "category_name_en", "storage_class", "base_unit",
        "shelf_life_days",
    )  # fmt: skip
    return {"items": [dict(zip(keys, tuple(r), strict=True)) for r in rows]}


def compliance_state(conn: sqlite3.Connection) -> dict[str, Any]:
    suppliers: list[dict[str, Any]] = []
    for sid, name in conn.execute("SELECT id, name FROM suppliers ORDER BY id").fetchall():
        freeze = conn.execute(
            "SELECT reason, note, opened_at FROM supplier_freezes WHERE supplier = ? AND lifted_at IS NULL"
            " ORDER BY opened_at LIMIT 1",
            (sid,),
        ).fetchone()
        papers = [
            {"kind": kind, "state": state, "valid_from": valid_from, "expires_on": valid_to}
            for kind, state, valid_from, valid_to in conn.execute(
                "SELECT kind, state, valid_from, valid_to FROM supplier_papers"
                " WHERE supplier = ? AND state = 'confirmed'"
                " ORDER BY kind",
                (sid,),
            )
        ]
        expiries = sorted(p["expires_on"] for p in papers if p["expires_on"])
        suppliers.append(
            {
                "id": sid,
                "name": name,
                "frozen": freeze is not None,
                "freeze_reason": None if freeze is None else f"{freeze[0]}: {freeze[1]}",
                "frozen_at": None if freeze is None else freeze[2],
                "papers": papers,
                "next_expiry": expiries[0] if expiries else None,
            }
        )
    return {"suppliers": suppliers}


def _digest(value: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(value, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def write_snapshots(conn: sqlite3.Connection, now: str) -> list[str]:
    """In the writer's transaction: an outbox row for each state that changed since the last one; their kinds."""
    written: list[str] = []
    for kind, build in (("state.items", items_state), ("state.compliance", compliance_state)):
        value = build(conn)
        digest = _digest(value)
        if get_state(conn, f"snapshot:{kind}") == digest:
            continue
        conn.execute(
            "INSERT INTO outbox (document_id, kind, payload, created_at) VALUES (NULL, ?, ?, ?)",
            (kind, json.dumps(value, ensure_ascii=False, separators=(",", ":")), now),
        )
        set_state(conn, {f"snapshot:{kind}": digest})
        written.append(kind)
    return written


def snapshots_changed(conn: sqlite3.Connection) -> bool:
    """Whether a snapshot would be written (read side, so the writer is asked only when needed)."""
    return any(
        get_state(conn, f"snapshot:{kind}") != _digest(build(conn))
        for kind, build in (("state.items", items_state), ("state.compliance", compliance_state))
    )


__all__ = ["snapshots_changed", "write_snapshots"]
