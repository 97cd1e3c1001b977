"""Sales history from a previous system (历史销量导入): daily sales per item and location, CSV.

Format (UTF-8, a BOM is fine, comma separated, header row required, docs/replenishment.md):

    sku,location,date,qty
    DR0001,floor,2026-09-01,24

`qty` is the day's net sales in the item's base unit (an integer, negative for a day of net returns). The file is
checked as a whole: a bad row refuses it, naming up to 20 problems by line. Imported days are kept apart from the
ledger's sales (table sales_history) and summed with them when the plan reads; importing the same item, location
and day again replaces that day's figure, so a corrected file can be imported over the first.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from edge.replenishment.errors import HistoryInvalid, SuggestionKeyReused
from edge.replenishment.plan_data import epoch_day

COLUMNS = ("sku", "location", "date", "qty")
MAX_ROWS = 2_000_000
MAX_QTY = 10_000_000
MAX_PROBLEMS = 20
MAX_YEARS_BACK = 5


@dataclass(frozen=True, slots=True)
class HistoryRow:
    line: int
    sku: str
    location: str
    day: date
    qty: int


@dataclass(frozen=True, slots=True)
class ParsedHistory:
    rows: tuple[HistoryRow, ...]
    sha256: str


def _problem(line: int, field: str, message: str, message_en: str) -> dict[str, Any]:
    return {"line": line, "field": field, "message": message, "message_en": message_en}


def _refuse(problems: list[dict[str, Any]]) -> HistoryInvalid:
    first = problems[0]
    more = f" (另有 {len(problems) - 1} 处)" if len(problems) > 1 else ""
    more_en = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return HistoryInvalid(
        f"历史销量文件第 {first['line']} 行: {first['message']}{more}",
        f"sales history line {first['line']}: {first['message_en']}{more_en}",
        problems=problems[:MAX_PROBLEMS],
    )


def parse_history_csv(data: bytes, today: date) -> ParsedHistory:
    """Parse and check the file's own content (dates, quantities, columns); refuse it with its problems."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _refuse([_problem(1, "file", "文件不是 UTF-8 编码", f"the file is not UTF-8 ({exc.reason})")]) from None
    if "\x00" in text:
        raise _refuse([_problem(1, "file", "文件含有二进制内容", "the file contains binary data")])
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise _refuse([_problem(1, "file", "CSV 格式错误", f"not valid CSV: {exc}")]) from None
    if header is None:
        raise _refuse([_problem(1, "file", "文件为空", "the file is empty")])
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    if missing:
        raise _refuse(
            [
                _problem(
                    1,
                    "header",
                    f"缺少列: {', '.join(missing)} (须有 {', '.join(COLUMNS)})",
                    f"missing columns: {', '.join(missing)} (need {', '.join(COLUMNS)})",
                )
            ]
        )
    index = {c: names.index(c) for c in COLUMNS}
    earliest = date(today.year - MAX_YEARS_BACK, 1, 1)
    rows: list[HistoryRow] = []
    problems: list[dict[str, Any]] = []
    seen: dict[tuple[str, str, date], int] = {}
    line = 1
    try:
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if len(rows) >= MAX_ROWS:
                problems.append(_problem(line, "file", f"最多 {MAX_ROWS} 行", f"at most {MAX_ROWS} rows"))
                break
            row = _row(record, index, line, earliest, today, problems)
            if row is None:
                if len(problems) >= MAX_PROBLEMS:
                    break
                continue
            key = (row.sku, row.location, row.day)
            if key in seen:
                problems.append(
                    _problem(
                        line,
                        "date",
                        f"与第 {seen[key]} 行重复 (同一商品、库位、日期)",
                        f"repeats line {seen[key]} (same item, location and date)",
                    )
                )
                continue
            seen[key] = line
            rows.append(row)
    except csv.Error as exc:
        problems.append(_problem(line + 1, "file", "CSV 格式错误", f"not valid CSV: {exc}"))
    if problems:
        raise _refuse(problems)
    if not rows:
        raise _refuse([_problem(2, "file", "文件没有数据行", "the file has no data rows")])
    return ParsedHistory(tuple(rows), hashlib.sha256(data).hexdigest())


def _row(
    record: list[str],
    index: dict[str, int],
    line: int,
    earliest: date,
    today: date,
    problems: list[dict[str, Any]],
) -> HistoryRow | None:
    if len(record) <= max(index.values()):
        problems.append(_problem(line, "row", "列数不足", "too few columns"))
        return None
    sku = record[index["sku"]].strip()
    location = record[index["location"]].strip()
    day_text = record[index["date"]].strip()
    qty_text = record[index["qty"]].strip()
    ok = True
    if not sku or len(sku) > 64:
        problems.append(_problem(line, "sku", "商品编码无效", "the sku must be 1..64 characters"))
        ok = False
    if not location or len(location) > 64:
        problems.append(_problem(line, "location", "库位编码无效", "the location must be 1..64 characters"))
        ok = False
    day: date | None = None
    try:
        day = date.fromisoformat(day_text)
        if len(day_text) != 10:
            raise ValueError(day_text)
    except ValueError:
        problems.append(_problem(line, "date", "日期须为 YYYY-MM-DD", "the date must be YYYY-MM-DD"))
        ok = False
    if day is not None and not earliest <= day < today:
        problems.append(
            _problem(
                line,
                "date",
                f"日期须在 {earliest.isoformat()} 到今天之前",
                f"the date must be from {earliest.isoformat()} to yesterday",
            )
        )
        ok = False
    try:
        qty = int(qty_text, 10)
        if not -MAX_QTY <= qty <= MAX_QTY:
            raise ValueError(qty_text)
    except ValueError:
        problems.append(
            _problem(
                line, "qty", f"数量须为 ±{MAX_QTY} 以内的整数 (基本单位)", f"qty must be an integer within ±{MAX_QTY}"
            )
        )
        ok = False
    if not ok or day is None:
        return None
    return HistoryRow(line, sku, location, day, qty)


def import_history(
    conn: sqlite3.Connection, parsed: ParsedHistory, source: str, actor: str, now: datetime, key: str | None = None
) -> dict[str, Any]:
    """Check items and locations and write the rows (in the caller's transaction); returns what was imported.
    With a `key`, the same file under the same key again answers the first import (`replayed`)."""
    if key is not None:
        previous = conn.execute("SELECT * FROM history_imports WHERE command_key = ?", (key,)).fetchone()
        if previous is not None:
            if previous["sha256"] != parsed.sha256:
                raise SuggestionKeyReused(
                    "此 Idempotency-Key 已用于导入另一个文件，请换一个键",
                    "this Idempotency-Key was used to import a different file; use a new key",
                    key=key,
                )
            return {**_summary(previous), "replayed": True}
    skus = {r[0] for r in conn.execute("SELECT sku FROM items")}
    locations = {r[0]: r[1] for r in conn.execute("SELECT code, kind FROM locations")}
    problems: list[dict[str, Any]] = []
    for row in parsed.rows:
        if row.sku not in skus:
            problems.append(_problem(row.line, "sku", f"未知商品: {row.sku}", f"unknown item: {row.sku}"))
        if locations.get(row.location, "transit") == "transit":
            problems.append(
                _problem(
                    row.line,
                    "location",
                    f"未知库位或在途库位: {row.location}",
                    f"unknown or in-transit location: {row.location}",
                )
            )
        if len(problems) >= MAX_PROBLEMS:
            break
    if problems:
        raise _refuse(problems)
    pairs = sorted({(r.sku, r.location) for r in parsed.rows})
    conn.executemany("INSERT OR IGNORE INTO plan_series (sku, location) VALUES (?, ?)", pairs)
    series = {
        (r[1], r[2]): int(r[0])
        for r in conn.execute(
            "SELECT id, sku, location FROM plan_series WHERE sku IN (SELECT value FROM json_each(?))",
            (json.dumps(sorted({p[0] for p in pairs})),),
        )
    }
    conn.executemany(
        "INSERT INTO sales_history (series, day, qty) VALUES (?, ?, ?)"
        " ON CONFLICT (series, day) DO UPDATE SET qty = excluded.qty",
        [(series[(r.sku, r.location)], epoch_day(r.day), r.qty) for r in parsed.rows],
    )
    first = min(r.day for r in parsed.rows).isoformat()
    last = max(r.day for r in parsed.rows).isoformat()
    cursor = conn.execute(
        "INSERT INTO history_imports (source, sha256, rows, first_day, last_day, imported_at, imported_by,"
        " command_key) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (source[:200], parsed.sha256, len(parsed.rows), first, last, now.isoformat(), actor, key),
    )
    row = conn.execute("SELECT * FROM history_imports WHERE id = ?", (cursor.lastrowid,)).fetchone()
    return {**_summary(row), "series": len(pairs), "replayed": False}


def _summary(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "source": row["source"],
        "rows": int(row["rows"]),
        "series": None,
        "first_day": row["first_day"],
        "last_day": row["last_day"],
        "sha256": row["sha256"],
        "imported_at": row["imported_at"],
        "imported_by": row["imported_by"],
    }


def import_history_file(
    conn: sqlite3.Connection,
    data: bytes,
    source: str,
    actor: str,
    now: datetime,
    today: date,
    key: str | None = None,
) -> dict[str, Any]:
    """Parse and import in one call (for the writer: one job)."""
    return import_history(conn, parse_history_csv(data, today), source, actor, now, key)


def daily_sales(conn: sqlite3.Connection, sku: str, first: date, last: date) -> list[dict[str, Any]]:
    """Net sales of one item per business day from `first` to `last` (both included), every location summed: the
    ledger's sales (sales_daily) plus imported history, as the plan reads them. Days without sales answer 0."""
    start, end = epoch_day(first), epoch_day(last)
    by_day = dict.fromkeys(range(start, end + 1), 0)
    for day, qty in conn.execute(
        "SELECT day, SUM(qty) FROM (SELECT series, day, qty FROM sales_daily UNION ALL"
        " SELECT series, day, qty FROM sales_history) t JOIN plan_series s ON s.id = t.series"
        " WHERE s.sku = ? AND t.day BETWEEN ? AND ? GROUP BY t.day",
        (sku, start, end),
    ):
        by_day[int(day)] = int(qty)
    return [{"date": (first + timedelta(days=day - start)).isoformat(), "qty": qty} for day, qty in by_day.items()]
