"""Trial balance benchmark: one year of a busy store's vouchers in a real SQLite file, then the books.

"Busy" here: a supermarket open every day with about 820 documents a day, each with its voucher: 780 sale
tickets (5 lines: takings, revenue, output VAT, cost of sales, inventory), 8 customer returns (5 lines), 20
goods receipts (2 lines, 暂估), 6 purchase invoices (3-4 lines), 2 supplier payments, 2 write-offs (3 lines),
1 transfer out, and a stocktake and a credit note every other day. Over 365 days that is about 300,000
vouchers and 1.47 million voucher lines. They are written straight into the real schema (every migration,
the shipped chart and rule tables), not posted one by one, so the figures measure the reports alone.

Timed (best and median of --repeat runs, warm cache): the trial balance of December (the whole year is
opening history) and of January, the general ledger of 1405 for December, AP ageing on 31 December, the
export of December (Kingdee CSV and XLSX) and the books check: first on the schema as shipped, then, as the
baseline of the same run, with the covering index of edge/finance/migrations/0001_finance_core.sql replaced by
the plain account index it superseded (WITHOUT_INDEX below), so the ratio is on record.

Run: `python -m tools.bench.trial_balance [--vouchers N] [--repeat R] [--db PATH]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from edge.db import connect, migrate
from edge.finance import books
from edge.finance.export import export_vouchers
from edge.finance.setup import prepare_books
from edge.ledger.masterdata import add_location, add_supplier

WITHOUT_INDEX = (
    "DROP INDEX voucher_lines_by_account_voucher; CREATE INDEX voucher_lines_by_account ON voucher_lines(account);"
)
SUPPLIERS = [f"sup-{i:02d}" for i in range(20)]
# Documents a day by type; fractions are drawn per day.
PER_DAY: dict[str, float] = {
    "sale": 780,
    "customer_return": 8,
    "receipt": 20,
    "purchase_invoice": 6,
    "supplier_payment": 2,
    "write_off": 2,
    "transfer_out": 1,
    "stocktake": 0.5,
    "credit_note": 0.5,
}
PREFIX = {
    "sale": "SA",
    "customer_return": "CR",
    "receipt": "RC",
    "purchase_invoice": "PI",
    "supplier_payment": "PY",
    "write_off": "WO",
    "transfer_out": "TO",
    "stocktake": "ST",
    "credit_note": "CN",
}


def _lines(kind: str, rng: random.Random) -> tuple[list[tuple[str, int, int, str]], str | None]:
    """Balanced voucher lines (account, debit, credit, memo) for one document, and its supplier."""
    if kind in ("sale", "customer_return"):
        gross = rng.randint(200, 30000)
        tax = gross * 13 // 113
        net = gross - tax
        cost = net * rng.randint(60, 85) // 100
        cash = rng.choices(["1001", "1012", "1002"], weights=[2, 6, 2])[0]
        lines = [
            (cash, gross, 0, "销售收款"),
            ("5001", 0, net, "销售收入"),
            ("22210102", 0, tax, "销项税额"),
            ("5401", cost, 0, "结转销售成本"),
            ("1405", 0, cost, "库存商品出库"),
        ]
        if kind == "customer_return":  # the same lines on the other side
            lines = [(a, c, d, m) for a, d, c, m in lines]
        return lines, None
    supplier = rng.choice(SUPPLIERS)
    if kind == "receipt":
        net = rng.randint(10_000, 2_000_000)
        return [("1405", net, 0, "采购入库(暂估)"), ("220202", 0, net, "暂估应付")], supplier
    if kind in ("purchase_invoice", "credit_note"):
        estimate = rng.randint(10_000, 2_000_000)
        net = estimate + rng.choice([0, 0, 0, rng.randint(-500, 500)])
        tax = net * 13 // 100
        sign = -1 if kind == "credit_note" else 1
        lines = [("220202", sign * estimate, 0, "冲回暂估"), ("22210101", sign * tax, 0, "进项税额")]
        if net != estimate:
            lines.append(("5401", sign * (net - estimate), 0, "采购价差"))
        lines.append(("220201", 0, sign * (net + tax), "应付货款"))
        return lines, supplier
    if kind == "supplier_payment":
        paid = rng.randint(100_000, 5_000_000)
        return [("220201", paid, 0, "支付货款"), ("1002", 0, paid, "付款")], supplier
    cost = rng.randint(100, 50_000)
    if kind == "write_off":
        tax_out = cost * 13 // 100
        return [
            ("1901", cost + tax_out, 0, "待处理报损"),
            ("1405", 0, cost, "报损出库"),
            ("22210103", 0, tax_out, "转出"),
        ], None
    if kind == "transfer_out":
        return [("1402", cost, 0, "调拨在途"), ("1405", 0, cost, "调拨出库")], None
    return [("1405", cost, 0, "盘盈"), ("1901", 0, cost, "待处理盘盈")], None  # stocktake


def generate(conn: sqlite3.Connection, vouchers: int, year: int, seed: int = 2026) -> dict[str, int]:
    """Write about `vouchers` vouchers over the year, spread evenly over its days, in one transaction."""
    rng = random.Random(seed)
    days = (date(year + 1, 1, 1) - date(year, 1, 1)).days
    scale = vouchers / (sum(PER_DAY.values()) * days)
    documents: list[tuple[Any, ...]] = []
    voucher_rows: list[tuple[Any, ...]] = []
    line_rows: list[tuple[Any, ...]] = []
    n = 0
    for offset in range(days):
        day = date(year, 1, 1) + timedelta(days=offset)
        today: list[str] = []
        for kind, rate in PER_DAY.items():
            expected = rate * scale
            today += [kind] * (int(expected) + (1 if rng.random() < expected % 1 else 0))
        rng.shuffle(today)
        for kind in today:
            n += 1
            doc_no = f"{PREFIX[kind]}{day:%Y%m%d}-{n:06d}"
            lines, supplier = _lines(kind, rng)
            documents.append(
                (n, doc_no, kind, f"bench:{n}", f"{day}T10:00:00+08:00", day.isoformat(), "bench", supplier)
            )
            voucher_rows.append((n, f"记{day:%Y%m}-{n:06d}", n, day.isoformat(), f"{doc_no} {kind}", "SE-2026.1"))
            line_rows += [(n, i, a, d, c, m) for i, (a, d, c, m) in enumerate(lines, 1)]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO documents (id, doc_no, type, command_key, posted_at, business_date, actor, counterparty)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        documents,
    )
    conn.executemany(
        "INSERT INTO vouchers (id, voucher_no, document_id, date, memo, rule_version) VALUES (?, ?, ?, ?, ?, ?)",
        voucher_rows,
    )
    conn.executemany(
        "INSERT INTO voucher_lines (voucher_id, line_no, account, debit_fen, credit_fen, memo)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        line_rows,
    )
    # Stock standing behind 1405 and 1402, so that the books check has something true to compare.
    inventory, transit = (
        int(conn.execute("SELECT SUM(debit_fen - credit_fen) FROM voucher_lines WHERE account = ?", (a,)).fetchone()[0])
        for a in ("1405", "1402")
    )
    conn.execute(
        "INSERT INTO items (sku, name, base_unit, storage_class)"
        " VALUES ('BENCH', '汇总商品 all goods', 'piece', 'ambient')"
    )
    conn.executemany(
        "INSERT INTO balances (sku, location, lot, qty, value_fen) VALUES ('BENCH', ?, '', 1, ?)",
        [("floor", inventory), ("transit", transit)],
    )
    conn.execute("COMMIT")
    return {"vouchers": len(voucher_rows), "lines": len(line_rows), "documents": len(documents)}


def build(path: Path, vouchers: int, year: int) -> dict[str, int]:
    conn = connect(path, synchronous="NORMAL")
    migrate(conn)
    conn.execute("BEGIN")
    prepare_books(conn, now=datetime(year, 1, 1, tzinfo=UTC))
    add_location(conn, "floor", "卖场", "sales floor", "floor", "ambient")
    add_location(conn, "transit", "在途", "in transit", "transit", "ambient")
    for supplier in SUPPLIERS:
        add_supplier(conn, supplier, f"供应商 {supplier}")
    conn.execute("COMMIT")
    counts = generate(conn, vouchers, year)
    conn.close()
    return counts


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    seconds = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - began)
    return {"best": round(min(seconds), 3), "median": round(statistics.median(seconds), 3)}


def measure(path: Path, year: int, repeat: int) -> dict[str, dict[str, float]]:
    conn = connect(path, readonly=True)
    december, january = f"{year}-12", f"{year}-01"
    checks: dict[str, Callable[[], Any]] = {
        f"trial balance {december}": lambda: books.trial_balance(conn, december),
        f"trial balance {january}": lambda: books.trial_balance(conn, january),
        f"general ledger 1405 {december}": lambda: books.general_ledger(conn, "1405", december),
        f"AP ageing {year}-12-31": lambda: books.ap_ageing(conn, date(year, 12, 31)),
        f"export {december} kingdee csv": lambda: export_vouchers(conn, december, "kingdee", "csv"),
        f"export {december} kingdee xlsx": lambda: export_vouchers(conn, december, "kingdee", "xlsx"),
        "books check": lambda: books.books_check(conn),
    }
    tb = books.trial_balance(conn, december)
    assert tb.balanced, "the generated books must balance"
    assert books.books_check(conn).ok
    results = {name: timed(fn, repeat if "xlsx" not in name else 1) for name, fn in checks.items()}
    conn.close()
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vouchers", type=int, default=300_000)
    parser.add_argument("--year", type=int, default=2026)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db", type=Path, default=None, help="keep the generated database here")
    args = parser.parse_args(argv)
    path = args.db or Path(tempfile.mkdtemp(prefix="storebox-bench-books-")) / "storebox.db"
    if path.exists():
        raise SystemExit(f"{path} exists; give a new path")
    began = time.perf_counter()
    counts = build(path, args.vouchers, args.year)
    generated = round(time.perf_counter() - began, 1)
    with_index = measure(path, args.year, args.repeat)
    conn = connect(path, synchronous="NORMAL")
    began = time.perf_counter()
    conn.executescript(WITHOUT_INDEX)
    indexed_in = round(time.perf_counter() - began, 1)
    conn.close()
    without = measure(path, args.year, args.repeat)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}",
        **counts,
        "db_mb": round(path.stat().st_size / 2**20),
        "generated_s": generated,
        "index_built_s": indexed_in,
        "without_index": without,
        "shipped": with_index,
    }
    print(f"{counts['vouchers']} vouchers, {counts['lines']} lines, {result['db_mb']} MB; {result['machine']}")
    print(f"generated in {generated} s; baseline index swapped in {indexed_in} s\n")
    print("| report | shipped schema: best / median s | baseline (account index only): best / median s | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name in with_index:
        a, b = with_index[name], without[name]
        ratio = round(b["best"] / a["best"], 1) if a["best"] else "-"
        print(f"| {name} | {a['best']} / {a['median']} | {b['best']} / {b['median']} | {ratio} |")
    print("\n" + json.dumps(result, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
