"""Observed latency per model over its last ``window`` attempts, for hedging's ``after: p95``.

O(1) per observation (a ring buffer); a percentile sorts at most ``window`` floats on demand and
is cached until the next observation of that model, since hedging asks far more often than the
figure changes under low traffic and sorting 200 floats costs ~5 us.
"""

from __future__ import annotations

import math


class _Ring:
    __slots__ = ("pos", "sorted", "values")

    def __init__(self) -> None:
        self.values: list[float] = []
        self.pos = 0
        self.sorted: list[float] | None = None


class LatencyTracker:
    """Per-model latency percentiles over a sliding window of samples (not of time)."""

    def __init__(self, window: int = 200, min_samples: int = 20) -> None:
        if window < 1 or not 1 <= min_samples <= window:
            raise ValueError("need window >= 1 and 1 <= min_samples <= window")
        self.window = window
        self.min_samples = min_samples
        self._models: dict[str, _Ring] = {}

    def observe(self, model: str, seconds: float) -> None:
        """Record one attempt's latency (for streams: time to first token)."""
        r = self._models.get(model)
        if r is None:
            r = self._models[model] = _Ring()
        if len(r.values) < self.window:
            r.values.append(seconds)
        else:
            r.values[r.pos] = seconds
            r.pos = (r.pos + 1) % self.window
        r.sorted = None

    def samples(self, model: str) -> int:
        r = self._models.get(model)
        return 0 if r is None else len(r.values)

    def percentile(self, model: str, p: float) -> float | None:
        """The ``p``-th percentile (0 < p <= 100, e.g. 95) by nearest rank, or ``None`` with
        fewer than ``min_samples`` samples: too few to trust for a hedge delay."""
        if not 0 < p <= 100:
            raise ValueError(f"percentile must be in (0, 100], got {p}")
        r = self._models.get(model)
        if r is None or len(r.values) < self.min_samples:
            return None
        s = r.sorted
        if s is None:
            s = r.sorted = sorted(r.values)
        return s[max(0, math.ceil(p / 100 * len(s)) - 1)]
