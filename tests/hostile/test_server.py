"""The HTTP server against the hostile-input probe's findings (``HOSTILE_INPUT_PROBE.md``), over real
sockets: each test is a finding's repro, scaled down, with the limits made small so it runs fast."""

from __future__ import annotations

import asyncio
import gc
import socket

import pytest

from switchman.http.limits import Limits
from switchman.http.server import HttpServer, Request, Response, StreamingResponse

MiB = 1 << 20


class Served:
    def __init__(self, server: HttpServer, port: int) -> None:
        self.server = server
        self.port = port
        self.calls: list[Request] = []


@pytest.fixture
async def serve():
    servers: list[HttpServer] = []

    async def start(handler=None, **limits) -> Served:
        calls: list[Request] = []

        async def echo(req: Request):
            calls.append(req)
            if req.path == "/slow":
                await asyncio.sleep(0.3)
            if req.path == "/stream":
                async def gen():
                    for _ in range(100_000):
                        yield b"x" * 65536
                        await asyncio.sleep(0)
                return StreamingResponse(200, gen())
            return Response(200, b"ok:" + req.path.encode() + b":" + (req.body or b"")[:20])

        srv = HttpServer(handler or echo, limits=Limits(**limits))
        port = await srv.start("127.0.0.1", 0)
        servers.append(srv)
        s = Served(srv, port)
        s.calls = calls
        return s

    yield start
    for s in servers:
        await s.stop(grace=0.1)


async def connect(port: int, rcvbuf: int | None = None):
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setblocking(False)
    await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=s)


async def read_all(r: asyncio.StreamReader, timeout: float = 3.0) -> bytes:
    async with asyncio.timeout(timeout):
        return await r.read()


async def send_until_closed(w: asyncio.StreamWriter, piece: bytes, total: int, timeout: float = 5.0) -> int:
    sent = 0
    try:
        async with asyncio.timeout(timeout):
            while sent < total:
                w.write(piece)
                await w.drain()
                sent += len(piece)
    except (ConnectionError, OSError):
        pass
    return sent


async def answer_while_sending(r, w, piece: bytes, total: int) -> tuple[int, bytes]:
    """Send ``piece`` up to ``total`` bytes in the background; return the bytes sent when the
    response's head arrived, and the whole response."""
    sent = 0

    async def send() -> None:
        nonlocal sent
        try:
            while sent < total:
                w.write(piece)
                await w.drain()
                sent += len(piece)
        except (ConnectionError, OSError):
            pass

    task = asyncio.create_task(send())
    try:
        async with asyncio.timeout(10):
            head = await r.readuntil(b"\r\n\r\n")
        at = sent
        rest = await read_all(r)
    finally:
        task.cancel()
    return at, head + rest


GET = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"


# -- F1: head size --------------------------------------------------------------------------------


async def test_f1_a_huge_header_gets_431_long_before_it_is_all_sent(serve):
    s = await serve()
    r, w = await connect(s.port)
    w.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent, got = await answer_while_sending(r, w, b"a" * 65536, 50 * MiB)
    assert got.startswith(b"HTTP/1.1 431 ") and b"request head larger than" in got and b"connection: close" in got
    assert sent < 20 * MiB  # refused at 16 KiB: the rest was never taken in


async def test_f1_a_long_url_gets_414_and_too_many_headers_431(serve):
    s = await serve()
    r, w = await connect(s.port)
    w.write(b"GET /" + b"a" * (20 << 10) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await read_all(r)).startswith(b"HTTP/1.1 414 ")
    r, w = await connect(s.port)
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"x-h%d: v\r\n" % i for i in range(200)) + b"\r\n")
    got = await read_all(r)
    assert got.startswith(b"HTTP/1.1 431 ") and b"more than 100 headers" in got
    r, w = await connect(s.port)  # many small headers, each legal, over 64 KiB in all
    w.write(b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 1000) for i in range(90)) + b"\r\n")
    assert (await read_all(r)).startswith(b"HTTP/1.1 431 ")
    assert s.calls == []


# -- F2: back-pressure ------------------------------------------------------------------------------


async def test_f2_pipelined_requests_from_a_client_that_never_reads_stop_being_read(serve):
    s = await serve()
    r, w = await connect(s.port, rcvbuf=4096)
    sent = await send_until_closed(w, GET * 1000, 40 * MiB, timeout=2.0)
    conn = next(iter(s.server.conns))
    # The server stopped reading: what it holds is one read at most, not the 40 MB offered.
    assert sent < 10 * MiB
    assert len(conn.pending) <= 1 << 20 and len(conn.queue) <= 4096
    assert not conn.reading
    w.close()


async def test_f2_pipelined_requests_are_answered_in_order(serve):
    s = await serve()
    r, w = await connect(s.port)
    w.write(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(20))
            + b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = await read_all(r)
    order = [int(x.split(b":")[0]) for x in got.split(b"ok:/")[1:-1]]
    assert order == list(range(20)) and got.endswith(b"ok:/last:")


# -- F3: body buffering ---------------------------------------------------------------------------


async def test_f3_tiny_chunks_cost_one_buffer_and_413_comes_at_the_limit(serve):
    s = await serve(max_body=1 * MiB)
    r, w = await connect(s.port)
    w.write(b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    sent, got = await answer_while_sending(r, w, b"2\r\nab\r\n" * 32768, 30 * MiB)
    assert s.calls and s.calls[-1].body is None  # the handler was told: over the limit
    assert sent < 12 * MiB  # 1 MiB of body is 3.5 MiB of 2-byte chunks (plus socket buffers): then 413
    assert got.startswith(b"HTTP/1.1 200")  # (this handler answers 200 to a body=None request)


async def test_f3_a_declared_oversize_body_is_refused_before_it_is_sent(serve):
    s = await serve(max_body=1 * MiB)
    r, w = await connect(s.port)
    w.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\nExpect: 100-continue\r\n\r\n")
    got = await read_all(r)
    assert s.calls[-1].body is None and b"100 Continue" not in got


async def test_f3_precheck_refuses_on_the_head_without_buffering_the_body(serve):
    seen: list[Request] = []

    def precheck(req: Request):
        seen.append(req)
        if "authorization" not in req.headers:
            return Response(401, b'{"error":{"message":"no key"}}')
        return None

    async def handler(req: Request):
        return Response(200, b"got %d" % len(req.body or b""))

    handler.precheck = precheck  # type: ignore[attr-defined]
    s = await serve(handler)
    r, w = await connect(s.port)
    w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n\r\n")
    got = await read_all(r)  # no body sent at all: the answer comes anyway
    assert got.startswith(b"HTTP/1.1 401") and seen[0].body == b""
    r, w = await connect(s.port)
    w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: k\r\nContent-Length: 3\r\n"
            b"Connection: close\r\n\r\nabc")
    assert (await read_all(r)).endswith(b"got 3")


async def test_f3_an_async_precheck_holds_the_body_until_it_decides(serve):
    async def precheck(req: Request):
        await asyncio.sleep(0.05)
        return None if req.headers.get("authorization") == "good" else Response(401, b"no")

    async def handler(req: Request):
        return Response(200, b"got %d" % len(req.body or b""))

    handler.precheck = precheck  # type: ignore[attr-defined]
    s = await serve(handler)
    for key, want in ((b"good", b"got 100000"), (b"bad", b"no")):
        r, w = await connect(s.port)
        w.write(b"POST /x HTTP/1.1\r\nHost: x\r\nAuthorization: " + key + b"\r\nContent-Length: 100000\r\n"
                b"Connection: close\r\n\r\n" + b"a" * 100000)
        assert (await read_all(r)).endswith(want)


# -- F6: slow clients, connection cap -----------------------------------------------------------------


async def test_f6_a_head_sent_one_byte_at_a_time_is_cut_at_the_head_deadline(serve):
    s = await serve(head_timeout=0.5)
    r, w = await connect(s.port)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    got = b""
    for b in GET[:-2]:  # never finished, one byte every 50 ms: each byte would reset an idle timer
        w.write(bytes([b]))
        await asyncio.sleep(0.05)
        if r.at_eof() or (got := await _peek(r)):
            break
    got += await read_all(r)
    assert got.startswith(b"HTTP/1.1 408") and b"request head" in got
    assert loop.time() - t0 < 1.5


async def _peek(r: asyncio.StreamReader) -> bytes:
    try:
        async with asyncio.timeout(0.001):
            return await r.read(65536)
    except TimeoutError:
        return b""


async def test_f6_a_slow_body_is_cut_at_the_body_deadline(serve):
    s = await serve(body_timeout=0.5)
    r, w = await connect(s.port)
    w.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    for _ in range(20):
        w.write(b"a")
        await asyncio.sleep(0.05)
        if r.at_eof():
            break
    got = await read_all(r)
    assert got.startswith(b"HTTP/1.1 408") and b"request body" in got and s.calls == []


async def test_f6_past_the_connection_cap_new_clients_get_503_and_health_still_answers(serve, caplog):
    s = await serve(max_connections=10, reserved_for_health=2)
    idle = [await connect(s.port) for _ in range(10)]
    await asyncio.sleep(0.05)
    r, w = await connect(s.port)  # within the reserve: health only
    w.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await read_all(r)).startswith(b"HTTP/1.1 200")
    r, w = await connect(s.port)
    w.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    assert (await read_all(r)).startswith(b"HTTP/1.1 503")
    more = [await connect(s.port) for _ in range(3)]  # past the reserve too: refused at once
    got = await read_all(more[-1][0])
    assert got.startswith(b"HTTP/1.1 503") and b"connections open" in got
    assert "connection cap" in caplog.text
    for _, cw in idle + more:
        cw.close()


# -- F7: send timeout ---------------------------------------------------------------------------------


async def test_f7_a_client_that_stops_reading_a_stream_is_cut_and_the_stream_closed(serve):
    closed = asyncio.Event()

    async def handler(req: Request):
        async def gen():
            try:
                while True:
                    yield b"x" * 65536
            finally:
                closed.set()  # the upstream call, reservation and slot are released here in the app
        return StreamingResponse(200, gen())

    s = await serve(handler, send_timeout=0.3)
    r, w = await connect(s.port, rcvbuf=4096)
    w.write(GET)
    async with asyncio.timeout(3):
        await closed.wait()
    assert not s.server.conns or all(c.closed for c in s.server.conns)


# -- F8: trailers -------------------------------------------------------------------------------------


async def test_f8_trailers_never_override_headers(serve):
    s = await serve()
    r, w = await connect(s.port)
    w.write(b"POST /x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nTransfer-Encoding: chunked\r\n"
            b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\nAuthorization: Bearer admin\r\nX-Switchman-User: victim\r\n\r\n")
    await read_all(r)
    assert s.calls[0].headers["authorization"] == "Bearer wrong" and "x-switchman-user" not in s.calls[0].headers
    assert s.calls[0].body == b"abc"


# -- F11: dead connections --------------------------------------------------------------------------


async def test_f11_a_closed_connection_is_freed_without_the_cyclic_gc(serve):
    def conns() -> int:  # every _Conn alive, garbage the cyclic GC has not collected yet included
        return sum(type(o).__name__ == "_Conn" for o in gc.get_objects())

    s = await serve()
    gc.collect()
    gc.disable()
    try:
        before = conns()
        for _ in range(5):
            r, w = await connect(s.port)
            w.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n" + b"a" * 1_000_000)
            await w.drain()
            await asyncio.sleep(0.02)
            w.transport.abort()
        for _ in range(50):
            await asyncio.sleep(0.01)
            if not s.server.conns:
                break
        await asyncio.sleep(0.05)
        assert conns() == before  # freed by reference counting alone, body buffers and all
    finally:
        gc.enable()


# -- F12, F13, F16: protocol ------------------------------------------------------------------------


async def test_f12_garbage_after_a_request_never_corrupts_its_response(serve):
    s = await serve()
    r, w = await connect(s.port)
    w.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n")
    got = await read_all(r)
    first, _, rest = got.partition(b"ok:/slow:")
    assert first.startswith(b"HTTP/1.1 200") and rest.startswith(b"HTTP/1.1 400")


async def test_f13_expect_continue_head_host_and_upgrade(serve):
    s = await serve()
    r, w = await connect(s.port)
    w.write(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    async with asyncio.timeout(1):
        assert (await r.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100 Continue")
    w.write(b"abc")
    assert (await r.readuntil(b"ok:/x:abc")).startswith(b"HTTP/1.1 200")
    w.write(b"HEAD /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = await read_all(r)
    assert got.startswith(b"HTTP/1.1 200") and b"content-length: 16\r\n" in got and got.endswith(b"\r\n\r\n")
    assert s.calls[-1].method == "GET"
    for bad in (b"GET / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"):
        r, w = await connect(s.port)
        w.write(bad)
        assert (await read_all(r)).startswith(b"HTTP/1.1 400")
    r, w = await connect(s.port)
    w.write(b"GET /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
            b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    assert (await read_all(r)).startswith(b"HTTP/1.1 200")


async def test_f16_a_duplicated_credential_header_is_400(serve):
    s = await serve()
    for name in (b"Authorization", b"x-api-key", b"Content-Type"):
        r, w = await connect(s.port)
        w.write(b"GET / HTTP/1.1\r\nHost: x\r\n%s: a\r\n%s: b\r\n\r\n" % (name, name))
        got = await read_all(r)
        assert got.startswith(b"HTTP/1.1 400") and b"duplicate " + name.lower() in got
    assert s.calls == []
