"""The ledger and keys on the request path, over real HTTP: what a user sees with `switchman
keys` and `switchman spend` after traffic through the gateway."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from decimal import Decimal

import aiohttp
import openai
import pytest

from switchman import configfile
from switchman.app import App
from switchman.clock import VirtualClock
from switchman.gateway import Gateway
from switchman.http.server import HttpServer
from switchman.metering import Metering
from switchman.testing.fake_upstream import FakeModel, FakeUpstream
from switchman.testing.transport import Scripted, ScriptedClient

ADMIN = "admin-secret-key"


@pytest.fixture
async def metered(tmp_path):
    cut = {"chunks": 6, "cut_after": 2}  # streams that break after two of six pieces
    fake = FakeUpstream({"gpt-4o-mini": FakeModel(cached_tokens=2), "claude-haiku-4-5": FakeModel(),
                         "broken": FakeModel(error_status=500), "cut-oa": FakeModel(**cut),
                         "cut-an": FakeModel(cached_tokens=3, cache_write_tokens=2, **cut),
                         "cut-gm": FakeModel(cached_tokens=3, **cut)})
    await fake.start()
    cfg = configfile.loads(f"""
providers:
  oa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "k"}}
  an: {{kind: anthropic, base_url: "{fake.url('anthropic')}", api_key: "k"}}
  gm: {{kind: gemini, base_url: "{fake.url('gemini')}", api_key: "k"}}
models:
  - {{name: gpt-4o-mini, provider: oa}}
  - {{name: claude-haiku-4-5, provider: an}}
  - {{name: broken, provider: oa, price: {{input: 1, output: 1}}}}
  - {{name: cut-oa, provider: oa, price: {{input: 1, output: 1}}}}
  - {{name: cut-an, provider: an, price: {{input: 1, output: 1}}}}
  - {{name: cut-gm, provider: gm, price: {{input: 1, output: 1}}}}
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


@pytest.mark.parametrize("model", ["cut-oa", "cut-an", "cut-gm"])
async def test_a_stream_that_breaks_before_its_final_usage_is_counted_locally_and_marked_estimated(metered, tmp_path, model):
    """Anthropic's message_start and every Gemini chunk carry usage so far (input, and a
    placeholder output) before the final counts: a stream cut in between must not be booked as
    upstream-reported usage, or the ledger claims an exact cost it never got."""
    fake, gw, meter, base = metered
    got = ""
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=ADMIN, max_retries=0) as c:
        with pytest.raises(openai.APIError):
            s = await c.chat.completions.create(model=model, stream=True,
                                                messages=[{"role": "user", "content": "tell me a long story " * 8}])
            async for chunk in s:
                got += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert len(got) > 40, "the client got the first pieces, then the error event"
    assert fake.stats[model].answers == 0 and fake.stats[model].output_tokens == 0, "the upstream reported no usage"
    await meter.accountant.ledger.drain()
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        (status, estimated, out, cost), = db.execute(
            "SELECT status, estimated, output_tokens, cost_pusd FROM attempts WHERE model = ?", (model,)).fetchall()
        req_estimated, = db.execute("SELECT estimated FROM requests WHERE model = ?", (model,)).fetchone()
    assert estimated == 1 and req_estimated == 1, "booked as an estimate, not as reported usage"
    assert out == len(got) // 4, "the output is what was streamed, counted locally"
    assert status == 200 and cost > 0


async def test_a_hedge_that_answered_in_full_but_lost_is_booked_at_its_own_price(tmp_path):
    """The first model and its hedge answer in the same instant: the ledger names the model whose
    answer the client got, and books the loser's whole answer too, each at its own price."""
    clock = VirtualClock()
    script = {"slow": Scripted(latency=1.0, text="slow"), "fast": Scripted(latency=0.5, text="fast")}
    cfg = configfile.loads(f"""
providers:
  p0: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}
  p1: {{kind: openai, base_url: "http://127.0.0.1:8/v1"}}
models:
  - {{name: slow, provider: p0, price: {{input: 1, output: 1}}}}
  - {{name: fast, provider: p1, price: {{input: 100, output: 100}}}}
routes:
  - {{name: r, policy: {{kind: first, models: [slow, fast]}}, hedge: {{after: 0.5}}}}
auth: {{admin_key: "{ADMIN}"}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
""", env={})
    gw = Gateway(cfg, client=ScriptedClient(clock, script), clock=clock)
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter))
    port = await server.start("127.0.0.1", 0)
    try:
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=ADMIN, max_retries=0) as c:
            call = asyncio.ensure_future(c.chat.completions.create(model="r", messages=[{"role": "user", "content": "hi"}]))
            while not call.done():
                await clock.run_for(0.05)
            got = (await call).choices[0].message.content
        await meter.accountant.ledger.drain()
        with sqlite3.connect(tmp_path / "ledger.db") as db:
            (model, cost), = db.execute("SELECT model, cost_pusd FROM requests").fetchall()
            atts = db.execute("SELECT model, status, input_tokens, output_tokens FROM attempts ORDER BY idx").fetchall()
    finally:
        await server.stop(grace=0.1)
        await meter.close()
        await gw.close()
    assert model == got, "the answering model is the one whose answer the client got"
    assert atts == [("slow", 200, 3, 1), ("fast", 200, 3, 1)], "both answered in full, both reported usage"
    assert cost == 4 * 1_000_000 + 4 * 100_000_000, "4 tokens at $1/M plus 4 at $100/M, in picodollars"
