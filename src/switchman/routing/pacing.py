"""Budget pacing: spread a route's spend over its window instead of running out at 3 pm.

A route with ``pace: {usd: 50, per: day}`` gets a controller that, every ``interval`` seconds,
compares what the route has spent since the window began with the plan (the budget spread evenly
over the window) and moves the route's price of cost, λ, so the spend follows the plan: up when it
runs ahead (cheaper models win more draws), down when it lags (better models do). The plan
aims at 98% of the budget (``AIM``), so the noise of the window's last minutes does not run into a
hard budget set at the same figure. Two controllers, both on log λ, with error
``e = (spent − planned) / budget``:

* ``pid`` (the default), in incremental (velocity) form: every interval
  ``log λ += 60·Δe + 32·e·dt + 0.06·Δ(de/dt)``, time in windows: the proportional part is the
  multiplicative rule's, the integral removes the offset that rule leaves at the window's end, and
  the derivative (0.001 of the proportional gain) damps the rate's swings. λ is clamped to its bounds
  after each step, so a quiet night that holds λ at its floor winds nothing up. The integral acts
  only once the plan has the shape of a whole window's traffic: against an even plan (the first
  window) the error is mostly the plan's own, behind at night and ahead in the afternoon peak
  whatever λ does, and integrating it raised λ through the peak (to 12 where the multiplicative rule
  held 9 on ``benchmarks/pacing.py``'s first day), sending the bandit's prompts to its worst model;
* ``multiplicative``: ``λ ← λ · exp(60 · Δe)`` every interval, so ``λ = λ0 · exp(60 · e)``:
  proportional in log space, scale-free, but it ends the window off plan by ``log(λ*/λ0) / 60``.
  (A first version multiplied λ by ``exp(gain · e)`` every interval: an integral of the already
  cumulative error, which oscillated between the dearest and the cheapest model; replaced.)

The PID used to be positional, ``λ = λ0 · exp(8 · (e + 4·∫e + 0.001·de/dt))``, anchored at the start
λ with a proportional gain of 8. A start λ far from the one the budget needs (a bandit route with no
``tradeoff`` starts at 1 per USD; on ``benchmarks/pacing.py``'s day it needs about 7) had to be
carried by the error itself: ``log 7 / 8`` is a quarter of the budget spent ahead of plan before λ
got there, and the quiet night, spending behind the even plan, had first wound the integral (and λ)
down. Day 1 on the bandit: $36.4 spent by noon of $24.5 planned (the multiplicative rule: $26.2),
then an evening starved at λ ≈ 25, and mean quality below the soft-threshold downgrade's. With the
multiplicative rule's gain, a start λ off by a factor F costs ``log F / 60`` of the budget (3% for
F = 7), and the clamp at the bounds replaces the wind-up.

``benchmarks/pacing.py`` measures both through the gateway on a simulated day.

The policy reads ``pacer.tradeoff()`` where it would read its configured tradeoff (``bandit``,
``learned``, a cascade's start); ``cheapest``, which has a quality bar and no tradeoff, reads
``pacer.bar(min_quality)``: λ scales the bar's slack, ``1 − (1 − min_quality) · λ``. The route's
hard budget, if any, stays the safety net; pacing only steers.

Windows are the calendar's, in UTC, as budgets' are: ``day`` is the UTC day, ``week`` the ISO week,
``month`` the calendar month, ``hour`` the clock hour; so a route paced at $50 a day and a budget of
$50 a day count the same day. The time is the injected clock's, anchored to the wall clock once.
A new window starts from the λ the last one ended with, and its plan follows the shape of the last
window's traffic (by 96 bins, a fifth of it spread evenly) rather than the clock, so a route
busy in the afternoon plans to spend in the afternoon: a daily pattern is learnt once. (Spread
evenly, a plan asks a quiet night for money it cannot spend, and the controller, acting only on
past error, ends the day behind.) An
interval without a decision leaves λ alone: an idle route is behind its plan, but not because λ
is wrong, and would otherwise meet the next burst with λ at its floor, spending freely. With
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
AIM = 0.98  # the share of the budget the plan spreads: day-end noise must not reach a hard limit at the budget
# Past this share of the budget the route goes to its cheapest model until the window ends, whatever
# λ says: the controller acts on past error and may end a window a little over its aim (a synthetic
# day in tests/routing/test_pacing.py: $50.14 of $50), and a hard budget at the same figure would
# refuse the last requests. What is left over is then what the cheapest model costs for the rest of
# the window (that day: $49.78). λ itself is kept for the next window.
GUARD = 0.995
GAINS = {"pid": 60.0, "multiplicative": 60.0}  # log λ per unit of error (a share of the budget)
INTEGRAL = 32.0  # pid: log λ per unit of error held for a whole window (once the plan has a learnt shape)
DERIVATIVE = 0.001  # pid: the derivative's gain, as a share of the proportional gain
BINS = 96  # the traffic profile's resolution over a window (a day: 15 minutes)
EVEN = 0.2  # the share of a learnt plan spread evenly, for the times the last window saw no traffic


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
    controller: str = "pid"  # pid | multiplicative
    interval: float = 60.0  # seconds between adjustments


class Pacer:
    """``wall``: unix time now (default: ``clock`` anchored to the wall clock at construction)."""

    def __init__(self, spec: PaceSpec, clock: Clock, start_tradeoff: float = 1.0, gain: float | None = None,
                 bounds: tuple[float, float] = (1e-3, 1e6), wall: Callable[[], float] | None = None) -> None:
        self.spec = spec
        if wall is None:
            offset = time.time() - clock.now()
            wall = lambda: offset + clock.now()  # noqa: E731
        self.wall = wall
        self.gain = GAINS[spec.controller] if gain is None else gain
        self.bounds = bounds
        self.lam = min(max(start_tradeoff, bounds[0]), bounds[1])
        self.window_start, self.window_end, self.label = window(spec.per, wall())
        self.spent = 0.0
        self.pending = None  # with shared state: spend not yet added to the window's shared total
        self._next = self.wall() + spec.interval
        self._last_error = 0.0
        self._last_rate = 0.0  # pid: de/dt at the last adjustment
        self._asked = 0  # decisions since the last adjustment
        self._counts = [0] * BINS  # decisions per bin of this window
        self._whole = wall() < self.window_start + spec.interval  # this window seen from its start: it may
        # shape the next plan
        self._shape: list[float] | None = None  # cumulative share of the plan at each bin's start, and 1

    def tradeoff(self) -> float:
        self._tick()
        self._asked += 1
        f = (self.wall() - self.window_start) / (self.window_end - self.window_start)
        self._counts[min(BINS - 1, max(0, int(f * BINS)))] += 1
        return self.bounds[1] if self.guarded else self.lam

    @property
    def guarded(self) -> bool:
        """Whether the window's spend has reached ``GUARD`` of the budget (cheapest only until it ends)."""
        return self.spent >= GUARD * self.spec.usd

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
        """The spend planned by ``now``: the budget spread evenly over the window, or, once a whole
        window has been seen, in the shape of its traffic (``EVEN`` of it spread evenly)."""
        now = self.wall() if now is None else now
        f = min(1.0, max(0.0, (now - self.window_start) / (self.window_end - self.window_start)))
        if self._shape is not None:
            x = f * BINS
            k = min(int(x), BINS - 1)
            f = self._shape[k] + (x - k) * (self._shape[k + 1] - self._shape[k])
        return AIM * self.spec.usd * f

    def reason(self) -> str:
        if self.guarded:
            return (f"pace: ${self.spent:.4f} spent, {GUARD:.1%} of the ${self.spec.usd:g} budget: the cheapest "
                    f"model until the {self.spec.per} ends")
        return f"pace: lambda={self.lam:.3g}, ${self.spent:.4f} spent of ${self.planned():.4f} planned"

    def _tick(self) -> None:
        now = self.wall()
        if now >= self.window_end:  # a new window: spend from zero, λ kept
            while self._next < self.window_end:  # the old window's last adjustments
                self._adjust(self._next)
                self._next += self.spec.interval
            self._learn_shape()
            self.window_start, self.window_end, self.label = window(self.spec.per, now)
            self.spent = 0.0
            self._last_error = 0.0
            self._last_rate = 0.0
            self._next = self.window_start + self.spec.interval
        while now >= self._next:
            self._adjust(self._next)
            self._next += self.spec.interval

    def _learn_shape(self) -> None:
        """The ended window's traffic, by bin, as the next plan's shape (only a window seen whole)."""
        total = sum(self._counts)
        if self._whole and total >= BINS:
            cum = [0.0]
            for c in self._counts:
                cum.append(cum[-1] + (1 - EVEN) * c / total + EVEN / BINS)
            self._shape = cum
        self._counts = [0] * BINS
        self._whole = True

    def _adjust(self, at: float) -> None:
        if not self._asked:  # no traffic this interval: nothing says λ is wrong (no wind-up while idle)
            return
        self._asked = 0
        error = (self.spent - self.planned(at)) / self.spec.usd  # ahead of plan: > 0
        step = self.gain * (error - self._last_error)
        if self.spec.controller == "pid":  # incremental: the clamp below is the anti-wind-up
            dt = self.spec.interval / (self.window_end - self.window_start)
            rate = (error - self._last_error) / dt
            step += DERIVATIVE * self.gain * (rate - self._last_rate)
            if self._shape is not None:  # the plan has the traffic's shape: its error is λ's (see above)
                step += INTEGRAL * error * dt
            self._last_rate = rate
        self._last_error = error
        self.lam *= math.exp(max(-40.0, min(40.0, step)))
        self.lam = min(max(self.lam, self.bounds[0]), self.bounds[1])
