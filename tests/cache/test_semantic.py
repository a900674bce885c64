"""The semantic cache through ``switchman serve`` with the real ``openai`` and ``anthropic`` SDKs:
a paraphrase is answered from the cache ($0, ``semantic-hit``, the similarity in the reason);
negations and changed numbers are not; earlier turns and scopes keep entries apart; a route with
no prior learns its threshold from compared near misses; Redis shares entries between workers."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal

import aiohttp
import anthropic
import openai
import pytest

from switchman.testing.fake_upstream import FakeModel

from telemetry.serving import ADMIN, serve, stop

pytest.importorskip("onnxruntime")


def topical(text: str) -> str:
    """An upstream whose answer depends on what is asked, not on the wording."""
    t = text.lower()
    for word in ("france", "germany", "italy", "spain", "japan", "2fa", "password", "invoice"):
        if word in t:
            neg = " not" if re.search(r"\b(disable|not|turn off)\b", t) else ""
            num = ",".join(re.findall(r"\d+", t))
            return f"about {word}{neg} {num}".strip()
    return "something else: " + t


def route(extra: str = "") -> str:
    return ("  - {name: faq, policy: {kind: first, models: [echo]}, "
            f"cache: {{enabled: true, semantic: {{{extra}}}}}}}\n")


@pytest.fixture
async def gw(tmp_path):
    s = await serve(tmp_path, models={"echo": FakeModel(reply=topical, chunks=3)}, routes=route())
    yield s
    await stop(s)


def oa(s, key: str = ADMIN) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=s.base + "/v1", api_key=key, max_retries=0)


async def indexed(s, n: int) -> None:
    """Wait until ``n`` prompts are indexed (that happens after the answer went out)."""
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            async with http.get(s.base + "/admin/cache", headers=s.admin()) as r:
                if (await r.json())["semantic"]["entries"] >= n:
                    return
            await asyncio.sleep(0.02)
    raise AssertionError(f"{n} entries never indexed")


async def ask(client, text: str, history: list | None = None, **kw):
    msgs = [*(history or []), {"role": "user", "content": text}]
    raw = await client.chat.completions.with_raw_response.create(model="faq", messages=msgs, **kw)
    return raw.headers, raw.parse()


async def test_a_paraphrase_is_a_semantic_hit_in_both_dialects(gw):
    s = gw
    h1, r1 = await ask(oa(s), "How do I reset my password?")
    assert h1["x-switchman-cache"] == "miss"
    await indexed(s, 1)
    h2, r2 = await ask(oa(s), "How can I reset my password?")
    assert h2["x-switchman-cache"] == "semantic-hit", h2["x-switchman-reason"]
    assert Decimal(h2["x-switchman-cost-usd"]) == 0
    assert re.search(r"similarity 0\.9\d\d >= 0\.\d+", h2["x-switchman-reason"])
    assert r2.choices[0].message.content == r1.choices[0].message.content
    # the Anthropic dialect, streaming, meets the same entry
    ac = anthropic.AsyncAnthropic(base_url=s.base, api_key=ADMIN, max_retries=0)
    await ask(oa(s), "How can I reset my password?", max_tokens=100)  # max_tokens is in the namespace
    await indexed(s, 2)
    async with ac.messages.stream(model="faq", max_tokens=100,
                                  messages=[{"role": "user", "content": "How do I reset my password?"}]) as st:
        text = "".join([t async for t in st.text_stream])
        assert st.response.headers["x-switchman-cache"] == "semantic-hit"
    assert text == "about password"
    assert s.fake.stats["echo"].requests <= 2
    # the ledger: the hit at $0 with what it saved
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.get(s.base + "/admin/requests?cache=semantic-hit", headers=s.admin()) as r:
                rows = (await r.json())["data"]
            if rows:
                break
            await asyncio.sleep(0.05)  # the ledger writes every 0.2 s: wait for it, not a count of quick polls
        assert rows and all(Decimal(r["cost_usd"]) == 0 for r in rows)
        async with http.get(s.base + "/admin/spend?by=cache", headers=s.admin()) as r:
            spend = {x["group"]: x for x in (await r.json())["rows"]}
        # each semantic hit saved exactly what the kept answer cost when it was asked
        assert Decimal(spend["semantic-hit"]["cost_usd"]) == 0
        assert Decimal(spend["semantic-hit"]["savings_usd"]) == 2 * Decimal(h1["x-switchman-cost-usd"])
        async with http.get(s.base + "/admin/cache", headers=s.admin()) as r:
            stats = await r.json()
    assert stats["semantic"]["entries"] >= 1 and stats["semantic"]["hits"] >= 1


async def test_negations_numbers_and_context_do_not_hit(gw):
    s = gw
    await ask(oa(s), "How do I enable 2FA on my account?")
    await indexed(s, 1)
    h, r = await ask(oa(s), "How do I disable 2FA on my account?")
    assert h["x-switchman-cache"] == "miss" and r.choices[0].message.content == "about 2fa not 2"
    await ask(oa(s), "Is my invoice of $40 already paid?")
    await indexed(s, 3)
    h, r = await ask(oa(s), "Is my invoice of $400 already paid?")
    assert h["x-switchman-cache"] == "miss" and r.choices[0].message.content == "about invoice 400"
    # the same last turn after a different conversation is another namespace
    a = [{"role": "user", "content": "We talk about Spain."}, {"role": "assistant", "content": "Sure."}]
    b = [{"role": "user", "content": "We talk about Japan."}, {"role": "assistant", "content": "Sure."}]
    await ask(oa(s), "Which city is its capital?", a)
    await indexed(s, 5)
    h, _ = await ask(oa(s), "Which city is its capital city?", b)
    assert h["x-switchman-cache"] == "miss"
    h, _ = await ask(oa(s), "Which city is its capital city?", a)
    assert h["x-switchman-cache"] == "semantic-hit"
    # another key never sees this key's entries
    async with aiohttp.ClientSession() as http:
        async with http.post(s.base + "/admin/keys", json={"name": "other"}, headers=s.admin()) as r:
            key = (await r.json())["key"]
    h, _ = await ask(oa(s, key), "How do I turn on 2FA on my account?")
    assert h["x-switchman-cache"] == "miss"


async def test_a_route_without_a_prior_learns_its_threshold(tmp_path):
    """prior: none starts with no hits; near misses above explore are compared with the kept
    answer (the upstream is asked anyway) until the route has the evidence for max_error."""
    s = await serve(tmp_path, models={"echo": FakeModel(reply=topical, chunks=3)},
                    routes=route("prior: none, max_error: 0.1, explore: 0.7"))
    try:
        pairs = [("Tell me about France, please.", "Please tell me about France."),
                 ("Tell me about Germany, please.", "Please tell me about Germany."),
                 ("Tell me about Italy, please.", "Please tell me about Italy."),
                 ("Tell me about Spain, please.", "Please tell me about Spain."),
                 ("Tell me about Japan, please.", "Please tell me about Japan.")]
        states = []
        for i in range(12):
            history = [{"role": "user", "content": f"round {i}"}, {"role": "assistant", "content": "ok"}]
            for a, b in pairs:  # a fresh conversation each round: a new namespace, no exact hits
                await ask(oa(s), a, history)
                h, r = await ask(oa(s), b, history)
                states.append(h["x-switchman-cache"])
                assert r.choices[0].message.content == topical(b)  # a hit is never another country's answer
        assert states[0] == "miss"  # nothing learned yet
        assert "semantic-hit" in states[-10:]  # learned from the compared near misses
        async with aiohttp.ClientSession() as http:
            async with http.get(s.base + "/admin/cache", headers=s.admin()) as r:
                sem = (await r.json())["semantic"]

        # other countries' prompts never reach the comparison: the guard sees the names differ
        assert sem["verified"] >= 30 and sem["wrong"] == 0 and sem["thresholds"]["faq"] < 1
    finally:
        await stop(s)


async def test_a_judge_model_decides_when_the_wording_differs(tmp_path):
    """An upstream that words each answer its own way: the same final text never agrees, so the
    route learns only through its judge. The judge's calls are billed under tag switchman=cache-verify."""
    import itertools

    n = itertools.count()

    def worded(text: str) -> str:
        return f"{topical(text)} (take {next(n)})"

    def verdict(text: str) -> str:  # the judge: do both answers speak of the same thing?
        found = re.findall(r"Earlier answer:\n(about \w+).*New answer:\n(about \w+)", text, re.S)
        return "yes" if found and found[0][0] == found[0][1] else "no"

    extra_models = "  - {name: judge, provider: fake, model: judge, price: {input: 1, output: 1}}\n"
    s = await serve(tmp_path, models={"echo": FakeModel(reply=worded, chunks=3), "judge": FakeModel(reply=verdict)},
                    extra_models=extra_models, routes=route("prior: none, max_error: 0.1, explore: 0.7, judge: judge"))
    try:
        states = []
        for i in range(10):
            history = [{"role": "user", "content": f"round {i}"}, {"role": "assistant", "content": "ok"}]
            for country in ("France", "Germany", "Italy", "Spain", "Japan"):
                await ask(oa(s), f"Tell me about {country}, please.", history)
                h, _ = await ask(oa(s), f"Please tell me about {country}.", history)
                states.append(h["x-switchman-cache"])
        assert states[0] == "miss" and "semantic-hit" in states[-10:]
        assert s.fake.stats["judge"].requests >= 30
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                async with http.get(s.base + "/admin/spend?by=tag", headers=s.admin()) as r:
                    rows = {x["group"]: x for x in (await r.json())["rows"]}
                if rows.get("switchman=cache-verify", {}).get("requests", 0) >= 30:
                    break
                await asyncio.sleep(0.05)  # the ledger writes every 0.2 s
        assert Decimal(rows["switchman=cache-verify"]["cost_usd"]) > 0
    finally:
        await stop(s)


async def test_redis_shares_entries_between_workers(tmp_path):
    import uuid

    extra = f"state: {{backend: redis, prefix: 'sem-{uuid.uuid4().hex[:6]}:'}}\ncache: {{backend: redis}}"
    s = await serve(tmp_path, workers=2, extra=extra, models={"echo": FakeModel(reply=topical, chunks=3)},
                    routes=route())
    try:
        import redis.asyncio as aioredis

        from switchman.cache.semantic import STREAM

        r = aioredis.from_url("redis://127.0.0.1:6379/0")
        before = await r.xlen(STREAM)
        tag = uuid.uuid4().hex[:8]
        await ask(oa(s), f"How do I reset my password for account {tag}?")
        for _ in range(200):  # indexed and published once the answer went out
            if await r.xlen(STREAM) > before:
                break
            await asyncio.sleep(0.02)
        await r.aclose()
        seen = set()
        for _ in range(8):  # new connections land on both workers
            h, _ = await ask(openai.AsyncOpenAI(base_url=s.base + "/v1", api_key=ADMIN, max_retries=0),
                             f"How can I reset my password for account {tag}?")
            seen.add(h["x-switchman-cache"])
        assert seen == {"semantic-hit"} or seen == {"semantic-hit", "hit"}
        assert s.fake.stats["echo"].requests == 1
    finally:
        await stop(s)
