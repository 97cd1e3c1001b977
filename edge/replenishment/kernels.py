"""Inventory-policy kernels (库存策略): Numba over arrays for all SKUs at once.

Every kernel has a plain NumPy/SciPy twin in `reference.py` (same name + `_reference`) that the tests compare it
against. Formulas and assumptions: docs/replenishment-policies.md. All kernels are compiled with `cache=True`, so a
box pays the JIT once per installed version, not at each boot.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from numba import njit, prange

_F = TypeVar("_F", bound=Callable[..., Any])

SQRT2 = math.sqrt(2.0)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
# A distribution's support is cut where the tail mass falls below this (Poisson, discretised normal).
TAIL = 1e-13


def _kernel(fn: _F) -> _F:
    return cast(_F, njit(cache=True, nogil=True)(fn))


def _parallel_kernel(fn: _F) -> _F:
    return cast(_F, njit(cache=True, nogil=True, parallel=True)(fn))


# --------------------------------------------------------------------------------------------------------------
# Normal and Poisson distributions


@_kernel
def norm_pdf1(x: float) -> float:
    return INV_SQRT_2PI * math.exp(-0.5 * x * x)


@_kernel
def norm_cdf1(x: float) -> float:
    return 0.5 * math.erfc(-x / SQRT2)


@_kernel
def norm_loss1(x: float) -> float:
    """Standard normal loss function E[(Z - x)+] = φ(x) − x·(1 − Φ(x))."""
    return norm_pdf1(x) - x * 0.5 * math.erfc(x / SQRT2)


@_kernel
def norm_ppf1(p: float) -> float:
    """Inverse standard normal CDF: Acklam's rational approximation (relative error 1.15e-9), then one Halley
    step on erfc, which brings it to about machine precision. NaN outside (0, 1), ±inf at 0 and 1."""
    if not (p >= 0.0 and p <= 1.0):
        return math.nan
    if p == 0.0:
        return -math.inf
    if p == 1.0:
        return math.inf
    a1, a2, a3 = -3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02
    a4, a5, a6 = 1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00
    b1, b2, b3 = -5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02
    b4, b5 = 6.680131188771972e01, -1.328068155288572e01
    c1, c2, c3 = -7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00
    c4, c5, c6 = -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00
    d1, d2, d3, d4 = 7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00
    p_low = 0.02425
    if p < p_low:
        q = math.sqrt(-2.0 * math.log(p))
        x = (((((c1 * q + c2) * q + c3) * q + c4) * q + c5) * q + c6) / ((((d1 * q + d2) * q + d3) * q + d4) * q + 1.0)
    elif p <= 1.0 - p_low:
        q = p - 0.5
        r = q * q
        x = (
            (((((a1 * r + a2) * r + a3) * r + a4) * r + a5) * r + a6)
            * q
            / (((((b1 * r + b2) * r + b3) * r + b4) * r + b5) * r + 1.0)
        )
    else:
        q = math.sqrt(-2.0 * math.log(1.0 - p))
        x = -(((((c1 * q + c2) * q + c3) * q + c4) * q + c5) * q + c6) / ((((d1 * q + d2) * q + d3) * q + d4) * q + 1.0)
    # Halley refinement; the error is computed on the side of the tail it is in, to keep precision there.
    e = 0.5 * math.erfc(-x / SQRT2) - p if x < 0.0 else -(0.5 * math.erfc(x / SQRT2) - (1.0 - p))
    u = e * math.sqrt(2.0 * math.pi) * math.exp(0.5 * x * x)
    return x - u / (1.0 + 0.5 * x * u)


@_kernel
def service_factor(levels: np.ndarray) -> np.ndarray:
    """Service factor z = Φ⁻¹(level) of each cycle service level (NaN outside [0, 1])."""
    out = np.empty(levels.shape[0])
    for i in range(levels.shape[0]):
        out[i] = norm_ppf1(levels[i])
    return out


@_kernel
def normal_pdf(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = norm_pdf1(x[i])
    return out


@_kernel
def normal_cdf(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = norm_cdf1(x[i])
    return out


@_kernel
def normal_loss(x: np.ndarray) -> np.ndarray:
    out = np.empty(x.shape[0])
    for i in range(x.shape[0]):
        out[i] = norm_loss1(x[i])
    return out


@_kernel
def poisson_pmf1(k: int, lam: float) -> float:
    if k < 0:
        return 0.0
    if lam <= 0.0:
        return 1.0 if k == 0 else 0.0
    return math.exp(k * math.log(lam) - lam - math.lgamma(k + 1.0))


@_kernel
def poisson_pmf(k: np.ndarray, lam: np.ndarray) -> np.ndarray:
    out = np.empty(k.shape[0])
    for i in range(k.shape[0]):
        out[i] = poisson_pmf1(k[i], lam[i])
    return out


@_kernel
def poisson_cdf(k: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """P(N ≤ k) by summing the pmf upwards with the ratio λ/j (stable for the sizes a store sees)."""
    out = np.empty(k.shape[0])
    for i in range(k.shape[0]):
        out[i] = _poisson_cdf1(k[i], lam[i])
    return out


@_kernel
def _poisson_cdf1(k: int, lam: float) -> float:
    if k < 0:
        return 0.0
    if lam <= 0.0:
        return 1.0
    term = math.exp(-lam) if lam < 700.0 else 0.0
    if term == 0.0:
        # exp(−λ) underflows: start from the log pmf at 0 and sum in log space via the pmf of each j.
        total = 0.0
        for j in range(k + 1):
            total += poisson_pmf1(j, lam)
        return min(total, 1.0)
    total = term
    for j in range(1, k + 1):
        term *= lam / j
        total += term
    return min(total, 1.0)


@_kernel
def poisson_ppf(levels: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Smallest k with P(N ≤ k) ≥ level for N ~ Poisson(λ) (a 1e-12 slack absorbs rounding of the sum)."""
    out = np.empty(levels.shape[0], dtype=np.int64)
    for i in range(levels.shape[0]):
        pmf = poisson_pmf_table(lam[i])
        cdf = 0.0
        k = 0
        while k < pmf.shape[0] - 1:
            cdf += pmf[k]
            if cdf >= levels[i] - 1e-12:
                break
            k += 1
        out[i] = k
    return out


@_kernel
def poisson_pmf_table(lam: float) -> np.ndarray:
    """pmf of Poisson(λ) at 0..N, N where the upper tail falls below TAIL (the last cell holds the tail)."""
    if lam <= 0.0:
        return np.ones(1)
    hi = int(lam + 12.0 * math.sqrt(lam) + 30.0)
    pmf = np.empty(hi + 1)
    for j in range(hi + 1):
        pmf[j] = poisson_pmf1(j, lam)
    n = hi + 1
    tail = 1.0 - pmf.sum()
    if tail < 0.0:
        tail = 0.0
    pmf[n - 1] += tail
    return pmf


@_kernel
def normal_pmf_table(mean: float, std: float) -> np.ndarray:
    """Normal demand discretised onto 0, 1, 2, ...: P(j) = Φ((j + ½ − μ)/σ) − Φ((j − ½ − μ)/σ) for j ≥ 1 and
    P(0) = Φ((½ − μ)/σ) (negative demand counts as none); cut where the upper tail is below TAIL."""
    if std <= 0.0:
        k = max(math.floor(mean + 0.5), 0)
        out = np.zeros(k + 1)
        out[k] = 1.0
        return out
    hi = max(int(mean + 9.0 * std + 2.0), 1)
    pmf = np.empty(hi + 1)
    lo_cdf = 0.0
    for j in range(hi + 1):
        c = norm_cdf1((j + 0.5 - mean) / std)
        pmf[j] = c - lo_cdf
        lo_cdf = c
    pmf[hi] += 1.0 - lo_cdf
    return pmf


# --------------------------------------------------------------------------------------------------------------
# Safety stock, reorder point, order-up-to level


@_kernel
def sigma_protection(
    demand_std: np.ndarray, demand_mean: np.ndarray, lt_mean: np.ndarray, lt_std: np.ndarray, review: np.ndarray
) -> np.ndarray:
    """Std of demand over the protection period P = L + R: √(P·σd² + d²·σL²) (independent daily demands,
    lead time independent of demand; the review period is known, so only L varies)."""
    n = demand_std.shape[0]
    out = np.empty(n)
    for i in range(n):
        p = lt_mean[i] + review[i]
        v = p * demand_std[i] ** 2 + demand_mean[i] ** 2 * lt_std[i] ** 2
        out[i] = math.sqrt(v) if v > 0.0 else 0.0
    return out


@_kernel
def safety_stock(
    demand_mean: np.ndarray,
    demand_std: np.ndarray,
    lt_mean: np.ndarray,
    lt_std: np.ndarray,
    review: np.ndarray,
    z: np.ndarray,
) -> np.ndarray:
    """Safety stock z·√((L+R)·σd² + d²·σL²), per SKU (constant daily demand d)."""
    sig = sigma_protection(demand_std, demand_mean, lt_mean, lt_std, review)
    out = np.empty(sig.shape[0])
    for i in range(sig.shape[0]):
        out[i] = max(z[i] * sig[i], 0.0)
    return out


@_kernel
def reorder_point(
    demand_mean: np.ndarray,
    demand_std: np.ndarray,
    lt_mean: np.ndarray,
    lt_std: np.ndarray,
    review: np.ndarray,
    z: np.ndarray,
) -> np.ndarray:
    """Reorder point d·(L+R) + safety stock (constant daily demand d; R = 0 for continuous review)."""
    ss = safety_stock(demand_mean, demand_std, lt_mean, lt_std, review, z)
    out = np.empty(ss.shape[0])
    for i in range(ss.shape[0]):
        out[i] = demand_mean[i] * (lt_mean[i] + review[i]) + ss[i]
    return out


@_kernel
def cumulative_demand(row: np.ndarray, t: float) -> float:
    """Forecast demand over the next t days (t may be fractional): whole days summed, the last partial day
    pro rata; beyond the horizon H at the mean daily demand of the horizon."""
    if t <= 0.0:
        return 0.0
    h = row.shape[0]
    if h == 0:
        return 0.0
    whole = math.floor(t)
    frac = t - whole
    total = 0.0
    if whole < h:
        for j in range(whole):
            total += row[j]
        return float(total + frac * row[whole])
    for j in range(h):
        total += row[j]
    return float(total + (t - h) * (total / h))


@_kernel
def _days_to_consume(row: np.ndarray, qty: float) -> float:
    """The t at which cumulative_demand(row, t) reaches qty; inf when demand never gets there."""
    if qty <= 0.0:
        return 0.0
    h = row.shape[0]
    total = 0.0
    for j in range(h):
        d = row[j]
        if d > 0.0 and total + d >= qty:
            return float(j + (qty - total) / d)
        total += d
    mean = total / h if h > 0 else 0.0
    if mean <= 0.0:
        return math.inf
    return float(h + (qty - total) / mean)


@_kernel
def _plan_row(
    i: int,
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
    ss_out: np.ndarray,
    rop_out: np.ndarray,
    s_out: np.ndarray,
    pos_out: np.ndarray,
    dl_out: np.ndarray,
    packs_out: np.ndarray,
    days_out: np.ndarray,
    capped_out: np.ndarray,
) -> None:
    row = demand_mean[i]
    lt = max(lt_mean[i], 0.0)
    rv = max(review_days[i], 0.0)
    zi = z[i]
    sd = max(demand_std[i], 0.0)
    slt = max(lt_std[i], 0.0)
    # Periodic review: an order placed now arrives after L, and the next chance to order comes R days later, so
    # the stock on hand and on the way must cover the demand of L + R (the protection period) at the target service.
    d_prot = cumulative_demand(row, lt + rv)
    # Mean daily demand over the protection period, for the lead-time-variance term d²·σL².
    rate_p = d_prot / (lt + rv) if lt + rv > 0.0 else (row[0] if row.shape[0] > 0 else 0.0)
    var_p = (lt + rv) * sd * sd + rate_p * rate_p * slt * slt
    ss_p = max(zi * math.sqrt(var_p), 0.0)
    rop = d_prot + ss_p
    # (R, s, nQ): order up to the reorder point itself, in whole packs (rounding up lands above it). A higher
    # order-up-to level only adds stock: the next review comes R days later anyway.
    up_to = rop
    position = on_hand[i] - expiring[i] + in_transit[i] + on_order[i]
    ss_out[i] = ss_p
    rop_out[i] = rop
    s_out[i] = up_to
    pos_out[i] = position
    dl_out[i] = d_prot
    packs_out[i] = 0
    capped_out[i] = False
    pk = max(pack[i], 1)
    need = up_to - position
    if position <= rop and need > 1e-9:
        days_out[i] = 0.0
        packs = math.ceil(need / pk - 1e-9)
        packs = max(packs, moq_packs[i])
        if shelf_life_days[i] > 0.0:
            # What arrives after L days sells from then until it expires, after what is already there.
            cap = cumulative_demand(row, lt + shelf_life_days[i]) - position
            if packs * pk > cap + 1e-9:
                capped_out[i] = True
                cap_packs = math.floor(cap / pk + 1e-9) if cap > 0.0 else 0
                smallest = max(moq_packs[i], 1)
                if cap_packs >= smallest:
                    packs = cap_packs
                elif cap >= 0.5 * smallest * pk - 1e-9:
                    # The smallest order the supplier takes, when at least half of it sells before it expires:
                    # rounding the cap down to nothing would starve a slow perishable for good.
                    packs = smallest
                else:
                    packs = 0
        packs_out[i] = packs
    elif position <= rop:
        # At the reorder point with nothing to order (no demand at all, or already at the order-up-to level).
        days_out[i] = math.inf if d_prot <= 0.0 else 0.0
    else:
        days_out[i] = _days_to_consume(row, position - rop)


@_parallel_kernel
def plan_orders(
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
    """Reorder point, order-up-to level and the order of every SKU-location (see the module docs page).

    Returns safety_stock, reorder_point, order_up_to, position, demand_lead, order_packs (int64),
    days_until_order (0 = order now, inf = never at the forecast), shelf_capped (bool)."""
    n = demand_mean.shape[0]
    ss = np.empty(n)
    rop = np.empty(n)
    up_to = np.empty(n)
    pos = np.empty(n)
    dl = np.empty(n)
    packs = np.empty(n, dtype=np.int64)
    days = np.empty(n)
    capped = np.empty(n, dtype=np.bool_)
    for i in prange(n):
        _plan_row(
            i,
            demand_mean,
            demand_std,
            lt_mean,
            lt_std,
            review_days,
            z,
            on_hand,
            in_transit,
            on_order,
            expiring,
            pack,
            moq_packs,
            shelf_life_days,
            ss,
            rop,
            up_to,
            pos,
            dl,
            packs,
            days,
            capped,
        )
    return ss, rop, up_to, pos, dl, packs, days, capped


# --------------------------------------------------------------------------------------------------------------
# EOQ and the newsvendor


@_kernel
def eoq(annual_demand: np.ndarray, order_cost: np.ndarray, holding_cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Economic order quantity Q* = √(2DK/h) and its annual cost √(2DKh) (ordering + holding cycle stock)."""
    n = annual_demand.shape[0]
    q = np.empty(n)
    cost = np.empty(n)
    for i in range(n):
        d, k, h = annual_demand[i], order_cost[i], holding_cost[i]
        if d <= 0.0:
            q[i] = 0.0
            cost[i] = 0.0
        elif h <= 0.0:
            q[i] = math.inf
            cost[i] = 0.0
        else:
            q[i] = math.sqrt(2.0 * d * k / h)
            cost[i] = math.sqrt(2.0 * d * k * h)
    return q, cost


@_kernel
def newsvendor_normal(
    mean: np.ndarray, std: np.ndarray, underage: np.ndarray, overage: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Order Q = μ + zσ with z = Φ⁻¹(cu/(cu+co)); expected cost at the optimum (cu+co)·σ·φ(z)."""
    n = mean.shape[0]
    q = np.empty(n)
    cost = np.empty(n)
    for i in range(n):
        cu, co = underage[i], overage[i]
        zc = norm_ppf1(cu / (cu + co))
        q[i] = mean[i] + zc * std[i]
        cost[i] = (cu + co) * std[i] * norm_pdf1(zc) if std[i] > 0.0 else 0.0
    return q, cost


@_kernel
def newsvendor_poisson(mean: np.ndarray, underage: np.ndarray, overage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smallest Q with P(D ≤ Q) ≥ cu/(cu+co) for Poisson demand; expected cost co·E(Q−D)⁺ + cu·E(D−Q)⁺."""
    n = mean.shape[0]
    q = np.empty(n, dtype=np.int64)
    cost = np.empty(n)
    for i in range(n):
        cu, co, lam = underage[i], overage[i], mean[i]
        ratio = cu / (cu + co)
        pmf = poisson_pmf_table(lam)
        cdf = 0.0
        over = 0.0  # E(Q − D)⁺, grown as Q rises: E(Q+1 − D)⁺ = E(Q − D)⁺ + P(D ≤ Q)
        k = 0
        while True:
            cdf += pmf[k] if k < pmf.shape[0] else 0.0
            if cdf >= ratio - 1e-12 or k >= pmf.shape[0] - 1:
                break
            over += cdf
            k += 1
        # Here `over` is E(k − D)⁺ (the cdf of k is not yet in it).
        q[i] = k
        under = lam - k + over
        cost[i] = co * over + cu * max(under, 0.0)
    return q, cost


# --------------------------------------------------------------------------------------------------------------
# (s, S) periodic review, Zheng & Federgruen (1991)


@_kernel
def _lead_time_cost_tables(pmf_lead: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """For demand X over L+1 periods with pmf on 0..N: E(y − X)⁺ and E(X − y)⁺ at y = 0..N, and E X."""
    n = pmf_lead.shape[0]
    mean = 0.0
    for j in range(n):
        mean += j * pmf_lead[j]
    over = np.empty(n)  # E(y − X)⁺
    under = np.empty(n)  # E(X − y)⁺ = E X − y + E(y − X)⁺
    cdf = 0.0
    acc = 0.0
    for y in range(n):
        over[y] = acc
        under[y] = max(mean - y + acc, 0.0)
        cdf += pmf_lead[y]
        acc += cdf
    return over, under, mean


@_kernel
def _g(y: int, over: np.ndarray, under: np.ndarray, mean: float, h: float, p: float) -> float:
    """One-period expected holding and backorder cost G(y) of inventory position y after ordering."""
    n = over.shape[0]
    if y < 0:
        return p * (mean - y)
    if y >= n:
        return h * (y - mean)
    return float(h * over[y] + p * under[y])


@_kernel
def _renewal_m(pmf: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """m(0..length−1) and M(0..length): m(0) = 1/(1−p0), m(j) = Σ_{l=1..j} p_l m(j−l) / (1−p0); M(j) = Σ_{i<j} m(i).
    M(k) is the expected number of periods until the position drops k or more units (ZF 1991, eq. 3)."""
    p0 = pmf[0]
    m = np.zeros(max(length, 1))
    big_m = np.zeros(length + 1)
    k = pmf.shape[0]
    for j in range(length):
        if j == 0:
            m[0] = 1.0 / (1.0 - p0)
        else:
            acc = 0.0
            top = min(j, k - 1)
            for lag in range(1, top + 1):
                acc += pmf[lag] * m[j - lag]
            m[j] = acc / (1.0 - p0)
        big_m[j + 1] = big_m[j] + m[j]
    return m, big_m


@_kernel
def _ss_cost(
    s: int,
    big_s: int,
    k_cost: float,
    m: np.ndarray,
    big_m: np.ndarray,
    over: np.ndarray,
    under: np.ndarray,
    mean: float,
    h: float,
    p: float,
) -> float:
    """c(s, S) = [K + Σ_{j=0}^{S−s−1} m(j)·G(S−j)] / M(S−s)."""
    d = big_s - s
    acc = k_cost
    for j in range(d):
        acc += m[j] * _g(big_s - j, over, under, mean, h, p)
    return float(acc / big_m[d])


@_kernel
def _zheng_federgruen(
    pmf: np.ndarray, pmf_lead: np.ndarray, k_cost: float, h: float, p: float
) -> tuple[int, int, float]:
    """Optimal (s, S) and the long-run average cost per period (Zheng & Federgruen 1991, Operations Research
    39(4), the algorithm of section 3). Order up to S when the inventory position is at or below s."""
    over, under, mean = _lead_time_cost_tables(pmf_lead)
    if pmf[0] >= 1.0 - 1e-15:
        # No demand: hold nothing, never order.
        return -1, 0, 0.0
    # Minimiser y* of the convex G.
    y_star = 0
    g_best = _g(0, over, under, mean, h, p)
    y = 1
    while True:
        gy = _g(y, over, under, mean, h, p)
        if gy > g_best + 1e-15 * abs(g_best) or y > over.shape[0] + 1:
            break
        if gy < g_best:
            g_best = gy
            y_star = y
        y += 1
    # Upper bound of S − s over the search: S grows while G(S) ≤ c, s shrinks while c(s, S) > G(s). Grown on demand.
    length = 64
    m, big_m = _renewal_m(pmf, length)
    s = y_star
    big_s0 = y_star
    while True:
        s -= 1
        if big_s0 - s > length:
            length *= 2
            m, big_m = _renewal_m(pmf, length)
        if _ss_cost(s, big_s0, k_cost, m, big_m, over, under, mean, h, p) <= _g(s, over, under, mean, h, p):
            break
    c0 = _ss_cost(s, big_s0, k_cost, m, big_m, over, under, mean, h, p)
    big_s = big_s0 + 1
    while _g(big_s, over, under, mean, h, p) <= c0:
        if big_s - s > length:
            while big_s - s > length:
                length *= 2
            m, big_m = _renewal_m(pmf, length)
        c = _ss_cost(s, big_s, k_cost, m, big_m, over, under, mean, h, p)
        if c < c0:
            big_s0 = big_s
            while _ss_cost(s, big_s0, k_cost, m, big_m, over, under, mean, h, p) <= _g(s + 1, over, under, mean, h, p):
                s += 1
            c0 = _ss_cost(s, big_s0, k_cost, m, big_m, over, under, mean, h, p)
        big_s += 1
    return s, big_s0, c0


@_kernel
def _convolve_power(pmf: np.ndarray, times: int) -> np.ndarray:
    """pmf of the sum of `times` independent copies (times ≥ 1), tail beyond TAIL folded into the last cell."""
    out = pmf.copy()
    for _ in range(times - 1):
        nxt = np.zeros(out.shape[0] + pmf.shape[0] - 1)
        for a in range(out.shape[0]):
            oa = out[a]
            if oa == 0.0:
                continue
            for b in range(pmf.shape[0]):
                nxt[a + b] += oa * pmf[b]
        # Trim the negligible upper tail so repeated convolution stays small.
        total = 0.0
        cut = nxt.shape[0]
        for j in range(nxt.shape[0] - 1, -1, -1):
            if total + nxt[j] > TAIL:
                cut = j + 1
                break
            total += nxt[j]
        out = nxt[:cut].copy()
        out[cut - 1] += total
    return out


@_parallel_kernel
def ss_poisson(
    mean: np.ndarray, order_cost: np.ndarray, holding_cost: np.ndarray, shortage_cost: np.ndarray, lead_time: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal (s, S) for Poisson demand per period, lead time L whole periods, backorders (exact, ZF 1991)."""
    n = mean.shape[0]
    s_out = np.empty(n, dtype=np.int64)
    big_s_out = np.empty(n, dtype=np.int64)
    cost = np.empty(n)
    for i in prange(n):
        pmf = poisson_pmf_table(mean[i])
        pmf_lead = poisson_pmf_table(mean[i] * (lead_time[i] + 1))
        s, big_s, c = _zheng_federgruen(pmf, pmf_lead, order_cost[i], holding_cost[i], shortage_cost[i])
        s_out[i] = s
        big_s_out[i] = big_s
        cost[i] = c
    return s_out, big_s_out, cost


@_parallel_kernel
def ss_normal(
    mean: np.ndarray,
    std: np.ndarray,
    order_cost: np.ndarray,
    holding_cost: np.ndarray,
    shortage_cost: np.ndarray,
    lead_time: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal (s, S) for normal demand per period discretised onto whole units (see normal_pmf_table); demand
    over L+1 periods is the exact (L+1)-fold convolution of the discretised per-period pmf."""
    n = mean.shape[0]
    s_out = np.empty(n, dtype=np.int64)
    big_s_out = np.empty(n, dtype=np.int64)
    cost = np.empty(n)
    for i in prange(n):
        pmf = normal_pmf_table(mean[i], std[i])
        pmf_lead = _convolve_power(pmf, int(lead_time[i]) + 1)
        s, big_s, c = _zheng_federgruen(pmf, pmf_lead, order_cost[i], holding_cost[i], shortage_cost[i])
        s_out[i] = s
        big_s_out[i] = big_s
        cost[i] = c
    return s_out, big_s_out, cost
