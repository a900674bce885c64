"""Provider prompt caching, asked for automatically: Anthropic's automatic mode (one top-level
``cache_control``) on a long repeated prefix, OpenAI's ``prompt_cache_key`` by prefix or episode,
as the fake upstream received them; never where it cannot pay, nor over the client's own markers."""

from __future__ import annotations

import asyncio

import aiohttp

from switchman.testing.fake_upstream import FakeModel

from telemetry.serving import serve, stop

LONG = "You are a meticulous support agent for a large retailer. " * 400  # ~22k characters: 5k+ tokens
MODELS = """\
  - {name: sonnet, provider: fake-an, model: claude-sonnet-4-5, price: {input: 3, output: 15}}
  - {name: haiku-off, provider: fake-an, model: claude-haiku-4-5, price: {input: 1, output: 5}, prompt_cache: off}
  - {name: gpt, provider: fake, model: gpt-4.1-mini, price: {input: 0.4, output: 1.6}}
"""


async def post(http, s, path: str, body: dict, **headers) -> None:
    async with http.post(s.base + path, json=body, headers={**s.admin(), **headers}) as r:
        assert r.status == 200, await r.text()


async def test_anthropic_automatic_mode_where_it_pays(tmp_path):
    s = await serve(tmp_path, extra_models=MODELS,
                    models={"claude-sonnet-4-5": FakeModel(), "claude-haiku-4-5": FakeModel()})
    try:
        async with aiohttp.ClientSession() as http:
            turns = [{"role": "user", "content": "Where is my order?"}]
            await post(http, s, "/v1/chat/completions", {"model": "sonnet", "messages": [
                {"role": "system", "content": LONG}, *turns]})
            await post(http, s, "/v1/chat/completions", {"model": "sonnet", "messages": turns})  # short, no prefix
            await post(http, s, "/v1/messages", {"model": "sonnet", "max_tokens": 100, "system": [
                {"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}], "messages": turns})
            await post(http, s, "/v1/chat/completions", {"model": "haiku-off", "messages": [
                {"role": "system", "content": LONG}, *turns]})
    finally:
        await stop(s)
    sent = [r.json for r in s.fake.requests if r.wire == "anthropic"]
    assert sent[0]["cache_control"] == {"type": "ephemeral"}  # long system prompt: cache it
    # ... and mark its end too, so other conversations with the same system prompt read it
    assert sent[0]["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in sent[1]  # nothing repeated worth caching
    assert "cache_control" not in sent[2]  # the client placed its own breakpoint: left as it is
    assert sent[2]["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "cache_control" not in sent[3]  # prompt_cache: off


async def test_openai_prompt_cache_key_by_prefix_and_episode(tmp_path):
    s = await serve(tmp_path, extra_models=MODELS, models={"gpt-4.1-mini": FakeModel()})
    try:
        async with aiohttp.ClientSession() as http:
            for q in ("one", "two"):
                await post(http, s, "/v1/chat/completions", {"model": "gpt", "messages": [
                    {"role": "system", "content": LONG}, {"role": "user", "content": q}]})
            await post(http, s, "/v1/chat/completions", {"model": "gpt", "messages": [
                {"role": "system", "content": LONG}, {"role": "user", "content": "one"}]},
                **{"x-switchman-episode": "ep-42"})
            await post(http, s, "/v1/chat/completions", {"model": "gpt", "messages": [
                {"role": "user", "content": "short"}]})
            await post(http, s, "/v1/chat/completions", {"model": "gpt", "prompt_cache_key": "mine", "messages": [
                {"role": "system", "content": LONG}, {"role": "user", "content": "one"}]})
    finally:
        await stop(s)
    sent = [r.json for r in s.fake.requests if r.json and r.json.get("model") == "gpt-4.1-mini"]
    keys = [b.get("prompt_cache_key") for b in sent]
    assert keys[0] and keys[0].startswith("sm-")
    assert keys[1] == keys[0]  # another conversation over the same system prompt: the same machine
    assert keys[2] != keys[0] and keys[2].startswith("sm-")  # an episode has its own key
    assert keys[3] is None  # too short to be cached at all
    assert keys[4] == "mine"  # the client's own key wins


async def test_route_ttl_retention_and_the_catalog_minimum(tmp_path):
    """A route's prompt_ttl: 1h reaches Anthropic's automatic mode and prompt_retention reaches
    OpenAI; a route with only these keys does not cache answers. The minimum comes from the
    catalog: Haiku 4.5 caches from 4,096 tokens, so a 3,000-token prefix is not marked."""
    routes = ("  - {name: long, policy: {kind: first, models: [sonnet]}, cache: {prompt_ttl: 1h}}\n"
              "  - {name: kept, policy: {kind: first, models: [gpt]}, cache: {prompt_retention: 24h}}\n"
              "  - {name: small, policy: {kind: first, models: [haiku]}}\n")
    models = MODELS + "  - {name: haiku, provider: fake-an, model: claude-haiku-4-5, price: {input: 1, output: 5}}\n"
    s = await serve(tmp_path, extra_models=models, routes=routes,
                    models={"claude-sonnet-4-5": FakeModel(), "gpt-4.1-mini": FakeModel(), "claude-haiku-4-5": FakeModel()})
    try:
        async with aiohttp.ClientSession() as http:
            msgs = [{"role": "system", "content": LONG}, {"role": "user", "content": "Where is my order?"}]
            for route in ("long", "kept", "long"):
                async with http.post(s.base + "/v1/chat/completions", json={"model": route, "messages": msgs},
                                     headers=s.admin()) as r:
                    assert r.status == 200 and "x-switchman-cache" not in r.headers
            mid = [{"role": "system", "content": "word " * 2400}, {"role": "user", "content": "hi"}]  # ~3k tokens
            await post(http, s, "/v1/chat/completions", {"model": "small", "messages": mid})
            await post(http, s, "/v1/chat/completions", {"model": "small", "messages": msgs})
    finally:
        await stop(s)
    an = [r.json for r in s.fake.requests if r.wire == "anthropic"]
    assert an[0]["cache_control"] == an[1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert "cache_control" not in an[2] and an[3]["cache_control"] == {"type": "ephemeral"}
    oa = next(r.json for r in s.fake.requests if r.wire == "openai")
    assert oa["prompt_cache_retention"] == "24h" and oa["prompt_cache_key"].startswith("sm-")
    assert s.fake.stats["claude-sonnet-4-5"].requests == 2  # the second "long" was not a cache hit


async def test_prompt_cache_savings_are_in_the_ledger_to_the_picodollar(tmp_path):
    """Reads save (input - cached_input) a token, writes cost (cache_write - input) a token more:
    the ledger records the difference against the same usage uncached, and spend shows it."""
    import subprocess
    import sys
    from decimal import Decimal

    models = ("  - {name: reader, provider: fake, model: reader, price: {input: 3, output: 15, cached_input: 0.3}}\n"
              "  - {name: writer, provider: fake-an, model: writer, price: {input: 3, output: 15, cache_write: 3.75}}\n")
    s = await serve(tmp_path, extra_models=models,
                    models={"reader": FakeModel(cached_tokens=1000), "writer": FakeModel(cache_write_tokens=2000)})
    try:
        async with aiohttp.ClientSession() as http:
            body = [{"role": "system", "content": LONG}, {"role": "user", "content": "hi"}]
            for m in ("reader", "reader", "writer"):
                await post(http, s, "/v1/chat/completions", {"model": m, "messages": body})
            for _ in range(100):
                async with http.get(s.base + "/admin/spend?by=model", headers=s.admin()) as r:
                    spend = await r.json()
                rows = {x["group"]: x for x in spend["rows"]}
                if rows.get("reader", {}).get("requests") == 2 and "writer" in rows:
                    break
                await asyncio.sleep(0.05)  # the ledger writes every 0.2 s
    finally:
        await stop(s)
    assert Decimal(rows["reader"]["prompt_cache_savings_usd"]) == 2 * 1000 * Decimal("2.7") / 1_000_000
    assert Decimal(rows["writer"]["prompt_cache_savings_usd"]) == -2000 * Decimal("0.75") / 1_000_000
    assert Decimal(spend["total"]["prompt_cache_savings_usd"]) == Decimal("0.0054") - Decimal("0.0015")
    out = subprocess.run([sys.executable, "-m", "switchman.cli", "spend", "--by", "model", "--config",
                          str(tmp_path / "switchman.yaml")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "PROMPT CACHE" in out.stdout and "0.0054" in out.stdout
