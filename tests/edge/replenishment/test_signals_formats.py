"""The signal parsers against garbage: any bytes, any JSON, any CSV row either parse or are refused with a
clear InvalidSignal naming where; valid records written as CSV read back the same."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.replenishment.errors import InvalidSignal, SignalImportTooLarge
from edge.replenishment.signal_formats import CSV_COLUMNS, KINDS, parse_signal_file, validate_records

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def _field_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.integers(-1000, 1000),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(["2026-12-05", "2026-13-40", "S1", "drinks", "折扣", "meituan", "2026-12-05T10:00:00+08:00"]),
        st.lists(st.dictionaries(st.sampled_from(["sku", "qty", "x"]), st.integers(-5, 5) | st.text(max_size=3))),
    )


def _check_refusal(err: InvalidSignal) -> None:
    assert err.code == "invalid_signal"
    assert err.message and err.message_en
    assert "kind" in err.detail


@SETTINGS
@given(kind=st.sampled_from(KINDS), data=st.binary(max_size=400))
def test_any_bytes_parse_or_are_refused_clearly(kind: str, data: bytes) -> None:
    try:
        parse_signal_file(kind, data)
    except InvalidSignal as err:
        _check_refusal(err)
    except SignalImportTooLarge:
        raise AssertionError("400 bytes are not too large") from None


@SETTINGS
@given(kind=st.sampled_from(KINDS), data=st.lists(json_values, max_size=5), name=st.sampled_from(["x.json", None]))
def test_any_json_parses_or_is_refused_clearly(kind: str, data: list[Any], name: str | None) -> None:
    try:
        parse_signal_file(kind, json.dumps(data).encode(), name)
    except InvalidSignal as err:
        _check_refusal(err)


@SETTINGS
@given(
    kind=st.sampled_from(KINDS),
    records=st.lists(
        st.dictionaries(st.sampled_from(sorted({c for cols in CSV_COLUMNS.values() for c in cols})), _field_values()),
        min_size=1,
        max_size=4,
    ),
)
def test_random_records_validate_or_are_refused_with_their_index(kind: str, records: list[dict[str, Any]]) -> None:
    try:
        validate_records(kind, records)
    except InvalidSignal as err:
        _check_refusal(err)
        assert 0 <= err.detail["index"] < len(records)


@SETTINGS
@given(
    kind=st.sampled_from(KINDS),
    rows=st.lists(st.lists(st.text(max_size=8), max_size=8), max_size=5),
    bom=st.booleans(),
)
def test_random_csv_parses_or_is_refused_with_a_line(kind: str, rows: list[list[str]], bom: bool) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS[kind])
    writer.writerows(rows)
    data = (("\ufeff" if bom else "") + out.getvalue()).encode()
    try:
        records, lines = parse_signal_file(kind, data, "x.csv")
    except InvalidSignal as err:
        _check_refusal(err)
        if "line" in err.detail:
            # Lines are the file's own lines: a quoted cell with a line break spans more than one.
            assert 1 <= err.detail["line"] <= len(out.getvalue().splitlines()) + 1
    else:
        assert lines is not None and len(records) == len(lines)


weather = st.fixed_dictionaries(
    {
        "date": st.dates(date(2026, 11, 28), date(2027, 1, 4)).map(date.isoformat),
        "temp_max_c": st.integers(-20, 45),
        "rain_mm": st.floats(0, 500, allow_nan=False).map(lambda x: round(x, 1)),
    }
).map(lambda d: {**d, "temp_min_c": d["temp_max_c"] - 5})


@SETTINGS
@given(records=st.lists(weather, min_size=1, max_size=10))
def test_valid_weather_written_as_csv_reads_back_the_same(records: list[dict[str, Any]]) -> None:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["date", "temp_max_c", "temp_min_c", "rain_mm", "location"])
    writer.writeheader()
    writer.writerows(records)
    parsed, lines = parse_signal_file("weather", ("\ufeff" + out.getvalue()).encode("utf-8"), "w.csv")
    assert lines == list(range(2, len(records) + 2))
    assert [(p.date.isoformat(), p.temp_max_c, p.rain_mm) for p in parsed] == [  # type: ignore[attr-defined]
        (r["date"], r["temp_max_c"], r["rain_mm"]) for r in records
    ]
    as_json, _ = parse_signal_file("weather", json.dumps(records).encode())
    assert as_json == parsed


@SETTINGS
@given(days=st.integers(0, 365), discount=st.floats(0.01, 0.99, allow_nan=False))
def test_valid_promotions_parse_from_json_and_csv_alike(days: int, discount: float) -> None:
    start = date(2026, 12, 1)
    record = {
        "sku": "S1",
        "start": start.isoformat(),
        "end": (start + timedelta(days=days)).isoformat(),
        "discount": discount,
        "kind": "折扣",
    }
    from_json, _ = parse_signal_file("promotion", json.dumps({"records": [record]}).encode())
    text = "sku,start,end,discount,kind\n" + ",".join(
        str(record[k]) for k in ("sku", "start", "end", "discount", "kind")
    )
    from_csv, _ = parse_signal_file("promotion", text.encode())
    assert from_json == from_csv
