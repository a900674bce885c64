"""Hostile upstreams (F4, F5, F9 of the probe): the gateway in-process, a raw asyncio upstream on
loopback that misbehaves as told, the client over a real socket."""

from __future__ import annotations

import asyncio
import json

import pytest

from switchman import configfile
from switchman.app import App
from switchman.gateway import Gateway
from switchman.http.server import HttpServer


class Evil:
    """An OpenAI-wire upstream: ``answer(body) -> bytes`` decides the whole raw response."""

    def __init__(self) -> None:
        self.answer = lambda body: b"HTTP/1.1 500 x\r\ncontent-length: 0\r\n\r\n"
        self.sent = 0
        self.calls = 0
        self.stream: bytes | None = None  # sent again and again, as fast as the gateway takes it

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            head = await r.readuntil(b"\r\n\r\n")
            n = int(next(x.split(b":")[1] for x in head.lower().split(b"\r\n") if x.startswith(b"content-length")))
            body = json.loads(await r.readexactly(n))
            self.calls += 1
            w.write(self.answer(body))
            if self.stream is not None:
                while self.sent < 1 << 30:
                    w.write(self.stream)
                    await w.drain()
                    self.sent += len(self.stream)
            await w.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()


@pytest.fixture
async def evil_gw():
    evil = Evil()
    up = await asyncio.start_server(evil.handle, "127.0.0.1", 0)
    port = up.sockets[0].getsockname()[1]
    cfg = configfile.loads(f"""
providers:
  evil: {{kind: openai, base_url: "http://127.0.0.1:{port}/v1", api_key: "up"}}
models:
  - {{name: bad, provider: evil, model: bad, price: {{input: 1, output: 2}}, fallbacks: [good]}}
  - {{name: good, provider: evil, model: good, price: {{input: 1, output: 2}}}}
  - {{name: alone, provider: evil, model: alone, price: {{input: 1, output: 2}}}}
retry: {{attempts: 1, max_retry_after: 60}}
""", file="t.yaml", env={})
    gw = Gateway(cfg)
    server = HttpServer(App(gw))
    gport = await server.start("127.0.0.1", 0)
    yield evil, gw, gport
    await server.stop(grace=0.1)
    await gw.close()
    up.close()


def _ok(model: str) -> bytes:
    b = json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": model, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%b" % (len(b), b)


async def chat(port: int, model: str, stream: bool = False) -> tuple[int, dict, bytes]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]}).encode()
    w.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body))
    async with asyncio.timeout(20):
        got = await r.read()
    w.close()
    head, _, rest = got.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(x.split(": ", 1) for x in lines[1:])
    return int(lines[0].split()[1]), headers, rest


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "1e400", "1000000000", "soon"])
async def test_f9_any_retry_after_is_clamped_never_a_500_never_benched_for_good(evil_gw, value):
    evil, gw, port = evil_gw
    err = b'{"error":{"message":"slow down","type":"rate_limit_error"}}'
    evil.answer = lambda body: (b"HTTP/1.1 429 x\r\ncontent-type: application/json\r\nretry-after: %b\r\n"
                                b"retry-after-ms: %b\r\ncontent-length: %d\r\n\r\n%b"
                                % (value.encode(), value.encode(), len(err), err))
    status, headers, _ = await chat(port, "alone")
    assert status == 429
    ra = headers.get("retry-after")
    assert ra is None or 1 <= int(ra) <= 60
    left = gw.executor.cooldowns.remaining("alone")
    assert 0 <= left <= 60  # at most max_retry_after: never until a restart


async def test_f4_a_huge_error_body_is_read_only_up_to_its_cap(evil_gw):
    evil, gw, port = evil_gw
    evil.answer = lambda body: b"HTTP/1.1 500 x\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % (100 << 20)
    evil.stream = b"x" * 65536
    status, _, body = await chat(port, "alone")
    assert status == 502
    assert evil.sent < 16 << 20  # 100 MB offered; the gateway stopped reading at its cap


async def test_f4_an_oversized_answer_is_a_502_naming_the_limit(evil_gw):
    evil, gw, port = evil_gw
    evil.answer = lambda body: b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % (200 << 20)
    evil.stream = b" " * 65536
    status, _, body = await chat(port, "alone")
    assert status == 502 and b"limit" in body


async def test_f4_a_streaming_firehose_is_not_read_faster_than_the_client_reads(evil_gw):
    evil, gw, port = evil_gw
    evil.answer = lambda body: b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"
    evil.stream = (b'data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"m","choices":[{"index":0,'
                   b'"delta":{"content":"' + b"x" * 900 + b'"},"finish_reason":null}]}\n\n') * 64
    r, w = await asyncio.open_connection("127.0.0.1", port, limit=1 << 16)
    body = json.dumps({"model": "alone", "stream": True, "messages": [{"role": "user", "content": "hi"}]}).encode()
    w.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%b" % (len(body), body))
    await r.readuntil(b"\r\n\r\n")
    await asyncio.sleep(1.0)  # the client reads nothing more
    first = evil.sent
    await asyncio.sleep(1.0)
    assert evil.sent - first < 4 << 20  # the upstream is no longer read while the client does not read
    assert first < 64 << 20
    w.close()


async def test_f5_an_endless_sse_line_fails_over_quickly(evil_gw):
    evil, gw, port = evil_gw

    def answer(body):
        if body["model"] == "good":
            evil.stream = None
            return _ok("good")
        evil.stream = b"a" * 65536
        return b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: "

    evil.answer = answer
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    status, headers, body = await chat(port, "bad")
    assert status == 200 and headers["x-switchman-model"] == "good"
    assert loop.time() - t0 < 5
