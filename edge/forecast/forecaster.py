"""The forecast the planner uses: daily demand of every SKU-location over the horizon, its spread, and the method
chosen per series (docs/forecasting.md).

Series with intermittent demand (ADI >= 1.32) get SBA, or TSB when their sales have stopped; regular series get
the learned demand model when one is loaded, else ETS with weekday offsets and calendar effects; a series with
no sale in its history gets 0 and method "none". Everything runs over arrays of all series at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import numpy as np

from edge.forecast import statistical as stat
from edge.forecast.calendar import CalendarFacts, Festival, day_facts
from edge.forecast.features import HISTORY_DAYS, SCHEMA_VERSION, Exogenous, build_features
from edge.replenishment.errors import ReplenishmentError

if TYPE_CHECKING:
    from edge.forecast.runtime import DemandModel

__all__ = [
    "CALENDAR_REASONS",
    "DEFAULT_PARAMS",
    "METHODS",
    "CalendarEffects",
    "Forecast",
    "ForecastInputError",
    "ForecastParams",
    "calendar_effects",
    "forecast",
    "hourly_shares",
    "method_code",
]

log = logging.getLogger("storebox.forecast")

METHODS: tuple[str, ...] = ("model", "croston", "sba", "tsb", "ets", "seasonal_naive", "mean", "none")
_MODEL, _CROSTON, _SBA, _TSB, _ETS, _SNAIVE, _MEAN, _NONE = range(len(METHODS))


def method_code(name: str) -> int:
    """Index of a method name in METHODS."""
    return METHODS.index(name)


class ForecastInputError(ReplenishmentError):
    """The arrays handed to the forecaster do not fit together."""

    code = "forecast_input"


@dataclass(frozen=True, slots=True)
class Forecast:
    """Expected daily demand of n series over H days, in base units."""

    mean: np.ndarray  # (n, H) float64 expected daily demand, base units
    std: np.ndarray  # (n,) float64 std of one day's demand (for safety stock)
    method: np.ndarray  # (n,) int8 index into METHODS
    intermittent: np.ndarray  # (n,) bool (ADI >= 1.32, Syntetos–Boylan)


@dataclass(frozen=True, slots=True)
class ForecastParams:
    """Smoothing constants and thresholds of the statistical methods (defaults in docs/forecasting.md)."""

    sba_alpha: float = 0.1  # smoothing of the demand size
    sba_beta: float = 0.1  # smoothing of the interval between sales (and the bias correction 1 - beta/2)
    tsb_alpha_d: float = 0.1  # smoothing of the probability of a sale, every day
    tsb_alpha_z: float = 0.1  # smoothing of the demand size, on days with a sale
    ets_alphas: tuple[float, ...] = stat.ETS_ALPHAS
    ets_prior_units: float = stat.ETS_PRIOR_UNITS
    # Sales have stopped (TSB instead of SBA) when the days since the last sale reach stop_factor x ADI and
    # at least stop_min_days.
    stop_factor: float = 2.0
    stop_min_days: int = 14
    # A regular series that sold for the first time fewer than this many days ago gets its mean (method "mean").
    min_ets_days: int = 14
    # "ets" or "seasonal_naive": the statistical method of regular series (seasonal naive is the baseline the
    # accuracy reports compare with).
    regular_method: str = "ets"
    calendar: bool = True  # holidays and festival seasons on the statistical path of regular series


DEFAULT_PARAMS = ForecastParams()


# --- calendar effects of the statistical path ----------------------------------------------------------------

# (zh, en) of each calendar reason code and its demand factor. Conservative on purpose: one factor for every item
# of every store, so that a forecast without the learned model still leans the right way around a holiday.
CALENDAR_REASONS: tuple[tuple[str, str, float], ...] = (
    ("", "", 1.0),
    ("春节前一周备货", "the week before the Spring Festival", 1.20),
    ("春节前备货期", "Spring Festival buying season", 1.10),
    ("春节假期", "Spring Festival holiday", 0.85),
    ("法定假日", "public holiday", 1.05),
    ("节前礼品季", "gift season before the festival", 1.10),
    ("节前囤货", "stocking up before the holiday", 1.05),
)
_R_SPRING_WEEK, _R_SPRING_SEASON, _R_SPRING_HOLIDAY, _R_HOLIDAY, _R_GIFT, _R_EVE = range(1, 7)
_HOLIDAY_FESTIVALS = [
    int(f) for f in (Festival.NEW_YEAR, Festival.QINGMING, Festival.LABOUR_DAY, Festival.NATIONAL_DAY)
]
_GIFT_FESTIVALS = [int(f) for f in (Festival.MID_AUTUMN, Festival.DRAGON_BOAT)]


@dataclass(frozen=True, slots=True)
class CalendarEffects:
    """Per day: the weekday slot ETS uses (a public holiday counts as a rest day, a make-up working day as a
    working day), the demand factor and the reason code (index into CALENDAR_REASONS, 0 = ordinary day)."""

    slots: np.ndarray  # (n,) int64 0..6 weekday (Monday = 0), stat.WORK_SLOT or stat.REST_SLOT
    factors: np.ndarray  # (n,) float64
    reasons: np.ndarray  # (n,) int8
    facts: CalendarFacts


def calendar_effects(days: Sequence[date]) -> CalendarEffects:
    """Calendar effects of each day (rules in docs/forecasting.md, first match wins): the week before the
    Spring Festival x1.20, the two weeks before that x1.10, the Spring Festival holiday x0.85, any other public
    holiday x1.05, the week before Mid-Autumn and Dragon Boat x1.10, the two days before New Year, Qingming,
    Labour Day and National Day x1.05."""
    facts = day_facts(days)
    ds = facts.days_to_spring.astype(np.int64)
    df = facts.days_to_festival.astype(np.int64)
    fest = facts.festival.astype(np.int64)
    holiday = facts.is_holiday.astype(bool)
    rules = [
        ((ds >= 1) & (ds <= 7), _R_SPRING_WEEK),
        ((ds >= 8) & (ds <= 21), _R_SPRING_SEASON),
        (holiday & (facts.holiday == int(Festival.SPRING_FESTIVAL)), _R_SPRING_HOLIDAY),
        (holiday, _R_HOLIDAY),
        (np.isin(fest, _GIFT_FESTIVALS) & (df >= 1) & (df <= 7), _R_GIFT),
        (np.isin(fest, _HOLIDAY_FESTIVALS) & (df >= 1) & (df <= 2), _R_EVE),
    ]
    reasons = np.select([cond for cond, _ in rules], [code for _, code in rules], 0).astype(np.int8)
    factors = np.array([f for _, _, f in CALENDAR_REASONS])[reasons]
    slots = facts.day_of_week.astype(np.int64)
    slots = np.where(holiday, stat.REST_SLOT, slots)
    slots = np.where(facts.is_makeup_workday.astype(bool), stat.WORK_SLOT, slots)
    return CalendarEffects(slots, factors, reasons, facts)


# --- the forecast --------------------------------------------------------------------------------------------


def _clean(history: np.ndarray) -> np.ndarray:
    h = np.asarray(history)
    if h.ndim != 2:
        raise ForecastInputError(
            f"销售历史必须是二维数组 (n, D)，实际为 {h.shape}", f"history must be (n, D), got {h.shape}"
        )
    # NaN and negative days (returns above sales) count as no sale.
    h = np.nan_to_num(h.astype(np.float32, copy=False), nan=0.0, posinf=0.0, neginf=0.0)
    return np.ascontiguousarray(np.maximum(h, np.float32(0.0)))


def _uncensor(h: np.ndarray, stockout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two readings of a history whose days without stock (`stockout`, True = the shelf was empty at closing) are
    not evidence of zero demand: for the intermittent methods, the days in stock only (a stockout day without a
    sale is dropped, the remaining days packed to the right, older days padded with no sale); for the regular
    methods, every stockout day from the first sale on raised to at least the series' mean sales per day in stock
    (its sales are a floor of its demand)."""
    mask = np.asarray(stockout, dtype=bool)
    if mask.shape != h.shape:
        raise ForecastInputError(
            f"缺货标记应为 {h.shape}，实际为 {mask.shape}", f"stockout mask must be {h.shape}, got {mask.shape}"
        )
    keep = ~mask | (h > 0.0)
    order = np.argsort(keep, axis=1, kind="stable")  # dropped days first, kept days after in their own order
    packed = np.ascontiguousarray(np.take_along_axis(np.where(keep, h, np.float32(0.0)), order, axis=1))
    d = h.shape[1]
    sold = packed > 0.0
    first = np.where(sold.any(axis=1), sold.argmax(axis=1), d)
    rate = packed.sum(axis=1, dtype=np.float64) / np.maximum(d - first, 1)
    # Only from the first sale on: days before it may be days before the item was listed.
    sold_h = h > 0.0
    begun = np.arange(d)[None, :] >= np.where(sold_h.any(axis=1), sold_h.argmax(axis=1), d)[:, None]
    raised = np.ascontiguousarray(np.where(mask & begun, np.maximum(h, rate[:, None].astype(np.float32)), h))
    return packed, raised


def _regular_statistical(
    h: np.ndarray, start: date, horizon: int, params: ForecastParams
) -> tuple[np.ndarray, np.ndarray]:
    """ETS (or seasonal naive) of regular series: forecast (m, H) and one-step RMSE (m,)."""
    d = h.shape[1]
    if params.regular_method == "seasonal_naive" and d >= 7:
        return stat.seasonal_naive(h, horizon)
    if params.calendar:
        cal = calendar_effects([start + timedelta(days=k) for k in range(-d, horizon)])
        fc, rmse, _ = stat.ets(
            h,
            horizon,
            hist_slots=cal.slots[:d],
            hist_factors=cal.factors[:d],
            fut_slots=cal.slots[d:],
            fut_factors=cal.factors[d:],
            alphas=params.ets_alphas,
            prior_units=params.ets_prior_units,
        )
    else:
        fc, rmse, _ = stat.ets(h, horizon, alphas=params.ets_alphas, prior_units=params.ets_prior_units)
    return fc, rmse


def _model_forecast(
    model: DemandModel, h: np.ndarray, start: date, horizon: int, exog: Exogenous, groups: np.ndarray
) -> np.ndarray | None:
    """The model's forecast (m, H) of the given rows, NaN in rows it could not forecast; None when it failed."""
    m = h.shape[0]
    if model.schema_version != SCHEMA_VERSION:
        log.warning(
            "需求模型 %s 的特征版本 %s 与 %s 不符，改用统计方法 / demand model %s has feature schema %s, not %s; "
            "using the statistical methods",
            model.name,
            model.schema_version,
            SCHEMA_VERSION,
            model.name,
            model.schema_version,
            SCHEMA_VERSION,
        )
        return None
    if h.shape[1] < HISTORY_DAYS:
        log.warning(
            "销售历史只有 %d 天，模型需要 %d 天，改用统计方法 / history has %d days, the model needs %d; "
            "using the statistical methods",
            h.shape[1],
            HISTORY_DAYS,
            h.shape[1],
            HISTORY_DAYS,
        )
        return None
    try:
        features = build_features(np.ascontiguousarray(h[:, -HISTORY_DAYS:]), start, horizon, exog, groups)
        raw = np.asarray(model.predict(features), dtype=np.float64)
    except Exception as exc:  # a broken model file must not stop the plan: the statistical methods take over
        log.warning(
            "需求模型 %s 预测失败，改用统计方法 / demand model %s failed, using the statistical methods: %s",
            model.name,
            model.name,
            exc,
        )
        return None
    if raw.size != m * horizon:
        log.warning(
            "需求模型 %s 返回 %d 个值，应为 %d，改用统计方法 / demand model %s returned %d values, not %d; "
            "using the statistical methods",
            model.name,
            raw.size,
            m * horizon,
            model.name,
            raw.size,
            m * horizon,
        )
        return None
    out = raw.reshape(m, horizon)
    bad = ~np.isfinite(out).all(axis=1)
    out = np.maximum(out, 0.0)
    out[bad] = np.nan
    return out


def _subset(exog: Exogenous, rows: np.ndarray) -> Exogenous:
    return Exogenous(exog.promo[rows], exog.temp_c[rows], exog.rain_mm[rows])


def _check_inputs(n: int, horizon: int, exog: Exogenous, groups: np.ndarray, params: ForecastParams) -> None:
    if params.regular_method not in ("ets", "seasonal_naive"):
        raise ForecastInputError(
            f"未知的预测方法 {params.regular_method!r}", f"unknown regular_method {params.regular_method!r}"
        )
    if horizon < 1:
        raise ForecastInputError(f"预测天数必须至少为 1，实际为 {horizon}", f"horizon must be >= 1, got {horizon}")
    if np.shape(groups) != (n,):
        raise ForecastInputError(
            f"商品组数组应为 ({n},)，实际为 {np.shape(groups)}", f"groups must be ({n},), got {np.shape(groups)}"
        )
    for name in ("promo", "temp_c", "rain_mm"):
        shape = np.shape(getattr(exog, name))
        if shape != (n, horizon):
            raise ForecastInputError(
                f"外部因素 {name} 应为 ({n}, {horizon})，实际为 {shape}",
                f"exog.{name} must be ({n}, {horizon}), got {shape}",
            )


def forecast(
    history: np.ndarray,
    start: date,
    horizon: int,
    exog: Exogenous,
    groups: np.ndarray,
    model: DemandModel | None,
    *,
    params: ForecastParams = DEFAULT_PARAMS,
    stockout: np.ndarray | None = None,
) -> Forecast:
    """Forecast n series for `horizon` days from `start`.

    history: (n, D) daily sales in base units, last column = the day before start. exog and groups feed the
    model (promotions and weather reach the statistical methods through the planner's signal effects instead).
    stockout: optional (n, D) bool, True on days the shelf was empty at closing: their sales are censored, so
    the intermittent methods skip such days without a sale and the regular ones raise them to the mean sales of
    a day in stock (see `_uncensor`).
    """
    h = _clean(history)
    n, d = h.shape
    _check_inputs(n, horizon, exog, groups, params)
    if stockout is not None and n and d:
        h_int, h = _uncensor(h, stockout)
    else:
        h_int = h
    mean = np.zeros((n, horizon))
    rmse = np.zeros(n)
    method = np.full(n, _NONE, np.int8)
    if n == 0 or d == 0:
        return Forecast(mean, rmse, method, np.zeros(n, bool))

    adi, _, count, first, last = stat.demand_profile(h_int)
    sold = count > 0
    intermittent = sold & (adi >= stat.ADI_CUTOFF)
    since_last = d - 1 - last
    stopped = intermittent & (since_last >= np.maximum(params.stop_factor * adi, params.stop_min_days))
    regular = sold & ~intermittent
    # The regular path reads h (stockout days raised), whose first sale may come earlier than h_int's.
    first_reg = first if h_int is h else np.where((h > 0.0).any(axis=1), (h > 0.0).argmax(axis=1), first)

    rows = np.flatnonzero(intermittent & ~stopped)
    if rows.size:
        level, rmse[rows] = stat.sba(h_int[rows], params.sba_alpha, params.sba_beta)
        mean[rows] = level[:, None]
        method[rows] = _SBA

    rows = np.flatnonzero(stopped)
    if rows.size:
        level, spread = stat.tsb(h_int[rows], params.tsb_alpha_d, params.tsb_alpha_z)
        mean[rows] = level[:, None]
        method[rows] = _TSB
        # The errors of the days it still sold say little about a series that stopped: shrink them with the
        # forecast, relative to what it sold a day while it sold.
        active = h_int[rows].sum(axis=1, dtype=np.float64) / (last[rows] - first[rows] + 1)
        rmse[rows] = spread * np.minimum(level / active, 1.0)

    rows = np.flatnonzero(regular)
    if rows.size:
        young = (d - first_reg[rows]) < params.min_ets_days
        older = rows[~young]
        if older.size:
            mean[older], rmse[older] = _regular_statistical(h[older], start, horizon, params)
            method[older] = _SNAIVE if params.regular_method == "seasonal_naive" and d >= 7 else _ETS
        fresh = rows[young]
        if fresh.size:
            span = d - first_reg[fresh]
            since = np.arange(d)[None, :] >= first_reg[fresh][:, None]
            level = h[fresh].sum(axis=1, dtype=np.float64) / span
            dev = np.where(since, h[fresh] - level[:, None], 0.0)
            mean[fresh] = level[:, None]
            rmse[fresh] = np.sqrt((dev * dev).sum(axis=1) / span)
            method[fresh] = _MEAN
        if model is not None:
            predicted = _model_forecast(model, h[rows], start, horizon, _subset(exog, rows), np.asarray(groups)[rows])
            if predicted is not None:
                ok = np.isfinite(predicted).all(axis=1)
                # The model's spread is taken as that of the statistical method on the same history.
                mean[rows[ok]] = predicted[ok]
                method[rows[ok]] = _MODEL

    std = stat.residual_std(rmse, mean.mean(axis=1))
    return Forecast(mean, std, method, intermittent)


# --- hourly profile ------------------------------------------------------------------------------------------


def hourly_shares(hourly: np.ndarray, open_hours: tuple[int, int] = (8, 22), prior: float = 12.0) -> np.ndarray:
    """Share of a day's demand in each hour, per series, for fast movers: counts (n, 24) of units (or tickets)
    sold by hour over recent weeks -> (n, 24) shares, each row summing to 1. The counts are smoothed with
    `prior` pseudo-units spread evenly over the opening hours [open, close) (close < open = open overnight), so
    a series with no data gets the uniform profile over the opening hours and one with few sales leans on it."""
    counts = np.nan_to_num(np.asarray(hourly, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if counts.ndim != 2 or counts.shape[1] != 24:
        raise ForecastInputError(
            f"按小时销量应为 (n, 24)，实际为 {counts.shape}", f"hourly counts must be (n, 24), got {counts.shape}"
        )
    opening, closing = open_hours
    if not (0 <= opening < 24 and 0 < closing <= 24 and opening != closing):
        raise ForecastInputError(
            f"营业时间 {opening}-{closing} 无效", f"opening hours {opening}-{closing} are not valid"
        )
    hours = np.arange(24)
    is_open = (hours >= opening) & (hours < closing) if opening < closing else (hours >= opening) | (hours < closing)
    uniform = is_open / is_open.sum()
    counts = np.maximum(counts, 0.0)
    total = counts.sum(axis=1, keepdims=True)
    weight = max(float(prior), 0.0)
    smoothed = counts + weight * uniform[None, :]
    denom = total + weight
    shares: np.ndarray = np.where(denom > 0.0, smoothed / np.where(denom > 0.0, denom, 1.0), uniform[None, :])
    return shares
