"""Ledger verification: rebuild balances from moves, check vouchers, outbox and the audit chain.

A document whose outbox row sync compacted (acknowledged and applied by the aggregator, older than the
retention) counts as having had its row: its id is at or below the compaction watermark.

Every list in the report is empty when the ledger is right.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from edge.ledger.audit import verify_chain
from edge.ledger.masterdata import TRANSIT_LOCATION


def rebuilt_balances(conn: sqlite3.Connection) -> dict[tuple[str, str, str], tuple[int, int]]:
    """Balances as the sum of their moves."""
    return {
        (r[0], r[1], r[2]): (int(r[3]), int(r[4]))
        for r in conn.execute(
            "SELECT sku, location, lot, SUM(qty), SUM(value_fen) FROM stock_moves GROUP BY sku, location, lot"
        )
    }


def verify_ledger(conn: sqlite3.Connection, *, allow_negative: bool = False) -> dict[str, Any]:
    """Check every ledger invariant; see the module docstring."""
    expected = rebuilt_balances(conn)
    stored = {
        (r[0], r[1], r[2]): (int(r[3]), int(r[4]))
        for r in conn.execute("SELECT sku, location, lot, qty, value_fen FROM balances")
    }
    balance_mismatches = []
    for key in sorted(set(expected) | set(stored)):
        want = expected.get(key, (0, 0))
        have = stored.get(key, (0, 0))
        if want != have:
            balance_mismatches.append(
                {
                    "sku": key[0],
                    "location": key[1],
                    "lot": key[2],
                    "qty": have[0],
                    "qty_from_moves": want[0],
                    "value_fen": have[1],
                    "value_from_moves": want[1],
                }
            )
    invariant_breaks = [
        {"sku": k[0], "location": k[1], "lot": k[2], "qty": q, "value_fen": v, "problem": problem}
        for k, (q, v) in sorted(stored.items())
        for problem in (["zero quantity with a value"] if q == 0 and v != 0 else [])
        + (["negative quantity"] if q < 0 and not allow_negative else [])
        + (["negative value"] if v < 0 and q >= 0 else [])
    ]
    unbalanced = [
        {"voucher_id": r[0], "voucher_no": r[1], "debit_fen": int(r[2]), "credit_fen": int(r[3])}
        for r in conn.execute(
            "SELECT v.id, v.voucher_no, COALESCE(SUM(l.debit_fen), 0), COALESCE(SUM(l.credit_fen), 0)"
            " FROM vouchers v LEFT JOIN voucher_lines l ON l.voucher_id = v.id GROUP BY v.id"
            " HAVING COALESCE(SUM(l.debit_fen), 0) != COALESCE(SUM(l.credit_fen), 0) OR COUNT(l.line_no) = 0"
        )
    ]
    missing_vouchers = [
        {"document_id": r[0], "doc_no": r[1]}
        for r in conn.execute(
            "SELECT d.id, d.doc_no FROM documents d"
            " WHERE NOT EXISTS (SELECT 1 FROM vouchers v WHERE v.document_id = d.id)"
            " AND (EXISTS (SELECT 1 FROM stock_moves m WHERE m.document_id = d.id AND m.value_fen != 0)"
            "      OR d.gross_fen != 0 AND d.type IN ('receipt', 'sale', 'customer_return', 'supplier_return'))"
        )
    ]
    compacted = _compacted_through_document(conn)
    outbox = [
        {"document_id": r[0], "doc_no": r[1], "outbox_rows": int(r[2])}
        for r in conn.execute(
            "SELECT d.id, d.doc_no, (SELECT COUNT(*) FROM outbox o WHERE o.document_id = d.id) AS n"
            " FROM documents d WHERE n != 1 AND NOT (n = 0 AND d.id <= ?)",
            (compacted,),
        )
    ]
    inventory = _inventory_reconciliation(conn)
    audit = verify_chain(conn)
    audit_missing = [
        {"document_id": r[0], "doc_no": r[1]}
        for r in conn.execute(
            "SELECT d.id, d.doc_no FROM documents d WHERE NOT EXISTS"
            " (SELECT 1 FROM audit a WHERE a.object = 'document:' || d.id)"
        )
    ]
    report: dict[str, Any] = {
        "balances": balance_mismatches,
        "invariants": invariant_breaks,
        "vouchers": unbalanced,
        "missing_vouchers": missing_vouchers,
        "outbox": outbox,
        "inventory_account": inventory,
        "audit": audit + audit_missing,
    }
    report["ok"] = not any(report[k] for k in list(report))
    report["checked"] = {
        "moves": conn.execute("SELECT COUNT(*) FROM stock_moves").fetchone()[0],
        "balances": len(stored),
        "vouchers": conn.execute("SELECT COUNT(*) FROM vouchers").fetchone()[0],
        "documents": conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0],
        "audit_rows": conn.execute("SELECT COUNT(*) FROM audit").fetchone()[0],
    }
    return report


def _compacted_through_document(conn: sqlite3.Connection) -> int:
    """Documents up to this id may have no outbox row: sync acknowledged, applied and compacted it
    (edge/sync/outbox.py records the watermark in sync_state)."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sync_state'").fetchone() is None:
        return 0
    row = conn.execute("SELECT value FROM sync_state WHERE key = 'compacted_through_document'").fetchone()
    return int(row[0]) if row is not None and str(row[0]).isdigit() else 0


def _inventory_reconciliation(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The inventory account (1405) must equal the value of the stock outside transit."""
    stock = conn.execute(
        "SELECT COALESCE(SUM(value_fen), 0) FROM balances WHERE location != ?", (TRANSIT_LOCATION,)
    ).fetchone()[0]
    account = conn.execute(
        "SELECT COALESCE(SUM(debit_fen - credit_fen), 0) FROM voucher_lines WHERE account = '1405'"
    ).fetchone()[0]
    if int(stock) != int(account):
        return [{"account": "1405", "account_balance_fen": int(account), "stock_value_fen": int(stock)}]
    return []


def rebuild_balances(conn: sqlite3.Connection) -> int:
    """Replace the balances table by the sums of the moves (inside the caller's transaction)."""
    conn.execute("DELETE FROM balances")
    conn.execute(
        "INSERT INTO balances (sku, location, lot, qty, value_fen)"
        " SELECT sku, location, lot, SUM(qty), SUM(value_fen) FROM stock_moves GROUP BY sku, location, lot"
    )
    return int(conn.execute("SELECT COUNT(*) FROM balances").fetchone()[0])
