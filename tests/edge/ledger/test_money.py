"""Money is integer fen; the one rounding rule is half-up, once, at the line."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.ledger.money import div_round_half_up, format_yuan, issue_cost, parse_yuan, tax_included
from tests.edge.ledger.reference import half_up, vat_included

VAT_RATES_BP = (0, 300, 600, 900, 1300)
fen = st.integers(-(10**15), 10**15)


@pytest.mark.parametrize(
    ("text", "fen"),
    [("12.50", 1250), ("12.5", 1250), ("0.05", 5), ("-3.05", -305), ("7", 700), (" 48.00 ", 4800)],
)
def test_parse_yuan_reads_amounts_into_fen(text: str, fen: int) -> None:
    assert parse_yuan(text) == fen


@pytest.mark.parametrize("text", ["12.505", "1e3", "12,50", "", "abc", "--1", "1.", ".5", "NaN", "12.50元"])
def test_parse_yuan_refuses_anything_but_yuan_with_two_decimals(text: str) -> None:
    with pytest.raises(ValueError, match="not an amount"):
        parse_yuan(text)


@pytest.mark.parametrize(("fen", "text"), [(1250, "12.50"), (-5, "-0.05"), (0, "0.00"), (8496, "84.96")])
def test_format_yuan_writes_two_decimals(fen: int, text: str) -> None:
    assert format_yuan(fen) == text


@given(st.integers(-(10**15) + 1, 10**15 - 1))  # parse_yuan reads up to 13 digits of yuan
def test_format_and_parse_round_trip_every_amount(amount: int) -> None:
    text = format_yuan(amount)
    assert parse_yuan(text) == amount
    assert isinstance(parse_yuan(text), int)


@pytest.mark.parametrize(
    ("numerator", "denominator", "rounded"),
    [(5, 10, 1), (15, 10, 2), (25, 10, 3), (-5, 10, -1), (-25, 10, -3), (4, 10, 0), (14, 10, 1), (5, -10, -1)],
)
def test_halves_round_away_from_zero_not_to_even(numerator: int, denominator: int, rounded: int) -> None:
    assert div_round_half_up(numerator, denominator) == rounded


@given(fen, st.integers(-(10**6), 10**6).filter(bool))
def test_div_round_half_up_agrees_with_exact_fractions(numerator: int, denominator: int) -> None:
    assert div_round_half_up(numerator, denominator) == half_up(numerator, denominator)


def test_div_round_half_up_refuses_zero_denominator() -> None:
    with pytest.raises(ZeroDivisionError):
        div_round_half_up(1, 0)


@settings(max_examples=300)
@given(st.integers(0, 10**16), st.sampled_from(VAT_RATES_BP))
def test_tax_in_a_line_is_gross_times_rate_over_one_plus_rate_rounded_half_up_once(gross: int, rate: int) -> None:
    tax = tax_included(gross, rate)
    assert isinstance(tax, int)
    assert tax == vat_included(gross, rate)
    assert 0 <= tax <= gross


@pytest.mark.parametrize(
    ("gross", "rate", "tax"),
    [
        (9600, 1300, 1104),  # 2 cases x 48.00 at 13%: 1104.42 -> 1104
        (300, 1300, 35),  # one can at 3.00: 34.51 -> 35
        (1500, 1300, 173),  # 5 cans: 172.57 -> 173
        (650, 900, 54),  # milk at 9%: 53.67 -> 54
        (1000, 300, 29),  # tea at 3%: 29.13 -> 29
        (60, 0, 0),
    ],
)
def test_worked_tax_examples_in_fen(gross: int, rate: int, tax: int) -> None:
    assert tax_included(gross, rate) == tax


def test_tax_rounds_at_the_line_not_per_unit() -> None:
    # Five cans at 3.00 in one line: 173 fen of VAT; five lines of one can would carry 5 x 35 = 175.
    assert tax_included(5 * 300, 1300) == 173
    assert 5 * tax_included(300, 1300) == 175


@given(st.integers(0, 10**12), st.integers(1, 10**6), st.data())
def test_issue_cost_is_the_moving_average_rounded_half_up(value: int, on_hand: int, data: st.DataObject) -> None:
    qty_out = data.draw(st.integers(1, on_hand))
    cost = issue_cost(value, qty_out, on_hand)
    if qty_out == on_hand:
        assert cost == value
    else:
        assert cost == half_up(value * qty_out, on_hand)
    assert 0 <= cost <= value


def test_issue_that_empties_balance_takes_remaining_value() -> None:
    assert issue_cost(100, 3, 3) == 100
    assert issue_cost(100, 1, 3) == 33
    assert issue_cost(67, 1, 2) == 34  # 33.5 rounds up
    assert issue_cost(33, 1, 1) == 33  # the last one takes what is left: 33 + 34 + 33 = 100


@given(st.integers(0, 10**9), st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_issuing_a_balance_piece_by_piece_takes_exactly_its_value(value: int, pieces: list[int]) -> None:
    on_hand = sum(pieces)
    taken = 0
    for qty in pieces:
        cost = issue_cost(value - taken, qty, on_hand)
        taken += cost
        on_hand -= qty
    assert on_hand == 0 and taken == value
