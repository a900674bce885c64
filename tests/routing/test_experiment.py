"""Experiments: sticky, balanced assignment; a canary that rolls back a worse candidate and ramps a
no-worse one to 100%, by simulation; and an A/B route end to end over HTTP with the reason, the
arm tag in the ledger and GET /admin/experiments."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import aiohttp
import pytest

from switchman.routing.base import RouteContext
from switchman.routing.experiment import Experiment, ExperimentSpec
from switchman.testing.fake_upstream import FakeModel
from switchman.types import ChatRequest, Message, Role, TextPart

from telemetry.serving import serve, stop


def req(user: str | None = None, episode: str | None = None) -> ChatRequest:
    return ChatRequest(model="chat", messages=[Message(Role.USER, [TextPart("hi")])], end_user=user, episode=episode)


def exp(**kw) -> Experiment:
    spec = ExperimentSpec(arms=(("control", "a"), ("candidate", "b")), split=(50.0, 50.0), **kw)
    return Experiment("chat", spec, None, frozenset())


def test_assignment_is_sticky_and_balanced():
    e = Experiment("chat", ExperimentSpec(arms=(("control", "a"), ("candidate", "b")), split=(90.0, 10.0)),
                   None, frozenset())
    ctx = RouteContext({})
    counts = {"control": 0, "candidate": 0}
    for i in range(10_000):
        arms = {e.plan(req(user=f"u{i}"), ctx).arm for _ in range(3)}
        assert len(arms) == 1  # every request of a subject on one arm
        counts[arms.pop()] += 1
    assert abs(counts["candidate"] / 10_000 - 0.10) < 0.02
    p = e.plan(req(user="u1", episode="ep-9"), ctx)
    assert "by episode" in p.reason  # the episode comes first when present
    assert e.plan(req(), ctx).reason.count("no subject: drawn") == 1


def _simulate(e: Experiment, control_err: float, cand_err: float, n: int, seed: int = 3) -> int:
    """Traffic of ``n`` subjects through the experiment; returns candidate requests until rollback
    (or all of them)."""
    rng = random.Random(seed)
    ctx = RouteContext({})
    cand = 0
    for i in range(n):
        arm = e.plan(req(user=f"s{i}"), ctx).arm
        err = rng.random() < (cand_err if arm == "candidate" else control_err)
        e.settled(arm, err, rng.gauss(300, 30), 0.001)
        if arm == "candidate":
            cand += 1
            if e.rolled_back or e.finished:
                break
    return cand


def test_a_canary_three_times_as_error_prone_is_rolled_back_early():
    e = exp(ramp=(1.0, 5.0, 25.0, 50.0, 100.0), min_requests=100, alpha=0.05)
    cand = _simulate(e, 0.02, 0.06, 200_000)
    assert e.rolled_back and "error rate" in e.rolled_back
    assert cand < 500
    assert e.shares() == [100.0, 0.0]  # everything back on control
    last = e.history[-1]
    assert last["action"] == "rollback" and last["candidate_share"] == 0.0
    # why, in the history: the figures and the test that crossed its bound
    assert "error rate" in last["why"] and f"of {cand} candidate requests" in last["why"] and "SPRT" in last["why"]


@pytest.mark.parametrize("seed", [11, 12, 13, 14, 15])
def test_three_times_the_errors_is_caught_before_500_candidate_requests(seed):
    """On fixed seeds (not the benchmark's), the whole canary: 3x control's errors never reaches
    the rollout's 500th candidate request."""
    e = exp(ramp=(1.0, 5.0, 25.0, 50.0, 100.0), min_requests=100, alpha=0.05)
    cand = _simulate(e, 0.02, 0.06, 200_000, seed=seed)
    assert e.rolled_back and cand < 500, (cand, e.history)


def test_the_error_test_looks_at_every_request_not_only_at_steps():
    """A candidate failing half its requests is rolled back within a few dozen of them, long
    before the first step's 100, at whatever request the evidence is enough."""
    e = exp(ramp=(1.0, 5.0, 25.0, 50.0, 100.0), min_requests=100, alpha=0.05)
    cand = _simulate(e, 0.02, 0.5, 200_000)
    assert e.rolled_back and cand < 30
    assert [h["action"] for h in e.history] == ["start", "rollback"]


def test_the_error_test_counts_every_step_since_the_start():
    """Evidence carries over the steps: a candidate at twice control's rate, not caught at the
    first step, is rolled back on the candidate's requests of all the steps together."""
    e = exp(ramp=(1.0, 5.0, 25.0, 50.0, 100.0), min_requests=100, alpha=0.05)
    cand = _simulate(e, 0.02, 0.04, 400_000, seed=8)
    actions = [h["action"] for h in e.history]
    assert e.rolled_back and actions[-1] == "rollback" and "step" in actions
    assert f"of {cand} candidate requests" in e.rolled_back and cand > 100


def test_the_sequential_test_keeps_its_false_alarm_rate():
    """Exact (the walk of a candidate at control's rate, every request looked at): within the
    rollout it crosses with probability at most alpha, and a better candidate less often."""
    from switchman.routing import sequential

    for p0, horizon in ((0.02, 500), (0.005, 1000), (0.2, 300)):
        fa = sequential.caught(p0, p0, 0.04, horizon, horizon)
        assert 0.02 < fa <= 0.04 * (1 - sequential.STEEP_SHARE) * 1.02  # the band's rounding: within 2%
        assert sequential.caught(p0 / 2, p0, 0.04, horizon, horizon) < fa / 4
        assert sequential.caught(3 * p0, p0, 0.04, horizon, horizon) > 0.9
    # Past the rollout's horizon only the steep line is left (Ville: at most 10% of alpha, ever)
    assert not sequential.regressed(2000, 60, 0.02, 0.04, 500)[0]
    assert sequential.regressed(2000, 120, 0.02, 0.04, 500)[0]


def test_a_canary_no_worse_than_control_reaches_100_percent():
    e = exp(ramp=(1.0, 5.0, 25.0, 50.0, 100.0), min_requests=100, alpha=0.05)
    _simulate(e, 0.02, 0.02, 60_000)
    assert not e.rolled_back
    assert e.shares()[-1] == 100.0
    assert [h["action"] for h in e.history].count("step") == 4
    assert e.history[-1]["action"] == "done"


def test_most_canaries_no_worse_than_control_reach_100_percent():
    """Twenty equal candidates: rolled back (false alarms) at most at about alpha's rate."""
    done = 0
    for seed in range(20):
        e = exp(ramp=(1.0, 5.0, 25.0, 50.0, 100.0), min_requests=100, alpha=0.05)
        _simulate(e, 0.02, 0.02, 60_000, seed=100 + seed)
        done += e.finished and not e.rolled_back
    assert done >= 18


@pytest.mark.parametrize("policy,words", [
    ("{kind: experiment, arms: {control: echo, candidate: nope}}", "neither a route nor a model"),
    ("{kind: experiment, arms: {control: echo, candidate: claude}, split: {control: 60, candidate: 30}}", "summing to 100"),
    ("{kind: experiment, arms: {control: echo, candidate: claude}, ramp: [1, 10, 50]}", "ending at 100"),
    ("{kind: experiment, arms: {control: echo, candidate: claude}, split: {other: 100}}", "unknown arm"),
    ("{kind: experiment, arms: {control: echo}}", "at least two arms"),
])
def test_bad_experiments_are_config_errors(policy, words):
    from switchman import configfile
    from switchman.errors import ConfigError

    cfg = f"""\
providers:
  oa: {{kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: k}}
models:
  - {{name: echo, provider: oa, model: a, price: {{input: 1, output: 1}}}}
  - {{name: claude, provider: oa, model: b, price: {{input: 1, output: 1}}}}
routes:
  - name: chat
    policy: {policy}
"""
    with pytest.raises(ConfigError) as e:
        configfile.loads(cfg, file="s.yaml", env={})
    assert words in str(e.value) and "s.yaml:8" in str(e.value)


async def test_an_ab_route_end_to_end(tmp_path):
    routes = ("  - {name: chat, policy: {kind: experiment, arms: {control: echo, candidate: claude}, by: user}}\n")
    s = await serve(tmp_path, routes=routes, models={"echo": FakeModel(), "claude": FakeModel()})
    try:
        async with aiohttp.ClientSession() as http:
            seen = {}
            for i in range(40):
                for _ in range(2):
                    async with http.post(s.base + "/v1/chat/completions", headers=s.admin(), json={
                            "model": "chat", "user": f"user-{i}", "messages": [{"role": "user", "content": "hi"}]}) as r:
                        assert r.status == 200
                        model, why = r.headers["x-switchman-model"], r.headers["x-switchman-reason"]
                        assert why.startswith("experiment chat: arm ") and "by user" in why
                        seen.setdefault(i, set()).add(model)
                        rid = r.headers["x-switchman-request-id"]
            assert all(len(v) == 1 for v in seen.values())  # sticky per user
            assert {m for v in seen.values() for m in v} == {"echo", "claude"}
            async with http.post(s.base + "/v1/feedback", headers=s.admin(),
                                 json={"request_id": rid, "score": 1}) as r:
                assert r.status in (200, 201, 202), await r.text()
            for _ in range(100):
                async with http.get(s.base + "/admin/experiments", headers=s.admin()) as r:
                    data = (await r.json())["data"][0]
                if sum(a["requests"] for a in data["arms"].values()) == 80:
                    break
                await asyncio.sleep(0.05)  # settled requests reach the figures in the background
            assert data["route"] == "chat" and set(data["arms"]) == {"control", "candidate"}
            assert sum(a["feedback"] for a in data["arms"].values()) == 1
            async with http.get(s.base + "/admin/spend?by=tag", headers=s.admin()) as r:
                tags = {x["group"]: x["requests"] for x in (await r.json())["rows"]}
            assert tags["exp.chat=control"] + tags["exp.chat=candidate"] == 80
        import subprocess
        import sys

        from telemetry.serving import ADMIN

        out = subprocess.run([sys.executable, "-m", "switchman.cli", "experiments", "--url", s.base, "--key", ADMIN],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "experiment chat" in out.stdout and "candidate" in out.stdout and "claude" in out.stdout
    finally:
        await stop(s)
    out = subprocess.run([sys.executable, "-m", "switchman.cli", "experiments", "--url", s.base, "--key", "k"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "cannot reach the gateway" in out.stderr


async def test_in_a_server_the_errors_bound_is_computed_off_the_event_loop():
    """A bound not yet cached never blocks the loop: the first look gets None, a worker thread
    fills it, and a later look uses it."""
    import asyncio
    import time

    from switchman.routing import sequential

    import math

    band, horizon, alpha = round(math.log(0.0123) / sequential._BAND), 1234, 0.0321  # a key nothing else computes
    t0 = time.perf_counter()
    assert sequential._bound_now(band, horizon, alpha) is None
    assert time.perf_counter() - t0 < 0.005
    for _ in range(500):
        got = sequential._bound_now(band, horizon, alpha)
        if got is not None:
            break
        await asyncio.sleep(0.01)
    assert got == sequential._bound(band, horizon, alpha)


async def test_a_bandit_arm_learns_from_the_traffic_the_experiment_sends_it(tmp_path):
    # The control arm is a bandit route over a good and a poor model. Its requests are booked under
    # the experiment's route; their feedback and failures must still teach the bandit.
    routes = ("  - {name: learn, policy: {kind: bandit, models: [good, poor, down], explore: 0.05, seed: 2}}\n"
              "  - {name: chat, policy: {kind: experiment, arms: {control: learn, candidate: echo},"
              " split: {control: 90, candidate: 10}}}\n")
    s = await serve(tmp_path, routes=routes, models={"good": FakeModel(), "poor": FakeModel(),
                                                     "down": FakeModel(error_status=500)}, extra_models="""\
  - {name: good, provider: fake, model: good, price: {input: 1, output: 2}}
  - {name: poor, provider: fake, model: poor, price: {input: 1, output: 2}}
  - {name: down, provider: fake, model: down, price: {input: 1, output: 2}}
""")
    try:
        late = Counter()
        async with aiohttp.ClientSession() as http:
            for i in range(140):
                async with http.post(s.base + "/v1/chat/completions", headers=s.admin(), json={
                        "model": "chat", "messages": [{"role": "user", "content": f"q{i}"}]}) as r:
                    assert r.status == 200
                    model, rid = r.headers["x-switchman-model"], r.headers["x-switchman-request-id"]
                if model == "echo":
                    continue  # the candidate arm
                if i >= 80:
                    late[model] += 1
                async with http.post(s.base + "/v1/feedback", headers=s.admin(),
                                     json={"request_id": rid, "score": 1.0 if model == "good" else 0.0}) as r:
                    assert r.status == 201, await r.text()
        assert late["good"] >= 0.8 * sum(late.values()), late
    finally:
        await stop(s)
