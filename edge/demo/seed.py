"""Seed a demo store (演示门店) on an empty database, and write `<data_dir>/demo.json`.

`seed_demo` runs in one transaction: master data, users for every role and device credentials (random
passwords, stored hashed), then the opening stock posted through the ledger as goods receipts, so the
stock, vouchers, outbox and audit chain agree from the first minute. It runs before the writer starts.
"""

from __future__ import annotations

import logging
import random
import secrets
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from edge.bus.broker_credentials import set_broker_credential
from edge.demo.catalog import DEFAULT_SEED, WEIGHED_UNIT, Catalog, OpeningStock, build_catalog, opening_stock
from edge.demo.demo_json import (
    DEMO_JSON_NAME,
    Addresses,
    DemoInfo,
    DemoItem,
    DeviceLogin,
    UserLogin,
    refresh_demo_json,
    write_demo_json,
)
from edge.demo.finance import seed_finance
from edge.demo.replenishment import seed_replenishment
from edge.demo.temperatures import seed_temperature_history
from edge.devices.barcodes import DEFAULT_LABEL_FORMATS, label_item_code
from edge.finance.setup import prepare_books
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.masterdata import (
    add_category,
    add_item,
    add_location,
    add_store,
    add_supplier,
)
from edge.ledger.posting import PostingContext, post
from edge.security.devices import create_device
from edge.security.roles import ROLE_NAMES, Role
from edge.security.users import create_user

__all__ = ["DEMO_DEVICES", "DemoSeedError", "demo_needed", "plu_barcodes", "refresh_demo_json", "seed_demo"]

log = logging.getLogger(__name__)

# Simulated devices: (id, kind). The MQTT username of a device is its id.
DEMO_DEVICES: tuple[tuple[str, str], ...] = (
    ("pos-1", "pos"),
    ("pda-1", "handheld"),
    ("cold-1", "sensor"),
    ("scale-1", "scale"),  # a serial scale behind the serial adapter (tools/sim runs it on a pty)
    ("scanner-1", "scanner"),  # a serial barcode scanner, likewise
)
SAMPLE_SIZE = 40
SAMPLE_MAX_PRICE_FEN = 3000  # the POS simulator sells everyday goods, not 五粮液
RECEIPT_LINES_MAX = 100
SEED_ACTOR = "demo-seed"


class DemoSeedError(RuntimeError):
    """Seeding the demo store failed; nothing of it was committed."""


class SeedSettings(Addresses, Protocol):
    """What seeding needs from edge.config.Settings: the addresses demo.json names, and these."""

    @property
    def data_dir(self) -> Path: ...

    @property
    def store_id(self) -> str: ...

    @property
    def store_name(self) -> str: ...


def demo_needed(conn: sqlite3.Connection) -> bool:
    """True when the database has no items yet, so a demo store may be seeded."""
    return conn.execute("SELECT 1 FROM items LIMIT 1").fetchone() is None


def demo_json_path(settings: SeedSettings) -> Path:
    return Path(settings.data_dir) / DEMO_JSON_NAME


def seed_demo(
    conn: sqlite3.Connection,
    settings: SeedSettings,
    ctx: PostingContext,
    *,
    seed: int = DEFAULT_SEED,
    password: Callable[[], str] | None = None,
) -> DemoInfo:
    """Seed the demo store in one transaction and write demo.json; see the module docstring.

    `conn` must not be inside a transaction. `password()` makes each generated password (default
    `secrets.token_urlsafe(12)`). Raises DemoSeedError, with nothing written, when the database already
    has items or a posting is refused.
    """
    make_password = password or (lambda: secrets.token_urlsafe(12))
    catalog = build_catalog(seed, local_store_id=settings.store_id)
    plan = opening_stock(catalog, ctx.business_date, seed)
    path = demo_json_path(settings)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not demo_needed(conn):
            raise DemoSeedError("数据库已有商品，不再生成演示数据 / the database already has items; not seeding")
        prepare_books(conn, getattr(settings, "chart", "small_enterprise"), ctx.now)
        _add_master_data(conn, catalog, settings)
        users = _add_users(conn, make_password, ctx)
        devices = _add_devices(conn, make_password, ctx)
        # The chilled room's last day (and month) of temperatures, so its charts have a history at once.
        seed_temperature_history(conn, ctx.now, seed=seed)
        documents = _post_opening_stock(conn, plan, ctx)
        actors = {role: login.username for role, login in users}
        finance = seed_finance(conn, ctx, settings.data_dir, actors, getattr(settings, "company_credit_code", None))
        # Replenishment (issue 5): item suppliers, sales history, signals, neighbour stores' stock.
        seed_replenishment(conn, ctx, catalog, settings)
        info = DemoInfo(
            store_id=settings.store_id,
            http_url=settings.http_url,
            mqtt_host=settings.mqtt_host,
            mqtt_port=settings.mqtt_port,
            users=users,
            devices=devices,
            items=_sample_items(catalog, plan, seed),
        )
        # Written before COMMIT on purpose: if the commit fails, the next start finds no items and
        # seeds (and writes) again; written after, a crash in between would lose the only copy of
        # the passwords while the database keeps their hashes.
        write_demo_json(path, info)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    log.info(
        "demo store seeded: %d items, %d opening receipts, %d supplier papers, %d invoices (%d exception)",
        len(catalog.items),
        documents,
        finance.papers,
        finance.invoices,
        finance.exceptions,
    )
    return info


def _exists(conn: sqlite3.Connection, table: str, column: str, value: str) -> bool:
    return conn.execute(f"SELECT 1 FROM {table} WHERE {column} = ?", (value,)).fetchone() is not None


def plu_barcodes(plu: int | None, formats: Sequence[str] = DEFAULT_LABEL_FORMATS) -> dict[str, str]:
    """The barcodes of a weighed item's PLU: the item code a label of each of the store's formats carries
    (flag digits + PLU), in grams. docs/barcodes.md, "Where PLUs live"."""
    if plu is None:
        return {}
    return {label_item_code(fmt, plu): WEIGHED_UNIT for fmt in formats}


def _add_master_data(conn: sqlite3.Connection, catalog: Catalog, settings: SeedSettings) -> None:
    # Locations and stores may already exist (created by an operator or a later migration): keep them.
    for loc in catalog.locations:
        if not _exists(conn, "locations", "code", loc.code):
            add_location(conn, loc.code, loc.name, loc.name_en, loc.kind, loc.storage_class)
    if not _exists(conn, "stores", "id", settings.store_id):
        add_store(conn, settings.store_id, settings.store_name, is_local=True)
    for store in catalog.neighbour_stores:
        if not _exists(conn, "stores", "id", store.id):
            add_store(conn, store.id, store.name)
    formats = getattr(settings, "scale_label_formats", DEFAULT_LABEL_FORMATS)
    for cat in catalog.categories:
        if not _exists(conn, "categories", "code", cat.code):
            add_category(conn, cat.code, cat.name, cat.name_en, cat.storage_class)
    for sup in catalog.suppliers:
        if not _exists(conn, "suppliers", "id", sup.id):
            add_supplier(conn, sup.id, sup.name, credit_code=sup.credit_code, contact=sup.contact, phone=sup.phone)
    for item in catalog.items:
        add_item(
            conn,
            item.sku,
            item.name,
            base_unit=item.base_unit,
            storage_class=item.storage_class,
            category=item.category,
            shelf_life_days=item.shelf_life_days,
            vat_rate_bp=item.vat_rate_bp,
            price_fen=item.price_fen,
            cost_fen=item.cost_fen,
            lot_tracked=item.lot_tracked,
            name_en=item.name_en,
            units={unit: factor for unit, factor in item.units if unit != item.base_unit},
            barcodes={**dict(item.barcodes), **plu_barcodes(item.plu, formats)},
        )


def _free_name(conn: sqlite3.Connection, table: str, column: str, wanted: str) -> str:
    """`wanted`, or `wanted-demo`, `wanted-demo2`... when an operator already uses the name."""
    candidates = [wanted, f"{wanted}-demo", *(f"{wanted}-demo{n}" for n in range(2, 100))]
    for name in candidates:
        if not _exists(conn, table, column, name):
            return name
    raise DemoSeedError(f"没有可用的名称 / no free name for {wanted} in {table}")


def _add_users(
    conn: sqlite3.Connection, make_password: Callable[[], str], ctx: PostingContext
) -> tuple[tuple[str, UserLogin], ...]:
    users: list[tuple[str, UserLogin]] = []
    for role in Role:
        zh, en = ROLE_NAMES[role]
        username = _free_name(conn, "users", "username", role.value)
        secret = make_password()
        create_user(conn, username, secret, role, f"演示{zh} Demo {en}", now=ctx.now)
        users.append((role.value, UserLogin(username, secret)))
    return tuple(users)


def _add_devices(
    conn: sqlite3.Connection, make_password: Callable[[], str], ctx: PostingContext
) -> tuple[DeviceLogin, ...]:
    devices: list[DeviceLogin] = []
    for wanted, kind in DEMO_DEVICES:
        device_id = _free_name(conn, "devices", "id", wanted)
        secret = make_password()
        create_device(conn, device_id, kind, secret, now=ctx.now)
        set_broker_credential(conn, device_id, secret)  # so the demo also runs against Mosquitto (docs/mqtt5.md)
        devices.append(DeviceLogin(device_id, kind, device_id, secret))
    return tuple(devices)


def _receipts(plan: tuple[OpeningStock, ...]) -> Iterator[tuple[str, str, list[OpeningStock]]]:
    """Opening stock grouped into receipts by (supplier, location), at most RECEIPT_LINES_MAX lines each."""
    groups: dict[tuple[str, str], list[OpeningStock]] = {}
    for row in plan:
        groups.setdefault((row.supplier, row.location), []).append(row)
    for (supplier, location), rows in groups.items():
        for start in range(0, len(rows), RECEIPT_LINES_MAX):
            yield supplier, location, rows[start : start + RECEIPT_LINES_MAX]


def _post_opening_stock(conn: sqlite3.Connection, plan: tuple[OpeningStock, ...], ctx: PostingContext) -> int:
    posted = 0
    for n, (supplier, location, rows) in enumerate(_receipts(plan), start=1):
        command = PostDocument(
            key=f"demo-opening-{n:03d}",
            type=DocType.RECEIPT,
            lines=tuple(Line(code=r.sku, qty=r.qty, price_fen=r.cost_fen, lot=r.lot, expiry=r.expiry) for r in rows),
            location=location,
            counterparty=supplier,
            note="期初库存 opening stock (demo)",
            actor=SEED_ACTOR,
        )
        result = post(conn, command, ctx)
        if not result.ok:
            raise DemoSeedError(f"期初入库失败 opening receipt {command.key} refused: {result.message_en}")
        posted += 1
    return posted


def _sample_items(catalog: Catalog, plan: tuple[OpeningStock, ...], seed: int) -> tuple[DemoItem, ...]:
    """Everyday items with opening stock on the sales floor, for clients and simulators to sell."""
    on_floor = {r.sku for r in plan if r.location == "floor" and r.lot is None}
    candidates = [i for i in catalog.items if i.sku in on_floor and i.price_fen <= SAMPLE_MAX_PRICE_FEN]
    chosen = random.Random(seed + 2).sample(candidates, min(SAMPLE_SIZE, len(candidates)))
    chosen.sort(key=lambda i: i.sku)
    return tuple(DemoItem(i.sku, i.barcode, i.name, i.base_unit) for i in chosen)
