"""Money probe F2, F3, F5 and F6 over HTTP with the SDKs: every paid call of a plan (a cascade's
judge, a resumed stream, a downgrade target) is reserved and capped, and what is sent upstream is
the output cap that was reserved for."""

from __future__ import annotations

import asyncio
import sqlite3
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
D = Decimal


@pytest.fixture
async def probe(tmp_path):
    fake = FakeUpstream({"cheap": FakeModel(), "cheap2": FakeModel(), "judgelow": FakeModel(reply="2"),
                         "long": FakeModel(reply="x" * 40_000), "cut": FakeModel(cut_after=2, chunks=8),
                         "dear": FakeModel(), "failing": FakeModel(error_status=500)})
    await fake.start()
    oa, an, gm = fake.url("openai"), fake.url("anthropic"), fake.url("gemini")
    cfg = configfile.loads(f"""
providers:
  oa: {{kind: openai, base_url: "{oa}", api_key: "k"}}
  an: {{kind: anthropic, base_url: "{an}", api_key: "k"}}
  gm: {{kind: gemini, base_url: "{gm}", api_key: "k"}}
models:
  - {{name: cheap, provider: oa, price: {{input: 1, output: 2}}}}
  - {{name: cheap2, provider: an, price: {{input: 1, output: 2}}}}
  - {{name: judge_dear, provider: oa, model: judgelow, price: {{input: 1000, output: 1000}}}}
  - {{name: long, provider: oa, price: {{input: 1, output: 100}}}}
  - {{name: longant, provider: an, model: long, price: {{input: 1, output: 100}}}}
  - {{name: longgem, provider: gm, model: long, price: {{input: 1, output: 100}}}}
  - {{name: dearcut, provider: oa, model: cut, price: {{input: 100, output: 200}}}}
  - {{name: dear, provider: oa, price: {{input: 100, output: 200}}}}
  - {{name: failing, provider: oa, price: {{input: 1, output: 2}}}}
routes:
  - {{name: casc, policy: {{kind: cascade, models: [cheap, cheap2], checks: {{judge: {{model: judge_dear, min: 7}}}}}}}}
  - {{name: resumed, policy: {{kind: first, models: [dearcut, dear]}}, stream: {{on_cut: resume}}}}
  - {{name: cheaproute, policy: {{kind: first, models: [failing]}}, fallbacks: [dear]}}
auth: {{admin_key: "{ADMIN}", keys_required: true}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db", flush_interval: 0.01}}
retry: {{attempts: 1}}
budgets:
  - {{key: kd, limit: 1/day, soft: 0.01, downgrade_to: cheaproute}}
""", env={})
    gw = Gateway(cfg)
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter))
    port = await server.start("127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"

    async def key(name: str, **fields) -> str:
        async with aiohttp.ClientSession() as s:
            async with s.post(base + "/admin/keys", json={"name": name, **fields},
                              headers={"authorization": f"Bearer {ADMIN}"}) as r:
                assert r.status == 201, await r.text()
                return (await r.json())["key"]

    async def spent(name: str) -> Decimal:
        await meter.accountant.flush()
        db = sqlite3.connect(tmp_path / "ledger.db")
        (kid,) = db.execute("SELECT id FROM keys WHERE name = ?", (name,)).fetchone()
        got = db.execute("SELECT COALESCE(SUM(cost_pusd), 0) FROM requests WHERE key_id = ?", (kid,)).fetchone()[0]
        return D(got) / D(10**12)

    yield fake, base, key, spent
    await server.stop(grace=0.5)
    await meter.close()
    await gw.close()
    await fake.stop()


def client(base: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)


async def attempt(coro):
    try:
        return await coro
    except openai.APIStatusError as e:
        return e


async def test_f2_a_cascade_judge_is_reserved_so_concurrent_requests_stay_in_budget(probe):
    fake, base, key, spent = probe
    k = await key("k", budget="0.05/day")
    async with client(base, k) as c:
        got = await asyncio.gather(*(attempt(c.chat.completions.create(
            model="casc", max_tokens=100, messages=[{"role": "user", "content": f"question {i}"}])) for i in range(5)))
    assert any(not isinstance(g, Exception) for g in got) or all(getattr(g, "status_code", 0) == 429 for g in got)
    assert await spent("k") <= D("0.05")  # the probe saw $0.29: 5.8x the budget


async def test_f2_the_cost_cap_bounds_the_judge_too(probe):
    fake, base, key, spent = probe
    k = await key("k2")
    async with client(base, k) as c:
        got = await attempt(c.chat.completions.with_raw_response.create(
            model="casc", max_tokens=100, messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-switchman-max-cost-usd": "0.001"}))
    if isinstance(got, Exception):
        assert got.status_code in (402, 429) and "0.001" in str(got)
    else:
        assert D(got.headers["x-switchman-cost-usd"]) <= D("0.001")  # the probe saw $0.058
        assert "cost cap: left out" in got.headers["x-switchman-reason"]  # it says what it left out
    assert await spent("k2") <= D("0.001")


@pytest.mark.parametrize("model,field", [("long", "max_tokens"), ("longant", "max_tokens"), ("longgem", "maxOutputTokens")])
async def test_f3_with_no_max_tokens_the_upstream_gets_the_cap_that_was_reserved(probe, model, field):
    fake, base, key, spent = probe
    k = await key(f"k-{model}", budget="1.5/day")
    async with client(base, k) as c:
        got = await asyncio.gather(*(attempt(c.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "write a lot"}])) for _ in range(4)))
    sent = [r.json for r in fake.requests if r.json and (r.model == "long")]
    assert sent
    for body in sent:
        cap = body.get(field) or body.get("max_completion_tokens") or body.get("generationConfig", {}).get(field)
        assert cap == 4096  # the default cap, reserved: 4096 x $100/M = $0.41 at most
    assert await spent(f"k-{model}") <= D("1.5")  # the probe saw $3.00 on a $1.50 budget


async def test_f5_a_resumed_stream_is_reserved_for_both_models(probe):
    fake, base, key, spent = probe
    k = await key("kr", budget="1.5/day")
    async with client(base, k) as c:
        for _ in range(3):
            got = await attempt(c.chat.completions.create(
                model="resumed", stream=True, max_tokens=20,
                messages=[{"role": "user", "content": "y" * 40_000}]))
            if isinstance(got, Exception):
                assert got.status_code == 429
                break
            async for _ in got:
                pass
    assert await spent("kr") <= D("1.5")  # the probe saw $1.81


async def test_f6_a_downgrade_never_reaches_a_route_the_key_may_not_use_nor_breaks_the_cap(probe):
    fake, base, key, spent = probe
    k = await key("kd", routes=["cheap", "dear"])
    async with client(base, k) as c:
        await c.chat.completions.create(model="dear", max_tokens=50, messages=[{"role": "user", "content": "w" * 4000}])
        raw = await c.chat.completions.with_raw_response.create(
            model="cheap", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-switchman-max-cost-usd": "0.001"})
    assert raw.headers["x-switchman-model"] == "cheap"  # not cheaproute's fallback, dear
    assert "downgrade to cheaproute skipped" in raw.headers["x-switchman-reason"]
    assert D(raw.headers["x-switchman-cost-usd"]) <= D("0.001")  # the probe saw $0.0254


async def test_f10_spend_books_the_judge_on_the_judge(probe):
    fake, base, key, spent = probe
    k = await key("kj")
    async with client(base, k) as c:
        for i in range(3):
            await c.chat.completions.create(model="casc", max_tokens=50, messages=[{"role": "user", "content": f"q{i}"}])
    total = await spent("kj")
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "/admin/spend?by=model", headers={"authorization": f"Bearer {ADMIN}"}) as r:
            rows = {x["group"]: x for x in (await r.json())["rows"]}
    assert D(rows["judge_dear"]["cost_usd"]) > 0 and rows["judge_dear"]["requests"] == 0  # it answered none
    assert rows["cheap2"]["requests"] == 3  # cheap's answers were rejected by the judge: cheap2 answered
    assert D(rows["cheap2"]["cost_usd"]) < D(rows["judge_dear"]["cost_usd"])  # not charged the judge's cost
    assert D(rows["cheap2"]["savings_usd"]) >= 0
    assert sum(D(x["cost_usd"]) for x in rows.values()) == total  # rows add up to the ledger


async def test_f11_a_restricted_key_sees_only_its_models_and_learns_no_other_names(probe):
    fake, base, key, spent = probe
    k = await key("kl", routes=["casc", "cheap"])
    async with client(base, k) as c:
        names = sorted(m.id for m in (await c.models.list()).data)
        assert names == ["casc", "cheap"]
        known = await attempt(c.chat.completions.create(model="dear", messages=[{"role": "user", "content": "x"}]))
        unknown = await attempt(c.chat.completions.create(model="nosuch", messages=[{"role": "user", "content": "x"}]))
    assert known.status_code == unknown.status_code == 403
