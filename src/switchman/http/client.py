"""A small pooled HTTP/1.1 client on asyncio and httptools, for calls to upstreams.

Why not httpx or aiohttp: encode/httpx#3215 measured httpx's async client far slower than
aiohttp's under concurrency, and aiohttp's client still costs a few hundred microseconds a request
on this machine's cores, most of the gateway's budget. Upstream calls need little: POST a JSON
body over a kept-alive (TLS) connection, read a whole body or a chunked stream, close the
connection to cancel. Socket failures are mapped here, once, into ``ConnectFailed``/``StreamCut``.

Bounded, as the gateway's own server is (issue 11, F4): a streamed body is read from the upstream
only while less than ``HIGH_WATER`` bytes of it wait for the gateway's client to take them (Envoy's
per-connection buffer limit), so a client that stops reading stops the upstream being read; a
whole body is read up to a cap (``MAX_BODY``; past it the call fails as a 502 naming the limit),
and an error body only up to ``MAX_ERROR_BODY`` (the rest is never read: the connection closes).

Not supported (by design, for now): HTTP proxies, HTTP/2, compressed responses (we send
``accept-encoding: identity``), redirects.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from urllib.parse import urlsplit

import httptools

from ..errors import ConnectFailed, StreamCut, UpstreamKind, UpstreamStatus, UpstreamTimeout

HIGH_WATER = 1 << 20  # bytes of a streamed body held for the reader before the upstream is paused
LOW_WATER = 256 << 10  # ... and resumed
MAX_BODY = 16 << 20  # a whole (non-streamed) answer: far above any chat answer, logprobs included
MAX_ERROR_BODY = 1 << 20  # an error answer: read for its message only


class _Target:
    __slots__ = ("key", "host", "port", "tls", "path", "hostheader")

    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"unsupported upstream URL: {url!r}")
        self.tls = u.scheme == "https"
        self.host = u.hostname
        self.port = u.port or (443 if self.tls else 80)
        self.key = (self.tls, self.host, self.port)
        self.path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        default = 443 if self.tls else 80
        self.hostheader = self.host if self.port == default else f"{self.host}:{self.port}"


class _Conn(asyncio.Protocol):
    __slots__ = ("transport", "parser", "status", "headers", "headers_done", "chunks", "done", "error",
                 "waiter", "closed", "keep_alive", "got_bytes", "_hname", "buffered", "paused", "limit",
                 "deadline", "late", "timer")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        # a wait's deadline (loop time) and what to say past it; the timer may be set earlier and
        # is kept across requests on the connection (see ``wait``)
        self.deadline: float | None = None
        self.late = ""
        self.timer: asyncio.TimerHandle | None = None
        self.reset()

    def reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers: dict[str, str] = {}
        self.headers_done = False
        self.chunks: deque[bytes] = deque()
        self.done = False
        self.error: Exception | None = None
        self.waiter: asyncio.Future | None = None
        self.keep_alive = False
        self.got_bytes = False
        self.buffered = 0  # body bytes received and not yet taken
        self.paused = False
        self.limit = 0  # > 0: the most body bytes wanted (``read``); past it, stop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if not self.done:
            h = self.headers
            if self.headers_done and "content-length" not in h and "chunked" not in h.get("transfer-encoding", ""):
                self.done = True  # a close-delimited body ends at EOF (RFC 9112 §6.3)
            elif self.error is None:
                self.error = exc or ConnectionResetError("connection closed by upstream")
        self._wake()

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.error = e
            self.transport.close()  # type: ignore[union-attr]
        self._wake()

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.limit:
            if self.buffered > self.limit:
                self.error = BodyOverLimit(self.limit)
                self.transport.close()  # type: ignore[union-attr]
        elif self.buffered > HIGH_WATER and not self.paused:
            self.paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]

    def took(self, n: int) -> None:
        """The reader took ``n`` bytes of body: read on once little is left waiting."""
        self.buffered -= n
        if self.paused and self.buffered < LOW_WATER and not self.closed:
            self.paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def wait(self, deadline: float | None = None, late: str = "") -> None:
        """Until the parser has news; past ``deadline`` (a loop time), ``UpstreamTimeout(late)``.
        The connection's one timer is moved only when a deadline comes sooner than it; one that
        fires early finds no wait due, or a later deadline, and waits on. (``asyncio.timeout``
        around each wait scheduled and cancelled a timer per request: 3% of the gateway's time.)"""
        loop = asyncio.get_running_loop()
        if deadline is not None:
            if loop.time() >= deadline:
                raise UpstreamTimeout(late)
            self.deadline, self.late = deadline, late
            t = self.timer
            if t is None or t.when() > deadline:
                if t is not None:
                    t.cancel()
                self.timer = loop.call_at(deadline, self._tick)
        self.waiter = loop.create_future()
        try:
            await self.waiter
        finally:
            self.waiter = None
            self.deadline = None

    def _tick(self) -> None:
        self.timer = None
        d = self.deadline
        if d is None or self.closed:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < d:
            self.timer = loop.call_at(d, self._tick)
            return
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(UpstreamTimeout(self.late))


_LATE_BODY = "upstream did not finish its answer in time"


class BodyOverLimit(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body over {limit} bytes")
        self.limit = limit


class ClientResponse:
    """An upstream's answer. Read it whole with ``read()`` or piece by piece with ``chunks()``;
    ``close()`` releases the connection (kept alive if the body was read to its end, else closed,
    which is how an abandoned upstream generation is cancelled)."""

    __slots__ = ("status", "headers", "_conn", "_client", "_key", "_released")

    def __init__(self, conn: _Conn, client: HttpClient, key: tuple) -> None:
        self.status = conn.status
        self.headers = conn.headers
        self._conn = conn
        self._client = client
        self._key = key
        self._released = False

    async def read(self, deadline: float | None = None, limit: int = MAX_BODY, truncate: bool = False) -> bytes:
        """The whole body; ``deadline`` is a loop time, past which ``UpstreamTimeout``. A body over
        ``limit`` bytes fails as a 502 naming the limit, or with ``truncate`` (an error body, read
        for its message) is cut there."""
        c = self._conn
        c.limit = limit
        if c.paused:
            c.took(0)
        try:
            if c.buffered > limit:
                c.error = BodyOverLimit(limit)
            while not c.done:
                if c.error is not None:
                    if isinstance(c.error, BodyOverLimit):
                        if truncate:
                            return b"".join(c.chunks)[:limit]
                        raise UpstreamStatus(f"upstream answer larger than the {limit >> 20} MiB limit",
                                             upstream_kind=UpstreamKind.SERVER_ERROR)
                    raise StreamCut(f"upstream connection failed while reading the body: {c.error!r}")
                await c.wait(deadline, _LATE_BODY)
            return b"".join(c.chunks)
        finally:
            self.close()

    async def chunks(self, deadline: float | None = None):
        """Body pieces as they arrive; closing the generator early closes the connection."""
        c = self._conn
        try:
            while True:
                while c.chunks:
                    piece = c.chunks.popleft()
                    c.took(len(piece))
                    yield piece
                if c.done:
                    return
                if c.error is not None:
                    raise StreamCut(f"upstream stream broke: {c.error!r}")
                await c.wait(deadline, _LATE_BODY)
        finally:
            self.close()

    def close(self) -> None:
        if self._released:
            return
        self._released = True
        c = self._conn
        if c.done and c.keep_alive and not c.closed and c.error is None:
            self._client._release(self._key, c)
        elif c.transport is not None:
            c.transport.close()


class HttpClient:
    """Keeps idle connections per (tls, host, port); most recently used first, so a burst reuses
    warm connections and the rest age out upstream-side."""

    def __init__(self, max_idle_per_host: int = 256) -> None:
        self._idle: dict[tuple, list[_Conn]] = {}
        self._targets: dict[str, _Target] = {}
        self._ssl: ssl.SSLContext | None = None
        self.max_idle = max_idle_per_host

    def _target(self, url: str) -> _Target:
        t = self._targets.get(url)
        if t is None:
            t = _Target(url)
            if len(self._targets) < 4096:  # URLs are per model: few; bound it anyway
                self._targets[url] = t
        return t

    async def _connect(self, t: _Target) -> _Conn:
        loop = asyncio.get_running_loop()
        ctx = None
        if t.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            ctx = self._ssl
        try:
            _, conn = await loop.create_connection(_Conn, t.host, t.port, ssl=ctx)
        except (OSError, ssl.SSLError) as e:
            raise ConnectFailed(f"cannot connect to {t.hostheader}: {e.strerror or e}") from None
        return conn

    def _release(self, key: tuple, conn: _Conn) -> None:
        pool = self._idle.setdefault(key, [])
        if len(pool) < self.max_idle:
            conn.reset()
            pool.append(conn)
        else:
            conn.transport.close()  # type: ignore[union-attr]

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes,
                      deadline: float | None = None) -> ClientResponse:
        """Send one request; return once the status and headers are in, or raise
        ``ConnectFailed`` / ``UpstreamTimeout`` (past ``deadline``, a loop time). Cancelling
        closes the connection."""
        return await self._request(method, url, headers, body, deadline)

    async def _request(self, method: str, url: str, headers: dict[str, str], body: bytes,
                       deadline: float | None) -> ClientResponse:
        t = self._target(url)
        head = [f"{method} {t.path} HTTP/1.1\r\nhost: {t.hostheader}\r\ncontent-length: {len(body)}\r\n"]
        for k, v in headers.items():
            head.append(f"{k}: {v}\r\n")
        head.append("\r\n")
        data = "".join(head).encode("latin-1") + body
        pool = self._idle.get(t.key)
        while True:
            reused = False
            conn = None
            while pool:
                c = pool.pop()
                if not c.closed:
                    conn, reused = c, True
                    break
            if conn is None:
                if deadline is None:
                    conn = await self._connect(t)
                else:
                    try:
                        async with asyncio.timeout_at(deadline):
                            conn = await self._connect(t)
                    except TimeoutError:
                        raise UpstreamTimeout("upstream did not answer in time") from None
            try:
                conn.transport.write(data)  # type: ignore[union-attr]
                while not conn.headers_done:
                    if conn.error is not None or conn.closed:
                        break
                    await conn.wait(deadline, "upstream did not answer in time")
            except BaseException:
                conn.transport.close()  # type: ignore[union-attr]
                raise
            if conn.headers_done:
                return ClientResponse(conn, self, t.key)
            conn.transport.close()  # type: ignore[union-attr]
            # A kept-alive connection the upstream had closed while idle: nothing of ours was
            # processed, so sending again on a fresh connection is safe.
            if reused and not conn.got_bytes:
                continue
            raise ConnectFailed(f"upstream {t.hostheader} closed the connection before answering: {conn.error!r}")

    async def close(self) -> None:
        for pool in self._idle.values():
            for c in pool:
                if c.transport is not None:
                    c.transport.close()
        self._idle.clear()
