"""New-product burst (新品爆发): a product launched in the last weeks that sells far above its forecast, steadily,
gets an early reorder before it runs out.

An item is new when its first receipt is at most `new_days` old and it sold nothing before. Its forecast is what the
store expected before it had sales of its own: the plan's forecast (the mean daily demand of its most recent reorder
suggestion made before its first sale), or else what a typical item of its category sells (the median daily sales
of the category's established items over `baseline_days`). Once it has sold for `min_days` days, it bursts when
over the last `window_days` days it sold at least `burst_ratio` times the forecast on average and at least
`floor_ratio` times it on each day (not one bulk buyer; every rate is of an average weekday, the store's weekly
rhythm taken out), without falling back (the window's rate is at least
`hold_share` of the days before it: a launch-week spike that fades is not a burst), and the stock on hand would sell
through within `check_days` at that rate. Then the module drafts a purchase order and notifies the category manager.
The decision is judged `check_days` later: did the item sell at least `sell_share` of what it had on hand?

A plain Python module run by the module host's worker (docs/modules.md): it reads the box database through
`ctx.db` (read-only) and imports nothing of the box.
"""

import json
import sqlite3
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

MODULE = "new-product-burst"
EPOCH = date(1970, 1, 1)
# Net sales per series and day: the ledger's, and those imported from a previous system (summed, as the plan does).
SALES = "(SELECT series, day, qty FROM sales_daily UNION ALL SELECT series, day, qty FROM sales_history)"
DEFAULTS: dict[str, Any] = {
    "new_days": 28,  # first receipt at most this many days ago
    "min_days": 5,  # days of sales before a judgement
    "window_days": 3,  # the recent days the rate is taken over
    "burst_ratio": 2.0,  # recent rate at least this many times the forecast
    "floor_ratio": 1.2,  # and every day of the window at least this many times it
    "hold_share": 0.7,  # recent rate at least this share of the rate before the window
    "baseline_days": 28,  # category baseline: sales of established items over these days
    "min_peers": 3,  # items a category baseline needs
    "check_days": 7,  # the decision is judged this many days later
    "sell_share": 0.8,  # right when at least this share of the stock on hand sold in check_days
    "cover_days": 7,  # the draft order covers lead time + review + these days
    "role": "category_manager",
}


class Ctx:
    """What the worker's ModuleContext provides (for type hints only)."""

    db: sqlite3.Connection
    today: date
    store_id: str
    params: Mapping[str, Any]

    def log(self, msg: object) -> None: ...


@dataclass(frozen=True, slots=True)
class Burst:
    sku: str
    name: str
    launched: date  # first receipt
    days_selling: int
    forecast: float  # expected daily sales
    source: str  # "plan" or "category"
    rate: float  # daily sales over the window
    ratio: float
    on_hand: int
    lead_days: float


def params_of(ctx: Ctx) -> dict[str, Any]:
    return {**DEFAULTS, **dict(ctx.params or {})}


def epoch_day(day: date) -> int:
    return (day - EPOCH).days


def handle(ctx: Ctx, event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A schedule tick: every new item that bursts and has no decision yet gets an early reorder."""
    p = params_of(ctx)
    proposals: list[dict[str, Any]] = []
    for burst in bursts(ctx.db, ctx.today, p):
        key = f"launch:{burst.sku}"
        if already_decided(ctx.db, key):
            continue
        proposals.extend(propose(ctx, burst, key, p))
    return proposals


def new_items(conn: sqlite3.Connection, today: date, new_days: int) -> dict[str, tuple[str, str | None, date]]:
    """SKU -> (name, category, first receipt date) of the items first received within `new_days` days."""
    since = (today - timedelta(days=new_days)).isoformat()
    rows = conn.execute(
        "SELECT i.sku, i.name, i.category, MIN(d.business_date) AS first FROM items i"
        " JOIN document_lines dl ON dl.sku = i.sku JOIN documents d ON d.id = dl.document_id"
        " WHERE d.type = 'receipt' AND i.active = 1"
        " AND NOT EXISTS (SELECT 1 FROM documents r WHERE r.reverses_id = d.id)"
        " GROUP BY i.sku HAVING MIN(d.business_date) >= ? AND MIN(d.business_date) <= ?",
        (since, today.isoformat()),
    ).fetchall()
    return {r["sku"]: (r["name"], r["category"], date.fromisoformat(r["first"])) for r in rows}


def daily_sales(conn: sqlite3.Connection, skus: Sequence[str], first_day: int, end_day: int) -> dict[str, list[int]]:
    """Net sales per day (all locations) of `skus` over epoch days [first_day, end_day)."""
    out = {sku: [0] * max(end_day - first_day, 0) for sku in skus}
    rows = conn.execute(
        f"SELECT s.sku, d.day, SUM(d.qty) FROM {SALES} d JOIN plan_series s ON s.id = d.series"
        " WHERE d.day >= ? AND d.day < ? AND s.sku IN (SELECT value FROM json_each(?)) GROUP BY s.sku, d.day",
        (first_day, end_day, json.dumps(list(skus))),
    ).fetchall()
    for sku, day, qty in rows:
        out[str(sku)][int(day) - first_day] = int(qty)
    return out


def bursts(conn: sqlite3.Connection, today: date, p: Mapping[str, Any]) -> list[Burst]:
    """New items selling far above their forecast, steadily, with stock that will not last `check_days`."""
    new = new_items(conn, today, int(p["new_days"]))
    if not new:
        return []
    end = epoch_day(today)  # today's sales are not in yet (the tick runs in the morning)
    start = min(epoch_day(first) for _, _, first in new.values())
    history = daily_sales(conn, list(new), start, end)
    window, min_days = int(p["window_days"]), max(int(p["min_days"]), int(p["window_days"]) + 1)
    profile = weekday_profile(conn, today)

    def weight(day: date) -> float:
        return profile[day.weekday()]

    found: list[Burst] = []
    for sku, (name, category, launched) in sorted(new.items()):
        series = history[sku][epoch_day(launched) - start :]
        selling = next((k for k, q in enumerate(series) if q > 0), None)
        if selling is None:
            continue
        series = series[selling:]
        if len(series) < min_days:
            continue
        first_sale = launched + timedelta(days=selling)
        forecast, source = forecast_for(conn, sku, category, first_sale, today, new, p)
        if forecast is None or forecast <= 0:
            continue
        # Rates of an average weekday: the store's weekly rhythm taken out of the days they rest on.
        days = [first_sale + timedelta(days=k) for k in range(len(series))]
        recent, before = series[-window:], series[:-window]
        rate = sum(recent) / sum(weight(d) for d in days[-window:])
        if rate < float(p["burst_ratio"]) * forecast:
            continue
        if any(q < float(p["floor_ratio"]) * forecast * weight(d) for q, d in zip(recent, days[-window:], strict=True)):
            continue
        if before and rate < float(p["hold_share"]) * sum(before) / sum(weight(d) for d in days[:-window]):
            continue
        on_hand = int(
            conn.execute(
                "SELECT COALESCE(SUM(qty), 0) FROM balances WHERE sku = ? AND location != 'transit'", (sku,)
            ).fetchone()[0]
        )
        coming = sum(weight(today + timedelta(days=k)) for k in range(int(p["check_days"])))
        if on_hand <= 0 or rate * coming < on_hand:
            continue
        found.append(
            Burst(
                sku=sku,
                name=name,
                launched=launched,
                days_selling=len(series),
                forecast=forecast,
                source=source,
                rate=rate,
                ratio=rate / forecast,
                on_hand=on_hand,
                lead_days=lead_days(conn, sku),
            )
        )
    return found


def forecast_for(
    conn: sqlite3.Connection,
    sku: str,
    category: str | None,
    first_sale: date,
    today: date,
    new: Mapping[str, Any],
    p: Mapping[str, Any],
) -> tuple[float | None, str]:
    """The plan's forecast made before the first sale, else the category's typical daily sales."""
    row = conn.execute(
        "SELECT inputs FROM suggestions WHERE sku = ? AND substr(created_at, 1, 10) <= ? ORDER BY created_at DESC, id"
        " DESC LIMIT 1",
        (sku, first_sale.isoformat()),
    ).fetchone()
    if row is not None:
        try:
            daily = json.loads(row[0]).get("daily") or []
            plan = sum(float(v) for v in daily) / len(daily) if daily else 0.0
        except (ValueError, TypeError, AttributeError):
            plan = 0.0
        if plan > 0:
            return plan, "plan"
    if not category:
        return None, "none"
    end = epoch_day(today)
    start = end - int(p["baseline_days"])
    rows = conn.execute(
        f"SELECT s.sku, SUM(d.qty) FROM {SALES} d JOIN plan_series s ON s.id = d.series"
        " JOIN items i ON i.sku = s.sku"
        " WHERE i.category = ? AND d.day >= ? AND d.day < ? GROUP BY s.sku"
        " HAVING MIN(d.day) < ? + 7",
        (category, start, end, start),
    ).fetchall()
    peers = [max(int(total), 0) / (end - start) for s, total in rows if s not in new]
    if len(peers) < int(p["min_peers"]):
        return None, "none"
    return float(statistics.median(peers)), "category"


def weekday_profile(conn: sqlite3.Connection, today: date, weeks: int = 8) -> list[float]:
    """The store's weekly rhythm: each weekday's share of an average day (Monday first), from all net sales of the
    last `weeks` weeks; flat until two weeks of sales are in."""
    end = epoch_day(today)
    rows = conn.execute(
        f"SELECT day, SUM(qty) FROM {SALES} WHERE day >= ? AND day < ? GROUP BY day", (end - 7 * weeks, end)
    ).fetchall()
    if len(rows) < 14:
        return [1.0] * 7
    totals, counts = [0.0] * 7, [0] * 7
    for day, qty in rows:
        weekday = (EPOCH + timedelta(days=int(day))).weekday()
        totals[weekday] += max(float(qty), 0.0)
        counts[weekday] += 1
    means = [totals[w] / counts[w] if counts[w] else 0.0 for w in range(7)]
    seen = [m for w, m in enumerate(means) if counts[w]]
    average = sum(seen) / len(seen) if seen else 0.0
    if average <= 0:
        return [1.0] * 7
    return [min(max(m / average, 0.5), 2.0) if counts[w] else 1.0 for w, m in enumerate(means)]


def lead_days(conn: sqlite3.Connection, sku: str) -> float:
    row = conn.execute(
        "SELECT lead_time_days + review_days FROM item_suppliers WHERE sku = ? AND is_primary = 1 AND active = 1",
        (sku,),
    ).fetchone()
    return float(row[0]) if row else 3.0


def already_decided(conn: sqlite3.Connection, key: str) -> bool:
    try:
        row = conn.execute("SELECT 1 FROM module_decisions WHERE module = ? AND key = ? LIMIT 1", (MODULE, key))
        return row.fetchone() is not None
    except sqlite3.OperationalError:  # a database without the module host's tables (a bare test DB)
        return False


def propose(ctx: Ctx, burst: Burst, key: str, p: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A draft purchase order (carrying the decision) and a notice to the category manager."""
    cover = round(burst.lead_days + float(p["cover_days"]), 1)
    days_left = burst.on_hand / burst.rate
    basis_zh = "补货计划预测" if burst.source == "plan" else "同品类常规商品"
    basis_en = "the plan's forecast" if burst.source == "plan" else "typical items of its category"
    draft = {
        "action": "create_draft",
        "draft": "purchase_order",
        "sku": burst.sku,
        "qty_days": min(cover, 90.0),
        "note": {
            "zh": f"新品爆发提前补货: {burst.name} 日销 {burst.rate:.1f}, 为预测的 {burst.ratio:.1f} 倍",
            "en": f"early reorder of a bursting launch: {burst.sku} sells {burst.rate:.1f} a day,"
            f" {burst.ratio:.1f} times its forecast",
        },
        "decision": {
            "key": key,
            "subject": burst.sku,
            "predicted": {
                "outcome": "sell_through",
                "sku": burst.sku,
                "on_hand": burst.on_hand,
                "rate": round(burst.rate, 2),
                "forecast": round(burst.forecast, 2),
                "source": burst.source,
                "decided_on": ctx.today.isoformat(),
                "check_days": int(p["check_days"]),
            },
            "check_on": (ctx.today + timedelta(days=int(p["check_days"]))).isoformat(),
        },
    }
    notice = {
        "action": "notify",
        "role": str(p["role"]),
        "message": {
            "zh": f"新品爆发: {burst.name} ({burst.sku}) 上市 {burst.days_selling} 天, 近 {p['window_days']} 天日销"
            f" {burst.rate:.1f}, 是预测 ({basis_zh}) {burst.forecast:.1f} 的 {burst.ratio:.1f} 倍;"
            f" 库存 {burst.on_hand} 约够 {days_left:.1f} 天, 已生成 {cover:g} 天用量的采购草稿",
            "en": f"new product bursting: {burst.sku} selling {burst.days_selling} days, {burst.rate:.1f} a day over"
            f" the last {p['window_days']} days, {burst.ratio:.1f} times its forecast of {burst.forecast:.1f}"
            f" ({basis_en}); {burst.on_hand} on hand lasts about {days_left:.1f} days; a draft order for"
            f" {cover:g} days is ready",
        },
    }
    return [draft, notice]


def predicted_of(decision: Mapping[str, Any]) -> dict[str, Any]:
    value = decision.get("predicted")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def judge(ctx: Ctx, decision: Mapping[str, Any]) -> bool | None:
    """`check_days` after the decision: True when the item sold at least `sell_share` of the stock it had then (it
    sold through or ran out), False when it did not; None before the window is over."""
    p = params_of(ctx)
    predicted = predicted_of(decision)
    sku, decided_on, on_hand = predicted.get("sku"), predicted.get("decided_on"), predicted.get("on_hand")
    if not sku or not decided_on or on_hand is None:
        return None
    start = date.fromisoformat(str(decided_on))
    days = int(predicted.get("check_days") or p["check_days"])
    if ctx.today < start + timedelta(days=days):
        return None
    sold = sum(daily_sales(ctx.db, [str(sku)], epoch_day(start), epoch_day(start) + days)[str(sku)])
    return sold >= float(p["sell_share"]) * int(on_hand)
