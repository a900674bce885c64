"""``switchman serve`` in a subprocess against a fake upstream, for the hostile-input regression
tests: what an attacker reaches is the real server, on a real socket."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from switchman.testing.fake_upstream import FakeModel, FakeUpstream

ADMIN = "sk-hostile-admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, proc: subprocess.Popen, port: int, fake: FakeUpstream) -> None:
        self.proc = proc
        self.port = port
        self.fake = fake

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    async def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send ``data`` on a fresh connection; everything the server sent until it closed."""
        r, w = await asyncio.open_connection("127.0.0.1", self.port)
        w.write(data)
        try:
            async with asyncio.timeout(timeout):
                return await r.read()
        finally:
            w.close()

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                host: str | None = None) -> bytes:
        h = {"host": host or f"127.0.0.1:{self.port}", "connection": "close", **(headers or {})}
        if body or method == "POST":
            h.setdefault("content-length", str(len(body)))
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
        return head.encode() + body


def config(fake_port: int, tmp: Path, auth: str, server: str = "") -> str:
    return f"""\
server: {{host: 127.0.0.1{server}}}
providers:
  fake: {{kind: openai, base_url: "http://127.0.0.1:{fake_port}/v1", api_key: "up"}}
models:
  - {{name: echo, provider: fake, model: echo, price: {{input: 1, output: 2}}}}
{auth}
ledger: {{url: "sqlite:///{tmp}/ledger.db"}}
"""


async def start_gateway(tmp: Path, auth: str, server: str = "", models: dict | None = None) -> Gateway:
    fake = FakeUpstream({"echo": FakeModel(), **(models or {})})
    fake_port = await fake.start()
    port = free_port()
    path = tmp / "switchman.yaml"
    path.write_text(config(fake_port, tmp, auth, server))
    proc = subprocess.Popen([sys.executable, "-m", "switchman.cli", "serve", "--config", str(path), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "gateway.log", "wb"))
    gw = Gateway(proc, port, fake)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp / "gateway.log").read_text()
        try:
            got = await gw.raw(gw.request("GET", "/health/live"), timeout=1)
            if got.startswith(b"HTTP/1.1 200"):
                return gw
        except OSError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("gateway did not start")


async def stop_gateway(gw: Gateway) -> None:
    gw.proc.terminate()
    try:
        gw.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        gw.proc.kill()
    await gw.fake.stop(grace=0.1)


@pytest.fixture
async def keyed(tmp_path):
    """A gateway with an admin key, keys required, a SQLite ledger."""
    gw = await start_gateway(tmp_path, f'auth: {{admin_key: "{ADMIN}", keys_required: true}}')
    yield gw
    await stop_gateway(gw)


@pytest.fixture
async def keyless(tmp_path):
    """A gateway with no key at all: loopback mode."""
    gw = await start_gateway(tmp_path, "")
    yield gw
    await stop_gateway(gw)


if os.environ.get("SWITCHMAN_HOSTILE_DEBUG"):  # pragma: no cover - a switch for debugging the tests
    import logging

    logging.basicConfig(level=logging.DEBUG)
