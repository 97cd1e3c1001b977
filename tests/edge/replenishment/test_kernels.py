"""Policy kernels against their plain NumPy/SciPy twins (hypothesis inputs) and against textbook values.

Tolerances: distributions 1e-9 relative (1e-12 absolute); plan arrays 1e-9 relative; EOQ against a numerical
minimiser 1e-6; (s, S) costs 1e-9 relative (s and S themselves exactly, or an equal cost when two policies tie).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba.core.caching import NullCache

from edge.replenishment import kernels as k
from edge.replenishment import reference as r

finite = st.floats(allow_nan=False, allow_infinity=False)


def close(a: np.ndarray, b: np.ndarray, rtol: float = 1e-9, atol: float = 1e-12) -> None:
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


# --- distributions ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "z"),
    [(0.5, 0.0), (0.8, 0.8416), (0.9, 1.2816), (0.95, 1.6449), (0.975, 1.9600), (0.99, 2.3263), (0.999, 3.0902)],
)
def test_service_factor_matches_the_printed_normal_table(level: float, z: float) -> None:
    assert k.service_factor(np.array([level]))[0] == pytest.approx(z, abs=5e-5)


def test_service_factor_is_nan_outside_zero_one_and_infinite_at_the_ends() -> None:
    out = k.service_factor(np.array([-0.1, 1.5, math.nan, 0.0, 1.0]))
    assert np.isnan(out[:3]).all()
    assert out[3] == -math.inf and out[4] == math.inf


@given(st.lists(st.floats(min_value=1e-300, max_value=1.0 - 1e-16, exclude_max=False), min_size=1, max_size=50))
def test_service_factor_matches_scipy(levels: list[float]) -> None:
    p = np.array(levels)
    z = k.service_factor(p)
    ref = r.service_factor_reference(p)
    np.testing.assert_allclose(z, ref, rtol=1e-9, atol=1e-9)


@given(st.lists(st.floats(min_value=-40, max_value=40), min_size=1, max_size=50))
def test_normal_pdf_cdf_loss_match_scipy(xs: list[float]) -> None:
    x = np.array(xs)
    close(k.normal_pdf(x), r.normal_pdf_reference(x))
    close(k.normal_cdf(x), r.normal_cdf_reference(x))
    close(k.normal_loss(x), r.normal_loss_reference(x), atol=1e-11)


@given(
    st.lists(
        st.tuples(st.integers(min_value=-3, max_value=400), st.floats(min_value=0.0, max_value=300.0)),
        min_size=1,
        max_size=40,
    )
)
def test_poisson_pmf_and_cdf_match_scipy(pairs: list[tuple[int, float]]) -> None:
    kk = np.array([p[0] for p in pairs], dtype=np.int64)
    lam = np.array([p[1] for p in pairs])
    close(k.poisson_pmf(kk, lam), r.poisson_pmf_reference(kk, lam))
    close(k.poisson_cdf(kk, lam), r.poisson_cdf_reference(kk, lam), rtol=1e-9, atol=1e-11)


@given(
    st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=0.999999), st.floats(min_value=0.0, max_value=300.0)),
        min_size=1,
        max_size=20,
    )
)
def test_poisson_quantile_matches_scipy(pairs: list[tuple[float, float]]) -> None:
    q = np.array([p[0] for p in pairs])
    lam = np.array([p[1] for p in pairs])
    np.testing.assert_array_equal(k.poisson_ppf(q, lam), r.poisson_ppf_reference(q, lam))


def test_poisson_quantile_textbook() -> None:
    # λ = 5: F(7) = 0.8666, F(8) = 0.9319, F(9) = 0.9682 -> the 95 % quantile is 9.
    assert k.poisson_ppf(np.array([0.95, 0.9]), np.array([5.0, 5.0])).tolist() == [9, 8]


@given(st.floats(min_value=0.0, max_value=500.0), st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=100.0)))
def test_discrete_demand_tables_are_distributions_with_the_right_mean(lam: float, std: float) -> None:
    pois = k.poisson_pmf_table(lam)
    assert pois.sum() == pytest.approx(1.0, abs=1e-12) and (pois >= 0).all()
    assert float(np.arange(pois.size) @ pois) == pytest.approx(lam, rel=1e-9, abs=1e-9)
    norm = k.normal_pmf_table(lam, std)
    assert norm.sum() == pytest.approx(1.0, abs=1e-12) and (norm >= -1e-15).all()
    close(norm, r.normal_pmf_table_reference(lam, std))


# --- safety stock, reorder point, plan ---------------------------------------------------------------------

pos = st.floats(min_value=0.0, max_value=1e4)


@st.composite
def sku_arrays(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    n = draw(st.integers(min_value=1, max_value=20))
    cols = [np.array(draw(st.lists(pos, min_size=n, max_size=n))) for _ in range(5)]
    z = np.array(draw(st.lists(st.floats(min_value=-3, max_value=4), min_size=n, max_size=n)))
    return (*cols, z)


@given(sku_arrays())
def test_safety_stock_and_reorder_point_match_reference(a: tuple[np.ndarray, ...]) -> None:
    close(k.safety_stock(*a), r.safety_stock_reference(*a))
    close(k.reorder_point(*a), r.reorder_point_reference(*a))
    close(k.sigma_protection(a[1], a[0], a[2], a[3], a[4]), r.sigma_protection_reference(a[1], a[0], a[2], a[3], a[4]))


def test_sigma_over_protection_period_adds_lead_time_variance() -> None:
    # d = 10/day, σd = 3, L = 4 ± 1 days, R = 1: √(5·9 + 100·1) = √145.
    sig = k.sigma_protection(np.array([3.0]), np.array([10.0]), np.array([4.0]), np.array([1.0]), np.array([1.0]))
    assert sig[0] == pytest.approx(math.sqrt(145.0))
    ss = k.safety_stock(*(np.array([v]) for v in (10.0, 3.0, 4.0, 1.0, 1.0, 1.6449)))
    assert ss[0] == pytest.approx(1.6449 * math.sqrt(145.0))


@st.composite
def plan_inputs(draw: st.DrawFn) -> tuple[np.ndarray, ...]:
    n = draw(st.integers(min_value=1, max_value=12))
    h = draw(st.integers(min_value=1, max_value=10))
    small = st.floats(min_value=0.0, max_value=50.0)

    def col(strategy: st.SearchStrategy[float], size: int = n) -> np.ndarray:
        return np.array(draw(st.lists(strategy, min_size=size, max_size=size)), dtype=np.float64)

    demand = col(st.one_of(st.just(0.0), small), n * h).reshape(n, h)
    on_hand = col(st.floats(min_value=0.0, max_value=400.0))
    expiring = np.minimum(col(small), on_hand)
    return (
        demand,
        col(st.floats(min_value=0.0, max_value=20.0)),
        col(st.floats(min_value=0.0, max_value=30.0)),  # lead time beyond the horizon too
        col(st.floats(min_value=0.0, max_value=5.0)),
        col(st.sampled_from([0.0, 1.0, 7.0, 2.5])),
        col(st.floats(min_value=0.0, max_value=3.0)),
        on_hand,
        col(small),
        col(small),
        expiring,
        np.array(draw(st.lists(st.integers(1, 24), min_size=n, max_size=n)), dtype=np.int64),
        np.array(draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)), dtype=np.int64),
        col(st.sampled_from([0.0, 1.0, 3.0, 10.0, 45.0])),
    )


def assert_plans_equal(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...]) -> None:
    names = ("safety_stock", "reorder_point", "order_up_to", "position", "demand_lead", "order_packs", "days", "capped")
    for name, a, b in zip(names, got, want, strict=True):
        if name in ("order_packs", "capped"):
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=name)


@settings(max_examples=200)
@given(plan_inputs())
def test_plan_orders_matches_reference(a: tuple[np.ndarray, ...]) -> None:
    assert_plans_equal(k.plan_orders(*a), r.plan_orders_reference(*a))


def one(
    demand: list[float],
    *,
    std: float = 0.0,
    lt: float = 2.0,
    lt_std: float = 0.0,
    review: float = 1.0,
    z: float = 0.0,
    on_hand: float = 0.0,
    in_transit: float = 0.0,
    on_order: float = 0.0,
    expiring: float = 0.0,
    pack: int = 1,
    moq: int = 0,
    shelf: float = 0.0,
) -> dict[str, float]:
    args = [np.array([demand], dtype=np.float64)]
    args += [np.array([v], dtype=np.float64) for v in (std, lt, lt_std, review, z, on_hand, in_transit, on_order)]
    args += [np.array([expiring]), np.array([pack], dtype=np.int64), np.array([moq], dtype=np.int64)]
    args.append(np.array([shelf]))
    out = k.plan_orders(*args)
    names = ("safety_stock", "reorder_point", "order_up_to", "position", "demand_lead", "packs", "days", "capped")
    return {name: float(v[0]) for name, v in zip(names, out, strict=True)}


def test_plan_orders_up_to_the_level_rounded_up_to_whole_packs() -> None:
    # 10/day, L = 2, R = 1: ROP = S = 30 (demand over L + R, no safety stock at z = 0); position 12 -> need 18
    # -> 2 packs of 12.
    p = one([10.0] * 7, on_hand=12.0, pack=12)
    assert (p["reorder_point"], p["order_up_to"], p["position"]) == (30.0, 30.0, 12.0)
    assert p["packs"] == 2 and p["days"] == 0.0 and not p["capped"]


def test_plan_orders_at_least_the_minimum_order() -> None:
    assert one([10.0] * 7, on_hand=19.0, pack=1, moq=25)["packs"] == 25


def test_expiring_stock_does_not_count_and_transit_and_open_orders_do() -> None:
    p = one([10.0] * 7, on_hand=30.0, expiring=20.0, in_transit=3.0, on_order=4.0)
    assert p["position"] == 17.0 and p["packs"] == 13


def test_nothing_to_order_above_the_reorder_point_and_days_until_it_is_reached() -> None:
    # ROP 30; position 45 -> 15 units above it: 10, then half of the second day's 10.
    p = one([10.0] * 7, on_hand=45.0)
    assert p["packs"] == 0 and p["days"] == pytest.approx(1.5)
    assert one([0.0] * 7, on_hand=5.0)["days"] == math.inf


def test_lead_time_demand_interpolates_the_partial_day_and_extrapolates_past_the_horizon() -> None:
    assert one([4.0, 8.0, 12.0], lt=1.5, review=0.0)["demand_lead"] == pytest.approx(4.0 + 4.0)
    # Horizon 3 days (mean 8/day); 5 days = 24 + 2 × 8.
    assert one([4.0, 8.0, 12.0], lt=4.0, review=1.0)["demand_lead"] == pytest.approx(40.0)


def test_shelf_life_caps_the_order_rounding_down_to_packs() -> None:
    # 10/day, L=2, shelf life 3 days: sellable before expiry = D(5) − position = 50 − 0; S = 30 + SS.
    p = one([10.0] * 10, z=2.0, std=20.0, pack=12, shelf=3.0)
    assert p["order_up_to"] > 50.0
    assert p["capped"] and p["packs"] == 4  # 48 ≤ 50 < 60


def test_no_order_when_less_than_half_the_minimum_order_sells_before_expiry() -> None:
    # Sellable before expiry: 50. A minimum order of 120 would mostly expire.
    p = one([10.0] * 10, pack=1, moq=120, shelf=3.0)
    assert p["capped"] and p["packs"] == 0 and p["days"] == 0.0


def test_the_minimum_order_when_at_least_half_of_it_sells_before_expiry() -> None:
    # Sellable before expiry: 50, the cap rounds down to no case of 60, but 50 >= 30: one case, not none (a slow
    # perishable whose case outlasts its shelf life would otherwise never be ordered again).
    p = one([10.0] * 10, pack=60, shelf=3.0)
    assert p["capped"] and p["packs"] == 1
    assert one([10.0] * 10, pack=40, moq=2, shelf=3.0)["packs"] == 2  # 50 >= half of 80
    assert one([10.0] * 10, pack=40, moq=2, shelf=3.0, on_hand=25.0)["packs"] == 0  # 25 < 40


def test_reorder_point_covers_lead_time_plus_review_period() -> None:
    # 10/day, L = 2, R = 7: a position of 50 covers the lead time (20) but not the 90 until the order after next
    # arrives; periodic review orders now.
    p = one([10.0] * 14, review=7.0, on_hand=50.0)
    assert p["reorder_point"] == pytest.approx(90.0) and p["demand_lead"] == pytest.approx(90.0)
    assert p["packs"] == 40 and p["days"] == 0.0
    # Safety stock over L + R: z·σ·√(L + R).
    assert one([10.0] * 14, review=7.0, z=2.0, std=3.0)["safety_stock"] == pytest.approx(2.0 * 3.0 * 3.0)


def test_lead_time_variance_raises_the_safety_stock() -> None:
    assert (
        one([10.0] * 7, z=1.65, std=2.0, lt_std=1.5)["safety_stock"] > one([10.0] * 7, z=1.65, std=2.0)["safety_stock"]
    )


# --- EOQ and the newsvendor --------------------------------------------------------------------------------


def test_eoq_classic_example() -> None:
    # D = 1,000 a year, K = 10 an order, h = 0.50 a unit a year: Q* = √(2·1000·10/0.5) = 200, cost 100 a year.
    q, cost = k.eoq(np.array([1000.0]), np.array([10.0]), np.array([0.5]))
    assert q[0] == pytest.approx(200.0) and cost[0] == pytest.approx(100.0)


@given(
    st.lists(
        st.tuples(
            st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e6)),
            st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e4)),
            st.floats(min_value=1e-3, max_value=1e3),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_eoq_matches_a_numerical_minimiser(rows: list[tuple[float, float, float]]) -> None:
    d, kk, h = (np.array(c) for c in zip(*rows, strict=True))
    q, cost = k.eoq(d, kk, h)
    q_ref, cost_ref = r.eoq_reference(d, kk, h)
    close(q, q_ref, rtol=1e-6, atol=1e-6)
    close(cost, cost_ref, rtol=1e-9, atol=1e-9)


def test_newsvendor_normal_textbook_example() -> None:
    # μ = 100, σ = 30, cu = 3, co = 1: critical ratio 0.75, z = 0.6745, Q = 120.23, cost = 4·30·φ(0.6745) = 38.13.
    q, cost = k.newsvendor_normal(np.array([100.0]), np.array([30.0]), np.array([3.0]), np.array([1.0]))
    assert q[0] == pytest.approx(120.2347, abs=1e-4)
    assert cost[0] == pytest.approx(38.1332, abs=1e-4)


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=1e4),
            st.floats(min_value=0.0, max_value=1e3),
            st.floats(min_value=0.01, max_value=100.0),
            st.floats(min_value=0.01, max_value=100.0),
        ),
        min_size=1,
        max_size=10,
    )
)
def test_newsvendor_normal_matches_reference(rows: list[tuple[float, float, float, float]]) -> None:
    cols = [np.array(c) for c in zip(*rows, strict=True)]
    for got, want in zip(k.newsvendor_normal(*cols), r.newsvendor_normal_reference(*cols), strict=True):
        close(got, want, rtol=1e-8, atol=1e-8)


def test_newsvendor_poisson_textbook_example() -> None:
    # λ = 5, cu = 3, co = 1: ratio 0.75; F(5) = 0.616, F(6) = 0.762 -> Q = 6.
    q, cost = k.newsvendor_poisson(np.array([5.0]), np.array([3.0]), np.array([1.0]))
    assert q[0] == 6
    x = np.arange(60)
    p = r.poisson_pmf_reference(x, np.full(60, 5.0))
    assert cost[0] == pytest.approx(float(np.maximum(6 - x, 0) @ p + 3 * np.maximum(x - 6, 0) @ p))


@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=200.0),
            st.floats(min_value=0.01, max_value=100.0),
            st.floats(min_value=0.01, max_value=100.0),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_newsvendor_poisson_matches_reference(rows: list[tuple[float, float, float]]) -> None:
    cols = [np.array(c) for c in zip(*rows, strict=True)]
    q, cost = k.newsvendor_poisson(*cols)
    q_ref, cost_ref = r.newsvendor_poisson_reference(*cols)
    np.testing.assert_array_equal(q, q_ref)
    close(cost, cost_ref, rtol=1e-9, atol=1e-9)


# --- (s, S) -------------------------------------------------------------------------------------------------


def test_ss_poisson_zheng_federgruen_example_agrees_with_brute_force() -> None:
    # The paper's test setting: Poisson demand, h = 1, p = 9, K = 64, no lead time; λ = 10.
    args = [np.array([v]) for v in (10.0, 64.0, 1.0, 9.0, 0.0)]
    s, big_s, cost = k.ss_poisson(*args)
    assert (int(s[0]), int(big_s[0])) == (6, 40)
    assert cost[0] == pytest.approx(35.0216, abs=1e-4)
    s_ref, big_s_ref, cost_ref = r.ss_poisson_reference(*args)
    assert (s_ref[0], big_s_ref[0]) == (6, 40) and cost_ref[0] == pytest.approx(cost[0], rel=1e-9)


def test_ss_cost_is_the_markov_chain_average_cost_of_the_policy_found() -> None:
    mu, kk, h, p, lt = 4.0, 150.0, 40.0, 125.0, 1
    s, big_s, cost = k.ss_poisson(*(np.array([float(v)]) for v in (mu, kk, h, p, lt)))
    pmf = r.poisson_pmf_table_reference(mu)
    lead = r.poisson_pmf_table_reference(mu * (lt + 1))
    assert r.ss_average_cost_reference(int(s[0]), int(big_s[0]), pmf, lead, kk, h, p) == pytest.approx(cost[0])
    # and both neighbours cost more
    for ds, dbig in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        other = r.ss_average_cost_reference(int(s[0]) + ds, int(big_s[0]) + dbig, pmf, lead, kk, h, p)
        assert other >= cost[0] - 1e-9


def assert_ss_agree(got: tuple[np.ndarray, ...], want: tuple[np.ndarray, ...]) -> None:
    close(got[2], want[2], rtol=1e-9, atol=1e-9)
    same = (got[0] == want[0]) & (got[1] == want[1])
    # A different (s, S) is only acceptable as a tie in cost (already asserted above).
    assert same.all() or np.allclose(got[2][~same], want[2][~same], rtol=1e-9)


ss_costs = st.tuples(
    st.floats(min_value=0.0, max_value=40.0),  # K
    st.floats(min_value=0.2, max_value=3.0),  # h
    st.floats(min_value=0.5, max_value=20.0),  # p
    st.integers(min_value=0, max_value=2),  # L
)


@pytest.mark.slow
@settings(max_examples=25)
@given(st.floats(min_value=0.2, max_value=6.0), ss_costs)
def test_ss_poisson_matches_brute_force(mu: float, costs: tuple[float, float, float, int]) -> None:
    kk, h, p, lt = costs
    args = [np.array([float(v)]) for v in (mu, kk, h, p, lt)]
    assert_ss_agree(k.ss_poisson(*args), r.ss_poisson_reference(*args))


@pytest.mark.slow
@settings(max_examples=25)
@given(st.floats(min_value=0.5, max_value=6.0), st.one_of(st.just(0.0), st.floats(0.01, 3.0)), ss_costs)
def test_ss_normal_matches_brute_force(mu: float, sd: float, costs: tuple[float, float, float, int]) -> None:
    kk, h, p, lt = costs
    args = [np.array([float(v)]) for v in (mu, sd, kk, h, p, lt)]
    assert_ss_agree(k.ss_normal(*args), r.ss_normal_reference(*args))


def test_ss_without_demand_orders_nothing() -> None:
    s, big_s, cost = k.ss_poisson(*(np.array([v]) for v in (0.0, 10.0, 1.0, 5.0, 1.0)))
    assert (s[0], big_s[0], cost[0]) == (-1, 0, 0.0)


def test_ss_normal_of_a_narrow_normal_is_close_to_poisson_shape_free_bounds() -> None:
    # Deterministic demand 3 a period, no lead time: G(y) minimal at 3; with K = 0 order up to 3 every period.
    s, big_s, cost = k.ss_normal(*(np.array([v]) for v in (3.0, 0.0, 0.0, 1.0, 5.0, 0.0)))
    assert (s[0], big_s[0], cost[0]) == (2, 3, 0.0)


# --- compile cache -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kernel",
    [
        k.service_factor,
        k.plan_orders,
        k.safety_stock,
        k.reorder_point,
        k.eoq,
        k.newsvendor_normal,
        k.newsvendor_poisson,
        k.ss_poisson,
        k.ss_normal,
    ],
)
def test_kernels_are_cached_on_disk(kernel: object) -> None:
    assert not isinstance(kernel._cache, NullCache)  # type: ignore[attr-defined]
