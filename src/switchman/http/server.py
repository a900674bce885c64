"""A small HTTP/1.1 server on asyncio and httptools.

Why not uvicorn + an ASGI framework: every layer costs tens of microseconds per request, and the
gateway's budget for all its own work is 500 µs on this machine's slow cores. This server does
only what the gateway needs: keep-alive, pipelined requests answered in order, bounded bodies
(413 before the body is read), chunked streaming responses with back-pressure, and cancelling the
handler when the client goes away (so an upstream stream stops generating, and costing).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus

import httptools

log = logging.getLogger("switchman.http")

_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "client")

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes | None, client: str) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers  # names lower-case; a repeated header keeps its last value
        self.body = body  # None: it was over the server's limit and was not read
        self.client = client


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}


class StreamingResponse:
    """``body`` yields byte chunks; each is sent as one HTTP chunk as soon as it is produced."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, body: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else {}


Handler = Callable[[Request], Awaitable["Response | StreamingResponse"]]

_JSON_400 = b'{"error":{"message":"malformed HTTP request","type":"invalid_request_error"}}'


def _head(status: int, headers: dict[str, str], extra: str) -> bytes:
    lines = [f"HTTP/1.1 {status} ".encode() + _REASONS.get(status, b"Unknown") + b"\r\n"]
    for k, v in headers.items():
        lines.append(f"{k}: {v}\r\n".encode("latin-1", "replace"))
    lines.append(extra.encode())
    return b"".join(lines)


class _Conn(asyncio.Protocol):
    __slots__ = (
        "server", "transport", "parser", "url", "headers", "body", "body_size", "too_large",
        "queue", "task", "paused", "drain", "closed", "idle_handle", "peer",
    )

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.body_size = 0
        self.too_large = False
        self.queue: deque[tuple[Request, bool]] = deque()
        self.task: asyncio.Task | None = None
        self.paused = False
        self.drain: asyncio.Future | None = None
        self.closed = False
        self.idle_handle: asyncio.TimerHandle | None = None
        self.peer = ""

    # -- asyncio callbacks ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else ""
        self.server.conns.add(self)
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.conns.discard(self)
        if self.idle_handle:
            self.idle_handle.cancel()
        if self.task is not None and not self.task.done():
            self.task.cancel()  # the client left: stop the upstream work on its behalf
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.drain is not None and not self.drain.done():
            self.drain.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.idle_handle:
            self.idle_handle.cancel()
            self.idle_handle = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400)
        except httptools.HttpParserError:
            self._fail(400)
        if self.task is None:
            self._arm_idle()  # a request still arriving: a stalled one must not hold the connection

    # -- httptools callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = {}
        self.body = []
        self.body_size = 0
        self.too_large = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        cl = self.headers.get("content-length")
        if cl is not None and cl.isdigit() and int(cl) > self.server.max_body:
            self.too_large = True

    def on_body(self, body: bytes) -> None:
        if self.too_large:
            return
        self.body_size += len(body)
        if self.body_size > self.server.max_body:
            self.too_large = True
            self.body = []
            return
        self.body.append(body)

    def on_message_complete(self) -> None:
        keep = self.parser.should_keep_alive()
        path, _, query = self.url.decode("latin-1").partition("?")
        method = self.parser.get_method().decode()
        if self.too_large:
            # ``body=None`` tells the handler the body was over the limit and dropped: it answers
            # 413 in the client's own dialect, then the connection closes.
            body, keep = None, False
        else:
            body = self.body[0] if len(self.body) == 1 else b"".join(self.body)
        self.queue.append((Request(method, path, query, self.headers, body, self.peer), keep))
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._serve_queue())

    # -- serving -------------------------------------------------------------------------------
    async def _serve_queue(self) -> None:
        try:
            while self.queue and not self.closed:
                req, keep = self.queue.popleft()
                try:
                    resp: Response | StreamingResponse = await self.server.handler(req)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the handler's own guard failed: still never a traceback
                    log.exception("unhandled error serving %s %s", req.method, req.path)
                    resp = Response(500, b'{"error":{"message":"internal error","type":"api_error"}}',
                                    {"content-type": "application/json"})
                await self._write(resp, keep)
                if not keep or self.closed:
                    self._close()
                    return
        except asyncio.CancelledError:
            pass
        finally:
            self.task = None
            if not self.closed:
                self._arm_idle()

    async def _write(self, resp: Response | StreamingResponse, keep: bool) -> None:
        t = self.transport
        if t is None or self.closed:
            if type(resp) is StreamingResponse:
                await _aclose(resp.body)
            return
        conn = "" if keep else "connection: close\r\n"
        if type(resp) is Response:
            t.write(_head(resp.status, resp.headers, f"content-length: {len(resp.body)}\r\n{conn}\r\n") + resp.body)
            return
        t.write(_head(resp.status, resp.headers, f"transfer-encoding: chunked\r\n{conn}\r\n"))
        body = resp.body
        try:
            async for chunk in body:
                if self.closed:
                    break
                if chunk:
                    t.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    if self.paused:
                        self.drain = asyncio.get_running_loop().create_future()
                        await self.drain
        except Exception:  # noqa: BLE001 - the body broke: end the connection so the client sees it
            log.exception("response stream failed")
            self._close()
            return
        finally:
            await _aclose(body)
        if not self.closed:
            t.write(b"0\r\n\r\n")

    def _fail(self, status: int) -> None:
        if self.transport and not self.closed:
            self.transport.write(_head(status, {"content-type": "application/json"},
                                       f"content-length: {len(_JSON_400)}\r\nconnection: close\r\n\r\n") + _JSON_400)
        self._close()

    def _close(self) -> None:
        if self.transport and not self.closed:
            self.transport.close()
        self.closed = True

    def _arm_idle(self) -> None:
        if self.server.idle_timeout and not self.closed:
            loop = asyncio.get_running_loop()
            self.idle_handle = loop.call_later(self.server.idle_timeout, self._close)


async def _aclose(it: AsyncIterator[bytes]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - a failing generator must not kill the connection loop
            log.exception("error closing a response stream")


class HttpServer:
    """Serve ``handler`` on ``host:port`` (or an existing socket, for multi-process workers)."""

    def __init__(self, handler: Handler, *, max_body: int = 32 << 20, idle_timeout: float = 75.0) -> None:
        self.handler = handler
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.conns: set[_Conn] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0, sock=None) -> int:
        loop = asyncio.get_running_loop()
        if sock is not None:
            self._server = await loop.create_server(lambda: _Conn(self), sock=sock, backlog=2048)
        else:
            self._server = await loop.create_server(lambda: _Conn(self), host, port, backlog=2048, reuse_address=True)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting; let in-flight requests finish for up to ``grace`` seconds."""
        if self._server is not None:
            self._server.close()
        tasks = [c.task for c in self.conns if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for c in list(self.conns):
            c._close()
        if self._server is not None:
            await self._server.wait_closed()
