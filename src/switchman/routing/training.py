"""Training a :class:`~.learned.Router` from outcome data (needs the ``[eval]`` extra).

One logistic regression per model on the prompt's features (TF-IDF and shape) predicts the
chance that the model's answer is good. Fractional qualities (0..1 scores rather than
correct/incorrect) are learned as weighted positive and negative copies of the prompt, so the fit
still estimates expected quality. Where a model's recorded cost varies between prompts, a ridge
regression on the same features learns the log of its cost relative to its mean.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..outcomes import OutcomeTable
from .features import FeatureParams, Vectorizer
from .learned import Router


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says how to get it."""


@dataclass(frozen=True, slots=True)
class TrainParams:
    features: FeatureParams = FeatureParams()
    max_features: int = 50_000
    min_df: int = 2
    c: float = 0.3  # inverse L2 strength of each logistic regression (best AIQ of 0.1/0.3/1 on routerbench)
    cost_alpha: float = 1.0  # L2 strength of each cost regression


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
    q = table.quality[ix]
    m = len(table.models)
    weights = np.zeros((max(len(vec), 1), m), dtype=np.float32)
    bias = np.zeros(m)
    for j in range(m):
        y = q[:, j]
        mean = float(y.mean())
        if mean <= 0.0 or mean >= 1.0 or len(vec) == 0:
            # one class only: nothing to learn beyond the rate itself
            p = min(max(mean, 1e-3), 1 - 1e-3)
            bias[j] = math.log(p / (1 - p))
            continue
        frac = (y > 0) & (y < 1)
        if frac.any():
            xx = sp.vstack([x, x])
            yy = np.r_[np.ones(len(y)), np.zeros(len(y))]
            ww = np.r_[y, 1.0 - y]
        else:
            xx, yy, ww = x, (y >= 0.5).astype(np.int64), None
        lr = LogisticRegression(C=params.c, max_iter=1000, solver="liblinear")
        lr.fit(xx, yy, sample_weight=ww)
        weights[:, j] = lr.coef_[0]
        bias[j] = float(lr.intercept_[0])
    out_tok = np.nanmean(table.output_tokens[ix], axis=0) if not np.isnan(table.output_tokens[ix]).all() else None
    cost_weights, cost_bias = _cost_models(x, cost[ix], params.cost_alpha)
    tasks = sorted({t for t in (table.prompts[i].task for i in ix) if t})
    meta = {
        "trained_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "sources": list(sources),
        "prompts": int(len(ix)),
        "tasks": tasks[:50],
        "c": params.c,
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
    )
