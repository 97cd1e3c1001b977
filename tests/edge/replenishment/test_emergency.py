"""The emergency-request parser (edge/replenishment/emergency.py): numerals, units, deadlines, temperatures, modes,
the item's ambiguity, and any text at all giving a parse or a clear error."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.replenishment.emergency import (
    EmergencyParse,
    ParseOptions,
    chinese_number,
    describe,
    map_unit,
    parse_request,
    with_overrides,
)
from edge.replenishment.errors import EmergencyTextInvalid
from tests.edge.replenishment.emergency_support import demo_index

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 12, 5, 10, 0, tzinfo=SHANGHAI)  # a Saturday
TODAY = NOW.date()


def p(text: str, now: datetime = NOW) -> EmergencyParse:
    return parse_request(text, demo_index(), now.astimezone(SHANGHAI).date(), now)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("五十", 50),
        ("两百", 200),
        ("一百二十", 120),
        ("一百零五", 105),
        ("十二", 12),
        ("十", 10),
        ("3千", 3000),
        ("1.5万", 15000),
        ("两千五百", 2500),
        ("二五", 25),
        ("一万零一", 10001),
    ],
)
def test_chinese_numerals(text: str, value: int) -> None:
    assert chinese_number(text) == value


@given(st.integers(min_value=0, max_value=10**9))
def test_arabic_numbers_read_as_themselves(n: int) -> None:
    assert chinese_number(str(n)) == n


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        ("今天", "2026-12-05T23:59"),
        ("今晚", "2026-12-05T21:00"),
        ("明早", "2026-12-06T08:00"),
        ("明天上午", "2026-12-06T12:00"),
        ("明天中午前", "2026-12-06T12:00"),
        ("后天", "2026-12-07T23:59"),
        ("下午3点前", "2026-12-05T15:00"),
        ("2小时内", "2026-12-05T12:00"),
        ("半小时内", "2026-12-05T10:30"),
        ("周五前", "2026-12-11T23:59"),
        ("下周一", "2026-12-07T23:59"),
        ("12月8日前", "2026-12-08T23:59"),
        ("1月3号", "2027-01-03T23:59"),
        ("晚上8点", "2026-12-05T20:00"),
        ("9:30前", "2026-12-06T09:30"),  # already past today: tomorrow
        ("by 5pm", "2026-12-05T17:00"),
        ("tomorrow morning", "2026-12-06T08:00"),
    ],
)
def test_deadlines_resolve_against_now_in_the_store_time_zone(said: str, expected: str) -> None:
    parse = p(f"可口可乐听装 2箱 {said}")
    assert parse.deadline is not None
    assert parse.deadline.tzinfo is not None
    assert parse.deadline.astimezone(SHANGHAI).strftime("%Y-%m-%dT%H:%M") == expected


def test_now_in_utc_is_read_in_the_store_time_zone() -> None:
    # 17:30 UTC on the 4th is 01:30 on the 5th in Shanghai: 明早 is the 6th.
    parse = p("可口可乐听装 2箱 明早", datetime(2026, 12, 4, 17, 30, tzinfo=UTC))
    assert parse.deadline == datetime(2026, 12, 6, 8, 0, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("said", "chain", "temperature"),
    [
        ("-20℃", "frozen", -20),
        ("零下18度", "frozen", -18),
        ("−18°C", "frozen", -18),
        ("负18度", "frozen", -18),
        ("速冻", "frozen", None),
        ("冷藏", "chilled", None),
        ("0-4度", "chilled", 4),
        ("2~8℃", "chilled", 8),
        ("常温", "ambient", None),
    ],
)
def test_temperatures_name_the_cold_chain(said: str, chain: str, temperature: int | None) -> None:
    parse = p(f"思念黑芝麻汤圆 10袋 {said}")
    assert parse.cold_chain == chain
    assert parse.temperature_c == temperature
    conflict = any(n.code == "cold_chain_conflict" for n in parse.notes)
    assert conflict == (chain != "frozen")  # tangyuan are frozen goods


def test_liquor_strength_is_no_temperature() -> None:
    parse = p("牛栏山二锅头 42度 500ml 2箱")
    assert parse.sku == "LQ0009" and parse.temperature_c is None and parse.cold_chain is None


def test_the_headline_example() -> None:
    parse = p("急需 -20℃ 冷冻水饺 50 箱，明早前到，车载调拨")
    assert parse.sku is None and parse.ambiguous  # nine dumplings: shown, never guessed
    assert {"FZ0001", "FZ0004"} <= {c.sku for c in parse.candidates}
    assert (parse.quantity, parse.unit, parse.urgent, parse.vehicle, parse.mode) == (50, "箱", True, True, "transfer")
    assert parse.cold_chain == "frozen" and parse.temperature_c == -20
    assert parse.deadline == datetime(2026, 12, 6, 8, 0, tzinfo=SHANGHAI)
    assert not parse.complete
    # Choosing the item completes it: the demo's 1 kg dumplings come in cases of 10 bags.
    chosen = with_overrides(parse, demo_index(), {"sku": "FZ0001"})
    assert chosen.sku == "FZ0001" and chosen.qty_base == 500 and not chosen.ambiguous and chosen.complete
    # A unit the item does not have is a clear note, the parse kept.
    odd = with_overrides(parse, demo_index(), {"sku": "FZ0001", "unit": "瓶"})
    assert odd.qty_base is None
    note = next(n for n in odd.notes if n.code == "unknown_unit")
    assert "袋" in note.message and note.level == "error"


@pytest.mark.parametrize(
    ("text", "unit", "item_unit", "qty_base"),
    [
        ("猪五花肉 3斤", "斤", "斤", 1500),
        ("猪五花肉 1.5公斤", "kg", "kg", 1500),
        ("猪五花肉 800g", "g", "g", 800),
        ("红牛 2件", "件", "箱", 48),
        ("可口可乐听装 3提", "提", "提", 18),
        ("可口可乐听装 48罐", "罐", "听", 48),
        ("旺旺雪饼 20包", "包", "袋", 20),
        ("可口可乐听装 24", None, "听", 24),
    ],
)
def test_units_map_to_the_item_units(text: str, unit: str | None, item_unit: str, qty_base: int) -> None:
    parse = p(text)
    assert (parse.unit, parse.item_unit, parse.qty_base) == (unit, item_unit, qty_base)


def test_fractions_of_a_base_unit_are_refused_with_a_note() -> None:
    item = demo_index().items["DR0001"]
    match = map_unit(item, 0.5, "听")
    assert match.qty_base is None and match.note is not None and match.note.code == "quantity_fraction"
    assert map_unit(item, 1.5, "箱").qty_base == 36


def test_numeral_brands_are_not_quantities() -> None:
    parse = p("三只松鼠开心果 12袋")
    assert (parse.sku, parse.quantity) == ("SN0015", 12)
    parse = p("六个核桃 3箱")
    assert (parse.sku, parse.quantity, parse.unit) == ("DR0055", 3, "箱")


def test_source_store_and_destination_are_read() -> None:
    parse = p("从解放路店调 安慕希 3箱 送到后仓")
    assert (parse.source_store, parse.destination, parse.mode) == ("store-jiefang", "backroom", "transfer")


def test_describe_says_it_in_chinese_and_english() -> None:
    zh, en = describe(p("三全猪肉白菜水饺 20袋 明早 车载调拨 急需"))
    assert "三全猪肉白菜水饺" in zh and "车载调拨" in zh and "加急" in zh and "冷冻" in zh
    assert "FZ0001" in en and "vehicle transfer" in en and "urgent" in en


@pytest.mark.parametrize("text", ["", "   ", "\x00\x07\u200b", "急" * 600])
def test_empty_or_overlong_text_is_a_clear_error(text: str) -> None:
    with pytest.raises(EmergencyTextInvalid) as caught:
        p(text)
    assert caught.value.message and caught.value.message_en


def test_the_length_limit_is_a_setting() -> None:
    with pytest.raises(EmergencyTextInvalid):
        parse_request("可口可乐 3箱", demo_index(), TODAY, NOW, ParseOptions(max_chars=5))


texts = st.one_of(
    st.text(max_size=200),
    st.text(
        alphabet=st.sampled_from(
            list("急需冷冻水饺可乐箱袋提斤公斤两百五十一二三零下度℃-~0123456789点前明早今晚周五月日号小时内 ,，")
        ),
        max_size=80,
    ),
    st.lists(
        st.sampled_from(
            ["可口可乐", "五十", "箱", "-20℃", "明早", "车载调拨", "kkkl", "3点", "12月40日", "99:99", "一万亿"]
        ),
        max_size=12,
    ).map(" ".join),
    st.binary(max_size=200).map(lambda b: b.decode("utf-8", errors="replace")),
    st.integers(min_value=0, max_value=0x10FFFF).map(lambda c: chr(c) * 50 if not 0xD800 <= c <= 0xDFFF else "x"),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts, minutes=st.integers(min_value=0, max_value=60 * 24 * 400))
def test_any_text_gives_a_parse_or_a_clear_error(text: str, minutes: int) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    try:
        parse = parse_request(text, demo_index(), now.astimezone(SHANGHAI).date(), now)
    except EmergencyTextInvalid as err:
        assert err.message and err.message_en
        return
    parse.to_json()  # serialisable
    describe(parse)
    if parse.qty_base is not None:
        assert parse.qty_base > 0
    if parse.sku is not None:
        assert parse.sku in demo_index().items
    assert all(n.level in ("error", "warning", "info") for n in parse.notes)


def test_huge_text_is_refused_before_work() -> None:
    with pytest.raises(EmergencyTextInvalid):
        parse_request("可口可乐" * 1_000_000, demo_index(), TODAY, NOW)


def test_a_naive_now_is_taken_as_store_time() -> None:
    parse = parse_request("可口可乐听装 2箱 明早", demo_index(), date(2026, 12, 5), datetime(2026, 12, 5, 10, 0))
    assert parse.deadline == datetime(2026, 12, 6, 8, 0, tzinfo=SHANGHAI)


def test_half_units_and_several_quantities() -> None:
    parse = p("可口可乐听装 一箱半")
    assert (parse.quantity, parse.unit, parse.qty_base) == (1.5, "箱", 36)
    parse = p("可口可乐听装 半箱")
    assert parse.qty_base == 12
    parse = p("可口可乐听装 2箱 百事可乐听装 3箱")
    assert any(n.code == "several_quantities" for n in parse.notes)
