"""``switchman serve`` in a subprocess (one or more workers) against a fake upstream: what an
operator runs, on a real socket, for the telemetry tests."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from switchman.testing.fake_upstream import FakeModel, FakeUpstream

ADMIN = "sk-telemetry-admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    proc: subprocess.Popen
    port: int
    fake: FakeUpstream
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin(self) -> dict[str, str]:
        return {"authorization": f"Bearer {ADMIN}"}


def yaml(fake_port: int, tmp: Path, extra: str = "", extra_models: str = "", routes: str = "") -> str:
    return f"""\
providers:
  fake: {{kind: openai, base_url: "http://127.0.0.1:{fake_port}/v1", api_key: "up"}}
  fake-an: {{kind: anthropic, base_url: "http://127.0.0.1:{fake_port}", api_key: "up"}}
models:
  - {{name: echo, provider: fake, model: echo, price: {{input: 1, output: 2}}}}
  - {{name: broken, provider: fake, model: broken, price: {{input: 1, output: 2}}}}
  - {{name: claude, provider: fake-an, model: claude, price: {{input: 3, output: 15}}}}
{extra_models}routes:
  - {{name: auto, policy: {{kind: first, models: [broken, echo]}}}}
{routes}
auth: {{admin_key: "{ADMIN}"}}
retry: {{attempts: 1}}
ledger: {{url: "sqlite:///{tmp}/ledger.db"}}
{extra}
"""


async def serve(tmp: Path, workers: int = 1, extra: str = "", models: dict | None = None,
                args: tuple[str, ...] = (), extra_models: str = "", routes: str = "") -> Served:
    fake = FakeUpstream({"echo": FakeModel(chunks=3), "broken": FakeModel(error_status=500),
                         "claude": FakeModel(chunks=3), **(models or {})})
    fake_port = await fake.start()
    port = free_port()
    path = tmp / "switchman.yaml"
    path.write_text(yaml(fake_port, tmp, extra, extra_models, routes))
    log = tmp / "gateway.log"
    proc = subprocess.Popen([sys.executable, "-m", "switchman.cli", "serve", "--config", str(path), "--port", str(port),
                             "--workers", str(workers), *args], stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    s = Served(proc, port, fake, log)
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            try:
                async with http.get(s.base + "/health/ready") as r:
                    if r.status == 200:
                        return s
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("gateway did not start: " + log.read_text())


async def stop(s: Served) -> None:
    s.proc.terminate()
    try:
        s.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        s.proc.kill()
    await s.fake.stop(grace=0.1)
