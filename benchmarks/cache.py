#!/usr/bin/env python3
"""The exact response cache against the figures of the caching issue, in one run:

1. an exact hit's added latency over the gateway's own floor (``GET /health/live`` through the
   same server and client: the HTTP round trip and the server's own handling), p50, with the
   in-process backend and with Redis, beside a miss to an instant upstream;
2. requests/s of exact hits against misses (``x-switchman-cache: no-cache``, the same request to an
   instant upstream), one worker, concurrency 16;
3. 50 concurrent identical misses against an upstream taking 200 ms: upstream calls made;
4. provider prompt caching on a multi-turn agent workload (``agent_rows``): 4 concurrent
   conversations of 20 turns over one 5,000-token system prompt and 3 tools, each turn resending the
   whole history, to a fake upstream that applies the vendors' caching rules
   (``FakeModel.prompt_caching``), through ``switchman serve --workers 4`` and straight to the fake:
   on the Anthropic wire the input-token cost (the gateway adds Anthropic's automatic
   ``cache_control``; direct traffic has no breakpoint), on the OpenAI wire the cached share of
   input tokens (the gateway adds ``prompt_cache_key``; direct traffic has none).

The semantic cache has its own benchmark (``benchmarks/semantic.py``).

    python benchmarks/cache.py

Writes the table to stdout and to benchmarks/RESULTS.md between ``<!-- cache:begin -->`` and
``<!-- cache:end -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import random
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from gateway import free_port, pct, start_server, stop, switchman_cmd  # noqa: E402
from results import write_section  # noqa: E402

from switchman import catalog  # noqa: E402
from switchman.testing.fake_upstream import FakeModel, FakeUpstream, ModelStats  # noqa: E402

ADMIN = "sk-bench-cache-admin"
TARGETS = {"hit_ms": 0.3, "hit_redis_ms": 1.0, "ratio": 2.0, "flight": 1, "agent_saving": 0.50}
BODY = {"model": "m", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 16}


def config(tmp: Path, fake_port: int, backend: str) -> Path:
    p = tmp / f"cache-{backend}.yaml"
    redis = f", backend: redis}}\nstate: {{backend: redis, prefix: 'smb-{uuid.uuid4().hex[:6]}:'}}" if backend == "redis" else "}"
    p.write_text(f"""\
providers:
  fake: {{kind: openai, base_url: "http://127.0.0.1:{fake_port}/v1", api_key: "up"}}
models:
  - {{name: m, provider: fake, model: instant, price: {{input: 1, output: 2}}}}
  - {{name: slow, provider: fake, model: slow, price: {{input: 1, output: 2}}}}
auth: {{admin_key: "{ADMIN}"}}
ledger: {{url: "sqlite:///{tmp}/ledger-{backend}.db"}}
cache: {{enabled: true{redis}
""")
    return p


async def sequential(http, url: str, n: int, **kw) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with http.request(kw.get("method", "POST"), url, json=kw.get("json"), headers=kw.get("headers")) as r:
            await r.read()
            assert r.status == 200, r.status
            if "want" in kw:
                assert r.headers.get("x-switchman-cache") == kw["want"], r.headers.get("x-switchman-cache")
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def rate(http, url: str, headers: dict, seconds: float = 5.0, conc: int = 16) -> float:
    end = time.perf_counter() + seconds
    n = 0

    async def worker():
        nonlocal n
        while time.perf_counter() < end:
            async with http.post(url, json=BODY, headers=headers) as r:
                await r.read()
                assert r.status == 200
            n += 1
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return n / (time.perf_counter() - t0)


async def one_backend(backend: str, tmp: Path, env: dict, fake_port: int, fake: FakeUpstream) -> dict:
    port = free_port()
    p = start_server(f"switchman-{backend}", [*switchman_cmd(), "serve", "--config", str(config(tmp, fake_port, backend)),
                                               "--port", str(port)], port, "/health/live", env, tmp / f"{backend}.log", 60)
    base = f"http://127.0.0.1:{port}"
    auth = {"authorization": f"Bearer {ADMIN}"}
    out = {}
    try:
        conn = aiohttp.TCPConnector(limit=32)
        async with aiohttp.ClientSession(connector=conn) as http:
            url = base + "/v1/chat/completions"
            await sequential(http, url, 1, json=BODY, headers=auth)  # the entry
            await asyncio.sleep(0.2)
            await sequential(http, url, 200, json=BODY, headers=auth, want="hit")  # warm-up
            floor, hit, miss = [], [], []
            for _ in range(10):  # interleaved blocks, so drift hits all three alike
                floor += await sequential(http, base + "/health/live", 100, method="GET")
                hit += await sequential(http, url, 100, json=BODY, headers=auth, want="hit")
                miss += await sequential(http, url, 100, json=BODY, headers={**auth, "x-switchman-cache": "no-cache"},
                                         want="miss")
            out.update(floor=pct(floor, 50), hit=pct(hit, 50), miss=pct(miss, 50))
            out["hit_rps"] = await rate(http, url, auth)
            out["miss_rps"] = await rate(http, url, {**auth, "x-switchman-cache": "no-cache"})
            before = fake.stats["slow"].requests
            flight = {**BODY, "model": "slow", "messages": [{"role": "user", "content": f"once {uuid.uuid4().hex}"}]}

            async def call():
                async with http.post(url, json=flight, headers=auth) as r:
                    await r.read()
                    return r.headers.get("x-switchman-cache")
            states = await asyncio.gather(*(call() for _ in range(50)))
            out["flight_calls"] = fake.stats["slow"].requests - before
            out["flight_states"] = f"{states.count('miss')} miss, {states.count('hit')} hit"
            if backend == "redis":
                async with http.delete(base + "/admin/cache", headers=auth) as r:
                    await r.read()
    finally:
        stop(p)
    return out


# ---- provider prompt caching on a multi-turn agent workload --------------------------------------

AGENT_TURNS = 20
AGENT_CONVERSATIONS = 4
AN_UP, OA_UP = "claude-sonnet-4-5", "gpt-4.1"  # upstream ids: both cache from 1,024 tokens (the catalog)
AN_PRICE = {"input": 3.0, "write": 3.75, "read": 0.30}  # $/MTok: Anthropic's multipliers on a $3 base
_VOCAB = ("account order refund invoice shipment warehouse customer ticket policy escalation carrier "
          "tracking payment dispute catalog inventory discount subscription renewal address verify "
          "always never before after unless politely briefly check confirm record explain offer").split()
TOOLS = (("search_orders", "Find a customer's orders by email, order id or date range.",
          {"email": "string", "order_id": "string", "since": "string"}),
         ("issue_refund", "Refund an order in whole or in part, with a reason code.",
          {"order_id": "string", "amount": "number", "reason": "string"}),
         ("send_email", "Send the customer an email from the support address.",
          {"to": "string", "subject": "string", "body": "string"}))


def agent_text(chars: int, seed: int) -> str:
    """Deterministic varied prose of exactly ``chars`` characters."""
    rng = random.Random(seed)
    out, n = [], 0
    while n < chars:
        s = " ".join(rng.choice(_VOCAB) for _ in range(rng.randint(6, 18))).capitalize() + rng.choice(".;:!?") + " "
        out.append(s)
        n += len(s)
    return "".join(out)[:chars]


SYSTEM = agent_text(20_000, 0)  # 5,000 tokens, one for all four conversations (as one agent deployed four times)


def _schema(props: dict) -> dict:
    return {"type": "object", "properties": {k: {"type": v} for k, v in props.items()}, "required": list(props)[:1]}


AN_TOOLS = [{"name": n, "description": d, "input_schema": _schema(p)} for n, d, p in TOOLS]
OA_TOOLS = [{"type": "function", "function": {"name": n, "description": d, "parameters": _schema(p)}}
            for n, d, p in TOOLS]


def _result(c: int, turn: int) -> str:
    return agent_text(400 + (137 * (turn + 3 * c)) % 800, 1000 * c + turn)  # 100-300 tokens a result


async def _post_json(http, url: str, body: dict, headers: dict) -> dict:
    async with http.post(url, json=body, headers=headers) as r:
        d = await r.json(content_type=None)
        assert r.status == 200, (r.status, d)
        return d


async def anthropic_agent(http, url: str, headers: dict, model: str, c: int) -> None:
    """One conversation on the Anthropic wire: each turn the model calls a tool, the next user
    message carries its result (every fifth also a new instruction), and the whole history goes again."""
    msgs: list[dict] = [{"role": "user", "content": f"Ticket {c}: " + agent_text(300, 500 + c)}]
    for turn in range(AGENT_TURNS):
        d = await _post_json(http, url, {"model": model, "max_tokens": 1024, "system": SYSTEM, "tools": AN_TOOLS,
                                         "messages": msgs}, headers)
        msgs.append({"role": "assistant", "content": d["content"]})
        reply = [{"type": "tool_result", "tool_use_id": b["id"], "content": _result(c, turn)}
                 for b in d["content"] if b["type"] == "tool_use"]
        if turn % 5 == 4 or not reply:
            reply.append({"type": "text", "text": f"Customer {c}, turn {turn}: " + agent_text(200, 700 + turn)})
        msgs.append({"role": "user", "content": reply})


async def openai_agent(http, url: str, headers: dict, model: str, c: int) -> None:
    """The same conversation on the OpenAI wire (results as ``tool`` messages)."""
    msgs: list[dict] = [{"role": "system", "content": SYSTEM},
                        {"role": "user", "content": f"Ticket {c}: " + agent_text(300, 500 + c)}]
    for turn in range(AGENT_TURNS):
        d = await _post_json(http, url, {"model": model, "max_tokens": 1024, "tools": OA_TOOLS, "messages": msgs},
                             headers)
        m = d["choices"][0]["message"]
        calls = m.get("tool_calls") or []
        msgs.append({"role": "assistant", "content": m.get("content"), **({"tool_calls": calls} if calls else {})})
        msgs += [{"role": "tool", "tool_call_id": t["id"], "content": _result(c, turn)} for t in calls]
        if turn % 5 == 4 or not calls:
            msgs.append({"role": "user", "content": f"Customer {c}, turn {turn}: " + agent_text(200, 700 + turn)})


async def agent_run(fake: FakeUpstream, up: str, conv, http, url: str, headers: dict, model: str) -> ModelStats:
    """The four conversations at once; what the upstream reported for them (then forgotten, caches too)."""
    await asyncio.gather(*(conv(http, url, headers, model, c) for c in range(AGENT_CONVERSATIONS)))
    st = fake.stats[up]
    assert st.answers == AGENT_CONVERSATIONS * AGENT_TURNS and st.errors == 0, st
    fake.reset()
    return st


def agent_config(tmp: Path, fake_port: int) -> Path:
    p = tmp / "cache-agent.yaml"
    p.write_text(f"""\
providers:
  fake-an: {{kind: anthropic, base_url: "http://127.0.0.1:{fake_port}", api_key: "up"}}
  fake-oa: {{kind: openai, base_url: "http://127.0.0.1:{fake_port}/v1", api_key: "up"}}
models:
  - {{name: agent-claude, provider: fake-an, model: {AN_UP}}}
  - {{name: agent-gpt, provider: fake-oa, model: {OA_UP}}}
auth: {{admin_key: "{ADMIN}"}}
ledger: {{url: "sqlite:///{tmp}/ledger-agent.db"}}
""")
    return p


def an_cost(st: ModelStats) -> float:
    uncached = st.input_tokens - st.cache_read_tokens - st.cache_write_tokens
    return (uncached * AN_PRICE["input"] + st.cache_write_tokens * AN_PRICE["write"]
            + st.cache_read_tokens * AN_PRICE["read"]) / 1e6


async def agent_rows(tmp: Path, env: dict) -> list[tuple[str, str, str, str]]:
    """The agent workload straight to the fake and through the gateway, on both wires."""
    minimum = catalog.lookup(AN_UP).min_cache_tokens  # what the gateway's min_cache_tokens finds too
    fake = FakeUpstream({AN_UP: FakeModel(prompt_caching=True, min_cache_tokens=minimum),
                         OA_UP: FakeModel(prompt_caching=True)})
    fake_port = await fake.start()
    port = free_port()
    p = None
    try:
        p = start_server("switchman-agent", [*switchman_cmd(), "serve", "--config", str(agent_config(tmp, fake_port)),
                                             "--port", str(port), "--workers", "4"], port, "/health/live", env,
                         tmp / "agent.log", 60)
        direct = f"http://127.0.0.1:{fake_port}"
        gw, auth = f"http://127.0.0.1:{port}", {"authorization": f"Bearer {ADMIN}"}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as http:
            an_direct = await agent_run(fake, AN_UP, anthropic_agent, http, direct + "/v1/messages",
                                        {"x-api-key": "up"}, AN_UP)
            an_gw = await agent_run(fake, AN_UP, anthropic_agent, http, gw + "/v1/messages", auth, "agent-claude")
            oa_direct = await agent_run(fake, OA_UP, openai_agent, http, direct + "/v1/chat/completions",
                                        {"authorization": "Bearer up"}, OA_UP)
            oa_gw = await agent_run(fake, OA_UP, openai_agent, http, gw + "/v1/chat/completions", auth, "agent-gpt")
    finally:
        stop(p)
        await fake.stop()
    cd, cg = an_cost(an_direct), an_cost(an_gw)
    saving = 1 - cg / cd
    sd, sg = (s.cache_read_tokens / s.input_tokens for s in (oa_direct, oa_gw))
    n = f"{AGENT_CONVERSATIONS} × {AGENT_TURNS} turns"
    return [
        (f"agent, Anthropic wire ({n}): input-token cost, gateway / direct", f"${cg:.4f} / ${cd:.4f}: "
         f"{saving:.1%} lower", f"≥ {TARGETS['agent_saving']:.0%} lower",
         "met" if saving >= TARGETS["agent_saving"] else "**not met**"),
        ("agent, Anthropic wire: input tokens through the gateway, uncached / written / read",
         f"{an_gw.input_tokens - an_gw.cache_read_tokens - an_gw.cache_write_tokens:,} / "
         f"{an_gw.cache_write_tokens:,} / {an_gw.cache_read_tokens:,} (direct: {an_direct.input_tokens:,} uncached)",
         "", ""),
        (f"agent, OpenAI wire ({n}): cached share of input tokens, gateway / direct",
         f"{sg:.1%} / {sd:.1%} ({oa_gw.cache_read_tokens:,} / {oa_direct.cache_read_tokens:,} of "
         f"{oa_gw.input_tokens:,} / {oa_direct.input_tokens:,})", "≥ direct", "met" if sg >= sd else "**not met**"),
    ]


async def main_async(a) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="switchman-cache-"))
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"), PYTHONUNBUFFERED="1")
    fake = FakeUpstream({"instant": FakeModel(chunks=4), "slow": FakeModel(latency=0.2)})
    fake_port = await fake.start()
    t0 = time.perf_counter()
    res = {}
    try:
        for backend in ("memory", "redis"):
            print(f"{backend} ...", flush=True)
            res[backend] = await one_backend(backend, tmp, env, fake_port, fake)
    finally:
        await fake.stop()
    print("agent workload ...", flush=True)
    agent = await agent_rows(tmp, env)
    rows = []
    for backend, tgt in (("memory", TARGETS["hit_ms"]), ("redis", TARGETS["hit_redis_ms"])):
        r = res[backend]
        added = r["hit"] - r["floor"]
        rows.append((f"{backend}: exact hit p50, over the floor (ms)", f"{r['hit']:.3f} − {r['floor']:.3f} = {added:.3f}",
                     f"≤ {tgt:g}", "met" if added <= tgt else "**not met**"))
        rows.append((f"{backend}: a miss to an instant upstream, p50 (ms)", f"{r['miss']:.3f}", "", ""))
        ratio = r["hit_rps"] / r["miss_rps"]
        rows.append((f"{backend}: requests/s, hits / misses, concurrency 16", f"{r['hit_rps']:,.0f} / {r['miss_rps']:,.0f} "
                     f"= {ratio:.2f}×", f"≥ {TARGETS['ratio']:g}×", "met" if ratio >= TARGETS["ratio"] else "**not met**"))
        rows.append((f"{backend}: 50 concurrent identical misses (upstream 200 ms): upstream calls",
                     f"{r['flight_calls']} ({r['flight_states']})", "1", "met" if r["flight_calls"] == 1 else "**not met**"))
    rows += agent
    cmd = "python " + " ".join(shlex.quote(x) for x in sys.argv)
    text = "\n".join([
        "## Caching: the exact response cache and provider prompt caching", "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; run took {time.perf_counter() - t0:.0f} s",
        f"- command: `{cmd}`",
        f"- machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; one `switchman serve` worker per backend, "
        "an in-process fake upstream, an aiohttp client with kept-alive connections; latencies are p50 of 1,000 "
        "sequential requests each, in 10 interleaved blocks; the floor is `GET /health/live` through the same server "
        "and client",
        f"- agent rows: {AGENT_CONVERSATIONS} concurrent conversations of {AGENT_TURNS} turns, all over the same "
        "5,000-token system prompt and 3 tools, each turn appending the model's tool call and its result (every "
        "fifth turn also a new user message) and resending the whole history; an in-process fake upstream applying "
        f"the vendors' prompt-caching rules (`FakeModel.prompt_caching`; `{AN_UP}` caching from "
        f"{catalog.lookup(AN_UP).min_cache_tokens:,} tokens, `{OA_UP}` on 4 cache machines); through one "
        "`switchman serve --workers 4`, or straight to the fake with no `cache_control` and no `prompt_cache_key`; "
        "the Anthropic cost is input tokens only, at $3/MTok uncached, $3.75 written (5 minutes), $0.30 read",
        "- the Redis backend keeps a near copy of each entry it reads or writes in the worker for up to 10 s "
        "(`cache/stores.py` `NearStore`): repeated hits on one worker skip the round trip, as they do here",
        "- not measured here: the semantic cache (`benchmarks/semantic.py`)",
        "", "| figure | measured | target | met |", "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows), ""])
    print(text)
    if not a.no_write:
        write_section(HERE / "RESULTS.md", "cache", text)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--no-write", action="store_true")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
