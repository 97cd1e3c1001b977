"""Exports: exact yuan from fen, chunked CSV with a BOM, XLSX continued on a new sheet past the row limit, and a
large result exported whole from the database."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from decimal import Decimal

import openpyxl  # type: ignore[import-untyped]
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloud_sync.hq import export
from cloud_sync.hq.export import Column, Kind, csv_chunks, xlsx_file
from cloud_sync.tables import sales_daily
from edge.ledger.money import parse_yuan
from tests.cloud_sync.hq.seed import HqClient, build_chain

COLUMNS = (
    Column("name", "名称", "Name"),
    Column("n", "数量", "Qty", Kind.INT),
    Column("fen", "金额", "Amount", Kind.FEN),
)


@given(st.lists(st.integers(-(10**15), 10**15), max_size=30))
def test_csv_amounts_are_the_exact_fen(values: list[int]) -> None:
    data = b"".join(csv_chunks(COLUMNS, ({"name": "货", "n": 1, "fen": v} for v in values)))
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0] == ["名称 Name", "数量 Qty", "金额 Amount"]
    assert [int(Decimal(r[2]) * 100) for r in rows[1:]] == values
    assert all(r[2].count(".") == 1 and len(r[2].split(".")[1]) == 2 for r in rows[1:])


def test_csv_comes_in_chunks() -> None:
    chunks = list(csv_chunks(COLUMNS, ({"name": str(i), "n": i, "fen": i} for i in range(5000))))
    assert len(chunks) >= 3
    assert len(b"".join(chunks).decode("utf-8-sig").splitlines()) == 5001


def test_xlsx_continues_on_a_new_sheet_past_the_row_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "XLSX_MAX_ROWS", 3)
    handle = xlsx_file(COLUMNS, ({"name": "x", "n": i, "fen": 7} for i in range(7)), "sales")
    book = openpyxl.load_workbook(io.BytesIO(handle.read()), read_only=True)
    handle.close()
    assert book.sheetnames == ["sales", "sales 2", "sales 3"]
    counts = [list(ws.iter_rows(values_only=True)) for ws in book.worksheets]
    assert [len(rows) - 1 for rows in counts] == [3, 3, 1]
    assert all(rows[0] == ("名称 Name", "数量 Qty", "金额 Amount") for rows in counts)
    assert counts[0][1] == ("x", 0, 0.07)


@pytest.fixture
def big(cloud_db_url: str) -> Iterator[HqClient]:
    app, token = build_chain(cloud_db_url)
    rows = [
        {
            "store": "s2",
            "day": f"2025-{m:02d}-{d:02d}",
            "sku": f"SKU{k}",
            "qty": 1,
            "gross_fen": k + d,
            "tax_fen": 1,
            "cost_fen": 3,
        }
        for m in range(1, 13)
        for d in range(1, 29)
        for k in range(15)
    ]
    with app.state.engine.begin() as conn:
        conn.execute(sales_daily.insert(), rows)
    yield HqClient(app, token)
    app.state.engine.dispose()


def test_large_result_exports_whole_and_sums_to_the_fen(big: HqClient) -> None:
    params = {"group_by": "store,day,sku", "store": "s2", "from": "2025-01-01", "to": "2025-12-31"}
    expected_gross = sum(k + d for _ in range(12) for d in range(1, 29) for k in range(15))
    page = big.get("/api/v1/hq/sales", params={**params, "limit": 10000}).json()
    assert page["total"] == 12 * 28 * 15 == len(page["items"]) and page["next_offset"] is None
    csv_rows = list(csv.reader(io.StringIO(big.get("/api/v1/hq/sales", params={**params, "format": "csv"}).text)))
    assert len(csv_rows) == 1 + 5040
    assert sum(parse_yuan(r[4]) for r in csv_rows[1:]) == expected_gross
    content = big.get("/api/v1/hq/sales", params={**params, "format": "xlsx"}).content
    sheet = openpyxl.load_workbook(io.BytesIO(content), read_only=True).worksheets[0]
    values = list(sheet.iter_rows(min_row=2, values_only=True))
    assert len(values) == 5040
    assert sum(round(v[4] * 100) for v in values) == expected_gross
