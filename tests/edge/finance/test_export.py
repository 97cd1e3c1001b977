"""Voucher export: Kingdee KIS and Yonyou general-voucher layouts, CSV and XLSX, amounts exact to the fen."""

from __future__ import annotations

import csv
import io
import sqlite3
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree

import openpyxl  # type: ignore[import-untyped]
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.finance.errors import ExportRefused, InvalidPeriod
from edge.finance.export import (
    COLUMNS,
    CsvEncoding,
    ExportLine,
    Layout,
    export_lines,
    export_vouchers,
    to_csv,
    to_xlsx,
)
from edge.ledger.commands import DocType, Line, PostDocument
from edge.ledger.money import format_yuan, parse_yuan
from tests.edge.finance.books_sample import open_sample, post_ok, receipt

KINGDEE = [
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
]
YONYOU = ["日期", "凭证字", "凭证号", "摘要", "科目代码", "借方金额", "贷方金额", "制单人"]
SHEET_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"


@pytest.fixture
def sample(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = open_sample(tmp_path / "books.db")
    yield conn
    conn.close()


def db_lines(conn: sqlite3.Connection, period: str) -> list[tuple[str, str, int, int, str]]:
    """(date, account, debit, credit, actor) of the period's voucher lines, straight from the tables."""
    return [
        (r[0], r[1], int(r[2]), int(r[3]), r[4])
        for r in conn.execute(
            "SELECT v.date, l.account, l.debit_fen, l.credit_fen, d.actor FROM vouchers v"
            " JOIN voucher_lines l ON l.voucher_id = v.id JOIN documents d ON d.id = v.document_id"
            " WHERE substr(v.date, 1, 7) = ? ORDER BY v.date, v.id, l.line_no",
            (period,),
        )
    ]


def read_csv(content: bytes, encoding: str = "utf-8-sig") -> list[list[str]]:
    return list(csv.reader(io.StringIO(content.decode(encoding), newline="")))


def raw_cells(content: bytes) -> dict[str, tuple[str | None, str | None]]:
    """Cell reference -> (type attribute, stored <v> text) of the first sheet, as written in the file."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        root = ElementTree.fromstring(archive.read("xl/worksheets/sheet1.xml"))
    cells = {}
    for cell in root.iter(f"{SHEET_NS}c"):
        value = cell.find(f"{SHEET_NS}v")
        cells[cell.attrib["r"]] = (cell.attrib.get("t"), None if value is None else value.text)
    return cells


def test_kingdee_csv_has_every_column_and_one_row_per_voucher_line(sample: sqlite3.Connection) -> None:
    exported = export_vouchers(sample, "2026-11", "kingdee", "csv")
    assert exported.content.startswith(b"\xef\xbb\xbf"), "UTF-8 with BOM, so that Excel opens it"
    assert exported.filename == "vouchers-2026-11-kingdee.csv"
    assert exported.media_type == "text/csv; charset=utf-8"
    header, *rows = read_csv(exported.content)
    assert header == KINGDEE == list(COLUMNS[Layout.KINGDEE])
    expected = db_lines(sample, "2026-11")
    assert (exported.vouchers, exported.lines, len(rows)) == (4, 12, 12)
    for row, (day, account, debit, credit, actor) in zip(rows, expected, strict=True):
        cells = dict(zip(KINGDEE, row, strict=True))
        assert (cells["日期"], cells["科目代码"], cells["制单人"]) == (day, account, actor)
        assert (parse_yuan(cells["借方金额"]), parse_yuan(cells["贷方金额"])) == (debit, credit)
        assert (cells["凭证字"], cells["附单据数"], cells["币别"], cells["汇率"], cells["数量"], cells["单价"]) == (
            "记",
            "1",
            "RMB",
            "1",
            "0",
            "0.00",
        )
    assert [r[2] for r in rows] == ["1"] * 5 + ["2"] * 2 + ["3"] * 2 + ["4"] * 3
    sale = dict(zip(KINGDEE, rows[0], strict=True))
    assert sale["摘要"].startswith("SA20261105-") and sale["摘要"].endswith("销售收款 sales takings")
    assert (sale["科目名称"], sale["借方金额"], sale["贷方金额"]) == ("其他货币资金", "30.00", "0.00")
    # The credit note (红字发票) is printed red-letter: negative figures on their own side.
    credit_note = [dict(zip(KINGDEE, r, strict=True)) for r in rows[9:]]
    assert [(c["科目代码"], c["借方金额"], c["贷方金额"]) for c in credit_note] == [
        ("220202", "-4.00", "0.00"),
        ("22210101", "-0.52", "0.00"),
        ("220201", "0.00", "-4.52"),
    ]


def test_yonyou_csv_has_its_eight_columns(sample: sqlite3.Connection) -> None:
    header, *rows = read_csv(export_vouchers(sample, "2026-10", "yonyou", "csv").content)
    assert header == YONYOU
    summary = YONYOU.index("摘要")
    assert [r[:summary] + r[summary + 1 :] for r in rows] == [
        ["2026-10-05", "记", "1", "1405", "200.00", "0.00", "system"],
        ["2026-10-05", "记", "1", "220202", "0.00", "200.00", "system"],
        ["2026-10-06", "记", "2", "220202", "200.00", "0.00", "会计小王"],
        ["2026-10-06", "记", "2", "22210101", "26.00", "0.00", "会计小王"],
        ["2026-10-06", "记", "2", "220201", "0.00", "226.00", "会计小王"],
    ]
    assert rows[0][summary].startswith("RC20261005-") and "采购入库" in rows[0][summary]


def test_vouchers_are_numbered_in_date_order_within_their_period(sample: sqlite3.Connection) -> None:
    post_ok(sample, receipt("late-entry", 1), date(2026, 11, 1))  # posted last, dated first
    lines = export_lines(sample, "2026-11")
    assert [(ln.number, ln.date) for ln in lines][:2] == [(1, date(2026, 11, 1)), (1, date(2026, 11, 1))]
    assert sorted({ln.number for ln in lines}) == [1, 2, 3, 4, 5]
    assert [ln.date for ln in lines] == sorted(ln.date for ln in lines)
    assert export_lines(sample, "2026-10")[0].number == 1, "numbering starts again each period"


def test_xlsx_reads_back_with_exact_amounts_numeric_cells_and_dates(sample: sqlite3.Connection) -> None:
    exported = export_vouchers(sample, "2026-11", "kingdee", "xlsx")
    assert exported.filename == "vouchers-2026-11-kingdee.xlsx" and exported.media_type.endswith(".sheet")
    sheet = openpyxl.load_workbook(io.BytesIO(exported.content)).active
    rows = list(sheet.iter_rows())
    assert [c.value for c in rows[0]] == KINGDEE
    expected = db_lines(sample, "2026-11")
    assert len(rows) == 1 + len(expected)
    for cells, (day, account, debit, credit, actor) in zip(rows[1:], expected, strict=True):
        by_name = dict(zip(KINGDEE, cells, strict=True))
        assert by_name["日期"].value == datetime.fromisoformat(day) and by_name["日期"].is_date
        assert (by_name["科目代码"].value, by_name["制单人"].value) == (account, actor)
        for column, fen in (("借方金额", debit), ("贷方金额", credit)):
            cell = by_name[column]
            assert cell.data_type == "n" and cell.number_format == "0.00"
            assert Decimal(str(cell.value)) == Decimal(format_yuan(fen))
        assert isinstance(by_name["凭证号"].value, int) and by_name["凭证号"].data_type == "n"
        assert (by_name["凭证字"].value, by_name["附单据数"].value, by_name["汇率"].value) == ("记", 1, 1)
    raw = raw_cells(exported.content)
    # In the file itself each amount is the exact decimal text, red-letter ones negative.
    assert [raw[f"H{i}"][1] for i in range(2, len(rows) + 1)] == [format_yuan(e[2]) for e in expected]
    assert [raw[f"I{i}"][1] for i in range(2, len(rows) + 1)] == [format_yuan(e[3]) for e in expected]
    assert all(raw[f"H{i}"][0] == "n" for i in range(2, len(rows) + 1))
    assert "-4.52" in [raw[f"I{i}"][1] for i in range(2, len(rows) + 1)]


def test_yonyou_xlsx_has_its_eight_columns(sample: sqlite3.Connection) -> None:
    content = export_vouchers(sample, "2026-11", "yonyou", "xlsx").content
    rows = list(openpyxl.load_workbook(io.BytesIO(content)).active.iter_rows(values_only=True))
    assert list(rows[0]) == YONYOU and len(rows) == 13 and all(len(r) == 8 for r in rows)


def test_an_empty_period_exports_the_header_only(sample: sqlite3.Connection) -> None:
    assert read_csv(export_vouchers(sample, "2025-01", "kingdee", "csv").content) == [KINGDEE]
    content = export_vouchers(sample, "2025-01", "yonyou", "xlsx").content
    assert list(openpyxl.load_workbook(io.BytesIO(content)).active.iter_rows(values_only=True)) == [tuple(YONYOU)]


def test_gbk_csv_for_older_import_tools_and_a_character_gbk_lacks_is_refused(sample: sqlite3.Connection) -> None:
    exported = export_vouchers(sample, "2026-10", "kingdee", "csv", "gbk")
    assert exported.media_type == "text/csv; charset=gbk" and not exported.content.startswith(b"\xef\xbb\xbf")
    assert read_csv(exported.content, "gbk") == read_csv(export_vouchers(sample, "2026-10", "kingdee", "csv").content)
    post_ok(
        sample,
        PostDocument("emoji", DocType.RECEIPT, (Line("A1", 1, price_fen=226),), counterparty="sup1", actor="店长😀"),
        date(2026, 10, 20),
    )
    with pytest.raises(ExportRefused) as caught:
        export_vouchers(sample, "2026-10", "kingdee", "csv", "gbk")
    assert caught.value.detail["row"] == 6 and "GBK" in caught.value.message and "UTF-8" in caught.value.message_en
    assert "店长😀" in read_csv(export_vouchers(sample, "2026-10", "kingdee", "csv").content)[6]


@pytest.mark.parametrize(
    ("args", "error", "field"),
    [
        (("2026-11", "sap", "csv"), ExportRefused, "layout"),
        (("2026-11", "kingdee", "pdf"), ExportRefused, "format"),
        (("2026-11", "kingdee", "csv", "latin-1"), ExportRefused, "encoding"),
        (("11/2026", "kingdee", "csv"), InvalidPeriod, "period"),
    ],
)
def test_bad_export_arguments_are_refused_naming_the_field(
    sample: sqlite3.Connection, args: tuple[str, ...], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as caught:
        export_vouchers(sample, *args)
    assert caught.value.detail["field"] == field  # type: ignore[attr-defined]


AMOUNTS = st.integers(-(10**13), 10**13) | st.sampled_from([0, 1, 7, 56, 69, 81, 94, -7, 10**13, 123456789012])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(AMOUNTS, AMOUNTS), min_size=1, max_size=20))
def test_every_amount_is_written_exactly_in_both_formats(amounts: list[tuple[int, int]]) -> None:
    lines = [
        ExportLine(date(2026, 11, 1), i, f"记-{i}", "摘要", "1405", "库存商品", debit, credit, "会计")
        for i, (debit, credit) in enumerate(amounts, 1)
    ]
    for layout, debit_col, credit_col in ((Layout.KINGDEE, "H", "I"), (Layout.YONYOU, "F", "G")):
        names = list(COLUMNS[layout])
        rows = read_csv(to_csv(lines, layout))[1:]
        got = [(parse_yuan(r[names.index("借方金额")]), parse_yuan(r[names.index("贷方金额")])) for r in rows]
        assert got == amounts
        assert read_csv(to_csv(lines, layout, CsvEncoding.GBK), "gbk")[1:] == rows
        content = to_xlsx(lines, layout)
        raw = raw_cells(content)
        for i, (debit, credit) in enumerate(amounts, 2):
            assert raw[f"{debit_col}{i}"] == ("n", format_yuan(debit))
            assert raw[f"{credit_col}{i}"] == ("n", format_yuan(credit))
        values = list(openpyxl.load_workbook(io.BytesIO(content)).active.iter_rows(min_row=2, values_only=True))
        read = [
            (
                parse_yuan(str(Decimal(str(v[names.index("借方金额")])).quantize(Decimal("0.01")))),
                parse_yuan(str(Decimal(str(v[names.index("贷方金额")])).quantize(Decimal("0.01")))),
            )
            for v in values
        ]
        assert read == amounts
