"""``switchman eval`` and ``switchman train``: argument parsing and the run, for the CLI.

Exit codes follow the CLI's: 0 success, 1 runtime failure, 2 usage or data error.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import orjson

from ..outcomes import DataError, OutcomeTable, load_table, resolve_costs
from ..routing.files import ModelFileError
from ..routing.learned import Router

STRATEGIES = ("learned", "learned-minq", "cascade", "hybrid", "plans")


class UsageError(Exception):
    pass


class Progress:
    """A one-line progress indicator on stderr, shown only when stderr is a terminal."""

    def __init__(self, total: int, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.on = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.total = max(total, 1)
        self.done = 0
        self.t0 = time.monotonic()

    def __call__(self, what: str) -> None:
        self.done += 1
        if self.on:
            k = min(self.done, self.total)
            bar = "#" * (20 * k // self.total)
            self.stream.write(f"\r[{bar:<20}] {k}/{self.total} {time.monotonic() - self.t0:5.1f}s {what[:50]:<50}")
            self.stream.flush()

    def close(self) -> None:
        if self.on:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()


def _costs(items: Sequence[str]) -> dict[str, float]:
    out = {}
    for it in items:
        name, sep, val = it.rpartition("=")
        try:
            out[name] = float(val)
        except ValueError:
            name = ""
        if not sep or not name:
            raise UsageError(f"--cost wants MODEL=USD_PER_CALL, got '{it}'")
    return out


def _volume(s: str | None) -> float | None:
    if s is None:
        return None
    v = s.removesuffix("/day")
    try:
        x = float(v)
    except ValueError:
        raise UsageError(f"--volume wants prompts per day, e.g. 10000 or 10000/day, got '{s}'") from None
    if x <= 0:
        raise UsageError("--volume must be positive")
    return x


def _load(args, known: Sequence[str] | None = None) -> OutcomeTable:
    table = load_table(args.data, known_models=known, on_incomplete="fail" if args.strict else "drop")
    if args.task:
        keep = [i for i, p in enumerate(table.prompts) if p.task and any(p.task.startswith(t) for t in args.task)]
        if not keep:
            raise DataError(f"no prompt's task starts with {' or '.join(args.task)}")
        dropped = table.dropped
        table = table.subset(keep)
        table.dropped = dropped
    return table


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", required=True, metavar="FILE", help="outcome data: .jsonl[.gz], .csv[.gz] or .parquet")
    p.add_argument("--task", action="append", default=[], metavar="PREFIX", help="only prompts whose task starts with PREFIX (repeatable)")
    p.add_argument("--cost", action="append", default=[], metavar="MODEL=USD", help="a model's cost per call, replacing the data's")
    p.add_argument("--strict", action="store_true", help="fail on prompts lacking some model's outcome instead of dropping them")
    p.add_argument("--c", type=float, default=0.3, help="the logistic regressions' inverse regularisation strength (default 0.3)")
    p.add_argument("--max-features", type=int, help="vocabulary size (default 50000 for a router; 20000 each for an answer scorer's prompts and answers)")


def _trainer(args, sources):
    from ..routing.training import TrainParams, train_router

    params = TrainParams(c=args.c, max_features=args.max_features or TrainParams().max_features)

    def train(fold):
        return train_router(fold.table, fold.cost, cost_unit=fold.cost_unit, rows=fold.train, params=params, sources=sources)

    return train


def _run_guarded(fn, argv) -> int:
    from ..routing.training import MissingExtra

    try:
        return fn(argv)
    except (UsageError, DataError, ModelFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except MissingExtra as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1


# ---------------------------------------------------------------------------------------------


def train_main(argv: list[str]) -> int:
    """``switchman train --data FILE... [--scorer] --out FILE``."""
    return _run_guarded(_train, argv)


def _train(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="switchman train",
        description="Fit a learned router (default) or, with --scorer, a cascade's answer scorer from outcome data.",
    )
    _common(p)
    p.add_argument("--out", required=True, metavar="FILE", help="the router (or scorer) file to write (.npz)")
    p.add_argument("--split", choices=("train", "all"), default="train", help="learn from the train split only (default, when the data has one) or from every prompt")
    p.add_argument("--scorer", action="store_true", help="fit an answer scorer for the cascade (needs data with responses) instead of a router")
    args = p.parse_args(argv)
    out_dir = Path(args.out).resolve().parent
    if not out_dir.is_dir():  # before minutes of training, not after
        raise UsageError(f"--out {args.out}: the directory {out_dir} does not exist")
    from ..routing.training import ScorerParams, TrainParams, train_router, train_scorer

    table = _load(args)
    cost, unit, notes = resolve_costs(table, _costs(args.cost))
    rows = table.split_indices("train") if args.split == "train" else []
    if not rows:
        rows = list(range(len(table)))
    for line in table.dropped.lines() + notes:
        print(f"note: {line}", file=sys.stderr)
    t0 = time.monotonic()
    sources = [str(d) for d in args.data]
    if args.scorer:
        scorer = train_scorer(table, cost, rows=rows, params=ScorerParams(c=args.c, max_features=args.max_features or ScorerParams().max_features), sources=sources)
        scorer.save(args.out)
        print(
            f"trained an answer scorer on {scorer.meta['answers']} answers to {len(rows)} prompts by {len(scorer.models)} models "
            f"in {time.monotonic() - t0:.1f}s; wrote {args.out}"
        )
        return 0
    router = train_router(
        table, cost, cost_unit=unit, rows=rows, params=TrainParams(c=args.c, max_features=args.max_features or TrainParams().max_features), sources=sources
    )
    router.save(args.out)
    print(
        f"trained on {len(rows)} prompts × {len(table.models)} models in {time.monotonic() - t0:.1f}s; "
        f"{len(router.vectorizer)} features; wrote {args.out}"
    )
    if router.tasks:
        shown = ", ".join(router.tasks[:5]) + (f" and {len(router.tasks) - 5} more" if len(router.tasks) > 5 else "")
        print(f"learned per task too ({shown}): tag requests x-switchman-tags: task=NAME to use it")
    return 0


def eval_main(argv: list[str]) -> int:
    """``switchman eval --data FILE... [--router ROUTER] [--strategy ...] [--volume N/day]
    [--target X] --out DIR``."""
    return _run_guarded(_eval, argv)


def _eval(argv: list[str]) -> int:
    from . import report, strategies as st
    from .replay import make_folds, run_all
    from .summary import Options, summarise

    p = argparse.ArgumentParser(prog="switchman eval", description="Replay outcome data through routing strategies.")
    _common(p)
    p.add_argument("--router", metavar="ROUTER", help="a trained router file (else one is trained per fold)")
    p.add_argument("--strategy", action="append", default=[], help=f"strategies besides the baselines: {', '.join(STRATEGIES)} (default: learned, learned-minq)")
    p.add_argument("--volume", metavar="N/day", help="prompts per day, for the monthly spend projection")
    p.add_argument("--target", type=float, default=0.95, help="share of the best single model's quality to hold (default 0.95)")
    p.add_argument("--folds", type=int, default=5, help="k for cross-validation when the data has no split (default 5)")
    p.add_argument("--bootstrap", type=int, default=500, help="bootstrap resamples for the intervals (default 500; 0 = none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-decisions", action="store_true", help="skip decisions.jsonl (large for big sets)")
    p.add_argument("--out", required=True, metavar="DIR")
    args = p.parse_args(argv)
    if not 0 < args.target <= 1:
        raise UsageError("--target is a share of the best single model's quality, in (0, 1]")
    wanted = [s for item in args.strategy for s in item.split(",") if s] or ["learned", "learned-minq"]
    for s in wanted:
        if s not in STRATEGIES:
            raise UsageError(f"unknown strategy '{s}' (known: {', '.join(STRATEGIES)})")
    volume = _volume(args.volume)

    router = Router.load(args.router) if args.router else None
    table = _load(args, known=router.models if router else None)
    if router is not None:
        lacking = [m for m in router.models if m not in table.models]
        if lacking:
            raise DataError(f"the data has no outcomes for the router's model(s) {', '.join(lacking)}")
    cost, unit, notes = resolve_costs(table, _costs(args.cost))
    notes = table.dropped.lines() + notes
    if router is not None:
        folds, how = make_folds(table, cost, unit, k=args.folds, seed=args.seed)
        if len(folds) > 1:
            # a given router is evaluated once, on every prompt; it may have seen them in training
            folds = [type(folds[0])(table, cost, unit, np.zeros(0, dtype=np.int64), np.arange(len(table)), folds[0].replay, args.seed)]
            how = f"all {len(table)} prompts with the given router (no split in the data: it may have trained on them)"
        else:
            how = f"test split ({len(folds[0].test)}) with the given router"
        # the baselines still learn their choices from the train prompts where there are some
        if not len(folds[0].train):
            folds[0].train = folds[0].test
            notes.append("no train split: baselines chose their models on the evaluated prompts themselves")
    else:
        folds, how = make_folds(table, cost, unit, k=args.folds, seed=args.seed)
    notes.insert(0, f"evaluated on: {how}")

    strategies: list = [st.Single(m) for m in table.models]
    strategies += [st.BestSingle(), st.CheapestMeeting((0.90, 0.95, 0.99)), st.PerTask(), st.RandomMix(), st.Oracle()]
    train = None if router is not None else _trainer(args, [str(d) for d in args.data])
    learned = None
    for s in wanted:
        if s in ("learned", "learned-minq"):
            strat = st.LearnedStrategy(s, "tradeoff" if s == "learned" else "min_quality", router=router, train=train)
            if learned is None:
                learned = strat
            else:
                learned.share_cache(strat)
            strategies.append(strat)
        elif s == "plans":
            from .plans import PlansStrategy

            if table.responses is None:
                notes.append("plans skipped: the data keeps no responses to compare")
                continue
            strategies.append(PlansStrategy())
        elif s in ("cascade", "hybrid"):
            from .cascade import CascadeStrategy, HybridStrategy

            if table.responses is None:
                notes.append(f"{s} skipped: the data keeps no responses to train its answer scorer on")
                continue
            if s == "cascade":
                strategies.append(CascadeStrategy())
                continue
            if learned is None:  # the hybrid's start: the same routers the learned strategies use
                learned = st.LearnedStrategy("learned", "tradeoff", router=router, train=train)
            strategies.append(HybridStrategy(lambda fold, learned=learned: learned.predictions(fold)[0]))

    prog = Progress(len(strategies) * len(folds))
    t0 = time.monotonic()
    try:
        idx, results = run_all(strategies, folds, progress=prog)
    finally:
        prog.close()
    opts = Options(target=args.target, volume_per_day=volume, bootstrap=args.bootstrap, seed=args.seed)
    summary = summarise(results, table.models, unit, opts, latency=table.latency_ms[idx])
    for s in strategies:
        if getattr(s, "chosen", None):  # plans: say which plan each task got at the point shown
            entry = next(x for x in summary["strategies"] if x["name"] == s.name)
            label = entry["chosen"]["point"]
            entry["plans"] = s.chosen[label]
            first = s.chosen[label][0]
            notes.append(f"{s.name} at {label}" + (" (first fold)" if len(folds) > 1 else "") + ": "
                         + "; ".join(f"{u or '(no task)'} → {plan}" for u, plan in sorted(first.items())))
    summary["notes"] = notes
    summary["data"] = [str(d) for d in args.data]
    summary["seconds"] = round(time.monotonic() - t0, 1)
    if learned is not None and learned.cached_router() is not None:
        summary["decision_ms_p50"] = _decision_p50(learned.cached_router(), folds[0], table)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    if not args.no_decisions:
        report.write_decisions(out / "decisions.jsonl", table, idx, results)
    png = "cost_quality.png" if report.plot(out / "cost_quality.png", summary) else None
    if png is None:
        notes.append("no plot: matplotlib is missing (pip install 'switchman[eval]')")
    command = "switchman eval " + shlex.join(argv)
    report.write_html(out / "report.html", summary, png, notes, command)
    for line in notes:
        print(f"note: {line}")
    print(report.table_text(summary))
    if "decision_ms_p50" in summary:
        print(f"learned decision p50: {summary['decision_ms_p50']:.3f} ms (featurise, predict, choose; one prompt at a time)")
    print(f"wrote {out}/summary.json, report.html" + ("" if args.no_decisions else ", decisions.jsonl") + (f", {png}" if png else ""))
    return 0


def _decision_p50(router: Router, fold, table: OutcomeTable) -> float:
    """Time the gateway's path, ``Learned.plan``, on up to 300 test prompts."""
    from ..routing.base import RouteContext
    from ..routing.learned import Learned
    from .replay import request_for

    pol = Learned(router, tradeoff=0.1)
    ctx = RouteContext({})
    reqs = [request_for(table.prompts[i]) for i in fold.test[:300]]
    times = []
    for req in reqs:
        t = time.perf_counter()
        pol.plan(req, ctx)
        times.append(time.perf_counter() - t)
    return round(float(np.median(times)) * 1000, 4)
