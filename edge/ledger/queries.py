"""Read side of the ledger: named queries returning plain dicts and lists."""

from __future__ import annotations

import sqlite3
from datetime import date
from typing import Any

from edge.ledger.posting import on_hand_by_location


def _rows(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    return [dict(row) for row in cursor.fetchall()]


def list_items(
    conn: sqlite3.Connection, q: str | None = None, limit: int = 100, offset: int = 0
) -> list[dict[str, Any]]:
    """Items by SKU, name or barcode (substring match), in SKU order."""
    if q:
        like = f"%{q}%"
        cursor = conn.execute(
            "SELECT * FROM items WHERE sku LIKE ? OR name LIKE ? OR name_en LIKE ?"
            " OR sku IN (SELECT sku FROM barcodes WHERE code LIKE ?) ORDER BY sku LIMIT ? OFFSET ?",
            (like, like, like, like, limit, offset),
        )
    else:
        cursor = conn.execute("SELECT * FROM items ORDER BY sku LIMIT ? OFFSET ?", (limit, offset))
    return _rows(cursor)


def on_hand_totals(conn: sqlite3.Connection, skus: list[str]) -> dict[str, int]:
    """Each item's on hand over every location and lot (base units), in one query; items with none are 0."""
    totals = dict.fromkeys(skus, 0)
    for start in range(0, len(skus), 500):
        chunk = skus[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for sku, qty in conn.execute(f"SELECT sku, SUM(qty) FROM balances WHERE sku IN ({marks}) GROUP BY sku", chunk):
            totals[sku] = int(qty)
    return totals


def get_item(conn: sqlite3.Connection, sku: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM items WHERE sku = ?", (sku,)).fetchone()
    if row is None:
        return None
    item = dict(row)
    item["units"] = {
        r["unit"]: r["factor"]
        for r in conn.execute("SELECT unit, factor FROM item_units WHERE sku = ? ORDER BY factor", (sku,))
    }
    item["barcodes"] = _rows(conn.execute("SELECT code, unit FROM barcodes WHERE sku = ? ORDER BY code", (sku,)))
    item["on_hand"] = on_hand_by_location(conn, sku)
    return item


def lookup_barcode(conn: sqlite3.Connection, code: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT b.code AS barcode, b.unit, u.factor, i.sku, i.name, i.name_en, i.base_unit, i.price_fen"
        " FROM barcodes b JOIN items i ON i.sku = b.sku JOIN item_units u ON u.sku = b.sku AND u.unit = b.unit"
        " WHERE b.code = ?",
        (code,),
    ).fetchone()
    return dict(row) if row else None


def list_locations(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return _rows(conn.execute("SELECT * FROM locations ORDER BY code"))


def list_suppliers(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return _rows(conn.execute("SELECT * FROM suppliers ORDER BY id"))


def list_stores(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return _rows(conn.execute("SELECT * FROM stores ORDER BY id"))


def get_document(conn: sqlite3.Connection, document_id: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM documents WHERE id = ?", (document_id,)).fetchone()
    if row is None:
        return None
    document = dict(row)
    document["lines"] = _rows(
        conn.execute("SELECT * FROM document_lines WHERE document_id = ? ORDER BY line_no", (document_id,))
    )
    document["moves"] = _rows(
        conn.execute(
            "SELECT id, line_no, sku, location, lot, qty, value_fen FROM stock_moves WHERE document_id = ? ORDER BY id",
            (document_id,),
        )
    )
    vouchers = list_vouchers(conn, document_id=document_id)
    document["voucher"] = vouchers[0] if vouchers else None
    reversal = conn.execute("SELECT id FROM documents WHERE reverses_id = ?", (document_id,)).fetchone()
    document["reversed_by"] = reversal[0] if reversal else None
    return document


def list_documents(
    conn: sqlite3.Connection,
    type: str | None = None,
    limit: int = 100,
    offset: int = 0,
    since: date | None = None,
    until: date | None = None,
    q: str | None = None,
    sku: str | None = None,
) -> list[dict[str, Any]]:
    """Documents, newest first; `since` and `until` (both included) bound the business date, `q` is part of the
    document number or counterparty, `sku` an item on one of its lines."""
    where: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("type = ?", type or None),
        ("business_date >= ?", since.isoformat() if since else None),
        ("business_date <= ?", until.isoformat() if until else None),
        ("id IN (SELECT document_id FROM document_lines WHERE sku = ?)", sku),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    if q:
        where.append("(instr(lower(doc_no), lower(?)) > 0 OR instr(lower(COALESCE(counterparty, '')), lower(?)) > 0)")
        params += [q, q]
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    return _rows(
        conn.execute(f"SELECT * FROM documents{condition} ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset))
    )


def stock_rows(
    conn: sqlite3.Connection,
    sku: str | None = None,
    location: str | None = None,
    lot: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Balances with stock (qty != 0), by item, location and lot, with the lot's expiry."""
    where = ["b.qty != 0"]
    params: list[Any] = []
    for column, value in (("b.sku", sku), ("b.location", location), ("b.lot", lot)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    params += [limit, offset]
    return _rows(
        conn.execute(
            "SELECT b.sku, b.location, b.lot, b.qty, b.value_fen, l.expiry FROM balances b"
            " LEFT JOIN lots l ON l.sku = b.sku AND l.lot = b.lot"
            f" WHERE {' AND '.join(where)} ORDER BY b.sku, b.location, b.lot LIMIT ? OFFSET ?",
            params,
        )
    )


def valuation(conn: sqlite3.Connection) -> dict[str, Any]:
    rows = conn.execute("SELECT location, SUM(value_fen) FROM balances GROUP BY location ORDER BY location").fetchall()
    by_location = {row[0]: int(row[1]) for row in rows}
    return {"value_fen": sum(by_location.values()), "by_location": by_location}


def list_moves(
    conn: sqlite3.Connection,
    sku: str | None = None,
    location: str | None = None,
    document_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Stock moves, newest first."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("sku", sku), ("location", location), ("document_id", document_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    params += [limit, offset]
    return _rows(conn.execute(f"SELECT * FROM stock_moves {clause} ORDER BY id DESC LIMIT ? OFFSET ?", params))


def list_vouchers(
    conn: sqlite3.Connection,
    document_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
    since: date | None = None,
    until: date | None = None,
) -> list[dict[str, Any]]:
    """Vouchers with their lines, newest first; `since` and `until` (both included) bound the voucher date."""
    where: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("document_id = ?", document_id),
        ("date >= ?", since.isoformat() if since else None),
        ("date <= ?", until.isoformat() if until else None),
    ):
        if value is not None:
            where.append(clause)
            params.append(value)
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    cursor = conn.execute(
        f"SELECT * FROM vouchers{condition} ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset)
    )
    vouchers = _rows(cursor)
    for voucher in vouchers:
        voucher["tax_trusted"] = bool(voucher["tax_trusted"])
        voucher["lines"] = _rows(
            conn.execute(
                "SELECT vl.line_no, vl.account, a.name AS account_name, vl.debit_fen, vl.credit_fen, vl.memo"
                " FROM voucher_lines vl JOIN accounts a ON a.code = vl.account"
                " WHERE vl.voucher_id = ? ORDER BY vl.line_no",
                (voucher["id"],),
            )
        )
    return vouchers


def on_hand(conn: sqlite3.Connection, sku: str) -> dict[str, int]:
    return on_hand_by_location(conn, sku)
