"""Near-expiry clearance (临期商品清货): find lots that will not sell before their expiry and propose a markdown, or a
transfer to a neighbour store that sells the item, before they become waste.

Each lot on hand that expires within `horizon_days` is put against the demand the item's own recent sales predict
(its velocity over `history_days`, days it sold out left aside, the store's weekly rhythm taken out and put back for
the coming days) in `draws` simulated futures: each day's demand goes to the lots still sellable that day, first
expiry first, as the ledger sells them (a lot is sellable on its expiry date). A lot left over in at least
`min_probability` of the futures is predicted "waste". A lot that sat in a cold room
during a temperature alarm that went `excursion_min_celsius` past the band has only `excursion_days_left` days left,
whatever its label says (the store's quality rule). The decision is judged the day after the expiry: the lot was
wasted (written off, lost at a count or left expired on the shelf) or it sold.

A plain Python module run by the module host's worker (docs/modules.md): it reads the box database through
`ctx.db` (read-only) and imports nothing of the box.
"""

import json
import math
import random
import sqlite3
import time
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

MODULE = "near-expiry"
EPOCH = date(1970, 1, 1)
# Net sales per series and day: the ledger's, and those imported from a previous system (summed, as the plan does).
SALES = "(SELECT series, day, qty FROM sales_daily UNION ALL SELECT series, day, qty FROM sales_history)"
DEFAULTS: dict[str, Any] = {
    "horizon_days": 3,  # lots expiring within this many days are looked at
    "history_days": 28,  # days of sales the velocity is taken from
    "min_probability": 0.95,  # predicted "waste" at or above this chance of a leftover
    "min_waste_units": 1,  # "waste" means at least this many base units left over
    "draws": 1000,  # simulated futures of each item's demand
    "markdown_discount_bp": 3000,  # 30 % off in the proposed markdown
    "transfer_min_days": 2,  # a transfer needs this many sellable days left to be worth the trip
    "excursion_min_celsius": 3.0,  # an alarm this far past the band shortens the shelf life
    "excursion_days_left": 2,  # days a lot may still be sold after such an alarm, the alarm's day included
    "excursion_lookback_days": 7,
    "role": "category_manager",
    "max_decisions_per_call": 200,
    "max_seconds": 8.0,  # stop looking (the earliest expiries first) and leave the rest to the next call
}


class Ctx:
    """What the worker's ModuleContext provides (for type hints only)."""

    db: sqlite3.Connection
    today: date
    store_id: str
    params: Mapping[str, Any]

    def log(self, msg: object) -> None: ...


@dataclass(frozen=True, slots=True)
class LotAtRisk:
    sku: str
    name: str
    lot: str
    location: str
    expiry: date
    qty: int
    ahead: int  # base units of the item in lots sold before this one (earlier expiry)
    days_left: int  # sellable days from today, today included
    shortened: bool  # by a cold-room alarm
    mean: float  # expected demand over those days
    probability: float  # of a leftover
    expected_waste: float
    price_fen: int
    storage_class: str


def params_of(ctx: Ctx) -> dict[str, Any]:
    return {**DEFAULTS, **dict(ctx.params or {})}


def epoch_day(day: date) -> int:
    return (day - EPOCH).days


# --- handle ------------------------------------------------------------------------------------------------------


def handle(ctx: Ctx, event: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A schedule tick or a cold-room alarm: look at every lot near its expiry; propose for the ones at risk that
    have no decision yet."""
    p = params_of(ctx)
    if str(event.get("kind", "")).split(":")[0] == "alert":  # {"kind": "alert", "name": "cold-room", ...}
        alert = (event.get("facts") or {}).get("alert") or {}
        ctx.log(f"cold-room alert on {alert.get('subject', '?')}: looking at every lot again")
    decided = decided_keys(ctx.db)
    deadline = time.monotonic() + float(p["max_seconds"])
    risks, left = lots_at_risk(ctx.db, ctx.today, p, decided, deadline)
    if left:
        ctx.log(f"time budget of {p['max_seconds']} s reached: {left} items left for the next call")
    proposals: list[dict[str, Any]] = []
    for risk in risks[: int(p["max_decisions_per_call"])]:
        key = f"lot:{risk.sku}:{risk.lot}"
        if key not in decided:
            proposals.extend(propose(ctx, risk, key, p))
    return proposals


def lots_at_risk(
    conn: sqlite3.Connection,
    today: date,
    p: Mapping[str, Any],
    decided: Collection[str] = (),
    deadline: float | None = None,
) -> tuple[list[LotAtRisk], int]:
    """Lots expiring within the horizon (or shortened by a cold-room alarm) whose leftover chance reaches
    `min_probability`, first expiry first; and how many items were left for the next call when `deadline`
    (time.monotonic) came. Items whose lots in view all have a decision (keys in `decided`) are skipped; the items
    with the earliest expiry go first."""
    horizon = int(p["horizon_days"])
    shortened = shortened_lots(conn, today, p)
    last = (today + timedelta(days=horizon)).isoformat()
    soon = conn.execute(
        "SELECT DISTINCT b.sku FROM balances b JOIN lots l ON l.sku = b.sku AND l.lot = b.lot"
        " WHERE b.qty > 0 AND l.expiry IS NOT NULL AND l.expiry >= ? AND l.expiry <= ? AND b.location != 'transit'",
        (today.isoformat(), last),
    ).fetchall()
    candidates = sorted({str(r[0]) for r in soon} | {sku for sku, _ in shortened})
    rows = conn.execute(
        "SELECT b.sku, b.location, b.lot, b.qty, l.expiry, i.name, i.price_fen, i.storage_class FROM balances b"
        " JOIN lots l ON l.sku = b.sku AND l.lot = b.lot JOIN items i ON i.sku = b.sku"
        " WHERE b.qty > 0 AND l.expiry IS NOT NULL AND l.expiry >= ? AND b.location != 'transit'"
        " AND b.sku IN (SELECT value FROM json_each(?)) ORDER BY b.sku, l.expiry, b.lot, b.location",
        (today.isoformat(), json.dumps(candidates)),
    ).fetchall()
    by_sku: dict[str, list[sqlite3.Row]] = {}
    for row in rows:
        by_sku.setdefault(row["sku"], []).append(row)
    by_sku = dict(sorted(by_sku.items(), key=lambda item: (item[1][0]["expiry"], item[0])))
    profile = weekday_profile(conn, today)
    velocity = demand_stats(conn, list(by_sku), today, int(p["history_days"]), profile)
    found: list[LotAtRisk] = []
    for done, (sku, lots) in enumerate(by_sku.items()):
        if deadline is not None and time.monotonic() > deadline:
            return sorted(found, key=lambda r: (r.expiry, r.sku, r.lot)), len(by_sku) - done
        mean_day, var_day, n_days = velocity.get(sku, (0.0, 0.0, 0))
        plan: list[tuple[sqlite3.Row, date, int, bool]] = []  # each lot, the ledger's first-expiry-first order
        for row in lots:
            expiry = date.fromisoformat(row["expiry"])
            days = (expiry - today).days + 1
            alarm_day = shortened.get((sku, row["lot"]))
            if alarm_day is not None:
                days = min(days, max(int(p["excursion_days_left"]) - (today - alarm_day).days, 0))
            plan.append((row, expiry, days, alarm_day is not None))
        looked_at = [k for k, (_, expiry, _, cut) in enumerate(plan) if (expiry - today).days <= horizon or cut]
        if not looked_at or all(f"lot:{sku}:{plan[k][0]['lot']}" in decided for k in looked_at):
            continue
        plan = plan[: looked_at[-1] + 1]  # later lots are sold after these: they change nothing for them
        span = max(days for _, _, days, _ in plan)
        weights = [profile[(today + timedelta(days=k)).weekday()] for k in range(span)]
        chances = leftovers(
            [(int(row["qty"]), days) for row, _, days, _ in plan],
            (mean_day, var_day, n_days),
            weights,
            int(p["draws"]),
            float(p["min_waste_units"]),
            random.Random(zlib.crc32(f"{sku}|{today.isoformat()}".encode())),
        )
        ahead = 0
        for k, (row, expiry, days, cut) in enumerate(plan):
            probability, waste = chances[k]
            if k in looked_at and probability >= float(p["min_probability"]):
                found.append(
                    LotAtRisk(
                        sku=sku,
                        name=row["name"],
                        lot=row["lot"],
                        location=row["location"],
                        expiry=expiry,
                        qty=int(row["qty"]),
                        ahead=ahead,
                        days_left=days,
                        shortened=cut,
                        mean=mean_day * sum(weights[:days]),
                        probability=probability,
                        expected_waste=waste,
                        price_fen=int(row["price_fen"]),
                        storage_class=row["storage_class"],
                    )
                )
            ahead += int(row["qty"])
    found.sort(key=lambda r: (r.expiry, r.sku, r.lot))
    return found, 0


def shortened_lots(conn: sqlite3.Connection, today: date, p: Mapping[str, Any]) -> dict[tuple[str, str], date]:
    """Lots in a room during a recent alarm that went far past the band (above its top or below its bottom), with
    the day that alarm started (UTC date of its first reading out of band)."""
    excess_mc = int(float(p["excursion_min_celsius"]) * 1000)
    since = (today - timedelta(days=int(p["excursion_lookback_days"]))).isoformat()
    try:
        rows = conn.execute(
            "SELECT x.sku, x.lot, MIN(e.started_at) AS started FROM cold_excursions e"
            " JOIN cold_excursion_lots x ON x.excursion_id = e.id"
            " WHERE e.alarmed_at IS NOT NULL AND e.started_at >= ? AND x.lot != ''"
            " AND ((e.direction = 'above' AND e.max_mc IS NOT NULL AND e.peak_mc - e.max_mc >= ?)"
            "   OR (e.direction = 'below' AND e.min_mc IS NOT NULL AND e.min_mc - e.peak_mc >= ?))"
            " GROUP BY x.sku, x.lot",
            (since, excess_mc, excess_mc),
        ).fetchall()
    except sqlite3.OperationalError:  # a box without the cold chain tables
        return {}
    return {(r["sku"], r["lot"]): date.fromisoformat(str(r["started"])[:10]) for r in rows}


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


def demand_stats(
    conn: sqlite3.Connection, skus: Sequence[str], today: date, history_days: int, profile: Sequence[float]
) -> dict[str, tuple[float, float, int]]:
    """Per SKU over the `history_days` before today (from its first sale when younger), all locations: the mean
    daily net sales of an average weekday (the weekly rhythm taken out), the variance of a day around what its
    weekday predicts, and the number of days counted."""
    if not skus:
        return {}
    end = epoch_day(today)
    start = end - history_days
    rows = conn.execute(
        f"SELECT s.sku, d.day, SUM(d.qty) AS qty FROM {SALES} d JOIN plan_series s ON s.id = d.series"
        " WHERE d.day >= ? AND d.day < ? AND s.sku IN (SELECT value FROM json_each(?)) GROUP BY s.sku, d.day",
        (start, end, json.dumps(list(skus))),
    ).fetchall()
    daily: dict[str, dict[int, int]] = {}
    for r in rows:
        daily.setdefault(r["sku"], {})[int(r["day"])] = int(r["qty"])
    sold_out = sold_out_days(conn, list(daily), today, start)
    stats: dict[str, tuple[float, float, int]] = {}
    for sku, by_day in daily.items():
        first = min(by_day)
        days = [d for d in range(first, end) if d not in sold_out.get(sku, set())]
        if len(days) < 7:  # sold out most days: the censored days are all there is
            days = list(range(first, end))
        values = [max(by_day.get(d, 0), 0) for d in days]
        factors = [profile[(EPOCH + timedelta(days=d)).weekday()] for d in days]
        n = len(values)
        mean = sum(values) / sum(factors)
        residuals = [v - mean * f for v, f in zip(values, factors, strict=True)]
        var = sum(r * r for r in residuals) / (n - 1) if n > 1 else mean
        stats[sku] = (mean, var, n)
    return stats


def sold_out_days(conn: sqlite3.Connection, skus: Sequence[str], today: date, start: int) -> dict[str, set[int]]:
    """Per SKU, the days since epoch day `start` on which it sold out (nothing left after the day's sales, before
    the evening's write-offs): their sales say less than the demand was, so they are left out of the velocity.
    Walks back from the stock on hand now through the moves of each day."""
    on_hand = {
        str(r[0]): int(r[1])
        for r in conn.execute(
            "SELECT sku, SUM(qty) FROM balances WHERE location != 'transit' AND sku IN (SELECT value FROM json_each(?))"
            " GROUP BY sku",
            (json.dumps(list(skus)),),
        )
    }
    rows = conn.execute(
        "SELECT m.sku, CAST(julianday(d.business_date) - 2440587.5 AS INTEGER) AS day, SUM(m.qty) AS moved,"
        " SUM(CASE WHEN d.type IN ('write_off', 'stocktake') AND m.qty < 0 THEN m.qty ELSE 0 END) AS lost"
        " FROM stock_moves m JOIN documents d ON d.id = m.document_id"
        " WHERE m.location != 'transit' AND d.business_date >= ? AND m.sku IN (SELECT value FROM json_each(?))"
        " GROUP BY m.sku, day ORDER BY m.sku, day DESC",
        ((EPOCH + timedelta(days=start)).isoformat(), json.dumps(list(skus))),
    ).fetchall()
    out: dict[str, set[int]] = {}
    closing = dict(on_hand)  # stock at the end of the day being looked at, walking back from now
    for r in rows:
        sku, day = str(r["sku"]), int(r["day"])
        end_of_day = closing.get(sku, 0)
        if day < epoch_day(today) and end_of_day - int(r["lost"]) <= 0:
            out.setdefault(sku, set()).add(day)
        closing[sku] = end_of_day - int(r["moved"])
    return out


def leftovers(
    lots: Sequence[tuple[int, int]],
    velocity: tuple[float, float, int],
    weights: Sequence[float],
    draws: int,
    min_units: float,
    rng: random.Random,
) -> list[tuple[float, float]]:
    """Per lot, in the order the ledger sells them (first expiry first; each with its quantity and the days it can
    still be sold, today included): the chance that at least `min_units` of it are left when it can no longer be
    sold, and how much is left on average, over `draws` simulated futures of the item's demand.

    A day's demand goes to the lots still sellable that day, earliest first, so an earlier lot that expires takes
    only the days before its expiry. Demand is negative binomial around the velocity (Poisson at least) with the
    weekday's weight, and each future draws its own level from the uncertainty of the velocity estimated from
    `n_days` days."""
    mean_day, var_day, n_days = velocity
    if not lots:
        return []
    spread = max(var_day, mean_day)
    level_shape = n_days * mean_day * mean_day / spread if mean_day > 0 and n_days > 0 else 0.0
    day_shape = mean_day * mean_day / (var_day - mean_day) if var_day > mean_day > 0 else 0.0
    wasted = [0] * len(lots)
    left_total = [0.0] * len(lots)
    for _ in range(draws):
        level = mean_day * (rng.gammavariate(level_shape, 1 / level_shape) if level_shape > 0 else 1.0)
        remaining = [qty for qty, _ in lots]
        for day, weight in enumerate(weights):
            expected = level * weight
            if day_shape > 0 and expected > 0:
                expected = rng.gammavariate(day_shape, expected / day_shape)
            demand = poisson(rng, expected)
            for k, (_, days) in enumerate(lots):
                if demand <= 0:
                    break
                if days > day and remaining[k] > 0:
                    take = min(remaining[k], demand)
                    remaining[k] -= take
                    demand -= take
        for k, left in enumerate(remaining):
            left_total[k] += left
            if left >= min_units:
                wasted[k] += 1
    return [(wasted[k] / draws, left_total[k] / draws) for k in range(len(lots))]


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (normal beyond a mean of 40, where the difference does not matter here)."""
    if mean <= 0:
        return 0
    if mean > 40:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def decided_keys(conn: sqlite3.Connection) -> set[str]:
    """Keys of the lots this module decided on (any version): the store was told once."""
    try:
        rows = conn.execute("SELECT key FROM module_decisions WHERE module = ? AND key LIKE 'lot:%'", (MODULE,))
        return {str(r[0]) for r in rows}
    except sqlite3.OperationalError:  # a database without the module host's tables (a bare test DB)
        return set()


def peer_for(conn: sqlite3.Connection, risk: LotAtRisk) -> str | None:
    """A neighbour store that sold the item lately and can keep it cold when it must be, nearest first."""
    try:
        row = conn.execute(
            "SELECT store FROM peer_stock WHERE sku = ? AND last_outbound_date IS NOT NULL"
            " AND (? = 'ambient' OR cold_chain_capable = 1) ORDER BY COALESCE(distance_km, 1e9), store LIMIT 1",
            (risk.sku, risk.storage_class),
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    return None if row is None else str(row["store"])


def propose(ctx: Ctx, risk: LotAtRisk, key: str, p: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A notice to the category manager and a draft markdown (or transfer) carrying the decision."""
    waste = max(1, round(risk.expected_waste))
    peer = peer_for(ctx.db, risk) if risk.days_left >= int(p["transfer_min_days"]) else None
    pct = round(100 * risk.probability)
    why_zh = "冷库温度异常后须尽快售出" if risk.shortened else f"{risk.expiry.isoformat()} 到期"
    why_en = "must sell soon after a cold-room alarm" if risk.shortened else f"expires {risk.expiry.isoformat()}"
    if peer is not None:
        draft: dict[str, Any] = {
            "action": "create_draft",
            "draft": "transfer_request",
            "sku": risk.sku,
            "qty": waste,
            "to_store": peer,
            "note": {
                "zh": f"临期调拨: {risk.name} 批次 {risk.lot} 约 {waste} 件卖不完 ({why_zh})",
                "en": f"near-expiry transfer: about {waste} of {risk.sku} lot {risk.lot} will not sell ({why_en})",
            },
        }
        act_zh, act_en = f"建议调拨 {waste} 到 {peer}", f"transfer {waste} to {peer}"
    else:
        draft = {
            "action": "create_draft",
            "draft": "markdown",
            "sku": risk.sku,
            "qty": min(risk.qty, max(waste, 1)),
            "discount_bp": int(p["markdown_discount_bp"]),
            "note": {
                "zh": f"临期降价: {risk.name} 批次 {risk.lot} 约 {waste} 件卖不完 ({why_zh})",
                "en": f"near-expiry markdown: about {waste} of {risk.sku} lot {risk.lot} will not sell ({why_en})",
            },
        }
        off = int(p["markdown_discount_bp"]) / 100
        act_zh, act_en = f"建议降价 {off:g}%", f"mark down {off:g}%"
    draft["decision"] = {
        "key": key,
        "subject": f"{risk.sku}/{risk.lot}",
        "predicted": {
            "outcome": "waste",
            "sku": risk.sku,
            "lot": risk.lot,
            "expiry": risk.expiry.isoformat(),
            "qty": risk.qty,
            "expected_waste": round(risk.expected_waste, 1),
            "probability": round(risk.probability, 3),
            "shortened": risk.shortened,
            "decided_on": ctx.today.isoformat(),
            "proposed": draft["draft"],
        },
        "check_on": (risk.expiry + timedelta(days=1)).isoformat(),
    }
    notice = {
        "action": "notify",
        "role": str(p["role"]),
        "message": {
            "zh": f"临期预警: {risk.name} ({risk.sku}) 批次 {risk.lot} 库存 {risk.qty}, {why_zh},"
            f" 预计约 {waste} 卖不完 (概率 {pct}%); {act_zh}",
            "en": f"near expiry: {risk.sku} lot {risk.lot}, {risk.qty} on hand, {why_en}; about {waste} expected"
            f" left over ({pct}% likely); {act_en}",
        },
    }
    return [notice, draft]


# --- judge -------------------------------------------------------------------------------------------------------


def predicted_of(decision: Mapping[str, Any]) -> dict[str, Any]:
    value = decision.get("predicted")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, Mapping) else {}


def judge(ctx: Ctx, decision: Mapping[str, Any]) -> bool | str | None:
    """After the lot's last sellable day: True when some of it was wasted (written off, lost at a count, or still
    on hand past its expiry), False when it all sold at full price, None when it is too early, "void" when the
    store acted on the proposal (some of the lot sold below its price or was transferred out: what would have
    happened is not known, so the decision is closed and left out of the KPIs)."""
    predicted = predicted_of(decision)
    sku, lot = predicted.get("sku"), predicted.get("lot")
    check_on = decision.get("check_on") or predicted.get("expiry")
    if not sku or lot is None or not check_on or ctx.today < date.fromisoformat(str(check_on)):
        return None
    decided_on = str(predicted.get("decided_on") or "0000-00-00")
    outcome = lot_outcome(ctx.db, str(sku), str(lot), decided_on)
    if outcome.wasted >= int(params_of(ctx)["min_waste_units"]):
        return True
    if outcome.acted > 0:
        return "void"
    return False


@dataclass(frozen=True, slots=True)
class LotOutcome:
    wasted: int  # written off, lost at a count, or left on hand (expired)
    sold_full_price: int
    acted: int  # sold below the item's price (a markdown) or transferred out


def lot_outcome(conn: sqlite3.Connection, sku: str, lot: str, since: str) -> LotOutcome:
    """What happened to a lot from `since` (a business date) on, from the ledger's moves."""
    rows = conn.execute(
        "SELECT d.type, m.qty, dl.gross_fen, dl.qty_base, i.price_fen FROM stock_moves m"
        " JOIN documents d ON d.id = m.document_id"
        " JOIN document_lines dl ON dl.document_id = m.document_id AND dl.line_no = m.line_no"
        " JOIN items i ON i.sku = m.sku"
        " WHERE m.sku = ? AND m.lot = ? AND d.business_date >= ? AND m.qty < 0"
        " AND d.type IN ('write_off', 'stocktake', 'sale', 'transfer_out')",
        (sku, lot, since),
    ).fetchall()
    wasted = full = acted = 0
    for r in rows:
        qty = -int(r["qty"])
        if r["type"] == "transfer_out":
            acted += qty
        elif r["type"] == "sale":
            unit = int(r["gross_fen"]) / max(int(r["qty_base"]), 1)
            if unit < int(r["price_fen"]) * 0.95:
                acted += qty
            else:
                full += qty
        else:
            wasted += qty
    left = conn.execute(
        "SELECT COALESCE(SUM(qty), 0) FROM balances WHERE sku = ? AND lot = ? AND location != 'transit' AND qty > 0",
        (sku, lot),
    ).fetchone()[0]
    return LotOutcome(wasted=wasted + int(left), sold_full_price=full, acted=acted)
