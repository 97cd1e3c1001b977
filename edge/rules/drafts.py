"""Drafts rules and modules propose (规则草稿): a purchase order, a transfer request, a presale, a markdown.

A draft never changes stock by itself. Someone confirms it or dismisses it. Confirming a `purchase_order` draft
posts the purchase order (a PO moves no stock; the ledger's own guards apply: a frozen supplier is refused, the
draft stays open). The other kinds are decisions the store carries out elsewhere (a presale on the till, a
markdown label, a transfer request to a neighbour); confirming records who decided and when. Both are audited
with the rule's (or module's) id and version.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from edge.ledger.audit import append_audit
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.posting import PostingContext, post
from edge.rules.errors import RuleError, RuleInvalid
from edge.rules.store import atomic, newest_rows

MAX_NOTE = 500
KINDS = ("purchase_order", "transfer_request", "presale", "markdown")


class DraftError(RuleError):
    """A draft cannot be decided (unknown, decided already, refused by the ledger)."""

    code = "rule_draft_invalid"
    status = 409


class UnknownDraft(DraftError):
    code = "unknown_rule_draft"
    status = 404


def _json(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["payload"] = json.loads(out["payload"])
    return out


def list_drafts(
    conn: sqlite3.Connection, *, state: str | None = None, kind: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Drafts newest first, by state and kind."""
    return [_json(r) for r in newest_rows(conn, "rule_drafts", {"state": state, "kind": kind}, limit, offset)]


def get_draft(conn: sqlite3.Connection, draft_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM rule_drafts WHERE id = ?", (draft_id,)).fetchone()
    if row is None:
        raise UnknownDraft(f"没有草稿 {draft_id}", f"no rule draft {draft_id}", draft=draft_id)
    return _json(row)


def _open(conn: sqlite3.Connection, draft_id: int) -> dict[str, Any]:
    draft = get_draft(conn, draft_id)
    if draft["state"] != "open":
        raise DraftError(
            f"草稿 {draft_id} 已由 {draft['decided_by']} 处理 ({draft['state']})",
            f"rule draft {draft_id} was decided already by {draft['decided_by']} ({draft['state']})",
            draft=draft_id,
            state=draft["state"],
            decided_by=draft["decided_by"],
        )
    return draft


def _note(note: Any) -> str:
    text = note.strip() if isinstance(note, str) else ""
    if len(text) > MAX_NOTE:
        raise RuleInvalid(f"备注最多 {MAX_NOTE} 字", f"a note has at most {MAX_NOTE} characters", field="note")
    return text


def _decide(
    conn: sqlite3.Connection, draft: dict[str, Any], state: str, actor: str, now: datetime, note: str, **extra: Any
) -> dict[str, Any]:
    at = now.isoformat()
    conn.execute(
        "UPDATE rule_drafts SET state = ?, decided_by = ?, decided_at = ?, document_id = ?"
        " WHERE id = ? AND state = 'open'",
        (state, actor, at, extra.get("document_id"), draft["id"]),
    )
    append_audit(
        conn,
        ts=at,
        actor=actor,
        device=None,
        action=f"rule_draft.{'confirm' if state == 'confirmed' else 'dismiss'}",
        object=f"rule_draft:{draft['id']}",
        detail={
            "draft": draft["id"],
            "kind": draft["kind"],
            "rule_id": draft["rule_id"],
            "version": draft["version"],
            "note": note,
            **extra,
        },
    )
    return get_draft(conn, int(draft["id"]))


def confirm_draft(
    conn: sqlite3.Connection, ctx: PostingContext, draft_id: int, actor: str, note: Any = None
) -> dict[str, Any]:
    """Confirm an open draft (in the writer's posting transaction): a purchase order draft posts its PO."""
    text = _note(note)
    with atomic(conn, "confirm_draft"):
        draft = _open(conn, draft_id)
        extra: dict[str, Any] = {}
        if draft["kind"] == "purchase_order":
            extra = _post_order(conn, ctx, draft, actor, text)
        return _decide(conn, draft, "confirmed", actor, ctx.now, text, **extra)


def _post_order(
    conn: sqlite3.Connection, ctx: PostingContext, draft: dict[str, Any], actor: str, note: str
) -> dict[str, Any]:
    payload = draft["payload"]
    supplier, qty = payload.get("supplier"), payload.get("base_qty")
    if not supplier or not isinstance(qty, int) or qty < 1:
        raise DraftError(
            f"草稿 {draft['id']} 缺少供应商或数量, 无法生成采购订单",
            f"rule draft {draft['id']} has no supplier or quantity to order",
            draft=draft["id"],
        )
    origin = f"{draft['rule_id']}@{draft['version']}"
    command = PostDocument(
        key=f"rule-draft:{draft['id']}",
        type=DocType.PURCHASE_ORDER,
        lines=(Line(code=str(payload["sku"]), qty=qty),),
        counterparty=str(supplier),
        note=(note or f"规则草稿 #{draft['id']} ({origin}) / rule draft")[:500],
        actor=actor,
    )
    result = post(conn, command, ctx)
    if not result.ok:
        raise DraftError(
            f"采购订单未生成: {result.message}",
            f"the purchase order was refused: {result.message_en}",
            draft=draft["id"],
            ledger_code=result.code,
            ledger_detail=result.detail,
        )
    return {"document_id": result.document_id, "doc_no": result.doc_no}


def dismiss_draft(
    conn: sqlite3.Connection, draft_id: int, actor: str, now: datetime, note: Any = None
) -> dict[str, Any]:
    """Dismiss an open draft with an optional note."""
    text = _note(note)
    with atomic(conn, "dismiss_draft"):
        return _decide(conn, _open(conn, draft_id), "dismissed", actor, now, text)
