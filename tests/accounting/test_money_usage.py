"""Money probe F7-F9 over HTTP with the SDKs: an upstream that reports absurd, negative,
fractional or missing usage never jams the ledger, never refunds a budget, never costs the client
its answer, and never leaves a reservation held."""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal

import aiohttp
import anthropic
import openai
import pytest

from switchman import configfile
from switchman.accounting.budgets import holds_for, key_rule
from switchman.app import App
from switchman.gateway import Gateway
from switchman.http.server import HttpServer
from switchman.metering import Metering
from switchman.testing.fake_upstream import FakeModel, FakeUpstream

ADMIN = "admin-secret-key"
BAD_OPENAI = {
    "huge": {"completion_tokens": 10**13},
    "negative": {"completion_tokens": -1_000_000},
    "negcache": {"prompt_tokens_details": {"cached_tokens": -1_000_000}},
    "fraction": {"prompt_tokens": 10.5},
    "text": {"prompt_tokens": "many"},
    "missing": {"prompt_tokens": None, "completion_tokens": None},
    "overcap": {"completion_tokens": 5000},  # readable, but far past the 50 tokens the call allowed
}


async def gateway(tmp_path, fake: FakeUpstream, budget: str = "1/day"):
    models = "\n".join(f"  - {{name: {n}, provider: oa, price: {{input: 100, output: 200}}}}" for n in BAD_OPENAI)
    cfg = configfile.loads(f"""
providers:
  oa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "k"}}
  an: {{kind: anthropic, base_url: "{fake.url('anthropic')}", api_key: "k"}}
models:
{models}
  - {{name: ok, provider: oa, price: {{input: 100, output: 200}}}}
  - {{name: ant-huge, provider: an, model: ant-huge, price: {{input: 100, output: 200}}}}
auth: {{admin_key: "{ADMIN}", keys_required: true}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db", flush_interval: 0.01}}
retry: {{attempts: 1}}
""", env={})
    gw = Gateway(cfg)
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter))
    port = await server.start("127.0.0.1", 0)
    return gw, meter, server, f"http://127.0.0.1:{port}"


@pytest.fixture
async def bad_usage(tmp_path):
    fake = FakeUpstream({**{n: FakeModel(usage=u) for n, u in BAD_OPENAI.items()},
                         "ant-huge": FakeModel(usage={"output_tokens": 10**13}), "ok": FakeModel()})
    await fake.start()
    gw, meter, server, base = await gateway(tmp_path, fake)
    keys = {}
    async with aiohttp.ClientSession() as s:
        for name, budget in (("big", "5/day"), ("small", "0.05/day")):
            async with s.post(base + "/admin/keys", json={"name": name, "budget": budget},
                              headers={"authorization": f"Bearer {ADMIN}"}) as r:
                keys[name] = (await r.json())["key"]
    yield fake, meter, base, keys
    await server.stop(grace=0.5)
    await meter.close()
    await gw.close()
    await fake.stop()


async def test_absurd_usage_is_counted_locally_and_never_costs_the_client_its_answer(bad_usage, tmp_path):
    fake, meter, base, keys = bad_usage
    key = keys["big"]
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0) as c:
        for name in BAD_OPENAI:
            for stream in (False, True):
                if stream:
                    s = await c.chat.completions.create(model=name, stream=True, max_tokens=50,
                                                        stream_options={"include_usage": True},
                                                        messages=[{"role": "user", "content": "hello there"}])
                    text = "".join([ch.choices[0].delta.content or "" async for ch in s if ch.choices])
                else:
                    raw = await c.chat.completions.with_raw_response.create(
                        model=name, max_tokens=50, messages=[{"role": "user", "content": "hello there"}])
                    text = raw.parse().choices[0].message.content
                    # the refused usage's price is not what the ledger books (it counts locally, after
                    # the answer is sent): the cost is not known yet, so there is no header, and the
                    # reason says why (it used to show $1 for "overcap", $0 for "huge")
                    assert "x-switchman-cost-usd" not in raw.headers, (name, raw.headers["x-switchman-cost-usd"])
                    assert "not booked" in raw.headers["x-switchman-reason"]
                    assert "counted locally" in raw.headers["x-switchman-reason"], name
                assert text == "echo: hello there", name  # the answer arrived
    async with anthropic.AsyncAnthropic(base_url=base, api_key=key, max_retries=0) as c:
        msg = await c.messages.create(model="ant-huge", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
        assert msg.content[0].text == "echo: hi"
    await meter.accountant.flush()
    db = sqlite3.connect(tmp_path / "ledger.db")
    rows = db.execute("SELECT input_tokens, output_tokens, cost_pusd, estimated FROM requests").fetchall()
    assert len(rows) == 2 * len(BAD_OPENAI) + 1  # every request has its row
    for inp, out, cost, est in rows:
        assert type(inp) is int and type(out) is int and inp >= 0 and out >= 0 and 0 <= cost < 10**12
    assert all(est for *_, est in rows), rows  # every one of them counted locally, and says so
    # the budget was charged, never refunded: spend is positive, nothing is left reserved
    (k,) = [k for k in await meter.accountant.list_keys() if k.name == "big"]
    (h,) = holds_for([key_rule(k.name, k.budget_usd, k.budget_period)], time.time(), key_id=k.id, key_name=k.name,
                     user=None, tags={})
    spent, reserved = (await meter.accountant.state.read([h.counter]))[0]
    assert spent > 0 and reserved == 0
    assert meter.accountant.ledger.stats.quarantined == 0  # nothing poisoned got that far


async def test_negative_usage_never_refunds_a_budget(bad_usage):
    fake, meter, base, keys = bad_usage
    key = keys["small"]
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0) as c:
        got = []
        for _ in range(30):  # the probe's $0.01/day key made 30 of 30 with a -$2 refund each
            try:
                await c.chat.completions.create(model="negative", max_tokens=50,
                                                messages=[{"role": "user", "content": "x" * 400}])
                got.append(200)
            except openai.RateLimitError:
                got.append(429)
    assert 429 in got  # the $0.05 budget ran out: spend only ever grew


async def _admin(base: str, path: str) -> dict:
    async with aiohttp.ClientSession() as s:
        async with s.get(base + path, headers={"authorization": f"Bearer {ADMIN}"}) as r:
            return await r.json()
