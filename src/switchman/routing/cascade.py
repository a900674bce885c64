"""The ``cascade`` policy: cheapest model first; each answer is checked (:mod:`.checks`) and,
when a check fails, the next model in the chain is asked. Every call's cost counts, the
rejected answers' and the judge's included.

The policy only plans: the chain (from where the optional ``start`` policy enters it, e.g. a
learned router's pick, so rules → learned → cascade compose), plus the checks the gateway runs
between stages (``Gateway.run``). Streaming requests are buffered at every checked stage: the
client's first byte leaves only once an answer has passed, so a cascade adds the cheap model's
whole answer time to the time to first token whenever it escalates. The last model in the chain
is not checked (there is no one better to ask) and streams straight through.
"""

from __future__ import annotations

from ..types import ChatRequest
from .base import Plan, Policy, RouteContext
from .checks import Checks


class Cascade(Policy):
    def __init__(self, models: tuple[str, ...], checks: Checks, start: Policy | None = None) -> None:
        self.models = tuple(models)
        self.checks = checks
        self.start = start

    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan:
        if self.start is None:
            return Plan(self.models, "cascade", self.checks)
        p = self.start.plan(req, ctx)
        pick = p.models[0] if p.models else self.models[0]
        chain = self.models[self.models.index(pick):] if pick in self.models else (pick, *self.models)
        return Plan(chain, f"cascade from {pick} ({p.reason})", self.checks, tags=p.tags)
