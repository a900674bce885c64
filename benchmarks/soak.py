"""Soak: mixed traffic with faults through a real ``switchman serve`` for a bounded time, sampling the
gateway's RSS and open file descriptors every ``--interval`` seconds. Both must stay flat: after a
warm-up (the first fifth of the run), the least-squares trend of RSS over the rest of the run may
add at most ``max(8 MiB, 10% of the warm RSS)`` over that span, and the fd count at the end, once
pooled upstream connections are idle, may not exceed the warm count by more than the pool can hold.

Sampling starts after a few seconds of the same traffic (``warmup``), once the first loads (the
tokenizer, the connection pools) are done. Traffic, at concurrency 16, drawn from a seeded RNG: plain answers, streams read whole, streams
dropped after the first chunk, a primary failing 30% with a fallback, a rate-limited primary
(429 + Retry-After) with a spare, streams cut mid-way and resumed, invalid JSON, missing keys, and
clients that give up on a slow model. The upstream is ``FakeUpstream``, in this process.

    python benchmarks/soak.py                      # 20 minutes, samples every 10 s
    python benchmarks/soak.py --minutes 2 --interval 5

Writes the ``<!-- soak:begin -->`` section of ``RESULTS.md``; exits 1 when a trend is not flat.
``tests/hostile/test_soak.py`` runs a short version in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from gateway import free_port, start_server, stop, switchman_cmd  # noqa: E402
from results import write_section  # noqa: E402

from switchman.testing.fake_upstream import FakeModel, FakeUpstream  # noqa: E402

KEY = "sk-soak-admin"
POOL = 256  # the upstream client's idle connections per host (http/client.py)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def trend(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ``ys`` over ``xs``."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


@dataclass
class Soak:
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (seconds, RSS MiB, fds)
    counts: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    fds_idle: int = 0

    def verdict(self) -> tuple[bool, bool, float, float]:
        """(RSS flat, fds flat, RSS growth over the measured span in MiB, its allowance)."""
        warm = [s for s in self.samples if s[0] >= self.samples[-1][0] / 5]
        xs, ys = [s[0] for s in warm], [s[1] for s in warm]
        growth = trend(xs, ys) * (xs[-1] - xs[0]) if len(xs) > 1 else 0.0
        allowed = max(8.0, 0.1 * ys[0]) if ys else 8.0
        fds_ok = self.fds_idle <= (warm[0][2] if warm else 0) + POOL
        return growth <= allowed, fds_ok, growth, allowed


def write_config(tmp: Path, up: int, port: int) -> Path:
    cfg = tmp / "switchman.yaml"
    cfg.write_text(f"""\
server: {{host: 127.0.0.1, port: {port}}}
providers:
  fake: {{kind: openai, base_url: "http://127.0.0.1:{up}/v1", api_key: "up"}}
  fakeant: {{kind: anthropic, base_url: "http://127.0.0.1:{up}", api_key: "up"}}
models:
  - {{name: echo, provider: fake, model: echo, price: {{input: 1, output: 2}}}}
  - {{name: flaky, provider: fake, model: flaky, price: {{input: 1, output: 2}}, fallbacks: [echo-ant]}}
  - {{name: limited, provider: fake, model: limited, price: {{input: 1, output: 2}}, fallbacks: [echo]}}
  - {{name: cut, provider: fakeant, model: cut, price: {{input: 1, output: 2}}}}
  - {{name: slow, provider: fake, model: slow, price: {{input: 1, output: 2}}}}
  - {{name: echo-ant, provider: fakeant, model: echo, price: {{input: 1, output: 2}}}}
routes:
  - {{name: resume, policy: {{kind: first, models: [cut, echo-ant]}}, stream: {{on_cut: resume}}}}
auth: {{admin_key: "{KEY}"}}
ledger: {{url: "sqlite:///{tmp}/ledger.db"}}
""")
    return cfg


def _body(model: str, stream: bool) -> dict:
    return {"model": model, "stream": stream, "max_tokens": 32,
            "messages": [{"role": "user", "content": "soak " + "x" * random.randint(10, 400)}]}


async def one(s: aiohttp.ClientSession, url: str, rng: random.Random, soak: Soak) -> None:
    kind = rng.choices(["plain", "stream", "drop", "flaky", "limited", "resume", "badjson", "nokey", "giveup"],
                       [40, 15, 10, 10, 5, 5, 5, 5, 5])[0]
    soak.counts[kind] = soak.counts.get(kind, 0) + 1
    auth = {"authorization": f"Bearer {KEY}"}
    model = {"flaky": "flaky", "limited": "limited", "resume": "resume", "giveup": "slow"}.get(kind, "echo")
    stream = kind in ("stream", "drop", "resume")
    try:
        if kind == "badjson":
            r = await s.post(url, data=b'{"model": "echo", "messages": [', headers={**auth, "content-type": "application/json"})
        elif kind == "nokey":
            r = await s.post(url, json=_body(model, False))
        elif kind == "giveup":
            async with asyncio.timeout(0.02):
                r = await s.post(url, json=_body(model, False), headers=auth)
        else:
            r = await s.post(url, json=_body(model, stream), headers=auth)
        async with r:
            soak.statuses[r.status] = soak.statuses.get(r.status, 0) + 1
            if kind == "drop":
                await r.content.readany()
                r.close()  # the client goes away mid-stream
            else:
                await r.read()
    except (TimeoutError, aiohttp.ClientError):
        soak.statuses[0] = soak.statuses.get(0, 0) + 1


async def drive(minutes: float, interval: float, seed: int = 7, warmup: float = 5.0) -> Soak:
    """Run the traffic for ``warmup`` seconds unsampled (first loads: the tokenizer, pools), then
    ``minutes`` sampled every ``interval`` seconds."""
    fake = FakeUpstream({
        "echo": FakeModel(),
        "flaky": FakeModel(error_status=500, fail_rate=0.3),
        "limited": FakeModel(error_status=429, fail_rate=0.5, retry_after=1.0),
        "cut": FakeModel(cut_after=2, chunks=6),
        "slow": FakeModel(latency=0.2),
    })
    up = await fake.start()
    soak = Soak()
    with tempfile.TemporaryDirectory(prefix="switchman-soak-") as d:
        tmp, port = Path(d), free_port()
        cfg = write_config(tmp, up, port)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = await asyncio.to_thread(start_server, "switchman", [*switchman_cmd(), "serve", "--config", str(cfg)],
                                       port, "/health/live", env, tmp / "switchman.log", 30)
        pid, url = proc.popen.pid, f"http://127.0.0.1:{port}/v1/chat/completions"
        rng = random.Random(seed)
        t0 = time.monotonic() + warmup
        end = t0 + minutes * 60
        try:
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as s:
                async def worker() -> None:
                    while time.monotonic() < end:
                        await one(s, url, rng, soak)

                async def sampler() -> None:
                    await asyncio.sleep(warmup)
                    while time.monotonic() < end:
                        soak.samples.append((time.monotonic() - t0, rss_mib(pid), fds(pid)))
                        await asyncio.sleep(interval)

                await asyncio.gather(sampler(), *(worker() for _ in range(16)))
            await asyncio.sleep(2.0)  # the client's connections closed; let the gateway settle
            soak.samples.append((time.monotonic() - t0, rss_mib(pid), fds(pid)))
            soak.fds_idle = fds(pid)
        finally:
            await asyncio.to_thread(stop, proc)
            await fake.stop()
    return soak


def report(soak: Soak, args: argparse.Namespace, took: float) -> str:
    rss_ok, fds_ok, growth, allowed = soak.verdict()
    total = sum(soak.counts.values())
    lines = [
        "## Soak: mixed traffic with faults, RSS and fds sampled",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; run took {took:.0f} s",
        f"- command: `python benchmarks/soak.py --minutes {args.minutes:g} --interval {args.interval:g}`",
        f"- {total:,} requests at concurrency 16: " + ", ".join(f"{k} {v:,}" for k, v in sorted(soak.counts.items())),
        "- statuses: " + ", ".join(f"{k or 'client gave up'}: {v:,}" for k, v in sorted(soak.statuses.items())),
        "",
        "| figure | value | target | met |",
        "| --- | --- | --- | --- |",
        f"| RSS first / last sample (MiB) | {soak.samples[0][1]:.1f} / {soak.samples[-1][1]:.1f} |  |  |",
        f"| RSS trend over the run after warm-up (MiB) | {growth:+.1f} | ≤ {allowed:.1f} | {'met' if rss_ok else '**not met**'} |",
        f"| fds at warm-up / peak / idle at the end | {soak.samples[len(soak.samples) // 5][2]} / "
        f"{max(s[2] for s in soak.samples)} / {soak.fds_idle} | idle ≤ warm + {POOL} (pool) | {'met' if fds_ok else '**not met**'} |",
        "",
        "Samples (s, RSS MiB, fds): " + "; ".join(f"{t:.0f} {r:.1f} {f}" for t, r, f in soak.samples),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=20)
    ap.add_argument("--interval", type=float, default=10)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    soak = asyncio.run(drive(args.minutes, args.interval))
    text = report(soak, args, time.perf_counter() - t0)
    print(text)
    if not args.no_write:
        write_section(args.results, "soak", text)
    rss_ok, fds_ok, *_ = soak.verdict()
    return 0 if rss_ok and fds_ok else 1


if __name__ == "__main__":
    sys.exit(main())
