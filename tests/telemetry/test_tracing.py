"""Traces through ``switchman serve`` into a real OTLP/HTTP receiver that decodes the protobuf:
one span per request, one child per attempt, the client's traceparent continued, content only when
asked, and a dead collector costing nothing but a log line."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest

from switchman.telemetry.settings import TracingSettings

from .otlp import Receiver
from .serving import free_port, serve, stop

BODY = {"model": "auto", "messages": [{"role": "user", "content": "trace me"}]}
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"


async def test_spans_continue_the_clients_trace(tmp_path):
    with Receiver() as rx:
        s = await serve(tmp_path, extra=f"tracing: {{endpoint: \"{rx.endpoint}\", service_name: sm-test}}")
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(s.base + "/v1/chat/completions", json=BODY,
                                     headers={**s.admin(), "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01",
                                              "x-switchman-episode": "ep-9"}) as r:
                    assert r.status == 200
                    rid = r.headers["x-switchman-request-id"]
                spans = await asyncio.to_thread(rx.wait_for, 3)
        finally:
            await stop(s)
    by_name = {sp.name: sp for sp in spans}
    req, broken, echo = by_name["chat auto"], by_name["chat broken"], by_name["chat echo"]
    assert req.trace_id == broken.trace_id == echo.trace_id == CLIENT_TRACE
    assert req.parent_span_id == CLIENT_SPAN
    assert broken.parent_span_id == echo.parent_span_id == req.span_id
    assert req.kind == 2 and echo.kind == 3  # SERVER, CLIENT
    assert req.service == "sm-test"
    a = req.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.model"] == "auto"
    assert a["gen_ai.response.model"] == "echo" and a["switchman.request_id"] == rid
    assert a["switchman.route"] == "auto" and a["switchman.reason"] and a["switchman.cost_usd"] > 0
    assert a["switchman.episode"] == "ep-9" and a["switchman.attempts"] == 2
    assert "gen_ai.input.messages" not in a  # content is opt-in
    assert broken.attributes["error.type"] == "server_error" and broken.status == 2  # ERROR
    assert broken.attributes["switchman.attempt.role"] == "first"
    assert echo.attributes["switchman.attempt.role"] == "fallback"
    assert echo.attributes["gen_ai.provider.name"] == "openai" and echo.attributes["server.address"] == "127.0.0.1"
    assert echo.attributes["gen_ai.usage.input_tokens"] > 0
    assert req.start <= broken.start <= echo.start <= echo.end <= req.end


async def test_content_only_when_configured_and_a_bad_traceparent_starts_a_new_trace(tmp_path):
    with Receiver() as rx:
        s = await serve(tmp_path, extra=f"tracing: {{endpoint: \"{rx.endpoint}\", content: true}}")
        try:
            async with aiohttp.ClientSession() as http:
                async with http.post(s.base + "/v1/chat/completions", json={**BODY, "model": "echo"},
                                     headers={**s.admin(), "traceparent": "00-zz-not-a-trace"}) as r:
                    assert r.status == 200
                spans = await asyncio.to_thread(rx.wait_for, 2)
        finally:
            await stop(s)
    req = next(sp for sp in spans if sp.name == "chat echo" and sp.kind == 2)
    assert req.parent_span_id == "" and len(req.trace_id) == 32
    assert "trace me" in req.attributes["gen_ai.input.messages"]
    assert req.attributes["gen_ai.output.messages"]


async def test_a_dead_collector_costs_a_log_line_not_a_request(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/v1/traces"
    s = await serve(tmp_path, extra=f"tracing: {{endpoint: \"{dead}\", timeout: 1, queue: 64}}")
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                results = await asyncio.gather(*(http.post(s.base + "/v1/chat/completions", json={**BODY, "model": "echo"},
                                                           headers=s.admin()) for _ in range(40)))
                assert [r.status for r in results] == [200] * 40
                for r in results:
                    r.release()
                await asyncio.sleep(0.7)  # let the exporter try (and fail) between bursts
    finally:
        await stop(s)
    log = s.log.read_text()
    assert log.count("could not export") == 1, log  # one line per minute, not per batch
    assert "Traceback" not in log and "Failed to export" not in log


def test_the_extra_is_named_when_missing(monkeypatch):
    import importlib

    for mod in [m for m in sys.modules if m.startswith("opentelemetry")]:
        monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    import switchman.telemetry.tracing as tracing

    fresh = importlib.reload(tracing)
    try:
        with pytest.raises(ImportError, match=r"switchman\[otel\]"):
            fresh.Tracing(TracingSettings(endpoint="http://127.0.0.1:4318/v1/traces"))
    finally:
        monkeypatch.undo()
        importlib.reload(tracing)
