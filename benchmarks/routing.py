"""Routing benchmark: runs ``switchman eval`` on every outcome set in ``../shared/data`` and
writes the ``<!-- routing:begin -->`` section of ``benchmarks/RESULTS.md`` (date, commands,
figures, targets met or not; other sections are kept). Also measures the cascade's answer scorer
(``switchman train --scorer``: ranking quality and p50 of one score) and what bounds the learned
router on routerbench (how well it ranks prompts *within* a task, against the ranking quality a
noisy oracle needs to reach the cost target) and what cascades escalating on the agreement of
cheap models' answers can reach there, told the task.

    PYTHONPATH=src python benchmarks/routing.py [--data-dir ../shared/data] [--out DIR] [--quick]

Targets (issue 4): routerbench-3task test split: 95% of gpt-4-1106-preview's quality at
≤ 12% of its cost, and more than its quality at ≤ 50%; routellm-mmlu-gsm8k: CPT(50%) ≤ 25% on
MMLU and on GSM8K; AIQ above the per-task baseline on every set, with the interval; learned
decision p50 ≤ 1 ms. Nothing here lowers a target: the table says what was reached.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from switchman.eval.command import eval_main, train_main  # noqa: E402
from switchman.outcomes import load_table, resolve_costs  # noqa: E402
from switchman.routing.learned import Router  # noqa: E402
from switchman.routing.scorer import AnswerScorer  # noqa: E402
from results import write_section  # noqa: E402



def run_eval(args: list[str], out: Path) -> dict:
    argv = [*args, "--out", str(out)]
    t = time.monotonic()
    rc = eval_main(argv)
    if rc != 0:
        raise SystemExit(f"switchman eval {' '.join(argv)} failed with exit {rc}")
    s = orjson.loads((out / "summary.json").read_bytes())
    s["_argv"] = "switchman eval " + " ".join(args) + " --out DIR"
    s["_wall"] = time.monotonic() - t
    return s


def strat(s: dict, name: str) -> dict | None:
    return next((x for x in s["strategies"] if x["name"] == name), None)


def pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def point_at(s: dict, name: str, share: float) -> tuple[float | None, float | None]:
    """Best quality among the strategy's points costing ≤ ``share`` of the reference."""
    st = strat(s, name)
    if st is None:
        return None, None
    ok = [p for p in st["points"] if p["cost_share"] is not None and p["cost_share"] <= share + 1e-12]
    if not ok:
        return None, None
    p = max(ok, key=lambda p: p["quality"])
    return p["quality"], p["cost_share"]


def set_table(s: dict, routers: list[str]) -> list[str]:
    ref = s["reference"]
    unit = s["cost_unit"]
    lines = [
        f"reference: `{ref['name']}` quality {ref['quality']:.3f}, cost "
        + (f"${ref['cost']:.3f}" if unit == "usd" else f"{ref['cost']:,.0f} {unit}")
        + f"; {s['prompts']} prompts; {s['notes'][0]}",
        "",
        "| strategy | AIQ [95% CI] | cost to reach 90% / 95% / 99% of reference | best quality at ≤ 12% / ≤ 50% cost | "
        + ("APGR | CPT(50%) | CPT(80%) |" if len(s["models"]) == 2 else ""),
        "|---|---|---|---|" + ("---|---|---|" if len(s["models"]) == 2 else ""),
    ]
    names = ["best-single", "cheapest-meeting", "per-task", "random", "oracle", *routers]
    for n in names:
        st = strat(s, n)
        if st is None:
            continue
        ci = st.get("aiq_ci") or [None, None]
        aiq = "—" if st["aiq"] is None else f"{st['aiq']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci[0] is not None else "")
        reach = " / ".join(pct(st["cost_to_reach"][k]) for k in ("90%", "95%", "99%"))
        q12, _ = point_at(s, n, 0.12)
        q50, _ = point_at(s, n, 0.50)
        cells = [f"`{n}`", aiq, reach, f"{'—' if q12 is None else f'{q12:.3f}'} / {'—' if q50 is None else f'{q50:.3f}'}"]
        if len(s["models"]) == 2:
            cpt = st.get("cpt") or {}
            cells += ["—" if st.get("apgr") is None else f"{st['apgr']:.3f}", pct(cpt.get("50%")), pct(cpt.get("80%"))]
        lines.append("| " + " | ".join(cells) + " |")
    for name, d in (s.get("aiq_vs_per_task") or {}).items():
        if d["diff"] is not None:
            lines.append("")
            lines.append(f"AIQ `{name}` − `per-task`: {d['diff']:+.4f} (95% CI {d['ci'][0]:+.4f} .. {d['ci'][1]:+.4f})")
    if "decision_ms_p50" in s:
        lines.append("")
        lines.append(f"learned decision p50: {s['decision_ms_p50']:.3f} ms")
    for note in s["notes"]:
        if note.startswith("plans at "):  # the plan each task got at the point shown
            lines += ["", f"`{note.split(':', 1)[0]}`: {note.split(':', 1)[1].strip()}"]
    return lines


def auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC (ties count half): the chance a random positive outranks a random negative."""
    y = np.asarray(y, dtype=bool)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    for v in np.unique(s):  # average ranks over ties
        tie = s == v
        ranks[tie] = ranks[tie].mean()
    npos, nneg = y.sum(), (~y).sum()
    return float((ranks[y].sum() - npos * (npos + 1) / 2) / (npos * nneg)) if npos and nneg else float("nan")


def scorer_section(rb: str, out: Path) -> list[str]:
    """Train the answer scorer on routerbench's train split; on the test split, rank every
    model's answers (beside the answers of the up to three models just cheaper), by the model's
    own scorer and by the one for unseen models; time one score."""
    path = out / "scorer.npz"
    t0 = time.monotonic()
    if train_main(["--data", rb, "--scorer", "--out", str(path)]) != 0:
        raise SystemExit("switchman train --scorer failed")
    wall = time.monotonic() - t0
    sc = AnswerScorer.load(path)
    t = load_table([rb])
    cost, _, _ = resolve_costs(t)
    test = t.split_indices("test")
    order = sorted(range(len(t.models)), key=lambda j: cost[t.split_indices("train")][:, j].mean())
    y, own, anon, times = [], [], [], []
    for i in test:
        for k, j in enumerate(order):
            earlier = [t.responses[i][e] for e in order[max(0, k - 3) : k]]
            args = (t.prompts[i].text, t.responses[i][j], earlier)
            t1 = time.perf_counter()
            own.append(sc.score(*args, model=t.models[j]))
            times.append(time.perf_counter() - t1)
            anon.append(sc.score(*args))
            y.append(t.quality[i, j] >= 0.5)
    y = np.array(y)
    return [
        "",
        "### Answer scorer for the cascade (`switchman train --scorer`)",
        "",
        f"    switchman train --data {rb} --scorer --out SCORER.npz",
        "",
        f"Trained on the train split ({sc.meta['answers']:,} answers of {len(sc.models)} models) in {wall:.1f} s; "
        f"file {path.stat().st_size / 1e6:.1f} MB. On the test split ({len(y):,} answers, {y.mean():.1%} right), each answer "
        "scored beside the answers of the up to three models just cheaper:",
        "",
        "| scorer | AUC (right answers ranked above wrong ones) | score p50 |",
        "|---|---|---|",
        f"| the model's own | {auc(y, np.array(own)):.3f} | {1000 * float(np.median(times)):.3f} ms |",
        f"| for models it never saw (`model=None`) | {auc(y, np.array(anon)):.3f} | |",
    ]


def arithmetic_section(rl: str) -> list[str]:
    """The ``arithmetic`` check on GSM8K's recorded answers: how many it rejects, and how often
    the answers it rejects and passes are right; p50 of one check."""
    from switchman.routing.answers import wrong_calculation

    t = load_table([rl])
    rows = [i for i, p in enumerate(t.prompts) if p.task == "gsm8k"]
    lines = ["", "### The `arithmetic` check on GSM8K answers (routellm-mmlu-gsm8k)", "",
             "| model | answers | rejected (a stated calculation is wrong) | right when rejected | right when passed | check p50 |",
             "|---|---|---|---|---|---|"]
    for j, m in enumerate(t.models):
        bad, ok, times = [], [], []
        for i in rows:
            a = t.responses[i][j] if t.responses is not None else None
            if a is None:
                continue
            t1 = time.perf_counter()
            wrong = wrong_calculation(a) is not None
            times.append(time.perf_counter() - t1)
            (bad if wrong else ok).append(t.quality[i, j] >= 0.5)
        if not times:
            continue
        n = len(bad) + len(ok)
        lines.append(f"| `{m}` | {n:,} | {len(bad) / n:.1%} | {np.mean(bad) if bad else float('nan'):.1%} | "
                     f"{np.mean(ok):.1%} | {1000 * float(np.median(times)):.3f} ms |")
    return lines


def bound_section(rb: str, router_path: Path) -> list[str]:
    """Why the 12% target is out of reach: how well the learned router ranks prompts within a
    task (0.5 = not at all), and the cost to reach 95% of gpt-4 that a noisy oracle gets for
    each such ranking quality (per-task train means, moved towards the truth by ``s`` in logit
    space plus unit Gaussian noise; median of 10 draws)."""
    from switchman.eval.metrics import cost_to_reach

    t = load_table([rb])
    cost, _, _ = resolve_costs(t)
    tr, te = np.array(t.split_indices("train")), np.array(t.split_indices("test"))
    tasks = np.array(t.tasks)
    q, c, tk = t.quality[te], cost[te], tasks[te]
    router = Router.load(router_path)
    cols = [t.models.index(m) for m in router.models]
    pred = router.predict_many([t.prompts[i].text for i in te], list(tasks[te]))[:, np.argsort(cols)]

    def within(p: np.ndarray) -> float:
        return float(np.nanmean([auc(q[tk == u, j] >= 0.5, p[tk == u, j]) for u in sorted(set(tk)) for j in range(q.shape[1])]))

    base = np.zeros_like(q)
    for u in set(tk):
        base[tk == u] = t.quality[tr[tasks[tr] == u]].mean(axis=0).clip(1e-3, 1 - 1e-3)
    ref = t.models.index("gpt-4-1106-preview")
    scale = cost[tr].mean(axis=0).max()
    lambdas = (0.0, *np.geomspace(1e-3, 100.0, 46))

    def c95(p: np.ndarray) -> float:
        n = np.arange(len(te))
        pts = [(c[n, k].sum(), q[n, k].mean()) for k in (np.argmax(p - lam * c / scale, axis=1) for lam in lambdas)]
        return cost_to_reach(pts, 0.95 * q[:, ref].mean(), c[:, ref].sum())

    rng = np.random.default_rng(0)
    rows = [f"| the learned router (TF-IDF + shape) | {within(pred):.3f} | {pct(c95(pred))} |"]
    for s in (0.1, 0.2, 0.25, 0.3, 0.4):
        draws = [1 / (1 + np.exp(-(np.log(base / (1 - base)) + s * (2 * q - 1) + rng.normal(size=q.shape)))) for _ in range(10)]
        rows.append(f"| noisy oracle, s = {s} | {np.mean([within(d) for d in draws]):.3f} | {pct(float(np.nanmedian([c95(d) for d in draws])))} |")
    return [
        "",
        "### What bounds the learned router on routerbench-3task",
        "",
        "Nearly all of a router's gain there is recognising the task, which `per-task` also does; beyond it a router "
        "must rank the prompts of one task by which model gets them right. The mean AUC of that ranking, per task and model "
        "(0.5 = no better than chance), against the cost to reach 95% of gpt-4-1106-preview's quality "
        "(test split; the noisy oracle starts from the per-task train means and is moved towards the true outcomes):",
        "",
        "| predictor | within-task AUC | cost to reach 95% of gpt-4 (choosing with the recorded costs) |",
        "|---|---|---|",
        *rows,
    ]


def agreement_section(rb: str, boot: int = 500) -> list[str]:
    """What cheap models' agreement can buy when the task is known: per task, call two or three
    of the cheaper models (all but gpt-4 and the Claude 1 and 2 models); if their answers agree,
    keep them, else pay for gpt-4-1106-preview (or claude-v1) too. Each task's plan is chosen by
    λ on the train split, and, as an upper bound for such plans, on the test split itself; the
    AIQ of the train-chosen plans is set against the same choice among single models (what
    ``per-task`` does), with a bootstrap interval over the test prompts."""
    from itertools import combinations

    from switchman.eval.metrics import aiq, bootstrap_weights, cost_to_reach, percentile_ci
    from switchman.routing.answers import final_choice  # what the gateway's `agree` check compares

    t = load_table([rb])
    cost, _, _ = resolve_costs(t)
    q = t.quality
    tasks = np.array(t.tasks)
    split = np.array([p.split for p in t.prompts])
    codes: dict[str, int] = {}  # each distinct choice as a number: fast to compare
    choice = np.array([[codes.setdefault(final_choice(r or ""), len(codes)) for r in row] for row in t.responses])
    ref = t.models.index("gpt-4-1106-preview")
    dear = (ref, t.models.index("claude-v1"))
    cheap = [j for j in range(len(t.models)) if j not in (ref, *dear, t.models.index("claude-v2"))]
    singles = [((j,), None) for j in range(len(t.models))]
    plans = singles + [(voters, e) for k in (2, 3) for voters in combinations(cheap, k) for e in dear]

    def outcome(rows: np.ndarray, voters: tuple[int, ...], escalate: int | None) -> tuple[np.ndarray, np.ndarray]:
        """Quality and cost of one plan on each of ``rows``."""
        qq, cc = q[rows, voters[0]].copy(), cost[rows][:, list(voters)].sum(axis=1)
        if escalate is not None:
            agree = (choice[rows][:, list(voters)] == choice[rows, voters[0]][:, None]).all(axis=1)
            qq = np.where(agree, qq, q[rows, escalate])
            cc = cc + np.where(agree, 0.0, cost[rows, escalate])
        return qq, cc

    te = np.flatnonzero(split == "test")
    names = sorted(set(tasks))
    rows_of = {(u, sp): np.flatnonzero((tasks[te] == u) if sp == "test" else ((tasks == u) & (split == sp)))
               for u in names for sp in ("train", "test")}
    test_out = {u: [outcome(te[rows_of[(u, "test")]], *p) for p in plans] for u in names}
    mean = {(u, sp): [(float(a.mean()), float(b.mean())) for a, b in
                      (test_out[u] if sp == "test" else [outcome(rows_of[(u, sp)], *p) for p in plans])]
            for u in names for sp in ("train", "test")}
    scale = cost.mean(axis=0).max()
    lambdas = (0.0, *np.geomspace(1e-3, 300.0, 120))

    def curve(chosen_on: str, among: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per λ, the test prompts' quality and cost under each task's best of the first
        ``among`` plans."""
        out = []
        for lam in lambdas:
            qv, cv = np.zeros(len(te)), np.zeros(len(te))
            for u in names:
                m = mean[(u, chosen_on)]
                k = max(range(among), key=lambda i: m[i][0] - lam * m[i][1] / scale)
                r = rows_of[(u, "test")]
                qv[r], cv[r] = test_out[u][k]
            out.append((qv, cv))
        return out

    def points(c, w=None):
        w = np.ones(len(te)) if w is None else w
        return [(float((cv * w).sum()), float((qv * w).sum() / w.sum())) for qv, cv in c]

    target, ref_cost = 0.95 * q[te, ref].mean(), cost[te, ref].sum()
    rows, best12 = [], 0.0
    for chosen_on in ("train", "test"):
        pts = points(curve(chosen_on, len(plans)))
        within = [qq for cc, qq in pts if cc <= 0.12 * ref_cost]
        above = cost_to_reach(pts, q[te, ref].mean() + 0.5 / len(te), ref_cost)  # one more prompt right, or half
        best12 = max(best12, *within) if within else best12
        reach = cost_to_reach(pts, target, ref_cost)
        rows.append(f"| {chosen_on} split | {pct(reach) if reach == reach else 'never'} | "
                    f"{f'{max(within):.3f}' if within else '—'} | {pct(above) if above == above else 'never'} |")
    agreed, alone = curve("train", len(plans)), curve("train", len(singles))

    def gain(w=None) -> float:
        top = float((cost[te] * (np.ones(len(te)) if w is None else w)[:, None]).sum(axis=0).max())
        return aiq(points(agreed, w), top) - aiq(points(alone, w), top)

    lo, hi = percentile_ci(np.array([gain(w) for w in bootstrap_weights(len(te), boot)]))
    return [
        "",
        "### What agreement among cheap models can buy on routerbench-3task",
        "",
        "A cascade's checks can only escalate what they can tell is wrong. Told each prompt's task, call two or three of "
        "the cheaper models; where their answers agree keep them, else pay for gpt-4-1106-preview (or claude-v1) as well "
        f"— {len(plans)} plans per task (every single model too), each task's plan chosen by a trade-off λ, on the test split "
        f"({len(te)} prompts; 95% of gpt-4 is quality {target:.3f}, 12% of its cost ${0.12 * ref_cost:.3f}):",
        "",
        "| plans chosen on | cost to reach 95% of gpt-4 | best quality at ≤ 12% of its cost | cost to exceed gpt-4 |",
        "|---|---|---|---|",
        *rows,
        "",
        "Chosen on the test split itself, the plans bound what escalating on agreement alone can do, even knowing the "
        f"task: 12% of gpt-4's cost buys at most {best12:.3f}, short of {target:.3f}. Chosen on the train split, their AIQ "
        f"exceeds that of the same choice among single models (`per-task`) by {gain():+.4f} (95% CI {lo:+.4f} .. {hi:+.4f}, "
        f"{boot} resamples). The targets need a ranking of each task's prompts by which model gets them right (the AUC "
        "above) that neither the prompts' words nor the answers' agreement give here.",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", help="where eval outputs go (default: a temporary directory)")
    ap.add_argument("--quick", action="store_true", help="fewer bootstrap resamples")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    args = ap.parse_args()
    data = Path(args.data_dir)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="switchman-routing-"))
    boot = ["--bootstrap", "200" if args.quick else "500"]
    rb = str(data / "routerbench-3task" / "outcomes.jsonl.gz")
    rl = str(data / "routellm-mmlu-gsm8k" / "outcomes.jsonl.gz")
    ze = str(data / "zeroeval-gsm8k" / "outcomes.jsonl.gz")
    routers = ["learned", "learned-minq", "cascade", "hybrid", "plans"]
    t0 = time.monotonic()
    runs: list[tuple[str, dict]] = []
    runs.append(("routerbench-3task (test split)", run_eval(["--data", rb, "--strategy", "learned,learned-minq,cascade,hybrid,plans", "--volume", "10000/day", *boot], out / "routerbench")))
    # MMLU's outcomes keep no answers (no cascade there); GSM8K's keep both models' answers
    for task, strategies in (("mmlu", "learned,learned-minq"), ("gsm8k", "learned,learned-minq,cascade,hybrid")):
        runs.append((f"routellm-mmlu-gsm8k, {task}", run_eval(["--data", rl, "--task", task, "--strategy", strategies, "--no-decisions", *boot], out / f"routellm-{task}")))
    runs.append(("zeroeval-gsm8k", run_eval(["--data", ze, "--no-decisions", *boot], out / "zeroeval")))

    # generalisation: train on two routerbench tasks, test on the third (never seen)
    tasks = ("arc-challenge", "winogrande", "mbpp")
    unseen = []
    for held in tasks:
        others = [t for t in tasks if t != held]
        router = out / f"router-without-{held}.npz"
        targs = ["--data", rb, "--out", str(router)]
        for t in others:
            targs += ["--task", t]
        if train_main(targs) != 0:
            raise SystemExit("switchman train failed")
        s = run_eval(["--data", rb, "--router", str(router), "--task", held, "--no-decisions", "--bootstrap", "0"], out / f"unseen-{held}")
        unseen.append((held, s))

    router_path = out / "router.npz"
    t1 = time.monotonic()
    if train_main(["--data", rb, "--out", str(router_path)]) != 0:
        raise SystemExit("switchman train failed")
    train_wall = time.monotonic() - t1
    extra = scorer_section(rb, out) + arithmetic_section(rl) + bound_section(rb, router_path) + agreement_section(rb)

    r = dict(runs)["routerbench-3task (test split)"]
    lines = [
        "## Routing (issue 4): strategies replayed on real outcome data",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; run took {time.monotonic() - t0:.0f} s",
        "- command: `PYTHONPATH=src python benchmarks/routing.py" + (" --quick" if args.quick else "") + "`",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPUs; {platform.python_implementation()} {platform.python_version()}",
        "- learned router: TF-IDF over word 1–2-grams (50k vocabulary) and five prompt-shape features, one logistic "
        "regression per model for quality (with one weight per task and model, used when the request is tagged with a "
        "task it knows; the evaluator tags each prompt with its task) and one ridge regression per model for this prompt's cost; numpy at run time; "
        f"`switchman train` on routerbench's train split took {train_wall:.1f} s. `learned` sweeps `tradeoff` λ, "
        "`learned-minq` sweeps `min_quality`; `cascade` calls the cheapest model first and escalates when the answer "
        "scorer (below: it reads the prompt, the answer, the answer's agreement with cheaper answers and whether the "
        "calculations it states are right) says the answer is likely wrong, or a calculation in it is wrong (`arithmetic`); "
        "`hybrid` is that cascade with the learned router choosing where in the chain to start, sweeping λ and the scorer's bar. "
        "`plans` is what a team would configure per task (a `rules` route on the task tag): one model, or a cascade over "
        "two or three frontier models with `checks: {agree: 1}` (the cheaper answers must agree, else the dearer model "
        "answers), each task's plan chosen on the train split by λ. All three run the gateway's own `Cascade` policy and "
        "checks on the recorded answers. Costs are the data's (USD), or strong-model calls where the data has none.",
        "",
        "### Targets",
        "",
        "| target | reached | met |",
        "|---|---|---|",
    ]
    ref_q = r["reference"]["quality"]
    for name in routers:
        st = strat(r, name)
        if st is None:
            continue
        c95 = st["cost_to_reach"]["95%"]
        better = [p for p in st["points"] if p["quality"] > ref_q]
        cbest = min((p["cost_share"] for p in better), default=None)
        lines.append(f"| routerbench: 95% of gpt-4 quality at ≤ 12% of its cost (`{name}`) | {pct(c95)} of its cost | {'yes' if c95 is not None and c95 <= 0.12 else 'no'} |")
        lines.append(f"| routerbench: more than gpt-4 quality at ≤ 50% of its cost (`{name}`) | " + (f"{pct(cbest)} of its cost" if cbest is not None else "never above it") + f" | {'yes' if cbest is not None and cbest <= 0.5 else 'no'} |")
    for label, s in runs:
        if label.startswith("routellm"):
            for name in routers:
                st = strat(s, name)
                if st is None:
                    continue
                c = (st.get("cpt") or {}).get("50%")
                note = " (strong-model calls; it also calls Mixtral on every prompt)" if name == "cascade" else ""
                note = " (strong-model calls; it calls Mixtral first wherever the router starts there)" if name == "hybrid" else note
                lines.append(f"| {label}: CPT(50%) ≤ 25% (`{name}`) | {pct(c)}{note} | {'yes' if c is not None and c <= 0.25 else 'no'} |")
    for label, s in runs:
        for name, d in (s.get("aiq_vs_per_task") or {}).items():
            if d["ci"][0] is None:
                continue
            lines.append(f"| {label}: AIQ above `per-task` with the CI (`{name}`) | {d['diff']:+.4f} [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}] | {'yes' if d['ci'][0] > 0 else 'no'} |")
    p50 = max(s.get("decision_ms_p50", 0) for _, s in runs)
    lines.append(f"| learned decision p50 ≤ 1 ms (worst set) | {p50:.3f} ms | {'yes' if p50 <= 1 else 'no'} |")
    for label, s in runs:
        lines += ["", f"### {label}", "", f"    {s['_argv']}", ""]
        lines += set_table(s, routers)
        if "monthly" in s:
            mo = s["monthly"]
            lines += ["", f"Monthly spend at {mo['volume_per_day']:,.0f} prompts/day: `{mo['before']['strategy']}` ${mo['before']['spend']:,.2f}; "
                      + "; ".join(f"`{n}` ${d['spend']:,.2f}" + ("" if d["meets_target"] else " (misses 95%)") for n, d in mo["after"].items() if not n.startswith("single:"))]
    lines += [
        "",
        "### Unseen task (routerbench: train on two tasks' train split, test on the third's test split)",
        "",
        "The router never saw a prompt of the held-out task; the baselines beside it chose their models on that task's own train split, so they know more than the router does.",
        "",
        "| held-out task | best single there | `learned` AIQ | `random` AIQ | `per-task` AIQ (knows the task) | `learned`: cost to reach 95% of the best single |",
        "|---|---|---|---|---|---|",
    ]
    for held, s in unseen:
        ref = s["reference"]
        a = {n: strat(s, n)["aiq"] for n in ("learned", "random", "per-task")}
        lines.append(
            f"| {held} | `{ref['name'].split(':', 1)[1]}` ({ref['quality']:.3f}) | {a['learned']:.4f} | {a['random']:.4f} | {a['per-task']:.4f} | "
            f"{pct(strat(s, 'learned')['cost_to_reach']['95%'])} |"
        )
    lines += extra
    write_section(Path(args.results), "routing", "\n".join(lines))
    print("\n".join(lines))
    print(f"\nwrote {args.results}; eval outputs in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
