"""From replayed decisions to the figures: quality and cost per strategy and point with
bootstrap intervals, cost to reach 90/95/99% of the best single model, AIQ, APGR and CPT for
two-model pools, and monthly spend before and after at a given volume."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import metrics
from .replay import Result

REACH = (0.90, 0.95, 0.99)


@dataclass(slots=True)
class Options:
    target: float = 0.95  # the share of the best single model's quality to hold
    volume_per_day: float | None = None
    bootstrap: int = 500
    seed: int = 0


def _r(x: float, nd: int = 6):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), nd)


def summarise(results: Sequence[Result], models: Sequence[str], cost_unit: str, opts: Options, latency: np.ndarray | None = None) -> dict:
    """Everything ``summary.json`` holds, as plain data. ``latency`` (evaluated prompts ×
    models, ms, NaN = unknown) adds each point's mean latency: the sum over the models called,
    since a cascade calls them one after another."""
    if latency is not None and np.isnan(latency).all():
        latency = None
    singles = [r for r in results if r.kind == "single"]
    best = max(singles, key=lambda r: (r.quality[0].mean(), -r.cost[0].sum()))
    q_ref, c_ref = float(best.quality[0].mean()), float(best.cost[0].sum())
    n = best.quality.shape[1]
    # every point of every strategy, for bootstrap in one matrix product
    allq = np.concatenate([r.quality for r in results])
    allc = np.concatenate([r.cost for r in results])
    w = metrics.bootstrap_weights(n, opts.bootstrap, opts.seed) if opts.bootstrap else None
    bq = (allq @ w.T) / n if w is not None else None  # (points, B) mean quality
    bc = allc @ w.T if w is not None else None  # (points, B) total cost
    max_cost = float(allc.sum(axis=1).max())
    bmax = bc.max(axis=0) if bc is not None else None
    two = len(models) == 2
    if two:
        strong_j = models.index(best.name.split(":", 1)[1])
        weak_j = 1 - strong_j
        q_strong = q_ref
        q_weak = float(next(r for r in singles if r.name == f"single:{models[weak_j]}").quality[0].mean())
    out_strats = []
    row = 0
    aiq_boot: dict[str, np.ndarray] = {}
    for r in results:
        pts = []
        for p in range(len(r.labels)):
            q = float(r.quality[p].mean())
            c = float(r.cost[p].sum())
            d = {
                "point": r.labels[p],
                "param": r.params[p],
                "quality": _r(q),
                "cost": _r(c, 8),
                "cost_share": _r(c / c_ref if c_ref else float("nan")),
                "calls_per_prompt": _r(float(r.called[p].sum()) / n, 4),
            }
            if bq is not None:
                d["quality_ci"] = [_r(x) for x in metrics.percentile_ci(bq[row + p])]
                d["cost_ci"] = [_r(x, 8) for x in metrics.percentile_ci(bc[row + p])]
            if latency is not None:
                d["latency_ms"] = _r(float(np.nansum(r.called[p] * np.nan_to_num(latency), axis=1).mean()), 2)
            if two:
                d["strong_share"] = _r(float(r.called[p][:, strong_j].mean()), 4)
            pts.append(d)
        s: dict = {"name": r.name, "kind": r.kind, "tunable": r.tunable, "points": pts}
        curve = [(p["cost"], p["quality"]) for p in pts]
        s["aiq"] = _r(metrics.aiq(curve, max_cost))
        if bq is not None:
            boot = np.array(
                [metrics.aiq(list(zip(bc[row : row + len(pts), b], bq[row : row + len(pts), b])), float(bmax[b])) for b in range(bq.shape[1])]
            )
            aiq_boot[r.name] = boot
            s["aiq_ci"] = [_r(x) for x in metrics.percentile_ci(boot)]
        s["cost_to_reach"] = {f"{int(x * 100)}%": _r(metrics.cost_to_reach(curve, x * q_ref, c_ref)) for x in REACH}
        if two and r.tunable:
            shares = [p["strong_share"] for p in pts]
            quals = [p["quality"] for p in pts]
            s["apgr"] = _r(metrics.apgr(shares, quals, q_weak, q_strong))
            s["cpt"] = {f"{int(x * 100)}%": _r(metrics.cpt(shares, quals, q_weak, q_strong, x)) for x in (0.5, 0.8)}
        # the operating point to deploy: cheapest reaching the target, else the best
        reach = [p for p in pts if p["quality"] >= opts.target * q_ref - 1e-12]
        pick = min(reach, key=lambda p: p["cost"]) if reach else max(pts, key=lambda p: p["quality"])
        s["chosen"] = {"point": pick["point"], "meets_target": bool(reach)}
        out_strats.append(s)
        row += len(pts)
    summary: dict = {
        "prompts": n,
        "models": list(models),
        "cost_unit": cost_unit,
        "reference": {"name": best.name, "quality": _r(q_ref), "cost": _r(c_ref, 8)},
        "target": opts.target,
        "max_cost": _r(max_cost, 8),
        "bootstrap": opts.bootstrap,
        "strategies": out_strats,
    }
    if "per-task" in aiq_boot:
        # is each router's AIQ above the per-task baseline's, resample by resample?
        base = aiq_boot["per-task"]
        summary["aiq_vs_per_task"] = {
            name: {
                "diff": _r(float(np.nanmean(b - base))),
                "ci": [_r(x) for x in metrics.percentile_ci(b - base)],
            }
            for name, b in aiq_boot.items()
            if next(s for s in out_strats if s["name"] == name)["kind"] == "router"
        }
    if opts.volume_per_day:
        summary["monthly"] = _monthly(out_strats, best.name, n, opts.volume_per_day, cost_unit)
    return summary


def _monthly(strats: list[dict], ref: str, n: int, per_day: float, unit: str) -> dict:
    """Spend over 30 days at ``per_day`` prompts, from the mean cost per prompt."""
    month = per_day * 30

    def spend(s: dict) -> float:
        p = next(p for p in s["points"] if p["point"] == s["chosen"]["point"])
        return p["cost"] / n * month

    before = spend(next(s for s in strats if s["name"] == ref))
    after = {s["name"]: {"point": s["chosen"]["point"], "spend": _r(spend(s), 2), "meets_target": s["chosen"]["meets_target"]} for s in strats}
    return {"volume_per_day": per_day, "unit": unit, "before": {"strategy": ref, "spend": _r(before, 2)}, "after": after}
