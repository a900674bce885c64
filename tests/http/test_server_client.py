"""The HTTP server and client against each other on loopback: keep-alive, pipelining, limits,
streaming, cancellation, and the failures the executor relies on being mapped."""

import asyncio
import socket

import pytest

from switchman.errors import ConnectFailed, StreamCut, UpstreamTimeout
from switchman.http.client import HttpClient
from switchman.http.server import HttpServer, Response, StreamingResponse


async def _start(handler, **kw):
    server = HttpServer(handler, **kw)
    port = await server.start("127.0.0.1", 0)
    return server, f"http://127.0.0.1:{port}"


async def test_round_trip_reuses_one_connection():
    seen = []

    async def handler(req):
        seen.append(req.client)
        return Response(200, req.body[::-1], {"x-echo": req.headers.get("x-in", "")})

    server, base = await _start(handler)
    client = HttpClient()
    try:
        for i in range(5):
            r = await client.request("POST", f"{base}/p?q=1", {"x-in": str(i)}, b"abc%d" % i)
            assert r.status == 200 and r.headers["x-echo"] == str(i)
            assert await r.read() == (b"abc%d" % i)[::-1]
        assert len(set(seen)) == 1, "keep-alive should reuse one connection"
    finally:
        await client.close()
        await server.stop()


async def test_streaming_chunks_arrive_in_order_and_cancel_reaches_handler():
    closed = asyncio.Event()

    async def gen():
        try:
            for i in range(1000):
                yield b"chunk%d;" % i
                await asyncio.sleep(0.001)
        finally:
            closed.set()

    async def handler(req):
        return StreamingResponse(200, gen())

    server, base = await _start(handler)
    client = HttpClient()
    try:
        r = await client.request("GET", base + "/s", {}, b"")
        got = b""
        it = r.chunks()
        async for c in it:
            got += c
            if got.count(b";") >= 3:
                break
        await it.aclose()  # we walk away: the server side must stop producing
        assert got.startswith(b"chunk0;chunk1;chunk2;")
        await asyncio.wait_for(closed.wait(), 2)
    finally:
        await client.close()
        await server.stop()


async def test_body_over_limit_is_flagged_and_connection_closed():
    async def handler(req):
        return Response(413 if req.body is None else 200, b"")

    server, base = await _start(handler, max_body=100)
    client = HttpClient()
    try:
        r = await client.request("POST", base + "/x", {}, b"x" * 101)
        assert r.status == 413
        r = await client.request("POST", base + "/x", {}, b"x" * 100)
        assert r.status == 200
    finally:
        await client.close()
        await server.stop()


async def test_malformed_request_gets_400_and_server_keeps_serving():
    async def handler(req):
        return Response(200, b"ok")

    server, base = await _start(handler)
    port = int(base.rsplit(":", 1)[1])
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(b"NOT HTTP AT ALL\r\n\r\n")
    data = await asyncio.wait_for(r.read(), 2)
    assert data.startswith(b"HTTP/1.1 400")
    w.close()
    client = HttpClient()
    try:
        resp = await client.request("GET", base + "/", {}, b"")
        assert await resp.read() == b"ok"
    finally:
        await client.close()
        await server.stop()


async def test_connect_refused_maps_to_connect_failed():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    client = HttpClient()
    with pytest.raises(ConnectFailed):
        await client.request("GET", f"http://127.0.0.1:{port}/", {}, b"")


async def test_deadline_maps_to_upstream_timeout():
    async def handler(req):
        await asyncio.sleep(5)
        return Response(200, b"late")

    server, base = await _start(handler)
    client = HttpClient()
    loop = asyncio.get_running_loop()
    try:
        with pytest.raises(UpstreamTimeout):
            await client.request("GET", base + "/", {}, b"", deadline=loop.time() + 0.05)
    finally:
        await client.close()
        await server.stop(grace=0)


async def test_upstream_dropping_mid_body_is_a_stream_cut():
    async def raw(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(raw, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    client = HttpClient()
    try:
        r = await client.request("GET", f"http://127.0.0.1:{port}/", {}, b"")
        with pytest.raises(StreamCut):
            await r.read()
    finally:
        srv.close()
        await client.close()


async def test_a_deadline_on_a_reused_connection_neither_fires_early_nor_late():
    # The connection's timer is kept across requests and only moved sooner: a short deadline on one
    # request must not cut the next one, which has a longer deadline, on the same connection.
    async def handler(req):
        await asyncio.sleep(float(req.query or 0))
        return Response(200, b"ok", {})

    server, base = await _start(handler)
    client = HttpClient()
    loop = asyncio.get_running_loop()
    try:
        r = await client.request("GET", f"{base}/p", {}, b"", deadline=loop.time() + 0.15)
        assert await r.read(loop.time() + 0.15) == b"ok"
        t0 = loop.time()
        r = await client.request("GET", f"{base}/p?0.3", {}, b"", deadline=t0 + 5)  # outlives the first's timer
        assert await r.read(t0 + 5) == b"ok" and loop.time() - t0 >= 0.3
        t0 = loop.time()
        with pytest.raises(UpstreamTimeout, match="did not answer in time"):
            await client.request("GET", f"{base}/p?2", {}, b"", deadline=t0 + 0.2)
        assert 0.2 <= loop.time() - t0 < 1.0  # at its deadline, not at the old timer's or the answer's
        r = await client.request("GET", f"{base}/p", {}, b"", deadline=loop.time() + 5)
        assert await r.read() == b"ok"  # the timed-out connection was closed, a fresh one answers
    finally:
        await client.close()
        await server.stop()
