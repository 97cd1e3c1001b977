"""Holds on documents (暂挂) that a rule's `hold_document` action placed, and the check finance makes.

While a hold is open, finance refuses approving the held purchase order (edge/finance/compliance.py
`approve_purchase_order`) and accepting, approving or rechecking (which may post) the held invoice
(edge/finance/ap.py `resolve_exception`), with `DocumentHeld` (409). A user holding `rules:act` who is not the
document's author releases the hold with a note; both acts are audited.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.ledger.audit import append_audit
from edge.rules.errors import RuleError

HOLD_KINDS = ("purchase_order", "invoice", "document")
KIND_NAMES = {
    "purchase_order": ("采购订单", "purchase order"),
    "invoice": ("发票", "invoice"),
    "document": ("单据", "document"),
}
MAX_NOTE = 500


class DocumentHeld(RuleError):
    """A rule holds the document: approving or posting it waits until someone releases the hold."""

    code = "document_held"
    status = 409


class HoldError(RuleError):
    """A hold cannot be released (unknown, already released, released by its document's author)."""

    code = "hold_invalid"
    status = 409


class UnknownHold(HoldError):
    code = "unknown_hold"
    status = 404


@dataclass(frozen=True, slots=True)
class Hold:
    """One hold as stored (table `holds`)."""

    id: int
    object_kind: str
    object_id: int
    rule_id: str
    version: int
    reason: str
    reason_en: str
    state: str
    opened_at: str
    released_by: str | None = None
    released_at: str | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {field: getattr(self, field) for field in self.__dataclass_fields__}


def _hold(row: sqlite3.Row) -> Hold:
    return Hold(
        id=int(row["id"]),
        object_kind=row["object_kind"],
        object_id=int(row["object_id"]),
        rule_id=row["rule_id"],
        version=int(row["version"]),
        reason=row["reason"],
        reason_en=row["reason_en"],
        state=row["state"],
        opened_at=row["opened_at"],
        released_by=row["released_by"],
        released_at=row["released_at"],
        note=row["note"],
    )


def open_hold(conn: sqlite3.Connection, kind: str, object_id: int) -> Hold | None:
    """The open hold on this object (a purchase order or another document by document id, an invoice by invoice
    id), or None. A purchase order is also held by a hold on it as a plain `document`."""
    kinds = ("purchase_order", "document") if kind in ("purchase_order", "document") else (kind,)
    row = conn.execute(
        f"SELECT * FROM holds WHERE object_kind IN ({', '.join('?' * len(kinds))}) AND object_id = ?"
        " AND state = 'open' ORDER BY id LIMIT 1",
        (*kinds, object_id),
    ).fetchone()
    return None if row is None else _hold(row)


def check_not_held(conn: sqlite3.Connection, kind: str, object_id: int, label: str | None = None) -> None:
    """Raise DocumentHeld when a rule holds this object; finance calls it before approving or posting."""
    hold = open_hold(conn, kind, object_id)
    if hold is None:
        return
    zh, en = KIND_NAMES.get(kind, (kind, kind))
    name = label or str(object_id)
    raise DocumentHeld(
        f"{zh} {name} 被规则 {hold.rule_id} (第 {hold.version} 版) 暂挂: {hold.reason}。须由有 rules:act 权限的人"
        f"(非制单人) 解除暂挂后才能继续",
        f"{en} {name} is held by rule {hold.rule_id} (version {hold.version}): {hold.reason_en}. Someone with"
        " rules:act other than its author must release the hold first",
        hold=hold.id,
        object_kind=kind,
        object_id=object_id,
        rule_id=hold.rule_id,
        version=hold.version,
    )


def place_hold(
    conn: sqlite3.Connection,
    *,
    kind: str,
    object_id: int,
    rule_id: str,
    version: int,
    reason: str,
    reason_en: str,
    now: datetime,
    firing_id: int | None = None,
    action_id: int | None = None,
) -> tuple[int, bool]:
    """Open a hold (the `hold_document` action); an object already held by an open hold keeps that one.
    Returns (hold id, created)."""
    if kind not in HOLD_KINDS:
        raise HoldError(f"不能暂挂 {kind}", f"cannot hold a {kind}", object_kind=kind)
    existing = conn.execute(
        "SELECT id FROM holds WHERE object_kind = ? AND object_id = ? AND state = 'open'", (kind, object_id)
    ).fetchone()
    if existing is not None:
        return int(existing[0]), False
    cursor = conn.execute(
        "INSERT INTO holds (object_kind, object_id, rule_id, version, firing_id, action_id, reason, reason_en,"
        " opened_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (kind, object_id, rule_id, version, firing_id, action_id, reason, reason_en, now.isoformat()),
    )
    return int(cursor.lastrowid or 0), True


def _author(conn: sqlite3.Connection, kind: str, object_id: int) -> str | None:
    if kind == "invoice":
        row = conn.execute("SELECT entered_by FROM invoices WHERE id = ?", (object_id,)).fetchone()
    else:
        row = conn.execute("SELECT actor FROM documents WHERE id = ?", (object_id,)).fetchone()
    return None if row is None else str(row[0])


def get_hold(conn: sqlite3.Connection, hold_id: int) -> Hold:
    row = conn.execute("SELECT * FROM holds WHERE id = ?", (hold_id,)).fetchone()
    if row is None:
        raise UnknownHold(f"暂挂 {hold_id} 不存在", f"no such hold: {hold_id}", hold=hold_id)
    return _hold(row)


def list_holds(conn: sqlite3.Connection, *, state: str | None = None, limit: int = 100, offset: int = 0) -> list[Hold]:
    """Holds, newest first; `state` open or released filters."""
    where, params = ("WHERE state = ?", (state,)) if state is not None else ("", ())
    rows = conn.execute(f"SELECT * FROM holds {where} ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset))
    return [_hold(r) for r in rows]


def release_hold(conn: sqlite3.Connection, hold_id: int, actor: str, note: str, now: datetime) -> Hold:
    """Release an open hold (the caller checked `rules:act`); the held document's author may not. Audited."""
    hold = get_hold(conn, hold_id)
    if hold.state != "open":
        raise HoldError(
            f"暂挂 {hold_id} 已由 {hold.released_by} 解除",
            f"hold {hold_id} was already released by {hold.released_by}",
            hold=hold_id,
            released_by=hold.released_by,
        )
    note = (note or "").strip()
    if not note or len(note) > MAX_NOTE:
        raise HoldError(
            f"解除暂挂须写明说明 (1..{MAX_NOTE} 字)",
            f"releasing a hold needs a note (1..{MAX_NOTE} characters)",
            field="note",
        )
    author = _author(conn, hold.object_kind, hold.object_id)
    if author is not None and author == actor:
        raise HoldError(
            f"不能解除自己制单的暂挂: 须由 {author} 以外的人解除",
            f"you cannot release a hold on a document you made; someone other than {author} must",
            hold=hold_id,
            author=author,
        )
    at = now.isoformat()
    conn.execute(
        "UPDATE holds SET state = 'released', released_by = ?, released_at = ?, note = ?"
        " WHERE id = ? AND state = 'open'",
        (actor, at, note, hold_id),
    )
    append_audit(
        conn,
        ts=at,
        actor=actor,
        device=None,
        action="hold.release",
        object=f"{hold.object_kind}:{hold.object_id}",
        detail={"hold": hold_id, "rule_id": hold.rule_id, "version": hold.version, "note": note},
    )
    return get_hold(conn, hold_id)
