"""The strategies the evaluator compares: the baselines every claim is measured against, the
oracle, and the learned router (run through the same :class:`~switchman.routing.learned.Learned`
policy code the gateway runs).

Each strategy has fixed operating points (``labels``/``params``) and a ``run(fold)`` that learns
from the fold's train prompts only and decides for its test prompts.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..routing.base import RouteContext, request_task
from ..routing.learned import Learned, Router, prompt_text
from ..routing.simple import First, Weighted
from .replay import Fold, PointRun, request_for

# λ grid for tradeoff sweeps: 0 (quality only), then from "cost barely matters" to "cost rules".
LAMBDAS = (0.0, *np.geomspace(1e-3, 100.0, 46).round(6).tolist())
MIN_QUALITIES = tuple(np.round(np.linspace(0.30, 0.99, 24), 3).tolist())
SHARES = tuple(np.round(np.linspace(0.0, 1.0, 11), 2).tolist())


class Strategy:
    name = ""
    kind = "baseline"
    tunable = False
    labels: Sequence[str] = ("",)
    params: Sequence[float | None] = (None,)

    def run(self, fold: Fold) -> list[PointRun]:  # pragma: no cover - abstract
        raise NotImplementedError


def _train_mean(fold: Fold) -> tuple[np.ndarray, np.ndarray]:
    return fold.table.quality[fold.train].mean(axis=0), fold.cost[fold.train].mean(axis=0)


class Single(Strategy):
    """Always the one model (through the ``first`` policy)."""

    kind = "single"

    def __init__(self, model: str) -> None:
        self.model = model
        self.name = f"single:{model}"
        self.policy = First((model,))

    def run(self, fold: Fold) -> list[PointRun]:
        ctx = RouteContext({})
        col = fold.replay.column
        ans = np.array([col(self.policy.plan(request_for(fold.table.prompts[i]), ctx).models[0]) for i in fold.test])
        return [PointRun(ans)]


class BestSingle(Strategy):
    """The model with the best quality on the train prompts."""

    name = "best-single"

    def run(self, fold: Fold) -> list[PointRun]:
        q, c = _train_mean(fold)
        j = int(np.lexsort((c, -q))[0])
        return [PointRun(np.full(len(fold.test), j))]


class CheapestMeeting(Strategy):
    """The cheapest model whose train quality reaches each target share of the best model's."""

    name = "cheapest-meeting"
    tunable = True

    def __init__(self, targets: Sequence[float]) -> None:
        self.targets = tuple(targets)
        self.labels = [f"target={t:g}" for t in self.targets]
        self.params = list(self.targets)

    def run(self, fold: Fold) -> list[PointRun]:
        q, c = _train_mean(fold)
        out = []
        for t in self.targets:
            ok = np.flatnonzero(q >= t * q.max() - 1e-12)
            j = int(ok[np.argmin(c[ok])])
            out.append(PointRun(np.full(len(fold.test), j)))
        return out


class PerTask(Strategy):
    """A fixed model per task, chosen on the train prompts: at λ = 0 the best model of each
    task; as λ grows, argmax over models of quality − λ × cost ÷ dearest cost, per task."""

    name = "per-task"
    tunable = True

    def __init__(self, lambdas: Sequence[float] = LAMBDAS) -> None:
        self.lambdas = tuple(lambdas)
        self.labels = [f"λ={x:g}" for x in self.lambdas]
        self.params = list(self.lambdas)

    def run(self, fold: Fold) -> list[PointRun]:
        tasks = fold.table.tasks
        qg, cg = _train_mean(fold)
        top = float(cg.max()) or 1.0
        by_task: dict[str | None, list[int]] = {}
        for i in fold.train:
            by_task.setdefault(tasks[i], []).append(int(i))
        stats = {t: (fold.table.quality[ix].mean(axis=0), fold.cost[ix].mean(axis=0)) for t, ix in by_task.items()}
        out = []
        for lam in self.lambdas:
            pick = {t: int(np.lexsort((c, -(q - lam * c / top)))[0]) for t, (q, c) in stats.items()}
            default = int(np.lexsort((cg, -(qg - lam * cg / top)))[0])  # a task never seen in training
            out.append(PointRun(np.array([pick.get(tasks[i], default) for i in fold.test])))
        return out


class RandomMix(Strategy):
    """Each prompt goes to the strong model with probability ``share``, else to the weak one
    (through the ``weighted`` policy): the line any router must beat."""

    name = "random"
    tunable = True

    def __init__(self, strong: str | None = None, weak: str | None = None, shares: Sequence[float] = SHARES) -> None:
        self.strong, self.weak = strong, weak
        self.shares = tuple(shares)
        self.labels = [f"share={s:g}" for s in self.shares]
        self.params = list(self.shares)

    def run(self, fold: Fold) -> list[PointRun]:
        import random

        q, c = _train_mean(fold)
        models = fold.table.models
        strong = self.strong or models[int(np.lexsort((c, -q))[0])]
        weak = self.weak or models[int(np.lexsort((-q, c))[0])]
        ctx = RouteContext({})
        col = fold.replay.column
        out = []
        for k, s in enumerate(self.shares):
            pol = Weighted((strong, weak), (s, 1.0 - s), rng=random.Random(fold.seed * 1000 + k))
            out.append(PointRun(np.array([col(pol.plan(request_for(fold.table.prompts[i]), ctx).models[0]) for i in fold.test])))
        return out


class Oracle(Strategy):
    """The cheapest model with the best recorded quality on each prompt: the ceiling."""

    name = "oracle"
    kind = "oracle"

    def run(self, fold: Fold) -> list[PointRun]:
        q = fold.table.quality[fold.test]
        c = fold.cost[fold.test]
        # best quality first, then cheapest: lexsort's last key is the primary one
        ans = np.array([int(np.lexsort((c[r], -q[r]))[0]) for r in range(len(fold.test))])
        return [PointRun(ans)]


class LearnedStrategy(Strategy):
    """The ``learned`` policy, swept over ``tradeoff`` λ or ``min_quality``.

    With ``router`` given it is used as is (no training); otherwise a router is trained on each
    fold's train prompts with ``train`` (a callable ``(fold) -> Router``)."""

    kind = "router"
    tunable = True

    def __init__(self, name: str, mode: str, router: Router | None = None, train=None, grid: Sequence[float] | None = None) -> None:
        if mode not in ("tradeoff", "min_quality"):
            raise ValueError(mode)
        self.name = name
        self.mode = mode
        self.router = router
        self.train = train
        self.grid = tuple(grid if grid is not None else (LAMBDAS if mode == "tradeoff" else MIN_QUALITIES))
        sym = "λ" if mode == "tradeoff" else "q≥"
        self.labels = [f"{sym}{'=' if mode == 'tradeoff' else ''}{x:g}" for x in self.grid]
        self.params = list(self.grid)
        self._cache: dict[int, tuple[Router, np.ndarray, np.ndarray]] = {}

    def predictions(self, fold: Fold) -> tuple[Router, np.ndarray, np.ndarray]:
        """The fold's router and its predicted quality and cost for the test prompts (shared
        by the λ and min-quality sweeps of the same router)."""
        key = id(fold)
        if key not in self._cache:
            router = self.router if self.router is not None else self.train(fold)
            reqs = [request_for(fold.table.prompts[i]) for i in fold.test]
            texts = [prompt_text(r) for r in reqs]
            tasks = [request_task(r, "task") for r in reqs]
            self._cache[key] = (router, *router.estimate_many(texts, tasks))
        return self._cache[key]

    def run(self, fold: Fold) -> list[PointRun]:
        router, pred, est = self.predictions(fold)
        cols_of = [fold.replay.column(m) for m in router.models]
        cols = list(range(len(router.models)))
        out = []
        for x in self.grid:
            pol = Learned(router, **{self.mode: x})
            picks = [pol.decide(pred[r], pol.prompt_costs(est[r]), cols, router.models).models[0] for r in range(len(fold.test))]
            idx = {m: cols_of[j] for j, m in enumerate(router.models)}
            out.append(PointRun(np.array([idx[p] for p in picks])))
        return out

    def cached_router(self) -> Router | None:
        """A router this strategy trained or was given (for timing decisions)."""
        return next(iter(self._cache.values()))[0] if self._cache else self.router

    def share_cache(self, other: "LearnedStrategy") -> None:
        """Let ``other`` reuse this one's routers and predictions."""
        other._cache = self._cache
