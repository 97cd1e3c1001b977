"""Calendar facts: chinese_calendar for the years it knows, the documented estimate after 2026."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import chinese_calendar
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.forecast import calendar
from edge.forecast.calendar import Festival, date_range, day_facts, describe, festival_dates

LUNAR = json.loads((Path(calendar.__file__).with_name("lunar_festivals.json")).read_text(encoding="utf-8"))["years"]


def test_spring_festival_2026_holiday_and_make_up_day_come_from_chinese_calendar() -> None:
    days = [date(2026, 2, 14), date(2026, 2, 17), date(2026, 2, 24), date(2026, 3, 2)]
    f = day_facts(days)
    assert list(f.is_makeup_workday) == [True, False, False, False]  # Saturday 14 Feb worked (调休)
    assert list(f.is_holiday) == [False, True, False, False]
    assert f.holiday[1] == Festival.SPRING_FESTIVAL
    assert not f.estimated.any()
    assert list(f.days_to_spring) == [3, 0, -7, -13]


def test_2027_is_estimated_with_lunar_spring_festival_and_no_make_up_days() -> None:
    days = date_range(date(2027, 1, 1), 365)
    f = day_facts(days)
    assert f.estimated.all()
    assert not f.is_makeup_workday.any()
    by_day = dict(zip(days, range(len(days)), strict=True))
    assert f.is_holiday[by_day[date(2027, 2, 5)]]  # 除夕
    assert f.is_holiday[by_day[date(2027, 2, 12)]]  # 初七, the last day of the estimated block
    assert not f.is_holiday[by_day[date(2027, 2, 13)]]
    assert f.holiday[by_day[date(2027, 10, 3)]] == Festival.NATIONAL_DAY
    assert f.holiday[by_day[date(2027, 9, 15)]] == Festival.MID_AUTUMN
    assert f.day_of_week[by_day[date(2027, 2, 6)]] == date(2027, 2, 6).weekday()


def test_december_2026_forecast_crosses_into_estimated_2027() -> None:
    f = day_facts(date_range(date(2026, 12, 25), 14))
    assert list(f.estimated) == [False] * 7 + [True] * 7
    assert f.holiday[7] == Festival.NEW_YEAR and f.is_holiday[7]
    assert ("节假日按规则估计", "holidays estimated") in describe(f, 7)
    assert ("节假日按规则估计", "holidays estimated") not in describe(f, 0)


def test_lunar_table_agrees_with_chinese_calendar_holidays() -> None:
    for year in range(2004, 2027):
        spring = date.fromisoformat(LUNAR[str(year)]["spring_festival"])
        assert chinese_calendar.get_holiday_detail(spring) == (True, "Spring Festival"), year
        if year >= 2008:  # Dragon Boat and Mid-Autumn became public holidays in 2008
            for key in ("dragon_boat", "mid_autumn"):
                assert chinese_calendar.is_holiday(date.fromisoformat(LUNAR[str(year)][key])), (year, key)


def test_festival_window_prefers_spring_festival_and_counts_days() -> None:
    f = day_facts([date(2026, 1, 25), date(2026, 6, 16), date(2026, 11, 12), date(2026, 7, 20)])
    assert (f.festival[0], f.days_to_festival[0]) == (Festival.SPRING_FESTIVAL, 23)
    assert (f.festival[1], f.days_to_festival[1]) == (Festival.SHOPPING_618, 2)
    assert (f.festival[2], f.days_to_festival[2]) == (Festival.DOUBLE_11, -1)
    assert f.festival[3] == Festival.NONE and f.days_to_festival[3] == 0


def test_describe_names_holiday_make_up_day_and_festival_in_both_languages() -> None:
    f = day_facts([date(2026, 10, 2), date(2026, 9, 20), date(2026, 9, 24)])
    assert ("国庆假期", "National Day holiday") in describe(f, 0)
    assert ("调休上班日", "make-up working day") in describe(f, 1)
    assert ("中秋节前1天", "the day before the Mid-Autumn Festival") in describe(f, 2)


def test_every_year_has_its_festivals() -> None:
    for year in (2010, 2026, 2027, 2040):
        codes = {code for _, code in festival_dates(year)}
        assert codes == set(Festival) - {Festival.NONE}, year


@settings(max_examples=60, deadline=None)
@given(st.dates(min_value=date(1995, 1, 1), max_value=date(2098, 12, 31)), st.integers(1, 40))
def test_day_facts_are_consistent_for_any_day(start: date, n: int) -> None:
    days = [start + timedelta(days=k) for k in range(n)]
    f = day_facts(days)
    assert len(f) == n
    assert [int(d) for d in f.day_of_week] == [d.weekday() for d in days]
    assert not (f.is_holiday & f.is_makeup_workday).any()
    assert ((f.holiday != 0) <= f.is_holiday).all()
    assert ((f.festival == 0) <= (f.days_to_festival == 0)).all()
    assert list(f.estimated) == [not 2004 <= d.year <= 2026 for d in days]
    for i in range(n):
        for zh, en in describe(f, i):
            assert zh and en
