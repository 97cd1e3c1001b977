"""Realistic daily demand per SKU-location, for training the demand model, the store simulator and the demo.

Each series has a level across orders of magnitude (most SKUs slow and lumpy), a weekly profile, a trend, the
Chinese calendar (public holidays, make-up working days, the Spring Festival buying season and its dip, the other
festivals, 618 and 双11), promotions with an uplift and a post-promotion dip, weather (temperature and rain of its
region, with the item group's sensitivity: drinks and ice cream up in heat, hot food up in cold, rain keeps
shoppers home) and stockouts that censor sales (observed sales <= stock on the shelf). Deterministic by seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from edge.forecast.calendar import Festival, day_facts
from edge.forecast.features import GROUPS

__all__ = ["GROUP_CATEGORIES", "Dataset", "generate"]

# A category name per group that features.group_of maps back to the group (for demo master data).
GROUP_CATEGORIES: dict[str, str] = {
    "ambient_food": "粮油调味",
    "snacks": "休闲零食",
    "drinks": "饮料",
    "frozen": "冷冻食品",
    "chilled_fresh": "乳制品",
    "produce_bakery": "水果蔬菜",
    "hot_food": "熟食",
    "household": "日用百货",
}

_G = {g: k for k, g in enumerate(GROUPS)}
_GROUP_WEIGHTS = np.array([0.2, 0.15, 0.15, 0.1, 0.15, 0.1, 0.05, 0.1])
# Per group: Spring Festival buying-season uplift at its peak, weekend uplift, heat and cold sensitivity per degree.
_SPRING_UPLIFT = np.array([0.8, 1.5, 1.2, 0.9, 0.6, 0.5, 0.2, 0.4])
_WEEKEND_UPLIFT = np.array([0.10, 0.35, 0.30, 0.25, 0.15, 0.20, 0.05, 0.15])
_HEAT = np.array([0.0, 0.0, 0.045, 0.06, 0.01, 0.01, -0.02, 0.0])  # per degree above 22 ℃
_COLD = np.array([0.01, 0.0, -0.02, -0.02, 0.0, 0.0, 0.05, 0.0])  # per degree below 12 ℃


@dataclass(frozen=True, slots=True)
class Dataset:
    """n series over `days` days from `start`; arrays (n, days) unless said otherwise."""

    start: date
    expected: np.ndarray  # float32 mean demand (the intensity the draws come from)
    demand: np.ndarray  # float32 true demand, whole units
    sales: np.ndarray  # float32 observed sales = min(demand, stock on the shelf)
    censored: np.ndarray  # bool, the shelf ran empty that day (sales < demand)
    stockout: np.ndarray  # bool, a stockout episode was running (the shelf may or may not have run empty)
    promo: np.ndarray  # float32 discount fraction, 0 = none
    temp_c: np.ndarray  # float32 day max temperature of the series' region
    rain_mm: np.ndarray  # float32 rain of the series' region
    groups: np.ndarray  # (n,) int8 index into features.GROUPS
    level: np.ndarray  # (n,) float32 base demand per day
    region: np.ndarray  # (n,) int8 weather region

    @property
    def n(self) -> int:
        return int(self.demand.shape[0])

    @property
    def days(self) -> int:
        return int(self.demand.shape[1])

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=k) for k in range(self.days)]


def _weather(rng: np.random.Generator, regions: int, doy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(regions, T) day max temperature and rain: a seasonal curve, AR(1) noise, showers more likely in summer."""
    t = doy.shape[0]
    mean = rng.uniform(12.0, 24.0, regions)[:, None]
    amp = rng.uniform(8.0, 16.0, regions)[:, None]
    season = np.sin(2 * np.pi * (doy[None, :] - 105.0) / 365.25)
    noise = np.zeros((regions, t))
    eps = rng.normal(0.0, 2.2, (regions, t))
    for k in range(1, t):
        noise[:, k] = 0.7 * noise[:, k - 1] + eps[:, k]
    temp = mean + amp * season + noise
    p_rain = 0.12 + 0.18 * (season + 1.0) / 2.0
    wet = rng.random((regions, t)) < p_rain
    rain = np.where(wet, rng.exponential(9.0, (regions, t)), 0.0)
    return temp.astype(np.float32), rain.astype(np.float32)


def _promotions(rng: np.random.Generator, n: int, t: int, rate: float) -> np.ndarray:
    """(n, T) discount fractions: promotions of 3-7 days, about `rate` of them per series per 28 days."""
    promo = np.zeros((n, t), np.float32)
    count = rng.poisson(rate * t / 28.0, n)
    for i in np.flatnonzero(count):
        for _ in range(count[i]):
            first = int(rng.integers(0, t))
            promo[i, first : first + int(rng.integers(3, 8))] = np.float32(rng.choice([0.1, 0.15, 0.2, 0.3, 0.4]))
    return promo


def _calendar_effect(start: date, t: int, groups: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Multipliers from the calendar: (n, T) festival/holiday effect and (T,) effective weekday (调休 aware)."""
    facts = day_facts([start + timedelta(days=k) for k in range(t)])
    n = groups.shape[0]
    eff = np.ones((n, t))
    ds = facts.days_to_spring.astype(np.float64)
    g = groups.astype(np.int64)
    # Buying season: rises over the three to four weeks before 正月初一, peaks on the last days.
    season = np.where((ds >= 1) & (ds <= 28), np.clip(1.0 - (ds - 1.0) / 28.0, 0.0, 1.0) ** 1.6, 0.0)
    strength = _SPRING_UPLIFT[g] * rng.uniform(0.6, 1.4, n)
    eff *= 1.0 + strength[:, None] * season[None, :]
    # The holiday itself: many shoppers gone home; back to normal by the Lantern Festival.
    dip = np.asarray(
        np.where((ds <= 0) & (ds >= -6), 0.45, np.where((ds <= -7) & (ds >= -15), 0.45 + 0.55 * (-ds - 6.0) / 9.0, 1.0))
    )
    eff *= dip[None, :] ** rng.uniform(0.6, 1.2, (n, 1))
    spring_holiday = facts.holiday == Festival.SPRING_FESTIVAL
    other_holiday = facts.is_holiday & ~spring_holiday
    holiday_uplift = np.where(np.isin(g, [_G["snacks"], _G["drinks"]]), 0.35, 0.12)
    eff *= 1.0 + holiday_uplift[:, None] * other_holiday[None, :]
    code = facts.festival
    d = facts.days_to_festival
    # Festival foods: mooncakes and fruit before 中秋, zongzi before 端午, tangyuan for 元宵.
    before = (d >= 0) & (d <= 7)
    eff[g == _G["snacks"]] *= 1.0 + 0.8 * ((code == Festival.MID_AUTUMN) & before)
    eff[g == _G["produce_bakery"]] *= 1.0 + 0.4 * ((code == Festival.MID_AUTUMN) & before)
    eff[g == _G["ambient_food"]] *= 1.0 + 0.4 * ((code == Festival.DRAGON_BOAT) & before)
    eff[g == _G["frozen"]] *= 1.0 + 0.9 * ((code == Festival.LANTERN) & (d >= 0) & (d <= 5))
    online = ((code == Festival.SHOPPING_618) | (code == Festival.DOUBLE_11)) & (d >= -1) & (d <= 3)
    eff[g == _G["household"]] *= 1.0 - 0.2 * online  # bulk household goods bought online those days
    dow = facts.day_of_week.astype(np.int64).copy()
    dow[facts.is_holiday] = 6  # a day off sells like a Sunday
    dow[facts.is_makeup_workday] = 2  # a make-up working day like a midweek day
    return eff, dow


def generate(
    n_series: int,
    days: int,
    start: date,
    seed: int,
    *,
    slow_share: float = 0.6,
    promo_rate: float = 0.25,
    stockout_rate: float = 0.015,
    regions: int = 4,
    groups: np.ndarray | None = None,
) -> Dataset:
    """n_series series of `days` days from `start`, deterministic by seed.

    slow_share: share of slow movers (under 1 unit a day, lumpy); promo_rate: promotions per series per 28 days;
    stockout_rate: chance per series-day that a stockout episode (1-6 days) starts; groups: fixed item groups.
    """
    rng = np.random.default_rng(seed)
    n, t = n_series, days
    if groups is None:
        groups = rng.choice(len(GROUPS), size=n, p=_GROUP_WEIGHTS).astype(np.int8)
    g = groups.astype(np.int64)
    slow = rng.random(n) < slow_share
    level = np.where(slow, np.exp(rng.uniform(np.log(0.03), 0.0, n)), np.exp(rng.uniform(0.0, np.log(300.0), n)))
    shape = np.where(slow, rng.uniform(0.3, 2.0, n), rng.uniform(3.0, 30.0, n))  # gamma-Poisson dispersion

    doy = np.array([(start + timedelta(days=k)).timetuple().tm_yday for k in range(t)], np.float64)
    cal, dow = _calendar_effect(start, t, groups, rng)
    weekend = np.zeros((n, 7))
    weekend[:, 5] = weekend[:, 6] = 1.0
    weekend[:, 4] = 0.4  # Friday evening
    weekly = 1.0 + _WEEKEND_UPLIFT[g][:, None] * rng.uniform(0.5, 1.5, n)[:, None] * weekend
    weekly *= np.exp(rng.normal(0.0, 0.05, (n, 7)))
    week = weekly[:, dow]

    trend = np.exp(rng.normal(0.0, 0.25, n)[:, None] * np.arange(t)[None, :] / 365.0)

    region = rng.integers(0, regions, n).astype(np.int8)
    temp_r, rain_r = _weather(rng, regions, doy)
    temp, rain = temp_r[region], rain_r[region]
    sens = rng.uniform(0.5, 1.5, n)[:, None]
    weather = np.exp(
        sens
        * (
            _HEAT[g][:, None] * np.maximum(temp - 22.0, 0.0)
            + _COLD[g][:, None] * np.maximum(12.0 - temp, 0.0)
            - 0.06 * np.log1p(rain)
        )
    )

    promo = _promotions(rng, n, t, promo_rate)
    elasticity = rng.uniform(1.5, 4.5, n)[:, None]
    uplift = np.exp(elasticity * promo)
    ended = np.zeros((n, t), np.float32)  # discount of a promotion that ended in the last 4 days
    for k in range(1, 5):
        was = np.zeros_like(promo)
        was[:, k:] = promo[:, :-k]
        ended = np.maximum(ended, np.where(promo == 0, was, 0.0))
    dip = 1.0 - 0.8 * ended  # pantry loading: fewer buys right after a promotion

    expected = level[:, None] * week * trend * cal * weather * uplift * dip
    draws = rng.gamma(shape[:, None], expected / shape[:, None])
    demand = rng.poisson(draws).astype(np.float32)

    # Stockout episodes: the shelf holds only a fraction of a normal day's demand until the delivery comes.
    starts = rng.random((n, t)) < stockout_rate * rng.uniform(0.0, 2.0, n)[:, None]
    stockout = np.zeros((n, t), bool)
    length = rng.integers(1, 7, (n, t))
    for i, k in zip(*np.nonzero(starts), strict=True):
        stockout[i, k : k + length[i, k]] = True
    shelf = rng.poisson(0.3 * expected).astype(np.float32)
    sales = np.where(stockout, np.minimum(demand, shelf), demand).astype(np.float32)
    censored = sales < demand

    return Dataset(
        start=start,
        expected=expected.astype(np.float32),
        demand=demand,
        sales=sales,
        censored=censored,
        stockout=stockout,
        promo=promo,
        temp_c=temp.astype(np.float32),
        rain_mm=rain.astype(np.float32),
        groups=groups.astype(np.int8),
        level=level.astype(np.float32),
        region=region,
    )
