"""The figures of merit used by the routing papers, on (cost, quality) operating points.

- AIQ (RouterBench): the area under the non-decreasing convex hull of a strategy's
  (cost, quality) points, extended flat to the largest cost of any strategy compared, divided
  by that cost.
- PGR / APGR / CPT (RouteLLM), for two-model pools: PGR = (q − q_weak) / (q_strong − q_weak);
  APGR is the trapezoid area of PGR against the share of strong-model calls over 0..1; CPT(x)
  the smallest strong-call share at which PGR reaches x (linearly interpolated between points).
- cost to reach X%: the least cost of a point whose quality reaches X × the reference quality,
  as a share of the reference cost.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def upper_hull(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-decreasing upper convex hull of (cost, quality) points, cheapest first.

    Only points that some willingness to pay would choose survive: a point dearer and no
    better than another is dropped, and so is one below the chord of its neighbours."""
    pts = sorted(set((float(c), float(q)) for c, q in points), key=lambda p: (p[0], -p[1]))
    # keep, per cost, the best quality, and only points better than every cheaper one
    frontier: list[tuple[float, float]] = []
    for c, q in pts:
        if frontier and q <= frontier[-1][1]:
            continue
        if frontier and c == frontier[-1][0]:
            continue
        frontier.append((c, q))
    hull: list[tuple[float, float]] = []
    for p in frontier:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # drop the middle point when it lies on or below the chord from hull[-2] to p
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def aiq(points: Sequence[tuple[float, float]], max_cost: float) -> float:
    """RouterBench's Average Improvement in Quality over costs 0..``max_cost``."""
    if max_cost <= 0 or not points:
        return float("nan")
    hull = [p for p in upper_hull(points) if p[0] <= max_cost]
    if not hull:
        return float("nan")
    if hull[-1][0] < max_cost:
        hull.append((max_cost, hull[-1][1]))
    if len(hull) == 1:
        return 0.0  # one point at the largest cost: no area
    xs = np.array([p[0] for p in hull])
    ys = np.array([p[1] for p in hull])
    return float(np.trapezoid(ys, xs) / max_cost)


def _share_curve(shares: Sequence[float], quality: Sequence[float], q_weak: float, q_strong: float):
    pts = sorted(zip(map(float, shares), map(float, quality)))
    if not pts or pts[0][0] > 0.0:
        pts.insert(0, (0.0, q_weak))
    if pts[-1][0] < 1.0:
        pts.append((1.0, q_strong))
    xs = np.array([p[0] for p in pts])
    ys = np.array([p[1] for p in pts])
    return xs, ys


def pgr(q: float, q_weak: float, q_strong: float) -> float:
    """Performance gap recovered: 0 at the weak model's quality, 1 at the strong one's."""
    gap = q_strong - q_weak
    return float("nan") if gap == 0 else (q - q_weak) / gap


def apgr(shares: Sequence[float], quality: Sequence[float], q_weak: float, q_strong: float) -> float:
    """Average PGR over strong-call shares 0..1 (random routing scores 0.5)."""
    if q_strong == q_weak:
        return float("nan")
    xs, ys = _share_curve(shares, quality, q_weak, q_strong)
    return float((np.trapezoid(ys, xs) - q_weak) / (q_strong - q_weak))


def cpt(shares: Sequence[float], quality: Sequence[float], q_weak: float, q_strong: float, x: float) -> float:
    """The smallest strong-call share at which PGR reaches ``x`` (0..1); NaN if never."""
    if q_strong == q_weak:
        return float("nan")
    xs, ys = _share_curve(shares, quality, q_weak, q_strong)
    g = (ys - q_weak) / (q_strong - q_weak)
    if g[0] >= x:
        return float(xs[0])
    for i in range(1, len(xs)):
        if g[i] >= x:
            # first crossing: interpolate between the previous point and this one
            if g[i] == g[i - 1]:
                return float(xs[i])
            t = (x - g[i - 1]) / (g[i] - g[i - 1])
            return float(xs[i - 1] + t * (xs[i] - xs[i - 1]))
    return float("nan")


def cost_to_reach(points: Sequence[tuple[float, float]], q_target: float, ref_cost: float) -> float:
    """The least cost among points reaching ``q_target``, as a share of ``ref_cost``; NaN if
    no point reaches it."""
    costs = [c for c, q in points if q >= q_target - 1e-12]
    if not costs or ref_cost <= 0:
        return float("nan")
    return min(costs) / ref_cost


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap samples (NaNs ignored)."""
    s = samples[~np.isnan(samples)]
    if not len(s):
        return (math.nan, math.nan)
    a = (1 - level) / 2
    return float(np.quantile(s, a)), float(np.quantile(s, 1 - a))


def bootstrap_weights(n: int, b: int, seed: int = 0) -> np.ndarray:
    """``b`` resamples of ``n`` items as count weights, ``(b, n)`` float32."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float32)
