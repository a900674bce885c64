"""AIQ, APGR, CPT and cost-to-reach on small hand-made curves with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from switchman.eval import metrics


def test_hull_keeps_only_points_some_budget_would_choose():
    pts = [(0, 0.5), (1, 0.6), (2, 0.9), (3, 0.8), (4, 1.0), (2, 0.7)]
    # (1, 0.6) lies under the chord (0,0.5)-(2,0.9); (3, 0.8) is dearer and worse than (2, 0.9)
    assert metrics.upper_hull(pts) == [(0, 0.5), (2, 0.9), (4, 1.0)]


def test_aiq_is_the_area_under_the_hull_over_max_cost():
    pts = [(0, 0.5), (2, 0.9), (4, 1.0)]
    assert metrics.aiq(pts, 4) == pytest.approx((0.7 * 2 + 0.95 * 2) / 4)
    # extended flat to the largest cost of any strategy compared
    assert metrics.aiq(pts, 8) == pytest.approx((0.7 * 2 + 0.95 * 2 + 1.0 * 4) / 8)
    # a single model: flat from its cost on; the dearest model scores 0
    assert metrics.aiq([(2, 0.8)], 4) == pytest.approx(0.8 * 2 / 4)
    assert metrics.aiq([(4, 0.9)], 4) == 0.0
    # a dominated point does not lower the score
    assert metrics.aiq(pts + [(1, 0.1)], 4) == metrics.aiq(pts, 4)


def test_apgr_random_is_a_half_and_a_perfect_router_nears_one():
    shares = np.linspace(0, 1, 11)
    random_q = 0.5 + 0.5 * shares  # weak 0.5, strong 1.0, quality linear in the share
    assert metrics.apgr(shares, random_q, 0.5, 1.0) == pytest.approx(0.5)
    # recovers the whole gap with 20% strong calls, then stays there
    perfect = np.minimum(0.5 + 0.5 * shares / 0.2, 1.0)
    assert metrics.apgr(shares, perfect, 0.5, 1.0) == pytest.approx(0.9)
    assert metrics.pgr(0.75, 0.5, 1.0) == 0.5


def test_cpt_is_the_smallest_share_reaching_the_gap_share():
    shares = [0.0, 0.2, 0.4, 1.0]
    quality = [0.5, 0.7, 0.9, 1.0]  # PGR 0, 0.4, 0.8, 1
    assert metrics.cpt(shares, quality, 0.5, 1.0, 0.8) == pytest.approx(0.4)
    assert metrics.cpt(shares, quality, 0.5, 1.0, 0.5) == pytest.approx(0.25)  # interpolated
    # a curve that never recovers half the gap has no CPT(50%)
    assert math.isnan(metrics.cpt([0.0, 1.0], [0.5, 0.6], 0.5, 1.0, 0.5))
    # a sweep that stops short of all-strong is closed with the strong model's own point
    assert metrics.cpt([0.0, 0.5], [0.5, 0.6], 0.5, 1.0, 0.6) == pytest.approx(0.75)


def test_cost_to_reach_uses_the_cheapest_point_that_gets_there():
    pts = [(1.0, 0.80), (2.0, 0.86), (3.0, 0.90)]
    assert metrics.cost_to_reach(pts, 0.85, 10.0) == pytest.approx(0.2)
    assert math.isnan(metrics.cost_to_reach(pts, 0.95, 10.0))


def test_bootstrap_interval_contains_the_mean():
    rng = np.random.default_rng(1)
    x = rng.random(400)
    w = metrics.bootstrap_weights(len(x), 300, seed=2)
    means = (w @ x) / len(x)
    lo, hi = metrics.percentile_ci(means)
    assert lo < x.mean() < hi and hi - lo < 0.1
