"""Replaying outcome data: a provider that answers from the recorded outcomes, the train/test
folds, and the loop that runs every strategy on every fold.

A strategy sees a :class:`Fold`: it may learn from the ``train`` prompts' outcomes and must then
decide, for each ``test`` prompt, which models it calls; the :class:`ReplayProvider` answers each
call with what that model really answered, cost and quality included.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..outcomes import OutcomeTable, Prompt
from ..types import ChatRequest, Message, Role, TextPart


@dataclass(frozen=True, slots=True)
class Answer:
    model: int
    quality: float
    cost: float
    response: str | None


class ReplayProvider:
    """Answers "model ``j`` on prompt ``i``" with the recorded outcome."""

    def __init__(self, table: OutcomeTable, cost: np.ndarray) -> None:
        self.table = table
        self.cost = cost
        self._col = {m: j for j, m in enumerate(table.models)}

    def column(self, model: str) -> int:
        return self._col[model]

    def call(self, i: int, model: str | int) -> Answer:
        j = model if isinstance(model, int) else self._col[model]
        resp = self.table.responses[i][j] if self.table.responses is not None else None
        return Answer(j, float(self.table.quality[i, j]), float(self.cost[i, j]), resp)


def request_for(prompt: Prompt) -> ChatRequest:
    """The prompt as a gateway would receive it: one user message (``model: auto``), tagged
    ``task=`` its task where the data names one (as an application would tag its requests)."""
    return ChatRequest(model="auto", messages=[Message(Role.USER, [TextPart(prompt.text)])],
                       tags={"task": prompt.task} if prompt.task else None)


@dataclass(slots=True, eq=False)
class Fold:
    table: OutcomeTable
    cost: np.ndarray  # full (n, m) cost matrix
    cost_unit: str
    train: np.ndarray  # prompt indices to learn from
    test: np.ndarray  # prompt indices to decide on
    replay: ReplayProvider
    seed: int = 0


def make_folds(table: OutcomeTable, cost: np.ndarray, cost_unit: str, k: int = 5, seed: int = 0) -> tuple[list[Fold], str]:
    """The data's own train/test split when it has one, else ``k`` random folds over prompts.
    Returns the folds and a few words saying which."""
    replay = ReplayProvider(table, cost)
    tr = np.asarray(table.split_indices("train"), dtype=np.int64)
    te = np.asarray(table.split_indices("test"), dtype=np.int64)
    if len(tr) and len(te):
        return [Fold(table, cost, cost_unit, tr, te, replay, seed)], f"train split ({len(tr)}) / test split ({len(te)})"
    n = len(table)
    if n < k:
        raise ValueError(f"{n} prompts are too few for {k}-fold cross-validation")
    order = np.random.default_rng(seed).permutation(n)
    parts = np.array_split(order, k)
    folds = []
    for f in range(k):
        test = np.sort(parts[f])
        train = np.sort(np.concatenate([parts[g] for g in range(k) if g != f]))
        folds.append(Fold(table, cost, cost_unit, train, test, replay, seed + f))
    return folds, f"{k}-fold cross-validation over {n} prompts (no split in the data)"


@dataclass(slots=True)
class PointRun:
    """One operating point's decisions on a fold's test prompts (aligned with ``fold.test``).

    ``called`` (bool, prompts × models) lists every model called, for strategies that call
    more than one (cascades); None means only ``answered`` was called."""

    answered: np.ndarray
    called: np.ndarray | None = None


@dataclass(slots=True)
class Result:
    """A strategy's decisions on every evaluated prompt, per operating point."""

    name: str
    kind: str  # "single", "baseline", "router", "oracle"
    tunable: bool
    labels: list[str]
    answered: np.ndarray  # (points, prompts) model index
    called: np.ndarray  # (points, prompts, models) bool
    quality: np.ndarray  # (points, prompts)
    cost: np.ndarray  # (points, prompts)
    params: list[float | None]


def run_all(
    strategies: Sequence,
    folds: Sequence[Fold],
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, list[Result]]:
    """Run each strategy on each fold and stitch the folds together. Returns the evaluated
    prompt indices (every fold's test prompts, in order) and one :class:`Result` each."""
    idx = np.concatenate([f.test for f in folds])
    table, cost = folds[0].table, folds[0].cost
    q_all, c_all = table.quality[idx], cost[idx]
    m = len(table.models)
    results = []
    for s in strategies:
        per_point_ans: list[list[np.ndarray]] = []
        per_point_called: list[list[np.ndarray]] = []
        for k, f in enumerate(folds):
            if progress:
                progress(f"{s.name}" + (f" (fold {k + 1}/{len(folds)})" if len(folds) > 1 else ""))
            runs = s.run(f)
            if not per_point_ans:
                per_point_ans = [[] for _ in runs]
                per_point_called = [[] for _ in runs]
            for p, r in enumerate(runs):
                per_point_ans[p].append(r.answered)
                if r.called is None:
                    called = np.zeros((len(r.answered), m), dtype=bool)
                    called[np.arange(len(r.answered)), r.answered] = True
                else:
                    called = r.called
                per_point_called[p].append(called)
        answered = np.stack([np.concatenate(a) for a in per_point_ans])
        called = np.stack([np.concatenate(c) for c in per_point_called])
        rows = np.arange(len(idx))
        quality = q_all[rows, answered]
        spent = (called * c_all[None, :, :]).sum(axis=2)
        results.append(
            Result(s.name, s.kind, s.tunable, list(s.labels), answered, called, quality, spent, list(s.params))
        )
    return idx, results
