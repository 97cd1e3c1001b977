"""Price agreements (协议价): a negotiated price per supplier and item, valid for a period, under a contract.

Recording one updates everything tied to it in the same transaction: the supplier's price list (read from the
agreements), the contract record, the open purchase orders of that supplier and item whose business date
falls in the validity and of which nothing was received yet (a `po_price_revisions` row keeps the old and
the new price: the ledger's PO lines are append-only and stay as posted), and so the three-way match's
expected price: the latest revision of a PO line, else the agreement the PO was created under (recorded
before the PO and valid on its business date), else the PO line's own price. Every change is in the audit
trail.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from edge.finance.errors import (
    ContractSupplierMismatch,
    InvalidPriceAgreement,
    UnknownContract,
    UnknownSupplier,
)
from edge.ledger.audit import append_audit
from edge.ledger.errors import IdempotencyKeyReused, UnknownItem
from edge.ledger.money import format_yuan

CONTRACT_NO = re.compile(r"^[\w.-]{1,64}$")
MAX_PRICE_FEN = 1_000_000_000
MAX_NOTE = 500


@dataclass(frozen=True, slots=True)
class PriceAgreementIn:
    """What a purchaser records: the price per base unit, VAT included, in fen."""

    supplier_id: str
    sku: str
    price_fen: int
    valid_from: date
    valid_to: date
    contract_no: str
    note: str | None = None


def _invalid(field: str, zh: str, en: str, **detail: Any) -> InvalidPriceAgreement:
    return InvalidPriceAgreement(zh, en, field=field, **detail)


def check_agreement(agreement: PriceAgreementIn) -> None:
    """Refuse a malformed agreement before anything is read or written."""
    if not isinstance(agreement.price_fen, int) or isinstance(agreement.price_fen, bool):
        raise _invalid("price_fen", "价格须为整数 (分)", "price_fen must be an integer number of fen")
    if not 1 <= agreement.price_fen <= MAX_PRICE_FEN:
        raise _invalid(
            "price_fen",
            f"价格须为 1..{MAX_PRICE_FEN} 分",
            f"price_fen must be 1..{MAX_PRICE_FEN}",
            price_fen=agreement.price_fen,
        )
    if agreement.valid_to < agreement.valid_from:
        raise _invalid(
            "valid_to",
            f"有效期止 {agreement.valid_to} 早于有效期起 {agreement.valid_from}",
            f"valid_to {agreement.valid_to} is before valid_from {agreement.valid_from}",
        )
    if not isinstance(agreement.contract_no, str) or not CONTRACT_NO.match(agreement.contract_no):
        raise _invalid(
            "contract_no",
            "合同号须为 1..64 个字母、数字、汉字、. _ -",
            "contract_no must be 1..64 letters, digits, . _ -",
        )
    if agreement.note is not None and len(agreement.note) > MAX_NOTE:
        raise _invalid("note", f"备注最多 {MAX_NOTE} 字", f"note is longer than {MAX_NOTE}")


def _fingerprint(agreement: PriceAgreementIn) -> str:
    return hashlib.sha256(repr(agreement).encode()).hexdigest()


def record_agreement(
    conn: sqlite3.Connection, agreement: PriceAgreementIn, key: str, actor: str, now: datetime
) -> dict[str, Any]:
    """Record a price agreement and revise the open POs it covers; idempotent on `key`. The caller owns the
    transaction (this runs in the writer's savepoint)."""
    check_agreement(agreement)
    fingerprint = _fingerprint(agreement)
    previous = conn.execute("SELECT id, fingerprint FROM price_agreements WHERE command_key = ?", (key,)).fetchone()
    if previous is not None:
        if previous["fingerprint"] != fingerprint:
            raise IdempotencyKeyReused(key)
        result = get_agreement(conn, int(previous["id"]))
        assert result is not None
        return {**result, "replayed": True}
    if conn.execute("SELECT 1 FROM suppliers WHERE id = ?", (agreement.supplier_id,)).fetchone() is None:
        raise UnknownSupplier(agreement.supplier_id)
    if conn.execute("SELECT 1 FROM items WHERE sku = ?", (agreement.sku,)).fetchone() is None:
        raise UnknownItem(agreement.sku)
    ts = now.isoformat()
    contract = conn.execute(
        "SELECT supplier_id FROM contracts WHERE contract_no = ?", (agreement.contract_no,)
    ).fetchone()
    if contract is None:
        conn.execute(
            "INSERT INTO contracts (contract_no, supplier_id, created_at, created_by) VALUES (?, ?, ?, ?)",
            (agreement.contract_no, agreement.supplier_id, ts, actor),
        )
        append_audit(
            conn,
            ts=ts,
            actor=actor,
            device=None,
            action="contract.record",
            object=f"contract:{agreement.contract_no}",
            detail={"supplier": agreement.supplier_id},
        )
    elif contract["supplier_id"] != agreement.supplier_id:
        raise ContractSupplierMismatch(agreement.contract_no, contract["supplier_id"], agreement.supplier_id)
    cursor = conn.execute(
        "INSERT INTO price_agreements (supplier_id, sku, price_fen, valid_from, valid_to, contract_no,"
        " recorded_at, recorded_by, command_key, fingerprint, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            agreement.supplier_id,
            agreement.sku,
            agreement.price_fen,
            agreement.valid_from.isoformat(),
            agreement.valid_to.isoformat(),
            agreement.contract_no,
            ts,
            actor,
            key,
            fingerprint,
            agreement.note,
        ),
    )
    agreement_id = int(cursor.lastrowid or 0)
    append_audit(
        conn,
        ts=ts,
        actor=actor,
        device=None,
        action="price_agreement.record",
        object=f"price_agreement:{agreement_id}",
        detail={
            **{k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(agreement).items()},
            "key": key,
        },
    )
    _revise_open_orders(conn, agreement, agreement_id, actor, ts)
    result = get_agreement(conn, agreement_id)
    assert result is not None
    return {**result, "replayed": False}


def _revise_open_orders(
    conn: sqlite3.Connection, agreement: PriceAgreementIn, agreement_id: int, actor: str, ts: str
) -> None:
    """Revise the price of the PO lines of this supplier and item with a business date in the validity and
    nothing of the item received against the PO yet (not reversed POs and receipts only). The old price is the
    line's effective price: its latest revision, else the agreement it was created under, else its own."""
    rows = conn.execute(
        "SELECT d.id AS po_id, d.business_date, d.posted_at, l.line_no, l.unit, l.price_fen,"
        " COALESCE(u.factor, 1) AS factor,"
        " (SELECT r.new_price_fen FROM po_price_revisions r WHERE r.po_id = d.id AND r.po_line_no = l.line_no"
        "  ORDER BY r.id DESC LIMIT 1) AS revised_fen"
        " FROM documents d JOIN document_lines l ON l.document_id = d.id"
        " LEFT JOIN item_units u ON u.sku = l.sku AND u.unit = l.unit"
        " WHERE d.type = 'purchase_order' AND d.counterparty = ? AND l.sku = ?"
        " AND d.business_date BETWEEN ? AND ?"
        " AND NOT EXISTS (SELECT 1 FROM documents v WHERE v.reverses_id = d.id)"
        " AND NOT EXISTS (SELECT 1 FROM documents rc JOIN document_lines rl ON rl.document_id = rc.id"
        "   WHERE rc.type = 'receipt' AND rc.ref_id = d.id AND rl.sku = l.sku"
        "   AND NOT EXISTS (SELECT 1 FROM documents rv WHERE rv.reverses_id = rc.id))"
        " ORDER BY d.id, l.line_no",
        (
            agreement.supplier_id,
            agreement.sku,
            agreement.valid_from.isoformat(),
            agreement.valid_to.isoformat(),
        ),
    ).fetchall()
    earlier = [
        a
        for a in agreements_of(conn, [agreement.supplier_id]).get((agreement.supplier_id, agreement.sku), [])
        if a.id != agreement_id
    ]
    for row in rows:
        if row["revised_fen"] is not None:
            old = int(row["revised_fen"])
        else:
            under = agreed_for_order(earlier, row["business_date"], datetime.fromisoformat(row["posted_at"]))
            old = under.price_fen * int(row["factor"]) if under is not None else int(row["price_fen"] or 0)
        new = agreement.price_fen * int(row["factor"])
        if old == new:
            continue
        cursor = conn.execute(
            "INSERT INTO po_price_revisions (po_id, po_line_no, sku, unit, factor, old_price_fen, new_price_fen,"
            " agreement_id, revised_at, revised_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row["po_id"],
                row["line_no"],
                agreement.sku,
                row["unit"],
                row["factor"],
                old,
                new,
                agreement_id,
                ts,
                actor,
            ),
        )
        append_audit(
            conn,
            ts=ts,
            actor=actor,
            device=None,
            action="purchase_order.price_revised",
            object=f"document:{row['po_id']}",
            detail={
                "revision": cursor.lastrowid,
                "line_no": row["line_no"],
                "sku": agreement.sku,
                "unit": row["unit"],
                "old_price_fen": old,
                "new_price_fen": new,
                "agreement": agreement_id,
                "contract_no": agreement.contract_no,
            },
        )


# --- the match's price base ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgreedPrice:
    """An agreement as the match's price base sees it: price per base unit (VAT included) and when it applies."""

    id: int
    price_fen: int
    valid_from: str  # ISO dates, both included
    valid_to: str
    recorded_at: datetime


def agreements_of(conn: sqlite3.Connection, supplier_ids: Iterable[str]) -> dict[tuple[str, str], list[AgreedPrice]]:
    """Every agreement of these suppliers by (supplier, sku), the latest recorded first, in one query."""
    found: dict[tuple[str, str], list[AgreedPrice]] = {}
    cursor = conn.cursor()
    cursor.row_factory = None
    for agreement_id, supplier_id, sku, price, valid_from, valid_to, recorded_at in cursor.execute(
        "SELECT id, supplier_id, sku, price_fen, valid_from, valid_to, recorded_at FROM price_agreements"
        " WHERE supplier_id IN (SELECT value FROM json_each(?)) ORDER BY id DESC",
        (json.dumps(sorted(set(supplier_ids))),),
    ):
        found.setdefault((supplier_id, sku), []).append(
            AgreedPrice(int(agreement_id), int(price), valid_from, valid_to, datetime.fromisoformat(recorded_at))
        )
    return found


def agreed_for_order(agreements: Sequence[AgreedPrice], business_date: str, posted_at: datetime) -> AgreedPrice | None:
    """The agreement a purchase order was created under: of those recorded before the PO was posted and valid
    on its business date (ISO), the latest recorded; None if there is none. `agreements` are latest first.

    An agreement recorded after the PO does not count here: it revised the PO if the PO was still open
    (`po_price_revisions`), and leaves a PO with goods already received at the price it was placed at."""
    for agreement in agreements:
        if agreement.recorded_at < posted_at and agreement.valid_from <= business_date <= agreement.valid_to:
            return agreement
    return None


# --- reads --------------------------------------------------------------------------------------


def _agreement_row(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    record.pop("fingerprint", None)
    record["price"] = format_yuan(int(record["price_fen"]))
    return record


def get_agreement(conn: sqlite3.Connection, agreement_id: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM price_agreements WHERE id = ?", (agreement_id,)).fetchone()
    if row is None:
        return None
    agreement = _agreement_row(row)
    agreement["revisions"] = list_revisions(conn, agreement_id=agreement_id)
    return agreement


def list_agreements(
    conn: sqlite3.Connection,
    supplier_id: str | None = None,
    sku: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Agreements, newest first."""
    where, params = [], []
    for column, value in (("supplier_id", supplier_id), ("sku", sku)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT * FROM price_agreements {clause} ORDER BY id DESC LIMIT ? OFFSET ?", (*params, limit, offset)
    ).fetchall()
    return [_agreement_row(r) for r in rows]


def supplier_price_list(conn: sqlite3.Connection, supplier_id: str, on: date) -> list[dict[str, Any]]:
    """The supplier's price list on a date: per item, the agreement in effect (the latest recorded of those
    valid on that date), with the item's name and unit."""
    if conn.execute("SELECT 1 FROM suppliers WHERE id = ?", (supplier_id,)).fetchone() is None:
        raise UnknownSupplier(supplier_id)
    rows = conn.execute(
        "SELECT a.*, i.name AS item_name, i.base_unit FROM price_agreements a JOIN items i ON i.sku = a.sku"
        " WHERE a.supplier_id = ? AND a.valid_from <= ? AND a.valid_to >= ?"
        " AND a.id = (SELECT b.id FROM price_agreements b WHERE b.supplier_id = a.supplier_id AND b.sku = a.sku"
        "   AND b.valid_from <= ? AND b.valid_to >= ? ORDER BY b.id DESC LIMIT 1)"
        " ORDER BY a.sku",
        (supplier_id, on.isoformat(), on.isoformat(), on.isoformat(), on.isoformat()),
    ).fetchall()
    return [_agreement_row(r) for r in rows]


def agreed_price_fen(conn: sqlite3.Connection, supplier_id: str, sku: str, on: date) -> int | None:
    """The agreed price per base unit (VAT included) in effect on a date, or None."""
    row = conn.execute(
        "SELECT price_fen FROM price_agreements WHERE supplier_id = ? AND sku = ? AND valid_from <= ?"
        " AND valid_to >= ? ORDER BY id DESC LIMIT 1",
        (supplier_id, sku, on.isoformat(), on.isoformat()),
    ).fetchone()
    return int(row[0]) if row else None


def get_contract(conn: sqlite3.Connection, contract_no: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT c.*, s.name AS supplier_name FROM contracts c JOIN suppliers s ON s.id = c.supplier_id"
        " WHERE c.contract_no = ?",
        (contract_no,),
    ).fetchone()
    if row is None:
        raise UnknownContract(contract_no)
    contract = dict(row)
    contract["agreements"] = [
        {**_agreement_row(r), "revisions": list_revisions(conn, agreement_id=int(r["id"]))}
        for r in conn.execute(
            "SELECT * FROM price_agreements WHERE contract_no = ? ORDER BY id", (contract_no,)
        ).fetchall()
    ]
    return contract


def list_revisions(
    conn: sqlite3.Connection,
    po_id: int | None = None,
    agreement_id: int | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """PO price revisions, oldest first."""
    where, params = [], []
    for column, value in (("po_id", po_id), ("agreement_id", agreement_id)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    return [
        dict(r)
        for r in conn.execute(
            f"SELECT * FROM po_price_revisions {clause} ORDER BY id LIMIT ?", (*params, limit)
        ).fetchall()
    ]


def revised_prices(conn: sqlite3.Connection, po_ids: Iterable[int]) -> dict[tuple[int, int], tuple[int, int]]:
    """The latest revision of each revised line of these POs, in one query: (the new price per the PO line's
    unit, the agreed price per base unit that caused it)."""
    ids = json.dumps(sorted(set(po_ids)))
    rows = conn.execute(
        "SELECT r.po_id, r.po_line_no, r.new_price_fen, a.price_fen FROM po_price_revisions r"
        " JOIN price_agreements a ON a.id = r.agreement_id"
        " WHERE r.po_id IN (SELECT value FROM json_each(?))"
        " AND r.id = (SELECT MAX(id) FROM po_price_revisions x"
        "  WHERE x.po_id = r.po_id AND x.po_line_no = r.po_line_no)",
        (ids,),
    ).fetchall()
    return {(int(r[0]), int(r[1])): (int(r[2]), int(r[3])) for r in rows}
