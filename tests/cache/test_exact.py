"""The exact response cache through ``switchman serve``, with the real ``openai`` and
``anthropic`` SDKs: hits in both dialects and across them, streamed and not, with tool calls;
scopes kept apart; the client's cache controls; single flight; the ledger at $0 with the saving."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import aiohttp
import anthropic
import openai
import pytest

from switchman.testing.fake_upstream import FakeModel

from telemetry.serving import ADMIN, serve, stop

CACHE = "cache: {enabled: true}"
MSG = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture
async def gw(tmp_path):
    s = await serve(tmp_path, extra=CACHE, models={"echo": FakeModel(chunks=3, latency=0.05)})
    yield s
    await stop(s)


def oa(s, key: str = ADMIN) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=s.base + "/v1", api_key=key, max_retries=0)


async def ask(client, headers=None, **kw):
    raw = await client.chat.completions.with_raw_response.create(
        model=kw.pop("model", "echo"), messages=kw.pop("messages", MSG), extra_headers=headers or {}, **kw)
    return raw.headers, raw.parse()


async def test_hits_in_both_dialects_and_across_them(gw):
    s = gw
    h1, r1 = await ask(oa(s))
    assert h1["x-switchman-cache"] == "miss" and Decimal(h1["x-switchman-cost-usd"]) > 0
    h2, r2 = await ask(oa(s))
    assert h2["x-switchman-cache"] == "hit" and Decimal(h2["x-switchman-cost-usd"]) == 0
    assert r2.choices[0].message.content == r1.choices[0].message.content
    assert "cache hit" in h2["x-switchman-reason"]
    # streamed, from the same entry
    stream = await oa(s).chat.completions.create(model="echo", messages=MSG, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == r1.choices[0].message.content
    assert s.fake.stats["echo"].requests == 1
    # the same request in Anthropic's dialect shares the entry (the Anthropic SDK must send
    # max_tokens, which is part of the key: the OpenAI request sends the same)
    h3, r3 = await ask(oa(s), max_tokens=300)
    assert h3["x-switchman-cache"] == "miss"
    ac = anthropic.AsyncAnthropic(base_url=s.base, api_key=ADMIN, max_retries=0)
    raw = await ac.messages.with_raw_response.create(model="echo", max_tokens=300, messages=MSG)
    assert raw.headers["x-switchman-cache"] == "hit"
    assert (await raw.parse()).content[0].text == r3.choices[0].message.content
    async with ac.messages.stream(model="echo", max_tokens=300, messages=MSG) as st:
        assert "".join([t async for t in st.text_stream]) == r3.choices[0].message.content
    assert s.fake.stats["echo"].requests == 2


async def test_tool_calls_and_temperature(gw):
    s = gw
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    h1, r1 = await ask(oa(s), tools=tools)
    h2, r2 = await ask(oa(s), tools=tools)
    assert h2["x-switchman-cache"] == "hit"
    assert r2.choices[0].message.tool_calls[0].function.name == r1.choices[0].message.tool_calls[0].function.name
    assert r2.choices[0].message.tool_calls[0].function.arguments == r1.choices[0].message.tool_calls[0].function.arguments
    # a sampled answer is not cached unless the route says when: always
    h3, _ = await ask(oa(s), temperature=0.7)
    h4, _ = await ask(oa(s), temperature=0.7)
    assert h3["x-switchman-cache"] == h4["x-switchman-cache"] == "bypass"


async def test_scopes_and_controls(gw):
    s = gw
    async with aiohttp.ClientSession() as http:
        keys = []
        for name in ("tenant-a", "tenant-b"):
            async with http.post(s.base + "/admin/keys", json={"name": name}, headers=s.admin()) as r:
                keys.append((await r.json())["key"])
    ha1, _ = await ask(oa(s, keys[0]))
    hb1, _ = await ask(oa(s, keys[1]))
    ha2, _ = await ask(oa(s, keys[0]))
    assert (ha1["x-switchman-cache"], hb1["x-switchman-cache"], ha2["x-switchman-cache"]) == ("miss", "miss", "hit")
    # no-cache: not served from the cache (but kept); no-store: not kept; only-if-cached: 504 on a miss
    h, _ = await ask(oa(s, keys[0]), {"x-switchman-cache": "no-cache"})
    assert h["x-switchman-cache"] == "miss"
    other = [{"role": "user", "content": "never asked before"}]
    h, _ = await ask(oa(s, keys[0]), {"x-switchman-cache": "no-store"}, messages=other)
    with pytest.raises(openai.APIStatusError) as e:
        await ask(oa(s, keys[0]), {"x-switchman-cache": "only-if-cached"}, messages=other)
    assert e.value.status_code == 504
    h, _ = await ask(oa(s, keys[0]), {"x-switchman-cache": "only-if-cached"})
    assert h["x-switchman-cache"] == "hit"
    with pytest.raises(openai.BadRequestError) as e:
        await ask(oa(s, keys[0]), {"x-switchman-cache": "maybe"})
    assert "x-switchman-cache" in str(e.value)


async def test_single_flight_and_the_ledger(gw):
    s = gw
    msg = [{"role": "user", "content": "fifty at once"}]
    client = oa(s)
    got = await asyncio.gather(*(ask(client, messages=msg) for _ in range(50)))
    assert s.fake.stats["echo"].requests == 1  # one upstream call for 50 identical misses
    states = [h["x-switchman-cache"] for h, _ in got]
    assert states.count("miss") == 1 and states.count("hit") == 49
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(s.base + "/admin/requests?cache=hit&limit=100", headers=s.admin()) as r:
                hits = (await r.json())["data"]
            if len(hits) == 49:
                break
            await asyncio.sleep(0.05)
        assert len(hits) == 49 and all(h["cost_usd"] == "0" for h in hits)
        async with http.get(s.base + "/admin/requests?cache=miss", headers=s.admin()) as r:
            miss = (await r.json())["data"][0]
        async with http.get(s.base + "/admin/spend?by=model", headers=s.admin()) as r:
            spend = await r.json()
        row = next(x for x in spend["rows"] if x["group"] == "echo")
        # every hit saved exactly what the one real call cost
        assert Decimal(row["savings_usd"]) == 49 * Decimal(miss["cost_usd"])
        async with http.get(s.base + "/admin/cache", headers=s.admin()) as r:
            stats = await r.json()
        assert stats["entries"] == 1 and stats["hits"] == 49
        async with http.delete(s.base + "/admin/cache?route=echo", headers=s.admin()) as r:
            assert (await r.json())["deleted"] == 1
    h, _ = await ask(client, messages=msg)
    assert h["x-switchman-cache"] == "miss"


async def test_redis_shared_by_two_workers_and_redis_down_is_a_miss(tmp_path):
    import uuid

    import redis.asyncio as aioredis

    r = aioredis.from_url("redis://127.0.0.1:6379/0")
    try:
        await r.ping()
    except Exception:  # noqa: BLE001
        pytest.skip("needs Redis on 127.0.0.1:6379 (.ci/run starts it)")
    await r.aclose()
    s = await serve(tmp_path, workers=2, extra="cache: {enabled: true, backend: redis}\n"
                                               f"state: {{backend: redis, prefix: 'sm-test-{uuid.uuid4().hex[:8]}:'}}")
    try:
        msg = [{"role": "user", "content": f"shared {uuid.uuid4().hex}"}]
        states = []
        for _ in range(12):  # new connections: the kernel spreads them over both workers
            client = oa(s)
            h, _ = await ask(client, messages=msg)
            states.append(h["x-switchman-cache"])
            await client.close()
            await asyncio.sleep(0.05)  # the first answer's write reaches Redis
        assert states[0] == "miss" and states[1:] == ["hit"] * 11
        assert s.fake.stats["echo"].requests == 1
    finally:
        async with aiohttp.ClientSession() as http:
            async with http.delete(s.base + "/admin/cache", headers=s.admin()) as resp:
                assert resp.status == 200
        await stop(s)
    # a Redis that is not there: every request a miss, none fails
    s = await serve(tmp_path, extra="cache: {enabled: true, backend: redis, url: 'redis://127.0.0.1:1/0'}")
    try:
        for _ in range(3):
            h, r = await ask(oa(s))
            assert h["x-switchman-cache"] == "miss" and r.choices[0].message.content
        assert "cache read failed" in s.log.read_text()
        async with aiohttp.ClientSession() as http:
            async with http.get(s.base + "/health/ready") as resp:
                ready = await resp.json()
        assert resp.status == 200 and ready["cache"] == "down" and ready["status"].startswith("degraded")
    finally:
        await stop(s)
