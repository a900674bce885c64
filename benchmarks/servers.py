"""The gateway's ``App`` under well-kept HTTP servers, for ``gateway.py`` to measure beside its own
(issue 11: keep the hand-written server only if it earns its place). Benchmark-only code: the
package does not depend on these servers.

    python benchmarks/servers.py uvicorn --config switchman.yaml --port 4001   # httptools + uvloop
    python benchmarks/servers.py granian --config switchman.yaml --port 4002   # RSGI, Rust HTTP

Each starts exactly what ``switchman serve`` starts (gateway, metering, ``App``), one worker, and
calls ``App.precheck`` on the head before reading the body, as the hand-written server does.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys

from switchman import configfile
from switchman.app import App
from switchman.gateway import Gateway
from switchman.http.server import Request, Response, StreamingResponse
from switchman.metering import Metering


class _Stack:
    """The app, started once the server's loop runs."""

    def __init__(self, path: str) -> None:
        self.config = configfile.load(path)
        self.app: App | None = None
        self.max_body = self.config.server.max_body_bytes

    async def start(self) -> None:
        gw = Gateway(self.config)
        gw.start()
        meter = Metering.from_config(gw)
        if meter is not None:
            await meter.start()
        self.app = App(gw, meter)

    async def answer(self, req: Request, read) -> Response | StreamingResponse:
        app = self.app
        assert app is not None
        got = app.precheck(req)
        if inspect.isawaitable(got):
            got = await got
        if got is not None:
            return got
        req.body = await read()
        if req.body is not None and len(req.body) > self.max_body:
            req.body = None
        return await app(req)


class Asgi:
    def __init__(self, path: str) -> None:
        self.stack = _Stack(path)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await self.stack.start()
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        client = scope.get("client") or ("", 0)
        req = Request(scope["method"], scope["path"], scope["query_string"].decode("latin-1"), headers, b"",
                      f"{client[0]}:{client[1]}")

        async def read() -> bytes:
            parts = []
            while True:
                m = await receive()
                parts.append(m.get("body", b""))
                if not m.get("more_body"):
                    return b"".join(parts)

        resp = await self.stack.answer(req, read)
        hs = [(k.encode(), v.encode("latin-1")) for k, v in resp.headers.items()]
        if type(resp) is Response:
            await send({"type": "http.response.start", "status": resp.status, "headers": hs})
            await send({"type": "http.response.body", "body": resp.body})
            return
        await send({"type": "http.response.start", "status": resp.status, "headers": hs})
        try:
            async for chunk in resp.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await resp.body.aclose()  # type: ignore[attr-defined]
        await send({"type": "http.response.body", "body": b""})


class Rsgi:
    def __init__(self, path: str) -> None:
        self.stack = _Stack(path)

    def __rsgi_init__(self, loop) -> None:
        loop.run_until_complete(self.stack.start())

    async def __rsgi__(self, scope, proto) -> None:
        headers = {k.lower(): v for k, v in scope.headers.items()}
        req = Request(scope.method, scope.path, scope.query_string, headers, b"", scope.client)
        resp = await self.stack.answer(req, proto)
        hs = list(resp.headers.items())
        if type(resp) is Response:
            proto.response_bytes(resp.status, hs, resp.body)
            return
        t = proto.response_stream(resp.status, hs)
        try:
            async for chunk in resp.body:
                await t.send_bytes(chunk)
        finally:
            await resp.body.aclose()  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("server", choices=("uvicorn", "granian"))
    ap.add_argument("--config", required=True)
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args(argv)
    if a.server == "uvicorn":
        import uvicorn

        uvicorn.run(Asgi(a.config), host="127.0.0.1", port=a.port, loop="uvloop", http="httptools",
                    lifespan="on", log_level="warning", access_log=False)
        return 0
    from granian.constants import Interfaces, Loops
    from granian.server import Server

    # granian imports its target in its worker: the config path travels in the environment
    os.environ["SWITCHMAN_BENCH_CONFIG"] = a.config
    here = os.path.dirname(os.path.abspath(__file__))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, here)
    Server("servers:target", address="127.0.0.1", port=a.port, interface=Interfaces.RSGI, workers=1,
           loop=Loops.uvloop, log_enabled=False).serve()
    return 0


target = Rsgi(os.environ["SWITCHMAN_BENCH_CONFIG"]) if os.environ.get("SWITCHMAN_BENCH_CONFIG") else None

if __name__ == "__main__":
    sys.exit(main())
