"""Outside signals as inputs to the plan (外部信号, docs/signals.md): weather, promotions, online channel orders,
supplier delays and lead indicators (trending score, search bounce, cart abandonment).

Each push is validated (shape at the boundary, edge.replenishment.signal_formats; references and dates here),
stored as one batch in one transaction, and turned by `signal_effects` into what the planner uses: promotions
and weather for the model (Exogenous), a bounded demand factor from the lead indicators and return spikes,
extra demand from online channels, extra lead-time days from supplier delays, and the notes each suggestion's
explanation shows. `touched_since` tells the planner's triggers which SKUs changed.

Vectorised over series: the few signals are looped over, the series are only indexed (np.isin + grouping).
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from edge.forecast.features import Exogenous
from edge.ledger.audit import append_audit
from edge.ledger.errors import IdempotencyKeyReused
from edge.replenishment.signal_formats import (
    PROMOTION_KIND_ALIASES,
    PROMOTION_KINDS,
    CartAbandonmentIn,
    OnlineOrderIn,
    PromotionIn,
    SearchBounceIn,
    SignalRecord,
    SupplierDelayIn,
    TrendIn,
    WeatherIn,
    invalid_record,
)

MAX_KEYWORD_SKUS = 200


class SignalKind(StrEnum):
    """Kinds of outside signal (信号类型)."""

    WEATHER = "weather"  # 天气预报
    PROMOTION = "promotion"  # 促销
    ONLINE_SALES = "online_sales"  # 线上渠道订单
    SUPPLIER_DELAY = "supplier_delay"  # 供应商延误
    TREND = "trend"  # 热搜指数
    SEARCH_BOUNCE = "search_bounce"  # 搜索未找到率
    CART_ABANDONMENT = "cart_abandonment"  # 购物车放弃率


INDICATOR_KINDS = (SignalKind.TREND, SignalKind.SEARCH_BOUNCE, SignalKind.CART_ABANDONMENT)


# --- domain records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Weather:
    day: date
    temp_max_c: float
    temp_min_c: float
    rain_mm: float
    location: str = ""  # '' = the whole store


@dataclass(frozen=True, slots=True)
class Promotion:
    sku: str | None
    category: str | None
    start: date
    end: date
    discount: float | None  # fraction off; None when the promo price is given (computed from the item's price)
    promo_price_fen: int | None
    kind: str  # 折扣 | 满减 | 买赠 | 特价
    note: str | None = None
    cancelled: bool = False  # withdraws the promotion of the same target and start


@dataclass(frozen=True, slots=True)
class OnlineOrder:
    channel: str
    order_id: str
    ts: datetime
    lines: tuple[tuple[str, int], ...]  # (sku, qty in base units)
    fulfilment: str = "channel"  # channel | pos


@dataclass(frozen=True, slots=True)
class SupplierDelay:
    supplier: str
    delay_days: int
    from_date: date
    until: date | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Indicator:
    kind: SignalKind  # trend, search_bounce or cart_abandonment
    sku: str | None
    category: str | None
    keyword: str | None
    day: date
    value: float  # trend score 0..100, or a rate 0..1
    baseline: float | None = None


Signal = Weather | Promotion | OnlineOrder | SupplierDelay | Indicator


def to_domain(kind: str, records: Sequence[SignalRecord]) -> tuple[Signal, ...]:
    """The validated boundary records of `kind` as domain records."""
    out: list[Signal] = []
    for r in records:
        if isinstance(r, WeatherIn):
            out.append(Weather(r.date, r.temp_max_c, r.temp_min_c, r.rain_mm, r.location or ""))
        elif isinstance(r, PromotionIn):
            kind_zh = PROMOTION_KIND_ALIASES[r.kind.strip()]
            out.append(
                Promotion(
                    r.sku, r.category, r.start, r.end, r.discount, r.promo_price_fen, kind_zh, r.note, r.cancelled
                )
            )
        elif isinstance(r, OnlineOrderIn):
            merged: dict[str, int] = {}
            for line in r.lines:
                merged[line.sku] = merged.get(line.sku, 0) + line.qty
            out.append(OnlineOrder(r.channel, r.order_id, r.ts, tuple(merged.items()), r.fulfilment))
        elif isinstance(r, SupplierDelayIn):
            out.append(SupplierDelay(r.supplier, r.delay_days, r.from_, r.until, r.reason))
        elif isinstance(r, TrendIn):
            out.append(Indicator(SignalKind.TREND, r.sku, r.category, r.keyword, r.date, r.score, r.baseline))
        elif isinstance(r, (SearchBounceIn, CartAbandonmentIn)):
            which = SignalKind.SEARCH_BOUNCE if isinstance(r, SearchBounceIn) else SignalKind.CART_ABANDONMENT
            out.append(Indicator(which, r.sku, r.category, None, r.date, r.rate, r.baseline))
        else:  # pragma: no cover - FORMATS and this function list the same kinds
            raise TypeError(f"not a signal record of {kind}: {type(r).__name__}")
    return tuple(out)


# --- policy (settings block "replenishment: signals") ----------------------------------------------


@dataclass(frozen=True, slots=True)
class SignalPolicy:
    """Coefficients of the signal effects; docs/signals.md explains each. Built from Settings by the shell."""

    stale_days: int = 7  # a lead indicator older than this (by its date) has no effect
    baseline_days: int = 28  # baseline of an indicator without one: mean of its earlier values over this window
    trend_baseline: float = 50.0  # when neither given nor learned
    trend_max_lift: float = 0.30  # a score at 100 over its baseline lifts demand by at most +30 %
    bounce_baseline: float = 0.20
    bounce_coef: float = 1.0  # +1 % demand per percentage point of bounce above the baseline ...
    bounce_max_lift: float = 0.20  # ... at most +20 %
    abandon_baseline: float = 0.70
    abandon_coef: float = 0.5  # -0.5 % demand per point of abandonment above the baseline ...
    abandon_max_drop: float = 0.15  # ... at most -15 %
    lead_factor_min: float = 0.80  # the product of the lead indicators is kept within these bounds
    lead_factor_max: float = 1.40
    promo_elasticity: float = 3.0  # nominal lift shown in notes (and used without the model): 1 + 3 x discount
    promo_max_lift: float = 4.0
    online_window_days: int = 14  # online channel rate = counted units over the last 14 days / 14
    online_location: str = "floor"  # the location whose series carries online demand (else the SKU's first)
    hot_c: float = 30.0  # weather notes: a day at or above this max temperature ...
    cold_c: float = 0.0  # ... at or below this one ...
    heavy_rain_mm: float = 25.0  # ... or with this much rain is named in the explanation

    @staticmethod
    def from_settings(settings: Any) -> SignalPolicy:
        """From the `signals_*` settings (edge.config, block "replenishment: signals"); missing ones default."""
        values: dict[str, Any] = {}
        for name in SignalPolicy.__dataclass_fields__:
            if hasattr(settings, f"signals_{name}"):
                values[name] = getattr(settings, f"signals_{name}")
        return SignalPolicy(**values)


# --- checking and recording -------------------------------------------------------------------------


def _fingerprint(kind: str, records: Sequence[Signal]) -> str:
    return hashlib.sha256(repr((kind, tuple(records))).encode()).hexdigest()


def _existing(conn: sqlite3.Connection, table: str, column: str, values: Iterable[str]) -> set[str]:
    wanted = sorted(set(values))
    found: set[str] = set()
    for i in range(0, len(wanted), 500):
        chunk = wanted[i : i + 500]
        marks = ",".join("?" * len(chunk))
        found.update(r[0] for r in conn.execute(f"SELECT {column} FROM {table} WHERE {column} IN ({marks})", chunk))
    return found


def _keyword_skus(conn: sqlite3.Connection, keyword: str) -> list[str]:
    pattern = "%" + keyword.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = conn.execute(
        "SELECT sku FROM items WHERE active = 1 AND (name LIKE ? ESCAPE '\\' OR name_en LIKE ? ESCAPE '\\')"
        " ORDER BY sku LIMIT ?",
        (pattern, pattern, MAX_KEYWORD_SKUS + 1),
    ).fetchall()
    return [r[0] for r in rows]


@dataclass(frozen=True, slots=True)
class _Refs:
    skus: set[str]
    categories: set[str]
    suppliers: set[str]
    locations: set[str]
    prices: dict[str, int] = field(default_factory=dict)


def _refs(conn: sqlite3.Connection, records: Sequence[Signal]) -> _Refs:
    skus: set[str] = set()
    cats: set[str] = set()
    sups: set[str] = set()
    locs: set[str] = set()
    for r in records:
        if isinstance(r, (Promotion, Indicator)):
            if r.sku:
                skus.add(r.sku)
            if r.category:
                cats.add(r.category)
        elif isinstance(r, OnlineOrder):
            skus.update(s for s, _ in r.lines)
        elif isinstance(r, SupplierDelay):
            sups.add(r.supplier)
        elif isinstance(r, Weather) and r.location:
            locs.add(r.location)
    prices: dict[str, int] = {}
    promo_skus = sorted({r.sku for r in records if isinstance(r, Promotion) and r.promo_price_fen and r.sku})
    for i in range(0, len(promo_skus), 500):
        chunk = promo_skus[i : i + 500]
        marks = ",".join("?" * len(chunk))
        prices.update(
            (r[0], int(r[1])) for r in conn.execute(f"SELECT sku, price_fen FROM items WHERE sku IN ({marks})", chunk)
        )
    return _Refs(
        _existing(conn, "items", "sku", skus),
        _existing(conn, "categories", "code", cats),
        _existing(conn, "suppliers", "id", sups),
        _existing(conn, "locations", "code", locs),
        prices,
    )


def _check_day(kind: str, index: int, line: int | None, name: str, day: date, lo: date, hi: date) -> None:
    if not lo <= day <= hi:
        raise invalid_record(
            kind,
            index,
            line,
            name,
            f"日期 {day} 不在 {lo} 至 {hi} 之间",
            f"date {day} is not within {lo}..{hi}",
            value=day.isoformat(),
        )


def check_signals(
    conn: sqlite3.Connection,
    kind: str,
    records: Sequence[Signal],
    today: date,
    lines: Sequence[int] | None = None,
) -> dict[int, list[str]]:
    """Refuse the whole push when a record names an unknown SKU, category, supplier or location, or a date
    far from today (InvalidSignal with the record's index or file line). Returns the SKUs each trend keyword
    names (record index -> SKUs)."""
    refs = _refs(conn, records)
    keyword_skus: dict[int, list[str]] = {}
    for index, r in enumerate(records):
        line = lines[index] if lines is not None and index < len(lines) else None

        def bad(name: str, zh: str, en: str, **detail: Any) -> Exception:
            return invalid_record(kind, index, line, name, zh, en, **detail)  # noqa: B023 - used at once

        if isinstance(r, Weather):
            _check_day(kind, index, line, "date", r.day, today - timedelta(days=7), today + timedelta(days=30))
            if r.location and r.location not in refs.locations:
                raise bad("location", f"未知库位 {r.location}", f"unknown location {r.location}")
        elif isinstance(r, Promotion):
            if r.sku is not None and r.sku not in refs.skus:
                raise bad("sku", f"未知商品 {r.sku}", f"unknown item {r.sku}", sku=r.sku)
            if r.category is not None and r.category not in refs.categories:
                raise bad("category", f"未知品类 {r.category}", f"unknown category {r.category}")
            _check_day(kind, index, line, "end", r.end, today - timedelta(days=30), today + timedelta(days=400))
            _check_day(kind, index, line, "start", r.start, today - timedelta(days=400), today + timedelta(days=366))
            if r.promo_price_fen is not None and r.sku is not None:
                price = refs.prices.get(r.sku, 0)
                if price <= 0 or r.promo_price_fen >= price:
                    raise bad(
                        "promo_price_fen",
                        f"促销价须低于商品售价 ({price} 分)",
                        f"the promo price must be below the item's price ({price} fen)",
                        price_fen=price,
                    )
        elif isinstance(r, OnlineOrder):
            for sku, _ in r.lines:
                if sku not in refs.skus:
                    raise bad("lines.sku", f"未知商品 {sku}", f"unknown item {sku}", sku=sku)
            _check_day(kind, index, line, "ts", r.ts.date(), today - timedelta(days=90), today + timedelta(days=1))
        elif isinstance(r, SupplierDelay):
            if r.supplier not in refs.suppliers:
                raise bad("supplier", f"未知供应商 {r.supplier}", f"unknown supplier {r.supplier}")
            _check_day(kind, index, line, "from", r.from_date, today - timedelta(days=90), today + timedelta(days=366))
            if r.until is not None:
                _check_day(kind, index, line, "until", r.until, today - timedelta(days=1), today + timedelta(days=400))
        elif isinstance(r, Indicator):
            _check_day(kind, index, line, "date", r.day, today - timedelta(days=90), today + timedelta(days=1))
            if r.sku is not None and r.sku not in refs.skus:
                raise bad("sku", f"未知商品 {r.sku}", f"unknown item {r.sku}", sku=r.sku)
            if r.category is not None and r.category not in refs.categories:
                raise bad("category", f"未知品类 {r.category}", f"unknown category {r.category}")
            if r.keyword is not None:
                found = _keyword_skus(conn, r.keyword)
                if not found:
                    raise bad("keyword", f"关键词 {r.keyword} 不对应任何商品", f"keyword {r.keyword} names no item")
                if len(found) > MAX_KEYWORD_SKUS:
                    raise bad(
                        "keyword",
                        f"关键词 {r.keyword} 过于宽泛 (超过 {MAX_KEYWORD_SKUS} 个商品)",
                        f"keyword {r.keyword} names more than {MAX_KEYWORD_SKUS} items",
                    )
                keyword_skus[index] = found
    return keyword_skus


def record_signals(
    conn: sqlite3.Connection,
    kind: str,
    records: Sequence[Signal],
    key: str,
    actor: str,
    now: datetime,
    today: date,
    source: str = "api",
    lines: Sequence[int] | None = None,
    timezone: str = "Asia/Shanghai",
) -> dict[str, Any]:
    """Store one push of `kind` as a batch, all records or none; idempotent on `key` (a retry answers the first
    result with `replayed`). Online orders already stored (same channel and order id) count as duplicates.
    The caller owns the transaction (the writer's savepoint, or the CLI's)."""
    kind = SignalKind(kind).value
    fingerprint = _fingerprint(kind, records)
    previous = conn.execute("SELECT id, fingerprint FROM signal_batches WHERE command_key = ?", (key,)).fetchone()
    if previous is not None:
        if previous["fingerprint"] != fingerprint:
            raise IdempotencyKeyReused(key)
        return {**get_batch(conn, int(previous["id"])), "replayed": True}
    if not records:
        raise invalid_record(kind, 0, None, "records", "没有记录", "no records")
    keyword_skus = check_signals(conn, kind, records, today, lines)
    ts = now.isoformat()
    cursor = conn.execute(
        "INSERT INTO signal_batches (kind, command_key, fingerprint, records, accepted, duplicates, source,"
        " received_at, actor) VALUES (?, ?, ?, ?, 0, 0, ?, ?, ?)",
        (kind, key, fingerprint, len(records), source, ts, actor),
    )
    batch = int(cursor.lastrowid or 0)
    accepted, duplicates = _insert(conn, batch, records, keyword_skus, ZoneInfo(timezone))
    conn.execute("UPDATE signal_batches SET accepted = ?, duplicates = ? WHERE id = ?", (accepted, duplicates, batch))
    append_audit(
        conn,
        ts=ts,
        actor=actor,
        device=None,
        action="signals.record",
        object=f"signal_batch:{batch}",
        detail={"kind": kind, "records": len(records), "accepted": accepted, "source": source, "key": key},
    )
    return {**get_batch(conn, batch), "replayed": False}


def _insert(
    conn: sqlite3.Connection,
    batch: int,
    records: Sequence[Signal],
    keyword_skus: Mapping[int, list[str]],
    tz: ZoneInfo,
) -> tuple[int, int]:
    accepted = duplicates = 0
    prices: dict[str, int] = {}
    for index, r in enumerate(records):
        if isinstance(r, Weather):
            conn.execute(
                "INSERT INTO signal_weather (batch_id, location, date, temp_max_c, temp_min_c, rain_mm)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (batch, r.location, r.day.isoformat(), r.temp_max_c, r.temp_min_c, r.rain_mm),
            )
        elif isinstance(r, Promotion):
            discount = r.discount
            if r.cancelled and discount is None and r.promo_price_fen is None:
                discount = 0.0
            elif discount is None:
                assert r.sku is not None and r.promo_price_fen is not None
                if r.sku not in prices:
                    prices[r.sku] = int(
                        conn.execute("SELECT price_fen FROM items WHERE sku = ?", (r.sku,)).fetchone()[0]
                    )
                discount = 1.0 - r.promo_price_fen / prices[r.sku]
            conn.execute(
                "INSERT INTO signal_promotions (batch_id, sku, category, start_date, end_date, discount,"
                " promo_price_fen, kind, note, cancelled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    batch,
                    r.sku,
                    r.category,
                    r.start.isoformat(),
                    r.end.isoformat(),
                    round(discount, 4),
                    r.promo_price_fen,
                    r.kind,
                    r.note,
                    int(r.cancelled),
                ),
            )
        elif isinstance(r, OnlineOrder):
            day = r.ts.astimezone(tz).date().isoformat()
            cursor = conn.execute(
                "INSERT OR IGNORE INTO signal_online_orders (batch_id, channel, order_id, ts, day, fulfilment)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (batch, r.channel, r.order_id, r.ts.isoformat(), day, r.fulfilment),
            )
            if cursor.rowcount == 0:
                duplicates += 1
                continue
            row = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT INTO signal_online_lines (order_row, sku, qty, day, counted) VALUES (?, ?, ?, ?, ?)",
                [(row, sku, qty, day, int(r.fulfilment == "channel")) for sku, qty in r.lines],
            )
        elif isinstance(r, SupplierDelay):
            conn.execute(
                "INSERT INTO signal_supplier_delays (batch_id, supplier, delay_days, from_date, until_date, reason)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (
                    batch,
                    r.supplier,
                    r.delay_days,
                    r.from_date.isoformat(),
                    None if r.until is None else r.until.isoformat(),
                    r.reason,
                ),
            )
        elif isinstance(r, Indicator):
            targets: list[tuple[str | None, str | None]] = (
                [(sku, None) for sku in keyword_skus[index]] if r.keyword is not None else [(r.sku, r.category)]
            )
            conn.executemany(
                "INSERT INTO signal_indicators (batch_id, kind, sku, category, keyword, date, value, baseline)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(batch, r.kind.value, s, c, r.keyword, r.day.isoformat(), r.value, r.baseline) for s, c in targets],
            )
        accepted += 1
    return accepted, duplicates


def get_batch(conn: sqlite3.Connection, batch: int) -> dict[str, Any]:
    row = conn.execute(
        "SELECT id, kind, records, accepted, duplicates, source, received_at, actor FROM signal_batches WHERE id = ?",
        (batch,),
    ).fetchone()
    return {
        "batch": int(row["id"]),
        "kind": row["kind"],
        "records": int(row["records"]),
        "accepted": int(row["accepted"]),
        "duplicates": int(row["duplicates"]),
        "source": row["source"],
        "received_at": row["received_at"],
        "actor": row["actor"],
    }


_LIST_SQL: dict[str, str] = {
    "weather": "SELECT s.id, s.batch_id, s.location, s.date, s.temp_max_c, s.temp_min_c, s.rain_mm,"
    " s.id = (SELECT MAX(x.id) FROM signal_weather x WHERE x.location = s.location AND x.date = s.date) AS current"
    " FROM signal_weather s",
    "promotion": "SELECT s.id, s.batch_id, s.sku, s.category, s.start_date AS start, s.end_date AS end, s.discount,"
    " s.promo_price_fen, s.kind, s.note, s.cancelled,"
    " s.id = (SELECT MAX(x.id) FROM signal_promotions x WHERE x.sku IS s.sku AND x.category IS s.category"
    "  AND x.start_date = s.start_date) AS current FROM signal_promotions s",
    "online_sales": "SELECT s.id, s.batch_id, s.channel, s.order_id, s.ts, s.day, s.fulfilment,"
    " (SELECT json_group_array(json_object('sku', l.sku, 'qty', l.qty)) FROM signal_online_lines l"
    "  WHERE l.order_row = s.id) AS lines FROM signal_online_orders s",
    "supplier_delay": 'SELECT s.id, s.batch_id, s.supplier, s.delay_days, s.from_date AS "from",'
    " s.until_date AS until, s.reason, s.id = (SELECT MAX(x.id) FROM signal_supplier_delays x"
    " WHERE x.supplier = s.supplier AND x.from_date = s.from_date) AS current FROM signal_supplier_delays s",
}
_INDICATOR_SQL = (
    "SELECT s.id, s.batch_id, s.sku, s.category, s.keyword, s.date, s.value, s.baseline FROM signal_indicators s"
)


def list_signals(conn: sqlite3.Connection, kind: str, *, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
    """Stored records of `kind`, newest first (weather and delays say whether a record is the current one)."""
    kind = SignalKind(kind).value
    if kind in _LIST_SQL:
        sql, params = _LIST_SQL[kind], ()
        where = ""
    else:
        sql, where, params = _INDICATOR_SQL, " WHERE s.kind = ?", (kind,)  # type: ignore[assignment]
    rows = conn.execute(f"{sql}{where} ORDER BY s.id DESC LIMIT ? OFFSET ?", (*params, limit, offset)).fetchall()
    out: list[dict[str, Any]] = []
    for row in rows:
        item = dict(row)
        if kind == "online_sales":
            item["lines"] = json.loads(item["lines"])
        for flag in ("current", "cancelled"):
            if flag in item:
                item[flag] = bool(item[flag])
        if kind == "trend":
            item["score"] = item.pop("value")
        elif kind in ("search_bounce", "cart_abandonment"):
            item["rate"] = item.pop("value")
        out.append(item)
    return out


# --- effects on the plan -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeriesKeys:
    """One row per planned SKU-location (the planner builds it)."""

    sku: np.ndarray  # (n,) object str
    location: np.ndarray  # (n,) object str
    category: np.ndarray  # (n,) object str ('' if none)
    supplier: np.ndarray  # (n,) object str ('' if none)

    def __len__(self) -> int:
        return int(self.sku.shape[0])


@dataclass(frozen=True, slots=True)
class SignalNote:
    """One line of an explanation: what signal, in Chinese and English, and its effect (a factor for demand,
    days for lead time, units per day for extra demand; per code, see docs/signals.md)."""

    code: str
    message: str
    message_en: str
    effect: float


@dataclass(frozen=True, slots=True)
class SignalEffects:
    exog: Exogenous  # promotions and weather for the model
    demand_factor: np.ndarray  # (n, H) float64 multiplier of the forecast (lead indicators, return spikes)
    extra_demand: np.ndarray  # (n, H) float64 base units/day added (online channel orders)
    lead_time_extra_days: np.ndarray  # (n,) float64 supplier shipping delays
    notes: dict[int, list[SignalNote]]  # row index -> notes (sparse: only rows a signal touches)
    # (n, H) float64 nominal lift of promotions (1 + elasticity x discount): for a forecast method that does not
    # read exog (the statistical fallback); the model already sees exog.promo, so never apply both.
    promo_lift: np.ndarray | None = None

    @staticmethod
    def none(n: int, horizon: int) -> SignalEffects:
        """No signals: factor 1, nothing extra."""
        return SignalEffects(
            Exogenous.none(n, horizon),
            np.ones((n, horizon)),
            np.zeros((n, horizon)),
            np.zeros(n),
            {},
            np.ones((n, horizon)),
        )


class _RowIndex:
    """Rows of a key column grouped by value, for the values signals name (one np.isin, one sort)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def rows(self, wanted: Collection[str]) -> dict[str, np.ndarray]:
        wanted = [w for w in wanted if w]
        if not wanted or self.values.shape[0] == 0:
            return {}
        mask = np.isin(self.values, np.array(sorted(set(wanted)), dtype=object))
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return {}
        uniq, inverse = np.unique(self.values[idx].astype(str), return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))[:-1]
        return {str(u): group for u, group in zip(uniq, np.split(idx[order], bounds), strict=True)}


def _add_note(notes: dict[int, list[SignalNote]], rows: np.ndarray, note: SignalNote) -> None:
    for r in rows.tolist():  # only the rows a signal names; ints already
        existing = notes.get(r)
        if existing is None:
            notes[r] = [note]
        else:
            existing.append(note)


def _md(day: date) -> tuple[str, str]:
    return f"{day.month:02d}/{day.day:02d}", f"{day.month:02d}-{day.day:02d}"


def _zhe(discount: float) -> str:
    """0.2 -> '8 折', 0.15 -> '8.5 折'."""
    tenths = round((1.0 - discount) * 10, 1)
    return f"{tenths:g} 折"


def _promo_note(kind: str, discount: float, price_fen: int | None, start: date, end: date, lift: float) -> SignalNote:
    s_zh, s_en = _md(start)
    e_zh, e_en = _md(end)
    pct = round(discount * 100)
    kind_en = PROMOTION_KINDS.get(kind, (kind, kind))[1]
    if kind == "折扣":
        what_zh, what_en = f"促销 {_zhe(discount)}", f"promotion {pct} % off"
    elif kind == "特价" and price_fen is not None:
        what_zh = f"特价 ¥{price_fen / 100:.2f} (约 {_zhe(discount)})"
        what_en = f"special price ¥{price_fen / 100:.2f} (about {pct} % off)"
    else:
        what_zh, what_en = f"{kind}促销 (约 {_zhe(discount)})", f"{kind_en} promotion (about {pct} % off)"
    return SignalNote(
        "promotion",
        f"{what_zh}（{s_zh}–{e_zh}），预计销量 ×{lift:.1f}",
        f"{what_en} ({s_en}..{e_en}), expected sales ×{lift:.1f}",
        round(lift, 3),
    )


def _date_span(start: date, horizon: int) -> tuple[str, str]:
    return start.isoformat(), (start + timedelta(days=max(horizon, 1) - 1)).isoformat()


def _day_index(start: date, day: str) -> int:
    return (date.fromisoformat(day) - start).days


def signal_effects(
    conn: sqlite3.Connection,
    keys: SeriesKeys,
    start: date,
    horizon: int,
    policy: SignalPolicy | None = None,
) -> SignalEffects:
    """What the stored signals do to the series of `keys` for the days start .. start + horizon - 1."""
    policy = policy or SignalPolicy()
    n = len(keys)
    effects = SignalEffects.none(n, horizon)
    notes = effects.notes
    by_sku = _RowIndex(keys.sku)
    by_category = _RowIndex(keys.category)
    first, last = _date_span(start, horizon)
    _weather(conn, keys, start, horizon, first, last, effects.exog, notes, policy)
    assert effects.promo_lift is not None
    _promotions(conn, start, horizon, first, last, by_sku, by_category, effects.exog, effects.promo_lift, notes, policy)
    _online(conn, keys, start, by_sku, effects.extra_demand, notes, policy)
    _delays(conn, keys, first, last, effects.lead_time_extra_days, notes)
    lead = _indicators(conn, start, horizon, by_sku, by_category, notes, policy)
    effects.demand_factor[:] = lead
    from edge.replenishment.returns import return_spike_factors

    spikes = return_spike_factors(conn, start)
    for sku, rows in by_sku.rows(list(spikes)).items():
        factor, spike_notes = spikes[sku]
        effects.demand_factor[rows, :] *= factor
        for note in spike_notes:
            _add_note(notes, rows, note)
    return effects


def _weather(
    conn: sqlite3.Connection,
    keys: SeriesKeys,
    start: date,
    horizon: int,
    first: str,
    last: str,
    exog: Exogenous,
    notes: dict[int, list[SignalNote]],
    policy: SignalPolicy,
) -> None:
    rows = conn.execute(
        "SELECT w.location, w.date, w.temp_max_c, w.rain_mm FROM signal_weather w WHERE w.date BETWEEN ? AND ?"
        " AND w.id = (SELECT MAX(x.id) FROM signal_weather x WHERE x.location = w.location AND x.date = w.date)"
        " ORDER BY w.location, w.date",
        (first, last),
    ).fetchall()
    per_location: dict[str, list[tuple[int, float, float]]] = {}
    for r in rows:
        per_location.setdefault(r["location"], []).append(
            (_day_index(start, r["date"]), float(r["temp_max_c"]), float(r["rain_mm"]))
        )
    by_location = _RowIndex(keys.location).rows([loc for loc in per_location if loc])
    for location, days in sorted(per_location.items()):  # '' (store level) first, then locations override
        target: np.ndarray | slice = slice(None) if location == "" else by_location.get(location, np.empty(0, int))
        if isinstance(target, np.ndarray) and target.size == 0:
            continue
        hs = np.array([d[0] for d in days])
        temps = np.array([d[1] for d in days], np.float32)
        rains = np.array([d[2] for d in days], np.float32)
        if isinstance(target, slice):
            exog.temp_c[:, hs] = temps
            exog.rain_mm[:, hs] = rains
        else:
            exog.temp_c[np.ix_(target, hs)] = temps
            exog.rain_mm[np.ix_(target, hs)] = rains
        note = _weather_note(start, days, policy)
        if note is not None:
            _add_note(notes, np.arange(len(keys)) if isinstance(target, slice) else target, note)


def _weather_note(start: date, days: list[tuple[int, float, float]], policy: SignalPolicy) -> SignalNote | None:
    """One note naming the hottest, coldest or wettest notable day, or None when the forecast is ordinary."""
    hot = max(days, key=lambda d: d[1])
    cold = min(days, key=lambda d: d[1])
    wet = max(days, key=lambda d: d[2])
    zh: list[str] = []
    en: list[str] = []
    if hot[1] >= policy.hot_c:
        m_zh, m_en = _md(start + timedelta(days=hot[0]))
        zh.append(f"{m_zh} 最高 {hot[1]:g}℃")
        en.append(f"{m_en} high {hot[1]:g} °C")
    if cold[1] <= policy.cold_c:
        m_zh, m_en = _md(start + timedelta(days=cold[0]))
        zh.append(f"{m_zh} 最高仅 {cold[1]:g}℃")
        en.append(f"{m_en} high only {cold[1]:g} °C")
    if wet[2] >= policy.heavy_rain_mm:
        m_zh, m_en = _md(start + timedelta(days=wet[0]))
        zh.append(f"{m_zh} 降雨 {wet[2]:g} mm")
        en.append(f"{m_en} rain {wet[2]:g} mm")
    if not zh:
        return None
    return SignalNote("weather", "天气预报: " + "，".join(zh), "weather forecast: " + ", ".join(en), hot[1])


def _promotions(
    conn: sqlite3.Connection,
    start: date,
    horizon: int,
    first: str,
    last: str,
    by_sku: _RowIndex,
    by_category: _RowIndex,
    exog: Exogenous,
    promo_lift: np.ndarray,
    notes: dict[int, list[SignalNote]],
    policy: SignalPolicy,
) -> None:
    promos = conn.execute(
        "SELECT p.sku, p.category, p.start_date, p.end_date, p.discount, p.promo_price_fen, p.kind"
        " FROM signal_promotions p WHERE p.start_date <= ? AND p.end_date >= ? AND p.cancelled = 0"
        " AND p.id = (SELECT MAX(x.id) FROM signal_promotions x WHERE x.sku IS p.sku AND x.category IS p.category"
        "   AND x.start_date = p.start_date)"
        " ORDER BY p.id",
        (last, first),
    ).fetchall()
    if not promos:
        return
    sku_rows = by_sku.rows([p["sku"] for p in promos if p["sku"]])
    cat_rows = by_category.rows([p["category"] for p in promos if p["category"]])
    for p in promos:
        rows = sku_rows.get(p["sku"]) if p["sku"] else cat_rows.get(p["category"])
        if rows is None or rows.size == 0:
            continue
        h0 = max(_day_index(start, p["start_date"]), 0)
        h1 = min(_day_index(start, p["end_date"]), horizon - 1) + 1
        discount = float(p["discount"])
        lift = min(1.0 + policy.promo_elasticity * discount, policy.promo_max_lift)
        block = np.ix_(rows, np.arange(h0, h1))
        exog.promo[block] = np.maximum(exog.promo[block], np.float32(discount))
        promo_lift[block] = np.maximum(promo_lift[block], lift)
        note = _promo_note(
            p["kind"],
            discount,
            p["promo_price_fen"],
            date.fromisoformat(p["start_date"]),
            date.fromisoformat(p["end_date"]),
            lift,
        )
        _add_note(notes, rows, note)


def _online(
    conn: sqlite3.Connection,
    keys: SeriesKeys,
    start: date,
    by_sku: _RowIndex,
    extra: np.ndarray,
    notes: dict[int, list[SignalNote]],
    policy: SignalPolicy,
) -> None:
    window = max(policy.online_window_days, 1)
    rows = conn.execute(
        "SELECT l.sku, SUM(l.qty) AS qty, group_concat(DISTINCT o.channel) AS channels"
        " FROM signal_online_lines l JOIN signal_online_orders o ON o.id = l.order_row"
        " WHERE l.counted = 1 AND l.day >= ? AND l.day < ? GROUP BY l.sku",
        ((start - timedelta(days=window)).isoformat(), start.isoformat()),
    ).fetchall()
    if not rows:
        return
    found = by_sku.rows([r["sku"] for r in rows])
    for r in rows:
        group = found.get(r["sku"])
        if group is None:
            continue
        at = group[keys.location[group] == policy.online_location]
        row = int(at[0] if at.size else group[0])
        rate = float(r["qty"]) / window
        extra[row, :] += rate
        channels = ", ".join(sorted(str(r["channels"]).split(",")))
        _add_note(
            notes,
            np.array([row]),
            SignalNote(
                "online_sales",
                f"线上渠道近 {window} 天日均 {rate:.1f} 件 ({channels})",
                f"online channels {rate:.1f} per day over the last {window} days ({channels})",
                round(rate, 3),
            ),
        )


def active_delays(conn: sqlite3.Connection, first: str, last: str) -> dict[str, tuple[int, str | None]]:
    """Supplier -> (delay days, reason) of the notices in force on some day of first..last (newest push per
    (supplier, from) wins; the largest delay of a supplier counts)."""
    rows = conn.execute(
        "SELECT d.supplier, d.delay_days, d.reason FROM signal_supplier_delays d"
        " WHERE d.id = (SELECT MAX(x.id) FROM signal_supplier_delays x"
        "   WHERE x.supplier = d.supplier AND x.from_date = d.from_date)"
        " AND d.delay_days > 0 AND d.from_date <= ? AND (d.until_date IS NULL OR d.until_date >= ?)"
        " ORDER BY d.delay_days, d.id",
        (last, first),
    ).fetchall()
    return {r["supplier"]: (int(r["delay_days"]), r["reason"]) for r in rows}


def _delays(
    conn: sqlite3.Connection,
    keys: SeriesKeys,
    first: str,
    last: str,
    extra_days: np.ndarray,
    notes: dict[int, list[SignalNote]],
) -> None:
    delays = active_delays(conn, first, last)
    if not delays:
        return
    for supplier, rows in _RowIndex(keys.supplier).rows(list(delays)).items():
        days, reason = delays[supplier]
        extra_days[rows] = np.maximum(extra_days[rows], days)
        why_zh = f"（{reason}）" if reason else ""
        why_en = f" ({reason})" if reason else ""
        _add_note(
            notes,
            rows,
            SignalNote(
                "supplier_delay", f"供应商延误 +{days} 天{why_zh}", f"supplier delay +{days} days{why_en}", days
            ),
        )


def _indicator_factor(kind: str, value: float, baseline: float, policy: SignalPolicy) -> float:
    if kind == SignalKind.TREND:
        span = max(100.0 - baseline, 1.0)
        return 1.0 + policy.trend_max_lift * min(max((value - baseline) / span, 0.0), 1.0)
    if kind == SignalKind.SEARCH_BOUNCE:
        return 1.0 + min(policy.bounce_max_lift, policy.bounce_coef * max(value - baseline, 0.0))
    return 1.0 - min(policy.abandon_max_drop, policy.abandon_coef * max(value - baseline, 0.0))


def _default_baseline(kind: str, policy: SignalPolicy) -> float:
    return {
        SignalKind.TREND: policy.trend_baseline,
        SignalKind.SEARCH_BOUNCE: policy.bounce_baseline,
        SignalKind.CART_ABANDONMENT: policy.abandon_baseline,
    }[SignalKind(kind)]


def _indicator_note(kind: str, value: float, baseline: float, factor: float) -> SignalNote:
    if kind == SignalKind.TREND:
        zh, en = f"热搜指数 {value:g}", f"trending score {value:g}"
        base_zh, base_en = f"基线 {baseline:.0f}", f"baseline {baseline:.0f}"
    else:
        label = (
            ("搜索未找到率", "search bounce")
            if kind == SignalKind.SEARCH_BOUNCE
            else ("购物车放弃率", "cart abandonment")
        )
        zh, en = f"{label[0]} {value * 100:.0f}%", f"{label[1]} {value * 100:.0f} %"
        base_zh, base_en = f"基线 {baseline * 100:.0f}%", f"baseline {baseline * 100:.0f} %"
    return SignalNote(kind, f"{zh}（{base_zh}），需求 ×{factor:.2f}", f"{en} ({base_en}), demand ×{factor:.2f}", factor)


def _indicators(
    conn: sqlite3.Connection,
    start: date,
    horizon: int,
    by_sku: _RowIndex,
    by_category: _RowIndex,
    notes: dict[int, list[SignalNote]],
    policy: SignalPolicy,
) -> np.ndarray:
    """(n, H) product of the lead-indicator factors, bounded; each indicator counts until its date + stale_days."""
    n = by_sku.values.shape[0]
    total = np.ones((n, horizon))
    oldest = (start - timedelta(days=policy.stale_days)).isoformat()
    latest = conn.execute(
        "SELECT s.kind, s.sku, s.category, s.date, s.value, s.baseline,"
        " (SELECT AVG(b.value) FROM signal_indicators b WHERE b.kind = s.kind"
        "   AND b.sku IS s.sku AND b.category IS s.category AND b.date < s.date AND b.date >= date(s.date, ?))"
        "   AS learned"
        " FROM signal_indicators s WHERE s.date >= ? AND s.date <= ?"
        " AND s.id = (SELECT MAX(x.id) FROM signal_indicators x WHERE x.kind = s.kind AND x.sku IS s.sku"
        "   AND x.category IS s.category AND x.date >= ? AND x.date <= ?"
        "   AND x.date = (SELECT MAX(y.date) FROM signal_indicators y WHERE y.kind = s.kind AND y.sku IS s.sku"
        "   AND y.category IS s.category AND y.date >= ? AND y.date <= ?))"
        " ORDER BY s.category IS NULL, s.id",  # categories first: a SKU's own value then replaces its category's
        (
            f"-{policy.baseline_days} days",
            oldest,
            start.isoformat(),
            oldest,
            start.isoformat(),
            oldest,
            start.isoformat(),
        ),
    ).fetchall()
    if not latest:
        return total
    sku_rows = by_sku.rows([r["sku"] for r in latest if r["sku"]])
    cat_rows = by_category.rows([r["category"] for r in latest if r["category"]])
    for kind in INDICATOR_KINDS:
        factor = np.ones(n)
        until = np.full(n, -1)
        row_notes: dict[int, SignalNote] = {}
        for r in latest:
            if r["kind"] != kind:
                continue
            rows = sku_rows.get(r["sku"]) if r["sku"] else cat_rows.get(r["category"])
            if rows is None or rows.size == 0:
                continue
            value = float(r["value"])
            if r["baseline"] is not None:
                baseline = float(r["baseline"])
            elif r["learned"] is not None:
                baseline = float(r["learned"])
            else:
                baseline = _default_baseline(kind, policy)
            f = _indicator_factor(kind, value, baseline, policy)
            factor[rows] = f
            until[rows] = _day_index(start, r["date"]) + policy.stale_days
            note = _indicator_note(kind, value, baseline, f)
            row_notes.update(dict.fromkeys(rows.tolist(), note))
        touched = np.flatnonzero((until >= 0) & (factor != 1.0))
        if touched.size:
            in_force = np.arange(horizon)[None, :] <= until[touched, None]
            total[touched] *= np.where(in_force, factor[touched, None], 1.0)
        for row, note in row_notes.items():
            if not math.isclose(note.effect, 1.0):
                existing = notes.get(row)
                if existing is None:
                    notes[row] = [note]
                else:
                    existing.append(note)
    return np.clip(total, policy.lead_factor_min, policy.lead_factor_max)


# --- triggers --------------------------------------------------------------------------------------


def supplier_skus(conn: sqlite3.Connection, suppliers: Collection[str]) -> set[str]:
    """The SKUs bought from these suppliers: item_suppliers (the planner's table), and items received from them
    in the last year (an item not yet mapped still counts)."""
    if not suppliers:
        return set()
    marks = ",".join("?" * len(suppliers))
    names = tuple(suppliers)
    found = {r[0] for r in conn.execute(f"SELECT sku FROM item_suppliers WHERE supplier IN ({marks})", names)}
    found.update(
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT l.sku FROM documents d JOIN document_lines l ON l.document_id = d.id"
            f" WHERE d.type IN ('receipt', 'purchase_order') AND d.counterparty IN ({marks})",
            names,
        )
    )
    return found


def touched_since(conn: sqlite3.Connection, cursor: int) -> tuple[int, set[str]]:
    """SKUs whose signals changed after batch `cursor`, and the new cursor (the last batch id). Weather is left
    out: it touches every SKU, and the scheduled run picks it up."""
    row = conn.execute("SELECT MAX(id) FROM signal_batches").fetchone()
    newest = int(row[0] or 0)
    if newest <= cursor:
        return cursor, set()
    skus: set[str] = set()
    categories: set[str] = set()
    for table in ("signal_promotions", "signal_indicators"):
        for r in conn.execute(f"SELECT DISTINCT sku, category FROM {table} WHERE batch_id > ?", (cursor,)):
            if r[0]:
                skus.add(r[0])
            if r[1]:
                categories.add(r[1])
    skus.update(
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT l.sku FROM signal_online_lines l JOIN signal_online_orders o ON o.id = l.order_row"
            " WHERE o.batch_id > ? AND l.counted = 1",
            (cursor,),
        )
    )
    suppliers = {
        r[0] for r in conn.execute("SELECT DISTINCT supplier FROM signal_supplier_delays WHERE batch_id > ?", (cursor,))
    }
    skus |= supplier_skus(conn, suppliers)
    if categories:
        marks = ",".join("?" * len(categories))
        skus.update(r[0] for r in conn.execute(f"SELECT sku FROM items WHERE category IN ({marks})", tuple(categories)))
    return newest, skus
