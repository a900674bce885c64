"""A FrugalGPT-style cascade, replayed: call the cheapest model first; a learned answer scorer
reads the prompt, the answer and whether it agrees with the answers already bought, and the
cascade escalates to the next model while the score is below a threshold. Every call's cost
counts.

The chain is the train prompts' cost–quality frontier of single models (cheapest first, each
one better than every cheaper one). One scorer per chain position, a logistic regression over
prompt TF-IDF, answer TF-IDF and agreement flags with the earlier answers (agreement between
independent models is the strongest cheap sign that an answer is right, as AutoMix and
answer-consistency cascades found). Needs data that kept ``response``.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from ..routing.features import FeatureParams, Vectorizer
from ..routing.training import _sklearn
from .metrics import upper_hull
from .replay import Fold, PointRun
from .strategies import Strategy

THRESHOLDS = tuple(np.round(np.linspace(0.0, 1.0, 41), 3).tolist())
_NONWORD = re.compile(r"\W+")


def normalise(answer: str | None) -> str:
    """An answer reduced for comparison: case, punctuation, escaped newlines and space gone."""
    if not answer:
        return ""
    return _NONWORD.sub(" ", answer.replace("\\n", " ").lower()).strip()[:300]


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

    def _features(self, fold: Fold, rows: np.ndarray, chain: list[int], k: int, pvec: Vectorizer, rvec: Vectorizer):
        sp, _ = _sklearn()
        t = fold.table
        prompts = [t.prompts[i].text for i in rows]
        answers = [t.responses[i][chain[k]] or "" for i in rows]
        a, b, d = pvec.transform_csr(prompts)
        xp = sp.csr_matrix((d, b, a), shape=(len(rows), max(len(pvec), 1)))
        a, b, d = rvec.transform_csr(answers)
        xr = sp.csr_matrix((d, b, a), shape=(len(rows), max(len(rvec), 1)))
        mine = [normalise(x) for x in answers]
        flags = np.zeros((len(rows), max(k, 1) + 2))
        for r, i in enumerate(rows):
            earlier = [normalise(t.responses[i][chain[j]]) for j in range(k)]
            agree = [float(e == mine[r] and mine[r] != "") for e in earlier]
            flags[r, : len(agree)] = agree
            flags[r, -2] = float(bool(agree) and all(agree))
            flags[r, -1] = float(mine[r] == "")
        return sp.hstack([xp, xr, sp.csr_matrix(flags)]).tocsr()

    def run(self, fold: Fold) -> list[PointRun]:
        _, LogisticRegression = _sklearn()
        t = fold.table
        qtr = t.quality[fold.train]
        if self.chain:
            chain = [fold.replay.column(m) for m in self.chain]
        else:
            chain = frontier(qtr.mean(axis=0), fold.cost[fold.train].mean(axis=0))
        params = FeatureParams()
        pvec = Vectorizer.fit([t.prompts[i].text for i in fold.train], params, max_features=20_000)
        rvec = Vectorizer.fit([t.responses[i][j] or "" for i in fold.train for j in chain], params, max_features=20_000)
        # score[r, k]: the scorer's belief that chain model k answered test prompt r well
        score = np.ones((len(fold.test), len(chain)))
        for k in range(len(chain) - 1):
            y = (qtr[:, chain[k]] >= 0.5).astype(int)
            xte = self._features(fold, fold.test, chain, k, pvec, rvec)
            if y.min() == y.max():
                score[:, k] = float(y[0])
                continue
            lr = LogisticRegression(C=self.c, max_iter=1000, solver="liblinear")
            lr.fit(self._features(fold, fold.train, chain, k, pvec, rvec), y)
            score[:, k] = lr.predict_proba(xte)[:, 1]
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
