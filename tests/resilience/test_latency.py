import pytest

from switchman.resilience.latency import LatencyTracker


def test_no_percentile_until_enough_samples():
    t = LatencyTracker(window=200, min_samples=20)
    for _ in range(19):
        t.observe("m", 0.1)
    assert t.percentile("m", 95) is None
    assert t.percentile("unknown", 95) is None
    t.observe("m", 0.1)
    assert t.percentile("m", 95) == 0.1


def test_percentiles_by_nearest_rank():
    t = LatencyTracker(window=200)
    for i in range(1, 101):  # 0.01 .. 1.00 s, shuffled order does not matter
        t.observe("m", ((i * 37) % 100 + 1) / 100)
    assert t.percentile("m", 50) == 0.50
    assert t.percentile("m", 95) == 0.95
    assert t.percentile("m", 99) == 0.99
    assert t.percentile("m", 100) == 1.00


def test_window_forgets_old_samples_and_models_are_apart():
    t = LatencyTracker(window=50, min_samples=10)
    for _ in range(50):
        t.observe("m", 3.0)  # a slow spell
    assert t.percentile("m", 50) == 3.0
    for _ in range(50):
        t.observe("m", 0.2)  # recovered: the slow spell has left the window
    assert t.percentile("m", 99) == 0.2
    assert t.samples("m") == 50
    assert t.percentile("n", 50) is None


def test_cached_percentile_follows_new_samples():
    t = LatencyTracker(window=20, min_samples=20)
    for _ in range(20):
        t.observe("m", 1.0)
    assert t.percentile("m", 95) == 1.0
    t.observe("m", 9.0)
    assert t.percentile("m", 100) == 9.0


def test_bad_percentile_is_refused():
    with pytest.raises(ValueError):
        LatencyTracker().percentile("m", 0)
