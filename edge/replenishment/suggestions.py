"""Reorder suggestions (补货建议): list and read them, approve them into purchase orders, reject them with a reason;
and the item supplier parameters the plan uses (商品供应商及订货参数).

Approving posts a purchase_order document through the ledger (so the finance guards apply: a frozen supplier or
missing papers refuse it with the guard's own message, and the suggestion stays open). Several suggestions approved
at once make one PO per supplier. Each decision is kept once per idempotency key.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from edge.ledger.audit import append_audit
from edge.ledger.commands import DocType, Line, PostDocument, PostResult
from edge.ledger.errors import DomainError
from edge.ledger.posting import PostingContext, post
from edge.replenishment.errors import (
    InvalidSuggestionDecision,
    ItemSupplierInvalid,
    SuggestionKeyReused,
    SuggestionNotFound,
    SuggestionNotOpen,
)

STATES = ("open", "approved", "rejected", "superseded")
MAX_ORDER_PACKS = 100_000
MAX_REASON = 500
MAX_BATCH = 500
STATE_NAMES = {
    "open": ("待处理", "open"),
    "approved": ("已批准", "approved"),
    "rejected": ("已驳回", "rejected"),
    "superseded": ("已被新建议取代", "superseded"),
}

_COLUMNS = (
    "s.id, s.run_id, s.sku, i.name AS item_name, i.name_en AS item_name_en, s.location, s.supplier,"
    " p.name AS supplier_name, s.qty, s.unit, s.pack, s.base_qty, i.base_unit, s.order_by, s.explanation,"
    " s.explanation_en, s.inputs, s.state, s.created_at, s.decided_by, s.decided_at, s.reject_reason,"
    " s.approved_qty, s.po_id, d.doc_no AS po_doc_no"
)
_FROM = (
    " FROM suggestions s JOIN items i ON i.sku = s.sku LEFT JOIN suppliers p ON p.id = s.supplier"
    " LEFT JOIN documents d ON d.id = s.po_id"
)


def _suggestion_json(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["inputs"] = json.loads(row["inputs"])
    return out


def list_suggestions(
    conn: sqlite3.Connection,
    *,
    state: str | None = "open",
    supplier: str | None = None,
    sku: str | None = None,
    location: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """Suggestions matching the filters, most urgent first (order-by date, then id); `total` counts them all."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("s.state", state), ("s.supplier", supplier), ("s.sku", sku), ("s.location", location)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    total = int(conn.execute(f"SELECT COUNT(*) FROM suggestions s{clause}", params).fetchone()[0])
    rows = conn.execute(
        f"SELECT {_COLUMNS}{_FROM}{clause} ORDER BY s.order_by, s.id DESC LIMIT ? OFFSET ?", [*params, limit, offset]
    ).fetchall()
    return {"total": total, "limit": limit, "offset": offset, "items": [_suggestion_json(r) for r in rows]}


def get_suggestion(conn: sqlite3.Connection, suggestion_id: int) -> dict[str, Any]:
    row = conn.execute(f"SELECT {_COLUMNS}{_FROM} WHERE s.id = ?", (suggestion_id,)).fetchone()
    if row is None:
        raise SuggestionNotFound(suggestion_id)
    return _suggestion_json(row)


# --- decisions --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """Approve suggestions into PO drafts; `quantities` (suggestion id, purchase units) change a quantity."""

    key: str
    ids: tuple[int, ...]
    actor: str
    quantities: tuple[tuple[int, int], ...] = ()
    note: str | None = None

    def fingerprint(self) -> str:
        body = ["approve", sorted(self.ids), sorted(self.quantities), self.note]
        return hashlib.sha256(json.dumps(body).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RejectionRequest:
    key: str
    suggestion_id: int
    reason: str
    actor: str

    def fingerprint(self) -> str:
        body = ["reject", self.suggestion_id, self.reason]
        return hashlib.sha256(json.dumps(body, ensure_ascii=False).encode()).hexdigest()


def _replay(conn: sqlite3.Connection, key: str, fingerprint: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT fingerprint, result FROM suggestion_requests WHERE key = ?", (key,)).fetchone()
    if row is None:
        return None
    if row["fingerprint"] != fingerprint:
        raise SuggestionKeyReused(
            "此 Idempotency-Key 已用于另一个操作，请换一个键",
            "this Idempotency-Key was used for a different decision; use a new key",
            key=key,
        )
    stored: dict[str, Any] = json.loads(row["result"])
    stored["replayed"] = True
    return stored


def _remember(conn: sqlite3.Connection, key: str, fingerprint: str, result: dict[str, Any], now: datetime) -> None:
    conn.execute(
        "INSERT INTO suggestion_requests (key, fingerprint, result, ts) VALUES (?, ?, ?, ?)",
        (key, fingerprint, json.dumps(result, ensure_ascii=False), now.isoformat()),
    )


def _open_rows(conn: sqlite3.Connection, ids: Sequence[int]) -> list[sqlite3.Row]:
    rows = []
    for suggestion_id in ids:
        row = conn.execute("SELECT * FROM suggestions WHERE id = ?", (suggestion_id,)).fetchone()
        if row is None:
            raise SuggestionNotFound(suggestion_id)
        if row["state"] != "open":
            zh, en = STATE_NAMES[row["state"]]
            raise SuggestionNotOpen(
                f"补货建议 {suggestion_id} {zh}，只能处理待处理的建议",
                f"suggestion {suggestion_id} is {en}; only open suggestions can be decided",
                suggestion=suggestion_id,
                state=row["state"],
            )
        rows.append(row)
    return rows


def refusal_error(result: PostResult) -> DomainError:
    """The ledger's refusal as the error class of its code (a guard's supplier_frozen keeps its code and status)."""
    pending: list[type[DomainError]] = [DomainError]
    found: type[DomainError] = DomainError
    while pending:
        cls = pending.pop()
        if cls.code == result.code:
            found = cls
            break
        pending.extend(cls.__subclasses__())
    error = found.__new__(found)
    DomainError.__init__(error, result.message, result.message_en, **result.detail)
    return error


def approve_suggestions(conn: sqlite3.Connection, ctx: PostingContext, request: ApprovalRequest) -> dict[str, Any]:
    """Post one purchase order per supplier of the suggestions and mark them approved (in the caller's
    transaction, e.g. `writer.execute_posting`). A supplier the ledger refuses (a finance guard) is reported in
    `refused` and its suggestions stay open; nothing of a refusal is kept, so the same key may try again."""
    if not request.ids or len(request.ids) > MAX_BATCH or len(set(request.ids)) != len(request.ids):
        raise InvalidSuggestionDecision(
            f"须指定 1 到 {MAX_BATCH} 个不同的建议", f"name 1 to {MAX_BATCH} distinct suggestions", field="ids"
        )
    fingerprint = request.fingerprint()
    replayed = _replay(conn, request.key, fingerprint)
    if replayed is not None:
        return replayed
    rows = _open_rows(conn, request.ids)
    quantities = dict(request.quantities)
    for suggestion_id, qty in quantities.items():
        if suggestion_id not in request.ids:
            raise InvalidSuggestionDecision(
                f"数量指定给了未批准的建议 {suggestion_id}",
                f"a quantity names suggestion {suggestion_id}, which is not being approved",
                field="qty",
                suggestion=suggestion_id,
            )
        if isinstance(qty, bool) or not isinstance(qty, int) or not 1 <= qty <= MAX_ORDER_PACKS:
            raise InvalidSuggestionDecision(
                f"订货数量须为 1 到 {MAX_ORDER_PACKS} 的整数", f"quantity must be 1..{MAX_ORDER_PACKS}", field="qty"
            )
    by_supplier: dict[str, list[tuple[sqlite3.Row, int]]] = {}
    for row in rows:
        qty = quantities.get(int(row["id"]), int(row["qty"]))
        if qty < 1:
            raise InvalidSuggestionDecision(
                f"建议 {row['id']} 的数量为 0，请指定订货数量",
                f"suggestion {row['id']} suggests 0; give the quantity to order",
                field="qty",
                suggestion=int(row["id"]),
            )
        by_supplier.setdefault(row["supplier"], []).append((row, qty))
    approved: list[dict[str, Any]] = []
    refused: list[dict[str, Any]] = []
    for supplier in sorted(by_supplier):
        group = by_supplier[supplier]
        ids = [int(r["id"]) for r, _ in group]
        note = request.note or f"补货建议 {', '.join(f'#{i}' for i in ids)} / replenishment suggestions"
        command = PostDocument(
            key=f"{request.key}:po:{supplier}",
            type=DocType.PURCHASE_ORDER,
            lines=tuple(Line(code=r["sku"], qty=q, unit=r["unit"], location=r["location"]) for r, q in group),
            counterparty=supplier,
            note=note[:500],
            actor=request.actor,
        )
        conn.execute("SAVEPOINT approve_supplier")
        result = post(conn, command, ctx)
        if not result.ok:
            conn.execute("ROLLBACK TO approve_supplier")
            conn.execute("RELEASE approve_supplier")
            refused.append(
                {
                    "supplier": supplier,
                    "suggestions": ids,
                    "code": result.code,
                    "message": result.message,
                    "message_en": result.message_en,
                    "detail": result.detail,
                }
            )
            continue
        for row, qty in group:
            conn.execute(
                "UPDATE suggestions SET state = 'approved', decided_by = ?, decided_at = ?, approved_qty = ?,"
                " po_id = ? WHERE id = ? AND state = 'open'",
                (request.actor, ctx.now.isoformat(), qty, result.document_id, row["id"]),
            )
        conn.execute("RELEASE approve_supplier")
        approved.append(
            {"supplier": supplier, "suggestions": ids, "po_id": result.document_id, "po_doc_no": result.doc_no}
        )
    outcome = {"approved": approved, "refused": refused, "replayed": False}
    if approved:
        _remember(conn, request.key, fingerprint, outcome, ctx.now)
    return outcome


def approve_one(conn: sqlite3.Connection, ctx: PostingContext, request: ApprovalRequest) -> dict[str, Any]:
    """Approve one suggestion; a refusal is raised as the guard's error. Returns the suggestion as it is now."""
    outcome = approve_suggestions(conn, ctx, request)
    if outcome["refused"]:
        refusal = outcome["refused"][0]
        result = PostResult(
            key=request.key,
            ok=False,
            code=refusal["code"],
            message=refusal["message"],
            message_en=refusal["message_en"],
            detail=refusal["detail"],
        )
        raise refusal_error(result)
    suggestion = get_suggestion(conn, request.ids[0])
    suggestion["replayed"] = outcome["replayed"]
    return suggestion


def reject_suggestion(conn: sqlite3.Connection, request: RejectionRequest, now: datetime) -> dict[str, Any]:
    """Reject an open suggestion with a reason (kept with it). Returns the suggestion as it is now."""
    reason = request.reason.strip() if isinstance(request.reason, str) else ""
    if not reason or len(reason) > MAX_REASON:
        raise InvalidSuggestionDecision(
            f"驳回须填写原因 (1 到 {MAX_REASON} 字)",
            f"a rejection needs a reason of 1 to {MAX_REASON} characters",
            field="reason",
        )
    fingerprint = request.fingerprint()
    replayed = _replay(conn, request.key, fingerprint)
    if replayed is not None:
        return replayed
    _open_rows(conn, [request.suggestion_id])
    conn.execute(
        "UPDATE suggestions SET state = 'rejected', decided_by = ?, decided_at = ?, reject_reason = ?"
        " WHERE id = ? AND state = 'open'",
        (request.actor, now.isoformat(), reason, request.suggestion_id),
    )
    append_audit(
        conn,
        ts=now.isoformat(),
        actor=request.actor,
        device=None,
        action="suggestion.reject",
        object=f"suggestion:{request.suggestion_id}",
        detail={"reason": reason},
    )
    suggestion = get_suggestion(conn, request.suggestion_id)
    _remember(conn, request.key, fingerprint, suggestion, now)
    suggestion["replayed"] = False
    return suggestion


# --- item supplier parameters -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ItemSupplierIn:
    """Who an item is bought from and how: the purchase unit (its size is the item's unit factor), minimum order
    in purchase units, default lead time, review period and target cycle service level."""

    sku: str
    supplier: str
    unit: str | None = None  # default: the item's case unit if it has one, else its base unit
    moq: int = 0
    lead_time_days: float = 3.0
    review_days: float = 1.0
    service_level: float = 0.95
    primary: bool = True
    active: bool = True


def _invalid(message: str, message_en: str, **detail: Any) -> ItemSupplierInvalid:
    return ItemSupplierInvalid(message, message_en, **detail)


def _check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False) -> None:
    ok = (value > low if low_open else value >= low) and value <= high
    if isinstance(value, bool) or not isinstance(value, int | float) or not ok:
        raise _invalid(f"{name} 超出范围 ({low}..{high})", f"{name} must be within {low}..{high}", field=name)


def set_item_supplier(conn: sqlite3.Connection, spec: ItemSupplierIn, actor: str, now: datetime) -> dict[str, Any]:
    """Create or change an item's supplier parameters; a primary one makes the item's other suppliers secondary."""
    item = conn.execute("SELECT sku, base_unit FROM items WHERE sku = ?", (spec.sku,)).fetchone()
    if item is None:
        raise _invalid(f"未知商品: {spec.sku}", f"unknown item: {spec.sku}", field="sku", item=spec.sku)
    if conn.execute("SELECT 1 FROM suppliers WHERE id = ?", (spec.supplier,)).fetchone() is None:
        raise _invalid(
            f"未知供应商: {spec.supplier}",
            f"unknown supplier: {spec.supplier}",
            field="supplier",
            supplier=spec.supplier,
        )
    units = {r[0]: int(r[1]) for r in conn.execute("SELECT unit, factor FROM item_units WHERE sku = ?", (spec.sku,))}
    units.setdefault(item["base_unit"], 1)
    unit = spec.unit or max(units, key=lambda u: (units[u], u))
    if unit not in units:
        raise _invalid(
            f"商品 {spec.sku} 没有计量单位 {unit} (可用: {', '.join(sorted(units))})",
            f"item {spec.sku} has no unit {unit} (known: {', '.join(sorted(units))})",
            field="unit",
            units=sorted(units),
        )
    _check_range("moq", spec.moq, 0, MAX_ORDER_PACKS)
    if not isinstance(spec.moq, int):
        raise _invalid("moq 须为整数", "moq must be a whole number of purchase units", field="moq")
    _check_range("lead_time_days", spec.lead_time_days, 0, 365)
    _check_range("review_days", spec.review_days, 0, 365, low_open=True)
    _check_range("service_level", spec.service_level, 0.5, 0.999)
    ts = now.isoformat()
    if spec.primary and spec.active:
        conn.execute(
            "UPDATE item_suppliers SET is_primary = 0, updated_at = ?, updated_by = ? WHERE sku = ? AND supplier != ?",
            (ts, actor, spec.sku, spec.supplier),
        )
    conn.execute(
        "INSERT INTO item_suppliers (sku, supplier, unit, pack, moq, lead_time_days, review_days, service_level,"
        " is_primary, active, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (sku, supplier) DO UPDATE SET unit = excluded.unit, pack = excluded.pack, moq = excluded.moq,"
        " lead_time_days = excluded.lead_time_days, review_days = excluded.review_days,"
        " service_level = excluded.service_level, is_primary = excluded.is_primary, active = excluded.active,"
        " updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        (
            spec.sku,
            spec.supplier,
            unit,
            units[unit],
            spec.moq,
            float(spec.lead_time_days),
            float(spec.review_days),
            float(spec.service_level),
            int(spec.primary),
            int(spec.active),
            ts,
            actor,
        ),
    )
    append_audit(
        conn,
        ts=ts,
        actor=actor,
        device=None,
        action="item_supplier.set",
        object=f"item:{spec.sku}",
        detail={"supplier": spec.supplier, "unit": unit, "moq": spec.moq, "primary": spec.primary},
    )
    return {"sku": spec.sku, "suppliers": item_suppliers(conn, spec.sku)}


def item_suppliers(conn: sqlite3.Connection, sku: str) -> list[dict[str, Any]]:
    """The item's suppliers with their parameters, the primary first."""
    rows = conn.execute(
        "SELECT s.sku, s.supplier, p.name AS supplier_name, s.unit, s.pack, s.moq, s.lead_time_days,"
        " s.review_days, s.service_level, s.is_primary, s.active, s.updated_at, s.updated_by"
        " FROM item_suppliers s LEFT JOIN suppliers p ON p.id = s.supplier WHERE s.sku = ?"
        " ORDER BY s.is_primary DESC, s.active DESC, s.supplier",
        (sku,),
    ).fetchall()
    out = []
    for r in rows:
        record = dict(r)
        record["primary"] = bool(record.pop("is_primary"))
        record["active"] = bool(record["active"])
        out.append(record)
    return out
