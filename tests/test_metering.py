"""The ledger and keys on the request path, over real HTTP: what a user sees with `switchman
keys` and `switchman spend` after traffic through the gateway."""

from __future__ import annotations

import json
from decimal import Decimal

import aiohttp
import openai
import pytest

from switchman import configfile
from switchman.app import App
from switchman.gateway import Gateway
from switchman.http.server import HttpServer
from switchman.metering import Metering
from switchman.testing.fake_upstream import FakeModel, FakeUpstream

ADMIN = "admin-secret-key"


@pytest.fixture
async def metered(tmp_path):
    fake = FakeUpstream({"gpt-4o-mini": FakeModel(cached_tokens=2), "claude-haiku-4-5": FakeModel(),
                         "broken": FakeModel(error_status=500)})
    await fake.start()
    cfg = configfile.loads(f"""
providers:
  oa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "k"}}
  an: {{kind: anthropic, base_url: "{fake.url('anthropic')}", api_key: "k"}}
models:
  - {{name: gpt-4o-mini, provider: oa}}
  - {{name: claude-haiku-4-5, provider: an}}
  - {{name: broken, provider: oa, price: {{input: 1, output: 1}}}}
routes:
  - {{name: auto, policy: {{kind: first, models: [broken, gpt-4o-mini, claude-haiku-4-5]}}}}
auth: {{admin_key: "{ADMIN}", keys_required: true}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db", flush_interval: 0.01}}
retry: {{attempts: 1}}
""", env={})
    gw = Gateway(cfg)
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter))
    port = await server.start("127.0.0.1", 0)
    yield fake, gw, meter, f"http://127.0.0.1:{port}"
    await server.stop(grace=0.5)
    await meter.close()
    await gw.close()
    await fake.stop()


async def admin(base, method, path, body=None):
    async with aiohttp.ClientSession() as s:
        async with s.request(method, base + path, json=body, headers={"authorization": f"Bearer {ADMIN}"}) as r:
            return r.status, await r.json()


async def test_keys_spend_and_ledger_agree_with_the_upstream(metered, tmp_path):
    fake, gw, meter, base = metered
    status, created = await admin(base, "POST", "/admin/keys", {"name": "team-a", "routes": ["auto"]})
    assert status in (200, 201), created
    key = created["key"]
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0) as c:
        costs = Decimal(0)
        for i in range(5):
            raw = await c.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": f"question number {i} " * 5}])
            costs += Decimal(raw.headers["x-switchman-cost-usd"])
        s = await c.chat.completions.create(model="auto", stream=True,
                                            messages=[{"role": "user", "content": "a stream"}])
        async for _ in s:
            pass
        assert "auto" in {m.id async for m in c.models.list()}  # a virtual key may list models
        with pytest.raises(openai.PermissionDeniedError):  # the key may use the route only
            await c.chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": "x"}])
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key="sk-sm-not-a-real-key", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            await c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    await meter.accountant.ledger.drain()
    rows = {r.group: r for r in await meter.accountant.spend(by="model")}
    # broken (provider oa) fails first; the other provider's model answers (no retry configured)
    assert set(rows) >= {"claude-haiku-4-5"}
    total = Decimal(0)
    for name in ("gpt-4o-mini", "claude-haiku-4-5"):
        st = fake.stats[name]
        price = gw.config.models[name].price
        expect = price.cost(st.input_tokens, st.output_tokens, st.cache_read_tokens, st.cache_write_tokens)
        got = Decimal(str(rows[name].cost)) if name in rows else Decimal(0)
        assert got == expect, f"{name}: the ledger equals upstream-reported usage × price, exactly"
        total += expect
    assert costs > 0 and costs <= total  # the headers priced the non-streaming five
    status, spend = await admin(base, "GET", "/admin/spend?by=key")
    assert status == 200 and json.dumps(spend).count("team-a") >= 1
    # the key is stored hashed: its plaintext is nowhere in the database's files
    db_files = [p for p in tmp_path.iterdir() if p.name.startswith("ledger.db")]
    assert db_files
    assert all(key.encode() not in p.read_bytes() for p in db_files)
    assert any(b"team-a" in p.read_bytes() for p in db_files), "the files read are the ones holding the keys"
