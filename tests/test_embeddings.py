"""``POST /v1/embeddings`` with the real ``openai`` SDK: routed like chat (routes, fallbacks), to
OpenAI-wire and Gemini upstreams, billed in the ledger at the catalog's embedding prices, and bad
bodies answered in OpenAI's shape."""

from __future__ import annotations

import sqlite3
from decimal import Decimal

import aiohttp
import openai
import pytest

from conftest import start_stack, stop_stack
from switchman import configfile
from switchman.app import App
from switchman.gateway import Gateway
from switchman.http.server import HttpServer
from switchman.metering import Metering
from switchman.testing.embed_wire import tokens_of, vector
from switchman.testing.fake_upstream import FakeModel, FakeUpstream

EXTRA = """  - {name: text-embedding-3-small, provider: oa}
  - {name: gemini-embedding-001, provider: gm}
  - {name: flaky-embed, provider: oa, model: text-embedding-3-large}
"""
ROUTES = "  - {name: embed, policy: {kind: first, models: [flaky-embed, text-embedding-3-small]}}\n"


@pytest.fixture
async def stack():
    s = await start_stack({"text-embedding-3-small": FakeModel(), "gemini-embedding-001": FakeModel(),
                           "text-embedding-3-large": FakeModel(error_status=503)}, extra_models=EXTRA, routes=ROUTES)
    s.client = openai.AsyncOpenAI(base_url=s.openai_url, api_key="k", max_retries=0)
    try:
        yield s
    finally:
        await s.client.close()
        await stop_stack(s)


def close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b))


@pytest.mark.parametrize("model", ["text-embedding-3-small", "gemini-embedding-001"])
async def test_vectors_in_float_and_in_base64_the_sdks_default(stack, model):
    texts = ["the cat sat", "on the mat"]
    raw = await stack.client.embeddings.with_raw_response.create(model=model, input=texts)  # base64 on the wire
    r = raw.parse()
    assert [d.index for d in r.data] == [0, 1]
    assert all(close(d.embedding, vector(t)) for d, t in zip(r.data, texts))
    f = await stack.client.embeddings.create(model=model, input="the cat sat", encoding_format="float", dimensions=16)
    assert close(f.data[0].embedding, vector("the cat sat", 16))
    assert raw.headers["x-switchman-model"] == model and Decimal(raw.headers["x-switchman-cost-usd"]) > 0
    if model.startswith("text-"):  # OpenAI counts; Gemini does not, so the gateway counts (an estimate)
        assert r.usage.prompt_tokens == sum(map(tokens_of, texts))
    else:
        sent = stack.fake.requests[-2].json
        assert [q["content"]["parts"][0]["text"] for q in sent["requests"]] == texts  # one batch call


async def test_more_inputs_than_a_gemini_batch_takes_are_split_and_joined_in_order(stack):
    texts = [f"text number {i}" for i in range(250)]  # Gemini takes at most 100 a call
    stack.fake.requests.clear()
    r = await stack.client.embeddings.create(model="gemini-embedding-001", input=texts, encoding_format="float")
    assert len(r.data) == 250 and all(close(d.embedding, vector(t)) for d, t in zip(r.data, texts))
    assert [d.index for d in r.data] == list(range(250))
    sizes = sorted(len(q.json["requests"]) for q in stack.fake.requests if q.path.endswith(":batchEmbedContents"))
    assert sizes == [50, 100, 100]
    assert r.usage.prompt_tokens > 0  # Gemini reports none: the gateway's count of all 250


async def test_a_route_falls_back_when_its_first_model_fails(stack):
    raw = await stack.client.embeddings.with_raw_response.create(model="embed", input="hello")
    assert raw.headers["x-switchman-model"] == "text-embedding-3-small"
    assert int(raw.headers["x-switchman-attempts"]) >= 2 and "flaky-embed" in raw.headers["x-switchman-reason"]


@pytest.mark.parametrize("model,says", [("gpt-4o-mini", "chat model"), ("claude-haiku-4-5", "no embeddings")])
async def test_a_model_that_makes_no_embeddings_is_a_400(stack, model, says):
    with pytest.raises(openai.BadRequestError) as e:
        await stack.client.embeddings.create(model=model, input="hello")
    assert says in e.value.body["message"] and e.value.body["param"] == "model"


async def test_a_chat_request_to_an_embedding_model_is_a_400(stack):
    with pytest.raises(openai.BadRequestError) as e:
        await stack.client.chat.completions.create(model="text-embedding-3-small",
                                                   messages=[{"role": "user", "content": "hi"}])
    assert "embedding model" in e.value.body["message"]


async def test_token_ids_reach_openai_and_are_refused_by_gemini(stack):
    r = await stack.client.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3]], encoding_format="float")
    assert len(r.data) == 1
    with pytest.raises(openai.BadRequestError) as e:
        await stack.client.embeddings.create(model="gemini-embedding-001", input=[[1, 2, 3]])
    assert e.value.body["param"] == "input"


@pytest.mark.parametrize("body,param", [
    ({"model": "text-embedding-3-small"}, "input"),
    ({"model": "text-embedding-3-small", "input": []}, "input"),
    ({"model": "text-embedding-3-small", "input": ["ok", ""]}, "input[1]"),
    ({"model": "text-embedding-3-small", "input": [{"text": "x"}]}, "input[0]"),
    ({"model": "text-embedding-3-small", "input": "x", "dimensions": 0}, "dimensions"),
    ({"model": "text-embedding-3-small", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"input": "x"}, "model"),
])
async def test_bad_bodies_are_400s_naming_the_field(stack, body, param):
    async with aiohttp.ClientSession() as s, s.post(stack.openai_url + "/embeddings", json=body) as r:
        got = await r.json()
    assert r.status == 400 and got["error"]["param"] == param, got


async def test_the_ledger_bills_embeddings_at_the_catalogs_price_and_budgets_hold(tmp_path):
    fake = FakeUpstream({"text-embedding-3-small": FakeModel()})
    await fake.start()
    cfg = configfile.loads(f"""
providers: {{oa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "k"}}}}
models: [{{name: text-embedding-3-small, provider: oa}}]
auth: {{admin_key: admin-secret, keys_required: true}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db", flush_interval: 0.01}}
""", env={})
    gw = Gateway(cfg)
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter))
    base = f"http://127.0.0.1:{await server.start('127.0.0.1', 0)}"
    try:
        async with aiohttp.ClientSession(headers={"authorization": "Bearer admin-secret"}) as s, \
                s.post(base + "/admin/keys", json={"name": "rag", "budget": "0.00001/day"}) as r:
            key = (await r.json())["key"]
        c = openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0)
        text = "a paragraph to index " * 40
        r = await c.embeddings.create(model="text-embedding-3-small", input=text)
        assert r.usage.prompt_tokens == tokens_of(text)
        for _ in range(5):  # the key's $0.00001 a day runs out: refused, not overspent
            try:
                await c.embeddings.create(model="text-embedding-3-small", input=text)
            except openai.RateLimitError:
                break
        else:
            pytest.fail("the budget never refused")
        await c.close()
        await meter.close()
        rows = sqlite3.connect(f"{tmp_path}/ledger.db").execute(
            "SELECT input_tokens, output_tokens, cost_pusd, dialect FROM requests WHERE status = 200").fetchall()
        first = rows[0]
        # $0.02 per 1M tokens = 20,000 picodollars a token, to the picodollar
        assert first == (tokens_of(text), 0, tokens_of(text) * 20_000, "embeddings")
        assert sum(r[2] for r in rows) <= 10_000_000  # never past the budget
    finally:
        await server.stop(grace=0.5)
        await gw.close()
        await fake.stop()
