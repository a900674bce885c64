"""A FrugalGPT-style cascade, replayed: call the cheapest model first; the learned answer scorer
(:class:`~switchman.routing.scorer.AnswerScorer`, the one the gateway loads) reads the prompt,
the answer and whether it agrees with the answers already bought, and the cascade escalates to
the next model while the score is below a threshold. Every call's cost counts.

The chain is the train prompts' cost–quality frontier of single models (cheapest first, each
one better than every cheaper one); the scorer is trained on the fold's train prompts, on the
chain's answers, each beside the answers of the cheaper chain models. Needs data that kept
``response``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..routing.training import ScorerParams, train_scorer
from .metrics import upper_hull
from .replay import Fold, PointRun
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


class CascadeStrategy(Strategy):
    name = "cascade"
    kind = "router"
    tunable = True

    def __init__(self, thresholds: Sequence[float] = THRESHOLDS, c: float = 0.3, chain: Sequence[str] | None = None) -> None:
        self.chain = tuple(chain) if chain else None
        self.thresholds = tuple(thresholds)
        self.labels = [f"accept≥{t:g}" for t in self.thresholds]
        self.params = list(self.thresholds)
        self.c = c

    def run(self, fold: Fold) -> list[PointRun]:
        t = fold.table
        if self.chain:
            chain = [fold.replay.column(m) for m in self.chain]
        else:
            chain = frontier(t.quality[fold.train].mean(axis=0), fold.cost[fold.train].mean(axis=0))
        names = [t.models[j] for j in chain]
        scorer = train_scorer(t, fold.cost, rows=fold.train, models=names, params=ScorerParams(c=self.c, max_earlier=len(chain)))
        # score[r, k]: the scorer's belief that chain model k answered test prompt r well
        score = np.ones((len(fold.test), len(chain)))
        for r, i in enumerate(fold.test):
            text, answers = t.prompts[i].text, [t.responses[i][j] for j in chain]
            for k in range(len(chain) - 1):
                score[r, k] = scorer.score(text, answers[k], answers[:k], names[k])
        out = []
        n, m = len(fold.test), len(t.models)
        for th in self.thresholds:
            answered = np.empty(n, dtype=np.int64)
            called = np.zeros((n, m), dtype=bool)
            for r in range(n):
                for k, j in enumerate(chain):
                    called[r, j] = True
                    if k == len(chain) - 1 or score[r, k] >= th:
                        answered[r] = j
                        break
            out.append(PointRun(answered, called))
        return out
