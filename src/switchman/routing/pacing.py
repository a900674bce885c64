"""Budget pacing: spread a route's spend over its window instead of running out at 3 pm.

A route with ``pace: {usd: 50, per: day}`` gets a controller that, every ``interval`` seconds,
compares what the route has spent since the window began with the plan (the budget spread evenly
over the window) and moves the route's price of cost, λ, so the spend follows the plan: up when it
runs ahead (cheaper models win more draws), down when it lags (better models do). Two controllers:

* ``multiplicative`` (the default): ``λ ← λ · exp(gain · e)`` every interval, ``e`` being
  (spent − planned) / budget; scale-free, it needs no tuning to the prices of the models;
* ``pid``: ``λ = λ0 · exp(gain · (e + 4·∫e + 0.001·de/dt))``, time in windows.

``benchmarks/pacing.py`` measures both through the gateway on a simulated day.

The policy reads ``pacer.tradeoff()`` where it would read its configured tradeoff (``bandit``,
``learned``, a cascade's start); ``cheapest``, which has a quality bar and no tradeoff, reads
``pacer.bar(min_quality)``: λ scales the bar's slack, ``1 − (1 − min_quality) · λ``. The route's
hard budget, if any, stays the safety net; pacing only steers.

Windows are the calendar's, in UTC, as budgets' are: ``day`` is the UTC day, ``week`` the ISO week,
``month`` the calendar month, ``hour`` the clock hour; so a route paced at $50 a day and a budget of
$50 a day count the same day. The time is the injected clock's, anchored to the wall clock once.
A new window starts from the λ the last one ended with, so a daily pattern is learnt once. With
``state: {backend: redis}`` every worker adds what it spent to the window's total in Redis and
paces on the sum (``routing/shared.py``), which also survives a restart; without it each process
paces what it sees.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..accounting.budgets import Period, period_window
from ..clock import Clock

PERIODS = ("hour", "day", "week", "month")


def window(per: str, t: float) -> tuple[float, float, str]:
    """The UTC window of period ``per`` holding unix time ``t``: (start, end, label)."""
    if per == "hour":
        start = t - t % 3600
        return start, start + 3600, f"h{int(start)}"
    w = period_window(Period(per), t)
    return w.start, w.end, w.label


@dataclass(frozen=True, slots=True)
class PaceSpec:
    usd: float
    per: str  # hour | day | week | month
    controller: str = "multiplicative"  # multiplicative | pid
    interval: float = 60.0  # seconds between adjustments


class Pacer:
    """``wall``: unix time now (default: ``clock`` anchored to the wall clock at construction)."""

    def __init__(self, spec: PaceSpec, clock: Clock, start_tradeoff: float = 1.0, gain: float = 8.0,
                 bounds: tuple[float, float] = (1e-3, 1e6), wall: Callable[[], float] | None = None) -> None:
        self.spec = spec
        if wall is None:
            offset = time.time() - clock.now()
            wall = lambda: offset + clock.now()  # noqa: E731
        self.wall = wall
        self.gain = gain
        self.bounds = bounds
        self.lam = max(start_tradeoff, bounds[0])
        self._base = self.lam
        self.window_start, self.window_end, self.label = window(spec.per, wall())
        self.spent = 0.0
        self.pending = None  # with shared state: spend not yet added to the window's shared total
        self._next = self.wall() + spec.interval
        self._integral = 0.0
        self._last_error = 0.0

    def tradeoff(self) -> float:
        self._tick()
        return self.lam

    def bar(self, min_quality: float) -> float:
        """``cheapest``'s quality bar, paced: its slack below 1 scaled by λ."""
        return min(1.0, max(0.0, 1.0 - (1.0 - min_quality) * self.tradeoff()))

    def spend(self, usd: float) -> None:
        self._tick()
        self.spent += usd
        if self.pending is not None:
            self.pending += usd

    def shared_total(self, label: str, total: float) -> None:
        """The window's spend summed over every worker (``routing/shared.py``)."""
        if label == self.label:
            self.spent = max(self.spent, total)

    def planned(self, now: float | None = None) -> float:
        now = self.wall() if now is None else now
        return self.spec.usd * min(1.0, (now - self.window_start) / (self.window_end - self.window_start))

    def reason(self) -> str:
        return f"pace: lambda={self.lam:.3g}, ${self.spent:.4f} spent of ${self.planned():.4f} planned"

    def _tick(self) -> None:
        now = self.wall()
        if now >= self.window_end:  # a new window: spend from zero, λ kept
            while self._next < self.window_end:  # the old window's last adjustments
                self._adjust(self._next)
                self._next += self.spec.interval
            self.window_start, self.window_end, self.label = window(self.spec.per, now)
            self.spent = 0.0
            self._integral = 0.0
            self._base = self.lam
            self._next = self.window_start + self.spec.interval
        while now >= self._next:
            self._adjust(self._next)
            self._next += self.spec.interval

    def _adjust(self, at: float) -> None:
        error = (self.spent - self.planned(at)) / self.spec.usd  # ahead of plan: > 0
        if self.spec.controller == "pid":
            dt = self.spec.interval / (self.window_end - self.window_start)
            self._integral += error * dt
            derivative = (error - self._last_error) / dt
            self._last_error = error
            x = self.gain * (error + 4.0 * self._integral + 0.001 * derivative)
            self.lam = self._base * math.exp(max(-40.0, min(40.0, x)))
        else:
            self.lam *= math.exp(self.gain * error)
        self.lam = min(max(self.lam, self.bounds[0]), self.bounds[1])
