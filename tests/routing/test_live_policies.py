"""least-latency and least-busy: unit behaviour on fed observations (injected clock and random
source), then over real HTTP against fake models with injected latencies."""

from __future__ import annotations

import random
from collections import Counter

import aiohttp
import pytest

from switchman import configfile
from switchman.clock import VirtualClock
from switchman.errors import ConfigError
from switchman.resilience.live import LiveStats
from switchman.routing.base import RouteContext
from switchman.routing.live import LeastBusy, LeastLatency
from switchman.testing.fake_upstream import FakeModel
from switchman.types import ChatRequest, Message, Role, TextPart

REQ = ChatRequest(model="fast", messages=[Message(Role.USER, [TextPart("hi")])])


def ctx(live: LiveStats) -> RouteContext:
    return RouteContext(models={}, live=live)


def test_least_latency_picks_the_fastest_and_splits_ties_by_weight():
    live = LiveStats(VirtualClock())
    for m, s in (("a", 0.050), ("b", 0.055), ("c", 0.200)):
        live.observe(m, s, stream=False)
    p = LeastLatency(("a", "b", "c"), {"a": 3, "b": 1}, tolerance=0.2, explore=0.0, rng=random.Random(1))
    picks = Counter(p.plan(REQ, ctx(live)).models[0] for _ in range(4000))
    assert picks["c"] == 0 and 0.70 < picks["a"] / 4000 < 0.80  # a and b tied, 3:1
    plan = p.plan(REQ, ctx(live))
    assert plan.models[-1] == "c" and "least-latency" in plan.reason and "tied" in plan.reason
    # streams are judged on their own figure (time to first token)
    for m, ttft in (("a", 0.30), ("b", 0.35), ("c", 0.010)):
        live.observe(m, ttft, stream=True)
    assert p.plan(ChatRequest(model="x", messages=REQ.messages, stream=True), ctx(live)).models[0] == "c"


def test_least_latency_measures_what_it_does_not_know_and_what_went_stale():
    clock = VirtualClock()
    live = LiveStats(clock)
    live.observe("a", 0.05, stream=False)
    p = LeastLatency(("a", "new"), {}, explore=0.1, stale=60, rng=random.Random(2))
    picks = [p.plan(REQ, ctx(live)) for _ in range(2000)]
    explored = [x for x in picks if x.models[0] == "new"]
    assert 0.4 < len(explored) / 2000 < 0.6 and "never measured" in explored[0].reason  # measured soon
    live.observe("new", 0.5, stream=False)  # measured: slow, so left alone but for a share measured again
    clock.advance(120)
    live.observe("a", 0.05, stream=False)
    first = p.plan(REQ, ctx(live))  # a figure two minutes old is measured again at once
    assert first.models[0] == "new" and "last measured 120.0s ago" in first.reason
    picks = []
    for _ in range(2000):  # as traffic would: every call measured (new stays slow)
        plan = p.plan(REQ, ctx(live))
        picks.append(plan.models[0])
        live.observe(plan.models[0], 0.5 if plan.models[0] == "new" else 0.05, stream=False)
    assert 0.07 < picks.count("new") / 2000 < 0.13  # the exploration share, no more


def test_a_slowdown_moves_traffic_within_a_few_observations():
    live = LiveStats(VirtualClock())
    p = LeastLatency(("a", "b"), {}, explore=0.0, rng=random.Random(3))
    for _ in range(20):
        live.observe("a", 0.05, stream=False)
        live.observe("b", 0.10, stream=False)
    assert p.plan(REQ, ctx(live)).models[0] == "a"
    for n in range(1, 10):  # a slows 5x: the decaying estimate passes b's within a few calls
        live.observe("a", 0.25, stream=False)
        if p.plan(REQ, ctx(live)).models[0] == "b":
            break
    assert n <= 3


def test_a_stream_is_judged_by_its_first_token_and_its_pace_after_it():
    # "eager" starts in 50 ms but writes 40 ms a token; "steady" starts in 200 ms and writes 5 ms a
    # token. For a 100-token stream: 4.01 s against 0.70 s. Plain calls are judged on their own.
    live = LiveStats(VirtualClock())
    p = LeastLatency(("eager", "steady"), {}, explore=0.0, rng=random.Random(0))
    stream = ChatRequest(model="r", stream=True, messages=REQ.messages)
    for _ in range(3):
        live.observe("eager", 0.050, True)
        live.observe("steady", 0.200, True)
    assert p.plan(stream, ctx(live)).models[0] == "eager"  # first tokens alone: eager
    for _ in range(3):
        live.observe_tail("eager", 0.040 * 99, 100)
        live.observe_tail("steady", 0.005 * 99, 100)
    plan = p.plan(stream, ctx(live))
    assert plan.models[0] == "steady" and "steady ~695ms" in plan.reason
    assert live.latency("eager", True)[0] == pytest.approx(0.05 + 0.04 * 99)
    # a request capped at 3 tokens: the first token is most of it, and eager is quicker again
    assert p.plan(ChatRequest(model="r", stream=True, max_tokens=3, messages=REQ.messages), ctx(live)).models[0] == "eager"
    live.observe("eager", 0.3, False)
    live.observe("steady", 0.1, False)
    assert p.plan(REQ, ctx(live)).models[0] == "steady"  # plain calls: the whole call, no tail added
    assert live.latency("eager", False)[0] == pytest.approx(0.3)


def test_least_busy_is_power_of_two_choices():
    live = LiveStats(VirtualClock())
    live.inflight.update({"a": 5, "b": 0, "c": 1})
    p = LeastBusy(("a", "b", "c"), {}, rng=random.Random(4))
    picks = Counter(p.plan(REQ, ctx(live)).models[0] for _ in range(3000))
    assert picks["a"] == 0  # the busiest never wins a draw of two
    assert picks["b"] > picks["c"] > 0
    plan = p.plan(REQ, ctx(live))
    assert "in flight" in plan.reason and plan.models[-1] == "a"


def test_least_busy_takes_its_share_of_the_other_workers_counts():
    # This worker has 4 calls on "fast"; the 3 other workers, as of the last exchange, 9 on "slow".
    # Taken whole, every worker would send its next calls to "fast" at once (all see the same stale
    # 9); a third of them each is what this worker must make up: 4 on fast against 3 on slow.
    live = LiveStats(VirtualClock())
    live.inflight.update({"fast": 4})
    live.remote.update({"slow": 9})
    live.peers, live.shared = 3, True
    plan = LeastBusy(("fast", "slow"), {}, rng=random.Random(1)).plan(REQ, ctx(live))
    assert plan.models[0] == "slow" and "slow (3 in flight) over fast (4) across workers" in plan.reason
    live.peers = 1  # one other worker: its counts count whole
    assert LeastBusy(("fast", "slow"), {}, rng=random.Random(1)).plan(REQ, ctx(live)).models[0] == "fast"


@pytest.mark.parametrize("policy,key,words", [
    ("{kind: least-latency, models: [a], tolerance: -1}", "tolerance", "must be 0 or more"),
    ("{kind: least-latency, models: [a], explore: 2}", "explore", "between 0 and 1"),
    ("{kind: least-busy, models: {a: 0}}", "models.a", "above 0"),
    ("{kind: least-busy, models: [zz]}", "models", "unknown model 'zz'"),
])
def test_config_errors(policy, key, words):
    text = f"""providers: {{p: {{kind: openai, api_key: k}}}}
models: [{{name: a, provider: p, model: gpt-4o-mini}}]
routes: [{{name: r, policy: {policy}}}]
"""
    with pytest.raises(ConfigError) as e:
        configfile.loads(text, file="s.yaml", env={})
    assert key in str(e.value) and words in str(e.value)


async def test_least_latency_over_http(tmp_path):
    from telemetry.serving import serve, stop

    models = {"fast": FakeModel(latency=0.005), "mid": FakeModel(latency=0.06), "slow": FakeModel(latency=0.15)}
    s = await serve(tmp_path, models=models, extra_models="""\
  - {name: f, provider: fake, model: fast, price: {input: 1, output: 2}}
  - {name: m, provider: fake, model: mid, price: {input: 1, output: 2}}
  - {name: s, provider: fake, model: slow, price: {input: 1, output: 2}}
""", routes="  - {name: quick, policy: {kind: least-latency, models: [f, m, s], explore: 0.05}}\n")
    try:
        answered = Counter()
        reasons = []
        async with aiohttp.ClientSession() as http:
            for i in range(60):
                async with http.post(s.base + "/v1/chat/completions", headers=s.admin(),
                                     json={"model": "quick", "messages": [{"role": "user", "content": f"q{i}"}]}) as r:
                    assert r.status == 200
                    answered[r.headers["x-switchman-model"]] += 1
                    reasons.append(r.headers["x-switchman-reason"])
            assert answered["f"] > 40, answered  # all three measured early, then the fast one (one slow call is no verdict)
            s.fake.models["fast"].latency = 0.4  # the fast one slows down
            late = Counter()
            for i in range(40):
                async with http.post(s.base + "/v1/chat/completions", headers=s.admin(),
                                     json={"model": "quick", "messages": [{"role": "user", "content": f"z{i}"}]}) as r:
                    late[r.headers["x-switchman-model"]] += 1
        assert late["f"] < 8, late  # traffic left it within a few calls (exploration aside)
        assert any("least-latency: f" in x for x in reasons)
    finally:
        await stop(s)


async def test_least_latency_streams_go_to_the_model_that_finishes_first(tmp_path):
    import openai

    from telemetry.serving import ADMIN, serve, stop

    text = "a steady answer of some length, streamed in eight pieces to the client that asked " * 2
    models = {"eager": FakeModel(reply=text, ttft=0.0, inter_token=0.04, chunks=8),  # first piece at once, 0.3 s in all
              "steady": FakeModel(reply=text, ttft=0.05, inter_token=0.002, chunks=8)}  # 0.065 s in all
    s = await serve(tmp_path, models=models, extra_models="""\
  - {name: e, provider: fake, model: eager, price: {input: 1, output: 2}}
  - {name: t, provider: fake, model: steady, price: {input: 1, output: 2}}
""", routes="  - {name: live, policy: {kind: least-latency, models: [e, t], explore: 0.05}}\n")
    try:
        picked, reasons = Counter(), []
        async with openai.AsyncOpenAI(base_url=s.base + "/v1", api_key=ADMIN, max_retries=0) as c:
            for i in range(24):
                raw = await c.chat.completions.with_raw_response.create(
                    model="live", stream=True, messages=[{"role": "user", "content": f"q{i}"}])
                got = "".join([ch.choices[0].delta.content or "" async for ch in raw.parse() if ch.choices])
                assert got == text
                if i >= 8:  # both measured by then, first token and pace
                    picked[raw.headers["x-switchman-model"]] += 1
                    reasons.append(raw.headers["x-switchman-reason"])
        # by first token alone "e" would win every time; whole streams say "t"
        assert picked["t"] >= 13, (picked, reasons)
        assert any(r.startswith("least-latency: t ~") for r in reasons)
    finally:
        await stop(s)
