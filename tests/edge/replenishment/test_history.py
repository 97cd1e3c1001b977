"""Sales history import: the CSV parser on good files, bad rows by line, and garbage bytes."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.replenishment.errors import HistoryInvalid
from edge.replenishment.history import import_history_file, parse_history_csv
from edge.replenishment.plan_data import epoch_day
from tests.edge.replenishment.test_planner import NOW, TODAY, db, template

__all__ = ["db", "template"]  # fixtures


def test_a_good_file_parses_with_a_bom_and_any_column_order() -> None:
    data = "\ufeffdate,qty,sku,location\r\n2024-05-30,12,COLA,floor\r\n2024-05-31,-1,COLA,floor\r\n\r\n".encode()
    parsed = parse_history_csv(data, TODAY)
    assert [(r.sku, r.location, r.day, r.qty, r.line) for r in parsed.rows] == [
        ("COLA", "floor", date(2024, 5, 30), 12, 2),
        ("COLA", "floor", date(2024, 5, 31), -1, 3),
    ]


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("sku,location,qty\nCOLA,floor,1\n", 1, "header"),
        ("sku,location,date,qty\nCOLA,floor,2024-05-01,1.5\n", 2, "qty"),
        ("sku,location,date,qty\nCOLA,floor,01/05/2024,1\n", 2, "date"),
        ("sku,location,date,qty\nCOLA,floor,2024-06-01,1\n", 2, "date"),  # today is not history yet
        ("sku,location,date,qty\nCOLA,floor,2024-05-01,1\nCOLA,floor,2024-05-01,2\n", 3, "date"),
        ("sku,location,date,qty\nCOLA,floor\n", 2, "row"),
        ("sku,location,date,qty\n", 2, "file"),
        ("", 1, "file"),
    ],
)
def test_bad_files_are_refused_naming_the_line_and_field(text: str, line: int, field: str) -> None:
    with pytest.raises(HistoryInvalid) as refused:
        parse_history_csv(text.encode(), TODAY)
    problem = refused.value.detail["problems"][0]
    assert (problem["line"], problem["field"]) == (line, field)
    assert refused.value.message and refused.value.message_en


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_garbage_bytes_parse_or_are_refused_cleanly(data: bytes) -> None:
    try:
        parsed = parse_history_csv(data, TODAY)
    except HistoryInvalid as refused:
        assert refused.detail["problems"] and len(refused.detail["problems"]) <= 20
    else:
        assert parsed.rows


cells = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)


@given(st.lists(st.tuples(cells, cells, cells, cells), max_size=8))
@settings(max_examples=200, deadline=None)
def test_garbage_rows_under_a_good_header_parse_or_are_refused_cleanly(rows: list[tuple[str, ...]]) -> None:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["sku", "location", "date", "qty"])
    writer.writerows(rows)
    try:
        parsed = parse_history_csv(out.getvalue().encode(), TODAY)
    except HistoryInvalid as refused:
        assert all(p["line"] >= 1 for p in refused.detail["problems"])
    else:
        assert all(-10_000_000 <= r.qty <= 10_000_000 and r.day < TODAY for r in parsed.rows)


def test_unknown_items_and_transit_are_refused_and_a_day_imported_again_is_replaced(db: sqlite3.Connection) -> None:
    db.execute("BEGIN")
    with pytest.raises(HistoryInvalid) as refused:
        import_history_file(
            db, b"sku,location,date,qty\nNOPE,floor,2024-05-01,1\nCOLA,transit,2024-05-01,1\n", "x", "t", NOW, TODAY
        )
    db.execute("ROLLBACK")
    assert [p["field"] for p in refused.value.detail["problems"]] == ["sku", "location"]
    day = TODAY - timedelta(days=2)
    for qty in (5, 9):
        db.execute("BEGIN")
        result = import_history_file(
            db, f"sku,location,date,qty\nCOLA,floor,{day},{qty}\n".encode(), "x", "t", NOW, TODAY
        )
        db.execute("COMMIT")
        assert result["rows"] == 1 and result["series"] == 1
    rows = db.execute("SELECT day, qty FROM sales_history").fetchall()
    assert [tuple(r) for r in rows] == [(epoch_day(day), 9)]
    assert db.execute("SELECT COUNT(*) FROM sales_daily").fetchone()[0] == 0  # apart from ledger sales
