"""The learned router: it learns which model is good at which prompts, saves and loads without
pickle, chooses by min_quality or tradeoff through the Policy interface, and beats random
routing on held-out real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from switchman.outcomes import Dropped, OutcomeTable, Prompt, load_table, resolve_costs
from switchman.routing.base import RouteContext
from switchman.routing.learned import Learned, Router, RouterFileError
from switchman.types import ChatRequest, Message, Role, TextPart

pytest.importorskip("sklearn")
from switchman.routing.training import TrainParams, train_router  # noqa: E402

DATA = Path("/work/shared/data")
ROUTERBENCH = Path(__file__).resolve().parents[3] / "shared" / "data" / "routerbench-3task" / "outcomes.jsonl.gz"
if not ROUTERBENCH.exists():
    ROUTERBENCH = DATA / "routerbench-3task" / "outcomes.jsonl.gz"

MATH = ["what is {} plus {}", "compute {} times {}", "solve {} minus {} for me", "divide {} by {}"]
POEM = ["write a poem about {} and {}", "a sonnet on {} with {}", "compose verses about {} {}", "a haiku of {} {}"]


def _table(n=120, seed=0) -> tuple[OutcomeTable, np.ndarray]:
    """'cheap' is right on maths and wrong on poems; 'dear' is always right, at 10× the cost."""
    rng = np.random.default_rng(seed)
    prompts, q = [], []
    for i in range(n):
        kind = i % 2
        tpl = (MATH if kind == 0 else POEM)[rng.integers(4)]
        prompts.append(Prompt(f"p{i}", tpl.format(rng.integers(100), rng.integers(100)), "math" if kind == 0 else "poem", None))
        q.append([1.0 if kind == 0 else 0.0, 1.0])
    quality = np.array(q)
    cost = np.tile([0.001, 0.01], (n, 1))
    nan = np.full_like(quality, np.nan)
    t = OutcomeTable(prompts, ["cheap", "dear"], quality, cost, nan, nan, nan, None, Dropped())
    return t, cost


def _req(text: str) -> ChatRequest:
    return ChatRequest(model="auto", messages=[Message(Role.USER, [TextPart(text)])])


@pytest.fixture(scope="module")
def router() -> Router:
    t, cost = _table()
    return train_router(t, cost, params=TrainParams(c=10.0))


def test_router_learns_which_model_suits_which_prompt(router):
    maths = router.predict("please compute 12 times 7")
    poem = router.predict("write a poem about the sea and 4 cats")
    assert maths[0] > 0.7 and poem[0] < 0.3  # the cheap model: good at maths only
    assert maths[1] > 0.7 and poem[1] > 0.7


def test_min_quality_picks_the_cheapest_model_predicted_to_meet_it(router):
    pol = Learned(router, min_quality=0.8)
    ctx = RouteContext({})
    p = pol.plan(_req("compute 3 times 9"), ctx)
    assert p.models == ("cheap", "dear") and p.reason.startswith("learned:q=") and ">=0.80" in p.reason
    p = pol.plan(_req("a sonnet on love with roses"), ctx)
    assert p.models[0] == "dear"
    # nothing predicted good enough: the best predicted model, and the reason says so
    p = Learned(router, min_quality=0.9999).plan(_req("a sonnet on love with roses"), ctx)
    assert p.models[0] == "dear" and p.reason.endswith(",best")


def test_tradeoff_moves_from_quality_to_cost(router):
    ctx = RouteContext({})
    poem = _req("a haiku of frogs rain")
    assert Learned(router, tradeoff=0.0).plan(poem, ctx).models[0] == "dear"
    assert Learned(router, tradeoff=100.0).plan(poem, ctx).models[0] == "cheap"
    assert "tradeoff=100" in Learned(router, tradeoff=100.0).plan(poem, ctx).reason


def test_plan_is_limited_to_configured_models_and_follows_aliases(router):
    ctx = RouteContext({"fast": object(), "dear": object()})  # type: ignore[dict-item]
    pol = Learned(router, min_quality=0.8, aliases={"fast": "cheap"})
    assert pol.plan(_req("compute 3 times 9"), ctx).models == ("fast", "dear")
    only = RouteContext({"dear": object()})  # type: ignore[dict-item]
    assert pol.plan(_req("compute 3 times 9"), only).models == ("dear",)
    with pytest.raises(ValueError, match="exactly one"):
        Learned(router)
    with pytest.raises(ValueError, match="does not know"):
        Learned(router, tradeoff=1.0, aliases={"x": "nope"})


def test_save_and_load_round_trip_without_pickle(router, tmp_path):
    path = tmp_path / "r.npz"
    router.save(path)
    back = Router.load(path)
    assert back.models == router.models and back.cost_unit == "usd"
    assert back.tasks == router.tasks == ["math", "poem"]
    for text in ("compute 1 times 2", "a poem of dogs", ""):
        for task in (None, "math", "poem"):
            for a, b in zip(back.estimate(text, task), router.estimate(text, task)):
                assert np.allclose(a, b)
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(RouterFileError):
        Router.load(tmp_path / "other.npz")
    with pytest.raises(RouterFileError, match="no such"):
        Router.load(tmp_path / "missing.npz")


def _tasks_table(n=160, seed=1) -> tuple[OutcomeTable, np.ndarray]:
    """The same kinds of prompt in two tasks: 'cheap' is right on every prompt of task 'easy'
    and wrong on every one of 'hard'; only the task tells them apart."""
    rng = np.random.default_rng(seed)
    prompts, q = [], []
    for i in range(n):
        tpl = (MATH + POEM)[rng.integers(8)]
        task = "easy" if i % 2 == 0 else "hard"
        prompts.append(Prompt(f"p{i}", tpl.format(rng.integers(100), rng.integers(100)), task, None))
        q.append([1.0 if task == "easy" else 0.0, 1.0])
    quality = np.array(q)
    cost = np.tile([0.001, 0.01], (n, 1))
    nan = np.full_like(quality, np.nan)
    return OutcomeTable(prompts, ["cheap", "dear"], quality, cost, nan, nan, nan, None, Dropped()), cost


def test_router_learns_from_the_task_the_request_names():
    t, cost = _tasks_table()
    r = train_router(t, cost)
    text = "compute 31 times 4"
    easy, hard, none, unseen = (r.predict(text, task)[0] for task in ("easy", "hard", None, "translation"))
    assert easy > 0.8 and hard < 0.2  # the task decides what the text cannot
    assert 0.3 < none < 0.7 and unseen == none  # no task, or one never seen: the text alone
    pol = Learned(r, min_quality=0.7)
    ctx = RouteContext({})

    def tagged(tags):
        return ChatRequest(model="auto", messages=[Message(Role.USER, [TextPart(text)])], tags=tags)

    plan = pol.plan(tagged({"task": "easy"}), ctx)
    assert plan.models[0] == "cheap" and plan.reason.endswith(",task=easy")
    plan = pol.plan(tagged({"task": "hard"}), ctx)
    assert plan.models[0] == "dear" and plan.reason.endswith(",task=hard")
    plan = pol.plan(tagged({"task": "translation"}), ctx)
    assert plan.models[0] == "dear" and plan.reason.endswith(",task=translation(unknown)")
    # the tag's name is the policy's to choose
    plan = Learned(r, min_quality=0.7, task_tag="feature").plan(tagged({"feature": "easy", "task": "hard"}), ctx)
    assert plan.models[0] == "cheap"
    # trained without tasks, the router ignores them
    flat = train_router(t, cost, params=TrainParams(task_scale=0.0))
    assert flat.tasks == [] and flat.predict(text, "easy")[0] == flat.predict(text)[0]


def test_router_files_of_another_version_are_refused_with_a_clear_error(router, tmp_path):
    path = tmp_path / "r.npz"
    router.save(path)
    with np.load(path) as z:
        arrays = dict(z)
    meta = orjson.loads(arrays["meta"].tobytes())
    meta["version"] = 1
    arrays["meta"] = np.frombuffer(orjson.dumps(meta), dtype=np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    with pytest.raises(RouterFileError, match="version 1.*retrain"):
        Router.load(tmp_path / "old.npz")


def test_router_estimates_each_prompts_cost_and_weighs_it():
    """Poems make 'dear' write at length (cost 0.03 against 0.01 for sums): the router learns
    the difference, and at a middling λ pays for 'dear' on the sums only, where it is cheap."""
    t, cost = _table()
    poem = np.array([p.task == "poem" for p in t.prompts])
    cost[:, 1] = np.where(poem, 0.03, 0.01)
    t.quality[:, 0] = 0.0  # 'cheap' is never right: the choice rests on cost alone
    r = train_router(t, cost, params=TrainParams(c=10.0))
    _, c_sum = r.estimate("compute 12 times 7")
    _, c_poem = r.estimate("write a poem about the sea and 4 cats")
    assert c_sum[1] == pytest.approx(0.01, rel=0.3) and c_poem[1] > 2.5 * c_sum[1]
    assert c_sum[0] == c_poem[0] == pytest.approx(0.001)  # a cost that never varies stays the mean
    ctx = RouteContext({})
    pol = Learned(r, tradeoff=1.0)  # λ is a share of dear's mean cost (0.02): worth 0.5 on sums, 1.5 on poems
    assert pol.plan(_req("compute 3 times 9"), ctx).models[0] == "dear"
    assert pol.plan(_req("a sonnet on love with roses"), ctx).models[0] == "cheap"
    # a cost given in the policy replaces the estimate
    assert Learned(r, tradeoff=1.0, costs={"dear": 0.001}).plan(_req("a sonnet on love with roses"), ctx).models[0] == "dear"


@pytest.mark.skipif(not ROUTERBENCH.exists(), reason="shared outcome data not present")
def test_trained_router_beats_random_routing_on_held_out_prompts():
    t = load_table([ROUTERBENCH])
    cost, unit, _ = resolve_costs(t)
    rng = np.random.default_rng(0)
    train = rng.choice(t.split_indices("train"), 800, replace=False)  # small: keeps the test quick
    test = np.array(t.split_indices("test"))
    r = train_router(t, cost, cost_unit=unit, rows=train, params=TrainParams(max_features=20_000))
    pol = Learned(r, tradeoff=0.0)
    ctx = RouteContext({})
    col = {m: j for j, m in enumerate(t.models)}
    picks = np.array([col[pol.plan(_req(t.prompts[i].text), ctx).models[0]] for i in test])
    q_router = t.quality[test, picks].mean()
    q_random = t.quality[test].mean()  # expected quality of a uniformly random model
    q_best = t.quality[test].mean(axis=0).max()
    assert q_router > q_random + 0.1
    assert q_router >= q_best - 0.03  # about as good as the best single model, on unseen prompts
