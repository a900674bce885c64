"""Resilience over real loopback HTTP: retries, fallbacks, cool-downs, ejection, health checks,
hedging, deadlines, concurrency limits, cut streams, degrade and escalate — each as a client
would notice it."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from switchman import configfile
from switchman.app import App
from switchman.gateway import Gateway
from switchman.http.server import HttpServer, Response
from switchman.testing.fake_upstream import FakeModel, FakeUpstream


class Stack:
    def __init__(self, fake, gw, server, base):
        self.fake, self.gw, self.server, self.base = fake, gw, server, base

    def calls(self, upstream_id: str) -> int:
        return sum(1 for r in self.fake.requests if r.model == upstream_id)

    async def chat(self, model: str, stream: bool = False, headers: dict | None = None, content: str = "hi"):
        body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as s:
            async with s.post(self.base + "/v1/chat/completions", json=body, headers=headers or {}) as r:
                text = await r.text()
                return r.status, r.headers, text


async def start(models: dict[str, FakeModel], yaml_models: str, routes: str = "", top: str = "") -> Stack:
    fake = FakeUpstream(models)
    await fake.start()
    text = f"""
providers:
  pa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "k"}}
  pb: {{kind: anthropic, base_url: "{fake.url('anthropic')}", api_key: "k"}}
models:
{yaml_models}
routes:
{routes}
{top}
"""
    cfg = configfile.loads(text, env={})
    gw = Gateway(cfg)
    server = HttpServer(App(gw))
    port = await server.start("127.0.0.1", 0)
    return Stack(fake, gw, server, f"http://127.0.0.1:{port}")


async def stop(s: Stack) -> None:
    await s.server.stop(grace=0.2)
    await s.gw.close()
    await s.fake.stop(grace=0.1)


def model(name, provider="pa", upstream=None, extra=""):
    return f"  - {{name: {name}, provider: {provider}, model: {upstream or name}, price: {{input: 1, output: 2}}{extra}}}\n"


async def test_retries_then_falls_back_to_another_provider_first():
    s = await start(
        {"a1": FakeModel(error_status=500), "a2": FakeModel(), "b1": FakeModel()},
        model("a1") + model("a2") + model("b1", "pb"),
        "  - {name: r, policy: {kind: first, models: [a1, a2, b1]}}",
        "retry: {attempts: 3, backoff: 0.01}",
    )
    try:
        status, h, _ = await s.chat("r")
        assert status == 200
        assert s.calls("a1") == 3, "the failing model is retried up to retry.attempts"
        assert h["x-switchman-model"] == "b1", "after a1 (provider pa) failed, pb's model goes before a2"
        assert h["x-switchman-attempts"] == "4"
        assert s.calls("a2") == 0
    finally:
        await stop(s)


async def test_rate_limited_model_cools_down_for_retry_after_and_traffic_overflows():
    s = await start(
        {"lim": FakeModel(error_status=429, retry_after=30), "spare": FakeModel()},
        model("lim") + model("spare"),
        "  - {name: r, policy: {kind: first, models: [lim, spare]}}",
        "retry: {attempts: 3, backoff: 0.01}",
    )
    try:
        status, h, _ = await s.chat("r")
        assert status == 200 and h["x-switchman-model"] == "spare"
        assert s.calls("lim") == 1, "a 429 is not retried on the same model"
        for _ in range(5):
            status, h, _ = await s.chat("r")
            assert status == 200 and h["x-switchman-model"] == "spare"
            assert "cooling" in h["x-switchman-reason"]
        assert s.calls("lim") == 1, "no request reaches it before its Retry-After passes"
        status, h, body = await s.chat("lim")  # asked for by name, while cooling: 429 with retry-after
        assert status == 503 or status == 429
        assert int(h["retry-after"]) > 20
    finally:
        await stop(s)


async def test_outlier_ejection_after_failures_and_health_check_readmits():
    s = await start(
        {"bad": FakeModel(error_status=503), "good": FakeModel()},
        model("bad") + model("good"),
        "  - {name: r, policy: {kind: first, models: [bad, good]}}",
        "retry: {attempts: 1}\nbreaker: {failures: 3, window: 60, cooldown: 60, max_ejection_percent: 50}",
    )
    try:
        for _ in range(10):
            status, h, _ = await s.chat("r")
            assert status == 200 and h["x-switchman-model"] == "good"
        assert s.calls("bad") == 3, "ejected after `failures` failures; no more traffic reaches it"
        state = {m["model"]: m for m in s.gw.executor.outliers.snapshot()}
        assert state["bad"]["state"] in ("ejected", "EJECTED")
        async with aiohttp.ClientSession() as c:
            async with c.get(s.base + "/admin/breakers") as r:
                assert "bad" in await r.text()
        # the model recovers; an active probe re-admits it without waiting for the cooldown
        s.fake.models["bad"] = FakeModel()
        assert await s.gw.health.check_once() == ["bad"]
        status, h, _ = await s.chat("r")
        assert h["x-switchman-model"] == "bad"
    finally:
        await stop(s)


async def test_hedge_answers_from_the_second_model_and_cancels_the_slow_one():
    s = await start(
        {"slow": FakeModel(latency=3.0), "fast": FakeModel(latency=0.01)},
        model("slow") + model("fast"),
        "  - {name: r, policy: {kind: first, models: [slow, fast]}, hedge: {after: 0.1}}",
    )
    try:
        t0 = time.monotonic()
        status, h, _ = await s.chat("r")
        took = time.monotonic() - t0
        assert status == 200 and h["x-switchman-model"] == "fast"
        assert took < 1.0
        assert "hedge lost slow" in h["x-switchman-reason"] and h["x-switchman-attempts"] == "2"
        t0 = time.monotonic()
        status, h, text = await s.chat("r", stream=True)
        assert status == 200 and h["x-switchman-model"] == "fast" and "[DONE]" in text
        assert time.monotonic() - t0 < 1.0
    finally:
        await stop(s)


async def test_client_deadline_header_bounds_the_whole_request():
    s = await start({"hang": FakeModel(hang=True)}, model("hang"), "  - {name: r, policy: {kind: first, models: [hang]}}")
    try:
        t0 = time.monotonic()
        status, h, body = await s.chat("r", headers={"x-switchman-timeout": "0.3"})
        assert status == 504 and time.monotonic() - t0 < 1.5
        status, _, body = await s.chat("r", headers={"x-switchman-timeout": "soon"})
        assert status == 400 and "x-switchman-timeout" in body
    finally:
        await stop(s)


async def test_first_token_timeout_moves_to_the_fallback():
    s = await start(
        {"sleepy": FakeModel(ttft=2.0), "quick": FakeModel()},
        model("sleepy", extra=", timeout: {first_token: 0.2}") + model("quick"),
        "  - {name: r, policy: {kind: first, models: [sleepy, quick]}}",
    )
    try:
        t0 = time.monotonic()
        status, h, text = await s.chat("r", stream=True)
        assert status == 200 and h["x-switchman-model"] == "quick" and "[DONE]" in text
        assert time.monotonic() - t0 < 1.0
        assert "sleepy:timeout" in h["x-switchman-reason"]
    finally:
        await stop(s)


async def test_concurrency_limit_overflows_to_the_next_model():
    s = await start(
        {"one": FakeModel(latency=0.3), "other": FakeModel()},
        model("one", extra=", limits: {concurrency: 1}") + model("other"),
        "  - {name: r, policy: {kind: first, models: [one, other]}}",
    )
    try:
        results = await asyncio.gather(*(s.chat("r") for _ in range(3)))
        answered = sorted(h["x-switchman-model"] for _, h, _ in results)
        assert answered == ["one", "other", "other"]
    finally:
        await stop(s)


async def test_cut_stream_resumes_from_a_fallback_into_one_answer():
    s = await start(
        {"cutter": FakeModel(reply="The first half of the answer, then", chunks=6, cut_after=3),
         "mender": FakeModel(reply=" the second half.")},
        model("cutter") + model("mender"),
        "  - {name: r, policy: {kind: first, models: [cutter, mender]}, stream: {on_cut: resume}}\n"
        "  - {name: plain, policy: {kind: first, models: [cutter, mender]}}",
    )
    try:
        status, h, text = await s.chat("r", stream=True)
        assert status == 200
        chunks = [json.loads(l[6:]) for l in text.splitlines() if l.startswith("data: {")]
        assert not any("error" in c for c in chunks)
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
        assert content.startswith("The first") and content.endswith(" the second half.")
        assert text.rstrip().endswith("data: [DONE]")
        # the mender was told what was already said
        cont = s.fake.requests[-1].json["messages"]
        assert cont[-2]["role"] == "assistant" and cont[-2]["content"].startswith("The first")
        # without on_cut: resume the client gets a clean error event and the end
        status, h, text = await s.chat("plain", stream=True)
        assert status == 200 and '"error"' in text and text.rstrip().endswith("data: [DONE]")
    finally:
        await stop(s)


async def test_degrade_reply_and_escalation_webhook_when_everything_fails():
    got: list[dict] = []

    async def hook(req):
        got.append(json.loads(req.body))
        return Response(204)

    hook_server = HttpServer(hook)
    hook_port = await hook_server.start("127.0.0.1", 0)
    s = await start(
        {"x": FakeModel(error_status=500), "y": FakeModel(error_status=503)},
        model("x") + model("y", "pb"),
        "  - name: r\n    policy: {kind: first, models: [x, y]}\n    degrade: {reply: 'We are busy; try again soon.'}\n"
        f"    escalate: {{webhook: 'http://127.0.0.1:{hook_port}/alert'}}\n"
        "  - {name: strict, policy: {kind: first, models: [x, y]}}",
        "retry: {attempts: 1}",
    )
    try:
        status, h, body = await s.chat("r")
        assert status == 200 and h["x-switchman-degraded"] == "true"
        assert json.loads(body)["choices"][0]["message"]["content"] == "We are busy; try again soon."
        status, h, body = await s.chat("strict")
        assert status == 503 and "x:server_error(500)" in body and "y:overloaded" in body
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.02)
        assert len(got) == 1 and got[0]["route"] == "r", "a degraded answer is still escalated; 'strict' has no hook"
        assert {e["model"] for e in got[0]["errors"]} == {"x", "y"}
    finally:
        await stop(s)
        await hook_server.stop()


async def test_escalation_posts_the_error_chain():
    got: list[dict] = []

    async def hook(req):
        got.append(json.loads(req.body))
        return Response(204)

    hook_server = HttpServer(hook)
    hook_port = await hook_server.start("127.0.0.1", 0)
    s = await start(
        {"x": FakeModel(error_status=500)},
        model("x"),
        f"  - {{name: r, policy: {{kind: first, models: [x]}}, escalate: {{webhook: 'http://127.0.0.1:{hook_port}/'}}}}",
        "retry: {attempts: 1}",
    )
    try:
        status, h, _ = await s.chat("r")
        assert status == 502
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.01)
        assert got and got[0]["request_id"] == h["x-switchman-request-id"]
        assert got[0]["errors"][0]["model"] == "x" and got[0]["errors"][0]["status"] == 500
    finally:
        await stop(s)
        await hook_server.stop()
