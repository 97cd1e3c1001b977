"""Calendar facts of business days: weekday, public holidays, make-up working days (调休) and festival windows.

chinese_calendar knows the State Council's holiday plans for 2004-2026 and raises NotImplementedError for other
years. For those years the facts are an estimate, flagged `estimated`: the fixed-date holidays and the lunar
festivals (dates from lunar_festivals.json, made with the lunardate package) with the holiday lengths of recent
plans, and no make-up working days (they are only known when the plan is published, each December).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from enum import IntEnum
from functools import cache
from pathlib import Path

import chinese_calendar  # type: ignore[import-untyped]
import numpy as np

__all__ = [
    "FESTIVAL_NAMES",
    "CalendarFacts",
    "Festival",
    "day_facts",
    "describe",
    "festival_dates",
]

_LUNAR_FILE = Path(__file__).with_name("lunar_festivals.json")


class Festival(IntEnum):
    """Festival codes of `CalendarFacts.festival` (0 = none)."""

    NONE = 0
    NEW_YEAR = 1
    SPRING_FESTIVAL = 2
    LANTERN = 3
    QINGMING = 4
    LABOUR_DAY = 5
    DRAGON_BOAT = 6
    MID_AUTUMN = 7
    NATIONAL_DAY = 8
    SHOPPING_618 = 9
    DOUBLE_11 = 10


# (zh, en) names by festival code.
FESTIVAL_NAMES: dict[Festival, tuple[str, str]] = {
    Festival.NONE: ("", ""),
    Festival.NEW_YEAR: ("元旦", "New Year's Day"),
    Festival.SPRING_FESTIVAL: ("春节", "Spring Festival"),
    Festival.LANTERN: ("元宵节", "Lantern Festival"),
    Festival.QINGMING: ("清明节", "Qingming Festival"),
    Festival.LABOUR_DAY: ("劳动节", "Labour Day"),
    Festival.DRAGON_BOAT: ("端午节", "Dragon Boat Festival"),
    Festival.MID_AUTUMN: ("中秋节", "Mid-Autumn Festival"),
    Festival.NATIONAL_DAY: ("国庆节", "National Day"),
    Festival.SHOPPING_618: ("618购物节", "618 shopping festival"),
    Festival.DOUBLE_11: ("双11购物节", "Double 11 shopping festival"),
}

# (zh) names of the holiday blocks as people say them.
_HOLIDAY_ZH = {
    Festival.NEW_YEAR: "元旦假期",
    Festival.SPRING_FESTIVAL: "春节假期",
    Festival.QINGMING: "清明假期",
    Festival.LABOUR_DAY: "五一假期",
    Festival.DRAGON_BOAT: "端午假期",
    Festival.MID_AUTUMN: "中秋假期",
    Festival.NATIONAL_DAY: "国庆假期",
}

# chinese_calendar's holiday names -> festival code of the holiday.
_CC_HOLIDAYS = {
    "New Year's Day": Festival.NEW_YEAR,
    "Spring Festival": Festival.SPRING_FESTIVAL,
    "Tomb-sweeping Day": Festival.QINGMING,
    "Labour Day": Festival.LABOUR_DAY,
    "Dragon Boat Festival": Festival.DRAGON_BOAT,
    "Mid-autumn Festival": Festival.MID_AUTUMN,
    "National Day": Festival.NATIONAL_DAY,
}

# A day belongs to a festival's window from this many days before it to this many days after it.
_WINDOW_BEFORE = 14
_WINDOW_AFTER = 3
# Spring Festival: the buying season runs about three weeks before it, the dip to the Lantern Festival after.
SPRING_WINDOW_BEFORE = 28
SPRING_WINDOW_AFTER = 15


@dataclass(frozen=True, slots=True)
class CalendarFacts:
    """Facts of n days, one array element per day."""

    day_of_week: np.ndarray  # (n,) int8, Monday = 0
    is_holiday: np.ndarray  # (n,) bool, a statutory day off (the whole holiday block, weekends inside it too)
    is_makeup_workday: np.ndarray  # (n,) bool, a weekend day worked in exchange (调休上班)
    holiday: np.ndarray  # (n,) int8 Festival code of the holiday the day belongs to, 0 = none
    festival: np.ndarray  # (n,) int8 Festival code of the nearest festival in its window, 0 = none
    days_to_festival: np.ndarray  # (n,) int16 festival date - day (0 on the day, < 0 after it); 0 when none
    days_to_spring: np.ndarray  # (n,) int16 nearest Spring Festival (正月初一) - day, signed like days_to_festival
    estimated: np.ndarray  # (n,) bool, holidays of that year estimated by rule (no published plan known)

    def __len__(self) -> int:
        return int(self.day_of_week.shape[0])


@cache
def _lunar_table() -> dict[int, dict[str, date]]:
    raw = json.loads(_LUNAR_FILE.read_text(encoding="utf-8"))
    return {int(year): {k: date.fromisoformat(v) for k, v in days.items()} for year, days in raw["years"].items()}


@cache
def festival_dates(year: int) -> tuple[tuple[date, Festival], ...]:
    """The festivals of a Gregorian year, by date (lunar ones missing for years outside the table)."""
    out: list[tuple[date, Festival]] = [
        (date(year, 1, 1), Festival.NEW_YEAR),
        (date(year, 5, 1), Festival.LABOUR_DAY),
        (date(year, 6, 18), Festival.SHOPPING_618),
        (date(year, 10, 1), Festival.NATIONAL_DAY),
        (date(year, 11, 11), Festival.DOUBLE_11),
    ]
    lunar = _lunar_table().get(year)
    if lunar is not None:
        out += [
            (lunar["spring_festival"], Festival.SPRING_FESTIVAL),
            (lunar["lantern"], Festival.LANTERN),
            (lunar["dragon_boat"], Festival.DRAGON_BOAT),
            (lunar["mid_autumn"], Festival.MID_AUTUMN),
        ]
    if 1901 <= year <= 2099:
        terms = chinese_calendar.get_solar_terms(date(year, 4, 1), date(year, 4, 10))
        out += [(d, Festival.QINGMING) for d, name in terms if name == "清明"]
    return tuple(sorted(out))


@cache
def _estimated_holidays(year: int) -> dict[date, Festival]:
    """Holiday blocks of a year without a published plan, as recent plans lay them out (no make-up days)."""
    days: dict[date, Festival] = {}

    def block(first: date, length: int, code: Festival) -> None:
        for k in range(length):
            days.setdefault(first + timedelta(days=k), code)

    block(date(year, 1, 1), 1, Festival.NEW_YEAR)
    block(date(year, 5, 1), 5, Festival.LABOUR_DAY)
    block(date(year, 10, 1), 7, Festival.NATIONAL_DAY)
    for d, code in festival_dates(year):
        if code == Festival.SPRING_FESTIVAL:
            block(d - timedelta(days=1), 8, code)  # 除夕 to 初七
        elif code in (Festival.QINGMING, Festival.DRAGON_BOAT, Festival.MID_AUTUMN):
            block(d, 1, code)
    return days


@cache
def _one_day(day: date) -> tuple[bool, bool, int, bool]:
    """(is_holiday, is_makeup_workday, holiday code, estimated) of one day."""
    try:
        on_holiday, name = chinese_calendar.get_holiday_detail(day)
        workday = chinese_calendar.is_workday(day)
    except NotImplementedError:
        code = _estimated_holidays(day.year).get(day, Festival.NONE)
        return code != Festival.NONE, False, int(code), True
    code = _CC_HOLIDAYS.get(name or "", Festival.NONE) if on_holiday and name else Festival.NONE
    return bool(on_holiday and name), bool(workday and day.weekday() >= 5), int(code), False


@cache
def _festival_near(day: date) -> tuple[int, int, int]:
    """(festival code, days to it, days to the nearest Spring Festival) of one day."""
    best: tuple[int, int, int] | None = None  # (rank, code, delta)
    spring = 10_000
    for year in (day.year - 1, day.year, day.year + 1):
        for when, code in festival_dates(year):
            delta = (when - day).days
            if code == Festival.SPRING_FESTIVAL and abs(delta) < abs(spring):
                spring = delta
            before, after = (
                (SPRING_WINDOW_BEFORE, SPRING_WINDOW_AFTER)
                if code == Festival.SPRING_FESTIVAL
                else (_WINDOW_BEFORE, _WINDOW_AFTER)
            )
            if -after <= delta <= before:
                # The Spring Festival window wins (the season that moves demand most); otherwise the nearest,
                # the coming one first on a tie.
                rank = (0 if code == Festival.SPRING_FESTIVAL else 1) * 1000 + 2 * abs(delta) + (1 if delta < 0 else 0)
                if best is None or rank < best[0]:
                    best = (rank, int(code), delta)
    spring = max(-32_000, min(32_000, spring))
    if best is None:
        return 0, 0, spring
    return best[1], best[2], spring


def day_facts(days: Sequence[date]) -> CalendarFacts:
    """Calendar facts of each day (see CalendarFacts)."""
    n = len(days)
    dow = np.empty(n, np.int8)
    holiday = np.zeros(n, np.bool_)
    makeup = np.zeros(n, np.bool_)
    hcode = np.zeros(n, np.int8)
    fest = np.zeros(n, np.int8)
    dfest = np.zeros(n, np.int16)
    dspring = np.zeros(n, np.int16)
    est = np.zeros(n, np.bool_)
    for i, day in enumerate(days):
        dow[i] = day.weekday()
        holiday[i], makeup[i], hcode[i], est[i] = _one_day(day)
        fest[i], dfest[i], dspring[i] = _festival_near(day)
    return CalendarFacts(dow, holiday, makeup, hcode, fest, dfest, dspring, est)


def date_range(start: date, n: int) -> list[date]:
    """n consecutive days from start."""
    return [start + timedelta(days=k) for k in range(n)]


def describe(facts: CalendarFacts, i: int) -> list[tuple[str, str]]:
    """(zh, en) phrases of day i for an explanation, e.g. ("国庆假期", "National Day holiday")."""
    out: list[tuple[str, str]] = []
    if facts.is_holiday[i]:
        code = Festival(int(facts.holiday[i]))
        zh = _HOLIDAY_ZH.get(code, "法定假日")
        out.append((zh, f"{FESTIVAL_NAMES[code][1]} holiday" if code != Festival.NONE else "public holiday"))
    if facts.is_makeup_workday[i]:
        out.append(("调休上班日", "make-up working day"))
    near = Festival(int(facts.festival[i]))
    if near != Festival.NONE:
        zh, en = FESTIVAL_NAMES[near]
        d = int(facts.days_to_festival[i])
        if d == 0:
            out.append((f"{zh}当天", f"{en} day"))
        elif d > 0:
            out.append((f"{zh}前{d}天", f"{d} days before the {en}" if d > 1 else f"the day before the {en}"))
        else:
            out.append((f"{zh}后{-d}天", f"{-d} days after the {en}" if d < -1 else f"the day after the {en}"))
    if facts.estimated[i]:
        out.append(("节假日按规则估计", "holidays estimated"))
    return out
