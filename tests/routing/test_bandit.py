"""The bandit policy: Thompson sampling learns the better model from feedback, weighs cost, starts
from priors, keeps exploring, learns per context; and over HTTP, feedback and failures move
traffic, with the draw in the reason."""

from __future__ import annotations

import random
from collections import Counter

import aiohttp
import pytest

from switchman import configfile
from switchman.errors import ConfigError
from switchman.routing.bandit import Bandit
from switchman.routing.base import RouteContext
from switchman.testing.fake_upstream import FakeModel
from switchman.types import ChatRequest, Message, Role, TextPart

CTX = RouteContext(models={})


def req(tags=None) -> ChatRequest:
    return ChatRequest(model="r", messages=[Message(Role.USER, [TextPart("hi")])], tags=tags)


def simulate(b: Bandit, truth: dict[str, float], n: int, rng: random.Random, cost=None, tags=None) -> Counter:
    picks = Counter()
    for _ in range(n):
        m = b.plan(req(tags), CTX).models[0]
        picks[m] += 1
        b.learn(m, 1.0 if rng.random() < truth[m] else 0.0, tags)
        if cost:
            b.cost(m, cost[m], tags)
    return picks


def test_it_learns_the_better_model_and_keeps_exploring():
    b = Bandit(("a", "b", "c"), {}, explore=0.05, rng=random.Random(1))
    picks = simulate(b, {"a": 0.9, "b": 0.6, "c": 0.3}, 2000, random.Random(2))
    assert picks["a"] > 1600
    assert picks["c"] >= 20  # the exploration floor: never starved of feedback
    plan = b.plan(req(), CTX)
    assert plan.reason.startswith("bandit: ") and "means: a 0.9" in plan.reason


def test_cost_is_priced_against_quality():
    truth = {"dear": 0.85, "cheap": 0.80}
    cost = {"dear": 0.02, "cheap": 0.001}
    free = simulate(Bandit(("dear", "cheap"), {}, tradeoff=0.0, explore=0.0, rng=random.Random(3)), truth, 1500,
                    random.Random(4), cost)
    priced = simulate(Bandit(("dear", "cheap"), {}, tradeoff=10.0, explore=0.0, rng=random.Random(3)), truth, 1500,
                      random.Random(4), cost)
    assert free["dear"] > free["cheap"]  # quality alone: the dearer, better one
    assert priced["cheap"] > 1200  # 10 quality points per USD: 0.05 better is not worth 0.019 more


def test_priors_start_from_knowledge_and_contexts_learn_apart():
    b = Bandit(("a", "b"), {"a": 0.9, "b": 0.2}, prior=20, explore=0.0, rng=random.Random(5))
    first = Counter(b.plan(req(), CTX).models[0] for _ in range(200))
    assert first["a"] > 190  # before any feedback
    b = Bandit(("a", "b"), {}, explore=0.0, context_tag="task", rng=random.Random(6))
    simulate(b, {"a": 0.9, "b": 0.1}, 600, random.Random(7), tags={"task": "code"})
    simulate(b, {"a": 0.1, "b": 0.9}, 600, random.Random(8), tags={"task": "chat"})
    code = Counter(b.plan(req({"task": "code"}), CTX).models[0] for _ in range(200))
    chat = Counter(b.plan(req({"task": "chat"}), CTX).models[0] for _ in range(200))
    assert code["a"] > 180 and chat["b"] > 180
    assert "[task=code]" in b.plan(req({"task": "code"}), CTX).reason


def test_bad_observations_never_corrupt_a_posterior():
    b = Bandit(("a", "b"), {}, rng=random.Random(9))
    before = (b.arms()["a"].alpha, b.arms()["a"].beta)
    for bad in (-1.0, 1.5, float("nan")):
        b.learn("a", bad)
    b.learn("unknown-model", 1.0)
    assert (b.arms()["a"].alpha, b.arms()["a"].beta) == before


@pytest.mark.parametrize("policy,key,words", [
    ("{kind: bandit, models: [a]}", "models", "at least two"),
    ("{kind: bandit, models: [a, b], quality: {c: 0.5}}", "quality.c", "not one of this policy's models"),
    ("{kind: bandit, models: [a, b], quality: {a: 2}}", "quality.a", "between 0 and 1"),
    ("{kind: bandit, models: [a, b], tradeoff: -1}", "tradeoff", "0 or more"),
])
def test_config_errors(policy, key, words):
    text = f"""providers: {{p: {{kind: openai, api_key: k}}}}
models: [{{name: a, provider: p, model: gpt-4o-mini}}, {{name: b, provider: p, model: gpt-4o}}]
routes: [{{name: r, policy: {policy}}}]
"""
    with pytest.raises(ConfigError) as e:
        configfile.loads(text, file="s.yaml", env={})
    assert key in str(e.value) and words in str(e.value)


async def test_feedback_and_failures_move_traffic_over_http(tmp_path):
    from telemetry.serving import serve, stop

    s = await serve(tmp_path, models={"good": FakeModel(), "poor": FakeModel(), "down": FakeModel(error_status=500)},
                    extra_models="""\
  - {name: good, provider: fake, model: good, price: {input: 1, output: 2}}
  - {name: poor, provider: fake, model: poor, price: {input: 1, output: 2}}
  - {name: down, provider: fake, model: down, price: {input: 1, output: 2}}
""", routes="  - {name: learn, policy: {kind: bandit, models: [good, poor, down], explore: 0.05}}\n")
    try:
        answered = Counter()
        reasons = []
        async with aiohttp.ClientSession() as http:
            for i in range(120):
                async with http.post(s.base + "/v1/chat/completions", headers=s.admin(),
                                     json={"model": "learn", "messages": [{"role": "user", "content": f"q{i}"}]}) as r:
                    assert r.status == 200  # a failed pick falls back within the plan
                    model = r.headers["x-switchman-model"]
                    reasons.append(r.headers["x-switchman-reason"])
                    rid = r.headers["x-switchman-request-id"]
                if i >= 60:
                    answered[model] += 1
                score = 1.0 if model == "good" else 0.0
                async with http.post(s.base + "/v1/feedback", headers=s.admin(),
                                     json={"request_id": rid, "score": score}) as r:
                    assert r.status == 201, await r.text()
        assert answered["good"] > 45, answered  # of the last 60
        assert any(x.startswith("bandit: ") and "means:" in x for x in reasons)
    finally:
        await stop(s)


async def test_a_cascade_teaches_the_bandit_it_starts_by_with_its_check_verdicts(tmp_path):
    # "cheap" refuses everything: each time the bandit starts the cascade there, the refusal check
    # rejects the answer (quality 0 for cheap) and the cascade pays for "dear" as well. The bandit
    # learns from those verdicts alone (no feedback is sent) to start at "dear".
    from telemetry.serving import serve, stop

    s = await serve(tmp_path, models={"cheap": FakeModel(reply="I'm sorry, but I can't help with that."),
                                      "dear": FakeModel()},
                    extra_models="""\
  - {name: cheap, provider: fake, model: cheap, price: {input: 1, output: 2}}
  - {name: dear, provider: fake, model: dear, price: {input: 10, output: 20}}
""", routes="  - {name: casc, policy: {kind: cascade, models: [cheap, dear], "
             "start: {kind: bandit, models: [cheap, dear], explore: 0.05, seed: 3}}}\n")
    try:
        reasons = []
        async with aiohttp.ClientSession() as http:
            for i in range(40):
                async with http.post(s.base + "/v1/chat/completions", headers=s.admin(),
                                     json={"model": "casc", "messages": [{"role": "user", "content": f"q{i}"}]}) as r:
                    assert r.status == 200 and r.headers["x-switchman-model"] == "dear"  # never the refusal
                    reasons.append(r.headers["x-switchman-reason"])
        assert any("cheap rejected" in x for x in reasons[:10])
        late = reasons[20:]
        assert sum(x.startswith("cascade from dear (bandit") for x in late) >= 17, late
    finally:
        await stop(s)


class _Router:
    """A learned router's surface as the bandit uses it: its models and, per prompt, each one's
    predicted quality and cost."""

    models = ["good", "fair"]

    def estimate(self, text, task=None):
        import numpy as np

        return np.array([0.85, 0.80]), np.array([0.01, 0.001])


def _stream(b: Bandit, truth: dict[str, float], n: int, rng: random.Random) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        plan = b.plan(req({"task": "qa"}), CTX)
        m = plan.models[0]
        out.append((m, plan.reason))
        b.learn(m, 1.0 if rng.random() < truth[m] else 0.0, {"task": "qa"})
    return out


def test_with_a_router_feedback_that_agrees_with_it_leaves_every_decision_the_routers():
    """Warm from a router, scores that match its predictions are no evidence against it: the bandit
    decides exactly as the learned policy (here always `good`: 0.85 − 3 × $0.01 against 0.80 −
    3 × $0.001) and draws nothing; the reason says no residual is significant."""
    b = Bandit(("good", "fair"), {}, tradeoff=3.0, explore=0.0, prior=50, context_tag="task",
               rng=random.Random(7), router=_Router())
    seen = _stream(b, {"good": 0.85, "fair": 0.80}, 400, random.Random(8))
    assert {m for m, _ in seen} == {"good"}
    reason = seen[-1][1]
    assert reason.startswith("bandit+router [task=qa]: good (scored 0.82;") and "no residual significant" in reason


def test_with_a_router_a_model_that_degrades_is_found_out_and_traffic_moves():
    """The router still predicts 0.85 for `good`, but its answers now score 0.3 (a provider swapped
    the model): within a few dozen scores the residual is significant, and the route moves to `fair`."""
    b = Bandit(("good", "fair"), {}, tradeoff=3.0, explore=0.0, prior=50, context_tag="task",
               rng=random.Random(7), router=_Router())
    seen = _stream(b, {"good": 0.3, "fair": 0.80}, 200, random.Random(8))
    moved = next(k for k, (m, _) in enumerate(seen) if m == "fair")
    assert 5 <= moved <= 40, moved
    assert all(m == "fair" for m, _ in seen[moved:])
    reason = seen[-1][1]
    assert "residual significant for good n=" in reason and "(drew " in reason


async def test_with_a_router_over_http_feedback_against_it_moves_the_route(tmp_path):
    """`switchman serve`, a bandit route started from a router that sends arithmetic to the small
    model: while the small model's answers score 1 nothing is learnt and it keeps them; once they
    score 0 (its provider swapped it), a few scores make the residual significant and arithmetic
    goes to the dear model, the reason saying why."""
    from telemetry.serving import serve, stop

    from .test_policies import _router_file

    _router_file(tmp_path)
    s = await serve(tmp_path, models={"small-model": FakeModel(), "dear": FakeModel()}, extra_models="""\
  - {name: small-model, provider: fake, model: small-model, price: {input: 1, output: 2}}
  - {name: dear, provider: fake, model: dear, price: {input: 10, output: 20}}
""", routes="  - {name: warm, policy: {kind: bandit, router: router.npz, models: [small-model, dear], tradeoff: 20, "
             "explore: 0, prior: 50, context_tag: task, seed: 3}}\n")
    try:
        seen = []
        async with aiohttp.ClientSession() as http:
            for i in range(60):
                async with http.post(s.base + "/v1/chat/completions",
                                     headers={**s.admin(), "x-switchman-tags": "task=sums"},
                                     json={"model": "warm", "messages": [{"role": "user",
                                                                          "content": f"compute {i} times 7"}]}) as r:
                    assert r.status == 200, await r.text()
                    model = r.headers["x-switchman-model"]
                    seen.append((model, r.headers["x-switchman-reason"]))
                    rid = r.headers["x-switchman-request-id"]
                broken = i >= 20  # from the 21st request the small model's answers are wrong
                score = 0.0 if model == "small-model" and broken else 1.0
                async with http.post(s.base + "/v1/feedback", headers=s.admin(),
                                     json={"request_id": rid, "score": score}) as r:
                    assert r.status == 201, await r.text()
        assert {m for m, _ in seen[:21]} == {"small-model"}
        assert "no residual significant" in seen[20][1]
        assert all(m == "dear" for m, _ in seen[40:]), seen
        assert "residual significant for small-model" in seen[-1][1]
    finally:
        await stop(s)
