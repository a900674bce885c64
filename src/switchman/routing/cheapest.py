"""The ``cheapest`` policy: the cheapest model whose expected quality for this request meets
``min_quality``.

Expected quality is each model's figure from ``quality:`` (a fixed number per model, e.g. its
accuracy on your own evaluation), or, with ``router:``, what a trained router predicts for this
prompt (``quality:`` then fills in models the router does not know; the request's ``task_tag``
tag names its task to the router, as for ``learned``). Expected cost is priced
from the configured prices: the prompt's estimated tokens plus ``output_tokens`` of answer.

The plan: the chosen model, then the other models that meet the bar, cheapest first, then the
rest, best first (so a failure falls back to the next cheapest good-enough model). When no model
meets the bar, the best one leads, and the reason says so.

With ``pace:`` on the route, the bar moves with the spend (``routing/pacing.py``): its slack below
1 is scaled by the pacer's λ, so spending ahead of plan lowers it (cheaper models qualify) and
lagging raises it toward the best model; the reason shows the bar in force and the pace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from typing import TYPE_CHECKING

from ..types import ChatRequest
from .base import Plan, Policy, RouteContext, prompt_text, request_task

if TYPE_CHECKING:
    from .learned import Router


class Cheapest(Policy):
    def __init__(self, models: tuple[str, ...], min_quality: float, quality: Mapping[str, float] | None = None,
                 router: "Router | None" = None, aliases: Mapping[str, str] | None = None,
                 output_tokens: int = 256, task_tag: str = "task") -> None:
        self.models = tuple(models)
        self.min_quality = min_quality
        self.quality = dict(quality or {})
        self.router = router
        self.output_tokens = output_tokens
        self.task_tag = task_tag
        self.pacer = None  # a route's budget pacing, when it has one: it moves the bar
        alias = dict(aliases or {})
        self._column = {}
        if router is not None:
            for m in self.models:
                name = alias.get(m, m)
                if name in router.models:
                    self._column[m] = router.models.index(name)

    def expected_quality(self, req: ChatRequest) -> dict[str, float]:
        q = dict(self.quality)
        if self._column:
            pred = self.router.predict(prompt_text(req), request_task(req, self.task_tag))  # type: ignore[union-attr]
            q.update({m: float(pred[j]) for m, j in self._column.items()})
        return q

    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan:
        if self.pacer is None:
            return self._plan(req, ctx, self.min_quality)
        bar = self.pacer.bar(self.min_quality)
        p = self._plan(req, ctx, bar)
        return replace(p, reason=f"{p.reason}; {self.pacer.reason()}, bar {bar:.2f}")

    def _plan(self, req: ChatRequest, ctx: RouteContext, min_quality: float) -> Plan:
        q = self.expected_quality(req)
        tokens_in = req.estimated_tokens()
        tokens_out = min(self.output_tokens, req.max_tokens or self.output_tokens)
        cost = {m: ctx.models[m].price.cost(tokens_in, tokens_out) for m in self.models if m in ctx.models}
        known = [m for m in cost if m in q]
        good = sorted((m for m in known if q[m] >= min_quality), key=lambda m: (cost[m], -q[m]))
        rest = sorted((m for m in known if m not in good), key=lambda m: -q[m])
        order = (*good, *rest)
        if not order:
            return Plan((), "cheapest:no-candidates")
        pick = order[0]
        if good:
            why = f"cheapest:{pick} q={q[pick]:.2f}>={min_quality:.2f} ${cost[pick]:.6f}"
        else:
            why = f"cheapest:none reaches q>={min_quality:.2f}, best {pick} q={q[pick]:.2f}"
        return Plan(order, why)
