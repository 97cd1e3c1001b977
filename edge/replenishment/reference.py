"""Plain NumPy/SciPy twins of the kernels in `kernels.py` (same name + `_reference`), for the tests and the
benchmark ratio. Written independently of the kernels: SciPy's distributions instead of our own, and for (s, S)
a brute-force search over a grid costed by the Markov chain of the inventory position, not Zheng–Federgruen."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats  # type: ignore[import-untyped]

from edge.replenishment.kernels import TAIL

# --------------------------------------------------------------------------------------------------------------
# Distributions


def service_factor_reference(levels: np.ndarray) -> np.ndarray:
    return np.asarray(stats.norm.ppf(levels), dtype=np.float64)


def normal_pdf_reference(x: np.ndarray) -> np.ndarray:
    return np.asarray(stats.norm.pdf(x), dtype=np.float64)


def normal_cdf_reference(x: np.ndarray) -> np.ndarray:
    return np.asarray(stats.norm.cdf(x), dtype=np.float64)


def normal_loss_reference(x: np.ndarray) -> np.ndarray:
    return np.asarray(stats.norm.pdf(x) - x * stats.norm.sf(x), dtype=np.float64)


def poisson_pmf_reference(k: np.ndarray, lam: np.ndarray) -> np.ndarray:
    return np.asarray(stats.poisson.pmf(k, lam), dtype=np.float64)


def poisson_cdf_reference(k: np.ndarray, lam: np.ndarray) -> np.ndarray:
    return np.asarray(stats.poisson.cdf(k, lam), dtype=np.float64)


def poisson_ppf_reference(levels: np.ndarray, lam: np.ndarray) -> np.ndarray:
    out = np.zeros(levels.shape[0], dtype=np.int64)
    for i, (q, mu) in enumerate(zip(levels, lam, strict=True)):
        k = max(int(stats.poisson.ppf(q, mu)), 0) if mu > 0 else 0
        # scipy's ppf works to its own rounding; step to the smallest k whose cdf reaches q − 1e-12.
        while k > 0 and stats.poisson.cdf(k - 1, mu) >= q - 1e-12:
            k -= 1
        while stats.poisson.cdf(k, mu) < q - 1e-12:
            k += 1
        out[i] = k
    return out


def poisson_pmf_table_reference(lam: float) -> np.ndarray:
    hi = int(stats.poisson.isf(TAIL, lam)) + 1 if lam > 0 else 0
    pmf = np.asarray(stats.poisson.pmf(np.arange(hi + 1), lam), dtype=np.float64)
    pmf[-1] += max(1.0 - pmf.sum(), 0.0)
    return pmf


def normal_pmf_table_reference(mean: float, std: float) -> np.ndarray:
    if std <= 0:
        k = max(math.floor(mean + 0.5), 0)
        out = np.zeros(k + 1)
        out[k] = 1.0
        return out
    hi = max(int(mean + 9 * std + 2), 1)
    edges = stats.norm.cdf((np.arange(hi + 1) + 0.5 - mean) / std)
    pmf = np.diff(np.concatenate(([0.0], edges)))
    pmf[-1] += 1.0 - edges[-1]
    return np.asarray(pmf, dtype=np.float64)


# --------------------------------------------------------------------------------------------------------------
# Safety stock, reorder point, plan


def sigma_protection_reference(
    demand_std: np.ndarray, demand_mean: np.ndarray, lt_mean: np.ndarray, lt_std: np.ndarray, review: np.ndarray
) -> np.ndarray:
    return np.asarray(np.sqrt((lt_mean + review) * demand_std**2 + demand_mean**2 * lt_std**2), dtype=np.float64)


def safety_stock_reference(
    demand_mean: np.ndarray,
    demand_std: np.ndarray,
    lt_mean: np.ndarray,
    lt_std: np.ndarray,
    review: np.ndarray,
    z: np.ndarray,
) -> np.ndarray:
    sig = sigma_protection_reference(demand_std, demand_mean, lt_mean, lt_std, review)
    return np.asarray(np.maximum(z * sig, 0.0), dtype=np.float64)


def reorder_point_reference(
    demand_mean: np.ndarray,
    demand_std: np.ndarray,
    lt_mean: np.ndarray,
    lt_std: np.ndarray,
    review: np.ndarray,
    z: np.ndarray,
) -> np.ndarray:
    ss = safety_stock_reference(demand_mean, demand_std, lt_mean, lt_std, review, z)
    return np.asarray(demand_mean * (lt_mean + review) + ss, dtype=np.float64)


def cumulative_demand_reference(row: np.ndarray, t: float) -> float:
    """Piecewise-linear cumulative forecast, extended past the horizon at the horizon's mean."""
    if t <= 0 or row.size == 0:
        return 0.0
    knots = np.concatenate(([0.0], np.cumsum(row)))
    h = row.size
    if t <= h:
        return float(np.interp(t, np.arange(h + 1, dtype=np.float64), knots))
    return float(knots[-1] + (t - h) * knots[-1] / h)


def _days_to_consume_reference(row: np.ndarray, qty: float) -> float:
    if qty <= 0:
        return 0.0
    knots = np.concatenate(([0.0], np.cumsum(row)))
    h = row.size
    if h and knots[-1] >= qty:
        j = int(np.searchsorted(knots, qty, side="left"))  # first knot >= qty, j >= 1
        return float(j - 1 + (qty - knots[j - 1]) / (knots[j] - knots[j - 1]))
    mean = float(knots[-1]) / h if h else 0.0
    if mean <= 0:
        return math.inf
    with np.errstate(over="ignore"):  # a subnormal mean: inf, as the kernel says
        return float(h + (qty - knots[-1]) / np.float64(mean))


def plan_orders_reference(
    demand_mean: np.ndarray,
    demand_std: np.ndarray,
    lt_mean: np.ndarray,
    lt_std: np.ndarray,
    review_days: np.ndarray,
    z: np.ndarray,
    on_hand: np.ndarray,
    in_transit: np.ndarray,
    on_order: np.ndarray,
    expiring: np.ndarray,
    pack: np.ndarray,
    moq_packs: np.ndarray,
    shelf_life_days: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    n = demand_mean.shape[0]
    ss = np.zeros(n)
    rop = np.zeros(n)
    up_to = np.zeros(n)
    pos = on_hand - expiring + in_transit + on_order
    dl = np.zeros(n)
    packs = np.zeros(n, dtype=np.int64)
    days = np.zeros(n)
    capped = np.zeros(n, dtype=np.bool_)
    for i in range(n):
        row = demand_mean[i]
        lt, rv = max(float(lt_mean[i]), 0.0), max(float(review_days[i]), 0.0)
        sd, slt = max(float(demand_std[i]), 0.0), max(float(lt_std[i]), 0.0)
        d_p = cumulative_demand_reference(row, lt + rv)
        rate_p = d_p / (lt + rv) if lt + rv > 0 else (float(row[0]) if row.size else 0.0)
        ss[i] = max(z[i] * math.sqrt((lt + rv) * sd**2 + rate_p**2 * slt**2), 0.0)
        rop[i] = d_p + ss[i]  # periodic review: protect L + R
        up_to[i] = rop[i]  # (R, s, nQ): up to the reorder point, in whole packs
        dl[i] = d_p
        pk = max(int(pack[i]), 1)
        need = up_to[i] - pos[i]
        if pos[i] > rop[i]:
            days[i] = _days_to_consume_reference(row, pos[i] - rop[i])
            continue
        if need <= 1e-9:
            days[i] = math.inf if d_p <= 0 else 0.0
            continue
        q = max(math.ceil(need / pk - 1e-9), int(moq_packs[i]))
        if shelf_life_days[i] > 0:
            cap = cumulative_demand_reference(row, lt + float(shelf_life_days[i])) - pos[i]
            if q * pk > cap + 1e-9:
                capped[i] = True
                fit = math.floor(cap / pk + 1e-9) if cap > 0 else 0
                smallest = max(int(moq_packs[i]), 1)
                if fit >= smallest:
                    q = fit
                elif cap >= 0.5 * smallest * pk - 1e-9:
                    q = smallest  # half of the smallest order sells before expiry: order it
                else:
                    q = 0
        packs[i] = q
    return ss, rop, up_to, pos, dl, packs, days, capped


# --------------------------------------------------------------------------------------------------------------
# EOQ and the newsvendor


def eoq_reference(
    annual_demand: np.ndarray, order_cost: np.ndarray, holding_cost: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Q* by minimising DK/Q + hQ/2 numerically (golden section over a wide bracket), not by the formula."""
    q = np.zeros(annual_demand.shape[0])
    cost = np.zeros(annual_demand.shape[0])
    for i, (d, k, h) in enumerate(zip(annual_demand, order_cost, holding_cost, strict=True)):
        if d <= 0:
            continue
        if h <= 0:
            q[i] = math.inf
            continue
        if k <= 0:
            continue
        res = _minimise_scalar(lambda x, d=d, k=k, h=h: d * k / x + h * x / 2)
        q[i] = res
        cost[i] = d * k / res + h * res / 2
    return q, cost


def _minimise_scalar(f: object) -> float:
    from scipy.optimize import minimize_scalar  # type: ignore[import-untyped]

    res = minimize_scalar(
        lambda lx: f(math.exp(lx)),  # type: ignore[operator]
        method="bounded",
        bounds=(-40.0, 40.0),
        options={"xatol": 1e-10},
    )
    return float(math.exp(res.x))


def newsvendor_normal_reference(
    mean: np.ndarray, std: np.ndarray, underage: np.ndarray, overage: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    z = stats.norm.ppf(underage / (underage + overage))
    q = mean + z * std
    loss = stats.norm.pdf(z) - z * stats.norm.sf(z)  # E(Z − z)⁺
    # co·E(Q − D)⁺ + cu·E(D − Q)⁺ with E(D − Q)⁺ = σL(z), E(Q − D)⁺ = σ(z + L(z)).
    cost = std * (underage * loss + overage * (z + loss))
    return np.asarray(q, dtype=np.float64), np.asarray(cost, dtype=np.float64)


def newsvendor_poisson_reference(
    mean: np.ndarray, underage: np.ndarray, overage: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    n = mean.shape[0]
    q = np.zeros(n, dtype=np.int64)
    cost = np.zeros(n)
    for i in range(n):
        lam, cu, co = float(mean[i]), float(underage[i]), float(overage[i])
        # Smallest q with F(q) >= cu/(cu+co), searched directly (the 1e-12 slack mirrors the kernel's guard).
        ratio = cu / (cu + co)
        k = 0
        while stats.poisson.cdf(k, lam) < ratio - 1e-12 and stats.poisson.sf(k, lam) > TAIL:
            k += 1
        hi = int(stats.poisson.isf(TAIL, lam)) + k + 2 if lam > 0 else k + 2
        x = np.arange(hi + 1)
        p = stats.poisson.pmf(x, lam)
        q[i] = k
        cost[i] = float(co * np.sum(np.maximum(k - x, 0) * p) + cu * np.sum(np.maximum(x - k, 0) * p))
    return q, cost


# --------------------------------------------------------------------------------------------------------------
# (s, S): brute force over a grid, average cost from the stationary distribution of the inventory position


def one_period_cost_reference(y: np.ndarray, pmf_lead: np.ndarray, h: float, p: float) -> np.ndarray:
    """G(y) = h·E(y − X)⁺ + p·E(X − y)⁺ for X the demand over L+1 periods, summed directly."""
    x = np.arange(pmf_lead.size)
    diff = y[:, None] - x[None, :]
    return np.asarray(h * (np.maximum(diff, 0) @ pmf_lead) + p * (np.maximum(-diff, 0) @ pmf_lead), dtype=np.float64)


def ss_average_cost_reference(
    s: int, big_s: int, pmf: np.ndarray, pmf_lead: np.ndarray, k: float, h: float, p: float
) -> float:
    """Long-run average cost per period of (s, S): the inventory position after ordering is a Markov chain on
    s+1..S; cost = Σ π(y)·(G(y) + K·P(y − D ≤ s))."""
    states = np.arange(s + 1, big_s + 1)
    n = states.size
    cdf = np.cumsum(pmf)
    drop = states[:, None] - states[None, :]  # demand that moves the position from row state to column state
    stay = (drop >= 0) & (drop < pmf.size)
    trans = np.where(stay, pmf[np.clip(drop, 0, pmf.size - 1)], 0.0)
    reach = states - s - 1  # demand up to this keeps the position above s
    order_prob = 1.0 - np.where(reach < pmf.size, cdf[np.minimum(reach, pmf.size - 1)], 1.0)
    trans[:, n - 1] += order_prob
    # π(P − I) = 0 with Σπ = 1: replace one equation by the normalisation.
    a_mat = trans.T - np.eye(n)
    a_mat[-1, :] = 1.0
    rhs = np.zeros(n)
    rhs[-1] = 1.0
    pi = np.linalg.solve(a_mat, rhs)
    g = one_period_cost_reference(states, pmf_lead, h, p)
    return float(pi @ (g + k * order_prob))


def ss_search_reference(
    pmf: np.ndarray,
    pmf_lead: np.ndarray,
    k: float,
    h: float,
    p: float,
    s_range: tuple[int, int],
    big_s_min: int,
    big_s_max: int,
) -> tuple[int, int, float]:
    """The (s, S) of least average cost over s in s_range, max(s + 1, S_min) <= S <= big_s_max (ties: the first
    found)."""
    best = (0, 0, math.inf)
    for s in range(s_range[0], s_range[1] + 1):
        for big_s in range(max(s + 1, big_s_min), big_s_max + 1):
            c = ss_average_cost_reference(s, big_s, pmf, pmf_lead, k, h, p)
            if c < best[2] - 1e-12:
                best = (s, big_s, c)
    return best


def ss_grid_reference(pmf: np.ndarray, pmf_lead: np.ndarray, k: float, h: float, p: float) -> tuple[int, int]:
    """y* (the minimiser of G) and a span: the optimum has s < y* ≤ S (Zheng–Federgruen 1991, lemma 1) and
    S − s within two EOQs plus the spread of lead-time demand (the tests check it is not on the edge)."""
    ys = np.arange(-5, pmf_lead.size + 5)
    y_star = int(ys[np.argmin(one_period_cost_reference(ys, pmf_lead, h, p))])
    mu = float(np.arange(pmf.size) @ pmf)
    span = int(2 * math.sqrt(2 * k * max(mu, 1e-9) / h)) + int(2 * math.sqrt(pmf_lead.size)) + 6
    return y_star, span


def _ss_reference(pmf: np.ndarray, pmf_lead: np.ndarray, k: float, h: float, p: float) -> tuple[int, int, float]:
    if pmf[0] >= 1.0 - 1e-15:
        return -1, 0, 0.0
    y_star, span = ss_grid_reference(pmf, pmf_lead, k, h, p)
    return ss_search_reference(pmf, pmf_lead, k, h, p, (y_star - span, y_star - 1), y_star, y_star + span)


def ss_poisson_reference(
    mean: np.ndarray, order_cost: np.ndarray, holding_cost: np.ndarray, shortage_cost: np.ndarray, lead_time: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = [
        _ss_reference(
            poisson_pmf_table_reference(float(mu)), poisson_pmf_table_reference(float(mu) * (int(lt) + 1)), k, h, p
        )
        for mu, k, h, p, lt in zip(mean, order_cost, holding_cost, shortage_cost, lead_time, strict=True)
    ]
    return (
        np.array([o[0] for o in out], dtype=np.int64),
        np.array([o[1] for o in out], dtype=np.int64),
        np.array([o[2] for o in out]),
    )


def ss_normal_reference(
    mean: np.ndarray,
    std: np.ndarray,
    order_cost: np.ndarray,
    holding_cost: np.ndarray,
    shortage_cost: np.ndarray,
    lead_time: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = []
    for mu, sd, k, h, p, lt in zip(mean, std, order_cost, holding_cost, shortage_cost, lead_time, strict=True):
        pmf = normal_pmf_table_reference(float(mu), float(sd))
        lead = pmf
        for _ in range(int(lt)):
            lead = np.convolve(lead, pmf)
        out.append(_ss_reference(pmf, lead, float(k), float(h), float(p)))
    return (
        np.array([o[0] for o in out], dtype=np.int64),
        np.array([o[1] for o in out], dtype=np.int64),
        np.array([o[2] for o in out]),
    )
