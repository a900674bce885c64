"""A whole stack on loopback for end-to-end tests: a fake upstream speaking the three wire APIs,
and the gateway's real HTTP server in front of it, configured from YAML like a user would."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import pytest

from switchman import configfile
from switchman.app import App
from switchman.gateway import Gateway
from switchman.http.server import HttpServer
from switchman.testing.fake_upstream import FakeModel, FakeUpstream

PROVIDER_KEY = "sk-provider-secret-0123456789"

# A test that hangs (a task that will not finish after a failure, say) must not hold CI for its
# whole time limit: past this long in one test, every thread's stack is printed and the run ends.
_HANG_SECONDS = 300


def pytest_runtest_setup(item):
    import faulthandler
    import sys

    faulthandler.dump_traceback_later(_HANG_SECONDS, exit=True, file=sys.stderr)


def pytest_sessionfinish(session, exitstatus):
    import faulthandler

    faulthandler.cancel_dump_traceback_later()

# gateway model name -> (provider, upstream id); one per wire API.
WIRE_MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-haiku-4-5",
    "gemini": "gemini-2.5-flash",
}


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@dataclass
class Stack:
    fake: FakeUpstream
    gateway: Gateway
    server: HttpServer
    base: str  # the gateway's root URL

    @property
    def openai_url(self) -> str:
        return self.base + "/v1"


def config_yaml(fake: FakeUpstream, extra_models: str = "", routes: str = "", auth: str = "",
                dead_port: int | None = None) -> str:
    dead = dead_port or free_port()
    return f"""
server: {{max_body_mb: 1}}
providers:
  oa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "{PROVIDER_KEY}"}}
  an: {{kind: anthropic, base_url: "{fake.url('anthropic')}", api_key: "{PROVIDER_KEY}"}}
  gm: {{kind: gemini, base_url: "{fake.url('gemini')}", api_key: "{PROVIDER_KEY}"}}
  dead: {{kind: openai, base_url: "http://127.0.0.1:{dead}/v1", api_key: "{PROVIDER_KEY}"}}
models:
  - {{name: gpt-4o-mini, provider: oa}}
  - {{name: claude-haiku-4-5, provider: an}}
  - {{name: gemini-2.5-flash, provider: gm}}
  - {{name: unreachable, provider: dead, model: gpt-4o-mini}}
  - {{name: slow, provider: oa, model: slow-model, price: {{input: 1, output: 2}}, timeout: {{total: 0.3, first_token: 0.2}}}}
  - {{name: broken, provider: oa, model: broken-model, price: {{input: 1, output: 2}}}}
{extra_models}
routes:
  - name: auto
    policy: {{kind: first, models: [broken, gpt-4o-mini]}}
    fallbacks: [claude-haiku-4-5]
{routes}
{auth}
"""


async def start_stack(fake_models: dict[str, FakeModel] | None = None, **cfg) -> Stack:
    models = {
        "gpt-4o-mini": FakeModel(chunks=5),
        "claude-haiku-4-5": FakeModel(chunks=5),
        "gemini-2.5-flash": FakeModel(chunks=5),
        "slow-model": FakeModel(hang=True),
        "broken-model": FakeModel(error_status=500),
    }
    models.update(fake_models or {})
    fake = FakeUpstream(models)
    await fake.start()
    config = configfile.loads(config_yaml(fake, **cfg), file="test.yaml", env={})
    gw = Gateway(config)
    server = HttpServer(App(gw), max_body=config.server.max_body_bytes)
    port = await server.start("127.0.0.1", 0)
    return Stack(fake, gw, server, f"http://127.0.0.1:{port}")


async def stop_stack(s: Stack) -> None:
    await s.server.stop(grace=0.5)
    await s.gateway.close()
    await s.fake.stop(grace=0.1)


@pytest.fixture
async def stack():
    s = await start_stack()
    try:
        yield s
    finally:
        await stop_stack(s)
