"""The box's totals in the shape of the aggregator's `cloud_sync.facts.store_totals`: after sync they are equal
to the piece and the fen (`storebox sync verify`). Sales follow one rule on both sides: sales count +, customer
returns −, a reversal of either with that document's sign (its lines are already negated); cost is what the
line's moves took out of stock."""

from __future__ import annotations

import sqlite3
from typing import Any

_SALES = """
SELECT COALESCE(SUM(sign * l.qty_base), 0), COALESCE(SUM(sign * l.gross_fen), 0), COALESCE(SUM(sign * l.tax_fen), 0),
       COALESCE(SUM(-(SELECT COALESCE(SUM(m.value_fen), 0) FROM stock_moves m
                     WHERE m.document_id = l.document_id AND m.line_no = l.line_no)), 0)
FROM (
    SELECT d.id, CASE COALESCE(o.type, d.type) WHEN 'sale' THEN 1 WHEN 'customer_return' THEN -1 END AS sign
    FROM documents d LEFT JOIN documents o ON d.type = 'reversal' AND o.id = d.reverses_id
    WHERE d.type IN ('sale', 'customer_return') OR (d.type = 'reversal' AND o.type IN ('sale', 'customer_return'))
) s JOIN document_lines l ON l.document_id = s.id
"""


def ledger_totals(conn: sqlite3.Connection) -> dict[str, Any]:
    documents = int(conn.execute("SELECT COUNT(*) FROM documents").fetchone()[0])
    qty = value = 0
    lines: dict[str, list[int]] = {}
    for sku, location, lot, q, v in conn.execute("SELECT sku, location, lot, qty, value_fen FROM balances"):
        qty += int(q)
        value += int(v)
        if q or v:
            lines[f"{sku}|{location}|{lot}"] = [int(q), int(v)]
    s = conn.execute(_SALES).fetchone()
    gl = {
        str(account): [int(debit), int(credit)]
        for account, debit, credit in conn.execute(
            "SELECT account, SUM(debit_fen), SUM(credit_fen) FROM voucher_lines GROUP BY account"
        )
        if debit or credit
    }
    return {
        "documents": documents,
        "stock": {"qty": qty, "value_fen": value},
        "stock_lines": dict(sorted(lines.items())),
        "sales": {"qty": int(s[0]), "gross_fen": int(s[1]), "tax_fen": int(s[2]), "cost_fen": int(s[3])},
        "gl": dict(sorted(gl.items())),
    }


def differences(box: dict[str, Any], aggregator: dict[str, Any]) -> list[str]:
    """Each difference between two totals, in words; empty when they agree."""
    found: list[str] = []
    for key in ("documents", "stock", "sales"):
        if box.get(key) != aggregator.get(key):
            found.append(f"{key}: box {box.get(key)} != aggregator {aggregator.get(key)}")
    for group in ("stock_lines", "gl"):
        mine, theirs = box.get(group, {}), aggregator.get(group, {})
        for name in sorted(set(mine) | set(theirs)):
            if mine.get(name) != theirs.get(name):
                found.append(f"{group} {name}: box {mine.get(name)} != aggregator {theirs.get(name)}")
    return found
