"""``plans``: what a team would configure after reading its data — per task, a fixed plan.

A ``rules`` route sends each task (the request's ``task`` tag) to a route of its own, whose plan
is one of:

- one model (what ``per-task`` chooses among);
- a cascade over two or three models with ``checks: {agree: 1}``: the cheaper ones are asked in
  turn and an answer is kept once an earlier one settles on the same final answer (option
  letter, marked number, or words), else the last, dearer model answers. Agreement between
  independent models is the cheapest sign an answer is right.

The cascades are built from the train prompts' cost–quality frontier of single models: every
pair and triple of its models but the dearest, escalating to any dearer frontier model. Each
task's plan is chosen on its train prompts by trade-off λ, as ``per-task`` chooses its model
(the most quality − λ × cost ÷ the dearest model's mean cost), and every cascade is replayed
through the gateway's :class:`~switchman.routing.cascade.Cascade` policy and
:class:`~switchman.routing.checks.Checks` on the recorded answers. Needs data that kept
``response``.
"""

from __future__ import annotations

import asyncio
from itertools import combinations
from typing import Sequence

import numpy as np

from ..config import ChecksSpec
from ..routing.base import RouteContext
from ..routing.cascade import Cascade
from ..routing.checks import Checks
from .cascade import frontier, replay_cascade
from .replay import Fold, PointRun, request_for
from .strategies import LAMBDAS, Strategy

MAX_VOTERS = 5  # the cheapest frontier models that may be asked first: bounds the plans to ~50


def cascades(front: Sequence[int]) -> list[tuple[int, ...]]:
    """The agreement chains over ``front`` (frontier models, cheapest first): two or three of
    its cheaper models, then one dearer than all of them."""
    pos = {j: k for k, j in enumerate(front)}
    out = []
    for k in (2, 3):
        for voters in combinations(front[:-1][:MAX_VOTERS], k):
            out += [(*voters, e) for e in front if pos[e] > pos[voters[-1]]]
    return out


class PlansStrategy(Strategy):
    name = "plans"
    kind = "router"
    tunable = True

    def __init__(self, lambdas: Sequence[float] = LAMBDAS) -> None:
        self.lambdas = tuple(lambdas)
        self.labels = [f"λ={x:g}" for x in self.lambdas]
        self.params = list(self.lambdas)
        self.chosen: dict[str, list[dict[str, str]]] = {}  # label -> per fold: task -> its plan

    def run(self, fold: Fold) -> list[PointRun]:
        t = fold.table
        m = len(t.models)
        tasks = [p.task or "" for p in t.prompts]
        q_train, c_train = t.quality[fold.train].mean(axis=0), fold.cost[fold.train].mean(axis=0)
        chains = cascades(frontier(q_train, c_train))
        rows = np.concatenate([fold.train, fold.test])
        # every plan on every train and test prompt: the model that answered, the models called
        answered = np.empty((m + len(chains), len(rows)), dtype=np.int64)
        called = np.zeros((m + len(chains), len(rows), m), dtype=bool)
        answered[:m] = np.arange(m)[:, None]
        called[np.arange(m), :, np.arange(m)] = True
        reqs = [request_for(t.prompts[i]) for i in rows]
        checks = Checks(ChecksSpec(agree=1))

        async def replay() -> None:
            for p, chain in enumerate(chains, start=m):
                policy = Cascade(tuple(t.models[j] for j in chain), checks)
                answered[p], called[p] = await replay_cascade(policy, fold, rows, reqs, RouteContext({}))

        asyncio.run(replay())
        quality = t.quality[rows[None, :], answered]
        spent = (called * fold.cost[rows][None, :, :]).sum(axis=2)
        n_train = len(fold.train)
        top = float(c_train.max()) or 1.0
        groups: dict[str, list[int]] = {}
        for r, i in enumerate(fold.train):
            groups.setdefault(tasks[i], []).append(r)
        stats = {u: (quality[:, ix].mean(axis=1), spent[:, ix].mean(axis=1)) for u, ix in groups.items()}
        overall = (quality[:, :n_train].mean(axis=1), spent[:, :n_train].mean(axis=1))
        names = list(t.models) + [" → ".join(t.models[j] for j in c) + " (agree: 1)" for c in chains]
        cols = np.arange(n_train, len(rows))
        out = []
        for lam, label in zip(self.lambdas, self.labels):
            def best(qc: tuple[np.ndarray, np.ndarray]) -> int:
                q, c = qc
                return int(np.lexsort((c, -(q - lam * c / top)))[0])  # best, then cheapest

            pick = {u: best(st) for u, st in stats.items()}
            default = best(overall)  # a task never seen in training
            plan = np.array([pick.get(tasks[i], default) for i in fold.test], dtype=np.int64)
            self.chosen.setdefault(label, []).append({u: names[k] for u, k in pick.items()})
            out.append(PointRun(answered[plan, cols], called[plan, cols]))
        return out
