"""Paper kinds, upload checks and the fields read from OCR text lines (pure: no OCR engine here)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.finance.errors import InvalidComplianceInput, InvalidPaper, PaperTooLarge, UnsupportedPaperType
from edge.finance.papers import (
    FileType,
    OcrLine,
    PaperFields,
    PaperKind,
    check_confirmable,
    detect_kind,
    expires_on,
    parse_cn_date,
    parse_kind,
    read_fields,
    required_kinds,
    rows_of,
    sniff_upload,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 20
JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 20
PDF = b"%PDF-1.7\n" + b"\0" * 20


def line(text: str, x: int, y: int, width: int = 200, height: int = 30, page: int = 0) -> OcrLine:
    return OcrLine(text, ((x, y), (x + width, y), (x + width, y + height), (x, y + height)), 0.99, page)


def page(*rows: tuple[str, ...], x0: int = 100, value_x: int = 450, top: int = 200, step: int = 60) -> list[OcrLine]:
    """A paper as OCR lines: each row is a label box and, when given, a value box to its right."""
    lines: list[OcrLine] = []
    for index, row in enumerate(rows):
        y = top + index * step
        lines.append(line(row[0], x0, y))
        if len(row) > 1:
            lines.append(line(row[1], value_x, y + 3, width=400))
    return lines


LICENCE = page(
    ("营业执照",),
    ("统一社会信用代码", "91310115MA1K3YJ71K"),
    ("名称", "上海华润饮料有限公司"),
    ("类型", "有限责任公司"),
    ("法定代表人", "张伟"),
    ("成立日期", "2018年05月10日"),
    ("营业期限", "2018年05月10日至2038年05月09日"),
    ("住所", "上海市浦东新区张江路88号"),
)


# --- kinds ---


def test_food_licence_is_required_only_for_food_suppliers() -> None:
    assert PaperKind.FOOD_LICENCE not in required_kinds(False)
    assert required_kinds(True)[-1] is PaperKind.FOOD_LICENCE
    assert len(required_kinds(True)) == 4


def test_unknown_kind_is_refused_naming_the_allowed_ones() -> None:
    with pytest.raises(InvalidComplianceInput) as caught:
        parse_kind("passport")
    assert "business_licence" in caught.value.message_en


# --- uploads ---


@pytest.mark.parametrize(("data", "kind"), [(PNG, FileType.PNG), (JPEG, FileType.JPEG), (PDF, FileType.PDF)])
def test_type_is_told_by_magic_bytes(data: bytes, kind: FileType) -> None:
    assert sniff_upload(data, 1024) is kind


def test_pdf_header_after_some_junk_is_still_a_pdf() -> None:
    assert sniff_upload(b"\r\n junk \r\n%PDF-1.4\n", 1024) is FileType.PDF


@pytest.mark.parametrize("data", [b"GIF89a....", b"PK\x03\x04zip", b"hello", b"<svg/>", b"\x89PNX\r\n"])
def test_other_files_are_refused_with_415(data: bytes) -> None:
    with pytest.raises(UnsupportedPaperType) as caught:
        sniff_upload(data, 1024)
    assert caught.value.status == 415
    assert "JPEG" in caught.value.message and "PDF" in caught.value.message_en


def test_empty_and_oversized_files_are_refused() -> None:
    with pytest.raises(InvalidPaper):
        sniff_upload(b"", 1024)
    with pytest.raises(PaperTooLarge) as caught:
        sniff_upload(PNG + b"\0" * 2000, 1024)
    assert caught.value.status == 413
    assert caught.value.detail["max_bytes"] == 1024


@given(st.binary(max_size=64), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"%PDF-"]))
def test_any_bytes_are_a_known_type_or_a_clear_refusal(tail: bytes, head: bytes) -> None:
    data = head + tail
    try:
        kind = sniff_upload(data, 48)
    except (InvalidPaper, PaperTooLarge, UnsupportedPaperType) as err:
        assert err.message and err.message_en
    else:
        assert len(data) <= 48 and kind in FileType


# --- reading fields ---


def test_licence_fields_are_read_from_label_and_value_boxes() -> None:
    reading = read_fields(LICENCE)
    f = reading.fields
    assert reading.detected_kind is PaperKind.BUSINESS_LICENCE
    assert f.name == "上海华润饮料有限公司"
    assert f.credit_code == "91310115MA1K3YJ71K"
    assert f.address == "上海市浦东新区张江路88号"
    assert f.legal_rep == "张伟"
    assert (f.valid_from, f.valid_to, f.long_term) == (date(2018, 5, 10), date(2038, 5, 9), False)
    assert f.established == date(2018, 5, 10)
    assert reading.notes == ()


def test_label_and_value_in_one_box_with_full_width_colon() -> None:
    lines = [line("名称：华东食品有限公司", 100, 100, 600), line("住所: 江苏省南京市玄武区中山路1号", 100, 160, 600)]
    f = read_fields(lines).fields
    assert (f.name, f.address) == ("华东食品有限公司", "江苏省南京市玄武区中山路1号")


def test_long_term_validity() -> None:
    lines = page(("营业期限", "2015年03月01日至长期"))
    f = read_fields(lines).fields
    assert (f.valid_from, f.valid_to, f.long_term) == (date(2015, 3, 1), None, True)
    assert expires_on(f) is None
    f = read_fields(page(("有效期至", "长期"))).fields
    assert (f.valid_from, f.valid_to, f.long_term) == (None, None, True)


def test_valid_until_only() -> None:
    f = read_fields(page(("有效期至", "2027年05月09日"))).fields
    assert (f.valid_from, f.valid_to) == (None, date(2027, 5, 9))
    assert expires_on(f) == date(2027, 5, 9)


def test_value_on_the_row_below_a_lone_label() -> None:
    lines = [line("名称", 100, 100), line("上海某某贸易有限公司", 100, 160, 500), line("类型", 100, 220)]
    assert read_fields(lines).fields.name == "上海某某贸易有限公司"


def test_a_wrapped_address_is_joined() -> None:
    lines = [
        line("住所", 100, 100),
        line("广东省深圳市南山区粤海街道科技园", 450, 103, 500),
        line("南区深南大道10000号", 450, 150, 300),
        line("登记机关", 100, 220),
    ]
    assert read_fields(lines).fields.address == "广东省深圳市南山区粤海街道科技园南区深南大道10000号"


def test_residence_wins_over_business_premises() -> None:
    lines = page(("经营场所", "上海市徐汇区漕溪北路1号"), ("住所", "上海市浦东新区张江路88号"))
    assert read_fields(lines).fields.address == "上海市浦东新区张江路88号"


def test_ocr_confusions_in_the_code_are_mended_and_a_bad_check_is_noted() -> None:
    mended = read_fields(page(("统一社会信用代码", "9131O115MA1K3YJ71K"))).fields
    assert mended.credit_code == "91310115MA1K3YJ71K"
    reading = read_fields(page(("统一社会信用代码", "91310115MA1K3YJ71D")))
    assert reading.fields.credit_code == "91310115MA1K3YJ71D"
    assert [n.field for n in reading.notes] == ["credit_code"]


def test_bank_account_fields() -> None:
    lines = page(
        ("基本存款账户信息",),
        ("账户名称", "上海华润饮料有限公司"),
        ("账号", "1001 2345 6789 0123 456"),
        ("开户银行", "中国工商银行上海张江支行"),
        ("基本存款账户编号", "J2900012345601"),
    )
    reading = read_fields(lines)
    assert reading.detected_kind is PaperKind.BANK_ACCOUNT
    assert reading.fields.bank_account == "1001234567890123456"
    assert reading.fields.bank_name == "中国工商银行上海张江支行"
    assert reading.fields.licence_no == "J2900012345601"


def test_rows_group_boxes_on_one_line_and_keep_pages_apart() -> None:
    lines = [line("b", 300, 102), line("a", 100, 100), line("c", 100, 100, page=1)]
    assert [[ln.text for ln in row] for row in rows_of(lines)] == [["a", "b"], ["c"]]


@pytest.mark.parametrize(
    ("title", "kind"),
    [
        ("食品经营许可证", PaperKind.FOOD_LICENCE),
        ("增值税一般纳税人资格证明", PaperKind.GENERAL_TAXPAYER),
        ("开户许可证", PaperKind.BANK_ACCOUNT),
        ("营 业 执 照", PaperKind.BUSINESS_LICENCE),
        ("随便什么", None),
    ],
)
def test_kind_is_detected_from_the_title(title: str, kind: PaperKind | None) -> None:
    assert detect_kind([line(title, 300, 50)]) is kind


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2018年05月10日", date(2018, 5, 10)),
        ("2018年5月1日", date(2018, 5, 1)),
        ("2018-05-10", date(2018, 5, 10)),
        ("2018.05.10", date(2018, 5, 10)),
        ("２０１８年０５月１０日", date(2018, 5, 10)),
        ("2018年13月40日", None),
        ("长期", None),
    ],
)
def test_dates(text: str, expected: date | None) -> None:
    assert parse_cn_date(text) == expected


_texts = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["名称", "住所", "营业期限", "有效期至", "统一社会信用代码", "账号", "至长期", "2018年99月99日"]),
)


@given(
    st.lists(
        st.tuples(_texts, st.integers(-50, 3000), st.integers(-50, 3000), st.integers(0, 400), st.integers(0, 2)),
        max_size=30,
    )
)
def test_any_ocr_lines_read_without_crashing(raw: list[tuple[str, int, int, int, int]]) -> None:
    lines = [line(text, x, y, height=h, page=p) for text, x, y, h, p in raw]
    reading = read_fields(lines)
    assert (
        json.loads(json.dumps(reading.to_json(), ensure_ascii=False))["fields"].keys() == PaperFields().to_json().keys()
    )
    for note in reading.notes:
        assert note.message and note.message_en


# --- a person's confirmation ---


def test_confirmed_fields_round_trip_and_are_tidied() -> None:
    f = PaperFields.from_json({"name": "  Demo  Trading\tCo. ", "valid_to": "2030-01-31", "long_term": False})
    assert f.name == "Demo Trading Co."
    assert f.valid_to == date(2030, 1, 31)
    assert PaperFields.from_json(f.to_json()) == f


@pytest.mark.parametrize(
    "body",
    [
        {"nam": "x"},
        {"valid_to": "31/01/2030"},
        {"valid_to": 20300131},
        {"long_term": "yes"},
        {"name": 5},
        {"address": "x" * 501},
    ],
)
def test_bad_confirmations_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(InvalidComplianceInput) as caught:
        PaperFields.from_json(body)
    assert caught.value.message and caught.value.message_en


def test_a_paper_must_carry_what_its_kind_needs() -> None:
    with pytest.raises(InvalidComplianceInput) as caught:
        check_confirmable(PaperKind.BUSINESS_LICENCE, PaperFields(name="x", credit_code="y"))
    assert caught.value.detail["missing"] == ["address", "valid_to"]
    assert "住所" in caught.value.message
    ok = check_confirmable(
        PaperKind.BUSINESS_LICENCE,
        PaperFields(name="x", credit_code="y", address="z", long_term=True, valid_to=date(2030, 1, 1)),
    )
    assert ok.valid_to is None


def test_validity_cannot_end_before_it_starts() -> None:
    with pytest.raises(InvalidComplianceInput):
        check_confirmable(
            PaperKind.GENERAL_TAXPAYER,
            PaperFields(name="x", credit_code="y", valid_from=date(2030, 1, 1), valid_to=date(2029, 1, 1)),
        )
