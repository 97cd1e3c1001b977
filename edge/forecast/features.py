"""Features of the global demand model: one row per series and target day, from daily history, calendar and exogenous.

Quantities are scaled by the series' recent level (`scale`), so one model serves slow and fast movers: the model
predicts demand / scale and the runtime multiplies back (the metadata's output transform names the column).
The rows are computed by a Numba kernel (`_features_kernel`); `build_features_reference` is the plain NumPy twin
the tests compare it with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from numba import njit

from edge.forecast.calendar import SPRING_WINDOW_AFTER, CalendarFacts, Festival, day_facts

__all__ = [
    "FEATURE_NAMES",
    "GROUPS",
    "HISTORY_DAYS",
    "SCALE_FEATURE",
    "SCHEMA_VERSION",
    "Exogenous",
    "build_features",
    "build_features_reference",
    "calendar_columns",
    "group_of",
]

SCHEMA_VERSION = "demand-features-1"
HISTORY_DAYS = 91
MAX_HORIZON = 28  # the horizon feature is h / MAX_HORIZON; the model was trained on horizons up to 14

# Item groups the model knows: demand of a group answers weather and festivals alike.
GROUPS: tuple[str, ...] = (
    "ambient_food",  # 粮油调味、方便食品
    "snacks",  # 零食、糖果、饼干
    "drinks",  # 饮料、水、酒
    "frozen",  # 冷冻食品、冰淇淋
    "chilled_fresh",  # 乳品、鲜肉、冷藏
    "produce_bakery",  # 蔬果、面包
    "hot_food",  # 熟食、热饮、关东煮
    "household",  # 日用、清洁、个护
)

# Category keywords -> group, first match wins (Chinese and English category names).
_GROUP_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), group)
    for pattern, group in (
        (r"冰淇淋|雪糕|冰棍|ice.?cream|冷冻|速冻|水饺|汤圆|frozen", "frozen"),
        (r"熟食|关东煮|包子|热饮|盒饭|便当|hot.?food|deli|ready.?meal", "hot_food"),
        (r"饮料|饮品|矿泉水|纯净水|果汁|茶饮|咖啡|啤酒|白酒|酒水|drink|beverage|water|juice|beer|wine|soda", "drinks"),
        (r"零食|糖果|巧克力|饼干|膨化|坚果|snack|cand|chocolate|biscuit|cookie|chips", "snacks"),
        (r"蔬菜|水果|果蔬|生鲜果|面包|烘焙|糕点|produce|fruit|veg|bakery|bread", "produce_bakery"),
        (
            r"乳|奶|酸奶|鲜肉|肉|禽|蛋|海鲜|水产|豆腐|冷藏|dairy|milk|yogh?urt|meat|egg|seafood|fish|chilled|fresh",
            "chilled_fresh",
        ),
        (r"日用|清洁|洗|纸|个护|化妆|家居|household|clean|detergent|paper|tissue|personal.?care|cosmetic", "household"),
        (r"粮|油|米|面|调味|方便|罐头|干货|grocery|rice|noodle|oil|sauce|spice|canned|instant", "ambient_food"),
    )
)
_STORAGE_GROUP = {"frozen": "frozen", "chilled": "chilled_fresh", "ambient": "ambient_food"}


def group_of(category: str | None, storage_class: str) -> int:
    """Index in GROUPS of an item, by its category name and else its storage class."""
    if category:
        for pattern, group in _GROUP_RULES:
            if pattern.search(category):
                return GROUPS.index(group)
    return GROUPS.index(_STORAGE_GROUP.get(storage_class, "ambient_food"))


# Calendar columns of a target day, computed once per day (not per series), in this order.
CALENDAR_NAMES: tuple[str, ...] = (
    "holiday",
    "makeup_workday",
    "spring_season",  # the buying weeks before the Spring Festival: 1 on 除夕, falling to 0 four weeks out
    "spring_day",  # 正月初一
    "spring_after",  # the dip after it, 1 the day after, falling to 0 at the Lantern Festival
    "festival_before",  # another festival within two weeks: 1 the day before, 0 two weeks out
    "festival_day",
    "festival_after",  # up to three days after it
    "shopping_before",  # 618 / 双11 within two weeks
    "shopping_day",
)

FEATURE_NAMES: tuple[str, ...] = (
    "scale",  # the series' recent level, demand per day (output transform: prediction * scale)
    "log_scale",
    "mean_7",  # means of the last k days / scale
    "mean_14",
    "mean_28",
    "mean_56",
    "mean_91",
    "same_weekday_mean",  # mean of the target's weekday over the last 8 weeks / scale
    "same_weekday_last",  # the target's weekday last week / scale
    "trend",  # (mean of the last 14 days - mean of the 14 before) / scale
    "zero_share_28",
    "zero_share_91",
    "std_28",  # / scale
    "days_since_sale",  # / HISTORY_DAYS, 1 = no sale in the history
    *(f"dow_{k}" for k in range(7)),
    *CALENDAR_NAMES,
    "promo",  # discount fraction on the target day
    "promo_after",  # largest discount of the 7 days before the target day when it has none (post-promo dip)
    "temp_known",
    "temp",  # (t - 20) / 10, 0 when unknown
    "temp_hot",  # max(t - 25, 0) / 10
    "temp_cold",  # max(10 - t, 0) / 10
    "rain_known",
    "rain",  # log1p(mm) / 3
    *(f"group_{g}" for g in GROUPS),
    "horizon",  # target day index / MAX_HORIZON (0 = the first day)
)
SCALE_FEATURE = "scale"
SCALE_FLOOR = 0.05  # demand per day below which the scale stops falling (a series with no sales at all)

_F = {name: k for k, name in enumerate(FEATURE_NAMES)}
_N_FEATURES = len(FEATURE_NAMES)
_N_CAL = len(CALENDAR_NAMES)
_COL_DOW = _F["dow_0"]
_COL_CAL = _F["holiday"]
_COL_GROUP = _F["group_ambient_food"]


@dataclass(frozen=True, slots=True)
class Exogenous:
    """Promotions and weather per series (n) and target day (H)."""

    promo: np.ndarray  # (n, H) float32 discount fraction 0..1, 0 = no promotion
    temp_c: np.ndarray  # (n, H) float32 forecast day max temperature, NaN = unknown
    rain_mm: np.ndarray  # (n, H) float32 forecast rain, NaN = unknown

    @staticmethod
    def none(n: int, horizon: int) -> Exogenous:
        """No promotions, weather unknown."""
        nan = np.full((n, horizon), np.nan, np.float32)
        return Exogenous(np.zeros((n, horizon), np.float32), nan, nan.copy())


def calendar_columns(facts: CalendarFacts) -> np.ndarray:
    """(H, len(CALENDAR_NAMES)) float32 calendar features of the target days."""
    h = len(facts)
    out = np.zeros((h, _N_CAL), np.float32)
    out[:, 0] = facts.is_holiday
    out[:, 1] = facts.is_makeup_workday
    ds = facts.days_to_spring.astype(np.float32)
    out[:, 2] = np.where((ds >= 1) & (ds <= 28), 1.0 - (ds - 1.0) / 28.0, 0.0)
    out[:, 3] = ds == 0
    out[:, 4] = np.where((ds <= -1) & (ds >= -SPRING_WINDOW_AFTER), 1.0 + (ds + 1.0) / SPRING_WINDOW_AFTER, 0.0)
    code = facts.festival
    other = (code != Festival.NONE) & (code != Festival.SPRING_FESTIVAL)
    shopping = (code == Festival.SHOPPING_618) | (code == Festival.DOUBLE_11)
    holiday_like = other & ~shopping
    d = facts.days_to_festival.astype(np.float32)
    out[:, 5] = np.where(holiday_like & (d >= 1) & (d <= 14), 1.0 - (d - 1.0) / 14.0, 0.0)
    out[:, 6] = holiday_like & (d == 0)
    out[:, 7] = np.where(holiday_like & (d <= -1) & (d >= -3), 1.0 + (d + 1.0) / 3.0, 0.0)
    out[:, 8] = np.where(shopping & (d >= 1) & (d <= 14), 1.0 - (d - 1.0) / 14.0, 0.0)
    out[:, 9] = shopping & (d == 0)
    return out


def _check(history: np.ndarray, horizon: int, exog: Exogenous, groups: np.ndarray) -> None:
    n = history.shape[0]
    if history.ndim != 2 or history.shape[1] != HISTORY_DAYS:
        raise ValueError(f"history must be (n, {HISTORY_DAYS}), got {history.shape}")
    if not 1 <= horizon <= MAX_HORIZON:
        raise ValueError(f"horizon must be 1..{MAX_HORIZON}, got {horizon}")
    for name in ("promo", "temp_c", "rain_mm"):
        if getattr(exog, name).shape != (n, horizon):
            raise ValueError(f"exog.{name} must be ({n}, {horizon}), got {getattr(exog, name).shape}")
    if groups.shape != (n,):
        raise ValueError(f"groups must be ({n},), got {groups.shape}")


def _prepare(start: date, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    facts = day_facts([start + timedelta(days=k) for k in range(horizon)])
    return facts.day_of_week.astype(np.int64), calendar_columns(facts)


def build_features(history: np.ndarray, start: date, horizon: int, exog: Exogenous, groups: np.ndarray) -> np.ndarray:
    """(n * horizon, len(FEATURE_NAMES)) float32 rows: series i, day h at row i * horizon + h.

    history: (n, HISTORY_DAYS) daily sales, last column = the day before start.
    """
    _check(history, horizon, exog, groups)
    dow, cal = _prepare(start, horizon)
    return _features_kernel(
        np.ascontiguousarray(history, np.float32),
        dow,
        cal,
        np.ascontiguousarray(exog.promo, np.float32),
        np.ascontiguousarray(exog.temp_c, np.float32),
        np.ascontiguousarray(exog.rain_mm, np.float32),
        np.ascontiguousarray(groups, np.int64),
    )


@njit(cache=True, nogil=True)
def _features_kernel(
    history: np.ndarray,
    dow: np.ndarray,
    cal: np.ndarray,
    promo: np.ndarray,
    temp: np.ndarray,
    rain: np.ndarray,
    groups: np.ndarray,
) -> np.ndarray:  # pragma: no cover - compiled; build_features_reference is its twin
    n, d = history.shape
    horizon = dow.shape[0]
    out = np.zeros((n * horizon, _N_FEATURES), np.float32)
    x = np.empty(d, np.float64)
    wd_sum = np.empty(7, np.float64)
    wd_cnt = np.empty(7, np.float64)
    for i in range(n):
        for j in range(d):
            v = history[i, j]
            x[j] = v if v > 0.0 else 0.0  # NaN and returns (negative net sales) count as no sale
        s7 = 0.0
        s14 = 0.0
        s28 = 0.0
        s56 = 0.0
        s91 = 0.0
        prev14 = 0.0
        z28 = 0.0
        z91 = 0.0
        q28 = 0.0
        last_sale = -1
        for k in range(d):
            v = x[d - 1 - k]
            if k < 7:
                s7 += v
            if k < 14:
                s14 += v
            elif k < 28:
                prev14 += v
            if k < 28:
                s28 += v
                q28 += v * v
                if v == 0.0:
                    z28 += 1.0
            if k < 56:
                s56 += v
            s91 += v
            if v == 0.0:
                z91 += 1.0
            if v > 0.0 and last_sale < 0:
                last_sale = k
        m28 = s28 / 28.0
        m91 = s91 / d
        scale = max(m28, 0.5 * m91, _SCALE_FLOOR)
        var28 = q28 / 28.0 - m28 * m28
        std28 = np.sqrt(var28) if var28 > 0.0 else 0.0
        since = (last_sale if last_sale >= 0 else d) / d
        # Same weekday over the last 8 weeks: column j is (d - j) days before the start.
        for r in range(7):
            wd_sum[r] = 0.0
            wd_cnt[r] = 0.0
        for j in range(d - 56, d):
            r = (d - j) % 7
            wd_sum[r] += x[j]
            wd_cnt[r] += 1.0
        g = groups[i]
        for h in range(horizon):
            row = i * horizon + h
            r = (7 - h % 7) % 7  # the target's weekday: (d - j + h) % 7 == 0
            out[row, 0] = scale
            out[row, 1] = np.log(scale)
            out[row, 2] = s7 / 7.0 / scale
            out[row, 3] = s14 / 14.0 / scale
            out[row, 4] = m28 / scale
            out[row, 5] = s56 / 56.0 / scale
            out[row, 6] = m91 / scale
            out[row, 7] = wd_sum[r] / wd_cnt[r] / scale
            last = d - 7 + h % 7  # the same weekday in the last week of history
            out[row, 8] = x[last] / scale
            out[row, 9] = (s14 - prev14) / 14.0 / scale
            out[row, 10] = z28 / 28.0
            out[row, 11] = z91 / d
            out[row, 12] = std28 / scale
            out[row, 13] = since
            out[row, _COL_DOW + dow[h]] = 1.0
            for c in range(_N_CAL):
                out[row, _COL_CAL + c] = cal[h, c]
            p = promo[i, h]
            p = min(max(p, 0.0), 1.0) if p == p else 0.0
            out[row, _COL_PROMO] = p
            after = 0.0
            if p == 0.0:
                for k in range(max(0, h - 7), h):
                    q = promo[i, k]
                    if q == q and q > after:
                        after = min(q, 1.0)
            out[row, _COL_PROMO + 1] = after
            t = temp[i, h]
            if t == t:
                out[row, _COL_TEMP] = 1.0
                out[row, _COL_TEMP + 1] = (t - 20.0) / 10.0
                out[row, _COL_TEMP + 2] = max(t - 25.0, 0.0) / 10.0
                out[row, _COL_TEMP + 3] = max(10.0 - t, 0.0) / 10.0
            rr = rain[i, h]
            if rr == rr:
                out[row, _COL_RAIN] = 1.0
                out[row, _COL_RAIN + 1] = np.log1p(max(rr, 0.0)) / 3.0
            if 0 <= g < _N_GROUPS:
                out[row, _COL_GROUP + g] = 1.0
            out[row, _COL_HORIZON] = h / _MAX_HORIZON
    return out


_COL_PROMO = _F["promo"]
_COL_TEMP = _F["temp_known"]
_COL_RAIN = _F["rain_known"]
_COL_HORIZON = _F["horizon"]
_N_GROUPS = len(GROUPS)
_MAX_HORIZON = float(MAX_HORIZON)
_SCALE_FLOOR = SCALE_FLOOR


def build_features_reference(
    history: np.ndarray, start: date, horizon: int, exog: Exogenous, groups: np.ndarray
) -> np.ndarray:
    """Plain NumPy twin of build_features (the tests compare them)."""
    _check(history, horizon, exog, groups)
    dow, cal = _prepare(start, horizon)
    n, d = history.shape
    x = np.nan_to_num(history.astype(np.float64), nan=0.0)
    x = np.where(x > 0, x, 0.0)
    rev = x[:, ::-1]
    m = {k: rev[:, :k].mean(axis=1) for k in (7, 14, 28, 56)}
    m91 = rev.mean(axis=1)
    scale = np.maximum(np.maximum(m[28], 0.5 * m91), SCALE_FLOOR)
    prev14 = rev[:, 14:28].mean(axis=1)
    std28 = rev[:, :28].std(axis=1)
    sold = rev > 0
    since = np.where(sold.any(axis=1), sold.argmax(axis=1), d) / d
    out = np.zeros((n, horizon, _N_FEATURES), np.float64)
    s = scale[:, None]
    out[:, :, 0] = s
    out[:, :, 1] = np.log(s)
    for col, k in ((2, 7), (3, 14), (4, 28), (5, 56)):
        out[:, :, col] = (m[k] / scale)[:, None]
    out[:, :, 6] = (m91 / scale)[:, None]
    for h in range(horizon):
        # Days before the start that fall on the target's weekday, within the last 8 weeks.
        back = np.arange(7 - h % 7 if h % 7 else 7, 57, 7)
        out[:, h, 7] = x[:, d - back].mean(axis=1) / scale
        out[:, h, 8] = x[:, d - 7 + h % 7] / scale
    out[:, :, 9] = ((m[14] - prev14) / scale)[:, None]
    out[:, :, 10] = (rev[:, :28] == 0).mean(axis=1)[:, None]
    out[:, :, 11] = (rev == 0).mean(axis=1)[:, None]
    out[:, :, 12] = (std28 / scale)[:, None]
    out[:, :, 13] = since[:, None]
    out[:, np.arange(horizon), _COL_DOW + dow] = 1.0
    out[:, :, _COL_CAL : _COL_CAL + _N_CAL] = cal[None, :, :]
    promo = np.clip(np.nan_to_num(exog.promo.astype(np.float64), nan=0.0), 0.0, 1.0)
    out[:, :, _COL_PROMO] = promo
    for h in range(horizon):
        before = promo[:, max(0, h - 7) : h]
        recent = before.max(axis=1) if before.shape[1] else np.zeros(n)
        out[:, h, _COL_PROMO + 1] = np.where(promo[:, h] == 0, recent, 0.0)
    t = exog.temp_c.astype(np.float64)
    known = ~np.isnan(t)
    tt = np.nan_to_num(t, nan=20.0)
    out[:, :, _COL_TEMP] = known
    out[:, :, _COL_TEMP + 1] = np.where(known, (tt - 20.0) / 10.0, 0.0)
    out[:, :, _COL_TEMP + 2] = np.where(known, np.maximum(tt - 25.0, 0.0) / 10.0, 0.0)
    out[:, :, _COL_TEMP + 3] = np.where(known, np.maximum(10.0 - tt, 0.0) / 10.0, 0.0)
    rain = exog.rain_mm.astype(np.float64)
    rknown = ~np.isnan(rain)
    out[:, :, _COL_RAIN] = rknown
    out[:, :, _COL_RAIN + 1] = np.where(rknown, np.log1p(np.maximum(np.nan_to_num(rain), 0.0)) / 3.0, 0.0)
    g = groups.astype(np.int64)
    for k in range(len(GROUPS)):
        out[:, :, _COL_GROUP + k] = (g == k)[:, None]
    out[:, :, _COL_HORIZON] = (np.arange(horizon) / MAX_HORIZON)[None, :]
    return out.reshape(n * horizon, _N_FEATURES).astype(np.float32)
