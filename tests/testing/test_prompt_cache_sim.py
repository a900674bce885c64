"""The fake upstream's prompt-caching simulation (``FakeModel.prompt_caching``): Anthropic's
breakpoints, minimum, TTLs, automatic mode and breakpoint limit; OpenAI's automatic 128-token steps
over cache machines and its retention; Gemini's implicit cache. Driven over loopback HTTP with an
injected clock, so expiry needs no sleeping."""

from __future__ import annotations

import random
from contextlib import asynccontextmanager

import aiohttp
import anthropic

from switchman.testing import FakeModel, FakeUpstream
from switchman.testing.prompt_cache import machine

WORDS = ("cache prefix token breakpoint ledger route model answer request stream budget latency "
         "provider gateway system policy tenant window retry fallback").split()


def text(chars: int, seed: int = 0) -> str:
    """Deterministic varied text of exactly ``chars`` characters (``chars / 4`` tokens)."""
    rng = random.Random(seed)
    out = []
    n = 0
    while n < chars:
        w = rng.choice(WORDS) + " "
        out.append(w)
        n += len(w)
    return "".join(out)[:chars]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def running(**models):
    clock = Clock()
    fake = FakeUpstream({k: FakeModel(prompt_caching=True, **v) for k, v in models.items()}, clock=clock)
    await fake.start()
    try:
        async with aiohttp.ClientSession() as http:
            fake.clock, fake.http = clock, http
            yield fake
    finally:
        await fake.stop(grace=0.1)


async def post(fake, path: str, body: dict) -> tuple[int, dict]:
    async with fake.http.post(f"http://127.0.0.1:{fake.port}{path}", json=body, headers={"x-api-key": "k"}) as r:
        return r.status, await r.json(content_type=None)


# ---- Anthropic ---------------------------------------------------------------------------------------

SYSTEM = text(8000)  # 2,000 tokens
ASK = "Where is my order?"  # 5 tokens


def messages_body(system, messages=None, **kw) -> dict:
    return {"model": "claude", "max_tokens": 50, "system": system,
            "messages": messages or [{"role": "user", "content": ASK}], **kw}


def marked(t: str, **cc) -> list[dict]:
    return [{"type": "text", "text": t, "cache_control": {"type": "ephemeral", **cc}}]


async def usage(fake, body: dict) -> dict:
    status, d = await post(fake, "/v1/messages", body)
    assert status == 200, d
    u = d["usage"]
    assert min(u["input_tokens"], u["cache_read_input_tokens"], u["cache_creation_input_tokens"]) >= 0
    assert u["cache_creation_input_tokens"] == sum(u["cache_creation"].values())
    return u


def cache_of(u: dict) -> tuple[int, int]:
    return u["cache_read_input_tokens"], u["cache_creation_input_tokens"]


async def test_anthropic_caches_nothing_without_a_breakpoint():
    async with running(claude={}) as fake:
        for _ in range(2):
            u = await usage(fake, messages_body(SYSTEM))
            assert cache_of(u) == (0, 0) and u["input_tokens"] == 2005
        assert fake.stats["claude"].cache_read_tokens == fake.stats["claude"].cache_write_tokens == 0


async def test_anthropic_breakpoint_writes_once_then_reads_the_same_count():
    async with running(claude={}) as fake:
        first = await usage(fake, messages_body(marked(SYSTEM)))
        assert cache_of(first) == (0, 2000) and first["input_tokens"] == 5
        assert first["cache_creation"] == {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 0}
        second = await usage(fake, messages_body(marked(SYSTEM), [{"role": "user", "content": "And my refund?"}]))
        assert cache_of(second) == (2000, 0) and second["input_tokens"] == 4
        other = await usage(fake, messages_body(marked(text(8000, seed=1))))  # another prefix: its own entry
        assert cache_of(other) == (0, 2000)
        st = fake.stats["claude"]
        assert (st.cache_read_tokens, st.cache_write_tokens, st.input_tokens) == (2000, 4000, 2005 + 2004 + 2005)


async def test_anthropic_prefix_below_the_minimum_is_silently_not_cached():
    async with running(claude={"min_cache_tokens": 1024}) as fake:
        short = text(4000)  # 1,000 tokens
        for _ in range(2):
            u = await usage(fake, messages_body(marked(short)))
            assert cache_of(u) == (0, 0) and u["input_tokens"] == 1005
    async with running(claude={"min_cache_tokens": 4096}) as fake:  # a model with a higher minimum
        for _ in range(2):
            assert cache_of(await usage(fake, messages_body(marked(SYSTEM)))) == (0, 0)


async def test_anthropic_five_minute_entry_expires_and_a_hit_refreshes_it():
    async with running(claude={}) as fake:
        assert cache_of(await usage(fake, messages_body(marked(SYSTEM)))) == (0, 2000)
        fake.clock.now += 299
        assert cache_of(await usage(fake, messages_body(marked(SYSTEM)))) == (2000, 0)  # refreshed for 5 more
        fake.clock.now += 299
        assert cache_of(await usage(fake, messages_body(marked(SYSTEM)))) == (2000, 0)
        fake.clock.now += 300
        assert cache_of(await usage(fake, messages_body(marked(SYSTEM)))) == (0, 2000)  # expired: written again


async def test_anthropic_one_hour_ttl_survives_half_an_hour_and_is_reported_apart():
    async with running(claude={}) as fake:
        u = await usage(fake, messages_body(marked(SYSTEM, ttl="1h")))
        assert u["cache_creation"] == {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 2000}
        fake.clock.now += 1800
        assert cache_of(await usage(fake, messages_body(marked(SYSTEM, ttl="1h")))) == (2000, 0)
        fake.clock.now += 3601
        assert cache_of(await usage(fake, messages_body(marked(SYSTEM, ttl="1h")))) == (0, 2000)
        assert fake.stats["claude"].cache_write_1h_tokens == 4000


async def test_anthropic_automatic_mode_caches_a_growing_conversation_turn_by_turn():
    async with running(claude={}) as fake:
        msgs = [{"role": "user", "content": "Start the task."}]
        seen = 0  # tokens of the previous turn's whole prompt
        for turn in range(6):
            body = messages_body(SYSTEM, msgs, cache_control={"type": "ephemeral"})
            u = await usage(fake, body)
            total = u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
            assert u["cache_read_input_tokens"] == seen, turn  # the previous turn's prefix
            assert u["cache_creation_input_tokens"] == total - seen and u["input_tokens"] == 0
            seen = total
            msgs = [*msgs, {"role": "assistant", "content": f"Step {turn} done. " + text(400, seed=turn)},
                    {"role": "user", "content": [{"type": "text", "text": f"Go on with step {turn + 1}."}]}]
        assert fake.requests[-1].json["cache_control"] == {"type": "ephemeral"}


async def test_anthropic_breakpoints_on_tools_system_and_messages_and_the_limit_of_four():
    tools = [{"name": f"tool{i}", "description": "d", "input_schema": {"type": "object"}} for i in range(2)]
    tools[-1]["cache_control"] = {"type": "ephemeral"}  # tools carry no text here: a prefix of 0 tokens
    msgs = [{"role": "user", "content": marked(text(6000, seed=2))},
            {"role": "assistant", "content": "ok"}, {"role": "user", "content": marked("next")}]
    async with running(claude={}) as fake:
        body = messages_body(marked(SYSTEM), msgs, tools=tools, tool_choice={"type": "none"})
        u = await usage(fake, body)  # four breakpoints: allowed; written up to the last one
        assert cache_of(u) == (0, 2000 + 1500 + 2) and u["input_tokens"] == 0
        body2 = messages_body(marked(SYSTEM), msgs[:1] + [{"role": "assistant", "content": "no"}, msgs[2]],
                              tools=tools, tool_choice={"type": "none"})
        assert cache_of(await usage(fake, body2)) == (3500, 2)  # the longest prefix still shared

        five = messages_body(marked(SYSTEM) + marked("More rules."), msgs, tools=tools)
        longer = [*msgs, {"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]
        more = messages_body(marked(SYSTEM), longer, tools=tools,
                             cache_control={"type": "ephemeral"})  # automatic mode takes a fifth slot
        for bad in (five, more):
            status, err = await post(fake, "/v1/messages", bad)
            assert status == 400 and err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
            assert err["error"]["message"] == "A maximum of 4 blocks with cache_control may be provided. Found 5."
        # The top-level breakpoint on a block that already has its own is the same breakpoint.
        same = {**body, "cache_control": {"type": "ephemeral"}}
        assert (await post(fake, "/v1/messages", same))[0] == 200
        assert fake.stats["claude"].errors == 2


async def test_anthropic_sdk_reads_the_simulated_usage():
    async with running(claude={}) as fake:
        client = anthropic.AsyncAnthropic(base_url=fake.url("anthropic"), api_key="k", max_retries=0)
        try:
            for want in ((0, 2000), (2000, 0)):
                m = await client.messages.create(model="claude", max_tokens=50, system=marked(SYSTEM),
                                                 messages=[{"role": "user", "content": ASK}])
                assert (m.usage.cache_read_input_tokens, m.usage.cache_creation_input_tokens) == want
                assert m.usage.input_tokens == 5
        finally:
            await client.close()


# ---- OpenAI -----------------------------------------------------------------------------------------


def chat(prompt: str, **kw) -> dict:
    msgs = [{"role": "system", "content": prompt}, {"role": "user", "content": "hi"}]
    return {"model": "gpt", "messages": msgs, **kw}


async def cached(fake, body: dict) -> int:
    status, d = await post(fake, "/v1/chat/completions", body)
    assert status == 200, d
    return d["usage"]["prompt_tokens_details"]["cached_tokens"]


async def test_openai_prompt_under_1024_tokens_is_never_cached():
    async with running(gpt={}) as fake:
        short = text(4090)  # with "hi": 4,092 characters, 1,023 tokens
        assert [await cached(fake, chat(short)) for _ in range(3)] == [0, 0, 0]


async def test_openai_caches_in_128_token_steps_from_1024():
    async with running(gpt={}) as fake:
        prompt = text(7998)  # with "hi": 2,000 tokens
        assert await cached(fake, chat(prompt)) == 0
        assert await cached(fake, chat(prompt)) == 1920  # 1024 + 7 * 128
        longer = chat(prompt + text(4000, seed=3))  # 3,000 tokens sharing the first 1,999
        assert await cached(fake, longer) == 1920
        assert await cached(fake, longer) == 2944
        assert fake.stats["gpt"].cache_read_tokens == 1920 * 2 + 2944


async def test_openai_cache_machine_is_picked_by_key_and_prefix():
    prompt = text(7998)
    assert machine("a", prompt, 4) == machine("a", prompt + "more", 4)  # the first 1,024 characters only
    assert machine(None, prompt, 4) == machine(None, prompt, 4)
    away = next(k for k in (f"key-{i}" for i in range(100)) if machine(k, prompt, 4) != machine("a", prompt, 4))
    async with running(gpt={}) as fake:
        assert await cached(fake, chat(prompt, prompt_cache_key="a")) == 0
        assert await cached(fake, chat(prompt, prompt_cache_key=away)) == 0  # another machine: cold
        for _ in range(3):
            assert await cached(fake, chat(prompt, prompt_cache_key="a")) == 1920  # the same key always hits
        assert await cached(fake, chat(prompt, prompt_cache_key=away)) == 1920


async def test_openai_retention_is_ten_minutes_idle_or_a_day():
    async with running(gpt={}) as fake:
        prompt = text(7998)
        assert await cached(fake, chat(prompt)) == 0
        fake.clock.now += 599
        assert await cached(fake, chat(prompt)) == 1920  # used: idle time starts again
        fake.clock.now += 599
        assert await cached(fake, chat(prompt)) == 1920
        fake.clock.now += 601
        assert await cached(fake, chat(prompt)) == 0
        kept = chat(text(7998, seed=4), prompt_cache_retention="24h")
        assert await cached(fake, kept) == 0
        fake.clock.now += 3600 * 23
        assert await cached(fake, kept) == 1920


# ---- Gemini -----------------------------------------------------------------------------------------


async def gemini(fake, prompt: str) -> dict:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "systemInstruction": {"parts": [{"text": prompt}]}}
    status, d = await post(fake, "/v1beta/models/gem:generateContent", body)
    assert status == 200, d
    return d["usageMetadata"]


async def test_gemini_implicit_cache_from_its_minimum_on_one_machine():
    async with running(gem={"min_cache_tokens": 1024}) as fake:
        prompt = text(7998)
        assert "cachedContentTokenCount" not in await gemini(fake, prompt)
        u = await gemini(fake, prompt)
        assert u["cachedContentTokenCount"] == 1920 and u["promptTokenCount"] == 2000
        assert u["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": 1920}]
        fake.clock.now += 301
        assert "cachedContentTokenCount" not in await gemini(fake, prompt)
        for _ in range(2):
            assert "cachedContentTokenCount" not in await gemini(fake, text(4000))  # 1,001 tokens: under the minimum
