"""Policies that route on what the executor observes now (``resilience/live.py``):

* ``least-latency``: the model with the lowest decaying latency estimate (the whole call for plain
  requests; for streams the time to first token plus the time per output token times the tokens a
  stream brings: ``resilience/live.py``). Models within ``tolerance`` of the fastest count
  as tied, and a tie is split by ``weights``. A share ``explore`` of requests goes first to another
  model (one never measured, else the least recently measured), so a model never measured is not
  taken for instant nor left unmeasured, and one slow call is not a verdict for ever; a figure
  older than ``stale`` seconds is measured again on the next request.
* ``least-busy``: power of two choices on calls in flight: two models drawn at random (by
  ``weights``), the one with fewer calls in flight first (a tie to the one answering sooner): this
  process's counts, plus, with ``state: {backend: redis}``, the other workers' (``routing/shared.py``)
  as of the last exchange, each worker taking its share of them (÷ the number of other workers).
  Every worker sees the same stale figures, so taken whole they made all N of them correct the same
  imbalance at once, N − 1 times too much: the load swung between the models, and since a call to
  the slow model lasts longer, the excess piled up there (4 workers, a model 4x slower: 1.35-1.41x
  more calls in flight on the slow one; with the share, ``benchmarks/adaptive.py``'s figure).

The rest of the plan follows by the same measure, so a failure falls back to the next best.
"""

from __future__ import annotations

import random

from ..resilience.live import LiveStats
from ..types import ChatRequest
from .base import Plan, Policy, RouteContext


class LeastLatency(Policy):
    def __init__(self, models: tuple[str, ...], weights: dict[str, float], tolerance: float = 0.2,
                 explore: float = 0.05, stale: float = 60.0, rng: random.Random | None = None) -> None:
        self.models = tuple(models)
        self.weights = {m: weights.get(m, 1.0) for m in models}
        self.tolerance = tolerance
        self.explore = explore
        self.stale = stale
        self.rng = rng or random.Random()

    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan:
        live: LiveStats | None = ctx.live
        est = {m: live.latency(m, req.stream, req.max_tokens) if live is not None else None for m in self.models}
        unknown = [m for m, e in est.items() if e is None]
        known = sorted((m for m, e in est.items() if e is not None), key=lambda m: est[m][0])
        stale = [m for m in known[1:] if est[m][2] > self.stale]
        # Measure again: a stale figure always, else (a share ``explore``) one never measured, or
        # the least recently measured of the rest, so one slow call is not a verdict for ever.
        # (Half of the requests measure a model never measured, until none is left: the first
        # figures come within a few calls, not after 1 / explore of them.)
        share = 0.5 if unknown else self.explore
        if known and (stale or ((unknown or len(known) > 1) and self.rng.random() < share)):
            pick = unknown[0] if unknown and not stale else max(stale or known[1:], key=lambda m: est[m][2])
            why = "never measured" if pick in unknown else f"last measured {est[pick][2]:.1f}s ago"
            rest = [m for m in known if m != pick] + [m for m in unknown if m != pick]
            return Plan((pick, *rest), f"least-latency: measuring {pick} again ({why})"
                        if pick not in unknown else f"least-latency: exploring {pick} ({why})")
        if not known:  # nothing measured yet: by weight, and each call measures one
            pick = self.rng.choices(self.models, [self.weights[m] for m in self.models])[0]
            return Plan((pick, *(m for m in self.models if m != pick)), f"least-latency: {pick} (no measurements yet)")
        best = est[known[0]][0]
        tied = [m for m in known if est[m][0] <= best * (1 + self.tolerance)]
        pick = tied[0] if len(tied) == 1 else self.rng.choices(tied, [self.weights[m] for m in tied])[0]
        rest = [m for m in known if m != pick] + unknown
        ties = f", tied with {len(tied) - 1} within {self.tolerance:.0%}" if len(tied) > 1 else ""
        return Plan((pick, *rest), f"least-latency: {pick} ~{est[pick][0] * 1000:.0f}ms{ties}")


class LeastBusy(Policy):
    def __init__(self, models: tuple[str, ...], weights: dict[str, float], rng: random.Random | None = None) -> None:
        self.models = tuple(models)
        self.weights = [weights.get(m, 1.0) for m in models]
        self.rng = rng or random.Random()

    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan:
        live = ctx.live
        busy: dict[str, float] = live.inflight if live is not None else {}  # type: ignore[assignment]
        if live is not None and live.remote:
            share = 1.0 / max(live.peers, 1)  # this worker's share of the others' imbalance (module doc)
            busy = {m: live.inflight.get(m, 0) + share * live.remote.get(m, 0) for m in self.models}
        if len(self.models) == 1:
            return Plan(self.models, "least-busy: one model")
        a = self.rng.choices(self.models, self.weights)[0]
        b = a
        while b == a:  # two distinct draws by weight
            b = self.rng.choices(self.models, self.weights)[0]
        def load(m: str) -> tuple[int, float]:  # a tie goes to the model that answers sooner
            est = live.latency(m, req.stream) if live is not None else None
            return busy.get(m, 0), est[0] if est is not None else 0.0

        pick = a if load(a) <= load(b) else b
        other = b if pick == a else a
        rest = sorted((m for m in self.models if m != pick), key=lambda m: busy.get(m, 0))
        where = ("" if live is None or live.shared is None else " across workers" if live.shared
                 else "; shared counts unreachable: this worker's own")
        return Plan((pick, *rest), f"least-busy: {pick} ({busy.get(pick, 0):.3g} in flight) over {other} "
                                   f"({busy.get(other, 0):.3g}){where}")
