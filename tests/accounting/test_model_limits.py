"""A model's own rpm/tpm limits (``limits:`` in its config) over real HTTP: traffic moves to the
next candidate before the upstream would answer 429, the limit holds across workers sharing
Redis, and with every candidate at its limit the client gets 429 with Retry-After."""

from __future__ import annotations

import openai
import pytest

from switchman import configfile
from switchman.accounting import Accountant, AccountingSettings
from switchman.accounting.settings import LedgerSettings, StateSettings
from switchman.app import App
from switchman.gateway import Gateway
from switchman.http.server import HttpServer
from switchman.metering import Metering
from switchman.testing.fake_upstream import FakeModel, FakeUpstream

from .conftest import NOON, REDIS_URL, SLOW_OK


class Worker:
    """One gateway worker: its own gateway, accountant and server, on the fixed test clock."""

    def __init__(self, cfg, state: StateSettings, ledger: str) -> None:
        self.gw = Gateway(cfg)
        acc = Accountant(AccountingSettings(LedgerSettings(url=ledger, flush_interval=0.01), state), now=lambda: NOON)
        self.meter = Metering(self.gw, acc)
        self.server = HttpServer(App(self.gw, self.meter))

    async def start(self) -> str:
        await self.meter.start()
        return f"http://127.0.0.1:{await self.server.start('127.0.0.1', 0)}/v1"

    async def stop(self) -> None:
        await self.server.stop(grace=0.2)
        await self.meter.close()
        await self.gw.close()


@pytest.fixture
async def stack(request, tmp_path):
    """``stack(models_yaml, fakes, workers=1)`` -> (fake, [worker base URLs], [workers]), the state
    backend from the test's ``backend`` parameter (memory, or Redis shared by every worker)."""
    backend = getattr(request, "param", "memory")
    state = StateSettings()
    if backend == "redis":
        state = StateSettings(backend="redis", url=REDIS_URL, prefix=request.getfixturevalue("redis_prefix"), timeout=SLOW_OK)
    started: list = []

    async def make(models: str, fakes: dict[str, FakeModel], workers: int = 1):
        fake = FakeUpstream(fakes)
        await fake.start()
        started.append(fake)
        cfg = configfile.loads(f"""
providers:
  oa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "k"}}
models:
{models}
retry: {{attempts: 1}}
""", env={})
        ws = [Worker(cfg, state, f"sqlite:///{tmp_path}/ledger{i}.db") for i in range(workers)]
        started.extend(ws)
        return fake, [await w.start() for w in ws], ws

    yield make
    for x in reversed(started):
        await x.stop()


async def ask(base: str, model: str, content: str = "hi"):
    async with openai.AsyncOpenAI(base_url=base, api_key="none", max_retries=0) as c:
        raw = await c.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": content}])
        return raw.headers


LIMITED = """
  - {name: limited, provider: oa, model: up-limited, price: {input: 1, output: 2}, limits: {rpm: 3}, fallbacks: [spare]}
  - {name: spare, provider: oa, model: up-spare, price: {input: 1, output: 2}}
"""


@pytest.mark.parametrize("stack", ["memory", "redis"], indirect=True)
async def test_a_model_at_its_rpm_limit_overflows_to_the_next_candidate(stack, request):
    workers = 2 if request.node.callspec.params["stack"] == "redis" else 1  # Redis: 2 workers, one count
    fake, bases, _ = await stack(LIMITED, {"up-limited": FakeModel(), "up-spare": FakeModel()}, workers)
    answered, reasons = [], []
    for i in range(5):
        h = await ask(bases[i % workers], "limited")
        answered.append(h["x-switchman-model"])
        reasons.append(h["x-switchman-reason"])
    assert answered == ["limited"] * 3 + ["spare"] * 2
    assert all("skipped limited:at-rpm-limit" in r for r in reasons[3:]), reasons
    assert fake.stats["up-limited"].requests == 3, "the upstream never saw a call over the limit"


async def test_every_candidate_at_its_limit_answers_429_with_retry_after(stack):
    fake, (base,), _ = await stack("  - {name: solo, provider: oa, price: {input: 1, output: 2}, limits: {rpm: 1}}",
                                   {"solo": FakeModel()})
    await ask(base, "solo")
    with pytest.raises(openai.RateLimitError) as e:
        await ask(base, "solo")
    assert e.value.status_code == 429
    assert e.value.response.headers["retry-after"] == "60"  # the minute window ends then (NOON is on a minute)
    assert "solo:at-rpm-limit" in e.value.message
    assert fake.stats["solo"].requests == 1


@pytest.mark.parametrize("stack", ["memory", "redis"], indirect=True)
async def test_tpm_counts_the_usage_the_upstream_reported(stack):
    # The prompt is estimated at 0 tokens, but each answer uses 121 (1 in, 120 out): once the first
    # request settles, the model's 100 tokens a minute are spent and the next call goes elsewhere.
    fake, (base,), (w,) = await stack("""
  - {name: wordy, provider: oa, price: {input: 1, output: 2}, limits: {tpm: 100}, fallbacks: [spare]}
  - {name: spare, provider: oa, price: {input: 1, output: 2}}
""", {"wordy": FakeModel(reply="x" * 480), "spare": FakeModel()})
    assert (await ask(base, "wordy"))["x-switchman-model"] == "wordy"
    await w.meter.accountant.flush()
    h = await ask(base, "wordy")
    assert h["x-switchman-model"] == "spare"
    assert "skipped wordy:at-tpm-limit" in h["x-switchman-reason"]


async def test_models_without_rate_limits_cost_no_shared_state_round_trip(stack):
    _, (base,), (w,) = await stack(LIMITED.replace(", limits: {rpm: 3}", ""), {"up-limited": FakeModel()})
    assert w.gw.executor.rate_limit is None
    assert (await ask(base, "limited"))["x-switchman-model"] == "limited"
