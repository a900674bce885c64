"""A FrugalGPT-style cascade, replayed through the gateway's own code: the
:class:`~switchman.routing.cascade.Cascade` policy plans the chain, each recorded answer is
checked by :meth:`Checks.verdict <switchman.routing.checks.Checks.verdict>` exactly as the
gateway checks a live one, and the chain moves on to the next model while a check fails. Every
call's cost counts.

The checks are those a user would configure for such a route: the gateway's defaults (refusal
or empty answer, JSON, tools), ``arithmetic`` (a stated calculation with a wrong result), and
the learned answer scorer (:class:`~switchman.routing.scorer.AnswerScorer`: the prompt, the
answer, its own calculations and whether it agrees with the answers already bought), swept over
its ``min`` score; the first operating point checks nothing (the cheapest model answers
everything), where the sweep starts. The scorer is trained on the fold's train prompts, on the chain's answers,
each beside the answers of the cheaper chain models.

The chain is the train prompts' cost–quality frontier of single models (cheapest first, each
one better than every cheaper one). Needs data that kept ``response``.

``hybrid`` is the same cascade with a ``start:`` policy, as a route would configure it: the
``learned`` router (trade-off λ) picks where in the chain to begin, and the checks escalate from
there; it sweeps λ and the scorer's ``min`` together.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

import numpy as np

from ..config import ChecksSpec
from ..routing.base import RouteContext
from ..routing.cascade import Cascade
from ..routing.checks import Checks
from ..routing.learned import Learned
from ..routing.training import ScorerParams, train_scorer
from ..types import ChatResponse, FinishReason, TextPart
from .metrics import upper_hull
from .replay import Fold, PointRun, request_for
from .strategies import Strategy

THRESHOLDS = tuple(np.round(np.linspace(0.0, 1.0, 41), 3).tolist())


def frontier(q: np.ndarray, c: np.ndarray) -> list[int]:
    """Models on the (cost, quality) frontier, cheapest first."""
    hull = upper_hull(list(zip(c.tolist(), q.tolist())))
    out = []
    for cost, qual in hull:
        j = next(j for j in range(len(q)) if c[j] == cost and q[j] == qual)
        out.append(j)
    return out


class _Memo:
    """The scorer, remembering each score: a sweep over ``min`` asks the same question once per
    operating point, and the answer cannot change."""

    def __init__(self, scorer) -> None:
        self.scorer = scorer
        self.seen: dict[tuple, float] = {}

    def score(self, prompt: str, answer: str | None, earlier: Sequence[str | None] = (), model: str | None = None) -> float:
        key = (prompt, answer, tuple(earlier), model)
        s = self.seen.get(key)
        if s is None:
            s = self.seen[key] = self.scorer.score(prompt, answer, earlier, model)
        return s


def _answer(text: str | None, model: str) -> ChatResponse:
    """A recorded answer as the gateway would have received it."""
    return ChatResponse(id="replay", model=model, parts=[TextPart(text or "")], finish_reason=FinishReason.STOP, usage=None)


class _Estimates:
    """A router whose estimate for each prompt is worked out once (a sweep asks again per point)."""

    def __init__(self, router) -> None:
        self._router = router
        self._seen: dict[str, tuple] = {}

    def __getattr__(self, name: str):
        return getattr(self._router, name)

    def estimate(self, text: str, task: str | None = None):
        e = self._seen.get((text, task))
        if e is None:
            e = self._seen[(text, task)] = self._router.estimate(text, task)
        return e


async def replay_cascade(policy: Cascade, fold: Fold, rows: Sequence[int], reqs: Sequence, ctx: RouteContext
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``policy`` on the prompts ``rows`` (requests ``reqs``), answered from the recording as the
    gateway would run it: each stage's answer is checked, and a failed check asks the next model.
    Returns the model that answered each prompt and every model called, ``(rows, models)``."""
    answered = np.empty(len(rows), dtype=np.int64)
    called = np.zeros((len(rows), len(fold.table.models)), dtype=bool)
    for r, i in enumerate(rows):
        plan = policy.plan(reqs[r], ctx)
        earlier: list[str] = []
        for stage, name in enumerate(plan.models):
            ans = fold.replay.call(int(i), name)
            called[r, ans.model] = True
            answered[r] = ans.model
            if stage == len(plan.models) - 1:
                break  # the last model's answer is not checked
            resp = _answer(ans.response, name)
            if await plan.checks.verdict(reqs[r], resp, earlier, None, name) is None:
                break
            earlier.append(resp.text())
    return answered, called


class CascadeStrategy(Strategy):
    name = "cascade"
    kind = "router"
    tunable = True

    def __init__(self, thresholds: Sequence[float] = THRESHOLDS, c: float = 0.3, chain: Sequence[str] | None = None) -> None:
        self.chain = tuple(chain) if chain else None
        self.thresholds = tuple(thresholds)
        self.labels = ["accept all", *(f"accept≥{t:g}" for t in self.thresholds)]
        self.params = [None, *self.thresholds]
        self.c = c

    def start(self, fold: Fold, point: int):
        """The policy choosing where the chain begins at operating point ``point`` (none: the
        cheapest model)."""
        return None

    def run(self, fold: Fold) -> list[PointRun]:
        t = fold.table
        if self.chain:
            chain = [fold.replay.column(m) for m in self.chain]
        else:
            chain = frontier(t.quality[fold.train].mean(axis=0), fold.cost[fold.train].mean(axis=0))
        names = [t.models[j] for j in chain]
        scorer = _Memo(train_scorer(t, fold.cost, rows=fold.train, models=names,
                                    params=ScorerParams(c=self.c, max_earlier=len(chain))))
        reqs = [request_for(t.prompts[i]) for i in fold.test]
        ctx = RouteContext(dict.fromkeys(names))  # a start policy chooses among the chain's models

        async def point(k: int, th: float | None) -> PointRun:
            spec = (ChecksSpec(refusal=False, json=False, tools=False) if th is None else
                    ChecksSpec(arithmetic=True, scorer="(trained on the fold)", scorer_min=th))
            policy = Cascade(tuple(names), Checks(spec, scorer if th is not None else None), self.start(fold, k))
            return PointRun(*await replay_cascade(policy, fold, fold.test, reqs, ctx))

        async def sweep() -> list[PointRun]:
            return [await point(k, th) for k, th in enumerate(self.thresholds_at())]

        return asyncio.run(sweep())

    def thresholds_at(self) -> list[float | None]:
        """The scorer's ``min`` at each operating point (None: no checks)."""
        return list(self.params)


class HybridStrategy(CascadeStrategy):
    """rules → ``learned`` → cascade, minus the rules: the learned router picks the first model
    of the chain, the checks escalate from it."""

    name = "hybrid"

    def __init__(self, router_for, lambdas: Sequence[float] = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0),
                 thresholds: Sequence[float] = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9), c: float = 0.3) -> None:
        super().__init__(thresholds, c)
        self.router_for = router_for  # fold -> the fold's trained Router
        self.grid = [(lam, th) for lam in lambdas for th in (None, *thresholds)]
        self.labels = [f"λ={lam:g}, " + ("accept all" if th is None else f"accept≥{th:g}") for lam, th in self.grid]
        self.params = [lam for lam, _ in self.grid]
        self._routers: dict[int, _Estimates] = {}

    def start(self, fold: Fold, point: int):
        key = id(fold)
        if key not in self._routers:
            self._routers[key] = _Estimates(self.router_for(fold))
        return Learned(self._routers[key], tradeoff=self.grid[point][0])

    def thresholds_at(self) -> list[float | None]:
        return [th for _, th in self.grid]
