"""Reading invoices: JSON, CSV, XLSX and 数电票 XML into Invoice values, and refusing everything else clearly."""

from __future__ import annotations

import io
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook

from edge.finance.errors import BuyerMismatch, ImportTooLarge, InvalidInvoice
from edge.finance.invoices import (
    MAX_IMPORT_BYTES,
    Invoice,
    InvoiceKind,
    InvoiceSource,
    check_buyer,
    invoice_from_mapping,
    parse_invoice_csv,
    parse_invoice_file,
    parse_invoice_xlsx,
    parse_invoice_xml,
    parse_tax_rate,
)
from edge.ledger.errors import DomainError
from edge.ledger.money import format_yuan

DATA = Path(__file__).parent / "data"
SELLER = "91310000MA1FL0000N"
BUYER = "91110000100000000R"
HEADERS = [
    "发票号码",
    "开票日期",
    "销售方名称",
    "销售方纳税人识别号",
    "购买方名称",
    "购买方纳税人识别号",
    "项目名称",
    "数量",
    "单价",
    "金额",
    "税率",
    "税额",
    "sku",
    "po_id",
]


def body(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "invoice_no": "24312000000012345678",
        "issue_date": "2024-06-02",
        "seller_name": "华润饮料",
        "seller_credit_code": SELLER,
        "buyer_name": "演示商贸",
        "buyer_credit_code": BUYER,
        "lines": [
            {"item_name": "*饮料*可乐 330ml", "qty": 48, "amount": "96.00", "tax_rate": "13%", "tax": "12.48"},
        ],
    }
    data.update(overrides)
    return data


def refused(call: Any, *args: Any) -> InvalidInvoice:
    with pytest.raises(InvalidInvoice) as info:
        call(*args)
    error = info.value
    assert error.message and error.message_en
    return error


# --- JSON ---------------------------------------------------------------------------------------


def test_a_json_invoice_is_read_to_fen_exactly() -> None:
    invoice = invoice_from_mapping(body(po_id=3, receipt_ids=[4, 5, 4]))
    assert invoice.kind is InvoiceKind.INVOICE
    assert invoice.issue_date == date(2024, 6, 2)
    assert invoice.lines[0].amount_fen == 9600 and invoice.lines[0].tax_fen == 1248
    assert invoice.lines[0].tax_rate_bp == 1300
    assert (invoice.po_id, invoice.receipt_ids) == (3, (4, 5))
    assert (invoice.net_fen, invoice.tax_fen) == (9600, 1248)


@pytest.mark.parametrize(
    ("number", "length"),
    [("2431200000001234567", 19), ("243120000000123456789", 21), ("2431200000001234567X", 20), ("", 0)],
)
def test_an_invoice_number_must_be_exactly_20_digits(number: str, length: int) -> None:
    error = refused(invoice_from_mapping, body(invoice_no=number))
    assert error.detail["field"] == "invoice_no"
    assert "发票号码" in error.message


def test_a_wrong_check_character_in_the_seller_code_is_refused() -> None:
    error = refused(invoice_from_mapping, body(seller_credit_code="91310000MA1FL0000X"))
    assert error.detail["field"] == "seller_credit_code"
    assert error.detail["expected"] == "N"
    assert "校验码" in error.message


def test_credit_codes_are_normalised() -> None:
    invoice = invoice_from_mapping(body(seller_credit_code="91310000ma1fl0000n"))
    assert invoice.seller_credit_code == SELLER


@pytest.mark.parametrize(
    ("text", "bp"),
    [
        ("13%", 1300),
        ("13.00%", 1300),
        ("0.13", 1300),
        ("13", 1300),
        ("9%", 900),
        ("0.06", 600),
        ("3%", 300),
        ("0", 0),
        ("0%", 0),
        ("免税", 0),
        ("不征税", 0),
        (0.09, 900),
    ],
)
def test_tax_rates_become_basis_points(text: Any, bp: int) -> None:
    assert parse_tax_rate(text) == bp


@pytest.mark.parametrize("text", ["17%", "10%", "0.05", "1%", "13.5%", "abc", "", "-13%"])
def test_other_tax_rates_are_refused(text: str) -> None:
    with pytest.raises(InvalidInvoice):
        parse_tax_rate(text)


@pytest.mark.parametrize(
    ("amount", "field_error"),
    [("96.001", True), ("96,00.0.0", True), ("9e3", True), ("NaN", True), ("12.5", False), ("1,130.00", False)],
)
def test_amounts_are_yuan_text_with_at_most_two_decimals(amount: str, field_error: bool) -> None:
    data = body(lines=[{"item_name": "可乐", "qty": 1, "amount": amount, "tax_rate": "0", "tax": "0"}])
    if field_error:
        assert refused(invoice_from_mapping, data).detail["field"] == "lines[0].amount"
    else:
        assert invoice_from_mapping(data).lines[0].amount_fen in (1250, 113000)


def test_json_numbers_for_money_are_refused_never_rounded() -> None:
    data = body(lines=[{"item_name": "可乐", "qty": 1, "amount": 96.1, "tax_rate": "13%", "tax": "12.49"}])
    error = refused(invoice_from_mapping, data)
    assert error.detail["field"] == "lines[0].amount"
    assert "字符串" in error.message


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"qty": 0}, "lines[0].qty"),
        ({"qty": "1.5"}, "lines[0].qty"),
        ({"amount": "-1.00"}, "lines[0].amount"),
        ({"tax_rate": "0", "tax": "1.00"}, "lines[0].tax"),
        ({"item_name": ""}, "lines[0].item_name"),
        ({"item_name": "a\x00b"}, "lines[0].item_name"),
        ({"sku": "有 空格"}, "lines[0].sku"),
    ],
)
def test_a_bad_line_is_refused_naming_its_field(line: dict[str, Any], field: str) -> None:
    good = {"item_name": "可乐", "qty": 1, "amount": "2.00", "tax_rate": "13%", "tax": "0.26"}
    error = refused(invoice_from_mapping, body(lines=[{**good, **line}]))
    assert error.detail["field"] == field
    assert error.detail["line"] == 1


def test_a_credit_note_names_its_original_and_has_negative_lines() -> None:
    line = {"item_name": "可乐", "qty": -2, "amount": "-4.00", "tax_rate": "13%", "tax": "-0.52"}
    note = invoice_from_mapping(
        body(invoice_no="24312000000099999999", original_invoice_no="24312000000012345678", lines=[line])
    )
    assert note.kind is InvoiceKind.CREDIT_NOTE and note.net_fen == -400
    positive = {"item_name": "可乐", "qty": 2, "amount": "4.00", "tax_rate": "13%", "tax": "0.52"}
    refused(invoice_from_mapping, body(original_invoice_no="24312000000099999999", lines=[positive]))
    refused(invoice_from_mapping, body(lines=[line]))  # negative without an original
    refused(invoice_from_mapping, body(original_invoice_no="24312000000012345678", lines=[line]))  # itself


def test_buyer_must_be_this_company_when_configured() -> None:
    invoice = invoice_from_mapping(body())
    check_buyer(invoice, None)
    check_buyer(invoice, BUYER.lower())
    with pytest.raises(BuyerMismatch) as info:
        check_buyer(invoice, "91440300MA5F000007")
    assert info.value.status == 422 and info.value.detail["field"] == "buyer_credit_code"


# --- CSV ----------------------------------------------------------------------------------------


def test_the_sample_csv_with_chinese_headers_is_read_row_by_row() -> None:
    parsed = parse_invoice_csv((DATA / "invoices_sample.csv").read_bytes())
    assert parsed.source is InvoiceSource.CSV
    assert [inv.invoice_no for inv in parsed.invoices] == ["24312000000000000101", "24312000000000000102"]
    first, second = parsed.invoices
    assert [(x.line_no, x.sku, x.qty, x.amount_fen, x.tax_fen) for x in first.lines] == [
        (1, "COLA", 48, 9600, 1248),
        (2, None, 10, 8000, 720),
    ]
    assert second.issue_date == date(2024, 6, 3)  # 2024年06月03日
    assert parsed.ignored_columns == ("备注",)


def csv_bytes(rows: list[list[str]], headers: list[str] = HEADERS, encoding: str = "utf-8") -> bytes:
    lines = [",".join(headers), *(",".join(r) for r in rows)]
    return ("\n".join(lines) + "\n").encode(encoding)


def row(number: str = "24312000000000000101", **fields: str) -> list[str]:
    values = {
        "发票号码": number,
        "开票日期": "2024-06-02",
        "销售方名称": "华润饮料",
        "销售方纳税人识别号": SELLER,
        "购买方名称": "演示商贸",
        "购买方纳税人识别号": BUYER,
        "项目名称": "可乐",
        "数量": "48",
        "单价": "2",
        "金额": "96.00",
        "税率": "13%",
        "税额": "12.48",
        "sku": "",
        "po_id": "",
    }
    values.update(fields)
    return [values[h] for h in HEADERS]


def test_gbk_csv_from_excel_is_read() -> None:
    parsed = parse_invoice_csv(csv_bytes([row()], encoding="gb18030"))
    assert parsed.invoices[0].seller_name == "华润饮料"


def test_a_bad_row_refuses_the_whole_file_naming_the_row_and_field() -> None:
    data = csv_bytes([row(), row("24312000000000000102"), row("24312000000000000103", 税额="1x")])
    error = refused(parse_invoice_csv, data)
    assert error.detail["row"] == 4 and error.detail["field"] == "tax"
    assert error.message.startswith("第 4 行 税额")
    assert error.message_en.startswith("row 4: tax")


def test_rows_of_one_invoice_must_agree_on_its_header() -> None:
    error = refused(parse_invoice_csv, csv_bytes([row(), row(开票日期="2024-06-05")]))
    assert error.detail["row"] == 3 and error.detail["field"] == "issue_date"


def test_missing_columns_are_listed() -> None:
    error = refused(parse_invoice_csv, csv_bytes([row()[:10]], headers=HEADERS[:10]))
    assert error.detail["missing"] == ["tax_rate", "tax"]
    assert "税率、税额" in error.message


@pytest.mark.parametrize("data", [b"", b"\xff\xfe\x00\x00garbage", "发票号码\n".encode()])
def test_empty_or_binary_csv_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidInvoice):
        parse_invoice_csv(data)


def test_an_oversized_file_is_refused_before_it_is_read() -> None:
    with pytest.raises(ImportTooLarge) as info:
        parse_invoice_file(b"x" * (MAX_IMPORT_BYTES + 1), "a.csv")
    assert info.value.status == 413 and info.value.detail["limit"] == MAX_IMPORT_BYTES


# --- XLSX ---------------------------------------------------------------------------------------


def xlsx(rows: list[list[Any]], headers: list[str] = HEADERS) -> bytes:
    book = Workbook()
    sheet = book.active
    sheet.append(headers)
    for r in rows:
        sheet.append(r)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def test_an_xlsx_with_number_and_date_cells_is_read_exactly() -> None:
    cells = [
        "24312000000000000101",
        datetime(2024, 6, 2),
        "华润饮料",
        SELLER,
        "演示商贸",
        BUYER,
        "*饮料*可乐 330ml",
        48,
        2.0,
        96.1,  # a float cell: read as its text 96.1, never as binary arithmetic
        "13%",
        12.49,
        1001,  # a numeric SKU cell
        7,
    ]
    parsed = parse_invoice_xlsx(xlsx([cells]))
    assert parsed.source is InvoiceSource.XLSX
    line = parsed.invoices[0].lines[0]
    assert (line.amount_fen, line.tax_fen, line.qty, line.sku) == (9610, 1249, 48, "1001")
    assert parsed.invoices[0].po_id == 7
    assert parse_invoice_file(xlsx([cells]), "invoices.xlsx").invoices == parsed.invoices


def test_an_invoice_number_stored_as_a_number_cell_is_refused() -> None:
    cells: list[Any] = row()
    cells[0] = 24312000000000000101
    error = refused(parse_invoice_xlsx, xlsx([cells]))
    assert error.detail["row"] == 2 and error.detail["field"] == "invoice_no"
    assert "文本" in error.message


def test_a_damaged_xlsx_is_refused() -> None:
    with pytest.raises(InvalidInvoice):
        parse_invoice_xlsx(b"PK\x03\x04" + b"\x00" * 100)


# --- 数电票 XML ---------------------------------------------------------------------------------


def test_the_sample_xml_is_read() -> None:
    parsed = parse_invoice_xml((DATA / "invoice_sample.xml").read_bytes())
    (invoice,) = parsed.invoices
    assert invoice.invoice_no == "24312000000012345678"
    assert invoice.issue_date == date(2024, 6, 2)
    assert (invoice.seller_credit_code, invoice.buyer_credit_code) == (SELLER, BUYER)
    assert [
        (x.item_name, x.unit, x.qty, x.unit_price, x.amount_fen, x.tax_rate_bp, x.tax_fen) for x in invoice.lines
    ] == [
        ("*饮料*可乐 330ml", "case", 2, "48", 9600, 1300, 1248),
        ("*乳制品*鲜牛奶 1L", "bottle", 20, "8.257", 16514, 900, 1486),
    ]
    assert (invoice.net_fen, invoice.tax_fen) == (26114, 2734)


def xml(**replace: str) -> bytes:
    text = (DATA / "invoice_sample.xml").read_text("utf-8")
    for old, new in replace.items():
        text = text.replace(old, new)
    return text.encode()


def test_a_red_invoice_names_its_original_in_the_remark() -> None:
    red = xml(
        **{
            "<Remark>送货单 RC-0601</Remark>": (
                "<Remark>被红冲蓝字数电发票号码：24312000000012345670 红字发票信息确认单编号：1</Remark>"
            ),
            "<Quantity>2</Quantity>": "<Quantity>-2</Quantity>",
            "<Amount>96.00</Amount>": "<Amount>-96.00</Amount>",
            "<ComTaxAm>12.48</ComTaxAm>": "<ComTaxAm>-12.48</ComTaxAm>",
            "<Quantity>20</Quantity>": "<Quantity>-20</Quantity>",
            "<Amount>165.14</Amount>": "<Amount>-165.14</Amount>",
            "<ComTaxAm>14.86</ComTaxAm>": "<ComTaxAm>-14.86</ComTaxAm>",
        }
    )
    (note,) = parse_invoice_xml(red).invoices
    assert note.kind is InvoiceKind.CREDIT_NOTE and note.original_invoice_no == "24312000000012345670"


@pytest.mark.parametrize(
    ("replace", "field"),
    [
        ({"<EIid>24312000000012345678</EIid>": "<EIid>24312000000012345679</EIid>"}, "invoice_no"),
        (
            {"<SellerIdNum>91310000MA1FL0000N</SellerIdNum>": "<SellerIdNum>91310000MA1FL0000X</SellerIdNum>"},
            "seller_credit_code",
        ),
        ({"<TaxRate>0.13</TaxRate>": "<TaxRate>0.17</TaxRate>"}, "IssuItemInformation[1].tax_rate"),
        ({"<Quantity>20</Quantity>": "<Quantity>20.5</Quantity>"}, "IssuItemInformation[2].qty"),
        ({"<EInvoice>": "<Invoice>", "</EInvoice>": "</Invoice>"}, "file"),
        ({"<ComTaxAm>14.86</ComTaxAm>": ""}, "IssuItemInformation[2].tax"),
    ],
)
def test_a_bad_xml_names_the_field(replace: dict[str, str], field: str) -> None:
    assert refused(parse_invoice_xml, xml(**replace)).detail["field"] == field


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        b"<EInvoice>&b;</EInvoice>",
        b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "file:///etc/passwd">]><EInvoice>&x;</EInvoice>',
        b"<EInvoice><unclosed></EInvoice>",
        b"<EInvoice/>",
    ],
)
def test_unsafe_or_malformed_xml_is_refused(data: bytes) -> None:
    with pytest.raises(InvalidInvoice):
        parse_invoice_xml(data)


def test_files_are_told_apart_by_content() -> None:
    assert parse_invoice_file((DATA / "invoice_sample.xml").read_bytes(), "upload.bin").source is InvoiceSource.XML
    assert parse_invoice_file((DATA / "invoices_sample.csv").read_bytes(), None).source is InvoiceSource.CSV
    with pytest.raises(InvalidInvoice):
        parse_invoice_file(b"%PDF-1.7 ...", "invoice.pdf", "application/pdf")


# --- properties ---------------------------------------------------------------------------------


@given(st.integers(-(10**12), 10**12))
def test_any_fen_amount_round_trips_through_its_yuan_text(fen: int) -> None:
    line = {"item_name": "x", "qty": -1 if fen < 0 else 1, "amount": format_yuan(fen), "tax_rate": "0", "tax": "0"}
    extra = {"original_invoice_no": "24312000000099999999"} if fen < 0 else {}
    if fen == 0 and extra:
        return
    try:
        invoice = invoice_from_mapping(body(lines=[line], **extra))
    except InvalidInvoice:
        assert fen <= 0  # a zero credit note or a non-negative total on a credit note is refused
        return
    assert invoice.lines[0].amount_fen == fen


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000), st.sampled_from([None, "a.csv", "a.xml", "a.xlsx", "a.txt"]))
def test_any_bytes_are_read_or_refused_with_a_domain_error(data: bytes, name: str | None) -> None:
    try:
        parsed = parse_invoice_file(data, name)
    except DomainError as err:
        assert err.message and err.message_en and err.status in (413, 422)
        return
    assert all(isinstance(inv, Invoice) for inv in parsed.invoices)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from([*body(), "po_id", "receipt_ids", "original_invoice_no"]), json_values))
def test_any_json_shape_is_read_or_refused_with_invalid_invoice(overrides: dict[str, Any]) -> None:
    try:
        invoice_from_mapping(body(**overrides))
    except InvalidInvoice as err:
        assert err.detail.get("field")


@settings(max_examples=200)
@given(st.lists(st.lists(st.text(max_size=25), min_size=0, max_size=16), max_size=6))
def test_any_csv_table_is_read_or_refused_naming_a_row_or_field(rows: list[list[str]]) -> None:
    text = "\n".join(",".join(r) for r in [HEADERS, *rows])
    try:
        parse_invoice_csv(text.encode())
    except InvalidInvoice as err:
        assert "field" in err.detail
