"""The canary's sequential test on the candidate's error rate, looked at on every settled request.

H0: the candidate's error rate is at most control's (``p0``, control's observed rate). The test
reads the candidate's requests ``n`` and errors ``k`` since the experiment started (never reset
per step) and rolls back as soon as either of two log likelihood ratios crosses its bound:

- the **line**: the SPRT of H0 against "the candidate's error odds 1.25x control's"
  (``llr = k ln(q1/q0) + (n - k) ln((1 - q1)/(1 - q0))`` with ``q1`` at 1.25x the odds of
  ``q0``), against a bound ``b`` set by exact computation (a binomial walk, dynamic programming
  over ``(n, k)``) so that a candidate at control's rate crosses it, or the steep line, at some
  request of the rollout's ``horizon`` (``len(ramp) × min_requests`` candidate requests) with
  probability ``(1 - STEEP_SHARE) × alpha``. A flat line is the sequential test closest to one
  look at the end, the most powerful a test of that size can be (Neyman-Pearson), while still
  looking at every request;
- the **steep line**: the SPRT against 4x control's odds, bounded by Ville's inequality
  (``ln(1 / (STEEP_SHARE × alpha))``): valid at every request forever, past the horizon too
  (with shared state a review can come a tick late), and quick on gross regressions.

**Error guarantees**, for a candidate no worse than control and control's rate known: the chance
it is ever rolled back by this test is at most ``alpha`` (``(1 - STEEP_SHARE) alpha`` within the
horizon by the exact computation, plus at most ``STEEP_SHARE × alpha`` ever by Ville's
inequality), whenever and however often it is looked at. A candidate better than control crosses
less often (the walk is stochastically smaller). Control's rate is estimated from control's own
requests (``(errors + 0.5) / (requests + 1)``); in a canary these outnumber the candidate's many
times over at the first steps (99x at 1%), so the guarantee is close to exact but not exact; the
benchmark measures the false-alarm share. Power: no test of the same size catches more regressions
by the horizon than one look at the end; the line comes close to that (for 6% against 2% by the
499th request, at ``alpha`` 4%: it misses 0.32% of such candidates, as does one look at the 499th
request at the 3.6% the line gets, by the same computation: ``caught``). The bound depends on
control's rate: it is computed once per 5% band of that rate and horizon (cached; 20-100 ms
each). In a server (a running event loop) a bound not yet cached is computed on a worker
thread, never on the loop: until it is there, only the steep line looks (fewer looks, the same
guarantee); offline (simulations, the benchmark) it is computed at once, so runs repeat.
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

RATIO = 1.25  # the line: the candidate's error odds this many times control's
STEEP = 4.0  # the steep line's odds ratio
STEEP_SHARE = 0.1  # of the test's false-alarm rate, the part the steep line (Ville) takes
_BAND = math.log(1.05)  # control's rate is placed in bands this wide (a 5% ratio) for the bound


def _alt(p0: float, ratio: float) -> float:
    """The error rate whose odds are ``ratio`` times ``p0``'s."""
    return ratio * p0 / (1 + (ratio - 1) * p0)


def llr(n: int, k: int, p0: float, ratio: float) -> float:
    """log likelihood ratio of ``k`` errors in ``n`` requests: rate ``_alt(p0, ratio)`` against ``p0``."""
    p1 = _alt(p0, ratio)
    return k * math.log(p1 / p0) + (n - k) * math.log((1 - p1) / (1 - p0))


def _least_errors(p0: float, ratio: float, bound: np.ndarray, horizon: int) -> np.ndarray:
    """For each bound (rows) and each n in 0..horizon: the fewest errors whose llr reaches it."""
    p1 = _alt(p0, ratio)
    up, down = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    n = np.arange(horizon + 1)
    k = np.ceil((bound[:, None] - n[None, :] * down) / (up - down) - 1e-9)
    return np.clip(k, 1, n + 1).astype(np.int64)  # n + 1: not reachable at n


def crossing(p: float, least: np.ndarray) -> np.ndarray:
    """The chance that a walk of requests failing with chance ``p`` reaches ``least[:, n]`` errors
    at some n ≤ horizon, per row (boundary). Exact: the distribution of errors among the walks
    not yet stopped, request by request."""
    rows, cols = least.shape
    width = int(least.max()) + 1
    dist = np.zeros((rows, width + 1))
    dist[:, 0] = 1.0
    stopped = np.zeros(rows)
    ks = np.arange(width + 1)[None, :]
    for n in range(1, cols):
        new = dist * (1 - p)
        new[:, 1:] += dist[:, :-1] * p
        over = ks >= least[:, n:n + 1]
        stopped += np.where(over, new, 0.0).sum(axis=1)
        new[over] = 0.0
        dist = new
    return stopped


@lru_cache(maxsize=1024)
def _bound(band: int, horizon: int, alpha: float) -> float:
    """The line's bound for control's rate in ``band``: the least whose crossing chance within
    ``horizon``, of the line or the steep line, is at most ``(1 - STEEP_SHARE) × alpha``."""
    p0 = math.exp(band * _BAND)
    steep = _least_errors(p0, STEEP, np.array([math.log(1 / (STEEP_SHARE * alpha))]), horizon)
    target = (1 - STEEP_SHARE) * alpha
    lo, hi = 0.0, math.log(1 / target)  # Ville: the upper end already keeps the line within target
    for _ in range(2):  # a grid of bounds at a time, then a finer one inside the bracket
        grid = np.linspace(lo, hi, 24)
        least = np.minimum(_least_errors(p0, RATIO, grid, horizon), steep)
        fa = crossing(p0, least)
        ok = np.nonzero(fa <= target)[0]
        i = int(ok[0]) if len(ok) else len(grid) - 1
        lo, hi = (grid[i - 1] if i else lo), grid[i]
    return float(hi)


_POOL: ThreadPoolExecutor | None = None
_PENDING: set[tuple[int, int, float]] = set()


def _bound_now(band: int, horizon: int, alpha: float) -> float | None:
    """The line's bound, or None while a worker thread computes it (inside a running event loop)."""
    key = (band, horizon, alpha)
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # offline: compute it here
        return _bound(*key)
    if key in _cached:
        return _cached[key]
    if key not in _PENDING:
        global _POOL
        _POOL = _POOL or ThreadPoolExecutor(1, thread_name_prefix="switchman-sprt")
        _PENDING.add(key)
        _POOL.submit(_fill, key)
    return None


_cached: dict[tuple[int, int, float], float] = {}


def _fill(key: tuple[int, int, float]) -> None:
    try:
        _cached[key] = _bound(*key)
    finally:
        _PENDING.discard(key)


def caught(p: float, p0: float, alpha: float, horizon: int, by: int) -> float:
    """The chance the test, with control's rate ``p0`` known, rolls back a candidate failing with
    chance ``p`` by its ``by``-th request (exact, the same computation as the bound)."""
    band = round(math.log(p0) / _BAND)
    b = _bound(band, horizon, alpha)
    least = np.minimum(_least_errors(p0, RATIO, np.array([b]), horizon),
                       _least_errors(p0, STEEP, np.array([math.log(1 / (STEEP_SHARE * alpha))]), horizon))
    return float(crossing(p, least[:, :by + 1])[0])


def rate(errors: float, requests: float) -> float:
    """Control's error rate as the test uses it (never 0 or 1)."""
    return (errors + 0.5) / (requests + 1)


def regressed(n: int, k: int, p0: float, alpha: float, horizon: int) -> tuple[bool, str]:
    """Whether ``k`` errors in ``n`` candidate requests reject H0 (error rate at most ``p0``) at
    false-alarm rate ``alpha`` over a rollout of ``horizon`` candidate requests; and the figures."""
    if n <= 0 or k <= 0:
        return False, ""
    p0 = min(max(p0, 1e-6), 0.999)
    steep, steep_bound = llr(n, k, p0, STEEP), math.log(1 / (STEEP_SHARE * alpha))
    if steep >= steep_bound:
        return True, f"SPRT for 4x control's odds: log LR {steep:.2f} ≥ {steep_bound:.2f}"
    line = llr(n, k, p0, RATIO)
    if n > horizon or line <= 0:
        return False, ""
    b = _bound_now(round(math.log(p0) / _BAND), horizon, alpha)
    if b is not None and line >= b:
        return True, f"SPRT for 1.25x control's odds: log LR {line:.2f} ≥ {b:.2f}"
    return False, ""
