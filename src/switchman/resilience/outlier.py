"""Outlier ejection per model: what most gateways call a circuit breaker, with Envoy's semantics
(https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/outlier).

- ``failures`` failures in a row of one origin, all within ``window`` seconds, eject a model.
  Local-origin failures (connect, reset, timeout) and upstream ones (an error status) are counted
  apart, as Envoy does with ``split_external_local_origin_errors``: a success resets both, and an
  upstream failure resets the local count (the connection itself worked). "In a row" rather than
  "any N in the window" so that a busy model with a 1% error rate is not ejected for its volume.
- An ejected model is skipped for a cooldown that grows with consecutive ejections up to
  ``max_cooldown``. (Envoy grows ``base_ejection_time`` linearly, base x n; we double it, so a
  model that keeps failing its probes backs off faster: 30, 60, 120, 240, 300 s.)
- When the cooldown is over, exactly one request gets to probe it; its result decides: success
  re-admits it (and resets the growth), failure ejects it again for longer. An active health
  check may re-admit it earlier (``readmit``, Envoy's ``successful_active_health_check_uneject_host``).
- A route never loses more than ``max_ejection_percent`` of its candidates (at least one may go,
  as in Envoy); if every candidate is unhealthy, all are tried anyway (Envoy's panic mode).

States and transitions::

    HEALTHY --N failures in window--> EJECTED --cooldown over, first admit()--> PROBING
    PROBING --success--> HEALTHY        PROBING --failure--> EJECTED (cooldown doubled)
    EJECTED/PROBING --readmit()--> HEALTHY

The detector is shared by all routes (a model is unhealthy for everyone); ``filter`` applies the
per-route rules to one route's candidates.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..clock import Clock
from ..errors import Origin

# A hook for decision events: (model, event, reason) with event one of EVENTS.
EventHook = Callable[[str, str, str], None]
EVENTS = ("ejected", "probe", "readmitted")


@dataclass(frozen=True, slots=True)
class EjectionPolicy:
    """``breaker:`` settings. Seconds throughout; ``max_ejection_percent`` in 0..100."""

    failures: int = 5
    window: float = 30.0
    cooldown: float = 30.0
    max_cooldown: float = 300.0
    max_ejection_percent: float = 50.0
    # A granted probe whose verdict has not come back after this long (its attempt was cancelled,
    # or ended in an error that says nothing about health) no longer blocks the next probe.
    probe_timeout: float = 30.0

    def cooldown_for(self, ejections: int) -> float:
        """The cooldown of the ``ejections``-th ejection in a row (1-based)."""
        n = min(max(ejections, 1) - 1, 30)  # 2**30 x any cooldown is past any cap
        return min(self.max_cooldown, self.cooldown * 2.0**n)


class HealthState(str, enum.Enum):
    HEALTHY = "healthy"
    EJECTED = "ejected"
    PROBING = "probing"  # the cooldown is over and one probe request is deciding


@dataclass(slots=True)
class Admission:
    """What ``filter`` decided for one route's candidates.

    Unpacks as ``admitted, skipped = detector.filter(models)``. ``forced`` names the admitted
    models that are unhealthy but tried anyway (panic mode, or kept by max_ejection_percent),
    with the reason; pass ``forced=True`` to ``admit`` for those.
    """

    admitted: list[str]  # in the candidates' order
    skipped: list[tuple[str, str]]  # (model, reason), e.g. ("gpt-4o", "ejected 12.3s left")
    forced: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator:
        yield self.admitted
        yield self.skipped


_HEALTHY = (True, "healthy")


class _Health:
    """One model's record."""

    __slots__ = ("ejected_at", "ejections", "last_error", "local", "probe_at", "state", "until", "upstream")

    def __init__(self, failures: int) -> None:
        self.state = HealthState.HEALTHY
        self.local: deque[float] = deque(maxlen=failures)  # times of the current run of failures
        self.upstream: deque[float] = deque(maxlen=failures)
        self.ejections = 0  # ejections in a row
        self.ejected_at = 0.0
        self.until = 0.0  # end of the cooldown
        self.probe_at = 0.0  # when the probe in flight was granted
        self.last_error: str | None = None


class OutlierDetector:
    """Passive health per model, fed by attempt results; consulted before attempts."""

    def __init__(self, policy: EjectionPolicy, clock: Clock, on_event: EventHook | None = None) -> None:
        if policy.failures < 1:
            raise ValueError("breaker failures must be >= 1")
        self.policy = policy
        self.clock = clock
        self.on_event = on_event
        self._models: dict[str, _Health] = {}
        self._down: set[str] = set()  # EJECTED or PROBING: lets the common case skip all work

    # -- attempt results -------------------------------------------------------------------------
    def record_success(self, model: str) -> None:
        """An attempt on ``model`` succeeded (for a stream: it produced its first token)."""
        h = self._models.get(model)
        if h is None:
            return
        if h.state is HealthState.HEALTHY:
            h.local.clear()
            h.upstream.clear()
            h.ejections = 0
        elif h.state is HealthState.PROBING:
            self._heal(model, h, "probe succeeded")
        # EJECTED: an attempt that started before the ejection (or a panic-mode one) answered;
        # the probe at the cooldown's end decides, so a flaky model is not re-admitted by luck.

    def record_failure(self, model: str, origin: Origin, error: str | None = None) -> None:
        """An attempt on ``model`` failed in a way that says it is unhealthy (server errors,
        overload, connect failures, timeouts; not the client's bad requests nor rate limits,
        which have their own cooldown). ``error`` is a short description for the admin view."""
        h = self._models.get(model)
        if h is None:
            h = self._models[model] = _Health(self.policy.failures)
        if error is not None:
            h.last_error = error
        if h.state is HealthState.EJECTED:
            return  # already out; stragglers do not extend the cooldown
        now = self.clock.now()
        if h.state is HealthState.PROBING:
            self._eject(model, h, now, "probe failed")
            return
        run = h.local if origin is Origin.LOCAL else h.upstream
        if origin is Origin.UPSTREAM:
            h.local.clear()  # the upstream answered: connecting works
        run.append(now)
        if len(run) == self.policy.failures and now - run[0] <= self.policy.window:
            why = f"{self.policy.failures} {origin.value} failures in {now - run[0]:.1f}s"
            self._eject(model, h, now, why)

    # -- gates -----------------------------------------------------------------------------------
    def state(self, model: str) -> HealthState:
        h = self._models.get(model)
        return HealthState.HEALTHY if h is None else h.state

    def admit(self, model: str, forced: bool = False) -> tuple[bool, str]:
        """May an attempt on ``model`` start now? Call right before the attempt.

        Healthy: yes. Ejected with cooldown left: no. Cooldown over: the first caller gets
        ``(True, "probe")`` and the model turns PROBING; later callers get no until the probe's
        result is recorded (or ``probe_timeout`` passes). ``forced`` (a model ``filter`` kept
        although unhealthy) is always yes, and still takes the probe if one is due.
        """
        if model not in self._down:
            return _HEALTHY
        h = self._models[model]
        now = self.clock.now()
        if h.state is HealthState.EJECTED and now >= h.until:
            return self._grant_probe(model, h, now)
        if h.state is HealthState.PROBING and now - h.probe_at >= self.policy.probe_timeout:
            return self._grant_probe(model, h, now)  # the earlier probe never reported back
        why = self._why_not(h, now)
        return (True, f"{why}, tried anyway") if forced else (False, why)

    def abandon_probe(self, model: str) -> None:
        """The probe granted by ``admit`` will bring no verdict (cancelled, or an error that says
        nothing about health): let the next request probe at once instead of after
        ``probe_timeout``."""
        h = self._models.get(model)
        if h is not None and h.state is HealthState.PROBING:
            h.state = HealthState.EJECTED  # its cooldown is over, so the next admit() probes

    def filter(self, models: Iterable[str]) -> Admission:
        """One route's candidates minus the unhealthy ones, in their order.

        Unhealthy: ejected with cooldown left, or with a probe in flight. Models whose cooldown is
        over stay in (``admit`` hands out the probe). At most ``max_ejection_percent`` of the
        candidates are skipped (at least one may be, as in Envoy): beyond that, the
        least-recently-ejected stay in. If every candidate is unhealthy, all are admitted
        (panic mode). Admitted-but-unhealthy models are listed in ``Admission.forced``.
        """
        models = list(models)
        if not self._down or self._down.isdisjoint(models):
            return Admission(models, [])
        now = self.clock.now()
        sick: list[tuple[str, _Health, str]] = []
        for m in models:
            h = self._models.get(m)
            if h is not None and m in self._down and not self._probe_due(h, now):
                sick.append((m, h, self._why_not(h, now)))
        if not sick:
            return Admission(models, [])
        if len(sick) == len(models):
            panic = f"panic: all {len(models)} candidates unhealthy"
            return Admission(models, [], {m: f"{panic} ({why})" for m, _, why in sick})
        pct = self.policy.max_ejection_percent
        allowed = 0 if pct <= 0 else max(1, math.floor(pct * len(models) / 100 + 1e-9))
        sick.sort(key=lambda s: s[1].ejected_at, reverse=True)  # most recently ejected go first
        out = {m: why for m, _, why in sick[:allowed]}
        kept = {m: f"max_ejection_percent {pct:g}: {why}" for m, _, why in sick[allowed:]}
        return Admission([m for m in models if m not in out], [(m, out[m]) for m in models if m in out], kept)

    def unhealthy(self) -> list[str]:
        """Models ejected or being probed: what an active health check should look at."""
        return sorted(self._down)

    def readmit(self, model: str) -> None:
        """An active health check saw ``model`` answer: back to HEALTHY now, no probe needed.

        The count of ejections in a row is kept until a real request succeeds, so a model that
        passes cheap checks but fails real traffic still backs off for longer each time.
        """
        h = self._models.get(model)
        if h is not None and h.state is not HealthState.HEALTHY:
            self._heal(model, h, "health check", reset=False)

    def snapshot(self, models: Iterable[str] | None = None) -> list[dict]:
        """Rows for ``/admin/breakers``: every model seen (or exactly ``models``), sorted."""
        now = self.clock.now()
        names = sorted(self._models) if models is None else list(models)
        w = self.policy.window
        rows = []
        for m in names:
            h = self._models.get(m)
            if h is None:
                rows.append({"model": m, "state": HealthState.HEALTHY.value, "failures_local": 0,
                             "failures_upstream": 0, "ejections": 0, "ejected_until": 0.0,
                             "last_error": None})
                continue
            out = h.state is not HealthState.HEALTHY
            rows.append({
                "model": m,
                "state": h.state.value,
                "failures_local": sum(1 for t in h.local if now - t <= w),
                "failures_upstream": sum(1 for t in h.upstream if now - t <= w),
                "ejections": h.ejections,
                "ejected_until": round(max(0.0, h.until - now), 3) if out else 0.0,
                "last_error": h.last_error,
            })
        return rows

    # -- transitions -----------------------------------------------------------------------------
    def _eject(self, model: str, h: _Health, now: float, why: str) -> None:
        h.ejections += 1
        cool = self.policy.cooldown_for(h.ejections)
        h.state = HealthState.EJECTED
        h.ejected_at = now
        h.until = now + cool
        h.local.clear()
        h.upstream.clear()
        self._down.add(model)
        self._emit(model, "ejected", f"{why}; ejection {h.ejections} in a row, cooldown {cool:g}s")

    def _heal(self, model: str, h: _Health, why: str, reset: bool = True) -> None:
        h.state = HealthState.HEALTHY
        h.local.clear()
        h.upstream.clear()
        if reset:
            h.ejections = 0
        self._down.discard(model)
        self._emit(model, "readmitted", why)

    def _grant_probe(self, model: str, h: _Health, now: float) -> tuple[bool, str]:
        h.state = HealthState.PROBING
        h.probe_at = now
        self._emit(model, "probe", f"cooldown over after ejection {h.ejections}")
        return (True, "probe")

    def _probe_due(self, h: _Health, now: float) -> bool:
        if h.state is HealthState.EJECTED:
            return now >= h.until
        return now - h.probe_at >= self.policy.probe_timeout

    @staticmethod
    def _why_not(h: _Health, now: float) -> str:
        if h.state is HealthState.PROBING:
            return "probe in flight"
        return f"ejected {max(0.0, h.until - now):.1f}s left"

    def _emit(self, model: str, event: str, reason: str) -> None:
        if self.on_event is not None:
            self.on_event(model, event, reason)
