"""Training a :class:`~.learned.Router` or an :class:`~.scorer.AnswerScorer` from outcome data
(needs the ``[eval]`` extra).

One logistic regression per model on the prompt's features (TF-IDF and shape) predicts the
chance that the model's answer is good. Fractional qualities (0..1 scores rather than
correct/incorrect) are learned as weighted positive and negative copies of the prompt, so the fit
still estimates expected quality. Where a model's recorded cost varies between prompts, a ridge
regression on the same features learns the log of its cost relative to its mean.

Where the data names prompts' tasks, each task is one more feature (a one-hot column of weight
``task_scale``) in the quality regressions, stored apart as the router's task weights. Each
prompt is seen twice, once with its task and once without, so that the text's weights still
predict on their own for a request that names no task, or a task unseen in training (on MMLU in
5-fold CV, ranking every prompt: CPT(50%) 24.5% with the task, 27.0% without it; 26.3% for a
router trained on text alone). Each copy weighs half, so the regularisation is that of one copy.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..outcomes import DataError, OutcomeTable
from .features import FeatureParams, Vectorizer
from .learned import Router
from .scorer import FLAGS, AnswerScorer, flags as answer_flags


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says how to get it."""


@dataclass(frozen=True, slots=True)
class TrainParams:
    features: FeatureParams = FeatureParams()
    max_features: int = 50_000
    min_df: int = 2
    c: float = 0.3  # inverse L2 strength of each logistic regression (best AIQ of 0.1/0.3/1 on routerbench)
    cost_alpha: float = 1.0  # L2 strength of each cost regression
    task_scale: float = 1.0  # value of the task's one-hot column (0 = learn nothing per task)
    clusters: int = 0  # k-means clusters of the prompts, for a bandit per cluster (0 = none)


def _sklearn():
    try:
        import scipy.sparse as sp
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise MissingExtra("training a router needs scikit-learn: pip install 'switchman[eval]'") from None
    return sp, LogisticRegression


def _cost_models(x, cost: np.ndarray, alpha: float) -> tuple[np.ndarray | None, np.ndarray]:
    """Per model, log(cost ÷ mean cost) as a linear function of the features; a model whose
    cost never varies (or is ever zero, as in strong-model-call counting) keeps its mean."""
    from sklearn.linear_model import Ridge

    n, m = cost.shape
    weights = np.zeros((x.shape[1], m), dtype=np.float32)
    bias = np.zeros(m)
    for j in range(m):
        c = cost[:, j]
        if n < 2 or not (c > 0).all() or np.ptp(c) <= 1e-9 * c.mean():
            continue
        fit = Ridge(alpha=alpha).fit(x, np.log(c / c.mean()))
        weights[:, j] = fit.coef_
        bias[j] = float(fit.intercept_)
    return (weights if weights.any() else None), bias


def train_router(
    table: OutcomeTable,
    cost: np.ndarray,
    *,
    cost_unit: str = "usd",
    rows: Sequence[int] | None = None,
    params: TrainParams = TrainParams(),
    sources: Sequence[str] = (),
) -> Router:
    """Fit a router on ``table`` (only ``rows``, if given). ``cost`` is the full cost matrix
    from :func:`switchman.outcomes.resolve_costs`; each model's mean over the rows becomes its
    expected cost per call."""
    sp, LogisticRegression = _sklearn()
    ix = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    texts = [table.prompts[i].text for i in ix]
    vec = Vectorizer.fit(texts, params.features, max_features=params.max_features, min_df=params.min_df)
    indptr, indices, data = vec.transform_csr(texts)
    x = sp.csr_matrix((data, indices, indptr), shape=(len(texts), max(len(vec), 1)))
    named = [table.prompts[i].task for i in ix]
    tasks = sorted({t for t in named if t}) if params.task_scale > 0 else []
    xq = x  # the quality regressions' design: the prompt's features, then its task
    if tasks:
        row = {t: k for k, t in enumerate(tasks)}
        has = [r for r, t in enumerate(named) if t]
        onehot = sp.csr_matrix((np.full(len(has), params.task_scale), (has, [row[named[r]] for r in has])),
                               shape=(len(ix), len(tasks)))
        # with and without the task (see the module's doc): the rows are x twice over
        xq = sp.vstack([sp.hstack([x, onehot]), sp.hstack([x, sp.csr_matrix(onehot.shape)])]).tocsr()
    task_weights = np.zeros((len(tasks), len(table.models)), dtype=np.float32)
    q = table.quality[ix]
    m = len(table.models)
    weights = np.zeros((max(len(vec), 1), m), dtype=np.float32)
    bias = np.zeros(m)
    copies = xq.shape[0] // max(len(ix), 1)  # 2 where the task is learned, else 1
    for j in range(m):
        y = q[:, j]
        mean = float(y.mean())
        if mean <= 0.0 or mean >= 1.0 or len(vec) == 0:
            # one class only: nothing to learn beyond the rate itself
            p = min(max(mean, 1e-3), 1 - 1e-3)
            bias[j] = math.log(p / (1 - p))
            continue
        # each copy weighs 1/copies: the same regularisation as one copy (weaker overfits, and
        # the text's weights then carry less to tasks never seen)
        y = np.tile(y, copies)
        frac = (y > 0) & (y < 1)
        if frac.any():
            xx = sp.vstack([xq, xq])
            yy = np.r_[np.ones(len(y)), np.zeros(len(y))]
            ww = np.r_[y, 1.0 - y] / copies
        else:
            xx, yy, ww = xq, (y >= 0.5).astype(np.int64), np.full(len(y), 1.0 / copies)
        lr = LogisticRegression(C=params.c, max_iter=1000, solver="liblinear")
        lr.fit(xx, yy, sample_weight=ww)
        weights[:, j] = lr.coef_[0][: weights.shape[0]]
        task_weights[:, j] = lr.coef_[0][weights.shape[0]:] * params.task_scale
        bias[j] = float(lr.intercept_[0])
    out_tok = np.nanmean(table.output_tokens[ix], axis=0) if not np.isnan(table.output_tokens[ix]).all() else None
    cost_weights, cost_bias = _cost_models(x, cost[ix], params.cost_alpha)
    centroids = None
    if params.clusters:
        from sklearn.cluster import KMeans

        k = min(params.clusters, len(ix))
        km = KMeans(n_clusters=k, n_init=3, random_state=0).fit(x)
        centroids = km.cluster_centers_.T.astype(np.float32)  # (features, k)
    meta = {
        "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sources": list(sources),
        "prompts": int(len(ix)),
        "tasks": tasks[:50] if tasks else sorted({t for t in named if t})[:50],
        "c": params.c,
        "task_scale": params.task_scale,
        "clusters": params.clusters,
        "train_quality": [float(v) for v in q.mean(axis=0)],
    }
    return Router(
        models=list(table.models),
        vectorizer=vec,
        weights=weights,
        bias=bias,
        cost_per_call=cost[ix].mean(axis=0),
        cost_unit=cost_unit,
        output_tokens=out_tok,
        meta=meta,
        cost_weights=cost_weights,
        cost_bias=cost_bias,
        tasks=tasks,
        task_weights=task_weights if tasks else None,
        centroids=centroids,
    )


@dataclass(frozen=True, slots=True)
class ScorerParams:
    features: FeatureParams = FeatureParams(shape_scale=0.0)  # shapes: no better in CV on routerbench
    max_features: int = 20_000  # for the prompts' and the answers' vocabulary each
    c: float = 0.3
    max_earlier: int = 3  # a gateway cascade is short: agreement is learned with at most this many earlier answers
    seed: int = 0


def train_scorer(
    table: OutcomeTable,
    cost: np.ndarray,
    *,
    rows: Sequence[int] | None = None,
    models: Sequence[str] | None = None,
    params: ScorerParams = ScorerParams(),
    sources: Sequence[str] = (),
) -> AnswerScorer:
    """Fit an :class:`~.scorer.AnswerScorer` on the recorded answers of ``models`` (a cascade's
    chain, cheapest first; default every model, ordered by mean cost) to ``rows`` (default
    all). Each answer is seen beside the answers of up to ``max_earlier`` models before it, as
    a cheapest-first cascade would have bought them; answers the data did not keep are left
    out."""
    sp, LogisticRegression = _sklearn()
    if table.responses is None:
        raise DataError("the data keeps no responses: an answer scorer learns from the models' answers")
    ix = np.arange(len(table)) if rows is None else np.asarray(rows, dtype=np.int64)
    names = list(models) if models is not None else list(table.models)
    cols = [table.models.index(m) for m in names]
    if models is None:
        mean_cost = cost[ix].mean(axis=0)
        cols.sort(key=lambda j: mean_cost[j])
    resp = table.responses
    pairs = [(r, k) for r, i in enumerate(ix) for k, j in enumerate(cols) if resp[i][j] is not None]
    if not pairs:
        raise DataError("no recorded responses of " + ", ".join(names))
    fp = params.features
    pvec = Vectorizer.fit([table.prompts[i].text for i in ix], fp, max_features=params.max_features)
    rvec = Vectorizer.fit([resp[ix[r]][cols[k]] for r, k in pairs], fp, max_features=params.max_features)
    rng = np.random.default_rng(params.seed)

    def block(vec, texts):
        a, b, d = vec.transform_csr(texts)
        return sp.csr_matrix((d, b, a), shape=(len(texts), max(len(vec), 1)))[:, : len(vec)]

    xp = block(pvec, [table.prompts[i].text for i in ix])[[r for r, _ in pairs]]
    xa = block(rvec, [resp[ix[r]][cols[k]] for r, k in pairs])
    flags = np.empty((len(pairs), len(FLAGS)))
    for n, (r, k) in enumerate(pairs):
        i = ix[r]
        before = [e for e in range(k) if resp[i][cols[e]] is not None]
        if len(before) > params.max_earlier:
            before = sorted(rng.choice(before, params.max_earlier, replace=False))
        flags[n] = answer_flags(resp[i][cols[k]], [resp[i][cols[e]] for e in before])
    x = sp.hstack([xp, xa, sp.csr_matrix(flags)]).tocsr()
    y = np.array([table.quality[ix[r], cols[k]] >= 0.5 for r, k in pairs], dtype=np.int64)
    which = np.array([k for _, k in pairs])
    weights = np.zeros((x.shape[1], len(cols) + 1), dtype=np.float32)
    bias = np.zeros(len(cols) + 1)
    for k in range(len(cols) + 1):
        sel = which == k if k < len(cols) else np.ones(len(pairs), dtype=bool)  # the last: every model
        yk = y[sel]
        if not len(yk) or yk.min() == yk.max():
            p = min(max(float(yk.mean()) if len(yk) else 0.5, 1e-3), 1 - 1e-3)
            bias[k] = math.log(p / (1 - p))
            continue
        lr = LogisticRegression(C=params.c, max_iter=1000, solver="liblinear").fit(x[sel], yk)
        weights[:, k] = lr.coef_[0]
        bias[k] = float(lr.intercept_[0])
    scorer = AnswerScorer(pvec, rvec, weights, bias, [table.models[j] for j in cols])
    scorer.meta = {
        "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sources": list(sources),
        "prompts": int(len(ix)),
        "answers": len(pairs),
        "c": params.c,
        "max_earlier": params.max_earlier,
        "train_accuracy": float(y.mean()),
    }
    return scorer
