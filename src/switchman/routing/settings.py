"""The keys of the policies that route on live state (``least-latency``, ``least-busy``,
``bandit``), parsed for the config file (``po``: its mapping reader; ``error(path, message)``
raises a config error naming the file, line and key)."""

from __future__ import annotations

from typing import Any

from ..config import PolicySpec


def live(po, path: str, kind: str, error) -> tuple:
    """``least-latency`` / ``least-busy``: ``models`` a list, or a mapping of model to weight."""
    raw = po.v.get("models")
    if isinstance(raw, dict):
        for m, w in raw.items():
            if isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0:
                raise error(f"{path}.models.{m}", "weights must be numbers above 0")
        models, weights = tuple(raw), tuple((m, float(w)) for m, w in raw.items())
    else:
        models, weights = po.names("models"), ()
    if not models:
        raise error(f"{path}.models", "needs at least one model")
    spec: dict[str, Any] = {"kind": kind, "models": models, "weights": weights}
    if kind == "least-latency":
        spec["tolerance"] = po.get("tolerance", float, 0.2)
        if spec["tolerance"] < 0:
            raise error(f"{path}.tolerance", "must be 0 or more")
        spec["explore"] = _share(po, error, "explore")
        spec["explore"] = 0.05 if spec["explore"] is None else spec["explore"]
        spec["stale"] = po.positive("stale", float, 60.0)
    return kind, models, (), PolicySpec(**spec)


def bandit(po, path: str, error) -> tuple:
    """``bandit``: models, priors (``quality``), ``tradeoff`` (λ per USD), ``explore``, ``prior``
    (the weight of a prior, in observations), ``context_tag``, ``router`` (per-prompt priors), ``seed`` (of the draws)."""
    models = po.names("models")
    if len(models) < 2:
        raise error(f"{path}.models", "a bandit needs at least two models to choose between")
    q = po.get("quality", dict, {})
    for m, x in q.items():
        if m not in models:
            raise error(f"{path}.quality.{m}", f"'{m}' is not one of this policy's models")
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 1:
            raise error(f"{path}.quality.{m}", "must be an expected quality between 0 and 1")
    tradeoff = po.get("tradeoff", float, 0.0)
    if tradeoff < 0:
        raise error(f"{path}.tradeoff", "must be 0 or more (quality given up per USD)")
    explore = _share(po, error, "explore")
    context = po.get("context", str)
    if context is not None:
        if context != "cluster":
            raise error(f"{path}.context", f"must be cluster (learn per prompt cluster), not '{context}'; "
                                           "to learn per value of a request tag use context_tag")
        if po.get("context_tag", str) is not None:
            raise error(f"{path}.context", "give context: cluster or context_tag, not both")
        if po.get("router", str) is None:
            raise error(f"{path}.context", "context: cluster needs router: (a file from switchman train --clusters K)")
    return "bandit", models, (), PolicySpec(
        "bandit", models, tradeoff=tradeoff, quality=tuple((m, float(x)) for m, x in q.items()),
        explore=0.05 if explore is None else explore, prior=po.positive("prior", float, 10.0),
        context_tag=po.get("context_tag", str), context=context, router=po.get("router", str),
        seed=po.get("seed", int))


def _share(po, error, key: str) -> float | None:
    v = po.get(key, float)
    if v is not None and not 0 <= v <= 1:
        raise error(po.sub(key), "must be between 0 and 1")
    return v
