"""Least-busy counts and bandit posteriors shared by workers through real Redis: each worker sees
the others' calls in flight, feedback learned on one reaches the others and survives a restart,
and Redis down routes on local state and says so."""

from __future__ import annotations

import uuid

import pytest

from switchman.resilience.live import LiveStats
from switchman.routing.bandit import Bandit
from switchman.routing.base import RouteContext
from switchman.routing.live import LeastBusy
from switchman.routing.shared import SharedState
from switchman.types import ChatRequest, Message, Role, TextPart

redis = pytest.importorskip("redis")
URL = "redis://127.0.0.1:6379/0"


def req() -> ChatRequest:
    return ChatRequest(model="r", messages=[Message(Role.USER, [TextPart("hi")])])


@pytest.fixture
def prefix():
    return f"sm-test-{uuid.uuid4().hex[:8]}:"


async def test_least_busy_sees_every_workers_calls_in_flight(prefix):
    a, b = LiveStats(), LiveStats()
    sa, sb = SharedState(URL, prefix, a, {}), SharedState(URL, prefix, b, {})
    try:
        a.inflight["x"] = 6  # worker A is busy on x; worker B has nothing in flight
        assert await sa.tick() and await sb.tick()
        assert b.remote["x"] == 6 and b.inflight["x"] == 0
        policy = LeastBusy(("x", "y"), {})
        for _ in range(20):  # two distinct draws among two models: always x against y
            p = policy.plan(req(), RouteContext({}, b))
            assert p.models[0] == "y" and "across workers" in p.reason
        # a worker that stops renewing its counts drops out
        await sa.close()
        sa = None
        assert await sb.tick()
        assert b.remote["x"] == 0
    finally:
        if sa is not None:
            await sa.close()
        await sb.close()


async def test_bandit_posteriors_are_shared_and_survive_a_restart(prefix):
    def bandit() -> Bandit:
        return Bandit(("good", "bad"), {}, 0.0, explore=0.0)

    one, two = bandit(), bandit()
    s1, s2 = SharedState(URL, prefix, LiveStats(), {"r": one}), SharedState(URL, prefix, LiveStats(), {"r": two})
    try:
        for _ in range(30):
            one.learn("good", 1.0)
            one.learn("bad", 0.0)
        assert await s1.tick() and await s2.tick()
        assert two.arms()["good"].mean > 0.9 and two.arms()["bad"].mean < 0.1
        two.learn("good", 0.0)  # learned on worker two, not yet exchanged: counted once, locally
        assert await s2.tick() and await s1.tick()
        assert one.arms()["good"].alpha == pytest.approx(31) and one.arms()["good"].beta == pytest.approx(2)
        assert two.arms()["good"].alpha == pytest.approx(31) and two.arms()["good"].beta == pytest.approx(2)
    finally:
        await s1.close()
        await s2.close()
    fresh = bandit()  # a restarted worker starts from the totals
    s3 = SharedState(URL, prefix, LiveStats(), {"r": fresh})
    try:
        assert await s3.tick()
        assert fresh.arms()["good"].alpha == pytest.approx(31)
        assert "good" == fresh.plan(req(), RouteContext({})).models[0] or fresh.arms()["good"].mean > 0.9
    finally:
        await s3.close()


async def test_redis_down_routes_on_local_state_and_says_so(prefix):
    live = LiveStats()
    b = Bandit(("m1", "m2"), {}, 0.0, explore=0.0)
    s = SharedState("redis://127.0.0.1:1/0", prefix, live, {"r": b}, timeout=0.05)
    try:
        b.learn("m1", 1.0)
        assert not await s.tick()
        assert "shared counts unreachable" in LeastBusy(("m1", "m2"), {}).plan(req(), RouteContext({}, live)).reason
        assert "shared posteriors unreachable" in b.plan(req(), RouteContext({})).reason
        assert b.pending[(None, "m1")][0] == 1.0  # kept for when Redis is back
    finally:
        await s.close()


async def test_a_canary_is_one_rollout_across_workers(prefix):
    """Two workers' traffic adds up to one rollout: the step is taken once for both, and a
    regression seen in the totals rolls back every worker."""
    import random

    from switchman.routing.experiment import Experiment, ExperimentSpec

    spec = ExperimentSpec(arms=(("control", "a"), ("candidate", "b")), split=(), ramp=(10.0, 50.0, 100.0),
                          min_requests=40, alpha=0.05)
    w1, w2 = Experiment("canary", spec, None, frozenset()), Experiment("canary", spec, None, frozenset())
    s1 = SharedState(URL, prefix, LiveStats(), {}, experiments={"canary": w1})
    s2 = SharedState(URL, prefix, LiveStats(), {}, experiments={"canary": w2})
    rng = random.Random(5)
    try:
        def traffic(e: Experiment, n: int, cand_err: float) -> None:
            """``n`` settled requests on this worker, a tenth of them the candidate's (its share)."""
            for i in range(n):
                arm = "candidate" if i % 10 == 0 else "control"
                e.settled(arm, rng.random() < (cand_err if arm == "candidate" else 0.02), 300.0, 0.001)

        traffic(w1, 150, 0.02)  # 15 candidate requests each: 30 in all, not yet 40
        traffic(w2, 150, 0.02)
        assert await s1.tick() and await s2.tick()
        assert w1.step == w2.step == 0  # neither saw 40 alone, nor together yet
        traffic(w1, 150, 0.02)
        traffic(w2, 150, 0.02)
        assert await s1.tick() and await s2.tick() and await s1.tick()
        assert w1.step == w2.step == 1  # one step, taken once, seen by both
        assert [h["action"] for h in w1.history] == [h["action"] for h in w2.history] == ["start", "step"]
        for _ in range(6):  # now the candidate fails one time in three, on both workers
            traffic(w1, 100, 0.33)
            traffic(w2, 100, 0.33)
            await s1.tick()
            await s2.tick()
        await s1.tick()
        assert w1.rolled_back and w2.rolled_back and "error rate" in w2.rolled_back
        assert w1.shares()[-1] == w2.shares()[-1] == 0.0
    finally:
        await s1.close()
        await s2.close()


async def test_a_shared_canary_is_rolled_back_between_steps_on_the_totals(prefix):
    """With Redis state the error test runs on every worker's figures together at every tick, not
    only when a step's ``min_requests`` came in: a candidate failing half its requests is rolled
    back on all workers before the first step, by one decision, with why in the history."""
    import random

    from switchman.routing.experiment import Experiment, ExperimentSpec

    spec = ExperimentSpec(arms=(("control", "a"), ("candidate", "b")), split=(), ramp=(10.0, 50.0, 100.0),
                          min_requests=200, alpha=0.05)
    w1, w2 = Experiment("canary", spec, None, frozenset()), Experiment("canary", spec, None, frozenset())
    s1 = SharedState(URL, prefix, LiveStats(), {}, experiments={"canary": w1})
    s2 = SharedState(URL, prefix, LiveStats(), {}, experiments={"canary": w2})
    rng = random.Random(7)
    try:
        for _ in range(20):
            for e in (w1, w2):
                for i in range(30):  # 3 candidate requests per worker and tick
                    arm = "candidate" if i % 10 == 0 else "control"
                    e.settled(arm, rng.random() < (0.5 if arm == "candidate" else 0.02), 300.0, 0.001)
            assert await s1.tick() and await s2.tick()
            if w1.rolled_back:
                break
        await s2.tick()
        assert w1.rolled_back and w2.rolled_back == w1.rolled_back
        assert "error rate" in w1.rolled_back and "SPRT" in w1.rolled_back
        assert w1.stats["candidate"].requests < spec.min_requests  # before the first step's review
        assert [h["action"] for h in w2.history] == ["start", "rollback"]  # taken once
        assert w1.shares()[-1] == w2.shares()[-1] == 0.0
    finally:
        await s1.close()
        await s2.close()
