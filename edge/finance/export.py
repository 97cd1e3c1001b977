"""Voucher export (凭证导出): the vouchers of a period in the general-voucher import layouts of Kingdee KIS
(金蝶) and Yonyou (用友), as CSV or XLSX; see docs/books.md for the column mapping.

Amounts are written from fen as exact decimals ("1234.50"), never through float: in CSV as text, in XLSX as
numeric cells whose stored value is that same text (format 0.00). Red-letter figures stay negative on
their own side. The result is bytes; writing a file is the caller's business.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Any, TypeVar

from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]

from edge.finance.books import Period, parse_period
from edge.finance.errors import ExportRefused
from edge.ledger.money import format_yuan

VOUCHER_WORD = "记"  # 凭证字: one general voucher type (记账凭证)
ATTACHMENTS = 1  # 附单据数: the box's document behind each voucher
CURRENCY = "RMB"  # 币别 (Kingdee's code of 人民币)
EXCHANGE_RATE = 1


class Layout(StrEnum):
    KINGDEE = "kingdee"  # 金蝶 KIS 凭证引入
    YONYOU = "yonyou"  # 用友 凭证导入


class ExportFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"


class CsvEncoding(StrEnum):
    UTF8_BOM = "utf-8-sig"  # Excel and current packages open it as UTF-8
    GBK = "gbk"  # older import tools that read only GBK


COLUMNS: dict[Layout, tuple[str, ...]] = {
    Layout.KINGDEE: (
        "日期",
        "凭证字",
        "凭证号",
        "附单据数",
        "摘要",
        "科目代码",
        "科目名称",
        "借方金额",
        "贷方金额",
        "币别",
        "汇率",
        "数量",
        "单价",
        "制单人",
    ),
    Layout.YONYOU: ("日期", "凭证字", "凭证号", "摘要", "科目代码", "借方金额", "贷方金额", "制单人"),
}
AMOUNT_COLUMNS = frozenset({"借方金额", "贷方金额", "单价"})
E = TypeVar("E", bound=StrEnum)
MEDIA_TYPES: dict[ExportFormat, str] = {
    ExportFormat.CSV: "text/csv",
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@dataclass(frozen=True, slots=True)
class ExportLine:
    """One voucher line as every layout needs it."""

    date: date
    number: int  # 凭证号: 1, 2, ... within the period
    voucher_no: str  # the box's own voucher number, for tracing
    summary: str  # 摘要
    account: str
    account_name: str
    debit_fen: int
    credit_fen: int
    actor: str  # 制单人: who posted the document


@dataclass(frozen=True, slots=True)
class ExportFile:
    filename: str
    media_type: str
    content: bytes
    vouchers: int
    lines: int


def export_lines(conn: sqlite3.Connection, period: str | Period) -> list[ExportLine]:
    """The voucher lines of a period, vouchers numbered 1, 2, ... in date order (then posting order)."""
    p = parse_period(period)
    cursor = conn.cursor()
    cursor.row_factory = None  # plain tuples: a busy month is a hundred thousand lines
    rows = cursor.execute(
        "SELECT v.id, v.date, v.voucher_no, v.memo, d.doc_no, d.actor, l.account, a.name, l.debit_fen,"
        " l.credit_fen, l.memo FROM vouchers v CROSS JOIN voucher_lines l ON l.voucher_id = v.id"
        " JOIN documents d ON d.id = v.document_id JOIN accounts a ON a.code = l.account"
        " WHERE v.date >= ? AND v.date < ? ORDER BY v.date, v.id, l.line_no",
        (p.first_day.isoformat(), p.end.isoformat()),
    ).fetchall()
    lines: list[ExportLine] = []
    number = 0
    current: int | None = None
    day_of_voucher = p.first_day
    for voucher_id, day, voucher_no, voucher_memo, doc_no, actor, account, name, debit, credit, memo in rows:
        if voucher_id != current:
            current = voucher_id
            number += 1
            day_of_voucher = date.fromisoformat(day)
        summary = f"{doc_no} {memo}" if memo else voucher_memo
        lines.append(
            ExportLine(
                date=day_of_voucher,
                number=number,
                voucher_no=voucher_no,
                summary=summary,
                account=account,
                account_name=name,
                debit_fen=int(debit),
                credit_fen=int(credit),
                actor=actor,
            )
        )
    return lines


# Yonyou's columns are a subset of Kingdee's: one row of every value, each layout picks its columns.
_PICK: dict[Layout, tuple[int, ...]] = {
    layout: tuple(COLUMNS[Layout.KINGDEE].index(column) for column in COLUMNS[layout]) for layout in Layout
}
_ZERO = format_yuan(0)


def _values(line: ExportLine) -> tuple[date, str, int, int, str, str, str, str, str, str, int, int, str, str]:
    """The Kingdee row of a line; amounts as their exact yuan text."""
    return (
        line.date,
        VOUCHER_WORD,
        line.number,
        ATTACHMENTS,
        line.summary,
        line.account,
        line.account_name,
        format_yuan(line.debit_fen),
        format_yuan(line.credit_fen),
        CURRENCY,
        EXCHANGE_RATE,
        0,  # 数量: vouchers carry no quantities
        _ZERO,  # 单价
        line.actor,
    )


def to_csv(lines: Sequence[ExportLine], layout: Layout, encoding: CsvEncoding = CsvEncoding.UTF8_BOM) -> bytes:
    """CSV with a header row; UTF-8 with BOM by default, or GBK (a character GBK lacks is refused)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(COLUMNS[layout])
    pick = _PICK[layout]
    for line in lines:
        values = _values(line)
        writer.writerow([values[i] for i in pick])  # str(date) is its ISO form
    try:
        return text.getvalue().encode(encoding.value)
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end]
        row = exc.object.count("\n", 0, exc.start)  # 1-based data row (the header is row 0)
        raise ExportRefused(
            f"第 {row} 行含有 GBK 无法表示的字符 {bad!r}，请改用 UTF-8 导出",
            f"row {row} holds {bad!r}, which GBK cannot encode; export as UTF-8 instead",
            row=row,
            encoding=encoding.value,
        ) from None


def _amount_cell(sheet: Any, text: str) -> Any:
    # A numeric cell whose stored value is the exact decimal text: openpyxl would print a Decimal through
    # float with 16 digits ("0.07" -> 0.07000000000000001), so the text is set and the type made numeric.
    cell = WriteOnlyCell(sheet, value=text)
    cell.data_type = "n"
    cell.number_format = "0.00"
    return cell


def to_xlsx(lines: Sequence[ExportLine], layout: Layout) -> bytes:
    """One sheet 凭证 with a header row; dates as dates, amounts as exact numbers with format 0.00."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("凭证")
    sheet.append(list(COLUMNS[layout]))
    columns = COLUMNS[layout]
    pick = _PICK[layout]
    for line in lines:
        values = _values(line)
        row: list[Any] = []
        for column, i in zip(columns, pick, strict=True):
            value = values[i]
            if isinstance(value, date):
                cell = WriteOnlyCell(sheet, value=value)
                cell.number_format = "yyyy-mm-dd"
                row.append(cell)
            elif column in AMOUNT_COLUMNS:
                row.append(_amount_cell(sheet, str(value)))
            else:
                row.append(value)
        sheet.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def parse_choice(kind: type[E], value: str | E, field: str) -> E:
    """A layout, format or encoding by name; anything else is refused naming the allowed values."""
    try:
        return kind(value)
    except ValueError:
        allowed = [e.value for e in kind]
        shown = repr(value)[:40]
        raise ExportRefused(
            f"{field} 无效: {shown}，允许: {', '.join(allowed)}",
            f"invalid {field} {shown}; allowed: {', '.join(allowed)}",
            field=field,
            allowed=allowed,
        ) from None


def export_vouchers(
    conn: sqlite3.Connection,
    period: str | Period,
    layout: str | Layout,
    fmt: str | ExportFormat,
    encoding: str | CsvEncoding = CsvEncoding.UTF8_BOM,
) -> ExportFile:
    """The vouchers of a period as a file in the chosen layout and format."""
    p = parse_period(period)
    chosen = parse_choice(Layout, layout, "layout")
    form = parse_choice(ExportFormat, fmt, "format")
    enc = parse_choice(CsvEncoding, encoding, "encoding")
    lines = export_lines(conn, p)
    content = to_csv(lines, chosen, enc) if form is ExportFormat.CSV else to_xlsx(lines, chosen)
    media_type = MEDIA_TYPES[form]
    if form is ExportFormat.CSV:
        media_type += "; charset=" + ("utf-8" if enc is CsvEncoding.UTF8_BOM else "gbk")
    return ExportFile(
        filename=f"vouchers-{p.label}-{chosen.value}.{form.value}",
        media_type=media_type,
        content=content,
        vouchers=len({line.voucher_no for line in lines}),
        lines=len(lines),
    )
