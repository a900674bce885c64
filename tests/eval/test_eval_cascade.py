"""The replayed cascade, through the gateway's own Cascade policy and checks: cheap model first,
escalating when the learned answer scorer doubts the answer or a stated calculation is wrong,
paying for every call."""

from __future__ import annotations

import numpy as np
import pytest

from switchman.eval.cascade import frontier
from switchman.eval.replay import make_folds, run_all
from switchman.outcomes import Dropped, OutcomeTable, Prompt
from switchman.routing.scorer import normalise

pytest.importorskip("sklearn")


def _table(n=100):
    prompts, q, resp = [], [], []
    for i in range(n):
        maths = i % 2 == 0
        text = f"compute {i} times {i + 1}" if maths else f"write a poem about ship number {i}"
        prompts.append(Prompt(f"p{i}", text, None, "test" if i % 5 == 0 else "train"))
        # cheap: right on maths (answers a number), wrong on poems (answers "I cannot"), and
        # wrong where its calculation is (every tenth prompt)
        botched = i % 10 == 0
        q.append([1.0 if maths and not botched else 0.0, 0.5, 1.0])
        cheap = f"{i} * {i + 1} = {i * (i + 1) + 1}" if botched else str(i * (i + 1)) if maths else "I cannot"
        resp.append([cheap, "maybe", "a fine answer"])
    quality = np.array(q)
    cost = np.tile([1.0, 5.0, 10.0], (n, 1))
    nan = np.full_like(quality, np.nan)
    return OutcomeTable(prompts, ["cheap", "mid", "dear"], quality, cost, nan, nan, nan, resp, Dropped()), cost


def test_frontier_drops_models_no_budget_would_pick():
    assert frontier(np.array([0.5, 0.5, 1.0]), np.array([1.0, 5.0, 10.0])) == [0, 2]


def test_normalise_ignores_case_punctuation_and_escaped_newlines():
    assert normalise("['A\\n']") == normalise("['a']") == "a"


def test_cascade_escalates_doubted_answers_and_pays_for_every_call():
    from switchman.eval.cascade import CascadeStrategy

    table, cost = _table()
    folds, _ = make_folds(table, cost, "usd")
    idx, (res,) = run_all([CascadeStrategy(thresholds=(0.0, 0.5, 1.01))], folds)
    assert res.labels == ["accept all", "accept≥0", "accept≥0.5", "accept≥1.01"]
    n = np.array([int(table.prompts[i].prompt_id[1:]) for i in idx])
    maths, botched = n % 2 == 0, n % 10 == 0
    assert botched.any()
    # the first point checks nothing: the cheap answer always
    assert (res.answered[0] == 0).all() and res.cost[0].sum() == len(idx)
    # any score will do, but a wrong calculation is still escalated
    assert (res.answered[1][botched] == 2).all() and (res.answered[1][~botched] == 0).all()
    # threshold 0.5: maths accepted from the cheap model, poems escalated to the dear one
    assert (res.answered[2][maths & ~botched] == 0).all() and (res.answered[2][~maths] == 2).all()
    assert res.quality[2].mean() == 1.0
    assert (res.cost[2][~maths] == 11.0).all()  # the cheap call is paid for too
    assert res.called[2][~maths][:, 0].all()
    # above 1: always escalate to the end of the chain
    assert (res.answered[3] == 2).all()


def test_hybrid_lets_the_learned_router_skip_the_cheap_model_it_expects_to_fail():
    from switchman.eval.cascade import HybridStrategy
    from switchman.routing.training import train_router

    table, cost = _table()
    folds, _ = make_folds(table, cost, "usd")
    hybrid = HybridStrategy(lambda f: train_router(f.table, f.cost, rows=f.train), lambdas=(0.0, 0.05), thresholds=(0.5,))
    idx, (res,) = run_all([hybrid], folds)
    assert res.labels == ["λ=0, accept all", "λ=0, accept≥0.5", "λ=0.05, accept all", "λ=0.05, accept≥0.5"]
    n = np.array([int(table.prompts[i].prompt_id[1:]) for i in idx])
    maths, botched = n % 2 == 0, n % 10 == 0
    # λ = 0: quality alone, so the router starts every prompt at the dear model
    assert (res.answered[0] == 2).all() and not res.called[0][:, 0].any()
    # a little cost pressure: maths starts cheap, poems go straight to the dear model, unpaid cheap call and all
    p = 3
    assert (res.answered[p][maths & ~botched] == 0).all()
    assert (res.answered[p][~maths] == 2).all() and not res.called[p][~maths][:, 0].any()
    assert (res.cost[p][~maths] == 10.0).all()
    assert res.quality[p].mean() == 1.0


def _plans_table(n=200):
    """Task "mc": the cheap models a and b are each wrong now and then, never in the same way;
    right, they agree. Task "code": a is always wrong, b always right. c is always right, at ten
    times b's price."""
    prompts, q, resp = [], [], []
    for i in range(n):
        mc = i % 2 == 0
        prompts.append(Prompt(f"p{i}", f"question {i}", "mc" if mc else "code", "test" if i % 3 == 0 else "train"))
        if mc:
            a_ok, b_ok = i % 10 != 0, i % 14 != 0
            q.append([float(a_ok), float(b_ok), 1.0])
            resp.append(["B" if a_ok else "A", "B" if b_ok else "C", "B"])
        else:
            q.append([0.0, 1.0, 1.0])
            resp.append([f"def f(): return {i}", "def f(): return 0", "def f(): return 0"])
    quality = np.array(q)
    cost = np.tile([1.0, 2.0, 20.0], (n, 1))
    nan = np.full_like(quality, np.nan)
    return OutcomeTable(prompts, ["a", "b", "c"], quality, cost, nan, nan, nan, resp, Dropped()), cost


def test_plans_pay_for_the_dear_model_only_where_the_cheap_ones_disagree():
    from switchman.eval.plans import PlansStrategy
    from switchman.eval.strategies import PerTask

    table, cost = _plans_table()
    folds, _ = make_folds(table, cost, "usd")
    plans = PlansStrategy(lambdas=(0.0,))
    idx, (res, per_task) = run_all([plans, PerTask(lambdas=(0.0,))], folds)
    n = np.array([int(table.prompts[i].prompt_id[1:]) for i in idx])
    mc = n % 2 == 0
    agree = mc & (n % 10 != 0) & (n % 14 != 0)
    assert res.quality[0].mean() == 1.0 == per_task.quality[0].mean()  # no quality lost ...
    assert res.cost[0].sum() < 0.6 * per_task.cost[0].sum()  # ... for much less (per-task: c for every "mc")
    assert (res.answered[0][agree] == 1).all() and (res.cost[0][agree] == 3.0).all()
    assert (res.answered[0][mc & ~agree] == 2).all() and (res.cost[0][mc & ~agree] == 23.0).all()
    assert (res.answered[0][~mc] == 1).all() and (res.cost[0][~mc] == 2.0).all()
    assert plans.chosen["λ=0"][0] == {"mc": "a → b → c (agree: 1)", "code": "b"}
