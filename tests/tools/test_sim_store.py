"""Store simulation: the day step, stock conservation, determinism, the naive rule, and the planner path."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.replenishment.planner import PlanInputs, PlanOutputs
from tools.sim_store import (
    DIAGNOSTICS,
    NO_EXPIRY,
    MinMaxPolicy,
    PlannerPolicy,
    Scenario,
    StoreView,
    build_scenario,
    main,
    serve_day,
    serve_day_reference,
    simulate,
    stock_balance,
    supplier_lead_times,
)


def toy_scenario(n: int = 12, days: int = 120, seed: int = 0, warmup: int = 40) -> Scenario:
    """Poisson demand, three suppliers with delays, some perishables: engine tests that need no generator."""
    rng = np.random.default_rng(seed)
    rate = rng.lognormal(0.0, 1.2, size=n)
    demand = rng.poisson(rate[:, None], size=(n, days)).astype(np.int64)
    nominal = np.array([1.0, 3.0, 5.0])
    lead, notice = supplier_lead_times(rng, nominal, days)
    return Scenario(
        start=date(2025, 3, 1),
        warmup=warmup,
        demand=demand,
        promo=np.zeros((n, days), np.float32),
        temp_c=np.full((n, days), np.nan, np.float32),
        rain_mm=np.full((n, days), np.nan, np.float32),
        sku=np.array([f"SKU{i:04d}" for i in range(n)], dtype=object),
        category=np.array(["零食"] * n, dtype=object),
        storage_class=np.array(["ambient"] * n, dtype=object),
        supplier=rng.integers(0, 3, size=n).astype(np.int64),
        supplier_names=("S0", "S1", "S2"),
        unit_cost=rng.integers(100, 5000, size=n).astype(np.int64),
        pack=rng.choice([1, 6, 12], size=n).astype(np.int64),
        moq_packs=np.ones(n, np.int64),
        shelf_life_days=np.where(rng.random(n) < 0.4, rng.integers(3, 15, n), 0).astype(np.int64),
        review_days=rng.choice([1, 2, 7], size=n).astype(np.int64),
        review_offset=rng.integers(0, 7, size=n).astype(np.int64),
        service_level=rng.choice([0.9, 0.95, 0.98], size=n),
        lead_time=lead,
        delay_notice=notice,
        lt_nominal=nominal,
    )


# --- the day step -------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 30), st.integers(0, 20), st.integers(0, 5)),  # arrival, demand, shelf life
        min_size=1,
        max_size=40,
    ),
    st.integers(1, 4),
)
def test_day_step_matches_its_plain_python_twin(days: list[tuple[int, int, int]], n: int) -> None:
    shelf = np.array([days[0][2]] * n, dtype=np.int64)
    lot_qty = np.zeros((n, 8), np.int64)
    lot_exp = np.zeros((n, 8), np.int64)
    head = np.zeros(n, np.int64)
    length = np.zeros(n, np.int64)
    lots: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for t, (arrive, want, _) in enumerate(days):
        arrivals = np.array([arrive + i for i in range(n)], dtype=np.int64)
        demand = np.array([want * (i + 1) // 2 for i in range(n)], dtype=np.int64)
        sold, expired, on_hand = (np.zeros(n, np.int64) for _ in range(3))
        serve_day(t, lot_qty, lot_exp, head, length, arrivals, demand, shelf, sold, expired, on_hand)
        r_sold, r_expired, r_on_hand = serve_day_reference(t, lots, arrivals, demand, shelf)
        assert (sold == r_sold).all() and (expired == r_expired).all() and (on_hand == r_on_hand).all()
        assert (sold <= demand).all()


def test_lots_expire_on_their_day_and_sell_oldest_first() -> None:
    lot_qty = np.zeros((1, 4), np.int64)
    lot_exp = np.zeros((1, 4), np.int64)
    head, length = np.zeros(1, np.int64), np.zeros(1, np.int64)
    out = [np.zeros(1, np.int64) for _ in range(3)]
    shelf = np.array([3], np.int64)
    serve_day(0, lot_qty, lot_exp, head, length, np.array([5]), np.array([0]), shelf, *out)  # lot A: sellable 0..2
    serve_day(1, lot_qty, lot_exp, head, length, np.array([4]), np.array([2]), shelf, *out)  # lot B: 1..3
    assert out[0][0] == 2 and out[2][0] == 7  # sold from A
    serve_day(3, lot_qty, lot_exp, head, length, np.array([0]), np.array([1]), shelf, *out)
    assert out[1][0] == 3  # the rest of A expired on day 3
    assert out[0][0] == 1 and out[2][0] == 3  # B sold
    assert lot_exp[0, head[0]] == 4 and lot_exp[0, head[0]] != NO_EXPIRY


# --- runs ---------------------------------------------------------------------------------------------------------


def test_a_run_conserves_stock_received_equals_sold_wasted_and_stock_change() -> None:
    scenario = toy_scenario()
    naive = MinMaxPolicy()
    trace = simulate(scenario, naive, warmup_policy=naive, burn_in=7)
    assert (stock_balance(trace) == 0).all()
    assert trace.expired.sum() > 0 and trace.received.sum() > 0  # perishables did expire; orders did arrive
    assert (trace.sold <= trace.demand).all()  # censoring: never more than demand, no backorders


def test_a_run_is_deterministic_by_seed() -> None:
    naive = MinMaxPolicy()
    a = simulate(toy_scenario(seed=3), naive, warmup_policy=naive)
    b = simulate(toy_scenario(seed=3), naive, warmup_policy=naive)
    c = simulate(toy_scenario(seed=4), naive, warmup_policy=naive)
    for name in ("sold", "expired", "received", "on_hand", "ordered"):
        assert (getattr(a, name) == getattr(b, name)).all()
    assert not (a.sold == c.sold).all()


# --- the naive rule -----------------------------------------------------------------------------------------------


def test_naive_orders_up_to_max_days_in_packs_when_at_or_below_min_days() -> None:
    scenario = toy_scenario(n=4)
    history = np.tile(np.float32(2.0), (4, 40))  # 2 a day: min 14, max 28 units
    view = StoreView(
        day=50,
        today=date(2025, 4, 20),
        rows=np.arange(4),
        history=history,
        on_hand=np.array([14.0, 15.0, 0.0, 10.0]),
        on_order=np.array([0.0, 0.0, 0.0, 4.0]),
        lots_qty=np.zeros(0),
        lots_days_left=np.zeros(0),
        lots_row=np.zeros(0, np.int64),
        lt_mean=np.ones(4),
        lt_std=np.zeros(4),
        delay_notice=np.zeros(4),
    )
    pack = np.array([6, 6, 12, 1], np.int64)
    moq = np.array([1, 1, 4, 1], np.int64)
    scenario = Scenario(**{**{f: getattr(scenario, f) for f in Scenario.__slots__}, "pack": pack, "moq_packs": moq})
    packs = MinMaxPolicy(min_days=7, max_days=14).order_packs(scenario, view)
    # row 0: position 14 <= 14 -> (28 - 14) / 6 -> 3 packs; row 1: 15 > 14 -> nothing;
    # row 2: empty -> 28 / 12 -> 3 packs, raised to the MOQ of 4; row 3: position 14 -> 14 units of 1.
    assert packs.tolist() == [3, 0, 4, 14]


# --- the generator's store and our planner ----------------------------------------------------------------------


def test_planner_orders_exactly_what_compute_plan_says_on_each_review(monkeypatch: pytest.MonkeyPatch) -> None:
    import edge.replenishment.planner as planner_core

    real = planner_core.compute_plan
    seen: list[tuple[PlanInputs, PlanOutputs]] = []

    def recording(inputs: PlanInputs, model: Any, effects: Any) -> PlanOutputs:
        out = real(inputs, model, effects)
        seen.append((inputs, out))
        return out

    monkeypatch.setattr(planner_core, "compute_plan", recording)
    scenario = build_scenario(40, 50, seed=5)
    policy = PlannerPolicy()
    trace = simulate(scenario, policy, warmup_policy=MinMaxPolicy(), burn_in=7)
    review_days = [
        t
        for t in range(scenario.warmup, scenario.days)
        if ((t - scenario.review_offset) % scenario.review_days == 0).any()
    ]
    assert len(seen) == policy.calls == len(review_days) > 0
    for t, (inputs, out) in zip(review_days, seen, strict=True):
        assert inputs.start == scenario.start + timedelta(days=t + 1)
        assert inputs.history.shape[1] == scenario.warmup
        rows = np.flatnonzero((t - scenario.review_offset) % scenario.review_days == 0)
        assert list(inputs.keys.sku) == list(scenario.sku[rows])
        now = np.where(out.days_until_order <= 0, out.order_packs, 0)
        assert (trace.ordered[rows, t] == now * scenario.pack[rows]).all()
        assert (inputs.history == trace.sold[rows, t + 1 - scenario.warmup : t + 1]).all()  # observed, censored
    assert trace.ordered[:, scenario.warmup :].sum() > 0
    assert (stock_balance(trace) == 0).all()


def test_command_compares_both_policies_on_the_same_demand_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "sim.json"
    md = tmp_path / "sim.md"
    assert main(["--skus", "30", "--days", "40", "--burn-in", "7", "--seed", "2", "--model", "none",
                 "--json", str(out), "--markdown", str(md)]) == 0  # fmt: skip
    doc = json.loads(out.read_text(encoding="utf-8"))
    naive, planner = doc["results"]["naive"], doc["results"]["planner"]
    assert naive["demand_units"] == planner["demand_units"] and naive["demand_days"] == planner["demand_days"]
    assert doc["stock_balance_error_units"] == {"naive": 0, "planner": 0}
    assert [g["pass"] in (True, False) for g in doc["goals"]] == [True] * 4
    assert 0.0 <= planner["fill_rate"] <= 1.0 and planner["csl"]["by_target"]
    assert "| fill rate" in md.read_text(encoding="utf-8")


def test_diagnostic_variants_run_the_same_core_and_leave_it_unchanged() -> None:
    from edge.forecast import statistical

    original = statistical.sba
    scenario = build_scenario(25, 30, seed=7)
    policy = PlannerPolicy(name="+all", fixes=frozenset(DIAGNOSTICS))
    trace = simulate(scenario, policy, warmup_policy=MinMaxPolicy(), burn_in=7)
    assert policy.calls > 0 and (stock_balance(trace) == 0).all()
    assert statistical.sba is original


def test_the_stockout_mask_diagnostic_passes_the_days_that_closed_with_an_empty_shelf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import edge.replenishment.planner as planner_core

    real = planner_core.compute_plan
    seen: list[PlanInputs] = []

    def recording(inputs: PlanInputs, model: Any, effects: Any) -> PlanOutputs:
        seen.append(inputs)
        return real(inputs, model, effects)

    monkeypatch.setattr(planner_core, "compute_plan", recording)
    scenario = build_scenario(30, 30, seed=5)
    trace = simulate(scenario, PlannerPolicy(fixes=frozenset(["stockout_mask"])), warmup_policy=MinMaxPolicy())
    review_days = [
        t
        for t in range(scenario.warmup, scenario.days)
        if ((t - scenario.review_offset) % scenario.review_days == 0).any()
    ]
    assert len(seen) == len(review_days) > 0
    w = scenario.warmup
    for t, inputs in zip(review_days, seen, strict=True):
        rows = np.flatnonzero((t - scenario.review_offset) % scenario.review_days == 0)
        assert inputs.stockout is not None
        assert (inputs.stockout == (trace.on_hand[rows, t + 1 - w : t + 1] == 0)).all()
    assert any(bool(i.stockout.any()) for i in seen if i.stockout is not None)
