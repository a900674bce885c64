"""``switchman eval`` and ``switchman train``: argument parsing and the run, for the CLI.

Outcome data comes from files (``--data``), from the traffic a gateway's ledger recorded
(``--from-ledger``, see :mod:`.from_ledger`), or both: the ledger is one more source beside the
files. ``switchman eval --from-ledger SOURCE --export FILE`` writes the ledger's outcome rows in
the outcomes format, to inspect them or to use them as a ``--data`` file later.

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

from ..outcomes import DataError, OutcomeTable, read_outcomes, resolve_costs, to_table
from ..routing.files import ModelFileError
from ..routing.learned import Router
from .from_ledger import LedgerUnavailable

STRATEGIES = ("learned", "learned-minq", "cascade", "hybrid", "plans", "bandit", "bandit-cold")


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


def _check_sources(args) -> None:
    """At least one source; the ledger's options only with a ledger, their dates parsed."""
    if not args.data and not args.from_ledger:
        raise UsageError("give outcome data: --data FILE... and/or --from-ledger SOURCE")
    if not args.from_ledger:
        given = [f"--{n.replace('_', '-')}" for n in _LEDGER_OPTIONS if getattr(args, n) is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only for --from-ledger")
        return
    if args.test_share is not None and not 0 < args.test_share < 1:
        raise UsageError("--test-share is the share of prompts to test on, between 0 and 1 (e.g. 0.3)")
    from ..accounting.dates import parse_when

    now = time.time()
    for name in ("since", "until"):
        if getattr(args, name) is not None:
            try:
                setattr(args, name, parse_when(getattr(args, name), now))
            except ValueError as e:
                raise UsageError(f"--{name}: {e}") from None


def _ledger(args):
    """The ledger's outcomes (:class:`.from_ledger.LedgerOutcomes`), read once per run."""
    if args.ledger_rows is None:
        from . import from_ledger

        args.ledger_rows = from_ledger.load(args.from_ledger, task_tag=args.task_tag, test_share=args.test_share,
                                            since=args.since, until=args.until)
    return args.ledger_rows


def _sources(args) -> list[str]:
    """What the outcomes came from, for a router's metadata and the summary (no password)."""
    return [str(d) for d in args.data] + ([f"ledger:{_ledger(args).source}"] if args.from_ledger else [])


def _load(args, known: Sequence[str] | None = None) -> tuple[OutcomeTable, list[str]]:
    """The table of every source's outcomes, and notes on what the ledger gave and left out."""
    rows = read_outcomes(args.data, known_models=known) if args.data else []
    notes: list[str] = []
    if args.from_ledger:
        got = _ledger(args)
        usable, left = got.usable(known)
        notes += got.lines() + left
        files = {(r.prompt_id, r.model): r.where for r in rows}
        for r in usable:
            if (r.prompt_id, r.model) in files:  # e.g. an --export of the same ledger given as --data
                raise DataError(f"prompt '{r.prompt_id}' and model '{r.model}' are in the ledger and at "
                                f"{files[r.prompt_id, r.model]}", r.where)
        rows += usable
    try:
        table = to_table(rows, on_incomplete="fail" if args.strict else "drop")
    except DataError as e:
        if not args.from_ledger:
            raise
        raise DataError(f"{e} (from the ledger: comparing models needs prompts that several models answered: "
                        "the same prompt sent to each, or a cascade's or a fallback's attempts)") from None
    if args.task:
        keep = [i for i, p in enumerate(table.prompts) if p.task and any(p.task.startswith(t) for t in args.task)]
        if not keep:
            raise DataError(f"no prompt's task starts with {' or '.join(args.task)}")
        dropped = table.dropped
        table = table.subset(keep)
        table.dropped = dropped
    return table, notes


_LEDGER_OPTIONS = ("task_tag", "test_share", "since", "until")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", default=[], metavar="FILE", help="outcome data: .jsonl[.gz], .csv[.gz] or .parquet")
    p.add_argument("--from-ledger", metavar="SOURCE",
                   help="outcomes of the traffic a gateway's ledger recorded (needs log: {bodies: true}; quality from "
                        "feedback and cascade verdicts): a ledger URL (sqlite:///FILE, postgresql://...), a SQLite "
                        "ledger file, or a switchman.yaml naming one; one more source beside any --data")
    g = p.add_argument_group("with --from-ledger")
    g.add_argument("--task-tag", metavar="NAME", help="a prompt's task is its request's tag NAME (default: the route's name)")
    g.add_argument("--test-share", type=float, metavar="X",
                   help="put this share of the ledger's prompts in the test split, by a hash of the prompt (e.g. 0.3; default: no split)")
    g.add_argument("--since", metavar="DATE", help="only requests from this date (UTC) or span back (7d)")
    g.add_argument("--until", metavar="DATE", help="only requests before this date (UTC)")
    p.set_defaults(ledger_rows=None)
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
    except (MissingExtra, LedgerUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 1


# ---------------------------------------------------------------------------------------------


def train_main(argv: list[str]) -> int:
    """``switchman train {--data FILE... | --from-ledger SOURCE} [--scorer] --out FILE``."""
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
    p.add_argument("--clusters", type=int, default=0, metavar="K",
                   help="also cluster the prompts in K groups (k-means on the router's features), for a bandit that "
                        "learns per cluster (context: cluster)")
    args = p.parse_args(argv)
    if args.clusters < 0 or (args.clusters and args.scorer):
        raise UsageError("--clusters: a number of clusters (1 or more) for a router, not an answer scorer")
    _check_sources(args)
    out_dir = Path(args.out).resolve().parent
    if not out_dir.is_dir():  # before minutes of training, not after
        raise UsageError(f"--out {args.out}: the directory {out_dir} does not exist")
    from ..routing.training import ScorerParams, TrainParams, train_router, train_scorer

    table, read = _load(args)
    cost, unit, notes = resolve_costs(table, _costs(args.cost))
    rows = table.split_indices("train") if args.split == "train" else []
    if not rows:
        rows = list(range(len(table)))
    for line in read + table.dropped.lines() + notes:
        print(f"note: {line}", file=sys.stderr)
    t0 = time.monotonic()
    sources = _sources(args)
    if args.scorer:
        scorer = train_scorer(table, cost, rows=rows, params=ScorerParams(c=args.c, max_features=args.max_features or ScorerParams().max_features), sources=sources)
        scorer.save(args.out)
        print(
            f"trained an answer scorer on {scorer.meta['answers']} answers to {len(rows)} prompts by {len(scorer.models)} models "
            f"in {time.monotonic() - t0:.1f}s; wrote {args.out}"
        )
        return 0
    router = train_router(
        table, cost, cost_unit=unit, rows=rows, sources=sources,
        params=TrainParams(c=args.c, max_features=args.max_features or TrainParams().max_features, clusters=args.clusters),
    )
    router.save(args.out)
    print(
        f"trained on {len(rows)} prompts × {len(table.models)} models in {time.monotonic() - t0:.1f}s; "
        f"{len(router.vectorizer)} features; wrote {args.out}"
    )
    if router.clusters:
        print(f"clustered the prompts in {router.clusters} groups: a bandit with router: {args.out} and context: cluster "
              "learns per group")
    if router.tasks:
        shown = ", ".join(router.tasks[:5]) + (f" and {len(router.tasks) - 5} more" if len(router.tasks) > 5 else "")
        print(f"learned per task too ({shown}): tag requests x-switchman-tags: task=NAME to use it")
    return 0


def eval_main(argv: list[str]) -> int:
    """``switchman eval {--data FILE... | --from-ledger SOURCE} [--router ROUTER] [--strategy ...]
    [--volume N/day] [--target X] --out DIR``, or ``--from-ledger SOURCE --export FILE``."""
    return _run_guarded(_eval, argv)


def _eval_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--out", metavar="DIR", help="where the summary, report and decisions go")
    p.add_argument("--export", metavar="FILE",
                   help="write the ledger's outcome rows (quality null where unknown) to FILE (.jsonl or .jsonl.gz); "
                        "alone, without --out, nothing is evaluated")
    return p


def _export(args) -> None:
    """``--export``: the ledger's rows in the outcomes format."""
    from . import from_ledger

    if not args.from_ledger:
        raise UsageError("--export writes the outcome rows of --from-ledger SOURCE")
    if not Path(args.export).resolve().parent.is_dir():
        raise UsageError(f"--export {args.export}: the directory {Path(args.export).resolve().parent} does not exist")
    got = _ledger(args)
    got.check()
    n = from_ledger.write_rows(args.export, got.rows)
    if not args.out:  # else the evaluation's notes say the same
        for line in got.lines():
            print(f"note: {line}")
    print(f"wrote {n} outcome row(s) to {args.export}")


def _folds(table: OutcomeTable, cost, unit: str, args, router: Router | None, notes: list[str]) -> tuple[list, str]:
    """The folds to evaluate on, and a few words saying which."""
    from .replay import make_folds

    try:
        folds, how = make_folds(table, cost, unit, k=args.folds, seed=args.seed)
    except ValueError as e:  # too few prompts for k folds
        raise DataError(f"{e}: give fewer --folds" + (" or a --test-share" if args.from_ledger else "")) from None
    if router is None:
        return folds, how
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
    return folds, how


def _strategies(wanted: Sequence[str], table: OutcomeTable, router: Router | None, train, notes: list[str]) -> tuple[list, object]:
    """The baselines, then the strategies asked for (each skipped with a note when the data cannot
    support it), and the learned strategy whose routers the others share (or None)."""
    from . import strategies as st

    strategies: list = [st.Single(m) for m in table.models]
    strategies += [st.BestSingle(), st.CheapestMeeting((0.90, 0.95, 0.99)), st.PerTask(), st.RandomMix(), st.Oracle()]
    learned = None
    for s in wanted:
        if s in ("learned", "learned-minq"):
            strat = st.LearnedStrategy(s, "tradeoff" if s == "learned" else "min_quality", router=router, train=train)
            if learned is None:
                learned = strat
            else:
                learned.share_cache(strat)
            strategies.append(strat)
        elif s in ("bandit", "bandit-cold"):
            from .bandit import BanditStrategy

            if s == "bandit" and learned is None:  # its prior: the router the learned strategies use
                learned = st.LearnedStrategy("learned", "tradeoff", router=router, train=train)
            strategies.append(BanditStrategy(s, warm=s == "bandit",
                                             predictions=learned.predictions if s == "bandit" else None))
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
    return strategies, learned


def _eval(argv: list[str]) -> int:
    from . import report
    from .replay import run_all
    from .summary import Options, summarise

    args = _eval_parser().parse_args(argv)
    _check_sources(args)
    if not args.out and not args.export:
        raise UsageError("--out DIR is required (or --export FILE with --from-ledger, to only write the outcome rows)")
    if not 0 < args.target <= 1:
        raise UsageError("--target is a share of the best single model's quality, in (0, 1]")
    wanted = [s for item in args.strategy for s in item.split(",") if s] or ["learned", "learned-minq"]
    for s in wanted:
        if s not in STRATEGIES:
            raise UsageError(f"unknown strategy '{s}' (known: {', '.join(STRATEGIES)})")
    volume = _volume(args.volume)
    if args.export:
        _export(args)
        if not args.out:
            return 0

    router = Router.load(args.router) if args.router else None
    table, read = _load(args, known=router.models if router else None)
    if router is not None:
        lacking = [m for m in router.models if m not in table.models]
        if lacking:
            raise DataError(f"the data has no outcomes for the router's model(s) {', '.join(lacking)}")
    cost, unit, notes = resolve_costs(table, _costs(args.cost))
    notes = read + table.dropped.lines() + notes
    folds, how = _folds(table, cost, unit, args, router, notes)
    notes.insert(0, f"evaluated on: {how}")

    train = None if router is not None else _trainer(args, _sources(args))
    strategies, learned = _strategies(wanted, table, router, train, notes)

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
    for s in strategies:
        if hasattr(s, "streams"):  # the bandits: second half of the stream, and regret
            lines, figures = s.notes(args.target)
            notes += lines
            next(x for x in summary["strategies"] if x["name"] == s.name)["stream"] = figures
    summary["notes"] = notes
    summary["data"] = _sources(args)
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
