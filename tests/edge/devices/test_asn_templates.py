"""Connector templates: the shipped ones load and read their layouts; bad templates are refused at file:line;
a supplier's bad file is refused with every problem at its line or JSON path; garbage never escapes as a crash."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.devices.asn import AsnLine
from edge.devices.asn_templates import (
    EXCEL_SCIENTIFIC,
    AsnImportRejected,
    AsnTemplate,
    AsnTemplateInvalid,
    UnitChoice,
    UnknownAsnTemplate,
    check_template_paths,
    convert,
    find_template,
    list_templates,
    load_template,
    load_template_text,
    packaged_templates,
    parse_path,
)

TODAY = date(2026, 11, 25)
SHIPPED = ("erp-gbk-csv", "generic-csv", "nested-json")


def problems(template: AsnTemplate, data: bytes) -> list[tuple[str, str | None, str]]:
    with pytest.raises(AsnImportRejected) as err:
        convert(template, data, today=TODAY)
    assert err.value.code == "asn_import_rejected" and err.value.status == 422
    assert err.value.detail["problems"] == [p.to_dict() for p in err.value.problems]
    return [(p.where, p.field, p.code) for p in err.value.problems]


def assert_says_the_same(message: str, message_en: str) -> None:
    """A Chinese message that is Chinese (no English phrase in it) and names every number the English names."""
    assert re.search(r"[\u4e00-\u9fff]", message), message
    assert not re.search(r"[A-Za-z]{2,} [A-Za-z]{2,}", message), message
    assert set(re.findall(r"\d+", message_en)) <= set(re.findall(r"\d+", message)), (message, message_en)


def refused(text: str, name: str = "t") -> list[str]:
    with pytest.raises(AsnTemplateInvalid) as err:
        load_template_text(text, "t.yaml", name)
    return [str(issue) for issue in err.value.issues]


# --- the shipped templates ------------------------------------------------------------------------


def test_every_shipped_template_loads_and_checks_clean() -> None:
    loaded, issues = list_templates()
    assert issues == []
    assert [t.name for t in loaded] == list(SHIPPED)
    checked, issues = check_template_paths([Path(str(packaged_templates()))])
    assert (checked, issues) == (3, [])


def test_generic_csv_reads_asns_with_the_header_given_once_and_a_bom() -> None:
    text = (
        "asn_id,po,ship_date,note,item,qty,unit,lot,expiry,price\r\n"
        "ASN-1,PO20261125-000001,2026-11-24,first truck,6901234567900,2,,,,48.00\r\n"
        ",,,,6920000000011,12,,M2611,2026-12-02,4.2\r\n"
        "ASN-2,7,2026-11-24,,F1,10,bag,F2611,2027-05-24,\r\n"
    )
    asn1, asn2 = convert(find_template("generic-csv"), "\ufeff".encode() + text.encode(), today=TODAY)
    assert (asn1.asn_id, asn1.po, asn1.ship_date, asn1.note) == (
        "ASN-1",
        "PO20261125-000001",
        date(2026, 11, 24),
        "first truck",
    )
    assert asn1.lines == (
        AsnLine("6901234567900", 2, price_fen=4800),
        AsnLine("6920000000011", 12, lot="M2611", expiry=date(2026, 12, 2), price_fen=420),
    )
    assert asn1.line_sources == ("line 2", "line 3")
    assert (asn2.po, asn2.lines) == ("7", (AsnLine("F1", 10, unit="bag", lot="F2611", expiry=date(2027, 5, 24)),))


def _erp_file(rows: list[list[str]], *, encoding: str = "gbk") -> bytes:
    header = ["送货单号", "采购订单号", "发货日期", "商品条码", "数量", "单位", "批号", "有效期至", "含税单价", "备注"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(["发货单 (供应商 ERP 导出)"])
    writer.writerow(header)
    writer.writerows(rows)
    writer.writerow(["合计", "", "", "", "99", "", "", "", "", ""])
    return out.getvalue().encode(encoding)


def test_erp_gbk_csv_reads_chinese_headers_units_excel_dates_and_skips_the_total_row() -> None:
    data = _erp_file(
        [
            ["DN-0001", "PO20261125-000001", "2026/11/24", "6901234567900", "2", "箱", "", "", "48.00", "含冷链"],
            ["", "", "", "6920000000011", "１２", "打", "M2611", "20261202", "4.20", ""],
            ["", "", "", "2000001000008", "1.5", "公斤", "W1", "46359", "12.00", ""],
        ]
    )
    template = find_template("erp-gbk-csv")
    assert template.units is not None
    (asn,) = convert(template, data, today=TODAY)
    assert (asn.asn_id, asn.po, asn.ship_date, asn.note) == (
        "DN-0001",
        "PO20261125-000001",
        date(2026, 11, 24),
        "含冷链",
    )
    assert asn.lines == (
        AsnLine("6901234567900", 2, unit="箱", price_fen=4800),
        # 打 (dozen) is not in the table: taken as it is, for the item to have (or not) when it is recorded
        AsnLine("6920000000011", 12, unit="打", lot="M2611", expiry=date(2026, 12, 2), price_fen=420),
        # 1.5 kg is 1500 g; 12.00 yuan a kilogram is 1.2 fen a gram, rounded once, half up
        AsnLine("2000001000008", 1500, unit="g", lot="W1", expiry=date(2026, 12, 3), price_fen=1),
    )
    assert asn.line_units == (
        UnitChoice("箱", ("箱", "case")),
        UnitChoice("打", ("打",)),
        UnitChoice("公斤", ("g",)),
    )
    assert asn.line_sources == ("line 3", "line 4", "line 5")


def test_a_utf8_file_for_a_gbk_template_is_refused_as_such_and_gbk_for_utf8_names_the_line() -> None:
    rows = [["DN-1", "7", "2026/11/24", "6901234567900", "2", "箱", "", "", "", "备注"]]
    assert problems(find_template("erp-gbk-csv"), _erp_file(rows, encoding="utf-8")) == [
        ("file", None, "wrong_encoding")
    ]
    gbk = b"asn_id,po,ship_date,item,qty\nA1,7,2026-11-24,X1,1\nA1,7,2026-11-24," + "条码".encode("gbk") + b",1\n"
    with pytest.raises(AsnImportRejected) as err:
        convert(find_template("generic-csv"), gbk, today=TODAY)
    assert err.value.problems[0].code == "wrong_encoding"
    assert "line 3" in err.value.problems[0].message_en and "GBK" in err.value.problems[0].message_en


def test_nested_json_reads_several_shipments_and_places_problems_by_json_path() -> None:
    doc: dict[str, Any] = {
        "shipments": [
            {
                "shipmentNo": "S-1",
                "order": {"poNumber": 7},
                "shipDate": "20261124",
                "items": [
                    {"sku": {"gtin": 6901234567900}, "quantity": 2, "uom": "CS", "unitPriceFen": 4800},
                    {
                        "sku": {"gtin": "06920000000011"},
                        "quantity": 12.0,
                        "uom": "EA",
                        "batch": {"number": "M2611", "bestBefore": "2026/12/02"},
                    },
                ],
            },
            {"shipmentNo": "S-2", "order": {"poNumber": "PO20261125-000002"}, "shipDate": "2026-11-24", "items": []},
        ]
    }
    template = find_template("nested-json")
    assert problems(template, json.dumps(doc).encode()) == [("$.shipments[1]", "lines", "no_lines")]
    doc["shipments"].pop()
    (asn,) = convert(template, json.dumps(doc).encode(), today=TODAY)
    assert (asn.asn_id, asn.po, asn.where) == ("S-1", "7", "$.shipments[0]")
    assert asn.lines == (
        AsnLine("6901234567900", 2, unit="箱", price_fen=4800),
        AsnLine("06920000000011", 12, lot="M2611", expiry=date(2026, 12, 2)),
    )
    assert asn.line_units == (UnitChoice("CS", ("箱", "case")), UnitChoice("EA", ()))
    assert asn.line_sources == ("$.shipments[0].items[0]", "$.shipments[0].items[1]")
    doc["shipments"][0]["items"][1]["quantity"] = 1.5
    doc["shipments"][0]["items"][0]["sku"] = {}
    assert problems(template, json.dumps(doc).encode()) == [
        ("$.shipments[0].items[0].sku.gtin", "lines.item", "missing_value"),
        ("$.shipments[0].items[1]", "lines.qty", "invalid_qty"),
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", [("line 1", None, "invalid_json")]),
        (b"{", [("line 1", None, "invalid_json")]),
        (b'{"shipments": {}}', [("$", None, "invalid_value")]),
        (b'{"shipments": [1]}', [("$.shipments[0]", None, "invalid_value")]),
        (b'{"a": 1, "a": 2}', [("$", None, "invalid_json")]),
        (b'{"shipments": [NaN]}', [("$", None, "invalid_json")]),
        (b"[" * 100_000, [("$", None, "invalid_json")]),
    ],
)
def test_broken_json_is_refused_with_its_place(data: bytes, expected: list[Any]) -> None:
    assert problems(find_template("nested-json"), data) == expected


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("nested-json", b"{"),
        ("nested-json", b'{"shipments": [1 2]}'),
        ("nested-json", b'{"a": "\\x"}'),
        ("nested-json", b'{"a": 1} x'),
        ("nested-json", b'{"a": 1, "a": 2}'),
        ("nested-json", b'{"shipments": [NaN]}'),
        ("nested-json", b"[" * 100_000),
        ("nested-json", b'{"shipments": [{"shipmentNo": {}}]}'),
        ("generic-csv", b'asn_id,po,ship_date,item,qty\nA1,7,2026-11-24,"X1"x,1\n'),
        ("generic-csv", b'asn_id,po,ship_date,item,qty\nA1,7,2026-11-24,"X1,1\n'),
    ],
)
def test_a_broken_file_is_refused_in_chinese_and_english_alike(name: str, data: bytes) -> None:
    with pytest.raises(AsnImportRejected) as err:
        convert(find_template(name), data, today=TODAY)
    for problem in err.value.problems:
        assert_says_the_same(problem.message, problem.message_en)


def test_every_bad_row_of_a_csv_is_reported_with_its_physical_line() -> None:
    text = (
        "asn_id,po,ship_date,item,qty,unit,lot,expiry,price\n"
        'A1,7,2026-11-24,X1,2,,"lot\nwith a line break",,\n'  # a quoted cell over two lines
        "A1,7,2026-11-24,6.90123E+12,1,,,,\n"
        "A1,8,2026-11-24,X3,1,,,,\n"
        "A1,7,2026-11-24,X4,abc,,,31.12.2026,1.234\n"
        "A1,7,2026-11-24,X5,1,,,,,extra\n"
        ",,,X6,0,,,,\n"
    )
    found = problems(find_template("generic-csv"), text.encode())
    assert found == [
        ("line 2", "lines.lot", "invalid_value"),
        ("line 4", "lines.item", "excel_scientific_notation"),
        ("line 5", "asn.po", "inconsistent_header"),
        ("line 6", "lines.qty", "invalid_value"),
        ("line 7", None, "extra_cells"),
        ("line 8", "lines.qty", "invalid_qty"),
    ]


def test_missing_required_columns_are_named_once_with_the_header_it_has() -> None:
    with pytest.raises(AsnImportRejected) as err:
        convert(find_template("generic-csv"), b"asn_id,po,item\nA1,7,X1\n", today=TODAY)
    assert [(p.where, p.field) for p in err.value.problems] == [
        ("line 1", "asn.ship_date"),
        ("line 1", "lines.qty"),
    ]
    assert "asn_id, po, item" in err.value.problems[0].message_en


def test_a_row_without_an_asn_id_before_any_asn_is_refused() -> None:
    assert problems(find_template("generic-csv"), b"asn_id,po,ship_date,item,qty\n,7,2026-11-24,X1,1\n") == [
        ("line 2", "asn.id", "missing_value")
    ]


def test_too_large_files_and_too_many_asns_are_refused() -> None:
    template = find_template("generic-csv")
    assert problems(template, b"x" * (1024 * 1024 + 1)) == [("file", None, "file_too_large")]
    rows = "".join(f"A{i},7,2026-11-24,X1,1\n" for i in range(101))
    found = problems(template, ("asn_id,po,ship_date,item,qty\n" + rows).encode())
    assert found == [("line 102", None, "too_many_asns")]


# --- loading templates: file:line: reason ----------------------------------------------------------

MINIMAL = """\
description: test
format: csv
asn:
  id: a
  po: b
  ship_date: c
lines:
  item: d
  qty: e
"""


def test_a_minimal_template_loads_with_defaults() -> None:
    template = load_template_text(MINIMAL, "t.yaml", "t")
    assert (template.encoding, template.delimiter, template.header_row, template.units) == ("utf-8", ",", 1, None)
    (asn,) = convert(template, b"a,b,c,d,e\nA,7,2026-11-24,X,3\n", today=TODAY)
    assert asn.lines == (AsnLine("X", 3),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("description: [unclosed\n", "t.yaml:2: not valid YAML"),
        (MINIMAL + "lines: {}\n", "t.yaml:10: duplicate key 'lines' (first on line 7)"),
        (
            MINIMAL + "colour: blue\n",
            "t.yaml:10: unknown key 'colour' (allowed: description, format, csv, json, asn, lines, units)",
        ),
        (MINIMAL.replace("format: csv", "format: xlsx"), "t.yaml:2: format: 'xlsx' is not one of ['csv', 'json']"),
        (
            MINIMAL.replace("  qty: e", "  qty: {column: e, fromat: x}"),
            "t.yaml:9: lines.qty: unknown key 'fromat' (allowed: column, index, path, value, default)",
        ),
        (MINIMAL.replace("  qty: e", "  qty: 5"), "t.yaml:9: must be a header name"),
        (MINIMAL.replace("  ship_date: c", '  ship_date: {column: c, formats: ["%Y-%Q"]}'), "t.yaml:6: ship_date"),
        (MINIMAL.replace("  qty: e", '  qty: {path: "$.q"}'), "t.yaml:9: qty: a CSV template takes column"),
        (MINIMAL.replace("  qty: e", "  qty: {default: 1}"), "t.yaml:9: qty: give exactly one of"),
        (MINIMAL.replace("  qty: e", "  qty: {column: e, value: 1}"), "t.yaml:9: qty: give exactly one of"),
        (MINIMAL + "json: {asns: '$.a'}\n", "t.yaml:10: a CSV template has no json block"),
        (MINIMAL + "csv: {header_row: 0}\n", "t.yaml:4: id: header_row 0 means no header"),
        (MINIMAL + "units: {箱: {unit: 'a b'}}\n", "t.yaml:10: unit 'a b'"),
        (MINIMAL + "units: {箱: {unit: [case, 'a b']}}\n", "t.yaml:10: unit 'a b'"),
        (MINIMAL + "units: {KG: {unit: null, factor: 1000}}\n", "t.yaml:10: KG: a factor converts into one named unit"),
        (MINIMAL + "units: {KG: {unit: [g, kg], factor: 1000}}\n", "t.yaml:10: KG: a factor converts into one"),
        (MINIMAL + "units: {KG: {unit: []}}\n", "t.yaml:10: units.KG.unit: [] should be non-empty"),
        (MINIMAL + "units: {1: {unit: case}}\n", "t.yaml:10: keys must be text"),
        (MINIMAL.replace("  id: a", "  id: {column: a, default: today}"), "t.yaml:4: id: default 'today'"),
        ("- a list\n", "t.yaml:1: a template is a YAML mapping"),
        ("", "t.yaml:1: a template is a YAML mapping"),
    ],
)
def test_a_bad_template_is_refused_at_its_file_and_line(text: str, expected: str) -> None:
    found = refused(text)
    assert any(issue.startswith(expected) for issue in found), found


def test_bad_json_paths_are_refused_at_their_line() -> None:
    base = MINIMAL.replace("format: csv", "format: json").replace(": a\n", ": $.a\n").replace(": b\n", ": $.b\n")
    base = base.replace(": c\n", ": $.c\n").replace(": d\n", ": $.d\n").replace(": e\n", ": $.e\n")
    load_template_text(base, "t.yaml", "t")
    assert refused(base + "json: {lines: '$.lines'}\n") == [
        "t.yaml:10: lines: the path of the lines array ends with [*]"
    ]
    assert refused(base + "json: {asns: '$.a[*].b[*]'}\n") == ["t.yaml:10: asns: only one [*], at the end of the path"]
    assert refused(base.replace(": $.e\n", ": $.e[*]\n")) == ["t.yaml:9: qty: a field path selects one value, no [*]"]
    assert refused(base.replace(": $.e\n", ": $.e..f\n")) == ["t.yaml:9: qty: cannot read path '$.e..f' at character 4"]
    assert refused(base.replace("  qty: $.e", "  qty: {column: e}")) == [
        "t.yaml:9: qty: a JSON template takes path or value, not column"
    ]


def test_json_paths_read_bracketed_names_indexes_and_wildcards() -> None:
    assert parse_path("$.a['批 号'][3][*]") == (("key", "a"), ("key", "批 号"), ("index", 3), ("all", "*"))
    assert parse_path("$") == ()
    with pytest.raises(ValueError):
        parse_path("a.b")


def test_an_extra_dir_adds_templates_and_replaces_a_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "generic-csv.yaml").write_text(MINIMAL.replace("description: test", "description: ours"), "utf-8")
    (tmp_path / "mine.yaml").write_text(MINIMAL, "utf-8")
    (tmp_path / "broken.yaml").write_text("format: csv\n", "utf-8")
    assert find_template("generic-csv", tmp_path).description == "ours"
    assert find_template("mine", tmp_path).name == "mine"
    loaded, issues = list_templates(tmp_path)
    assert [t.name for t in loaded] == ["erp-gbk-csv", "generic-csv", "mine", "nested-json"]
    assert {str(i).split(":")[0] for i in issues} == {str(tmp_path / "broken.yaml")}
    checked, issues = check_template_paths([tmp_path])
    assert checked == 3 and {i.file for i in issues} == {str(tmp_path / "broken.yaml")}
    with pytest.raises(AsnTemplateInvalid):
        find_template("broken", tmp_path)


def test_an_unknown_or_unsafe_template_name_lists_the_ones_there_are() -> None:
    for name in ("nope", "../generic-csv", "Generic-CSV", "x" * 65):
        with pytest.raises(UnknownAsnTemplate) as err:
            find_template(name)
        assert err.value.detail["available"] == list(SHIPPED)


def test_template_file_names_must_be_simple(tmp_path: Path) -> None:
    path = tmp_path / "Bad Name.yaml"
    path.write_text(MINIMAL, "utf-8")
    with pytest.raises(AsnTemplateInvalid, match="named"):
        load_template(path)


# --- garbage: never a crash, never a half result -----------------------------------------------------

TEMPLATES = {name: find_template(name) for name in SHIPPED}


def _converts_or_refuses(template: AsnTemplate, data: bytes) -> None:
    try:
        found = convert(template, data, today=TODAY)
    except AsnImportRejected as err:
        assert err.problems and all(p.message and p.message_en and p.where for p in err.problems)
        return
    assert found and all(asn.lines and len(asn.lines) == len(asn.line_sources) for asn in found)
    assert all(line.qty > 0 for asn in found for line in asn.lines)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(SHIPPED), data=st.binary(max_size=2000))
def test_random_bytes_are_converted_or_refused_never_crash(name: str, data: bytes) -> None:
    _converts_or_refuses(TEMPLATES[name], data)


_cell = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["", "7", "2026-11-24", "2026/11/24", "20261124", "46350", "1.5", "-3", "箱", "公斤", "合计", "1e9"]
    ),
)


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(("generic-csv", "erp-gbk-csv")),
    header=st.booleans(),
    rows=st.lists(st.lists(_cell, max_size=12), max_size=12),
)
def test_random_csv_tables_are_converted_or_refused(name: str, header: bool, rows: list[list[str]]) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    if name == "erp-gbk-csv":
        writer.writerow(["title"])
    if header:
        cols = [c for r in TEMPLATES[name].header + TEMPLATES[name].lines for c in r.columns[:1]]
        writer.writerow(cols)
    writer.writerows(rows)
    encoding = "gbk" if name == "erp-gbk-csv" else "utf-8"
    _converts_or_refuses(TEMPLATES[name], out.getvalue().encode(encoding, errors="replace"))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "shipments",
                    "shipmentNo",
                    "order",
                    "poNumber",
                    "shipDate",
                    "items",
                    "sku",
                    "gtin",
                    "quantity",
                    "uom",
                    "batch",
                    "number",
                    "bestBefore",
                    "unitPriceFen",
                    "remark",
                    "x",
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(doc=_json)
def test_random_json_documents_are_converted_or_refused(doc: Any) -> None:
    _converts_or_refuses(TEMPLATES["nested-json"], json.dumps(doc).encode())


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=400)
    | st.builds(lambda a, b: MINIMAL[:a] + b + MINIMAL[a:], st.integers(0, len(MINIMAL)), st.text(max_size=30))
)
def test_random_template_text_loads_or_is_refused_with_issues(text: str) -> None:
    try:
        load_template_text(text, "t.yaml", "t")
    except AsnTemplateInvalid as err:
        assert err.issues and all(i.reason for i in err.issues)


@settings(max_examples=50, deadline=None)
@given(
    lines=st.lists(
        st.tuples(
            # item codes as a supplier writes them; not digits-E-digits, which reads as Excel's scientific notation
            st.from_regex(r"[A-Z0-9]{1,13}", fullmatch=True).filter(lambda c: not EXCEL_SCIENTIFIC.match(c)),
            st.integers(1, 10_000),
            st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9]{1,10}", fullmatch=True)),
            st.one_of(st.none(), st.dates(date(2000, 1, 1), date(2099, 12, 31))),
            st.one_of(st.none(), st.integers(0, 10**7)),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_a_generic_csv_written_from_values_reads_back_as_those_values(
    lines: list[tuple[str, int, str | None, date | None, int | None]],
) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["asn_id", "po", "ship_date", "item", "qty", "lot", "expiry", "price"])
    for code, qty, lot, expiry, price in lines:
        shown_price = f"{price // 100}.{price % 100:02d}" if price is not None else ""
        writer.writerow(
            ["A-1", "7", "2026-11-24", code, qty, lot or "", expiry.isoformat() if expiry else "", shown_price]
        )
    (asn,) = convert(TEMPLATES["generic-csv"], out.getvalue().encode(), today=TODAY)
    assert asn.lines == tuple(
        AsnLine(code, qty, lot=lot, expiry=expiry, price_fen=price) for code, qty, lot, expiry, price in lines
    )


# --- storebox supplier asn-template / openapi ------------------------------------------------------------


def test_the_cli_checks_converts_and_lists_templates(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge.cli import app

    runner = CliRunner()
    assert runner.invoke(app, ["supplier", "asn-template", "check"]).exit_code == 0
    (tmp_path / "bad.yaml").write_text(MINIMAL + "colour: blue\n", "utf-8")
    checked = runner.invoke(app, ["supplier", "asn-template", "check", str(tmp_path)])
    assert checked.exit_code == 2
    assert f"{tmp_path / 'bad.yaml'}:10: unknown key 'colour'" in checked.output
    listed = runner.invoke(app, ["supplier", "asn-template", "list"])
    assert listed.exit_code == 0 and [line.split("\t")[0] for line in listed.stdout.splitlines()] == list(SHIPPED)
    export = tmp_path / "export.csv"
    export.write_text("asn_id,po,ship_date,item,qty\nA-1,PO1,2026-11-24,X1,2\n", "utf-8")
    converted = runner.invoke(app, ["supplier", "asn-template", "convert", "generic-csv", str(export)])
    assert converted.exit_code == 0, converted.output
    (asn,) = json.loads(converted.stdout)
    assert asn["lines"] == [
        {"code": "X1", "qty": 2, "unit": None, "lot": None, "expiry": None, "price_fen": None, "from": "line 2"}
    ]
    export.write_text("asn_id,po,ship_date,item,qty\nA-1,PO1,2026-11-24,X1,two\n", "utf-8")
    refused = runner.invoke(app, ["supplier", "asn-template", "convert", "generic-csv", str(export)])
    assert refused.exit_code == 1 and f"{export}: line 2: 'two' 不是数字" in refused.output
    (tmp_path / "mine.yaml").write_text(MINIMAL, "utf-8")
    own = runner.invoke(app, ["supplier", "asn-template", "convert", str(tmp_path / "mine.yaml"), str(export)])
    assert own.exit_code == 1  # the same file through a template file given by path
    assert runner.invoke(app, ["supplier", "asn-template", "convert", "nope", str(export)]).exit_code == 2


def test_the_cli_writes_the_openapi_subset_of_the_pack(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from edge.cli import app

    result = CliRunner().invoke(app, ["supplier", "openapi", "--output", str(tmp_path / "openapi.json")])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "openapi.json").read_text("utf-8")
    shipped = (Path(__file__).resolve().parents[3] / "docs" / "supplier-api" / "openapi.json").read_text("utf-8")
    assert written == shipped
