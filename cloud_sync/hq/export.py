"""CSV and XLSX exports of an HQ query's whole result, streamed: rows are read in chunks and never all held.

CSV is UTF-8 with a BOM so that Excel opens Chinese right; XLSX is written by openpyxl in write-only mode into a
spooled temporary file. Header cells are "中文 English"; amounts are yuan with two decimals made from integer fen
by text (edge.ledger.money.format_yuan), never through a float.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from openpyxl import Workbook  # type: ignore[import-untyped]
from openpyxl.cell import WriteOnlyCell  # type: ignore[import-untyped]

from edge.ledger.money import format_yuan

CHUNK_ROWS = 2000
XLSX_MAX_ROWS = 1_048_575  # Excel's sheet limit less the header; a bigger result continues on the next sheet
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class Kind(Enum):
    TEXT = "text"
    INT = "int"
    FEN = "fen"  # integer fen, exported as yuan with 2 decimals


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    zh: str
    en: str
    kind: Kind = Kind.TEXT

    @property
    def header(self) -> str:
        return f"{self.zh} {self.en}"


def _text(column: Column, value: Any) -> str:
    if value is None:
        return ""
    if column.kind is Kind.FEN:
        return format_yuan(int(value))
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value)


def csv_chunks(columns: tuple[Column, ...], rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """The CSV bytes of `rows` in chunks, the first one starting with the UTF-8 BOM and the header."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow([c.header for c in columns])
    for count, row in enumerate(rows, start=1):
        writer.writerow([_text(c, row.get(c.key)) for c in columns])
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _amount_cell(sheet: Any, fen: int) -> Any:
    # The stored value is the exact decimal text: openpyxl would print a float or Decimal with 16 digits.
    cell = WriteOnlyCell(sheet, value=format_yuan(fen))
    cell.data_type = "n"
    cell.number_format = "0.00"
    return cell


def _xlsx_value(sheet: Any, column: Column, value: Any) -> Any:
    if value is None:
        return None
    if column.kind is Kind.FEN:
        return _amount_cell(sheet, int(value))
    if column.kind is Kind.INT:
        return int(value)
    if isinstance(value, bool):
        return "是" if value else "否"
    return str(value)


def xlsx_file(columns: tuple[Column, ...], rows: Iterable[dict[str, Any]], title: str) -> Any:
    """A spooled temporary file holding the workbook (rewound); the caller closes it."""
    workbook = Workbook(write_only=True)
    headers = [c.header for c in columns]
    sheet: Any = None
    written = XLSX_MAX_ROWS
    sheets = 0
    for row in rows:
        if written >= XLSX_MAX_ROWS:
            sheets += 1
            sheet = workbook.create_sheet(title if sheets == 1 else f"{title} {sheets}")
            sheet.append(headers)
            written = 0
        sheet.append([_xlsx_value(sheet, c, row.get(c.key)) for c in columns])
        written += 1
    if sheet is None:
        workbook.create_sheet(title).append(headers)
    out = tempfile.SpooledTemporaryFile(max_size=16 * 2**20)  # noqa: SIM115 (the response closes it)
    workbook.save(out)
    out.seek(0)
    return out


def file_chunks(handle: Any, size: int = 256 * 1024) -> Iterator[bytes]:
    """Read an open file to its end in chunks, then close it."""
    try:
        while chunk := handle.read(size):
            yield chunk
    finally:
        handle.close()
