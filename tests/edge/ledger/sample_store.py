"""A small real store for the ledger tests: a temp SQLite ledger with master data from edge.ledger.masterdata."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from edge.db import connect, migrate
from edge.finance.rulebook import rule_book
from edge.finance.setup import prepare_books
from edge.ledger import masterdata as md
from edge.ledger.commands import Command
from edge.ledger.posting import PostingContext, post

TODAY = date(2026, 11, 25)
NOW = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
RULES = rule_book()


def ean13(first12: str) -> str:
    return first12 + str(md.ean13_check_digit(first12))


COLA_CAN = ean13("690123456789")
COLA_CASE = ean13("690123456790")
MILK_CARTON = ean13("692000000001")
MILK_CASE = ean13("692000000002")
RICE_BAG = ean13("693000000001")


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """Master data of one item, also handed to the reference model so it need not read the database."""

    sku: str
    name: str
    base_unit: str
    price_fen: int
    cost_fen: int
    vat_rate_bp: int
    storage_class: str = "ambient"
    shelf_life_days: int | None = None
    units: dict[str, int] = field(default_factory=dict)
    barcodes: dict[str, str] = field(default_factory=dict)


ITEMS: tuple[ItemSpec, ...] = (
    ItemSpec(
        "A1",
        "可口可乐 330ml",
        "听",
        price_fen=300,
        cost_fen=200,
        vat_rate_bp=1300,
        units={"箱": 24},
        barcodes={COLA_CAN: "听", COLA_CASE: "箱"},
    ),
    ItemSpec(
        "M1",
        "鲜牛奶 250ml",
        "盒",
        price_fen=650,
        cost_fen=420,
        vat_rate_bp=900,
        storage_class="chilled",
        shelf_life_days=7,
        units={"箱": 12},
        barcodes={MILK_CARTON: "盒", MILK_CASE: "箱"},
    ),
    ItemSpec(
        "F1",
        "速冻水饺 1kg",
        "袋",
        price_fen=1990,
        cost_fen=1207,
        vat_rate_bp=900,
        storage_class="frozen",
        shelf_life_days=180,
    ),
    # Sold by weight: the base unit is the gram, a bag holds 5 kg; no cost price, so fallbacks value at zero.
    ItemSpec(
        "R1", "东北大米", "g", price_fen=1, cost_fen=0, vat_rate_bp=900, units={"袋": 5000}, barcodes={RICE_BAG: "袋"}
    ),
    ItemSpec("G1", "散装茶叶 50g", "包", price_fen=1000, cost_fen=777, vat_rate_bp=300),
    ItemSpec("E1", "土鸡蛋", "枚", price_fen=60, cost_fen=45, vat_rate_bp=0),
)
ITEMS_BY_SKU = {item.sku: item for item in ITEMS}

# code -> (kind, storage class)
LOCATIONS: dict[str, tuple[str, str]] = {
    "floor": ("floor", "ambient"),
    "backroom": ("backroom", "ambient"),
    "cold": ("cold", "chilled"),
    "freezer": ("freezer", "frozen"),
    "transit": ("transit", "ambient"),
}
SUPPLIERS = ("sup1", "sup2")
STORES = ("s1", "s2")

# Every table of the ledger, in an order that lets a dump be compared.
LEDGER_TABLES = (
    "commands",
    "documents",
    "document_lines",
    "stock_moves",
    "balances",
    "vouchers",
    "voucher_lines",
    "outbox",
    "audit",
    "lots",
)


def seed(conn: sqlite3.Connection, chart: str = "small_enterprise") -> None:
    """Write the sample store's master data through edge.ledger.masterdata, in one transaction."""
    conn.execute("BEGIN")
    prepare_books(conn, chart, now=NOW)
    md.add_store(conn, "s1", "本店", is_local=True)
    md.add_store(conn, "s2", "邻店")
    md.add_category(conn, "drinks", "饮料", "Drinks", "ambient")
    md.add_category(conn, "dairy", "乳品", "Dairy", "chilled")
    for code, (kind, storage_class) in LOCATIONS.items():
        md.add_location(conn, code, code, code, kind, storage_class)
    for supplier in SUPPLIERS:
        md.add_supplier(conn, supplier, f"供应商 {supplier}")
    for item in ITEMS:
        md.add_item(
            conn,
            item.sku,
            item.name,
            base_unit=item.base_unit,
            storage_class=item.storage_class,
            shelf_life_days=item.shelf_life_days,
            vat_rate_bp=item.vat_rate_bp,
            price_fen=item.price_fen,
            cost_fen=item.cost_fen,
            lot_tracked=item.shelf_life_days is not None,
            units=dict(item.units),
            barcodes=dict(item.barcodes),
        )
    conn.execute("COMMIT")


def open_ledger(path: Path) -> sqlite3.Connection:
    """A migrated ledger with the sample store. synchronous=NORMAL: the tests need no fsync per commit."""
    conn = connect(path, synchronous="NORMAL")
    migrate(conn, ("edge.ledger",))
    seed(conn)
    return conn


@contextmanager
def fresh_ledger() -> Iterator[sqlite3.Connection]:
    """A new ledger in its own temp directory, for one hypothesis example (fixtures outlive examples)."""
    with tempfile.TemporaryDirectory(prefix="storebox-ledger-") as folder:
        conn = open_ledger(Path(folder) / "ledger.db")
        try:
            yield conn
        finally:
            conn.close()


def context(business_date: date = TODAY, now: datetime = NOW, *, allow_negative: bool = False) -> PostingContext:
    return PostingContext(now=now, business_date=business_date, rules=RULES, allow_negative=allow_negative)


def post_committed(conn: sqlite3.Connection, command: Command, ctx: PostingContext) -> Any:
    """Post one command in its own transaction, as the writer does for a batch of one."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = post(conn, command, ctx)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def dump(conn: sqlite3.Connection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every ledger table, for comparing before and after."""
    return {table: [tuple(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY rowid")] for table in LEDGER_TABLES}


def counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {table: int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]) for table in LEDGER_TABLES}


def balances(conn: sqlite3.Connection) -> dict[tuple[str, str, str], tuple[int, int]]:
    """Non-empty balances (a row that went back to 0/0 stays in the table; it is no stock)."""
    return {
        (r[0], r[1], r[2]): (r[3], r[4])
        for r in conn.execute("SELECT sku, location, lot, qty, value_fen FROM balances")
        if (r[3], r[4]) != (0, 0)
    }


def copy_ledger(conn: sqlite3.Connection, path: Path) -> sqlite3.Connection:
    """A copy of the ledger in another file, to tamper with."""
    target = connect(path, synchronous="NORMAL")
    conn.backup(target)
    return target
