"""A small store for the shipped modules' tests: a temp box database (the real migrations), documents posted through
the ledger on chosen business days, and the module loaded and given a context exactly as the worker does
(`edge.modules.worker.load_entry` and `make_context`)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from edge.db import connect, migrate
from edge.finance.setup import prepare_books
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.masterdata import add_category, add_item, add_location, add_store, add_supplier
from edge.ledger.posting import PostingContext, post
from edge.ledger.vouchers import RuleBook
from edge.modules.host import ModuleHost
from edge.modules.manifest import Manifest, load_manifest_file
from edge.modules.worker import ModuleContext, load_entry, make_context
from edge.replenishment.plan_data import epoch_day

SHIPPED = Path(__file__).resolve().parents[4] / "edge" / "modules" / "shipped"
STORE = "store-t"
DAY0 = date(2026, 3, 2)  # a Monday


def shipped(folder: str) -> tuple[Manifest, ModuleType]:
    """A shipped module's manifest and its entry file, loaded as the worker loads them."""
    directory = SHIPPED / folder
    manifest = load_manifest_file(directory / "manifest.yaml")
    return manifest, load_entry(directory, manifest.entry, manifest.name)


@dataclass
class Shop:
    path: Path
    conn: sqlite3.Connection
    rules: RuleBook
    keys: int = 0
    contexts: list[ModuleContext] = field(default_factory=list)

    def day(self, n: int) -> date:
        return DAY0 + timedelta(days=n)

    def post(self, n: int, doc_type: DocType, lines: Sequence[Line], **fields: Any) -> int:
        """Post one document on business day `n` (in its own transaction); its id."""
        self.keys += 1
        d = self.day(n)
        ctx = PostingContext(now=datetime(d.year, d.month, d.day, 10, tzinfo=UTC), business_date=d, rules=self.rules)
        command = PostDocument(key=f"t-{self.keys}", type=doc_type, lines=tuple(lines), actor="test", **fields)
        self.conn.execute("BEGIN IMMEDIATE")
        result = post(self.conn, command, ctx)
        self.conn.execute("COMMIT")
        assert result.ok, (result.message_en, result.detail)
        assert result.document_id is not None
        return result.document_id

    def sql(self, query: str, params: Iterable[Any] = ()) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(query, tuple(params))
        self.conn.execute("COMMIT")

    def ctx(self, manifest: Manifest, n: int, **params: Any) -> ModuleContext:
        """The context the worker would give the module on business day `n` (manifest params, then `params`)."""
        ctx = make_context(self.path, {**manifest.params, **params}, self.day(n), STORE)
        self.contexts.append(ctx)
        return ctx

    def decide(self, module: str, decision: Mapping[str, Any], version: int = 1) -> None:
        """Keep a decision as the host keeps it (module_decisions)."""
        self.sql(
            "INSERT INTO module_decisions (module, version, key, subject, predicted, check_on, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                module,
                version,
                decision["key"],
                decision.get("subject"),
                json.dumps(decision.get("predicted")),
                decision["check_on"],
                "2026-01-01T00:00:00+00:00",
            ),
        )

    def sales_on(self, sku: str, n: int) -> int:
        row = self.conn.execute(
            "SELECT COALESCE(SUM(d.qty), 0) FROM sales_daily d JOIN plan_series s ON s.id = d.series"
            " WHERE s.sku = ? AND d.day = ?",
            (sku, epoch_day(self.day(n))),
        ).fetchone()
        return int(row[0])

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.db.close()
        self.conn.close()


def open_shop(tmp_path: Path) -> Shop:
    """An empty store: locations (floor, cold room, counter), a supplier, categories; items are the test's."""
    path = tmp_path / "storebox.db"
    conn = connect(path, synchronous="NORMAL")
    migrate(conn)
    conn.execute("BEGIN")
    rules = prepare_books(conn)
    add_store(conn, STORE, "测试店", is_local=True)
    add_store(conn, "peer-1", "邻店")
    add_location(conn, "floor", "卖场", "sales floor", "floor", "ambient")
    add_location(conn, "cold", "冷藏库", "cold room", "cold", "chilled")
    add_location(conn, "kitchen", "熟食档", "counter", "other", "chilled")
    add_location(conn, "transit", "在途", "in transit", "transit", "ambient")
    add_category(conn, "fresh", "日配", "fresh", "chilled")
    add_category(conn, "snacks", "零食", "snacks", "ambient")
    add_supplier(conn, "sup-1", "供应商")
    conn.execute("COMMIT")
    return Shop(path, conn, rules)


def add_items(shop: Shop, *items: tuple[str, dict[str, Any]]) -> None:
    shop.conn.execute("BEGIN")
    for sku, spec in items:
        add_item(shop.conn, sku, spec.pop("name", sku), **{"base_unit": "piece", **spec})
    shop.conn.execute("COMMIT")


def check_proposals(manifest: Manifest, event: Mapping[str, Any], proposals: Sequence[Any]) -> list[str]:
    """What the module host refuses of these proposals (the manifest's `may` and the action catalogue)."""
    host = ModuleHost(
        db_path=Path("unused.db"),
        modules_dir=Path("unused"),
        store_id=STORE,
        timezone="Asia/Shanghai",
        writer=None,
        open_reader=lambda: None,  # type: ignore[arg-type,return-value]
        clock=lambda: datetime(2026, 3, 2, tzinfo=UTC),
    )
    _, _, refused = host.check_proposals(manifest, event, proposals)
    return refused


def schedule(cron: str, n: int) -> dict[str, Any]:
    """A schedule event as the host makes it (edge.rules.engine.schedule_event)."""
    from edge.rules.engine import schedule_event

    d = DAY0 + timedelta(days=n)
    return schedule_event(cron, datetime(d.year, d.month, d.day, tzinfo=UTC), d, False).to_json()
