"""Store simulation (门店补货仿真): N days of one store under a replenishment policy, our planner against a naive
min/max rule on the same simulated demand, so that a change to the planner shows what it buys.

`python -m tools.sim_store --days 180 --skus 300 --seed 1 [--json out.json] [--markdown out.md]`

Each day, for all SKUs at once (NumPy/Numba, loop over days only): receive the orders due today, expire lots past
their shelf life (waste), serve the customer demand of the generator FIFO from the lots on hand (sales = min(demand,
stock): lost sales, no backorders), record stockouts, then at the review time the policy orders from what a store
can see (on hand, lots, open orders, observed sales — never the true demand), in packs and above the MOQ. Both
policies get the same demand and the same lead-time draws (common random numbers). docs/store-simulation.md.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numba import njit

NO_EXPIRY = np.int64(1 << 40)  # expiry day of a lot that does not expire
LOT_SLOTS = 48  # lots kept per SKU (ring buffer); an overflowing receipt joins the newest lot


# --- the scenario: what the world does, the same for every policy ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything outside the store's control, drawn once per seed: demand, items, suppliers, lead times.

    Day 0 is `start`; columns of the (n, T) and (s, T) arrays are days. The first `warmup` days are run under the
    naive policy for every policy alike (they make the sales history the planner starts from)."""

    start: date
    warmup: int
    demand: np.ndarray  # (n, T) int64 true customer demand, base units (the policy never sees it)
    promo: np.ndarray  # (n, T) float32 discount fraction of a planned promotion (known ahead, as a signal)
    temp_c: np.ndarray  # (n, T) float32 day max temperature (a weather signal)
    rain_mm: np.ndarray  # (n, T) float32
    sku: np.ndarray  # (n,) object str
    category: np.ndarray  # (n,) object str
    storage_class: np.ndarray  # (n,) object str ("ambient", "chilled", "frozen")
    supplier: np.ndarray  # (n,) int64 index into supplier_names
    supplier_names: tuple[str, ...]
    unit_cost: np.ndarray  # (n,) int64 fen per base unit
    pack: np.ndarray  # (n,) int64 base units per purchase unit
    moq_packs: np.ndarray  # (n,) int64
    shelf_life_days: np.ndarray  # (n,) int64, 0 = no expiry
    review_days: np.ndarray  # (n,) int64 review period (the supplier's order rhythm)
    review_offset: np.ndarray  # (n,) int64 first review day within the period
    service_level: np.ndarray  # (n,) float64 target cycle service level
    lead_time: np.ndarray  # (s, T) int64 days from an order placed on day t to its receipt (delays included)
    delay_notice: np.ndarray  # (s, T) float64 extra days a supplier announced for orders placed on day t
    lt_nominal: np.ndarray  # (s,) float64 quoted lead time

    @property
    def n(self) -> int:
        return int(self.demand.shape[0])

    @property
    def days(self) -> int:
        return int(self.demand.shape[1])


def supplier_lead_times(
    rng: np.random.Generator, nominal: np.ndarray, days: int, *, episode_rate: float = 1 / 60
) -> tuple[np.ndarray, np.ndarray]:
    """Lead times per supplier and order day: the quoted (nominal) days, day-to-day variability, delay episodes.

    An episode starts with probability `episode_rate` a day, lasts 7-21 days and adds 2-5 days to every order placed
    meanwhile; the supplier announces it (a supplier_delay signal) on its first day with probability 0.7."""
    suppliers = len(nominal)
    cv = rng.uniform(0.1, 0.35, size=suppliers)
    noise = rng.normal(0.0, 1.0, size=(suppliers, days)) * (nominal * cv)[:, None]
    extra = np.zeros((suppliers, days), dtype=np.int64)
    notice = np.zeros((suppliers, days), dtype=np.float64)
    for s in range(suppliers):  # suppliers are few; days are the loop the simulation runs anyway
        t = 0
        while t < days:
            if rng.random() < episode_rate:
                length = int(rng.integers(7, 22))
                add = int(rng.integers(2, 6))
                extra[s, t : t + length] = add
                if rng.random() < 0.7:
                    notice[s, t : t + length] = add
                t += length
            else:
                t += 1
    lead = np.maximum(1, np.rint(nominal[:, None] + noise).astype(np.int64) + extra)
    return lead, notice


# Items of each generator group (features.GROUPS order): storage class, shelf life range (0 = no expiry within a
# run), case sizes, unit cost median (fen), and whether fresh suppliers (daily delivery, 1-2 day lead time) serve it.
_ITEM_RULES: dict[str, tuple[str, tuple[int, int], tuple[int, ...], int, bool]] = {
    "ambient_food": ("ambient", (0, 0), (6, 12, 24), 900, False),
    "snacks": ("ambient", (0, 0), (6, 12, 24), 600, False),
    "drinks": ("ambient", (0, 0), (6, 12, 24), 400, False),
    "frozen": ("frozen", (0, 0), (6, 10, 12), 1500, False),
    "chilled_fresh": ("chilled", (5, 21), (1, 4, 6, 12), 800, True),
    "produce_bakery": ("chilled", (2, 7), (1, 2, 5, 10), 500, True),
    "hot_food": ("ambient", (1, 2), (1, 5, 10), 700, True),
    "household": ("ambient", (0, 0), (6, 12, 24), 1200, False),
}
SERVICE_TARGETS = (0.98, 0.95, 0.90)  # A, B, C items by revenue (top 20%, next 30%, the rest)


def build_scenario(
    skus: int, days: int, seed: int, *, warmup: int | None = None, start: date | None = None
) -> Scenario:
    """A store of `skus` items over warm-up + `days` days: demand, promotions and weather from the training
    generator (tools/train/generator.py, its true demand; the simulation censors sales itself), items, suppliers and
    lead times drawn here from the same seed."""
    from edge.forecast.features import GROUPS, HISTORY_DAYS
    from tools.train.generator import GROUP_CATEGORIES, generate

    warm = warmup if warmup is not None else HISTORY_DAYS
    first = start or date(2025, 1, 1)
    data = generate(skus, warm + days, first, seed)
    rng = np.random.default_rng([seed, 20261205])
    n = data.n
    group = [GROUPS[g] for g in data.groups]
    rules = [_ITEM_RULES[g] for g in group]
    fresh = np.array([r[4] for r in rules])
    # Suppliers: four fresh ones (daily review, 1-2 days) and eight ambient ones (review every 2-7 days, 2-7 days).
    n_fresh, n_dry = 4, 8
    nominal = np.concatenate(
        [rng.choice(np.array([1.0, 2.0]), size=n_fresh), rng.choice(np.array([2.0, 3.0, 4.0, 5.0, 7.0]), size=n_dry)]
    )
    lead, notice = supplier_lead_times(rng, nominal, warm + days)
    review_by_supplier = np.concatenate([np.ones(n_fresh, np.int64), rng.choice([2, 3, 7, 7], size=n_dry)])
    offset_by_supplier = rng.integers(0, 7, size=n_fresh + n_dry) % review_by_supplier
    supplier = np.where(fresh, rng.integers(0, n_fresh, n), rng.integers(n_fresh, n_fresh + n_dry, n)).astype(np.int64)
    shelf = np.array([int(rng.integers(lo, hi + 1)) if hi else 0 for _, (lo, hi), _, _, _ in rules], dtype=np.int64)
    level = data.level.astype(np.float64)
    # Case sizes: a slow mover still comes in a case, but rarely in the biggest one.
    pack = np.array([int(rng.choice(r[2][: 2 if level[i] < 1 else None])) for i, r in enumerate(rules)], np.int64)
    moq = np.where(rng.random(n) < 0.1, 2, 1).astype(np.int64)
    cost = np.maximum(50, np.rint(np.array([r[3] for r in rules]) * rng.lognormal(0.0, 0.6, n))).astype(np.int64)
    revenue = data.demand[:, :warm].astype(np.float64).sum(axis=1) * cost
    rank = np.argsort(np.argsort(-revenue)) / max(n, 1)
    service = np.where(rank < 0.2, SERVICE_TARGETS[0], np.where(rank < 0.5, SERVICE_TARGETS[1], SERVICE_TARGETS[2]))
    names = tuple([f"鲜配{k + 1:02d}" for k in range(n_fresh)] + [f"供应商{k + 1:02d}" for k in range(n_dry)])
    return Scenario(
        start=first,
        warmup=warm,
        demand=np.rint(data.demand).astype(np.int64),
        promo=data.promo.astype(np.float32),
        temp_c=data.temp_c.astype(np.float32),
        rain_mm=data.rain_mm.astype(np.float32),
        sku=np.array([f"SKU{i:05d}" for i in range(n)], dtype=object),
        category=np.array([GROUP_CATEGORIES[g] for g in group], dtype=object),
        storage_class=np.array([r[0] for r in rules], dtype=object),
        supplier=supplier,
        supplier_names=names,
        unit_cost=cost,
        pack=pack,
        moq_packs=moq,
        shelf_life_days=shelf,
        review_days=review_by_supplier[supplier],
        review_offset=offset_by_supplier[supplier],
        service_level=service,
        lead_time=lead,
        delay_notice=notice,
        lt_nominal=nominal,
    )


# --- the day step: receive, expire, serve (Numba, with a plain Python twin) --------------------------------------


@njit(cache=True, nogil=True)
def serve_day(
    day: int,
    lot_qty: np.ndarray,  # (n, K) int64 ring buffer of lots, oldest at lot_head
    lot_exp: np.ndarray,  # (n, K) int64 expiry day: a lot is sellable on days < expiry
    lot_head: np.ndarray,  # (n,) int64
    lot_len: np.ndarray,  # (n,) int64
    arrivals: np.ndarray,  # (n,) int64 units received today
    demand: np.ndarray,  # (n,) int64
    shelf_life: np.ndarray,  # (n,) int64, 0 = no expiry
    sold: np.ndarray,  # out (n,) int64
    expired: np.ndarray,  # out (n,) int64
    on_hand: np.ndarray,  # out (n,) int64 after the day
) -> None:
    n, k = lot_qty.shape
    for i in range(n):
        q = arrivals[i]
        if q > 0:
            exp = day + shelf_life[i] if shelf_life[i] > 0 else NO_EXPIRY
            if lot_len[i] > 0 and lot_exp[i, (lot_head[i] + lot_len[i] - 1) % k] == exp:
                lot_qty[i, (lot_head[i] + lot_len[i] - 1) % k] += q
            elif lot_len[i] == k:  # full: join the newest lot (it keeps its earlier expiry)
                lot_qty[i, (lot_head[i] + k - 1) % k] += q
            else:
                slot = (lot_head[i] + lot_len[i]) % k
                lot_qty[i, slot] = q
                lot_exp[i, slot] = exp
                lot_len[i] += 1
        waste = 0
        while lot_len[i] > 0 and lot_exp[i, lot_head[i]] <= day:
            waste += lot_qty[i, lot_head[i]]
            lot_qty[i, lot_head[i]] = 0
            lot_head[i] = (lot_head[i] + 1) % k
            lot_len[i] -= 1
        need = demand[i]
        got = 0
        while need > 0 and lot_len[i] > 0:
            h = lot_head[i]
            take = min(need, lot_qty[i, h])
            lot_qty[i, h] -= take
            need -= take
            got += take
            if lot_qty[i, h] == 0:
                lot_head[i] = (h + 1) % k
                lot_len[i] -= 1
        left = 0
        for j in range(lot_len[i]):
            left += lot_qty[i, (lot_head[i] + j) % k]
        sold[i] = got
        expired[i] = waste
        on_hand[i] = left


def serve_day_reference(
    day: int, lots: list[list[tuple[int, int]]], arrivals: np.ndarray, demand: np.ndarray, shelf_life: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain Python twin of `serve_day` over per-SKU lists of (qty, expiry) lots, oldest first (no slot limit)."""
    n = len(lots)
    sold = np.zeros(n, dtype=np.int64)
    expired = np.zeros(n, dtype=np.int64)
    on_hand = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if arrivals[i] > 0:
            exp = day + int(shelf_life[i]) if shelf_life[i] > 0 else int(NO_EXPIRY)
            if lots[i] and lots[i][-1][1] == exp:
                lots[i][-1] = (lots[i][-1][0] + int(arrivals[i]), exp)
            else:
                lots[i].append((int(arrivals[i]), exp))
        expired[i] = sum(q for q, e in lots[i] if e <= day)
        lots[i][:] = [(q, e) for q, e in lots[i] if e > day]
        need = int(demand[i])
        while need > 0 and lots[i]:
            q, e = lots[i][0]
            take = min(need, q)
            need -= take
            sold[i] += take
            if take == q:
                lots[i].pop(0)
            else:
                lots[i][0] = (q - take, e)
        on_hand[i] = sum(q for q, _ in lots[i])
    return sold, expired, on_hand


# --- what a policy sees and decides ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreView:
    """What the store knows at the review time of `day` (after the day's sales): no true demand in here."""

    day: int
    today: date
    rows: np.ndarray  # (r,) int64 SKU rows reviewed today
    history: np.ndarray  # (n, D) float32 observed daily sales, last column = today
    on_hand: np.ndarray  # (n,) float64
    on_order: np.ndarray  # (n,) float64 ordered, not yet received
    lots_qty: np.ndarray  # (m,) float64 lots on hand, by row then expiry
    lots_days_left: np.ndarray  # (m,) float64 last sellable day counted from tomorrow = 0 (inf: no expiry)
    lots_row: np.ndarray  # (m,) int64
    lt_mean: np.ndarray  # (n,) float64 lead time learned from this store's own receipts
    lt_std: np.ndarray  # (n,) float64
    delay_notice: np.ndarray  # (n,) float64 extra days announced by the supplier today
    # (n, D) bool, like history: True on days the shelf was empty at closing (the box can tell from its stock)
    stockout: np.ndarray | None = None


class Policy(Protocol):
    """Decides the packs to order for the reviewed rows; returns (r,) int64 purchase units, 0 = no order."""

    @property
    def name(self) -> str: ...

    def order_packs(self, scenario: Scenario, view: StoreView) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class MinMaxPolicy:
    """The naive store rule (最低/最高库存): when stock on hand plus on order falls to `min_days` of average sales
    (last `window` days of observed sales), order up to `max_days` of them, rounded up to whole packs, at least
    the MOQ. The minimum is never below one unit, so an empty shelf is always refilled."""

    min_days: float = 7.0
    max_days: float = 14.0
    window: int = 28
    name: str = "naive"

    def order_packs(self, scenario: Scenario, view: StoreView) -> np.ndarray:
        rows = view.rows
        window = min(self.window, view.day + 1)  # the first days of a run have less history
        avg = view.history[rows, -window:].astype(np.float64).mean(axis=1)
        low = np.maximum(1.0, np.ceil(self.min_days * avg))
        high = np.maximum(low, np.ceil(self.max_days * avg))
        position = view.on_hand[rows] + view.on_order[rows]
        pack = scenario.pack[rows]
        packs = np.ceil((high - position) / pack).astype(np.int64)
        packs = np.where(position <= low, np.maximum(packs, scenario.moq_packs[rows]), 0)
        return np.maximum(packs, 0).astype(np.int64)


STATIC_NAME = "static min/max"


@dataclass(slots=True)
class StaticMinMaxPolicy:
    """A second common store rule, for information (not the one the goals are judged against): min and max set
    once, in whole cases, when the rule takes over (from the average sales of the `window` days before), and not
    changed after: min = `min_days` of sales rounded up to cases (0 = reorder when empty), max = `max_days` of
    sales rounded up to cases, at least one case. At a review, when on hand + on order <= min, order up to max
    (whole cases, at least the MOQ)."""

    min_days: float = 7.0
    max_days: float = 14.0
    window: int = 28
    name: str = STATIC_NAME
    _low: np.ndarray | None = None
    _high: np.ndarray | None = None

    def order_packs(self, scenario: Scenario, view: StoreView) -> np.ndarray:
        if self._low is None or self._high is None:
            window = min(self.window, view.day + 1)
            avg = view.history[:, -window:].astype(np.float64).mean(axis=1)
            pack = scenario.pack.astype(np.float64)
            self._low = np.ceil(self.min_days * avg / pack - 1e-9) * pack
            self._high = np.maximum(np.ceil(self.max_days * avg / pack - 1e-9), 1.0) * pack
        rows = view.rows
        position = view.on_hand[rows] + view.on_order[rows]
        pack_r = scenario.pack[rows]
        packs = np.ceil((self._high[rows] - position) / pack_r - 1e-9).astype(np.int64)
        packs = np.where(position <= self._low[rows], np.maximum(packs, scenario.moq_packs[rows]), 0)
        return np.maximum(packs, 0).astype(np.int64)


# --- one run of one policy ---------------------------------------------------------------------------------------


@dataclass(slots=True)
class Trace:
    """Day-by-day record of one run (n, T) plus the events the metrics need."""

    policy: str
    demand: np.ndarray
    sold: np.ndarray
    expired: np.ndarray
    received: np.ndarray
    on_hand: np.ndarray  # end of day
    ordered: np.ndarray  # units ordered on the day
    initial_on_hand: np.ndarray  # (n,) before day 0
    cycles: np.ndarray  # (n,) replenishment cycles closed in the measured window
    cycles_out: np.ndarray  # (n,) of which with a stockout
    measure_from: int
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class _LeadTimeBook:
    """Lead time per supplier as the box learns it: mean and std of the last receipts (PO date to receipt date)."""

    def __init__(self, nominal: np.ndarray, keep: int = 20) -> None:
        self.nominal = nominal.astype(np.float64)
        self.keep = keep
        self.seen: list[list[int]] = [[] for _ in range(len(nominal))]

    def add(self, supplier: int, days: int) -> None:
        book = self.seen[supplier]
        book.append(days)
        if len(book) > self.keep:
            del book[0]

    def estimate(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.nominal.copy()
        std = 0.25 * self.nominal
        for s, book in enumerate(self.seen):
            if len(book) >= 3:
                # Shrink to the quoted figure while receipts are few (3 receipts: half each).
                w = len(book) / (len(book) + 3.0)
                mean[s] = w * float(np.mean(book)) + (1 - w) * self.nominal[s]
                std[s] = math.sqrt(w * float(np.var(book, ddof=1)) + (1 - w) * std[s] ** 2)
        return mean, std


def initial_stock(scenario: Scenario) -> np.ndarray:
    """Stock on hand before day 0: ten days of the first week's demand, at least one pack."""
    first = scenario.demand[:, : min(7, scenario.days)].astype(np.float64).mean(axis=1)
    stock: np.ndarray = np.maximum(scenario.pack, np.ceil(10.0 * first)).astype(np.int64)
    return stock


def simulate(
    scenario: Scenario, policy: Policy, *, burn_in: int = 28, history_days: int | None = None, warmup_policy: Policy
) -> Trace:
    """Run `policy` over the scenario; the first `scenario.warmup` days run `warmup_policy` instead."""
    began = time.perf_counter()
    n, days = scenario.n, scenario.days
    d_hist = history_days or max(scenario.warmup, 1)
    sup = scenario.supplier
    max_lead = int(scenario.lead_time.max()) + 1
    pipe = np.zeros((n, days + max_lead), dtype=np.int64)  # arrivals by day
    lot_qty = np.zeros((n, LOT_SLOTS), dtype=np.int64)
    lot_exp = np.zeros((n, LOT_SLOTS), dtype=np.int64)
    lot_head = np.zeros(n, dtype=np.int64)
    lot_len = np.zeros(n, dtype=np.int64)
    start_stock = initial_stock(scenario)
    # Day 0 receives the opening stock as fresh lots; it is counted apart from the receipts.
    serve_day(
        -1,
        lot_qty,
        lot_exp,
        lot_head,
        lot_len,
        start_stock,
        np.zeros(n, dtype=np.int64),
        scenario.shelf_life_days,
        np.zeros(n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
        np.zeros(n, dtype=np.int64),
    )
    sold = np.zeros((n, days), dtype=np.int64)
    expired = np.zeros((n, days), dtype=np.int64)
    received = np.zeros((n, days), dtype=np.int64)
    on_hand = np.zeros((n, days), dtype=np.int64)
    ordered = np.zeros((n, days), dtype=np.int64)
    history = np.zeros((n, d_hist + days), dtype=np.float32)
    empty = np.zeros((n, d_hist + days), dtype=bool)  # closing stock 0, aligned with history
    on_order = np.zeros(n, dtype=np.int64)
    placed = np.zeros((len(scenario.supplier_names), days), dtype=bool)
    arrive_day = np.arange(days)[None, :] + scenario.lead_time
    book = _LeadTimeBook(scenario.lt_nominal)
    measure_from = scenario.warmup + burn_in
    cycles = np.zeros(n, dtype=np.int64)
    cycles_out = np.zeros(n, dtype=np.int64)
    open_cycle = np.zeros(n, dtype=bool)  # a cycle began with a receipt inside the measured window
    out_in_cycle = np.zeros(n, dtype=bool)
    day_sold = np.zeros(n, dtype=np.int64)
    day_expired = np.zeros(n, dtype=np.int64)
    day_on_hand = np.zeros(n, dtype=np.int64)
    for t in range(days):
        arriving = pipe[:, t].copy()
        received[:, t] = arriving
        on_order -= arriving
        for s, u in zip(*np.nonzero(placed & (arrive_day == t)), strict=True):
            book.add(int(s), int(t - u))
        serve_day(
            t,
            lot_qty,
            lot_exp,
            lot_head,
            lot_len,
            arriving,
            scenario.demand[:, t],
            scenario.shelf_life_days,
            day_sold,
            day_expired,
            day_on_hand,
        )
        sold[:, t] = day_sold
        expired[:, t] = day_expired
        on_hand[:, t] = day_on_hand
        history[:, d_hist + t] = day_sold
        empty[:, d_hist + t] = day_on_hand == 0
        # Cycle service: a replenishment cycle runs from one receipt to the next; it failed if demand went unmet.
        if t >= measure_from:
            got = arriving > 0
            close = got & open_cycle
            cycles += close
            cycles_out += close & out_in_cycle
            out_in_cycle[got] = False
            open_cycle |= got
            out_in_cycle |= scenario.demand[:, t] > day_sold
        rows = np.nonzero((t - scenario.review_offset) % scenario.review_days == 0)[0]
        if len(rows) == 0:
            continue
        lt_mean_s, lt_std_s = book.estimate()
        view = _view(
            scenario,
            t,
            rows,
            history[:, t + 1 : d_hist + t + 1],
            day_on_hand,
            on_order,
            lot_qty,
            lot_exp,
            lot_head,
            lot_len,
            lt_mean_s[sup],
            lt_std_s[sup],
            empty[:, t + 1 : d_hist + t + 1],
        )
        active = warmup_policy if t < scenario.warmup else policy
        packs = active.order_packs(scenario, view)
        units = packs.astype(np.int64) * scenario.pack[rows]
        go = units > 0
        if not go.any():
            continue
        rows, units = rows[go], units[go]
        due = t + scenario.lead_time[sup[rows], t]
        np.add.at(pipe, (rows, due), units)
        on_order[rows] += units
        ordered[rows, t] = units
        placed[np.unique(sup[rows]), t] = True
    return Trace(
        policy=policy.name,
        demand=scenario.demand,
        sold=sold,
        expired=expired,
        received=received,
        on_hand=on_hand,
        ordered=ordered,
        initial_on_hand=start_stock,
        cycles=cycles,
        cycles_out=cycles_out,
        measure_from=measure_from,
        seconds=time.perf_counter() - began,
        extra={"still_on_order": on_order},
    )


def _view(
    scenario: Scenario,
    t: int,
    rows: np.ndarray,
    history: np.ndarray,
    on_hand: np.ndarray,
    on_order: np.ndarray,
    lot_qty: np.ndarray,
    lot_exp: np.ndarray,
    lot_head: np.ndarray,
    lot_len: np.ndarray,
    lt_mean: np.ndarray,
    lt_std: np.ndarray,
    stockout: np.ndarray | None = None,
) -> StoreView:
    k = lot_qty.shape[1]
    offsets = np.arange(k)[None, :]
    live = offsets < lot_len[:, None]
    slot = (lot_head[:, None] + offsets) % k
    qty = np.take_along_axis(lot_qty, slot, axis=1)[live]
    exp = np.take_along_axis(lot_exp, slot, axis=1)[live]
    row = np.broadcast_to(np.arange(len(lot_len))[:, None], live.shape)[live]
    # The box counts a lot sellable on days 0..days_left from the plan's start (tomorrow, t + 1); here a lot is
    # sellable on days before its expiry day, so days_left = exp - 1 - (t + 1). A lot that never expires: inf.
    days_left = np.where(exp >= NO_EXPIRY, np.inf, (exp - t - 2).astype(np.float64))
    return StoreView(
        day=t,
        today=scenario.start + timedelta(days=t),
        rows=rows,
        history=history,
        on_hand=on_hand.astype(np.float64),
        on_order=on_order.astype(np.float64),
        lots_qty=qty.astype(np.float64),
        lots_days_left=days_left,
        lots_row=row.astype(np.int64),
        lt_mean=lt_mean,
        lt_std=lt_std,
        delay_notice=scenario.delay_notice[scenario.supplier, t],
        stockout=stockout,
    )


# --- what a run achieved ----------------------------------------------------------------------------------------

SLOW_COVER_DAYS = 60.0  # stock covering more than this many days of the SKU's demand is a slow mover
SLOW_NO_SALE_DAYS = 28  # ... and so is stock that has not sold once in this many days
CSL_BAND = 0.03  # the goal: achieved cycle service level within ±3 percentage points of the target
CSL_MIN_CYCLES = 8  # SKUs with fewer closed cycles in the window are not judged (reported apart)


def wilson(successes: np.ndarray, trials: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial share, element-wise (trials > 0)."""
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * np.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return centre - half, centre + half


def measure(scenario: Scenario, trace: Trace) -> dict[str, Any]:
    """The figures of one run over the measured window (after warm-up and burn-in)."""
    m = trace.measure_from
    demand, sold = trace.demand[:, m:], trace.sold[:, m:]
    on_hand, expired = trace.on_hand[:, m:], trace.expired[:, m:]
    days = demand.shape[1]
    cost = scenario.unit_cost.astype(np.float64)
    demand_days = int((demand > 0).sum())
    out_days = int(((demand > 0) & (demand > sold)).sum())
    inventory_value = float((on_hand * cost[:, None]).sum(axis=0).mean())
    cogs = float((sold * cost[:, None]).sum())
    rate = demand.mean(axis=1)
    t_all = np.arange(trace.sold.shape[1])
    last_sale = np.maximum.accumulate(np.where(trace.sold > 0, t_all[None, :], -1), axis=1)
    since_sale = (t_all[None, :] - last_sale)[:, m:]
    over_cover = on_hand > SLOW_COVER_DAYS * rate[:, None]
    no_sale = since_sale >= SLOW_NO_SALE_DAYS
    slow_raw = (on_hand > 0) & (over_cover | no_sale)
    # Stock up to one minimum order (pack x MOQ) is what the supplier forces on a slow item; a policy is judged
    # on what it holds beyond that (both figures are reported).
    slow = slow_raw & (on_hand > (scenario.pack * np.maximum(scenario.moq_packs, 1))[:, None])
    case_forced = scenario.pack * np.maximum(scenario.moq_packs, 1) > SLOW_COVER_DAYS * rate
    perishable = scenario.shelf_life_days > 0
    fast = rate >= 1.0
    classes = {
        "perishable": perishable,
        "long_life": ~perishable,
        "fast (>= 1/day)": fast,
        "slow (< 1/day)": ~fast,
    }
    breakdown = {}
    for label, sel in classes.items():
        dd = int((demand[sel] > 0).sum())
        breakdown[label] = {
            "skus": int(sel.sum()),
            "fill_rate": float(sold[sel].sum() / max(demand[sel].sum(), 1)),
            "stockout_rate": float(((demand[sel] > 0) & (demand[sel] > sold[sel])).sum() / max(dd, 1)),
            "waste_units": int(expired[sel].sum()),
            "slow_mover_share": float(slow[sel].mean()) if sel.any() else 0.0,
            "slow_mover_share_raw": float(slow_raw[sel].mean()) if sel.any() else 0.0,
        }
    never = int(((trace.ordered[:, m:].sum(axis=1) == 0) & (demand.sum(axis=1) > 0)).sum())
    cycles, out = trace.cycles, trace.cycles_out
    judged = cycles >= CSL_MIN_CYCLES
    achieved = np.where(cycles > 0, 1 - out / np.maximum(cycles, 1), np.nan)
    target = scenario.service_level
    gap = achieved - target
    lo, hi = wilson((cycles - out)[judged].astype(np.float64), cycles[judged].astype(np.float64))
    t_j = target[judged]
    consistent = (hi >= t_j - CSL_BAND) & (lo <= t_j + CSL_BAND)
    by_target = {}
    for level in np.unique(target):
        sel = judged & (target == level)
        c = int(cycles[sel].sum())
        by_target[f"{level:.2f}"] = {
            "skus": int(sel.sum()),
            "cycles": c,
            "achieved": (1 - float(out[sel].sum()) / c) if c else None,
        }
    return {
        "policy": trace.policy,
        "days_measured": days,
        "demand_units": int(demand.sum()),
        "sold_units": int(sold.sum()),
        "fill_rate": float(sold.sum() / max(demand.sum(), 1)),
        "stockout_days": out_days,
        "demand_days": demand_days,
        "stockout_rate": out_days / max(demand_days, 1),
        "cycles": int(cycles.sum()),
        "cycles_with_stockout": int(out.sum()),
        "cycle_stockout_rate": float(out.sum() / max(cycles.sum(), 1)),
        "waste_units": int(expired.sum()),
        "waste_value_fen": int((expired * scenario.unit_cost[:, None]).sum()),
        "waste_share": float(expired.sum() / max(trace.received[:, m:].sum(), 1)),
        "inventory_value_fen": round(inventory_value),
        "inventory_days_of_sales": inventory_value / max(cogs / days, 1e-9),
        "turns_per_year": (cogs / inventory_value) * 365.0 / days if inventory_value > 0 else None,
        "slow_mover_share": float(slow.mean()),
        "slow_mover_share_raw": float(slow_raw.mean()),
        "slow_over_cover_share": float(((on_hand > 0) & over_cover).mean()),
        "slow_no_sale_share": float(((on_hand > 0) & no_sale).mean()),
        "skus_case_over_60_days": int(case_forced.sum()),
        "skus_with_demand_never_ordered": never,
        "breakdown": breakdown,
        "units_ordered": int(trace.ordered[:, m:].sum()),
        "orders": int((trace.ordered[:, m:] > 0).sum()),
        "csl": {
            "skus_judged": int(judged.sum()),
            "skus_not_judged": int((~judged).sum()),
            "min_cycles": CSL_MIN_CYCLES,
            "within_band_share": float((np.abs(gap[judged]) <= CSL_BAND).mean()) if judged.any() else None,
            "consistent_share": float(consistent.mean()) if judged.any() else None,
            "mean_abs_gap": float(np.abs(gap[judged]).mean()) if judged.any() else None,
            "mean_gap": float(gap[judged].mean()) if judged.any() else None,
            "by_target": by_target,
            # Per SKU, in scenario order: target, closed cycles, cycles with a stockout (achieved = 1 - out / cycles).
            "per_sku": {
                "sku": [str(x) for x in scenario.sku],
                "target": target.tolist(),
                "cycles": cycles.tolist(),
                "cycles_with_stockout": out.tolist(),
            },
        },
        "seconds": trace.seconds,
    }


def stock_balance(trace: Trace) -> np.ndarray:
    """Per SKU: opening + received - sold - expired - closing; zero when stock is conserved."""
    error: np.ndarray = (
        trace.initial_on_hand
        + trace.received.sum(axis=1)
        - trace.sold.sum(axis=1)
        - trace.expired.sum(axis=1)
        - trace.on_hand[:, -1]
    )
    return error


def goals(naive: dict[str, Any], planner: dict[str, Any]) -> list[dict[str, Any]]:
    """The three goals of the issue, each with the figures it is judged on and PASS/FAIL."""
    csl = planner["csl"]
    classes_ok = all(
        v["achieved"] is None or abs(v["achieved"] - float(k)) <= CSL_BAND for k, v in csl["by_target"].items()
    )
    csl_ok = bool(classes_ok and (csl["consistent_share"] or 0.0) >= 0.95)
    so_ratio = planner["stockout_rate"] / naive["stockout_rate"] if naive["stockout_rate"] else math.inf
    slow_ratio = planner["slow_mover_share"] / naive["slow_mover_share"] if naive["slow_mover_share"] else math.inf
    raw_ratio = (
        planner["slow_mover_share_raw"] / naive["slow_mover_share_raw"] if naive["slow_mover_share_raw"] else math.inf
    )
    return [
        {
            "goal": "cycle service level within ±3 pp of target / 周期服务水平在目标 ±3 个百分点内",
            "value": f"{100 * (csl['within_band_share'] or 0):.0f}% of SKUs within ±3 pp, "
            f"{100 * (csl['consistent_share'] or 0):.1f}% consistent at 95% confidence (goal >= 95%), "
            f"mean |gap| {100 * (csl['mean_abs_gap'] or 0):.1f} pp, pooled "
            + ", ".join(
                f"{100 * v['achieved']:.1f}% at {100 * float(k):.0f}%"
                for k, v in csl["by_target"].items()
                if v["achieved"] is not None
            ),
            "pass": csl_ok,
        },
        {
            "goal": "stockout rate down by more than a third / 缺货率降低三分之一以上",
            "value": f"{100 * planner['stockout_rate']:.2f}% vs {100 * naive['stockout_rate']:.2f}% "
            f"(x{so_ratio:.2f}, goal < x0.67)",
            "pass": bool(so_ratio < 2 / 3),
        },
        {
            "goal": "slow movers halved / 滞销品减半",
            "value": f"{100 * planner['slow_mover_share_raw']:.1f}% vs {100 * naive['slow_mover_share_raw']:.1f}% "
            f"(x{raw_ratio:.2f}, goal <= x0.50)",
            "pass": bool(raw_ratio <= 0.5),
        },
        {
            "goal": "(for information) slow movers beyond one minimum order / 超出一个起订量的滞销品",
            "value": f"{100 * planner['slow_mover_share']:.1f}% vs {100 * naive['slow_mover_share']:.1f}% "
            f"(x{slow_ratio:.2f}); {planner['skus_case_over_60_days']} SKUs get more than 60 days in one minimum order",
            "pass": bool(slow_ratio <= 0.5),
        },
    ]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _yuan(fen: float) -> str:
    return f"¥{fen / 100:,.0f}"


def markdown(results: dict[str, dict[str, Any]], goal_rows: Sequence[dict[str, Any]]) -> str:
    """The comparison table and the goal lines, as markdown."""
    names = list(results)
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("fill rate (units) / 满足率", lambda r: _pct(r["fill_rate"])),
        ("stockout SKU-days / 缺货率 (of days with demand)", lambda r: _pct(r["stockout_rate"])),
        ("cycles with a stockout / 缺货周期", lambda r: _pct(r["cycle_stockout_rate"])),
        ("waste units (expired) / 过期损耗", lambda r: f"{r['waste_units']:,}"),
        ("waste value / 损耗金额", lambda r: _yuan(r["waste_value_fen"])),
        ("waste share of units received / 损耗率", lambda r: _pct(r["waste_share"])),
        ("average inventory value / 平均库存金额", lambda r: _yuan(r["inventory_value_fen"])),
        ("inventory days of sales / 库存天数", lambda r: f"{r['inventory_days_of_sales']:.1f}"),
        ("turns per year / 年周转次数", lambda r: "—" if r["turns_per_year"] is None else f"{r['turns_per_year']:.1f}"),
        (
            "slow movers (SKU-days with stock: no sale in 28 days or cover > 60 days) / 滞销品",
            lambda r: _pct(r["slow_mover_share_raw"]),
        ),
        ("… of which beyond one minimum order", lambda r: _pct(r["slow_mover_share"])),
        ("… cover > 60 days", lambda r: _pct(r["slow_over_cover_share"])),
        ("… no sale in 28 days", lambda r: _pct(r["slow_no_sale_share"])),
        ("SKUs with demand never ordered", lambda r: str(r["skus_with_demand_never_ordered"])),
        ("orders placed / 订货次数", lambda r: f"{r['orders']:,}"),
        ("CSL: SKUs within ±3 pp", lambda r: _pct(r["csl"]["within_band_share"])),
        ("CSL: SKUs consistent with ±3 pp (95%)", lambda r: _pct(r["csl"]["consistent_share"])),
        ("CSL: mean absolute gap to target", lambda r: _pct(r["csl"]["mean_abs_gap"])),
        ("CSL: mean gap (achieved − target)", lambda r: _pct(r["csl"]["mean_gap"])),
    ]
    out = ["| metric | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    out += [f"| {label} | " + " | ".join(fmt(results[n]) for n in names) + " |" for label, fmt in rows]
    for name in names:
        for level, v in results[name]["csl"]["by_target"].items():
            out.append(
                f"| CSL target {level}: achieved ({name}, {v['skus']} SKUs, {v['cycles']} cycles) | "
                + " | ".join(_pct(v["achieved"]) if n == name else "" for n in names)
                + " |"
            )
    for label in results[names[0]]["breakdown"]:
        cells = [results[n]["breakdown"][label] for n in names]
        out.append(
            f"| {label} ({cells[0]['skus']} SKUs): fill / stockout days / waste units / slow | "
            + " | ".join(
                f"{_pct(c['fill_rate'])} / {_pct(c['stockout_rate'])} / {c['waste_units']:,} / "
                f"{_pct(c['slow_mover_share_raw'])}"
                for c in cells
            )
            + " |"
        )
    out.append("")
    out += [f"- {'PASS' if g['pass'] else 'FAIL'} — {g['goal']}: {g['value']}" for g in goal_rows]
    return "\n".join(out) + "\n"


# --- our planner: the same pure core the box runs ----------------------------------------------------------------


# Changes to the planner the simulation can emulate from outside, to measure what each would buy (--diagnose). The
# earlier ones (reorder point over L + R, SBA started at the window's mean interval, the minimum order of a slow
# perishable when half of it sells before expiry) are in the planner itself now (docs/store-simulation.md).
DIAGNOSTICS: dict[str, str] = {
    # The box only sees sales, which are zero on days the shelf was empty: give the planner the true demand of the
    # past instead (an oracle: shows what the censoring costs, an upper bound for any censoring correction).
    "uncensored_history": "history without stockout censoring (oracle)",
    # The forecaster's optional stockout mask (PlanInputs.stockout): days the shelf was empty at closing, which the
    # box could derive from its stock but does not pass yet. Real code, only the input is the simulation's.
    "stockout_mask": "stockout days (closing stock 0) passed to the forecaster as censored",
    # A higher order-up-to level: S = reorder point + the demand of one review period (the kernel orders up to the
    # reorder point itself): where an order is due and not shelf-capped, order up to S + D(R) instead.
    "order_up_to_plus_review": "order-up-to level = reorder point + demand over the review period",
}


@dataclass(slots=True)
class PlannerPolicy:
    """Our planner: at each review, `edge.replenishment.planner.compute_plan` over the reviewed rows, fed only what
    the box would have (observed sales, lots with days left, open orders, learned lead times, announced supplier
    delays, planned promotions and the weather forecast as signals); it orders what the plan says to order now."""

    model: Any = None  # DemandModel | None (edge.forecast.runtime); None = the statistical forecaster
    signals: bool = True
    horizon: int = 28  # features.MAX_HORIZON; the kernels extend a forecast beyond it at its mean
    name: str = "planner"
    # Diagnostics only, each emulating a change to the planner (never what the box does; see DIAGNOSTICS).
    fixes: frozenset[str] = frozenset()
    calls: int = 0
    _groups: np.ndarray | None = None

    def order_packs(self, scenario: Scenario, view: StoreView) -> np.ndarray:
        from edge.replenishment.planner import PlanInputs, compute_plan
        from edge.replenishment.signals import SeriesKeys

        rows = view.rows
        r = len(rows)
        review = scenario.review_days[rows].astype(np.float64)
        history = view.history[rows]
        if "uncensored_history" in self.fixes:
            d = view.history.shape[1]
            history = np.zeros((r, d), dtype=np.float32)
            past = scenario.demand[rows, max(0, view.day + 1 - d) : view.day + 1]
            history[:, d - past.shape[1] :] = past
        if self._groups is None:
            from edge.forecast.features import group_of

            self._groups = np.array(
                [group_of(c or None, s) for c, s in zip(scenario.category, scenario.storage_class, strict=True)],
                dtype=np.int8,
            )
        # Lots that never expire are not passed (the box's lots are those with an expiry date; an infinite
        # days_left would also not survive int() in the expiring kernel).
        take = np.isin(view.lots_row, rows) & np.isfinite(view.lots_days_left)
        keys = SeriesKeys(
            sku=scenario.sku[rows],
            location=np.full(r, "store", dtype=object),
            category=scenario.category[rows],
            supplier=np.array(scenario.supplier_names, dtype=object)[scenario.supplier[rows]],
        )
        inputs = PlanInputs(
            keys=keys,
            history=np.ascontiguousarray(history),
            groups=self._groups[rows],
            on_hand=view.on_hand[rows],
            in_transit=np.zeros(r),
            on_order=view.on_order[rows],
            lots_days_left=view.lots_days_left[take],
            lots_qty=view.lots_qty[take],
            lots_row=np.searchsorted(rows, view.lots_row[take]).astype(np.int64),
            pack=scenario.pack[rows].astype(np.int64),
            moq_packs=scenario.moq_packs[rows].astype(np.int64),
            shelf_life_days=scenario.shelf_life_days[rows].astype(np.float64),
            lt_mean=view.lt_mean[rows],
            lt_std=view.lt_std[rows],
            review_days=review,
            service_level=scenario.service_level[rows],
            start=view.today + timedelta(days=1),
            horizon=self.horizon,
            stockout=(
                view.stockout[rows]
                if "stockout_mask" in self.fixes
                and view.stockout is not None
                and "uncensored_history" not in self.fixes
                else None
            ),
        )
        effects = self._effects(scenario, view, rows) if self.signals else None
        out = compute_plan(inputs, self.model, effects)
        self.calls += 1
        packs = np.asarray(out.order_packs, dtype=np.int64)
        if "order_up_to_plus_review" in self.fixes:
            demand = np.asarray(out.demand, dtype=np.float64)
            take = np.arange(demand.shape[1])[None, :] < np.ceil(review)[:, None]
            d_review = np.where(take, demand, 0.0).sum(axis=1)
            pk = scenario.pack[rows].astype(np.float64)
            more = np.ceil((np.asarray(out.order_up_to) + d_review - np.asarray(out.position)) / pk - 1e-9)
            more = np.maximum(more.astype(np.int64), scenario.moq_packs[rows])
            packs = np.where((packs > 0) & ~np.asarray(out.shelf_capped), np.maximum(packs, more), packs)
        return np.where(np.asarray(out.days_until_order) <= 0.0, packs, 0).astype(np.int64)

    def _effects(self, scenario: Scenario, view: StoreView, rows: np.ndarray) -> Any:
        from edge.forecast.features import Exogenous
        from edge.replenishment.signals import SignalEffects, SignalPolicy

        h, r = self.horizon, len(rows)
        lo, hi = view.day + 1, min(view.day + 1 + h, scenario.days)

        def window(a: np.ndarray, fill: float) -> np.ndarray:
            out = np.full((r, h), fill, dtype=np.float32)
            out[:, : hi - lo] = a[rows, lo:hi]
            return out

        exog = Exogenous(
            promo=window(scenario.promo, 0.0),
            temp_c=window(scenario.temp_c, math.nan),
            rain_mm=window(scenario.rain_mm, math.nan),
        )
        # The nominal promotion lift, as signal_effects computes it for a forecast that does not read exog.promo.
        policy = SignalPolicy()
        lift = np.minimum(1.0 + policy.promo_elasticity * exog.promo.astype(np.float64), policy.promo_max_lift)
        return SignalEffects(
            exog=exog,
            demand_factor=np.ones((r, h)),
            extra_demand=np.zeros((r, h)),
            lead_time_extra_days=view.delay_notice[rows].astype(np.float64),
            notes={},
            promo_lift=lift,
        )


# --- the command ------------------------------------------------------------------------------------------------


def compare(
    scenario: Scenario, policies: Sequence[Policy], *, naive: Policy | None = None, burn_in: int = 28
) -> tuple[dict[str, dict[str, Any]], dict[str, Trace]]:
    """Run each policy on the same scenario (same demand, same lead-time draws); the warm-up runs `naive`."""
    warm = naive or MinMaxPolicy()
    traces = {p.name: simulate(scenario, p, burn_in=burn_in, warmup_policy=warm) for p in policies}
    return {name: measure(scenario, tr) for name, tr in traces.items()}, traces


def load_model(kind: str, models_dir: Path) -> Any:
    """The demand model the box would load (`forecast_model` setting), or None for the statistical forecaster."""
    if kind == "none":
        return None
    from edge.forecast.runtime import load_demand_model

    return load_demand_model(models_dir, kind)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.sim_store", description="门店补货仿真 / store replenishment simulation"
    )
    parser.add_argument("--days", type=int, default=180, help="days simulated after the warm-up")
    parser.add_argument("--skus", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--burn-in", type=int, default=28, help="first days of a policy not measured")
    parser.add_argument("--min-days", type=float, default=7.0, help="naive policy: reorder at this many days")
    parser.add_argument("--max-days", type=float, default=14.0, help="naive policy: order up to this many days")
    parser.add_argument("--model", choices=("onnx", "tflite", "none"), default="onnx")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--no-signals", action="store_true", help="plan without promotion/weather/delay signals")
    parser.add_argument(
        "--diagnose",
        action="store_true",
        help="also run the planner with each change of DIAGNOSTICS emulated, and with all of them",
    )
    parser.add_argument(
        "--static", action="store_true", help="also run a static min/max rule set once in cases (for information)"
    )
    parser.add_argument("--json", type=Path, default=None, help="write every figure as JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here too")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    scenario = build_scenario(args.skus, args.days + args.burn_in, args.seed)
    naive = MinMaxPolicy(args.min_days, args.max_days)
    model = load_model(args.model, args.models_dir)
    planner = PlannerPolicy(model=model, signals=not args.no_signals)
    policies: list[Policy] = [naive, planner]
    if args.static:
        policies.insert(1, StaticMinMaxPolicy(args.min_days, args.max_days))
    if args.diagnose:
        policies += [
            PlannerPolicy(model=model, signals=not args.no_signals, name=f"+{fix}", fixes=frozenset([fix]))
            for fix in DIAGNOSTICS
        ]
        policies.append(
            PlannerPolicy(model=model, signals=not args.no_signals, name="+all", fixes=frozenset(DIAGNOSTICS))
        )
    results, traces = compare(scenario, policies, naive=naive, burn_in=args.burn_in)
    goal_rows = goals(results["naive"], results["planner"])
    table = markdown(results, goal_rows)
    variant_goals = {name: goals(results["naive"], r) for name, r in results.items() if name.startswith("+")}
    for name, rows in variant_goals.items():
        table += f"- {name}: " + "; ".join(f"{'PASS' if g['pass'] else 'FAIL'} {g['value']}" for g in rows[:3]) + "\n"
    if STATIC_NAME in results:
        rows = goals(results[STATIC_NAME], results["planner"])
        table += (
            "- planner against the static min/max rule (for information): "
            + "; ".join(f"{'PASS' if g['pass'] else 'FAIL'} {g['value']}" for g in rows[1:3])
            + "\n"
        )
    elapsed = time.perf_counter() - began
    head = (
        f"seed {args.seed}, {args.skus} SKUs, {args.days} days measured after {scenario.warmup} warm-up and "
        f"{args.burn_in} burn-in days, model {getattr(planner.model, 'name', 'none')}, "
        f"signals {'off' if args.no_signals else 'on'}, {elapsed:.0f} s on {platform.machine()} "
        f"({platform.processor() or platform.platform()})\n\n"
    )
    print(head + table)
    if args.markdown:
        args.markdown.write_text(head + table, encoding="utf-8")
    if args.json:
        balance = {name: int(np.abs(stock_balance(tr)).sum()) for name, tr in traces.items()}
        doc = {
            "command": "python -m tools.sim_store " + " ".join(argv if argv is not None else sys.argv[1:]),
            "seed": args.seed,
            "skus": args.skus,
            "days": args.days,
            "warmup": scenario.warmup,
            "burn_in": args.burn_in,
            "naive": {"min_days": args.min_days, "max_days": args.max_days, "window": naive.window},
            "model": getattr(planner.model, "name", None),
            "signals": not args.no_signals,
            "seconds": elapsed,
            "machine": platform.platform(),
            "results": results,
            "goals": goal_rows,
            "diagnostics": {name: DIAGNOSTICS.get(name[1:], "all") for name in variant_goals},
            "diagnostic_goals": variant_goals,
            "stock_balance_error_units": balance,
        }
        args.json.write_text(json.dumps(doc, ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
