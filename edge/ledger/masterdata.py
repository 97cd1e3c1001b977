"""Master data (基础资料): stores, locations, categories, items with units and barcodes, suppliers, lots.

Each function writes inside the caller's transaction and validates what it writes.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from datetime import date

from edge.ledger.audit import append_audit
from edge.ledger.errors import InvalidCommand, UnknownItem, UnknownUnit

STORAGE_CLASSES = ("ambient", "chilled", "frozen")
LOCATION_KINDS = ("floor", "backroom", "cold", "freezer", "transit", "other")
TRANSIT_LOCATION = "transit"
_CODE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _check_code(kind: str, value: str) -> None:
    if not _CODE.match(value):
        raise InvalidCommand(
            f"{kind} 编码无效: {value!r} (字母、数字、. _ -，最长 64)",
            f"invalid {kind} code {value!r}: letters, digits, . _ - up to 64",
            field=kind,
            value=value,
        )


def ean13_check_digit(first12: str) -> int:
    """GS1 check digit of the first 12 digits of an EAN-13."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(first12))
    return (10 - total % 10) % 10


def is_valid_ean13(code: str) -> bool:
    return len(code) == 13 and code.isdigit() and ean13_check_digit(code[:12]) == int(code[12])


@dataclass(frozen=True, slots=True)
class ItemRef:
    """An item resolved from a SKU or barcode, with the unit the code implies."""

    sku: str
    name: str
    unit: str
    factor: int
    base_unit: str
    vat_rate_bp: int
    price_fen: int
    cost_fen: int
    shelf_life_days: int | None
    storage_class: str


def add_store(conn: sqlite3.Connection, store_id: str, name: str, *, is_local: bool = False) -> None:
    _check_code("store", store_id)
    conn.execute("INSERT INTO stores (id, name, is_local) VALUES (?, ?, ?)", (store_id, name, int(is_local)))


def add_location(conn: sqlite3.Connection, code: str, name: str, name_en: str, kind: str, storage_class: str) -> None:
    _check_code("location", code)
    conn.execute(
        "INSERT INTO locations (code, name, name_en, kind, storage_class) VALUES (?, ?, ?, ?, ?)",
        (code, name, name_en, kind, storage_class),
    )


def add_category(conn: sqlite3.Connection, code: str, name: str, name_en: str, storage_class: str) -> None:
    _check_code("category", code)
    conn.execute(
        "INSERT INTO categories (code, name, name_en, storage_class) VALUES (?, ?, ?, ?)",
        (code, name, name_en, storage_class),
    )


def add_item(
    conn: sqlite3.Connection,
    sku: str,
    name: str,
    *,
    base_unit: str,
    storage_class: str = "ambient",
    category: str | None = None,
    shelf_life_days: int | None = None,
    vat_rate_bp: int = 1300,
    price_fen: int = 0,
    cost_fen: int = 0,
    lot_tracked: bool = False,
    name_en: str | None = None,
    units: dict[str, int] | None = None,
    barcodes: dict[str, str] | None = None,
) -> None:
    """Add an item; `units` maps extra unit -> factor in base units, `barcodes` maps code -> unit."""
    _check_code("sku", sku)
    if vat_rate_bp not in VAT_RATES_BP:
        raise InvalidCommand(
            f"增值税率无效: {vat_rate_bp / 100}% (允许 13%、9%、6%、3%、0)",
            f"invalid VAT rate {vat_rate_bp / 100}% (allowed 13%, 9%, 6%, 3%, 0)",
            vat_rate_bp=vat_rate_bp,
        )
    conn.execute(
        "INSERT INTO items (sku, name, name_en, category, base_unit, storage_class, shelf_life_days,"
        " vat_rate_bp, price_fen, cost_fen, lot_tracked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            sku,
            name,
            name_en,
            category,
            base_unit,
            storage_class,
            shelf_life_days,
            vat_rate_bp,
            price_fen,
            cost_fen,
            int(lot_tracked),
        ),
    )
    all_units = {base_unit: 1, **(units or {})}
    conn.executemany(
        "INSERT INTO item_units (sku, unit, factor) VALUES (?, ?, ?)",
        [(sku, unit, factor) for unit, factor in all_units.items()],
    )
    for code, unit in (barcodes or {}).items():
        if unit not in all_units:
            raise InvalidCommand(
                f"条码 {code} 的单位 {unit} 不是商品 {sku} 的单位",
                f"barcode {code} has unit {unit}, not a unit of item {sku}",
                barcode=code,
                unit=unit,
            )
        conn.execute("INSERT INTO barcodes (code, sku, unit) VALUES (?, ?, ?)", (code, sku, unit))


def add_supplier(
    conn: sqlite3.Connection,
    supplier_id: str,
    name: str,
    *,
    credit_code: str | None = None,
    contact: str | None = None,
    phone: str | None = None,
) -> None:
    _check_code("supplier", supplier_id)
    conn.execute(
        "INSERT INTO suppliers (id, name, credit_code, contact, phone) VALUES (?, ?, ?, ?, ?)",
        (supplier_id, name, credit_code, contact, phone),
    )


def ensure_lot(conn: sqlite3.Connection, sku: str, lot: str, expiry: date | None) -> str | None:
    """Record a lot the first time it is seen; return its expiry (the first one recorded wins)."""
    row = conn.execute("SELECT expiry FROM lots WHERE sku = ? AND lot = ?", (sku, lot)).fetchone()
    if row is not None:
        recorded: str | None = row[0]
        return recorded
    iso = expiry.isoformat() if expiry else None
    conn.execute("INSERT INTO lots (sku, lot, expiry) VALUES (?, ?, ?)", (sku, lot, iso))
    return iso


def resolve_item(conn: sqlite3.Connection, code: str, unit: str | None = None) -> ItemRef:
    """Resolve a SKU or barcode to an item and a unit (explicit unit > barcode's unit > base unit)."""
    row = conn.execute(
        "WITH code AS ("
        "  SELECT sku, unit, 0 AS rank FROM barcodes WHERE code = :code"
        "  UNION ALL SELECT sku, base_unit, 1 FROM items WHERE sku = :code"
        "  ORDER BY rank LIMIT 1)"
        " SELECT i.sku, i.name, COALESCE(:unit, code.unit) AS unit, u.factor, i.base_unit, i.vat_rate_bp,"
        " i.price_fen, i.cost_fen, i.shelf_life_days, i.storage_class"
        " FROM code JOIN items i ON i.sku = code.sku"
        " LEFT JOIN item_units u ON u.sku = i.sku AND u.unit = COALESCE(:unit, code.unit)",
        {"code": code, "unit": unit},
    ).fetchone()
    if row is None:
        raise UnknownItem(code)
    if row["factor"] is None:
        raise UnknownUnit(row["sku"], row["unit"])
    return ItemRef(
        sku=row["sku"],
        name=row["name"],
        unit=row["unit"],
        factor=int(row["factor"]),
        base_unit=row["base_unit"],
        vat_rate_bp=int(row["vat_rate_bp"]),
        price_fen=int(row["price_fen"]),
        cost_fen=int(row["cost_fen"]),
        shelf_life_days=row["shelf_life_days"],
        storage_class=row["storage_class"],
    )


ITEM_CHANGES = ("name", "name_en", "vat_rate_bp", "price_fen", "cost_fen", "active")
VAT_RATES_BP = (1300, 900, 600, 300, 0)


def update_item(
    conn: sqlite3.Connection, sku: str, changes: dict[str, object], actor: str, ts: str
) -> dict[str, tuple[object, object]]:
    """Change an item's names, VAT rate, prices or active flag; return field -> (old, new) for what changed, which
    goes into the audit trail.

    Posted documents keep the rate and prices they were posted with (document lines record them); the change
    applies to postings from now on.
    """
    unknown = sorted(set(changes) - set(ITEM_CHANGES))
    if unknown:
        raise InvalidCommand(
            f"不能修改: {', '.join(unknown)} (可改: {', '.join(ITEM_CHANGES)})",
            f"cannot change {', '.join(unknown)}; changeable: {', '.join(ITEM_CHANGES)}",
            fields=unknown,
        )
    for field, value in changes.items():
        if field == "name_en" and value is None:
            continue
        expected: type = bool if field == "active" else str if field in ("name", "name_en") else int
        if type(value) is not expected or (expected is int and not 0 <= value <= 1_000_000_000):  # type: ignore[operator]
            raise InvalidCommand(
                f"{field} 的值无效: {value!r}",
                f"{field}: invalid value {value!r} (expected {expected.__name__}"
                + (", 0..1000000000)" if expected is int else ")"),
                field=field,
            )
    row = conn.execute("SELECT * FROM items WHERE sku = ?", (sku,)).fetchone()
    if row is None:
        raise UnknownItem(sku)
    if "vat_rate_bp" in changes and changes["vat_rate_bp"] not in VAT_RATES_BP:
        rate = changes["vat_rate_bp"]
        raise InvalidCommand(
            f"增值税率无效: {rate} (允许 1300、900、600、300、0 基点，即 13%、9%、6%、3%、0)",
            f"invalid VAT rate {rate!r} basis points; allowed 1300, 900, 600, 300, 0 (13%, 9%, 6%, 3%, 0)",
            field="vat_rate_bp",
            allowed=list(VAT_RATES_BP),
        )
    if "name" in changes and not str(changes["name"] or "").strip():
        raise InvalidCommand("商品名称不能为空", "an item's name cannot be empty", field="name")
    changed = {
        field: (row[field] if field != "active" else bool(row[field]), value)
        for field, value in changes.items()
        if (row[field] if field != "active" else bool(row[field])) != value
    }
    if changed:
        assignments = ", ".join(f"{field} = ?" for field in changed)
        values = [int(bool(new)) if field == "active" else new for field, (_, new) in changed.items()]
        conn.execute(f"UPDATE items SET {assignments} WHERE sku = ?", (*values, sku))
        detail = {field: {"old": old, "new": new} for field, (old, new) in changed.items()}
        append_audit(conn, ts=ts, actor=actor, device=None, action="item.update", object=f"item:{sku}", detail=detail)
    return changed
