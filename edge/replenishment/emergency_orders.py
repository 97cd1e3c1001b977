"""From a parsed emergency request to an order: a draft transfer from a neighbouring store, or an urgent PO.

`plan_emergency` (no side effects) picks the source: the neighbours' stock (`peer_stock`, reported by each store)
that can keep the item's cold chain, is fresh enough and arrives in time, with enough quantity, nearest first;
the best partial when none has enough; else an urgent purchase order to the item's supplier (the planner's
primary supplier in item_suppliers, or the supplier of its last PO or receipt). `create_emergency` runs in the
writer (`writer.execute_posting`) and makes it so, once per Idempotency-Key: a transfer request row (draft) or a
purchase_order document posted through the ledger, so the finance guards apply. See docs/emergency-requests.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.posting import PostingContext, post
from edge.replenishment.emergency import COLD_CHAIN_NAMES, EmergencyParse
from edge.replenishment.errors import (
    EmergencyIncomplete,
    EmergencyKeyReused,
    EmergencyNoSource,
    EmergencyOrderRefused,
    PeerStockInvalid,
    TransferRequestNotFound,
    TransferRequestState,
)

STORAGE_CLASSES = ("ambient", "chilled", "frozen")
MAX_PEER_ROWS = 100_000
MAX_QTY = 10**12


@dataclass(frozen=True, slots=True)
class EmergencyPolicy:
    """How sources are judged (edge/config.py block `replenishment: emergency requests`)."""

    local_store: str
    min_shelf_life_days: int = 2  # a neighbour's shortest lot must have at least this many days left ...
    min_shelf_life_share: float = 0.25  # ... and this share of the item's shelf life
    peer_stock_max_age_hours: float = 48.0  # older snapshots are not trusted


@dataclass(frozen=True, slots=True)
class PeerStockRow:
    """One item at one neighbouring store, as the store reported it."""

    store: str
    sku: str
    qty: int  # base units
    storage_class: str
    cold_chain_capable: bool
    updated_at: datetime
    last_outbound_date: date | None = None
    min_shelf_life_days: int | None = None
    distance_km: float | None = None
    eta_minutes: int | None = None


@dataclass(frozen=True, slots=True)
class SourceOption:
    """A neighbour judged as a source, with why it is or is not one."""

    store: str
    qty_base: int
    eligible: bool
    reasons: tuple[tuple[str, str], ...] = ()  # (zh, en) of each reason it is not eligible
    eta_minutes: int | None = None
    distance_km: float | None = None
    days_left: int | None = None
    last_outbound_date: date | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "qty_base": self.qty_base,
            "eligible": self.eligible,
            "reasons": [r[0] for r in self.reasons],
            "reasons_en": [r[1] for r in self.reasons],
            "eta_minutes": self.eta_minutes,
            "distance_km": self.distance_km,
            "days_left": self.days_left,
            "last_outbound_date": self.last_outbound_date.isoformat() if self.last_outbound_date else None,
        }


@dataclass(frozen=True, slots=True)
class EmergencyPlan:
    """The proposed action: `transfer` from `source_store`, `purchase` from `supplier`, or `none`."""

    action: str
    sku: str
    qty_base: int  # what the action moves or orders, base units
    qty: int  # in `unit`
    unit: str
    cold_chain: str
    vehicle: bool
    deadline: datetime | None
    message: str
    message_en: str
    source_store: str | None = None
    supplier: str | None = None
    shortfall_base: int = 0  # asked minus what the source can give (a partial transfer)
    options: tuple[SourceOption, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "sku": self.sku,
            "qty_base": self.qty_base,
            "qty": self.qty,
            "unit": self.unit,
            "cold_chain": self.cold_chain,
            "vehicle": self.vehicle,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "source_store": self.source_store,
            "supplier": self.supplier,
            "partial": self.shortfall_base > 0,
            "shortfall_base": self.shortfall_base,
            "message": self.message,
            "message_en": self.message_en,
            "options": [o.to_json() for o in self.options],
        }


# --- peer stock ---------------------------------------------------------------------------------


def _problem(problems: list[dict[str, Any]], row: int, field_name: str, zh: str, en: str) -> None:
    problems.append({"row": row, "field": field_name, "message": zh, "message_en": en})


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def validate_peer_rows(
    conn: sqlite3.Connection, store: str, rows: Iterable[Mapping[str, Any]], now: datetime
) -> list[PeerStockRow]:
    """Rows of one store's report checked against the master data; every problem is listed (by row index) in one
    PeerStockInvalid. `updated_at` defaults to `now`."""
    local = conn.execute("SELECT is_local FROM stores WHERE id = ?", (store,)).fetchone()
    if local is None or local[0]:
        why = ("未知门店", "unknown store") if local is None else ("本店不是邻店", "this store is not a neighbour")
        raise PeerStockInvalid(f"{why[0]}: {store}", f"{why[1]}: {store}", store=store)
    items = {r[0]: r[1] for r in conn.execute("SELECT sku, storage_class FROM items")}
    out: list[PeerStockRow] = []
    problems: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, row in enumerate(rows):
        if i >= MAX_PEER_ROWS:
            _problem(problems, i, "rows", f"最多 {MAX_PEER_ROWS} 行", f"at most {MAX_PEER_ROWS} rows")
            break
        sku = row.get("sku")
        if not isinstance(sku, str) or sku not in items:
            _problem(problems, i, "sku", f"未知商品: {sku!r}", f"unknown item: {sku!r}")
            continue
        if sku in seen:
            _problem(problems, i, "sku", f"商品 {sku} 重复", f"item {sku} listed twice")
            continue
        seen.add(sku)
        qty = row.get("qty")
        if not isinstance(qty, int) or isinstance(qty, bool) or not 0 <= qty <= MAX_QTY:
            _problem(problems, i, "qty", f"数量无效: {qty!r}", f"invalid quantity: {qty!r}")
            continue
        storage_class = row.get("storage_class") or items[sku]
        if storage_class not in STORAGE_CLASSES:
            _problem(
                problems, i, "storage_class", "温层须为 ambient/chilled/frozen", "storage_class: ambient/chilled/frozen"
            )
            continue
        out.append(
            PeerStockRow(
                store=store,
                sku=sku,
                qty=qty,
                storage_class=storage_class,
                cold_chain_capable=bool(row.get("cold_chain_capable", False)),
                updated_at=_aware(row.get("updated_at") or now),
                last_outbound_date=row.get("last_outbound_date"),
                min_shelf_life_days=row.get("min_shelf_life_days"),
                distance_km=row.get("distance_km"),
                eta_minutes=row.get("eta_minutes"),
            )
        )
    if problems:
        raise PeerStockInvalid(
            f"邻店库存有 {len(problems)} 处错误，未导入",
            f"{len(problems)} problems in the report; nothing loaded",
            problems=problems,
        )
    return out


def replace_peer_stock(conn: sqlite3.Connection, store: str, rows: Iterable[PeerStockRow]) -> int:
    """Replace `store`'s whole snapshot by `rows` in one savepoint; return the rows written."""
    rows = list(rows)
    conn.execute("SAVEPOINT peer_stock")
    try:
        conn.execute("DELETE FROM peer_stock WHERE store = ?", (store,))
        conn.executemany(
            "INSERT INTO peer_stock (store, sku, qty, storage_class, cold_chain_capable, last_outbound_date,"
            " min_shelf_life_days, distance_km, eta_minutes, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    store,
                    r.sku,
                    r.qty,
                    r.storage_class,
                    int(r.cold_chain_capable),
                    r.last_outbound_date.isoformat() if r.last_outbound_date else None,
                    r.min_shelf_life_days,
                    r.distance_km,
                    r.eta_minutes,
                    _aware(r.updated_at).isoformat(),
                )
                for r in rows
                if r.store == store
            ],
        )
        conn.execute("RELEASE peer_stock")
    except BaseException:
        conn.execute("ROLLBACK TO peer_stock")
        conn.execute("RELEASE peer_stock")
        raise
    return sum(1 for r in rows if r.store == store)


def load_peer_stock(
    conn: sqlite3.Connection, store: str, rows: list[Mapping[str, Any]], now: datetime
) -> dict[str, Any]:
    """Validate and replace one store's snapshot (the API's and the sync's entry point, run in the writer)."""
    checked = validate_peer_rows(conn, store, rows, now)
    written = replace_peer_stock(conn, store, checked)
    return {"store": store, "rows": written, "updated_at": now.isoformat()}


def seed_peer_stock(conn: sqlite3.Connection, rows: Iterable[PeerStockRow]) -> int:
    """For the demo: replace the snapshot of every store named in `rows` (grouped by store); return rows written."""
    by_store: dict[str, list[PeerStockRow]] = {}
    for row in rows:
        by_store.setdefault(row.store, []).append(row)
    return sum(replace_peer_stock(conn, store, store_rows) for store, store_rows in by_store.items())


def list_peer_stock(
    conn: sqlite3.Connection, *, sku: str | None = None, store: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM peer_stock WHERE (? IS NULL OR sku = ?) AND (? IS NULL OR store = ?)"
        " ORDER BY store, sku LIMIT ? OFFSET ?",
        (sku, sku, store, store, limit, offset),
    ).fetchall()
    return [dict(r) | {"cold_chain_capable": bool(r["cold_chain_capable"])} for r in rows]


# --- planning -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Item:
    sku: str
    name: str
    base_unit: str
    storage_class: str
    shelf_life_days: int | None
    units: dict[str, int]


def _item(conn: sqlite3.Connection, sku: str) -> _Item:
    row = conn.execute(
        "SELECT sku, name, base_unit, storage_class, shelf_life_days FROM items WHERE sku = ?", (sku,)
    ).fetchone()
    if row is None:
        raise EmergencyIncomplete(f"未知商品: {sku}", f"unknown item: {sku}", sku=sku)
    units = {row[2]: 1} | {
        r[0]: int(r[1]) for r in conn.execute("SELECT unit, factor FROM item_units WHERE sku = ?", (sku,))
    }
    return _Item(row[0], row[1], row[2], row[3], row[4], units)


def _judge(
    row: sqlite3.Row,
    item: _Item,
    cold_chain: str,
    need: int,
    deadline: datetime | None,
    now: datetime,
    policy: EmergencyPolicy,
) -> SourceOption:
    reasons: list[tuple[str, str]] = []
    updated = _aware(datetime.fromisoformat(row["updated_at"]))
    if now - updated > timedelta(hours=policy.peer_stock_max_age_hours):
        reasons.append(
            (
                f"库存数据已过期 ({updated:%m-%d %H:%M})",
                f"stock report too old ({updated:%Y-%m-%d %H:%M})",
            )
        )
    if row["qty"] <= 0:
        reasons.append(("无库存", "none in stock"))
    if cold_chain in ("chilled", "frozen"):
        zh, en = COLD_CHAIN_NAMES[cold_chain]
        if row["storage_class"] != cold_chain:
            have = COLD_CHAIN_NAMES.get(row["storage_class"], (row["storage_class"], row["storage_class"]))
            reasons.append((f"按{have[0]}储存，需{zh}", f"held {have[1]}, needs {en}"))
        if not row["cold_chain_capable"]:
            reasons.append((f"不能{zh}运输", f"cannot ship {en}"))
    days_left: int | None = None
    if row["min_shelf_life_days"] is not None:
        days_left = int(row["min_shelf_life_days"]) - (now.date() - updated.date()).days
        if item.shelf_life_days:
            needed = max(policy.min_shelf_life_days, math.ceil(item.shelf_life_days * policy.min_shelf_life_share))
            if days_left < needed:
                reasons.append(
                    (
                        f"剩余保质期 {days_left} 天，不足 {needed} 天",
                        f"{days_left} days of shelf life left, {needed} needed",
                    )
                )
    eta = row["eta_minutes"]
    if deadline is not None and eta is not None and now + timedelta(minutes=int(eta)) > deadline:
        reasons.append((f"约 {eta} 分钟到，赶不上要求时间", f"arrives in about {eta} minutes, after the deadline"))
    last = date.fromisoformat(row["last_outbound_date"]) if row["last_outbound_date"] else None
    return SourceOption(
        store=row["store"],
        qty_base=int(row["qty"]),
        eligible=not reasons,
        reasons=tuple(reasons),
        eta_minutes=eta,
        distance_km=row["distance_km"],
        days_left=days_left,
        last_outbound_date=last,
    )


def _rank_key(option: SourceOption, need: int) -> tuple[Any, ...]:
    # Enough first (among those short, the biggest); then soonest (ETA, then distance; unknown last); then the store
    # that sells it least lately (oldest last outbound: the goods are slowest there); then the freshest.
    far = float("inf")
    last = option.last_outbound_date.toordinal() if option.last_outbound_date else 0
    short = option.qty_base < need
    return (
        short,
        -option.qty_base if short else 0,  # among partials, the biggest
        option.eta_minutes if option.eta_minutes is not None else far,
        option.distance_km if option.distance_km is not None else far,
        last,
        -(option.days_left if option.days_left is not None else 0),
        option.store,
    )


def _in_unit(qty_base: int, unit: str, item: _Item) -> tuple[int, str]:
    factor = item.units.get(unit, 0)
    if factor and qty_base % factor == 0:
        return qty_base // factor, unit
    return qty_base, item.base_unit


def supplier_of(conn: sqlite3.Connection, sku: str) -> str | None:
    """The item's supplier: the primary active one in item_suppliers (the planner's), else the active one named
    first, else the supplier of its latest purchase order or receipt."""
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'item_suppliers'").fetchone()
    if has_table:
        row = conn.execute(
            "SELECT supplier FROM item_suppliers WHERE sku = ? AND active = 1"
            " ORDER BY is_primary DESC, supplier LIMIT 1",
            (sku,),
        ).fetchone()
        if row is not None:
            return str(row[0])
    row = conn.execute(
        "SELECT d.counterparty FROM documents d JOIN document_lines l ON l.document_id = d.id"
        " WHERE l.sku = ? AND d.type IN ('purchase_order', 'receipt') AND d.counterparty IS NOT NULL"
        " ORDER BY d.id DESC LIMIT 1",
        (sku,),
    ).fetchone()
    return str(row[0]) if row is not None else None


def plan_emergency(
    conn: sqlite3.Connection, parse: EmergencyParse, *, policy: EmergencyPolicy, now: datetime
) -> EmergencyPlan:
    """The proposal for a complete parse (no side effects); EmergencyIncomplete when the parse is not complete."""
    if not parse.complete or parse.sku is None or parse.qty_base is None:
        raise EmergencyIncomplete(
            "请求不完整: " + "；".join(n.message for n in parse.notes if n.level == "error"),
            "the request is incomplete: " + "; ".join(n.message_en for n in parse.notes if n.level == "error"),
            notes=[n.to_json() for n in parse.notes],
        )
    now = _aware(now)
    item = _item(conn, parse.sku)
    if (
        parse.source_store is not None
        and not conn.execute("SELECT 1 FROM stores WHERE id = ? AND is_local = 0", (parse.source_store,)).fetchone()
    ):
        raise EmergencyIncomplete(
            f"不是邻店: {parse.source_store}",
            f"not a neighbouring store: {parse.source_store}",
            store=parse.source_store,
        )
    if (
        parse.destination is not None
        and not conn.execute("SELECT 1 FROM locations WHERE code = ?", (parse.destination,)).fetchone()
    ):
        raise EmergencyIncomplete(
            f"未知库位: {parse.destination}", f"unknown location: {parse.destination}", location=parse.destination
        )
    need = parse.qty_base
    cold_chain = item.storage_class
    unit = parse.item_unit or item.base_unit
    rows = conn.execute(
        "SELECT * FROM peer_stock WHERE sku = ? AND store != ? AND store IN (SELECT id FROM stores WHERE is_local = 0)",
        (item.sku, policy.local_store),
    ).fetchall()
    if parse.source_store is not None:
        rows = [r for r in rows if r["store"] == parse.source_store]
    options = tuple(
        sorted(
            (_judge(r, item, cold_chain, need, parse.deadline, now, policy) for r in rows),
            key=lambda o: (not o.eligible, *_rank_key(o, need)),
        )
    )
    eligible = [o for o in options if o.eligible]
    base = EmergencyPlan(
        action="none",
        sku=item.sku,
        qty_base=need,
        qty=need,
        unit=item.base_unit,
        cold_chain=cold_chain,
        vehicle=parse.vehicle,
        deadline=parse.deadline,
        message="",
        message_en="",
        options=options,
    )
    chain_zh = COLD_CHAIN_NAMES[cold_chain][0]
    if parse.mode != "purchase" and eligible:
        best = eligible[0]
        give = min(need, best.qty_base)
        qty, give_unit = _in_unit(give, unit, item)
        shortfall = need - give
        how = "车载" if parse.vehicle else ""
        zh = f"从 {best.store} {how}调拨 {qty}{give_unit} {item.name}（{chain_zh}）"
        by_vehicle = ", by vehicle" if parse.vehicle else ""
        en = f"transfer {qty} {give_unit} of {item.sku} from {best.store} ({cold_chain}{by_vehicle})"
        if shortfall:
            zh += f"；邻店最多 {give}，还差 {shortfall} 基本单位"
            en += f"; the best neighbour has {give}, {shortfall} base units short"
        return replace(
            base,
            action="transfer",
            qty_base=give,
            qty=qty,
            unit=give_unit,
            message=zh,
            message_en=en,
            source_store=best.store,
            shortfall_base=shortfall,
        )
    supplier = supplier_of(conn, item.sku)
    qty, po_unit = _in_unit(need, unit, item)
    if supplier is None:
        return replace(
            base,
            action="none",
            qty_base=need,
            qty=qty,
            unit=po_unit,
            message=f"没有邻店能调出 {item.name}，也找不到它的供应商",
            message_en=f"no neighbour can supply {item.sku} and it has no known supplier",
        )
    why = "按要求采购" if parse.mode == "purchase" else "邻店都没有合适的库存"
    why_en = "purchase asked for" if parse.mode == "purchase" else "no neighbour has suitable stock"
    return replace(
        base,
        action="purchase",
        qty_base=need,
        qty=qty,
        unit=po_unit,
        message=f"{why}：向 {supplier} 紧急采购 {qty}{po_unit} {item.name}",
        message_en=f"{why_en}: urgent purchase order of {qty} {po_unit} of {item.sku} from {supplier}",
        supplier=supplier,
    )


# --- creating -----------------------------------------------------------------------------------


def request_fingerprint(text: str, overrides: Mapping[str, Any] | None = None) -> str:
    """What identifies a request for its Idempotency-Key: the text and the overrides as sent, not the parse (a retry
    a minute later reads "2小时内" as a later deadline and must still be the same request)."""
    said = {"text": text, "overrides": dict(overrides or {})}
    return hashlib.sha256(json.dumps(said, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def _request_json(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "key": row["key"],
        "text": row["text"],
        "parse": json.loads(row["parse"]),
        "plan": json.loads(row["plan"]),
        "action": row["action"],
        "state": row["state"],
        "sku": row["sku"],
        "qty_base": row["qty_base"],
        "deadline": row["deadline"],
        "transfer_id": row["transfer_id"],
        "document_id": row["document_id"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
    }


def create_emergency(
    conn: sqlite3.Connection,
    ctx: PostingContext,
    parse: EmergencyParse,
    key: str,
    actor: str,
    policy: EmergencyPolicy,
    fingerprint: str | None = None,
) -> dict[str, Any]:
    """Make the plan happen, once per `key` (run by `writer.execute_posting`): a draft transfer request, or an
    urgent purchase order posted through the ledger (finance guards apply). A replay returns the first result;
    `fingerprint` (default: of the parse's text) tells a replay from another request under the same key."""
    fingerprint = fingerprint or request_fingerprint(parse.text)
    previous = conn.execute("SELECT * FROM emergency_requests WHERE key = ?", (key,)).fetchone()
    if previous is not None:
        if previous["fingerprint"] != fingerprint:
            raise EmergencyKeyReused(
                f"幂等键 {key} 已用于另一个紧急请求", f"idempotency key {key} was used for another request", key=key
            )
        return _request_json(previous) | {"replayed": True}
    now = _aware(ctx.now)
    plan = plan_emergency(conn, parse, policy=policy, now=now)
    transfer_id: int | None = None
    document_id: int | None = None
    deadline = plan.deadline.isoformat() if plan.deadline else None
    if plan.action == "transfer":
        assert plan.source_store is not None
        cursor = conn.execute(
            "INSERT INTO transfer_requests (from_store, to_store, sku, qty, unit, qty_base, cold_chain, vehicle,"
            " deadline, to_location, state, note, created_by, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'draft', ?, ?, ?)",
            (
                plan.source_store,
                policy.local_store,
                plan.sku,
                plan.qty,
                plan.unit,
                plan.qty_base,
                plan.cold_chain,
                int(plan.vehicle),
                deadline,
                parse.destination,
                f"紧急调拨 / emergency transfer: {parse.text}"[:500],
                actor,
                now.isoformat(),
            ),
        )
        transfer_id = cursor.lastrowid
    elif plan.action == "purchase":
        by = f"，要求 {plan.deadline:%Y-%m-%d %H:%M} 前到货" if plan.deadline else ""
        by_en = f", needed by {plan.deadline:%Y-%m-%d %H:%M}" if plan.deadline else ""
        result = post(
            conn,
            PostDocument(
                key=f"emergency:{key}",
                type=DocType.PURCHASE_ORDER,
                lines=(Line(code=plan.sku, qty=plan.qty, unit=plan.unit),),
                counterparty=plan.supplier,
                note=f"紧急采购{by} / urgent purchase{by_en}",
                actor=actor,
            ),
            ctx,
        )
        if not result.ok:
            raise EmergencyOrderRefused(
                f"紧急采购订单被拒: {result.message}",
                f"the urgent purchase order was refused: {result.message_en}",
                refusal=result.code,
                refusal_detail=result.detail,
            )
        document_id = result.document_id
    else:
        raise EmergencyNoSource(plan.message, plan.message_en, sku=plan.sku)
    cursor = conn.execute(
        "INSERT INTO emergency_requests (key, fingerprint, text, parse, plan, action, state, sku, qty_base, deadline,"
        " transfer_id, document_id, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?, 'created', ?, ?, ?, ?, ?, ?, ?)",
        (
            key,
            fingerprint,
            parse.text,
            json.dumps(parse.to_json(), ensure_ascii=False),
            json.dumps(plan.to_json(), ensure_ascii=False),
            plan.action,
            plan.sku,
            plan.qty_base,
            deadline,
            transfer_id,
            document_id,
            actor,
            now.isoformat(),
        ),
    )
    row = conn.execute("SELECT * FROM emergency_requests WHERE id = ?", (cursor.lastrowid,)).fetchone()
    return _request_json(row) | {"replayed": False}


def list_emergency_requests(conn: sqlite3.Connection, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM emergency_requests ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))
    return [_request_json(r) for r in rows]


def _transfer_json(row: sqlite3.Row) -> dict[str, Any]:
    return dict(row) | {"vehicle": bool(row["vehicle"])}


def list_transfer_requests(
    conn: sqlite3.Connection, *, state: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM transfer_requests WHERE (? IS NULL OR state = ?) ORDER BY id DESC LIMIT ? OFFSET ?",
        (state, state, limit, offset),
    )
    return [_transfer_json(r) for r in rows]


def get_transfer_request(conn: sqlite3.Connection, transfer_id: int) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM transfer_requests WHERE id = ?", (transfer_id,)).fetchone()
    if row is None:
        raise TransferRequestNotFound(
            f"没有调拨申请 {transfer_id}", f"no transfer request {transfer_id}", transfer_id=transfer_id
        )
    return _transfer_json(row)


def cancel_transfer_request(
    conn: sqlite3.Connection, transfer_id: int, reason: str, actor: str, now: datetime
) -> dict[str, Any]:
    """Cancel a draft (a cancelled one stays cancelled: cancelling again changes nothing)."""
    current = get_transfer_request(conn, transfer_id)
    if current["state"] == "cancelled":
        return current
    if current["state"] != "draft":
        raise TransferRequestState(
            f"调拨申请 {transfer_id} 已发出，不能取消",
            f"transfer request {transfer_id} was sent and cannot be cancelled",
            transfer_id=transfer_id,
            state=current["state"],
        )
    conn.execute(
        "UPDATE transfer_requests SET state = 'cancelled', cancelled_by = ?, cancelled_at = ?, cancel_reason = ?"
        " WHERE id = ?",
        (actor, _aware(now).isoformat(), reason, transfer_id),
    )
    return get_transfer_request(conn, transfer_id)


# --- demo ---------------------------------------------------------------------------------------


def demo_peer_stock(
    items: Iterable[tuple[str, str, int | None]], stores: Sequence[str], now: datetime, seed: int = 20240601
) -> list[PeerStockRow]:
    """Neighbours' stock for the demo, the same for the same seed: `items` are (sku, storage_class, shelf life
    days). The first store is near (25 min) and ships chilled and frozen; the second is farther (50 min) and ships
    ambient only. About two items in three are stocked; a few lots are close to expiry. For the planner's demo seed:
    `seed_peer_stock(conn, demo_peer_stock(...))`."""
    rng = random.Random(seed)
    rows: list[PeerStockRow] = []
    for n, store in enumerate(stores[:2]):
        near = n == 0
        for sku, storage_class, shelf_life in items:
            if rng.random() > 0.65:
                continue
            days_left = None
            if shelf_life:
                days_left = (
                    rng.randint(1, shelf_life) if rng.random() < 0.2 else rng.randint(shelf_life // 2, shelf_life)
                )
            rows.append(
                PeerStockRow(
                    store=store,
                    sku=sku,
                    qty=rng.choice((0, 6, 12, 24, 48, 96, 240, 480)),
                    storage_class=storage_class,
                    cold_chain_capable=near,
                    updated_at=now - timedelta(minutes=rng.randint(5, 600)),
                    last_outbound_date=(now - timedelta(days=rng.randint(0, 30))).date(),
                    min_shelf_life_days=days_left,
                    distance_km=3.2 if near else 7.5,
                    eta_minutes=25 if near else 50,
                )
            )
    return rows
