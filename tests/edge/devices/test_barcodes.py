"""Scanned codes: check digits, GTINs, GS1 element strings, in-store scale labels; any text is read or refused
with a BarcodeError, and the examples of docs/barcodes.md read as documented."""

from __future__ import annotations

import contextlib
import doctest
import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from edge.config import ConfigError
from edge.devices.barcodes import (
    DEFAULT_LABEL_FORMATS,
    GS,
    BarcodeError,
    CodeKind,
    LabelFormatError,
    encode_label,
    gs1_check_digit,
    interpret_code,
    is_valid_gtin,
    label_item_code,
    parse_label_format,
    parse_label_formats,
)

DOC = Path(__file__).parents[3] / "docs" / "barcodes.md"
TODAY = date(2024, 5, 1)


def gtin(body: str) -> str:
    return body + str(gs1_check_digit(body))


# --- check digits and GTINs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "digit"),
    [
        ("690123456789", 2),
        ("9638507", 4),
        ("01234567890", 5),
        ("0690123456789", 2),
        ("1069012345678", 4),
        ("1690123456789", 9),
    ],
)
def test_check_digit_is_the_gs1_mod_10_digit(body: str, digit: int) -> None:
    assert gs1_check_digit(body) == digit


@given(st.sampled_from([7, 11, 12, 13]).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n)))
def test_a_gtin_with_its_check_digit_is_valid_and_any_single_wrong_digit_is_caught(body: str) -> None:
    code = gtin(body)
    assert is_valid_gtin(code)
    for i in range(len(code)):
        for d in "0123456789":
            if d != code[i]:
                assert not is_valid_gtin(code[:i] + d + code[i + 1 :])


@pytest.mark.parametrize(
    ("scanned", "item_code"),
    [
        ("6901234567892", "6901234567892"),  # EAN-13
        ("06901234567892", "6901234567892"),  # GTIN-14 with indicator 0 is the EAN-13
        ("]E06901234567892", "6901234567892"),  # with the EAN-13 symbology identifier
        ("96385074", "96385074"),  # EAN-8
        ("]E496385074", "96385074"),
        ("012345678905", "012345678905"),  # UPC-A
        ("0012345678905", "012345678905"),  # UPC-A sent as EAN-13: the same item
        ("16901234567899", "16901234567899"),  # GTIN-14 of a case (indicator 1) stays 14 digits
        ("]E3690123456789212345", "6901234567892"),  # EAN-13 with a 5-digit add-on
    ],
)
def test_gtins_read_as_the_code_stores_register(scanned: str, item_code: str) -> None:
    read = interpret_code(scanned)
    assert read.kind is CodeKind.GTIN
    assert read.item_code == item_code
    assert read.gtin is not None and len(read.gtin) == 14 and read.gtin.lstrip("0") == item_code.lstrip("0")
    assert not read.carries_quantity and read.unit is None and read.quantity(3) is None


@pytest.mark.parametrize("scanned", ["6901234567890", "96385075", "012345678901", "16901234567890"])
def test_a_gtin_with_a_wrong_check_digit_is_refused_with_the_expected_digit(scanned: str) -> None:
    with pytest.raises(BarcodeError) as caught:
        interpret_code(scanned)
    assert caught.value.code == "invalid_barcode"
    assert caught.value.detail["expected_check_digit"] == gs1_check_digit(scanned[:-1])
    assert "校验位" in caught.value.message and "check digit" in caught.value.message_en


@pytest.mark.parametrize("scanned", ["MILK-1L", "FR0011", "12345", "]A0ABC-123", "x" * 64])
def test_plain_codes_are_looked_up_as_they_are(scanned: str) -> None:
    read = interpret_code(scanned)
    assert read.kind is CodeKind.PLAIN
    assert read.item_code == scanned.removeprefix("]A0")


# --- GS1 element strings ---------------------------------------------------------------------------


def test_gs1_128_with_symbology_identifier_and_gs_separators_gives_gtin_lot_expiry_serial_and_weight() -> None:
    read = interpret_code(f"]C101069012345678921725063010L240501{GS}21SN0042{GS}3102001250", today=TODAY)
    assert read.kind is CodeKind.GS1 and read.symbology == "]C1"
    assert (read.item_code, read.gtin) == ("6901234567892", "06901234567892")
    assert (read.lot, read.expiry, read.serial) == ("L240501", date(2025, 6, 30), "SN0042")
    assert (read.grams, read.unit, read.quantity(2)) == (12500, "g", 25000)


def test_gs1_datamatrix_human_readable_and_bare_forms_read_the_same() -> None:
    data = f"01069012345678921725063010L240501{GS}21SN0042"
    forms = [f"]d2{data}", f"]Q3{data}", f"{GS}{data}", data, "(01)06901234567892(17)250630(10)L240501(21)SN0042"]
    forms.append("(01) 06901234567892 (17) 250630 (10) L240501 (21) SN0042")
    reads = [interpret_code(form, today=TODAY) for form in forms]
    assert {(r.item_code, r.lot, r.expiry, r.serial) for r in reads} == {
        ("6901234567892", "L240501", date(2025, 6, 30), "SN0042")
    }
    assert [r.symbology for r in reads] == ["]d2", "]Q3", None, None, None, None]


def test_gs1_digital_link_uri_reads_like_its_element_strings() -> None:
    read = interpret_code("https://id.gs1.org/01/06901234567892/10/L1?17=250630", today=TODAY)
    assert (read.kind, read.item_code, read.lot, read.expiry) == (
        CodeKind.GS1,
        "6901234567892",
        "L1",
        date(2025, 6, 30),
    )


@pytest.mark.parametrize(
    ("ai", "value", "grams"),
    [("3100", "000013", 13000), ("3102", "001250", 12500), ("3103", "001250", 1250), ("3105", "123456", 1235)],
)
def test_net_weight_in_kg_becomes_whole_grams_rounded_half_up(ai: str, value: str, grams: int) -> None:
    assert interpret_code(f"0106901234567892{ai}{value}").grams == grams


@pytest.mark.parametrize(
    ("element", "fen"),
    [("3922" + "1234", 1234), ("3920" + "12", 1200), ("3923" + "12345", 1235), ("3932156" + "999", 999)],
)
def test_amount_payable_in_yuan_becomes_fen(element: str, fen: int) -> None:
    assert interpret_code(f"0106901234567892{element}").amount_fen == fen


def test_an_amount_in_another_currency_is_refused() -> None:
    with pytest.raises(BarcodeError, match="not yuan"):
        interpret_code("01069012345678923932840999")


def test_expiry_day_00_is_the_last_day_of_the_month_and_use_by_wins_over_best_before() -> None:
    assert interpret_code("010690123456789217240200").expiry == date(2024, 2, 29)
    assert interpret_code("010690123456789215240610").expiry == date(2024, 6, 10)
    assert interpret_code("01069012345678921524061017240620").expiry == date(2024, 6, 20)


def test_two_digit_years_follow_the_gs1_sliding_century_when_today_is_known() -> None:
    code = "010690123456789217" + "990101"
    assert interpret_code(code).expiry == date(2099, 1, 1)
    assert interpret_code(code, today=date(2024, 5, 1)).expiry == date(1999, 1, 1)
    assert interpret_code(code, today=date(2060, 5, 1)).expiry == date(2099, 1, 1)
    assert interpret_code("010690123456789217" + "010101", today=date(2060, 1, 1)).expiry == date(2101, 1, 1)


def test_a_datamatrix_read_without_identifier_with_its_lot_last_is_gs1() -> None:
    # The usual DataMatrix layout: fixed-length fields first, the variable-length lot last, so no GS is needed.
    read = interpret_code("01069675730163921727011510NOID", today=TODAY)
    assert (read.kind, read.item_code, read.lot, read.expiry) == (
        CodeKind.GS1,
        "6967573016392",
        "NOID",
        date(2027, 1, 15),
    )
    assert interpret_code(f"0106967573016392{GS}10AB-1{GS}21X9").serial == "X9"
    assert interpret_code("0206901234567892376").count == 6


def test_a_code_that_starts_like_a_bare_gs1_string_but_does_not_read_is_refused_saying_so() -> None:
    with pytest.raises(BarcodeError) as caught:
        interpret_code("0106967573016392ABC")  # a right GTIN, then no application identifier
    assert "symbology identifier" in caught.value.message_en and "码制标识符" in caught.value.message
    with pytest.raises(BarcodeError, match="check digit") as misread:
        interpret_code("01069675730163931727011510NOID")  # a GS1 string whose GTIN was misread
    assert "应为 2" in misread.value.message
    # A wrong GTIN and no GS1 string after it: an internal code that only starts like one.
    assert interpret_code("0106967573016393ABC").kind is CodeKind.PLAIN


def test_a_logistic_label_with_contained_gtin_and_count_gives_pieces() -> None:
    read = interpret_code(f"]C10206901234567892376{GS}10L1")
    assert (read.item_code, read.count, read.unit, read.quantity(2), read.lot) == ("6901234567892", 6, None, 12, "L1")


@pytest.mark.parametrize(
    ("scanned", "reason"),
    [
        ("]C100369012340000000001", "names no item"),  # SSCC only
        ("]C1010690123456789010L1", "not valid"),  # GTIN check digit
        (f"]C10106901234567892{GS}10L1{GS}10L2", "twice"),
        ("]C1010690123456789231020012503710", "more than one"),
        ("]C1010690123456789217241301", "not a valid GS1"),  # month 13
        ("]C1010690123456789217240431", "not a valid GS1"),  # 31 April
        ("]C101069012345678923102000000", "zero"),
        ("]C101069012345", "not a valid GS1"),  # truncated
        ("(01)0690123456789", "human-readable"),
        ("(99)ABC", "names no item"),
        ("https://example.com/shop?q=1", "Digital Link"),
        ("]C1", "names no item"),
        ("01069012345678903102001250", "not valid"),  # bare digits that are a GS1 string
    ],
)
def test_broken_gs1_codes_are_refused_with_the_reason(scanned: str, reason: str) -> None:
    with pytest.raises(BarcodeError, match=reason):
        interpret_code(scanned)


# --- scale labels -----------------------------------------------------------------------------------


def test_the_default_formats_read_weight_labels_and_weight_and_amount_labels_of_the_same_plu() -> None:
    weight = interpret_code(encode_label("2PPPPPPWWWWWC", 11, grams=1250))
    both = interpret_code(encode_label("2PPPPPPMMMMMWWWWWC", 11, grams=1250, amount_fen=3750))
    assert weight.kind is both.kind is CodeKind.SCALE_LABEL
    assert weight.item_code == both.item_code == "2000011" == label_item_code("2PPPPPPWWWWWC", 11)
    assert (weight.plu, weight.grams, weight.amount_fen, weight.unit) == ("000011", 1250, None, "g")
    assert (both.grams, both.amount_fen, both.quantity(2), both.amount(2)) == (1250, 3750, 2500, 7500)
    assert both.label_format == "2PPPPPPMMMMMWWWWWC"


def test_a_label_of_a_configured_format_with_a_wrong_check_digit_is_refused_not_read_as_an_ean() -> None:
    good = encode_label("2PPPPPPWWWWWC", 11, grams=1250)
    bad = good[:-1] + str((int(good[-1]) + 1) % 10)
    with pytest.raises(BarcodeError) as caught:
        interpret_code(bad)
    assert caught.value.detail["label_format"] == "2PPPPPPWWWWWC"


def test_a_code_that_fits_no_format_is_a_gtin_and_formats_are_per_store() -> None:
    store_formats = ["21PPPPPMMMMMC", "22PPPPPWWWWWC"]
    code = encode_label("21PPPPPMMMMMC", 42, amount_fen=1999)
    assert interpret_code(code).label_format == "2PPPPPPWWWWWC"  # the default format reads it otherwise
    in_store = gtin("230000000001")
    assert interpret_code(in_store, store_formats).kind is CodeKind.GTIN  # an in-store EAN-13 (20-29)
    read = interpret_code(code, store_formats)
    assert (read.item_code, read.amount_fen, read.grams, read.carries_quantity) == ("2100042", 1999, None, False)
    assert interpret_code(encode_label("22PPPPPWWWWWC", 42, grams=500), store_formats).item_code == "2200042"


def test_the_label_item_code_keeps_flag_digits_wherever_they_are() -> None:
    fmt = parse_label_format("2PPPP9WWWWWC")
    code = encode_label(fmt, 77, grams=5)
    assert code[5] == "9" and interpret_code(code, [fmt]).item_code == "200779" == label_item_code(fmt, 77)


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("PPPPPPWWWWWWC", "flag digit"),
        ("2PPPPPPC", "weight"),
        ("2WWWWWWWWC", "PLU"),
        ("2PPPWWWPPPC", "one run"),
        ("2PPPPPCWWWWW", "last"),
        ("2PPPPPPWWWWWX", "only digits"),
        ("2PPWWC", "characters"),
        ("2" + "P" * 9 + "WWWWWC", "at most 8"),
        ("", "only digits"),
    ],
)
def test_bad_label_patterns_are_refused_saying_why(pattern: str, reason: str) -> None:
    with pytest.raises(LabelFormatError, match=reason):
        parse_label_format(pattern)


def test_formats_that_could_read_the_same_code_are_refused_together() -> None:
    with pytest.raises(LabelFormatError, match="same code"):
        parse_label_formats(["2PPPPPPWWWWWC", "2PPPPPPMMMMMC"])
    with pytest.raises(LabelFormatError, match="same code"):
        parse_label_formats(["2PPPPPPWWWWWC", "22PPPPPWWWWWC"])
    assert len(parse_label_formats(["21PPPPPWWWWWC", "22PPPPPMMMMMC", *DEFAULT_LABEL_FORMATS[1:]])) == 3


@st.composite
def label_formats(draw: st.DrawFn) -> str:
    flag = draw(st.text("0123456789", min_size=1, max_size=3))
    runs = [draw(st.sampled_from(["P"])) * draw(st.integers(1, 8))]
    values = draw(st.sampled_from(["W", "M", "WM", "MW"]))
    runs += [letter * draw(st.integers(1, 7)) for letter in values]
    pattern = flag + "".join(runs) + ("C" if draw(st.booleans()) else "")
    assume(8 <= len(pattern) <= 24)
    return pattern


@given(pattern=label_formats(), data=st.data())
def test_any_label_reads_back_the_plu_weight_and_amount_it_was_printed_with(pattern: str, data: st.DataObject) -> None:
    fmt = parse_label_format(pattern)

    def fits(span: tuple[int, int]) -> st.SearchStrategy[int]:
        return st.integers(0, 10 ** (span[1] - span[0]) - 1)

    plu = data.draw(fits(fmt.plu))
    grams = data.draw(fits(fmt.grams)) if fmt.grams else None
    amount = data.draw(fits(fmt.amount)) if fmt.amount else None
    code = encode_label(fmt, plu, grams=grams, amount_fen=amount)
    read = interpret_code(code, [fmt])
    assert read.kind is CodeKind.SCALE_LABEL
    assert (int(read.plu or "x"), read.grams, read.amount_fen) == (plu, grams, amount)
    assert read.item_code == label_item_code(fmt, plu)


# --- any input --------------------------------------------------------------------------------------

_VALID = [
    f"]C101069012345678921725063010L240501{GS}21SN0042{GS}3102001250",
    "(01)06901234567892(17)250630(10)L240501",
    encode_label("2PPPPPPMMMMMWWWWWC", 11, grams=1250, amount_fen=3750),
    "6901234567892",
]


@settings(max_examples=400)
@given(st.text(max_size=80) | st.text("0123456789()]Cd2E" + GS, max_size=40))
def test_any_text_is_read_or_refused_with_a_barcode_error(text: str) -> None:
    try:
        read = interpret_code(text, today=TODAY)
    except BarcodeError as err:
        assert err.message and err.message_en and err.code == "invalid_barcode"
        return
    assert 1 <= len(read.item_code) <= 64 and re.fullmatch(r"[!-~]+", read.item_code)
    assert read.grams is None or read.grams > 0 or read.kind is CodeKind.SCALE_LABEL


@given(code=st.sampled_from(_VALID), data=st.data())
def test_truncated_or_damaged_codes_are_read_or_refused_never_crash(code: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(code)))
    damaged = code[:cut] + data.draw(st.text("0123456789" + GS, max_size=3))
    with contextlib.suppress(BarcodeError):
        interpret_code(damaged)


@given(st.binary(max_size=60))
def test_random_bytes_as_text_are_read_or_refused(raw: bytes) -> None:
    with contextlib.suppress(BarcodeError):
        interpret_code(raw.decode("latin-1"))


def test_too_long_and_empty_codes_are_refused() -> None:
    for code in ("", "1" * 201, "a" * 65):
        with pytest.raises(BarcodeError):
            interpret_code(code)


# --- the examples of docs/barcodes.md ---------------------------------------------------------------


def _doc_examples() -> list[list[str]]:
    text = DOC.read_text("utf-8")
    table = text.split("<!-- examples: interpret_code -->", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in table.strip().splitlines() if line.startswith("| `")]
    return [[cell.strip().strip("`") for cell in row.strip("|").split("|")] for row in rows]


def test_the_guide_s_example_codes_read_as_documented() -> None:
    examples = _doc_examples()
    assert len(examples) >= 10
    for scanned, kind, item_code, lot, expiry, grams, amount in examples:
        read = interpret_code(scanned.replace("<GS>", GS), today=TODAY)
        shown = (read.kind.value, read.item_code, read.lot or "", read.expiry.isoformat() if read.expiry else "")
        assert shown == (kind, item_code, lot, expiry), scanned
        assert (str(read.grams or ""), str(read.amount_fen or "")) == (grams, amount), scanned


def test_the_guide_s_refused_examples_are_refused() -> None:
    text = DOC.read_text("utf-8")
    refused = re.findall(r"^\| `([^`]+)` \| refused", text, re.MULTILINE)
    assert len(refused) >= 3
    for scanned in refused:
        with pytest.raises(BarcodeError):
            interpret_code(scanned.replace("<GS>", GS))


def test_the_guide_s_python_session_runs_as_shown() -> None:
    (session,) = re.findall(r"```pycon\n(.*?)```", DOC.read_text("utf-8"), re.DOTALL)
    test = doctest.DocTestParser().get_doctest(session, {}, "docs/barcodes.md", str(DOC), 0)
    runner = doctest.DocTestRunner()
    runner.run(test)
    assert runner.summarize(verbose=False) == doctest.TestResults(failed=0, attempted=5)


def test_the_guide_s_scan_data_is_valid_scan_data() -> None:
    from edge.bus.payloads import ScanData, to_command

    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text("utf-8"), re.DOTALL)
    assert blocks
    for block in blocks:
        scan = ScanData.model_validate(json.loads(block))
        assert scan.scale is not None and to_command("pda-1", "e-1", scan).lines[0].code == scan.code


def test_the_guide_s_settings_examples_are_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge.config import load_settings

    text = DOC.read_text("utf-8")
    (toml,) = re.findall(r"```toml\n(.*?)```", text, re.DOTALL)
    (config := tmp_path / "storebox.toml").write_text(toml, "utf-8")
    assert load_settings(config).scale_label_formats == ("21PPPPPWWWWWC", "22PPPPPMMMMMC")
    (env,) = re.findall(r"`STOREBOX_SCALE_LABEL_FORMATS='(.*?)'`", text)
    monkeypatch.setenv("STOREBOX_SCALE_LABEL_FORMATS", env)
    assert load_settings().scale_label_formats == ("21PPPPPWWWWWC", "22PPPPPMMMMMC")
    monkeypatch.setenv("STOREBOX_SCALE_LABEL_FORMATS", '["2PPPPPPWWWWWC", "2PPPPPPMMMMMC"]')
    with pytest.raises(ConfigError, match="same code"):
        load_settings()


def test_the_demo_plu_table_in_the_guide_matches_the_demo_catalog() -> None:
    from edge.demo.catalog import build_catalog
    from edge.demo.seed import plu_barcodes

    rows = re.findall(r"^\| (\d+) \| `(\d+)` \| (\w+) \|", DOC.read_text("utf-8"), re.MULTILINE)
    catalog = {item.plu: item for item in build_catalog().items if item.plu is not None}
    assert rows and len(rows) == len(catalog)
    for plu, code, sku in rows:
        assert catalog[int(plu)].sku == sku and code in plu_barcodes(int(plu))


@pytest.mark.slow  # seeds the whole demo store (~7 s)
def test_a_demo_scale_label_sells_the_weighed_item_of_its_plu(tmp_path: Path) -> None:
    from edge.bus.payloads import ScanData, to_command
    from edge.config import Settings
    from edge.db import connect, migrate
    from edge.demo.seed import seed_demo
    from edge.finance.rulebook import rule_book
    from edge.ledger.posting import PostingContext, post

    now = datetime(2025, 3, 1, 2, 30, tzinfo=UTC)
    ctx = PostingContext(now=now, business_date=now.date(), rules=rule_book())
    settings = Settings(data_dir=tmp_path)
    conn = connect(settings.db_path)
    try:
        migrate(conn)
        seed_demo(conn, settings, ctx)
        item = conn.execute("SELECT sku, price_fen FROM items WHERE sku = 'FR0012'").fetchone()
        label = encode_label(DEFAULT_LABEL_FORMATS[1], 2, grams=1250, amount_fen=4999)
        scan = ScanData.model_validate({"code": label, "mode": "sale", "location": "cold"})
        conn.execute("BEGIN IMMEDIATE")
        result = post(conn, to_command("pos-1", "label-1", scan), ctx)
        conn.execute("COMMIT")
        assert result.ok, result
        line = conn.execute(
            "SELECT sku, code, unit, qty_base, gross_fen FROM document_lines WHERE document_id = ?",
            (result.document_id,),
        ).fetchone()
        assert tuple(line) == (item["sku"], "2000002", "g", 1250, 4999)  # the label's amount, not 1250 g x price
        assert item["price_fen"] * 1250 != 4999
    finally:
        conn.close()
