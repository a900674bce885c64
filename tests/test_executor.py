"""The executor's timing on a virtual clock: Retry-After, backoff inside the deadline, hedging,
ejection and cool-down — no real waiting."""

from __future__ import annotations

import asyncio
import random

import orjson
import pytest

from switchman import configfile
from switchman.clock import VirtualClock
from switchman.errors import UpstreamError
from switchman.executor import Executor
from switchman.resilience.limiter import ConcurrencyLimit
from switchman.testing.transport import Scripted, ScriptedClient
from switchman.types import ChatRequest, Message, Role, TextPart


def setup(script, top="", route_extra=""):
    names = list(script)
    models = "".join(f"  - {{name: {n}, provider: p{i % 2}, price: {{input: 1, output: 1}}}}\n" for i, n in enumerate(names))
    cfg = configfile.loads(f"""
providers:
  p0: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}
  p1: {{kind: openai, base_url: "http://127.0.0.1:8/v1"}}
models:
{models}
routes:
  - {{name: r, policy: {{kind: first, models: [{', '.join(names)}]}}{route_extra}}}
{top}
""", env={})
    clock = VirtualClock()
    client = ScriptedClient(clock, script)
    ex = Executor(client, cfg.resilience, clock, cfg.models, rng=random.Random(1))
    return ex, clock, client, cfg


def req():
    return ChatRequest(model="r", messages=[Message(Role.USER, [TextPart("hi")])])


async def drive(clock: VirtualClock, coro, step=0.01, limit=120.0):
    """Run ``coro`` while moving virtual time forward; returns its result and the virtual time."""
    task = asyncio.ensure_future(coro)
    while not task.done() and clock.now() < limit:
        await clock.run_for(step)
    return await task, clock.now()


async def test_retry_after_is_honoured_exactly():
    script = {"a": lambda n: Scripted(status=503, retry_after=2.0) if n == 0 else Scripted()}
    ex, clock, client, cfg = setup(script, "retry: {attempts: 2}")
    out, t = await drive(clock, ex.run(req(), [cfg.models["a"]], cfg.routes["r"]))
    assert out.response.text() == "ok"
    assert [c.at for c in client.calls] == [0.0, pytest.approx(2.0, abs=0.02)]


async def test_backoff_never_outlives_the_deadline():
    script = {"a": Scripted(status=503, retry_after=30.0)}
    ex, clock, client, cfg = setup(script, "retry: {attempts: 5}\ndeadline: 10")
    with pytest.raises(UpstreamError):
        await drive(clock, ex.run(req(), [cfg.models["a"]], cfg.routes["r"]))
    assert len(client.calls) == 1, "a Retry-After beyond the deadline is not waited for"
    assert clock.now() < 1.0


async def test_hedge_fires_after_the_delay_and_cancels_the_loser():
    script = {"slow": Scripted(latency=10.0, text="slow"), "fast": Scripted(latency=0.2, text="fast")}
    ex, clock, client, cfg = setup(script, route_extra=", hedge: {after: 0.5}")
    out, t = await drive(clock, ex.run(req(), [cfg.models["slow"], cfg.models["fast"]], cfg.routes["r"]))
    assert out.response.text() == "fast"
    assert client.calls[1].at == pytest.approx(0.5, abs=0.02), "the hedge goes out at `after`"
    assert t == pytest.approx(0.7, abs=0.05)
    assert client.calls[0].cancelled, "the losing attempt is cancelled (its connection closed)"
    assert [a.role for a in out.attempts] == ["first", "hedge"] and out.attempts[0].cancelled


async def test_a_hedge_answering_in_the_same_instant_as_the_first_still_loses():
    """Both answers complete in one turn of the loop: one wins; the other is marked lost, its
    usage kept (the provider bills a whole answer all the same)."""
    script = {"slow": Scripted(latency=1.0, text="slow"), "fast": Scripted(latency=0.5, text="fast")}
    ex, clock, client, cfg = setup(script, route_extra=", hedge: {after: 0.5}")
    out, _ = await drive(clock, ex.run(req(), [cfg.models["slow"], cfg.models["fast"]], cfg.routes["r"]))
    won, = [a for a in out.attempts if not a.cancelled]
    lost, = [a for a in out.attempts if a.cancelled]
    assert out.attempt is won and won.model == out.model.name == out.response.text()
    assert lost.usage is not None and (lost.usage.input_tokens, lost.usage.output_tokens) == (3, 1)


class _OpenStream:
    """An OpenAI stream whose first piece is there at once and whose rest never comes."""

    status, headers = 200, {}

    def __init__(self) -> None:
        self.closed = False

    async def chunks(self, deadline=None):
        try:
            yield (b'data: {"id":"c","object":"chat.completion.chunk","created":0,"model":"m",'
                   b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\n')
            await asyncio.Event().wait()
        finally:
            self.closed = True


async def test_a_streaming_hedge_that_lost_in_the_same_instant_frees_its_connection_and_slot():
    script = {"slow": Scripted(latency=1.0), "fast": Scripted(latency=0.5)}
    ex, clock, client, cfg = setup(script, route_extra=", hedge: {after: 0.5}")
    streams: dict[str, _OpenStream] = {}

    async def request(method, url, headers, body, deadline=None):
        await ScriptedClient.request(client, method, url, headers, body, deadline)  # the scripted wait
        return streams.setdefault(orjson.loads(body)["model"], _OpenStream())

    client.request = request
    ex.limits = {m: ConcurrencyLimit(1, 0, clock) for m in script}
    r = ChatRequest(model="r", messages=[Message(Role.USER, [TextPart("hi")])], stream=True)
    out, _ = await drive(clock, ex.run(r, [cfg.models["slow"], cfg.models["fast"]], cfg.routes["r"]))
    lost, = [a.model for a in out.attempts if a.cancelled]
    assert lost != out.model.name and streams[lost].closed, "the loser's stream is closed, not left open"
    assert ex.limits[lost].in_flight == 0, "and its concurrency slot is free again"


async def test_no_hedge_when_the_first_answers_in_time():
    script = {"a": Scripted(latency=0.1), "b": Scripted()}
    ex, clock, client, cfg = setup(script, route_extra=", hedge: {after: 0.5}")
    out, _ = await drive(clock, ex.run(req(), [cfg.models["a"], cfg.models["b"]], cfg.routes["r"]))
    assert out.model.name == "a" and [c.model for c in client.calls] == ["a"]


async def test_ejection_then_probe_after_cooldown():
    state = {"down": True}
    script = {"a": lambda n: Scripted(status=500) if state["down"] else Scripted(), "b": Scripted()}
    ex, clock, client, cfg = setup(script, "retry: {attempts: 1}\nbreaker: {failures: 2, window: 60, cooldown: 30}")
    models = [cfg.models["a"], cfg.models["b"]]
    for _ in range(5):
        out, _ = await drive(clock, ex.run(req(), models, cfg.routes["r"]))
        assert out.model.name == "b"
    assert sum(c.model == "a" for c in client.calls) == 2, "ejected after 2 failures"
    state["down"] = False
    await clock.run_for(29.0)
    out, _ = await drive(clock, ex.run(req(), models, cfg.routes["r"]))
    assert out.model.name == "b", "still cooling down"
    await clock.run_for(2.0)
    out, _ = await drive(clock, ex.run(req(), models, cfg.routes["r"]))
    assert out.model.name == "a", "the probe after the cooldown re-admits it"


async def test_retry_budget_bounds_upstream_calls_under_total_failure():
    script = {"a": Scripted(status=503, latency=0.05)}
    ex, clock, client, cfg = setup(script, "retry: {attempts: 3, backoff: 0.01, budget: 0.2, min_retries: 3}\n"
                                           "breaker: {failures: 1000}")
    runs = [ex.run(req(), [cfg.models["a"]], cfg.routes["r"]) for _ in range(50)]
    results = await drive(clock, asyncio.gather(*runs, return_exceptions=True))
    assert all(isinstance(r, UpstreamError) for r in results[0])
    # 50 first calls; retries in flight never above max(3, 20% of 50) = 10 at a time
    retries = len(client.calls) - 50
    assert retries <= 2 * 10, retries


async def test_no_retry_to_a_model_its_own_failure_just_ejected():
    script = {"a": Scripted(status=500), "b": Scripted()}
    ex, clock, client, cfg = setup(script, "retry: {attempts: 2, backoff: 0.01}\nbreaker: {failures: 3, cooldown: 60}")
    for _ in range(5):
        out, _ = await drive(clock, ex.run(req(), [cfg.models["a"], cfg.models["b"]], cfg.routes["r"]))
        assert out.model.name == "b"
    assert sum(c.model == "a" for c in client.calls) == 3, "exactly `failures` calls reach it"


async def test_no_retry_after_its_backoff_to_a_model_ejected_meanwhile():
    """Four requests at once on a model answering 500: with failures 3, the third failure ejects
    it while the others' retries wait out their backoff; those retries must not go to it."""
    script = {"a": Scripted(status=500, latency=0.01), "b": Scripted()}
    ex, clock, client, cfg = setup(script, "retry: {attempts: 2, backoff: 0.5}\nbreaker: {failures: 3, cooldown: 60}")
    runs = [ex.run(req(), [cfg.models["a"], cfg.models["b"]], cfg.routes["r"]) for _ in range(4)]
    (outs, _) = await drive(clock, asyncio.gather(*runs))
    assert all(o.model.name == "b" for o in outs)
    first = [c for c in client.calls if c.model == "a"]
    assert len(first) == 4, "the four first calls were already in flight together"
    assert not any(c.at > 0.1 for c in first), "no retry reached it after its ejection"


async def test_hedge_after_p95_uses_the_first_models_latency():
    script = {"a": Scripted(latency=0.01), "b": Scripted(latency=0.01, text="b")}
    ex, clock, client, cfg = setup(script, route_extra=", hedge: {after: p95}")
    models = [cfg.models["a"], cfg.models["b"]]
    for _ in range(30):  # a's observed latency: ~10 ms
        await drive(clock, ex.run(req(), models, cfg.routes["r"]), step=0.005)
    script["a"] = Scripted(latency=3.0)
    clock_before = clock.now()
    out, t = await drive(clock, ex.run(req(), models, cfg.routes["r"]), step=0.005)
    assert out.response.text() == "b"
    assert t - clock_before < 0.2, "hedged after a's p95 (~10 ms, floored at 50 ms), not after a default"


async def test_a_first_token_timeout_moves_to_the_next_model_without_retrying():
    script = {"a": Scripted(latency=5.0), "b": Scripted(text="b")}
    ex, clock, client, cfg = setup(script, "retry: {attempts: 3}")
    slow = cfg.models["a"]
    from dataclasses import replace
    from switchman.config import Timeout

    slow = replace(slow, timeout=Timeout(total=1.0))
    out, t = await drive(clock, ex.run(req(), [slow, cfg.models["b"]], cfg.routes["r"]))
    assert out.response.text() == "b" and [c.model for c in client.calls] == ["a", "b"]
