"""A real ledger in a temp SQLite file for the rules runtime's tests: master data, planning rows, a clock moved by
hand, and active rules put in force directly (the governance path is H1's, tested in test_governance.py)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from edge.db import connect, migrate
from edge.finance.setup import posting_context, prepare_books
from edge.ledger import masterdata as md
from edge.ledger.commands import Command, DocType, Line, PostDocument, PostResult
from edge.ledger.posting import PostingContext, post
from edge.rules.model import validate_rule

T = TypeVar("T")
T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
STORE = "store-r"


@dataclass
class RulesDB:
    """The ledger plus helpers; `run` is one writer transaction, as the writer would run it."""

    conn: sqlite3.Connection
    now: datetime = T0
    keys: Iterator[int] = field(default_factory=lambda: iter(range(1, 10**9)))

    def ctx(self) -> PostingContext:
        return posting_context(self.conn, self.now)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            value = fn(self.conn, *args)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return value

    def post(self, command: Command) -> PostResult:
        result = self.run(lambda conn: post(conn, command, self.ctx()))
        assert result.ok, result
        return result

    def document(self, doc_type: DocType, *lines: Line, **kw: Any) -> int:
        key = f"{doc_type.value}-{next(self.keys)}"
        return int(self.post(PostDocument(key, doc_type, lines, **kw)).document_id or 0)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.conn.execute(sql, params).fetchone()[0]

    def activate(self, document: Mapping[str, Any], version: int = 1) -> None:
        activate_rule(self.conn, document, version, self.now)


def seed_store(conn: sqlite3.Connection, now: datetime = T0) -> None:
    """Two suppliers, three items with planning rows, two locations; run once on a migrated database."""
    conn.execute("BEGIN")
    prepare_books(conn, now=now - timedelta(days=60))
    md.add_store(conn, STORE, "规则门店", is_local=True)
    md.add_location(conn, "floor", "卖场", "sales floor", "floor", "ambient")
    md.add_location(conn, "backroom", "后仓", "back room", "backroom", "ambient")
    md.add_supplier(conn, "sup-1", "华润饮料")
    md.add_supplier(conn, "sup-2", "光明乳业")
    md.add_item(conn, "COLA", "可乐 330ml", base_unit="piece", price_fen=350, cost_fen=226)
    md.add_item(conn, "MILK", "鲜牛奶 1L", base_unit="bottle", price_fen=1290, cost_fen=900, shelf_life_days=7)
    md.add_item(conn, "CHIPS", "薯片", base_unit="bag", price_fen=800, cost_fen=500)
    at = (now - timedelta(days=60)).isoformat()
    for sku, supplier, lead, level in (
        ("COLA", "sup-1", 3, 0.95),
        ("CHIPS", "sup-1", 3, 0.9),
        ("MILK", "sup-2", 1, 0.95),
    ):
        conn.execute(
            "INSERT INTO item_suppliers (sku, supplier, unit, pack, lead_time_days, service_level, updated_at,"
            " updated_by) VALUES (?, ?, ?, 1, ?, ?, ?, 'setup')",
            (sku, supplier, {"COLA": "piece", "MILK": "bottle", "CHIPS": "bag"}[sku], lead, level, at),
        )
    conn.execute("COMMIT")


def open_rules_db(path: Path) -> RulesDB:
    conn = connect(path)
    migrate(conn)
    seed_store(conn)
    return RulesDB(conn)


def activate_rule(conn: sqlite3.Connection, document: Mapping[str, Any], version: int, now: datetime) -> None:
    """Put a rule version in force directly (as an approved version is): rules + rule_versions rows."""
    rule = validate_rule(document)
    text = json.dumps(document, ensure_ascii=False, sort_keys=True)
    at = now.isoformat()
    conn.execute("BEGIN IMMEDIATE")  # the box's writer may be writing: wait for it rather than fail a read-then-write
    exists = conn.execute("SELECT 1 FROM rules WHERE id = ?", (rule.id,)).fetchone()
    if exists is None:
        conn.execute(
            "INSERT INTO rules (id, state, active_version, latest_version, created_by, created_at, updated_at)"
            " VALUES (?, 'active', ?, ?, 'author', ?, ?)",
            (rule.id, version, version, at, at),
        )
    else:
        conn.execute("UPDATE rule_versions SET state = 'superseded' WHERE rule_id = ? AND state = 'active'", (rule.id,))
        conn.execute(
            "UPDATE rules SET state = 'active', active_version = ?, latest_version = ?, updated_at = ? WHERE id = ?",
            (version, version, at, rule.id),
        )
    conn.execute(
        "INSERT INTO rule_versions (rule_id, version, state, document, sha256, trigger_kind, trigger_key, name,"
        " name_en, owner, author, created_at, updated_at, reviewer, submitted_by, submitted_at, approved_by,"
        " approved_at) VALUES (?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, 'author', ?, ?, 'reviewer', 'author', ?,"
        " 'reviewer', ?)",
        (
            rule.id,
            version,
            text,
            hashlib.sha256(text.encode()).hexdigest(),
            rule.trigger.kind.value,
            rule.trigger.value,
            rule.name_zh,
            rule.name_en,
            rule.owner,
            at,
            at,
            at,
            at,
        ),
    )
    conn.execute("COMMIT")


def set_override(
    conn: sqlite3.Connection, rule_id: str, *, enabled: bool | None = None, params: Mapping[str, Any] | None = None
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    with conn:
        conn.execute(
            "INSERT INTO rule_overrides (rule_id, enabled, params, updated_by, updated_at) VALUES (?, ?, ?, 'm', ?)"
            " ON CONFLICT (rule_id) DO UPDATE SET enabled = excluded.enabled, params = excluded.params,"
            " updated_at = excluded.updated_at",
            (
                rule_id,
                None if enabled is None else int(enabled),
                json.dumps(params or {}),
                datetime.now(UTC).isoformat(),
            ),
        )


# --- rule documents used across the tests -----------------------------------------------------------------------

IMPACT = {"what": "routes returns", "who": "store staff", "how_much": "a few returns a week"}


def return_routing(
    reason: str = "包装破损", channel: str = "supplier_claim", queue: str = "supplier_claims"
) -> dict[str, Any]:
    return {
        "id": f"returns.{channel.replace('_', '-')}",
        "name": {"zh": f"{reason}退货分流", "en": f"route {channel} returns"},
        "trigger": {"kind": "ledger", "doc_type": "customer_return"},
        "when": f'return.reason == "{reason}"',
        "then": [
            {"action": "tag_return", "channel": channel},
            {
                "action": "open_ticket",
                "queue": queue,
                "title": {"zh": "退货 {document.no}: {item.name}", "en": "return {document.no}: {item.sku}"},
                "subject": "supplier.id",
            },
            {
                "action": "notify",
                "role": "category_manager",
                "message": {
                    "zh": "{item.name} 因{return.reason}退货 {line.qty} 件",
                    "en": "{item.sku} returned: {line.qty}",
                },
            },
        ],
        "owner": "category-lead",
        "impact": IMPACT,
    }


def lead_time_rule(threshold: float = 15) -> dict[str, Any]:
    return {
        "id": "supplier-delay-response.lead-time-growth",
        "name": {"zh": "供应商交期延长超过阈值", "en": "Supplier lead time grows past a threshold"},
        "trigger": {"kind": "signal", "name": "supplier.lead_time_changed"},
        "when": "lead_time.change_days > params.threshold_days",
        "params": {"threshold_days": threshold},
        "then": [
            {
                "action": "notify",
                "role": "category_manager",
                "message": {
                    "zh": "供应商 {supplier.name} 交期延长 {lead_time.change_days} 天",
                    "en": "supplier {supplier.id} lead time up {lead_time.change_days} days",
                },
            },
            {
                "action": "adjust_parameter",
                "parameter": "service_level",
                "scope": "supplier",
                "by": 0.02,
                "min": 0.5,
                "max": 0.96,
            },
        ],
        "owner": "purchasing-lead",
        "impact": IMPACT,
    }
