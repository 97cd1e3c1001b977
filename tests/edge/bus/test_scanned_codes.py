"""Codes in `evt/sale` and `evt/scan`: each goes through `interpret_code` into the ledger line (item, lot,
expiry, grams, amount), with the store's label formats; disagreements and unreadable codes are refused."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.bus.event_kinds import decode_options, device_event_kinds
from edge.bus.payloads import DecodedEvent, DecodeOptions, Rejection, decode_event
from edge.config import Settings
from edge.devices.barcodes import GS, LABEL_FORMATS_KEY, encode_label, parse_label_formats
from edge.ledger.commands import DocType, Line, PostDocument

TS = "2024-05-01T09:30:00+08:00"
GS1_CARTON = f"]C101069012345678921725063010L240501{GS}3102001250"
WEIGHT_LABEL = encode_label("2PPPPPPWWWWWC", 11, grams=1250)
PRICED_LABEL = encode_label("2PPPPPPMMMMMWWWWWC", 11, grams=1250, amount_fen=3750)


def decode(kind: str, data: dict[str, Any], options: DecodeOptions | None = None) -> DecodedEvent | Rejection:
    body = json.dumps({"id": "e-1", "ts": TS, "data": data}).encode()
    return decode_event("pda-1", kind, body, options=options)


def command(kind: str, data: dict[str, Any], options: DecodeOptions | None = None) -> PostDocument:
    out = decode(kind, data, options)
    assert isinstance(out, DecodedEvent) and out.command is not None, out
    return out.command


def refusal(kind: str, data: dict[str, Any], options: DecodeOptions | None = None) -> Rejection:
    out = decode(kind, data, options)
    assert isinstance(out, Rejection), out
    assert out.code == "invalid_data"
    return out


def test_plain_codes_make_the_same_lines_as_before() -> None:
    cmd = command(
        "sale", {"lines": [{"code": "6901234567892", "qty": 2, "price_fen": 350}, {"code": "SKU2", "qty": 1}]}
    )
    assert cmd.lines == (Line("6901234567892", 2, 350), Line("SKU2", 1))
    assert command("scan", {"code": "SKU1", "mode": "sale"}).lines == (Line("SKU1", 1),)


def test_a_weight_label_sells_its_grams_and_qty_counts_labels() -> None:
    (line,) = command("sale", {"lines": [{"code": WEIGHT_LABEL}]}).lines
    assert line == Line("2000011", 1250, unit="g")
    (two,) = command("sale", {"lines": [{"code": WEIGHT_LABEL, "qty": 2}]}).lines
    assert (two.qty, two.unit) == (2500, "g")


def test_a_priced_label_sells_at_its_amount_in_sales_and_returns_not_in_receipts_or_counts() -> None:
    (sold,) = command("sale", {"lines": [{"code": PRICED_LABEL}]}).lines
    assert (sold.qty, sold.amount_fen) == (1250, 3750)
    returned = command("scan", {"code": PRICED_LABEL, "mode": "return", "reason": "quality"})
    assert returned.type is DocType.CUSTOMER_RETURN and returned.lines[0].amount_fen == 3750
    for mode in ("receive", "count"):
        (line,) = command("scan", {"code": PRICED_LABEL, "mode": mode}).lines
        assert (line.qty, line.unit, line.amount_fen) == (1250, "g", None)


def test_a_gs1_code_fills_lot_and_expiry_of_a_receipt_and_the_lot_of_a_sale() -> None:
    received = command("scan", {"code": GS1_CARTON, "mode": "receive", "price_fen": 2})
    assert received.lines == (
        Line("6901234567892", 12500, price_fen=2, unit="g", lot="L240501", expiry=date(2025, 6, 30)),
    )
    (sold,) = command("sale", {"lines": [{"code": GS1_CARTON}]}).lines
    assert (sold.lot, sold.expiry, sold.qty) == ("L240501", None, 12500)


def test_what_the_device_sends_must_agree_with_the_code() -> None:
    assert "differs" in refusal("scan", {"code": GS1_CARTON, "mode": "receive", "lot": "OTHER"}).message_en
    assert "differs" in refusal("scan", {"code": GS1_CARTON, "mode": "receive", "expiry": "2025-07-01"}).message_en
    same = command("scan", {"code": GS1_CARTON, "mode": "receive", "lot": "L240501", "expiry": "2025-06-30"})
    assert same.lines[0].lot == "L240501"
    assert "price_fen" in refusal("sale", {"lines": [{"code": PRICED_LABEL, "price_fen": 100}]}).message_en
    assert "qty is required" in refusal("sale", {"lines": [{"code": "6901234567892"}]}).message_en
    zero = encode_label("2PPPPPPWWWWWC", 11, grams=0)
    assert "quantity of 0" in refusal("scan", {"code": zero, "mode": "sale"}).message_en
    assert command("scan", {"code": zero, "mode": "count"}).lines[0].qty == 0


def test_unreadable_codes_are_invalid_data_in_chinese_and_english() -> None:
    out = refusal("sale", {"lines": [{"code": "6901234567890", "qty": 1}]})
    assert "校验位" in out.message and "wrong check digit (expected 2)" in out.message_en
    assert "not a valid GS1" in refusal("scan", {"code": "]C10106901", "mode": "sale"}).message_en
    for code in ("", "x" * 201, "牛奶", "a\tb"):
        refusal("scan", {"code": code, "mode": "sale"})


def test_a_datamatrix_code_read_without_identifier_receives_its_lot_and_expiry() -> None:
    (line,) = command("scan", {"code": "01069675730163921727011510NOID", "mode": "receive"}).lines
    assert line == Line("6967573016392", 1, lot="NOID", expiry=date(2027, 1, 15))
    out = refusal("scan", {"code": "0106967573016392ABC", "mode": "receive"})
    assert "symbology identifier" in out.message_en and "码制标识符" in out.message


def test_receiving_goods_that_expired_before_the_event_s_date_is_refused() -> None:
    expired = "]d201069012345678921724010110OLD"  # lot OLD, expiry 2024-01-01; the scan is of 2024-05-01
    out = decode("scan", {"code": expired, "mode": "receive", "location": "backroom"})
    assert isinstance(out, Rejection) and out.code == "expired", out
    assert "OLD" in out.message and "过期" in out.message
    assert "expired 2024-01-01" in out.message_en and "2024-05-01" in out.message_en
    sent = decode("scan", {"code": "SKU1", "mode": "receive", "lot": "OLD", "expiry": "2024-04-30"})
    assert isinstance(sent, Rejection) and sent.code == "expired"
    weighed = decode("scan", {"code": expired, "mode": "receive", "scale": "scale-1"})
    assert isinstance(weighed, Rejection) and weighed.code == "expired"
    # The last day is still good; other modes are the ledger's business (a sale refuses an expired lot).
    assert command("scan", {"code": "SKU1", "mode": "receive", "expiry": "2024-05-01"}).lines[0].expiry == date(
        2024, 5, 1
    )
    assert command("scan", {"code": expired, "mode": "count"}).lines[0].lot == "OLD"


_IDENTIFIERS = {"qty", "scale", "price_fen", "reason", "reason_text", "expiry", "supplier", "lot", "code", "data"}


def untranslated(message: str) -> list[str]:
    """Runs of three or more English words left in a Chinese message (quoted values and field names aside)."""
    text = re.sub(r"'[^']*'", "", message)
    return [run for run in re.findall(r"[A-Za-z]+(?: [A-Za-z]+){2,}", text) if set(run.split()) - _IDENTIFIERS]


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("scan", {"code": "SKU1", "mode": "sale", "qty": 2, "scale": "scale-1"}),
        ("scan", {"code": encode_label("2PPPPPPWWWWWC", 1, grams=0), "mode": "sale"}),
        ("scan", {"code": "]C101069012345678921725063010CODELOT", "mode": "receive", "lot": "EVLOT"}),
        ("scan", {"code": GS1_CARTON, "mode": "receive", "expiry": "2025-07-01"}),
        ("sale", {"lines": [{"code": "SKU1", "qty": 1}, {"code": PRICED_LABEL, "price_fen": 100}]}),
        ("sale", {"lines": [{"code": "6901234567892"}]}),
        ("scan", {"code": WEIGHT_LABEL, "mode": "sale", "scale": "scale-1"}),
        ("scan", {"code": "SKU1", "mode": "sale", "qty": 0}),
        ("scan", {"code": "SKU1", "mode": "return"}),
        ("scan", {"code": "SKU1", "mode": "return", "reason": "other"}),
        ("scan", {"code": "SKU1", "mode": "sale", "reason": "quality"}),
        ("scan", {"code": "SKU1", "mode": "sale", "supplier": "sup-1"}),
        ("scan", {"code": "SKU1", "mode": "count", "price_fen": 1}),
        ("scan", {"code": "SKU1", "mode": "receive", "expiry": "2024-02-30"}),
        ("scan", {"code": "SKU1", "mode": "bogus", "qty": "2", "colour": "red"}),
        ("scan", {"code": "x" * 300, "mode": "sale"}),
        ("sale", {"lines": [], "payment": "bitcoin"}),
        ("sale", {"lines": [{"code": "SKU1", "qty": 1}], "location": "no where"}),
        ("weight", {"grams": 1.5, "stable": "yes"}),
        ("weight", {"grams": 10**12, "stable": True, "status": ""}),
    ],
)
def test_every_refusal_says_why_in_chinese_and_in_english(kind: str, data: dict[str, Any]) -> None:
    out = decode_event(
        "pda-1", kind, json.dumps({"id": "e-1", "ts": TS, "data": data}).encode(), kinds=device_event_kinds()
    )
    assert isinstance(out, Rejection), out
    assert re.search(r"[\u4e00-\u9fff]", out.message.split(":", 1)[1]), out.message
    assert "Value error" not in out.message and "Input should" not in out.message, out.message
    assert untranslated(out.message) == [], out.message
    assert out.message_en.startswith(f"invalid {kind} event data: ") and out.message_en != out.message


def test_envelope_and_json_refusals_say_why_in_chinese() -> None:
    for body in (b'{"id": "e-1", "ts": "yesterday", "data": {}}', b'{"id": "a", "id": "b"}', b"{nope", b"[1, NaN]"):
        out = decode_event("pda-1", "scan", body)
        assert isinstance(out, Rejection)
        assert untranslated(out.message) == [] and "Expecting" not in out.message, out.message


def test_the_store_s_label_formats_come_from_its_settings() -> None:
    settings = Settings(scale_label_formats=("22PPPPPMMMMMC",))
    options = decode_options(settings)
    assert options.extra[LABEL_FORMATS_KEY] == parse_label_formats(["22PPPPPMMMMMC"])
    label = encode_label("22PPPPPMMMMMC", 7, amount_fen=1999)
    (line,) = command("sale", {"lines": [{"code": label}]}, options).lines
    assert (line.code, line.qty, line.amount_fen, line.unit) == ("2200007", 1, 1999, None)
    # Not a label of this store: an in-store EAN-13 (prefix 20-29) looked up as it is.
    assert command("sale", {"lines": [{"code": WEIGHT_LABEL, "qty": 1}]}, options).lines[0].code == WEIGHT_LABEL
    assert "weight" in device_event_kinds()


_code = st.sampled_from(
    ["SKU1", "6901234567892", "6901234567890", WEIGHT_LABEL, PRICED_LABEL, GS1_CARTON, "(01)06901234567892(10)A", ""]
) | st.text(max_size=30)
_value = st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=5)


@settings(max_examples=200)
@given(
    scan=st.fixed_dictionaries(
        {"code": _code, "mode": st.sampled_from(["sale", "return", "count", "receive"])},
        optional={
            "qty": _value,
            "lot": st.sampled_from(["L240501", "X"]),
            "scale": _value | st.just("scale-1"),
            "price_fen": _value,
            "reason": st.just("quality"),
            "expiry": st.just("2025-06-30"),
        },
    ),
    sale_lines=st.lists(
        st.fixed_dictionaries({"code": _code}, optional={"qty": _value, "price_fen": _value}), max_size=3
    ),
)
def test_any_scan_or_sale_with_any_code_is_a_command_a_job_or_invalid_data(
    scan: dict[str, Any], sale_lines: list[dict[str, Any]]
) -> None:
    for kind, data in (("scan", scan), ("sale", {"lines": sale_lines})):
        out = decode_event(
            "pda-1", kind, json.dumps({"id": "e", "ts": TS, "data": data}).encode(), kinds=device_event_kinds()
        )
        if isinstance(out, Rejection):
            assert out.code == "invalid_data" and out.message and out.message_en
            assert re.search(r"[\u4e00-\u9fff]", out.message) and "Value error" not in out.message
            continue
        assert (out.command is None) != (out.job is None)
        lines = out.command.lines if out.command else out.job.args[0].lines  # type: ignore[union-attr]
        for line in lines:
            assert 1 <= len(line.code) <= 64 and line.qty >= 0
            assert line.amount_fen is None or line.price_fen is None
