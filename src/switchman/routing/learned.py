"""The ``learned`` policy: a router trained from outcome data predicts each model's quality for
the prompt, then picks by ``min_quality`` (the cheapest model predicted to meet it) or by
``tradeoff`` (the most predicted quality less λ × cost).

A trained router is one ``.npz`` file (numpy arrays only, loaded with ``allow_pickle=False``, so
loading a router never runs code): the TF-IDF vocabulary, IDF and shape-feature scaling (see
:mod:`.features`), one logistic-regression row per model, what the training data said each model
costs per call, and per model a linear model of how this prompt's cost differs from that mean.
Run time needs numpy alone; training (:mod:`.training`) needs the ``[eval]`` extra.

The cost differs per prompt (a coding prompt's answer is long, a multiple-choice one's is a
letter), so a decision weighs each model's cost *for this prompt*: on routerbench-3task the
per-prompt estimate is within 6% of the recorded cost, the mean per call within 25%.

Where the training data names each prompt's task (the outcomes' ``task`` field), the router also
learns what the task itself says: one weight per task and model beside the prompt's features. At
run time the request's ``task`` tag (``x-switchman-tags: task=...``; the tag's name is the
policy's ``task_tag``) selects it; a request without the tag, or of a task the router never saw,
is routed by its text alone. An application usually knows which of its features sent a request;
on MMLU, where the 57 subjects differ most in which model gets them right, the task weights
took CPT(50%) from 27.1% to 24.5% of strong-model calls in cross-validation, and the AIQ above
the per-task baseline's (``benchmarks/RESULTS.md``).

Which costs a served route weighs (``costs:``): the router's per-prompt estimates by default, the
very figures ``switchman eval`` decides with, so a route does live what the evaluation measured;
``costs: prices`` (the default with ``aliases``, or a router trained without USD costs) prices the
request from the configured prices instead: input tokens from the prompt's length, output tokens
from the training data's mean per model. Served routes used to price every request that way,
which loses what the per-prompt estimate knows (a coding answer is long), so they did not do what
the evaluation measured (issue 16: 31.1% of gpt-4's cost at 95% of its quality live, 33.3%
offline); with the router's costs, ``benchmarks/live_offline.py`` finds every decision the same.

λ is unitless: cost enters as a share of the dearest candidate's expected (mean) cost per call,
so ``tradeoff: 0.1`` means "paying for the dearest model must buy at least 0.1 of quality".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..types import ChatRequest
from .base import Plan, Policy, RouteContext, prompt_text, request_task
from .features import FeatureParams, Vectorizer
from .files import ModelFileError, load_npz, save_npz

FORMAT = "switchman-router"
VERSION = 3  # 2: shape features and per-prompt cost models; 3: task weights


class RouterFileError(ModelFileError):
    """A router file that is missing, of another format, or damaged."""


@dataclass(slots=True)
class Router:
    """A trained quality predictor: ``predict(text)[j]`` is model ``j``'s expected quality."""

    models: list[str]
    vectorizer: Vectorizer
    weights: np.ndarray  # (n_features, n_models) float32
    bias: np.ndarray  # (n_models,)
    cost_per_call: np.ndarray  # (n_models,) mean cost per call in the training data
    cost_unit: str = "usd"  # "usd", or "strong-model calls" when the data had no costs
    output_tokens: np.ndarray | None = None  # (n_models,) mean output tokens, NaN = unknown
    meta: dict = field(default_factory=dict)  # trained on what, when, with which settings
    # log(cost of this prompt ÷ cost_per_call) = features @ cost_weights + cost_bias; None or
    # zeros: every prompt costs the mean
    cost_weights: np.ndarray | None = None  # (n_features, n_models) float32
    cost_bias: np.ndarray | None = None  # (n_models,)
    tasks: list[str] = field(default_factory=list)  # the tasks the training data named
    task_weights: np.ndarray | None = None  # (n_tasks, n_models) float32, added for a known task
    # prompt clusters (``switchman train --clusters K``): k-means centroids of the training prompts'
    # features, (n_features, K) float32, for a bandit that learns per cluster (``context: cluster``)
    centroids: np.ndarray | None = None
    _task_row: dict[str, int] = field(init=False, repr=False, default_factory=dict)
    # quality, cost and centroid weights side by side: one gather and one product per decision
    _all: np.ndarray | None = field(init=False, repr=False, default=None)
    _centroid_sq: np.ndarray | None = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        self._task_row = {t: i for i, t in enumerate(self.tasks)}
        cols = [self.weights]
        if self.cost_weights is not None:
            cols.append(self.cost_weights)
        if self.centroids is not None and self.centroids.size:
            cols.append(self.centroids)
            c = self.centroids.astype(np.float64)
            self._centroid_sq = (c * c).sum(axis=0)
        else:
            self.centroids = None
        self._all = np.hstack(cols) if len(cols) > 1 else None

    @property
    def clusters(self) -> int:
        """How many prompt clusters the router knows (0: none)."""
        return 0 if self.centroids is None else self.centroids.shape[1]

    def knows(self, task: str | None) -> bool:
        """Whether ``task`` is one the router learned weights for."""
        return task is not None and task in self._task_row

    def predict(self, text: str, task: str | None = None) -> np.ndarray:
        """Predicted quality (0..1) of every model for one prompt."""
        return self.estimate(text, task)[0]

    def estimate(self, text: str, task: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted quality (0..1) and cost (in ``cost_unit``) of every model for one prompt
        (of ``task``, where known: an unknown task counts as none)."""
        q, c, _ = self.estimate_cluster(text, task)
        return q, c

    def estimate_cluster(self, text: str, task: str | None = None) -> tuple[np.ndarray, np.ndarray, int | None]:
        """:meth:`estimate`, and the prompt's cluster (the nearest centroid; None without clusters),
        from the same features."""
        idx, val = self.vectorizer.transform_one(text)
        m = len(self.models)
        if self._all is None:
            z, cz, cluster = val @ self.weights[idx] + self.bias, None, None
        else:
            out = val @ self._all[idx]
            z = out[:m] + self.bias
            cz = out[m:2 * m] if self.cost_weights is not None else None
            # nearest centroid: the least |c|² − 2 x·c (|x|² is the same for every centroid)
            cluster = None if self._centroid_sq is None else int(np.argmin(self._centroid_sq - 2.0 * out[-self.clusters:]))
        row = self._task_row.get(task)  # type: ignore[arg-type]
        if row is not None:
            z = z + self.task_weights[row]  # type: ignore[index]
        q = 1.0 / (1.0 + np.exp(-z))
        if cz is None:
            return q, self.cost_per_call, cluster
        return q, self.cost_per_call * np.exp(cz + self.cost_bias), cluster

    def predict_many(self, texts: Sequence[str], tasks: Sequence[str | None] | None = None) -> np.ndarray:
        """Predicted quality for many prompts, ``(len(texts), n_models)``."""
        return self.estimate_many(texts, tasks)[0]

    def estimate_many(self, texts: Sequence[str], tasks: Sequence[str | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Predicted quality and cost for many prompts, each ``(len(texts), n_models)``."""
        q = np.empty((len(texts), len(self.models)))
        c = np.empty_like(q)
        for i, t in enumerate(texts):
            q[i], c[i] = self.estimate(t, tasks[i] if tasks is not None else None)
        return q, c

    # -- file ------------------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        meta = dict(self.meta)
        meta.update(
            format=FORMAT,
            version=VERSION,
            models=self.models,
            features=self.vectorizer.params.to_dict(),
            cost_unit=self.cost_unit,
        )
        m = len(self.models)
        out_tok = self.output_tokens if self.output_tokens is not None else np.full(m, np.nan)
        cw = self.cost_weights if self.cost_weights is not None else np.zeros_like(self.weights)
        cb = self.cost_bias if self.cost_bias is not None else np.zeros(m)
        save_npz(
            path,
            meta,
            dict(
                **self.vectorizer.arrays(),
                weights=self.weights.astype(np.float32),
                bias=self.bias.astype(np.float64),
                cost_per_call=self.cost_per_call.astype(np.float64),
                cost_weights=np.asarray(cw, dtype=np.float32),
                cost_bias=np.asarray(cb, dtype=np.float64),
                output_tokens=out_tok.astype(np.float64),
                tasks=np.frombuffer("\n".join(self.tasks).encode("utf-8"), dtype=np.uint8),
                task_weights=np.asarray(self.task_weights if self.task_weights is not None
                                        else np.zeros((0, m)), dtype=np.float32),
                centroids=np.asarray(self.centroids if self.centroids is not None else np.zeros((0, 0)),
                                     dtype=np.float32),
            ),
        )

    @classmethod
    def load(cls, path: str | Path) -> "Router":
        meta, z = load_npz(path, FORMAT, VERSION, "router", RouterFileError)
        try:
            cw = z["cost_weights"]
            raw = z["tasks"].tobytes().decode("utf-8")
            tasks = raw.split("\n") if raw else []
            tw = z["task_weights"]
            if tw.shape != (len(tasks), len(meta["models"])):
                raise RouterFileError(f"{path}: damaged router file (task weights of shape {tw.shape})")
            return cls(
                models=list(meta["models"]),
                vectorizer=Vectorizer.from_arrays(z, FeatureParams.from_dict(meta["features"])),
                weights=z["weights"],
                bias=z["bias"],
                cost_per_call=z["cost_per_call"],
                cost_unit=meta.get("cost_unit", "usd"),
                output_tokens=z["output_tokens"],
                meta=meta,
                cost_weights=cw if cw.any() else None,
                cost_bias=z["cost_bias"],
                tasks=tasks,
                task_weights=tw if tasks else None,
                centroids=_centroids(path, z.get("centroids"), z["weights"].shape[0]),
            )
        except KeyError as e:
            raise RouterFileError(f"{path}: router file lacks {e}") from None


def _centroids(path, c: np.ndarray | None, features: int) -> np.ndarray | None:
    """A router file's prompt clusters, if it has any (files from before clusters have none)."""
    if c is None or not c.size:
        return None
    if c.ndim != 2 or c.shape[0] != features:
        raise RouterFileError(f"{path}: damaged router file (centroids of shape {c.shape})")
    return c


class Learned(Policy):
    """Route by a trained :class:`Router`'s predicted quality.

    Exactly one of ``min_quality`` (cheapest model predicted to reach it; if none does, the
    model predicted best) or ``tradeoff`` (λ ≥ 0: maximise quality − λ × cost ÷ the dearest
    candidate's expected cost per call). Costs are the router's estimates for the prompt.
    ``costs`` fixes the cost per call of some models (router model names);
    ``use_prices=True`` prices each request from the configured models' prices instead (input
    tokens estimated from the prompt, output tokens from the training data's mean).
    ``aliases`` maps configured model names to the router's names where they differ.
    ``task_tag`` names the request tag that says the prompt's task (see the module's doc).
    """

    def __init__(
        self,
        router: Router,
        *,
        min_quality: float | None = None,
        tradeoff: float | None = None,
        costs: Mapping[str, float] | None = None,
        aliases: Mapping[str, str] | None = None,
        use_prices: bool = False,
        task_tag: str = "task",
    ) -> None:
        if (min_quality is None) == (tradeoff is None):
            raise ValueError("learned policy: give exactly one of min_quality or tradeoff")
        if tradeoff is not None and tradeoff < 0:
            raise ValueError("learned policy: tradeoff must be >= 0")
        self.router = router
        self.min_quality = min_quality
        self.tradeoff = tradeoff
        self.pacer = None  # a route's budget pacing, when it has one: it sets tradeoff
        self.use_prices = use_prices
        self.task_tag = task_tag
        cost = np.array(router.cost_per_call, dtype=np.float64)
        self._fixed = np.zeros(len(cost), dtype=bool)  # costs given: not estimated per prompt
        for name, c in (costs or {}).items():
            if name not in router.models:
                raise ValueError(f"learned policy: cost given for '{name}', which the router does not know")
            cost[router.models.index(name)] = c
            self._fixed[router.models.index(name)] = True
        if np.isnan(cost).any():
            missing = [m for m, c in zip(router.models, cost) if math.isnan(c)]
            raise ValueError(f"learned policy: no expected cost for {', '.join(missing)}")
        self.cost = cost
        # configured name -> router column; by default the names are the same.
        alias = dict(aliases or {})
        self._column = {alias.get(m, m): j for j, m in enumerate(router.models)}
        for cfg, rname in alias.items():
            if rname not in router.models:
                raise ValueError(f"learned policy: alias '{cfg}' -> '{rname}', which the router does not know")
            self._column[cfg] = router.models.index(rname)
        self._names = [""] * len(router.models)
        for name, j in self._column.items():
            if not self._names[j] or name in alias:
                self._names[j] = name

    @staticmethod
    def prices_needed(router: Router, costs: str | None, aliases: Mapping[str, str]) -> bool:
        """Whether a route prices each request from the configured prices (``costs: prices``)
        rather than by the router's per-prompt cost estimates (``costs: router``). Unset: the
        router's, as ``switchman eval`` measures them, when it learned costs in USD and every model
        goes by the router's own name; else the prices (an alias is another model, or the same
        one at another price)."""
        if costs is not None:
            return costs == "prices"
        return router.cost_unit != "usd" or bool(aliases)

    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan:
        if self.pacer is not None:  # budget pacing steers the price of cost (routing/pacing.py)
            self.tradeoff = self.pacer.tradeoff()
        task = request_task(req, self.task_tag)
        q, est = self.router.estimate(prompt_text(req), task)
        plan = self._plan(req, ctx, q, est)
        if self.pacer is not None:
            plan = replace(plan, reason=f"{plan.reason}; {self.pacer.reason()}")
        if task is None:
            return plan
        said = f",task={task}" if self.router.knows(task) else f",task={task}(unknown)"
        return replace(plan, reason=plan.reason + said)

    def _plan(self, req: ChatRequest, ctx: RouteContext, q: np.ndarray, est: np.ndarray) -> Plan:
        if ctx.models:
            cols, names = [], []
            for name, j in self._column.items():
                if name in ctx.models and j not in cols:
                    cols.append(j)
                    names.append(name)
        else:
            cols = list(range(len(self.router.models)))
            names = self._names
        if self.use_prices and ctx.models:
            cost = self._priced(req, ctx)
            return self.decide(q, cost, cols, names, scale=float(cost[cols].max()) if cols else 1.0)
        return self.decide(q, self.prompt_costs(est), cols, names)

    def prompt_costs(self, estimated: np.ndarray) -> np.ndarray:
        """Each model's cost for a prompt: the router's estimate, or the cost given for it."""
        return np.where(self._fixed, self.cost, estimated)

    def _priced(self, req: ChatRequest, ctx: RouteContext) -> np.ndarray:
        cost = self.cost.copy()
        est_in = req.text_chars() // 4  # ~4 characters a token: enough to rank models by price
        out = self.router.output_tokens
        for name, j in self._column.items():
            spec = ctx.models.get(name)
            if spec is None:
                continue
            o = out[j] if out is not None and not math.isnan(out[j]) else 256
            cost[j] = float(spec.price.cost(est_in, int(o)))
        return cost

    def decide(self, q: np.ndarray, cost: np.ndarray, cols: Sequence[int], names: Sequence[str], scale: float | None = None) -> Plan:
        """The choice itself, given predicted qualities and this prompt's costs: shared by
        :meth:`plan` and the offline evaluator (which predicts each prompt once and sweeps the
        settings). ``scale`` is the cost that λ is a share of (default: the dearest
        candidate's expected cost per call)."""
        if not cols:
            return Plan((), "learned:no-candidates")
        qc = q[cols]
        cc = cost[cols]
        if self.min_quality is not None:
            t = self.min_quality
            ok = np.flatnonzero(qc >= t)
            if len(ok):
                # cheapest of those predicted to meet the bar; ties go to the better one
                k = int(ok[np.lexsort((-qc[ok], cc[ok]))[0]])
                reason = f"learned:q={qc[k]:.2f}>={t:.2f}"
            else:
                k = int(np.argmax(qc))
                reason = f"learned:q={qc[k]:.2f}<{t:.2f},best"
        else:
            top = scale if scale is not None else float(self.cost[cols].max())
            score = qc - self.tradeoff * cc / (top or 1.0)
            k = int(np.argmax(score))
            reason = f"learned:q={qc[k]:.2f},tradeoff={self.tradeoff:g}"
        rest = sorted((i for i in range(len(cols)) if i != k), key=lambda i: -qc[i])
        return Plan(tuple(names[i] for i in (k, *rest)), reason)
