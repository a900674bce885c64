"""Budget pacing: spread a route's spend over its window instead of running out at 3 pm.

A route with ``pace: {usd: 50, per: day}`` gets a controller that, every ``interval`` seconds,
compares what the route has spent since the window began with the plan (the budget spread evenly
over the window) and moves the route's price of cost, λ, so the spend follows the plan: up when it
runs ahead (cheaper models win more draws), down when it lags (better models do). Two controllers:

* ``multiplicative`` (the default): ``λ ← λ · exp(gain · e)`` every interval, ``e`` being
  (spent − planned) / budget; scale-free, it needs no tuning to the prices of the models;
* ``pid``: ``λ = λ0 · exp(gain · (e + 4·∫e + 0.001·de/dt))``, time in windows.

The policy reads ``pacer.tradeoff()`` where it would read its configured tradeoff (``bandit``).
The route's hard budget, if any, stays the safety net; pacing only steers. A new window starts from
the λ the last one ended with, so a daily pattern is learnt once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..clock import Clock

PERIODS = {"hour": 3600.0, "day": 86400.0, "week": 7 * 86400.0, "month": 30 * 86400.0}


@dataclass(frozen=True, slots=True)
class PaceSpec:
    usd: float
    per: str  # hour | day | week | month
    controller: str = "multiplicative"  # multiplicative | pid
    interval: float = 60.0  # seconds between adjustments

    @property
    def seconds(self) -> float:
        return PERIODS[self.per]


class Pacer:
    def __init__(self, spec: PaceSpec, clock: Clock, start_tradeoff: float = 1.0, gain: float = 8.0,
                 bounds: tuple[float, float] = (1e-3, 1e6)) -> None:
        self.spec = spec
        self.clock = clock
        self.gain = gain
        self.bounds = bounds
        self.lam = max(start_tradeoff, bounds[0])
        self._base = self.lam
        self.window_start = clock.now()
        self.spent = 0.0
        self._next = self.window_start + spec.interval
        self._integral = 0.0
        self._last_error = 0.0

    def tradeoff(self) -> float:
        self._tick()
        return self.lam

    def spend(self, usd: float) -> None:
        self._tick()
        self.spent += usd

    def planned(self, now: float | None = None) -> float:
        now = self.clock.now() if now is None else now
        return self.spec.usd * min(1.0, (now - self.window_start) / self.spec.seconds)

    def reason(self) -> str:
        return f"pace: lambda={self.lam:.3g}, ${self.spent:.4f} spent of ${self.planned():.4f} planned"

    def _tick(self) -> None:
        now = self.clock.now()
        if now >= self.window_start + self.spec.seconds:  # a new window: spend from zero, λ kept
            periods = int((now - self.window_start) // self.spec.seconds)
            self.window_start += periods * self.spec.seconds
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
            dt = self.spec.interval / self.spec.seconds
            self._integral += error * dt
            derivative = (error - self._last_error) / dt
            self._last_error = error
            x = self.gain * (error + 4.0 * self._integral + 0.001 * derivative)
            self.lam = self._base * math.exp(max(-40.0, min(40.0, x)))
        else:
            self.lam *= math.exp(self.gain * error)
        self.lam = min(max(self.lam, self.bounds[0]), self.bounds[1])
