"""The replenishment plan (补货计划): for every SKU-location, how much to order and by when, with the reasons.

`compute_plan` is the pure core over arrays (forecast -> signal effects -> expiring stock -> `plan_orders`), used by
the box and by tools/sim_store.py. `prepare_plan` reads the database in a few set queries (edge.replenishment.
plan_data) and builds the suggestion rows with their explanations; `write_plan` writes them in one transaction
(the writer's), superseding the open suggestion of each SKU-location planned. `run_plan` does both on one
connection (the CLI, benchmarks). docs/replenishment.md says what a suggestion means.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from edge.forecast.features import HISTORY_DAYS, group_of
from edge.forecast.forecaster import METHODS, Forecast, forecast
from edge.forecast.runtime import DemandModel
from edge.replenishment.explain import ExplainFacts, calendar_phrases, explain_row
from edge.replenishment.kernels import plan_orders, service_factor
from edge.replenishment.leadtime import LeadTimePolicy
from edge.replenishment.lots import expiring_quantity
from edge.replenishment.plan_data import Universe, prepare_universe, read_history, read_stock
from edge.replenishment.signals import SeriesKeys, SignalEffects, SignalPolicy

log = logging.getLogger("storebox.replenishment")

DEFAULT_POOL: tuple[tuple[str, str], ...] = (("backroom", "floor"),)
LEAD_TIME_MIN_RECEIPTS = 1  # a learned supplier lead time (shrunk to the default) is used from one PO on
SUPERSEDED_KEEP_DAYS = 7  # superseded suggestions are deleted after this many days (decided ones are kept)
DEFAULT_LEAD_TIME_CV = 0.25  # std of a default lead time, as a share of it


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """n rows, one per SKU-location (see INTERFACES: the planner core)."""

    keys: SeriesKeys
    history: np.ndarray  # (n, D) float32 daily sales, last column = the day before `start`
    groups: np.ndarray  # (n,) int8
    on_hand: np.ndarray  # (n,) float64 usable on hand
    in_transit: np.ndarray  # (n,) float64
    on_order: np.ndarray  # (n,) float64
    lots_days_left: np.ndarray  # (m,) float64
    lots_qty: np.ndarray  # (m,) float64
    lots_row: np.ndarray  # (m,) int64 sorted by row then expiry
    pack: np.ndarray  # (n,) int64
    moq_packs: np.ndarray  # (n,) int64
    shelf_life_days: np.ndarray  # (n,) float64, 0 = none
    lt_mean: np.ndarray  # (n,) float64 days
    lt_std: np.ndarray  # (n,) float64 days
    review_days: np.ndarray  # (n,) float64
    service_level: np.ndarray  # (n,) float64
    start: date
    horizon: int
    # (n, D) bool, True on days the shelf was empty at closing (sales censored); None = not known. The forecaster
    # then does not read those days as days without demand.
    stockout: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.on_hand.shape[0])


@dataclass(frozen=True, slots=True)
class PlanOutputs:
    """The forecast, the demand after signal effects, and what plan_orders returned, per row."""

    forecast: Forecast
    demand: np.ndarray  # (n, H) float64
    lt_mean: np.ndarray  # (n,) lead time used: learned or default, plus supplier delays
    expiring: np.ndarray  # (n,)
    safety_stock: np.ndarray
    reorder_point: np.ndarray
    order_up_to: np.ndarray
    position: np.ndarray
    demand_lead: np.ndarray  # demand over lead time + review
    order_packs: np.ndarray  # (n,) int64, > 0 only when ordering now
    days_until_order: np.ndarray  # (n,) float64, 0 = order now, inf = never at this forecast
    shelf_capped: np.ndarray  # (n,) bool


def no_effects(n: int, horizon: int) -> SignalEffects:
    """Signal effects that change nothing."""
    return SignalEffects.none(n, horizon)


def compute_plan(inputs: PlanInputs, model: DemandModel | None, effects: SignalEffects | None) -> PlanOutputs:
    """Forecast, apply the signal effects, count expiring stock, and plan the orders of every row."""
    n, horizon = inputs.n, inputs.horizon
    effects = effects if effects is not None else no_effects(n, horizon)
    fc = forecast(inputs.history, inputs.start, horizon, effects.exog, inputs.groups, model, stockout=inputs.stockout)
    factor = np.asarray(effects.demand_factor, dtype=np.float64)
    if effects.promo_lift is not None:
        # The model sees promotions in exog; the statistical methods get the promotion's nominal lift instead.
        statistical = np.asarray(fc.method) != METHODS.index("model")
        factor = np.where(statistical[:, None], factor * effects.promo_lift, factor)
    demand = np.maximum(np.asarray(fc.mean, dtype=np.float64) * factor + effects.extra_demand, 0.0)
    lt_mean = np.maximum(inputs.lt_mean + effects.lead_time_extra_days, 0.0)
    expiring = expiring_quantity(
        demand,
        inputs.lots_days_left.astype(np.float64),
        inputs.lots_qty.astype(np.float64),
        inputs.lots_row.astype(np.int64),
    )
    z = service_factor(inputs.service_level.astype(np.float64))
    ss, rop, up_to, position, demand_lead, packs, days, capped = plan_orders(
        np.ascontiguousarray(demand),
        np.asarray(fc.std, dtype=np.float64),
        lt_mean.astype(np.float64),
        inputs.lt_std.astype(np.float64),
        inputs.review_days.astype(np.float64),
        z,
        inputs.on_hand.astype(np.float64),
        inputs.in_transit.astype(np.float64),
        inputs.on_order.astype(np.float64),
        expiring,
        inputs.pack.astype(np.int64),
        inputs.moq_packs.astype(np.int64),
        inputs.shelf_life_days.astype(np.float64),
    )
    return PlanOutputs(
        forecast=fc,
        demand=demand,
        lt_mean=lt_mean,
        expiring=expiring,
        safety_stock=ss,
        reorder_point=rop,
        order_up_to=up_to,
        position=position,
        demand_lead=demand_lead,
        order_packs=packs,
        days_until_order=days,
        shelf_capped=capped,
    )


# --- the database side ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LeadTimeSource:
    """Lead time per supplier as the plan uses it: learned from PO and receipt dates, or the default."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What a run needs from outside: the time, the business day and the planning settings."""

    now: datetime
    today: date
    trigger: str = "manual"
    horizon: int = 14
    history_days: int = HISTORY_DAYS
    notice_days: float = 3.0  # also write suggestions whose order-by date is within this many days
    open_po_days: int = 60  # POs older than this no longer count as on order
    pool: tuple[tuple[str, str], ...] = DEFAULT_POOL
    model: DemandModel | None = None
    use_signals: bool = True
    signal_policy: SignalPolicy | None = None
    lead_time_policy: LeadTimePolicy | None = None
    clock: Callable[[], datetime] | None = None  # for finished_at and the duration (default: `now`)


@dataclass(frozen=True, slots=True)
class PlanRecord:
    """A computed run as the writer writes it (plain values: it crosses the writer's pipe)."""

    trigger: str
    skus: tuple[str, ...] | None  # None: a full run
    business_date: str
    started_at: str
    finished_at: str
    duration_ms: int
    series: int
    methods: dict[str, int]
    errors: list[dict[str, str]]
    rows: list[tuple[Any, ...]]  # see SUGGESTION_COLUMNS
    hourly_keep_from: int  # sales_hourly hours before this are pruned (full runs)


SUGGESTION_COLUMNS = (
    "sku",
    "location",
    "supplier",
    "qty",
    "unit",
    "pack",
    "base_qty",
    "order_by",
    "explanation",
    "explanation_en",
    "inputs",
)


@dataclass(frozen=True, slots=True)
class PlanRun:
    """What a run did."""

    id: int
    trigger: str
    partial: bool
    series: int
    rows: int
    superseded: int
    skipped: tuple[str, ...]  # SKUs decided by someone while the run computed: planned again next time
    duration_ms: int
    methods: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "trigger": self.trigger,
            "partial": self.partial,
            "series": self.series,
            "rows": self.rows,
            "superseded": self.superseded,
            "skipped": list(self.skipped),
            "duration_ms": self.duration_ms,
            "methods": self.methods,
            "errors": self.errors,
        }


@dataclass(frozen=True, slots=True)
class PreparedPlan:
    """Everything a run read and computed; `record` is what gets written."""

    universe: Universe
    inputs: PlanInputs
    outputs: PlanOutputs
    effects: SignalEffects
    blocked: np.ndarray
    lead_source: np.ndarray  # (n,) bool: learned lead time
    record: PlanRecord


def _series_keys(universe: Universe) -> SeriesKeys:
    return SeriesKeys(
        sku=universe.sku, location=universe.location, category=universe.category, supplier=universe.supplier
    )


def _groups(universe: Universe) -> np.ndarray:
    """features.group_of per row, computed once per distinct (category, storage class)."""
    if universe.n == 0:
        return np.zeros(0, dtype=np.int8)
    pairs = np.char.add(np.char.add(universe.category.astype(str), "\x1f"), universe.storage_class.astype(str))
    distinct, inverse = np.unique(pairs, return_inverse=True)
    codes = np.array([group_of(*str(p).split("\x1f", 1)) for p in distinct], dtype=np.int8)
    return codes[inverse.reshape(-1)]


def _lead_times(
    conn: sqlite3.Connection, universe: Universe, ctx: PlanContext, errors: list[dict[str, str]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and std lead time per row: learned per supplier when it has enough receipts, else the item's default."""
    default = universe.lead_time_days.astype(np.float64)
    mean = default.copy()
    std = default * DEFAULT_LEAD_TIME_CV
    learned = np.zeros(universe.n, dtype=bool)
    if universe.n == 0:
        return mean, std, learned
    try:
        from edge.replenishment.leadtime import supplier_lead_times

        table = supplier_lead_times(conn, ctx.today, ctx.lead_time_policy)
    except Exception as exc:  # a broken lead-time table must not stop the plan: defaults are used
        log.exception("lead times could not be read; using the defaults")
        errors.append(_error("lead_times", "供应商到货周期读取失败，按默认值", f"lead times unavailable: {exc}"))
        return mean, std, learned
    suppliers, inverse = np.unique(universe.supplier.astype(str), return_inverse=True)
    inverse = inverse.reshape(-1)
    s_mean = np.full(suppliers.shape[0], np.nan)
    s_std = np.full(suppliers.shape[0], np.nan)
    for k, supplier in enumerate(suppliers.tolist()):
        found = table.get(supplier)
        if found is not None and int(found.n) >= LEAD_TIME_MIN_RECEIPTS:
            s_mean[k], s_std[k] = float(found.mean), float(found.std)
    row_mean = s_mean[inverse]
    row_std = s_std[inverse]
    learned = ~np.isnan(row_mean)
    mean = np.where(learned, row_mean, default)
    std = np.where(learned, row_std, std)
    return mean, std, learned


def _error(code: str, message: str, message_en: str) -> dict[str, str]:
    return {"code": code, "message": message, "message_en": message_en}


def _effects(
    conn: sqlite3.Connection, keys: SeriesKeys, ctx: PlanContext, n: int, errors: list[dict[str, str]]
) -> SignalEffects:
    if not ctx.use_signals or n == 0:
        return no_effects(n, ctx.horizon)
    try:
        from edge.replenishment.signals import signal_effects

        return signal_effects(conn, keys, ctx.today, ctx.horizon, ctx.signal_policy)
    except Exception as exc:  # outside signals are advice: the plan runs without them, and says so
        log.exception("signal effects could not be read; planning without signals")
        errors.append(_error("signals", "外部信号读取失败，本次未考虑信号", f"signals unavailable: {exc}"))
        return no_effects(n, ctx.horizon)


def read_inputs(
    conn: sqlite3.Connection, ctx: PlanContext, skus: Collection[str] | None, errors: list[dict[str, str]]
) -> tuple[Universe, PlanInputs, np.ndarray, np.ndarray]:
    """Read the plan's inputs: the rows, stock, demand history, lead times and policies. Returns the universe,
    the inputs, the blocked quantity per row and whether each row's lead time was learned."""
    universe = prepare_universe(conn, ctx.pool, skus)
    n = universe.n
    stock = read_stock(conn, n, ctx.today, ctx.open_po_days)
    days = max(HISTORY_DAYS, ctx.history_days)
    history = read_history(conn, n, ctx.today, days, skus_only=skus is not None)
    lt_mean, lt_std, learned = _lead_times(conn, universe, ctx, errors)
    inputs = PlanInputs(
        keys=_series_keys(universe),
        history=history,
        groups=_groups(universe),
        on_hand=stock.on_hand,
        in_transit=stock.in_transit,
        on_order=stock.on_order,
        lots_days_left=stock.lots_days_left,
        lots_qty=stock.lots_qty,
        lots_row=stock.lots_row,
        pack=universe.pack,
        moq_packs=universe.moq,
        shelf_life_days=universe.shelf_life_days,
        lt_mean=lt_mean,
        lt_std=lt_std,
        review_days=universe.review_days,
        service_level=universe.service_level,
        start=ctx.today,
        horizon=ctx.horizon,
    )
    return universe, inputs, stock.blocked, learned


def rows_to_write(outputs: PlanOutputs, notice_days: float) -> np.ndarray:
    """Rows with something to say: order now, or order within `notice_days`."""
    now = outputs.order_packs > 0
    soon = (outputs.days_until_order > 0) & (outputs.days_until_order <= notice_days)
    capped_out = outputs.shelf_capped & (outputs.days_until_order == 0)
    return np.flatnonzero(now | soon | capped_out)


def _planned_packs(outputs: PlanOutputs, inputs: PlanInputs, rows: np.ndarray) -> np.ndarray:
    """Packs to order per written row: the kernel's when ordering now; for a later order-by date, what will be
    needed then: the position is then just under the reorder point, so the order-up-to level minus the reorder
    point in whole packs, at least one pack (the order that lifts the position back over it) and the MOQ."""
    packs = outputs.order_packs[rows].astype(np.int64)
    later = outputs.days_until_order[rows] > 0
    pk = np.maximum(inputs.pack[rows], 1)
    need = np.maximum(outputs.order_up_to[rows] - outputs.reorder_point[rows], 0.0)
    estimate = np.maximum(np.maximum(np.ceil(need / pk - 1e-9).astype(np.int64), 1), inputs.moq_packs[rows])
    planned: np.ndarray = np.where(later, estimate, packs)
    return planned


def prepare_plan(conn: sqlite3.Connection, ctx: PlanContext, skus: Collection[str] | None = None) -> PreparedPlan:
    """Read and compute a run and build its suggestion rows (on any connection; nothing is written)."""
    errors: list[dict[str, str]] = []
    universe, inputs, blocked, learned = read_inputs(conn, ctx, skus, errors)
    effects = _effects(conn, inputs.keys, ctx, universe.n, errors)
    outputs = compute_plan(inputs, ctx.model, effects)
    rows = rows_to_write(outputs, ctx.notice_days)
    packs = _planned_packs(outputs, inputs, rows)
    keep = packs > 0
    # A capped order of nothing is still worth a line: the manager sees why nothing is suggested.
    keep |= outputs.shelf_capped[rows]
    rows, packs = rows[keep], packs[keep]
    phrases = calendar_phrases(ctx.today, ctx.horizon)
    written: list[tuple[Any, ...]] = []
    method_names = METHODS
    for facts in _facts(universe, inputs, outputs, effects, blocked, learned, rows, packs, ctx, method_names):
        zh, en, numbers = explain_row(facts, phrases)
        written.append(
            (
                facts.sku,
                facts.location,
                facts.supplier,
                facts.qty,
                facts.unit,
                facts.pack,
                facts.qty * facts.pack,
                facts.order_by.isoformat(),
                zh,
                en,
                json.dumps(numbers, ensure_ascii=False, separators=(",", ":")),
            )
        )
    methods = _method_counts(outputs.forecast.method, method_names)
    finished = ctx.clock() if ctx.clock is not None else ctx.now
    record = PlanRecord(
        trigger=ctx.trigger,
        skus=None if skus is None else tuple(sorted(set(skus))),
        business_date=ctx.today.isoformat(),
        started_at=ctx.now.isoformat(),
        finished_at=finished.isoformat(),
        duration_ms=max(0, round((finished - ctx.now).total_seconds() * 1000)),
        series=universe.n,
        methods=methods,
        errors=errors,
        rows=written,
        hourly_keep_from=int((ctx.now - timedelta(days=35)).timestamp()) // 3600,
    )
    return PreparedPlan(universe, inputs, outputs, effects, blocked, learned, record)


def _method_counts(method: np.ndarray, names: Sequence[str]) -> dict[str, int]:
    if method.size == 0:
        return {}
    counts = np.bincount(method.astype(np.int64), minlength=len(names))
    return {names[i]: int(c) for i, c in enumerate(counts.tolist()) if c and i < len(names)}


def _rounded(values: np.ndarray) -> list[float]:
    """Python floats rounded to 2 decimals, in one pass (explanations show them; JSON keeps them)."""
    out: list[float] = np.round(np.nan_to_num(values.astype(np.float64), posinf=1e12, neginf=-1e12), 2).tolist()
    return out


def _facts(
    universe: Universe,
    inputs: PlanInputs,
    outputs: PlanOutputs,
    effects: SignalEffects,
    blocked: np.ndarray,
    learned: np.ndarray,
    rows: np.ndarray,
    packs: np.ndarray,
    ctx: PlanContext,
    method_names: Sequence[str],
) -> list[ExplainFacts]:
    """The facts of the rows written, column by column (NumPy), then one record per row."""
    if rows.size == 0:
        return []
    days = outputs.days_until_order[rows]
    whole_days = np.where(np.isfinite(days), np.floor(days), 0.0).astype(np.int64).tolist()
    methods = outputs.forecast.method[rows].astype(np.int64).tolist()
    daily: list[list[float]] = np.round(outputs.demand[rows, : min(7, outputs.demand.shape[1])], 2).tolist()
    col = {
        "protection_days": _rounded(outputs.lt_mean[rows] + inputs.review_days[rows]),
        "forecast_protection": _rounded(outputs.demand_lead[rows]),
        "on_hand": _rounded(inputs.on_hand[rows]),
        "in_transit": _rounded(inputs.in_transit[rows]),
        "on_order": _rounded(inputs.on_order[rows]),
        "expiring": _rounded(outputs.expiring[rows]),
        "blocked": _rounded(blocked[rows]),
        "safety_stock": _rounded(outputs.safety_stock[rows]),
        "reorder_point": _rounded(outputs.reorder_point[rows]),
        "order_up_to": _rounded(outputs.order_up_to[rows]),
        "position": _rounded(outputs.position[rows]),
        "lead_time_days": _rounded(outputs.lt_mean[rows]),
        "lead_time_std": _rounded(inputs.lt_std[rows]),
        "delay_days": _rounded(effects.lead_time_extra_days[rows]),
        "review_days": _rounded(inputs.review_days[rows]),
        "service_level": _rounded(inputs.service_level[rows]),
        "shelf_life_days": _rounded(inputs.shelf_life_days[rows]),
        "days_until_order": _rounded(days),
    }
    text = {
        name: getattr(universe, name)[rows].tolist() for name in ("sku", "location", "supplier", "unit", "base_unit")
    }
    pack = universe.pack[rows].tolist()
    moq = universe.moq[rows].tolist()
    learned_rows = learned[rows].tolist()
    capped = outputs.shelf_capped[rows].tolist()
    intermittent = outputs.forecast.intermittent[rows].tolist()
    qty = packs.tolist()
    facts = []
    for k, row in enumerate(rows.tolist()):
        method = methods[k]
        facts.append(
            ExplainFacts(
                sku=str(text["sku"][k]),
                location=str(text["location"][k]),
                supplier=str(text["supplier"][k]),
                unit=str(text["unit"][k]),
                base_unit=str(text["base_unit"][k]),
                pack=int(pack[k]),
                moq=int(moq[k]),
                qty=int(qty[k]),
                order_by=ctx.today + timedelta(days=whole_days[k]),
                days_until_order=col["days_until_order"][k],
                protection_days=col["protection_days"][k],
                forecast_protection=col["forecast_protection"][k],
                daily=daily[k],
                on_hand=col["on_hand"][k],
                in_transit=col["in_transit"][k],
                on_order=col["on_order"][k],
                expiring=col["expiring"][k],
                blocked=col["blocked"][k],
                safety_stock=col["safety_stock"][k],
                reorder_point=col["reorder_point"][k],
                order_up_to=col["order_up_to"][k],
                position=col["position"][k],
                lead_time_days=col["lead_time_days"][k],
                lead_time_std=col["lead_time_std"][k],
                lead_time_learned=bool(learned_rows[k]),
                delay_days=col["delay_days"][k],
                review_days=col["review_days"][k],
                service_level=col["service_level"][k],
                shelf_life_days=col["shelf_life_days"][k],
                shelf_capped=bool(capped[k]),
                method=method_names[method] if 0 <= method < len(method_names) else "none",
                intermittent=bool(intermittent[k]),
                notes=list(effects.notes.get(row, ())),
            )
        )
    return facts


def write_plan(conn: sqlite3.Connection, record: PlanRecord) -> PlanRun:
    """Write a computed run (inside the caller's transaction, e.g. the writer's): its plan_runs row, then per
    SKU-location: an open suggestion the run suggests again unchanged (supplier, quantity, unit, order-by date)
    keeps its id and is refreshed in place (someone may be looking at it); any other open one in the run's scope
    is superseded, and the new ones are inserted. A SKU-location someone approved or rejected after the run
    started keeps that decision: the run writes nothing for it (it is in `skipped`). Superseded suggestions are
    kept SUPERSEDED_KEEP_DAYS days."""
    cursor = conn.execute(
        "INSERT INTO plan_runs (trigger, partial, business_date, started_at, finished_at, series, rows, superseded,"
        " duration_ms, methods, errors) VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, ?, ?)",
        (
            record.trigger,
            int(record.skus is not None),
            record.business_date,
            record.started_at,
            record.finished_at,
            record.series,
            record.duration_ms,
            json.dumps(record.methods),
            json.dumps(record.errors, ensure_ascii=False),
        ),
    )
    run_id = int(cursor.lastrowid or 0)
    decided = {
        (r[0], r[1])
        for r in conn.execute(
            "SELECT sku, location FROM suggestions WHERE decided_at >= ? AND state IN ('approved', 'rejected')",
            (record.started_at,),
        )
    }
    rows = [r for r in record.rows if (r[0], r[1]) not in decided]
    conn.execute("DROP TABLE IF EXISTS temp.plan_new")
    conn.execute(f"CREATE TEMP TABLE plan_new ({', '.join(SUGGESTION_COLUMNS)})")
    conn.executemany(
        f"INSERT INTO temp.plan_new VALUES ({', '.join('?' * len(SUGGESTION_COLUMNS))})",
        rows,
    )
    conn.execute("CREATE INDEX temp.plan_new_by_key ON plan_new(sku, location)")
    conn.execute(
        "UPDATE suggestions AS s SET run_id = ?, pack = n.pack, base_qty = n.base_qty, explanation = n.explanation,"
        " explanation_en = n.explanation_en, inputs = n.inputs FROM temp.plan_new AS n"
        " WHERE s.state = 'open' AND s.sku = n.sku AND s.location = n.location AND s.supplier = n.supplier"
        " AND s.qty = n.qty AND s.unit = n.unit AND s.order_by = n.order_by",
        (run_id,),
    )
    if record.skus is None:
        superseded = conn.execute(
            "UPDATE suggestions SET state = 'superseded' WHERE state = 'open' AND run_id != ?", (run_id,)
        ).rowcount
    else:
        superseded = conn.execute(
            "UPDATE suggestions SET state = 'superseded' WHERE state = 'open' AND run_id != ?"
            " AND sku IN (SELECT value FROM json_each(?))",
            (run_id, json.dumps(list(record.skus))),
        ).rowcount
    conn.execute(
        f"INSERT INTO suggestions (run_id, {', '.join(SUGGESTION_COLUMNS)}, state, created_at)"
        f" SELECT ?, {', '.join('n.' + c for c in SUGGESTION_COLUMNS)}, 'open', ? FROM temp.plan_new AS n"
        " WHERE NOT EXISTS (SELECT 1 FROM suggestions s WHERE s.state = 'open' AND s.sku = n.sku"
        " AND s.location = n.location)",
        (run_id, record.finished_at),
    )
    conn.execute("DROP TABLE temp.plan_new")
    conn.execute("UPDATE plan_runs SET rows = ?, superseded = ? WHERE id = ?", (len(rows), superseded, run_id))
    if record.skus is None:
        conn.execute("DELETE FROM sales_hourly WHERE hour < ?", (record.hourly_keep_from,))
        keep_from = (datetime.fromisoformat(record.finished_at) - timedelta(days=SUPERSEDED_KEEP_DAYS)).isoformat()
        conn.execute("DELETE FROM suggestions WHERE state = 'superseded' AND created_at < ?", (keep_from,))
    planned_skus = {r[0] for r in record.rows}
    skipped = tuple(sorted({sku for sku, _ in decided if sku in planned_skus}))
    return PlanRun(
        id=run_id,
        trigger=record.trigger,
        partial=record.skus is not None,
        series=record.series,
        rows=len(rows),
        superseded=superseded,
        skipped=skipped,
        duration_ms=record.duration_ms,
        methods=record.methods,
        errors=record.errors,
    )


def run_plan(conn: sqlite3.Connection, ctx: PlanContext, skus: Collection[str] | None = None) -> PlanRun:
    """Read, compute and write a run on one connection (in a transaction of its own unless the caller has one)."""
    prepared = prepare_plan(conn, ctx, skus)
    record = prepared.record
    if ctx.clock is not None:  # the duration includes reading and computing, measured again before the write
        finished = ctx.clock()
        record = replace(
            record,
            finished_at=finished.isoformat(),
            duration_ms=max(0, round((finished - ctx.now).total_seconds() * 1000)),
        )
    if conn.in_transaction:
        return write_plan(conn, record)
    conn.execute("BEGIN IMMEDIATE")
    try:
        run = write_plan(conn, record)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return run
