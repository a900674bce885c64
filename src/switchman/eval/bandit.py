"""``switchman eval --strategy bandit,bandit-cold``: the ``bandit`` policy replayed as live traffic.

The fold's test prompts arrive once, in a random order (seeded), each decided by the gateway's own
:class:`~switchman.routing.bandit.Bandit` (learning per task, ``context_tag: task``, when the data
names tasks). After each answer the cost is fed back as the gateway's settle step does, and a
random ``FEEDBACK`` share of answers (20%) sends its recorded quality as ``POST /v1/feedback``
would. Swept over the price of cost λ (as a share of the dearest model's mean cost per call, like
``learned``'s tradeoff).

- ``bandit``: warm-started from the train split: each model's mean quality on the train prompts
  of each task (what a router trained there knows per task) as its prior, worth ``PRIOR``
  observations;
- ``bandit-cold``: no prior (Beta(1, 1) everywhere): what it learns from the stream alone.
"""

from __future__ import annotations

import random

import numpy as np

from ..routing.bandit import Bandit
from ..routing.base import RouteContext
from .replay import Fold, PointRun, request_for
from .strategies import LAMBDAS, Strategy

FEEDBACK = 0.2
PRIOR = 20.0


class BanditStrategy(Strategy):
    kind = "router"
    tunable = True

    def __init__(self, name: str, warm: bool, lambdas=LAMBDAS) -> None:
        self.name = name
        self.warm = warm
        self.lambdas = tuple(lambdas)
        self.labels = [f"λ={x:g}" for x in self.lambdas]
        self.params = list(self.lambdas)

    def _priors(self, fold: Fold, models: list[str]) -> dict[str | None, dict[str, float]]:
        if not self.warm:
            return {}
        t = fold.table
        out: dict[str | None, dict[str, float]] = {}
        tasks = {t.prompts[i].task for i in fold.train}
        for task in tasks:
            rows = [i for i in fold.train if t.prompts[i].task == task]
            q = np.nanmean(t.quality[rows], axis=0)
            out[task] = {m: float(q[j]) for j, m in enumerate(models) if not np.isnan(q[j])}
        return out

    def run(self, fold: Fold) -> list[PointRun]:
        t = fold.table
        models = list(t.models)
        priors = self._priors(fold, models)
        tasks = any(t.prompts[i].task for i in fold.test)
        dearest = float(np.nanmax(np.nanmean(fold.cost[fold.train], axis=0))) or 1.0
        reqs = [request_for(t.prompts[i]) for i in fold.test]
        ctx = RouteContext({})
        out = []
        for lam in self.lambdas:
            rng = random.Random(fold.seed * 7919 + 1)
            b = Bandit(tuple(models), {}, lam / dearest, explore=0.02, prior=PRIOR,
                       context_tag="task" if tasks else None, rng=random.Random(fold.seed + 17))
            b.context_quality = priors
            answered = np.empty(len(fold.test), dtype=np.int64)
            order = list(range(len(fold.test)))
            rng.shuffle(order)
            for pos in order:
                i, req = fold.test[pos], reqs[pos]
                m = b.plan(req, ctx).models[0]
                j = fold.replay.column(m)
                answered[pos] = j
                b.cost(m, float(fold.cost[i, j]), req.tags)
                q = t.quality[i, j]
                if rng.random() < FEEDBACK and not np.isnan(q):
                    b.learn(m, float(q), req.tags)
            out.append(PointRun(answered))
        return out
