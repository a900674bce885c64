#!/usr/bin/env python3
"""The exact response cache against the figures of the caching issue, in one run:

1. an exact hit's added latency over the gateway's own floor (``GET /health/live`` through the
   same server and client: the HTTP round trip and the server's own handling), p50, with the
   in-process backend and with Redis, beside a miss to an instant upstream;
2. requests/s of exact hits against misses (``x-switchman-cache: no-cache``, the same request to an
   instant upstream), one worker, concurrency 16;
3. 50 concurrent identical misses against an upstream taking 200 ms: upstream calls made.

The semantic cache is not built, and the fake upstream does not model the providers' prompt-cache
rules yet (the gateway asks for them: Anthropic's automatic mode, OpenAI's ``prompt_cache_key``),
so the semantic rows and the multi-turn prompt-caching row are absent.

    python benchmarks/cache.py

Writes the table to stdout and to benchmarks/RESULTS.md between ``<!-- cache:begin -->`` and
``<!-- cache:end -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
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

from switchman.testing.fake_upstream import FakeModel, FakeUpstream  # noqa: E402

ADMIN = "sk-bench-cache-admin"
TARGETS = {"hit_ms": 0.3, "hit_redis_ms": 1.0, "ratio": 2.0, "flight": 1}
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
    cmd = "python " + " ".join(shlex.quote(x) for x in sys.argv)
    text = "\n".join([
        "## Caching: the exact response cache", "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; run took {time.perf_counter() - t0:.0f} s",
        f"- command: `{cmd}`",
        f"- machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; one `switchman serve` worker per backend, "
        "an in-process fake upstream, an aiohttp client with kept-alive connections; latencies are p50 of 1,000 "
        "sequential requests each, in 10 interleaved blocks; the floor is `GET /health/live` through the same server "
        "and client",
        "- not measured here: the semantic cache (not built) and the multi-turn prompt-caching workload (the fake "
        "upstream does not model the providers' caching rules yet)",
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
