"""Budget pacing on the injected clock: a simulated day whose traffic rises and falls, a bandit
choosing between a dear good model and a cheap fair one, and a $50/day route budget. The paced
route ends the day within 5% of $50 with quality above what spending freely until a soft limit
and then downgrading gives; both controllers; the next day starts from what was learnt."""

from __future__ import annotations

import math
import random

import pytest

from switchman import configfile
from switchman.clock import VirtualClock
from switchman.errors import ConfigError
from switchman.routing.bandit import Bandit
from switchman.routing.base import RouteContext
from switchman.routing.pacing import Pacer, PaceSpec
from switchman.types import ChatRequest, Message, Role, TextPart

REQ = ChatRequest(model="r", messages=[Message(Role.USER, [TextPart("hi")])])
COST = {"dear": 0.02, "cheap": 0.001}
QUALITY = {"dear": 0.9, "cheap": 0.7}
DAY = 86400
STEP = 60
MIDNIGHT = 1_796_342_400  # 2026-12-04 00:00 UTC: pacing windows are the calendar's


def arrivals(t: float) -> int:
    """Requests in the minute starting at ``t``: quiet at night, a peak in the afternoon (10,000 a day)."""
    return round(10_000 / 1440 * (1 + 0.8 * math.sin(2 * math.pi * t / DAY - math.pi / 2)))


def paced_day(controller: str, days: int = 1) -> list[tuple[float, float]]:
    clock = VirtualClock(MIDNIGHT)
    b = Bandit(("dear", "cheap"), QUALITY, explore=0.0, prior=200, rng=random.Random(1))
    b.pacer = Pacer(PaceSpec(50.0, "day", controller), clock, start_tradeoff=1.0, wall=clock.now)
    ctx = RouteContext(models={})
    out = []
    for _ in range(days):
        spent = quality = n = 0
        for step in range(DAY // STEP):
            for _ in range(arrivals(step * STEP)):
                m = b.plan(REQ, ctx).models[0]
                b.cost(m, COST[m])  # as the gateway's settle step feeds it
                b.pacer.spend(COST[m])
                spent += COST[m]
                quality += QUALITY[m]
                n += 1
            clock.advance(STEP)
        out.append((spent, quality / n))
    return out


def downgrade_day() -> tuple[float, float]:
    """The soft-threshold way: the dear model until 80% of the budget is spent, then the cheap one."""
    spent = quality = n = 0
    for step in range(DAY // STEP):
        for _ in range(arrivals(step * STEP)):
            m = "dear" if spent < 40.0 else "cheap"
            spent += COST[m]
            quality += QUALITY[m]
            n += 1
    return spent, quality / n


@pytest.mark.parametrize("controller", ["multiplicative", "pid"])
def test_a_day_of_varying_traffic_ends_on_budget(controller):
    days = paced_day(controller, days=3)
    free_spend = sum(arrivals(s * STEP) for s in range(DAY // STEP)) * COST["dear"]
    assert free_spend > 150  # unpaced, the route would spend three times its budget
    # The first day nothing is known of the traffic: the plan is spread evenly, and a day that ebbs
    # toward midnight leaves the PID controller up to 6% under (benchmarks/pacing.py has the figure
    # through the gateway). From the second day the plan has the first day's shape: within 5%.
    assert abs(days[0][0] - 50) <= 3.0, days[0]
    for spent, _ in days[1:]:
        assert abs(spent - 50) <= 2.5, days
    assert all(spent <= 50.0 for spent, _ in days), days  # never past the budget: a hard limit there refuses nothing
    _, downgraded = downgrade_day()
    # spread over the day, the same budget buys better answers (here, with two models, better means
    # more of the dear one: so from the day the spend is on plan)
    assert all(q > downgraded for _, q in days[1:])


def test_the_second_days_plan_follows_the_first_days_traffic():
    clock = VirtualClock(MIDNIGHT)
    p = Pacer(PaceSpec(50.0, "day"), clock, wall=clock.now)
    for step in range(DAY // STEP):  # all the traffic between 12:00 and 18:00
        if 720 <= step < 1080:
            p.tradeoff()
        clock.advance(STEP)
    p.tradeoff()  # the next day
    assert p.planned() == pytest.approx(0.0, abs=1e-6)
    clock.advance(12 * 3600)
    noon = p.planned()
    clock.advance(6 * 3600)
    # by noon only the even fifth of the plan (half a day of it); by 18:00 nearly everything
    assert noon == pytest.approx(0.98 * 50 * 0.2 * 0.5, rel=0.02)
    assert p.planned() == pytest.approx(0.98 * 50 * (0.2 * 0.75 + 0.8), rel=0.02)


def test_the_reason_says_where_the_pace_stands():
    clock = VirtualClock(MIDNIGHT)
    b = Bandit(("dear", "cheap"), QUALITY, rng=random.Random(2))
    b.pacer = Pacer(PaceSpec(50.0, "day"), clock, wall=clock.now)
    clock.advance(DAY / 2)
    b.pacer.spend(30.0)
    assert "pace: lambda=" in b.plan(REQ, RouteContext(models={})).reason and "$30.0000 spent of $24.5000 planned" in \
        b.plan(REQ, RouteContext(models={})).reason  # the plan aims at 98% of the budget


@pytest.mark.parametrize("pace,key,words", [
    ("{usd: 50}", "pace", "missing required key 'per'"),
    ("{usd: 50, per: fortnight}", "pace.per", "must be one of hour, day, week, month"),
    ("{usd: -5, per: day}", "pace.usd", "greater than 0"),
    ("{usd: 5, per: day, controller: bangbang}", "pace.controller", "multiplicative or pid"),
])
def test_config_errors(pace, key, words):
    text = f"""providers: {{p: {{kind: openai, api_key: k}}}}
models: [{{name: a, provider: p, model: gpt-4o-mini}}, {{name: b, provider: p, model: gpt-4o}}]
routes: [{{name: r, policy: {{kind: bandit, models: [a, b]}}, pace: {pace}}}]
"""
    with pytest.raises(ConfigError) as e:
        configfile.loads(text, file="s.yaml", env={})
    assert key in str(e.value) and words in str(e.value)
    first = text.replace("kind: bandit, models: [a, b]", "kind: first, models: [a, b]").replace(pace, "{usd: 5, per: day}")
    with pytest.raises(ConfigError) as e:
        configfile.loads(first, file="s.yaml", env={})
    assert "a bandit" in str(e.value)


async def test_a_paced_route_over_http(tmp_path):
    import aiohttp

    from switchman.testing.fake_upstream import FakeModel
    from telemetry.serving import serve, stop

    s = await serve(tmp_path, models={"dear": FakeModel(), "cheap": FakeModel()}, extra_models="""\
  - {name: dear, provider: fake, model: dear, price: {input: 30, output: 60}}
  - {name: cheap, provider: fake, model: cheap, price: {input: 0.1, output: 0.2}}
""", routes="  - {name: paced, policy: {kind: bandit, models: [dear, cheap], quality: {dear: 0.9, cheap: 0.7}}, "
             "pace: {usd: 1, per: day}}\n")
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(5):
                async with http.post(s.base + "/v1/chat/completions", headers=s.admin(),
                                     json={"model": "paced", "messages": [{"role": "user", "content": f"q{i}"}]}) as r:
                    assert r.status == 200
                    reason = r.headers["x-switchman-reason"]
        assert reason.startswith("bandit: ") and "pace: lambda=" in reason and "planned" in reason
    finally:
        await stop(s)


def test_pacing_steers_a_learned_router_too(tmp_path):
    """A learned policy with a tradeoff, paced: its λ moves so the day's spend lands near the
    budget, where quality-first (λ = 0) would spend twice it. The reason shows the pace."""
    from switchman.routing.learned import Learned, Router

    from .test_policies import _router_file

    router = Router.load(_router_file(tmp_path))
    clock = VirtualClock(MIDNIGHT)
    pol = Learned(router, tradeoff=0.0)
    pol.pacer = Pacer(PaceSpec(50.0, "day"), clock, start_tradeoff=1.0, wall=clock.now)
    cost = {"small-model": 0.001, "dear": 0.01}
    prompts = [ChatRequest(model="r", messages=[Message(Role.USER, [TextPart(t)])]) for t in (
        "compute 12 times 7", "write a poem about the sea", "compute 3 times 9", "a poem of dogs and cats")]
    unpaced = Learned(router, tradeoff=0.0)
    days = []
    for _ in range(2):
        spent, free = 0.0, 0.0
        for step in range(DAY // STEP):
            for i in range(arrivals(step * STEP)):
                req = prompts[i % 4]
                p = pol.plan(req, RouteContext({}))
                m = p.models[0]
                pol.pacer.spend(cost[m])
                spent += cost[m]
                free += cost[unpaced.plan(req, RouteContext({})).models[0]]
            clock.advance(STEP)
        days.append((spent, free))
    assert "pace: " in p.reason
    # Day 1 the plan is even, and from 20:00 this route cannot spend at the plan's rate even with
    # every prompt on the dear model (λ at its floor): a controller that keeps to the plan through
    # the day ends it under (the multiplicative one too, at $43.9). From day 2 the plan has the
    # shape of day 1's traffic: within 5%.
    assert 0.85 * 50 <= days[0][0] <= 50, days
    assert abs(days[1][0] - 50) <= 2.5, days
    assert min(free for _, free in days) > 80, days  # the same traffic, quality first


def test_a_pid_paced_route_started_far_below_the_lambda_its_budget_needs_does_not_run_ahead():
    """Day 1, the PID starting at λ 1 where the budget needs λ ≈ 10 (the dear model's $0.02 against
    0.2 of quality): it finds λ without spending ahead of the plan (it used to run $12 ahead by
    mid-morning, $30 spent at noon of $24.5 planned, then starve the evening at a high λ), so the
    day's quality beats the soft-threshold downgrade's."""
    clock = VirtualClock(MIDNIGHT)
    b = Bandit(("dear", "cheap"), QUALITY, explore=0.0, prior=200, rng=random.Random(1))
    b.pacer = Pacer(PaceSpec(50.0, "day", "pid"), clock, start_tradeoff=1.0, wall=clock.now)
    spent = quality = n = 0
    ahead = []
    for step in range(DAY // STEP):
        for _ in range(arrivals(step * STEP)):
            m = b.plan(REQ, RouteContext(models={})).models[0]
            b.cost(m, COST[m])
            b.pacer.spend(COST[m])
            spent += COST[m]
            quality += QUALITY[m]
            n += 1
        clock.advance(STEP)
        ahead.append(spent - b.pacer.planned())
    assert max(ahead) <= 2.5, max(ahead)  # 5% of the budget
    assert ahead[719] <= 2.5  # noon
    assert abs(spent - 50) <= 2.5, spent  # the issue's ±5%
    assert spent <= 50.0, spent  # it used to end at $50.14: the guard sends the last minutes to the cheap model
    assert quality / n > downgrade_day()[1]


def test_pacing_is_accepted_where_a_price_of_cost_exists():
    base = """providers: {{p: {{kind: openai, api_key: k}}}}
models: [{{name: a, provider: p, model: gpt-4o-mini}}, {{name: b, provider: p, model: gpt-4o}}]
routes: [{{name: r, policy: {policy}, pace: {{usd: 5, per: day}}}}]
"""
    with pytest.raises(ConfigError) as e:
        configfile.loads(base.format(policy="{kind: weighted, models: {a: 1, b: 1}}"), file="s.yaml", env={})
    assert "a learned policy with a tradeoff" in str(e.value)


def test_windows_are_the_calendars_so_a_pacer_started_mid_day_plans_for_what_is_left():
    clock = VirtualClock(MIDNIGHT + 15 * 3600)  # a gateway started at 15:00 UTC
    p = Pacer(PaceSpec(48.0, "day"), clock, wall=clock.now)
    assert p.planned() == pytest.approx(0.98 * 30.0)  # 15 of 24 hours of $48 (aimed at 98%) are behind us
    clock.advance(9 * 3600 + 60)  # past midnight: a new day, planned from zero again
    p.spend(1.0)
    assert p.window_start == MIDNIGHT + DAY and p.spent == 1.0 and p.planned() == pytest.approx(0.98 * 48 / 1440)
    hourly = Pacer(PaceSpec(1.0, "hour"), clock, wall=clock.now)
    assert hourly.window_end - hourly.window_start == 3600 and hourly.window_start % 3600 == 0


def test_a_paced_cheapest_route_moves_its_quality_bar_and_ends_the_day_on_budget():
    from switchman.routing.cheapest import Cheapest
    from switchman.config import ModelSpec, Price, ProviderSpec
    from decimal import Decimal

    prov = ProviderSpec("p", "openai", "openai", "http://x")
    models = {"dear": ModelSpec("dear", prov, "dear", Price(Decimal(0), Decimal(20000))),  # $0.02 a token
              "cheap": ModelSpec("cheap", prov, "cheap", Price(Decimal(0), Decimal(1000)))}
    clock = VirtualClock(MIDNIGHT)
    pol = Cheapest(("dear", "cheap"), min_quality=0.8, quality=QUALITY, output_tokens=1)
    pol.pacer = Pacer(PaceSpec(50.0, "day"), clock, wall=clock.now)
    ctx = RouteContext(models)
    assert pol.plan(REQ, ctx).models[0] == "dear"  # on plan: the configured bar, 0.8, only dear meets
    spent = quality = n = 0
    for step in range(DAY // STEP):
        for _ in range(arrivals(step * STEP)):
            p = pol.plan(REQ, ctx)
            m = p.models[0]
            pol.pacer.spend(COST[m])
            spent += COST[m]
            quality += QUALITY[m]
            n += 1
        clock.advance(STEP)
    assert abs(spent - 50) <= 2.5, spent
    assert quality / n > downgrade_day()[1]
    assert "pace: lambda=" in p.reason and ", bar " in p.reason


async def test_with_redis_every_worker_paces_on_the_sum_of_what_all_spent():
    import uuid

    redis = pytest.importorskip("redis")
    from switchman.resilience.live import LiveStats
    from switchman.routing.shared import SharedState

    prefix = f"sm-test-{uuid.uuid4().hex[:8]}:"
    clock = VirtualClock(MIDNIGHT + 6 * 3600)
    one, two = (Pacer(PaceSpec(50.0, "day"), clock, wall=clock.now) for _ in range(2))
    s1 = SharedState("redis://127.0.0.1:6379/0", prefix, LiveStats(), {}, pacers={"r": one})
    s2 = SharedState("redis://127.0.0.1:6379/0", prefix, LiveStats(), {}, pacers={"r": two})
    try:
        one.spend(4.0)
        two.spend(6.0)
        assert await s1.tick() and await s2.tick() and await s1.tick()
        assert one.spent == two.spent == 10.0
        again = Pacer(PaceSpec(50.0, "day"), clock, wall=clock.now)  # a worker restarted: it reads the total
        s3 = SharedState("redis://127.0.0.1:6379/0", prefix, LiveStats(), {}, pacers={"r": again})
        assert await s3.tick() and again.spent == 10.0
        await s3.close()
    finally:
        await s1.close()
        await s2.close()
        r = redis.Redis()
        for k in r.scan_iter(prefix + "*"):
            r.delete(k)


def test_pace_is_accepted_on_cheapest_and_the_error_lists_what_pacing_steers():
    base = """providers: {{p: {{kind: openai, api_key: k}}}}
models: [{{name: a, provider: p, model: gpt-4o-mini}}, {{name: b, provider: p, model: gpt-4o}}]
routes: [{{name: r, policy: {policy}, pace: {{usd: 5, per: day, controller: multiplicative}}}}]
"""
    cfg = configfile.loads(base.format(policy="{kind: cheapest, models: [a, b], min_quality: 0.8, "
                                              "quality: {a: 0.7, b: 0.9}}"), file="s.yaml", env={})
    assert cfg.routes["r"].pace == PaceSpec(5.0, "day", "multiplicative", 60.0)
    with pytest.raises(ConfigError) as e:
        configfile.loads(base.format(policy="{kind: least-latency, models: [a, b]}"), file="s.yaml", env={})
    assert "s.yaml" in str(e.value) and "routes[0].pace" in str(e.value)
    assert "a bandit, cheapest, a learned policy with a tradeoff" in str(e.value)


async def test_a_paced_cheapest_route_over_http_lowers_its_bar_when_spending_runs_ahead(tmp_path):
    """Through the gateway over loopback HTTP, on the injected clock: a route allowed $0.01 a day
    answers by the dear model at its configured bar (only the dear model meets 0.8), runs ahead of its
    plan at once (a dear answer is $0.0002 at 00:00, when the plan is near $0), and within a few
    minutes its bar has dropped so the cheap model answers; the reason shows the pace and the bar."""
    import time

    import aiohttp

    from switchman.app import App
    from switchman.gateway import Gateway
    from switchman.http.server import HttpServer
    from switchman.metering import Metering
    from switchman.testing.fake_upstream import FakeModel, FakeUpstream

    up = FakeUpstream({"dear": FakeModel(), "cheap": FakeModel()})
    await up.start()
    cfg = configfile.loads(f"""providers: {{fake: {{kind: openai, base_url: "{up.url('openai')}", api_key: k}}}}
models:
  - {{name: dear, provider: fake, model: dear, price: {{input: 30, output: 60}}}}
  - {{name: cheap, provider: fake, model: cheap, price: {{input: 0.1, output: 0.2}}}}
routes:
  - {{name: paced, policy: {{kind: cheapest, models: [dear, cheap], min_quality: 0.8, quality: {{dear: 0.9, cheap: 0.7}}}},
     pace: {{usd: 0.01, per: day, controller: multiplicative}}}}
auth: {{admin_key: sk-admin}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
""", file="s.yaml", env={})
    clock = VirtualClock()
    gw = Gateway(cfg, clock=clock)
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter))
    port = await server.start("127.0.0.1", 0)
    wall = time.time()  # the pacer's window is the UTC day: begin just after the next midnight
    clock.advance((math.floor(wall / DAY) + 1) * DAY - wall + 5)
    seen = []
    try:
        async with aiohttp.ClientSession() as http:
            for i in range(30):
                async with http.post(f"http://127.0.0.1:{port}/v1/chat/completions",
                                     headers={"authorization": "Bearer sk-admin"},
                                     json={"model": "paced", "messages": [{"role": "user", "content": f"q{i}"}]}) as r:
                    assert r.status == 200, await r.text()
                    seen.append((r.headers["x-switchman-model"], r.headers["x-switchman-reason"]))
                if seen[-1][0] == "cheap":
                    break
                clock.advance(60)  # the pacer adjusts once a minute of the gateway's clock
    finally:
        await server.stop(grace=0.2)
        await meter.close()
        await gw.close()
        await up.stop(grace=0.1)
    model, reason = seen[0]
    assert model == "dear" and "cheapest:dear" in reason and "pace: lambda=1," in reason and "bar 0.80" in reason
    model, reason = seen[-1]
    assert model == "cheap" and len(seen) <= 5, seen
    bar = float(reason.rsplit("bar ", 1)[1])
    assert bar <= 0.70 and "pace: lambda=" in reason and "spent of" in reason


def test_past_the_guard_the_route_takes_its_cheapest_model_until_the_window_ends():
    clock = VirtualClock(MIDNIGHT + 20 * 3600)  # 20:00
    b = Bandit(("dear", "cheap"), QUALITY, explore=0.0, prior=200, rng=random.Random(1))
    b.pacer = Pacer(PaceSpec(50.0, "day", "pid"), clock, start_tradeoff=0.001, wall=clock.now)
    b.cost("dear", COST["dear"])
    b.cost("cheap", COST["cheap"])
    assert b.plan(REQ, RouteContext(models={})).models[0] == "dear"  # λ near 0: quality wins
    b.pacer.spend(49.80)  # 99.6% of the day's budget, early
    plan = b.plan(REQ, RouteContext(models={}))
    assert plan.models[0] == "cheap" and "99.5% of the $50 budget: the cheapest model until the day ends" in plan.reason
    assert b.pacer.lam == pytest.approx(0.001)  # λ is the controller's still
    clock.advance(4 * 3600 + 60)  # the next day: spend from zero, the guard is off, λ the controller's
    assert "pace: lambda=" in b.plan(REQ, RouteContext(models={})).reason and not b.pacer.guarded
