#!/usr/bin/env python3
"""Chaos benchmark: the real gateway against a misbehaving fake upstream, on loopback.

Runs ``switchman.gateway.Gateway`` behind its own HTTP server (``App`` + ``HttpServer``), in this
process, against ``switchman.testing.fake_upstream.FakeUpstream``, and measures the figures of
issue 3 ("Done means"), each with its scenario:

1. primary failing 30% of calls with 500, healthy fallback on another provider: succeeded, mean
   attempts, p50/p99 latency;
2. primary hard down (503): requests that reached it before ejection (at concurrency 1 and 16),
   and, once it is back, time until it serves again with ``health: {interval}`` running;
3. primary rate-limited (429, Retry-After 2 s): share overflowed, and requests that reached it
   while a Retry-After it had sent was still running (each request to it is time-stamped);
4. streams cut before the first token (all must succeed via the fallback); cut mid-stream (each
   client must get a clean error event and ``data: [DONE]``; with ``on_cut: resume`` one complete
   answer);
5. first token later than ``first_token``: answered by the fallback within ``first_token`` plus
   the fallback's own latency (measured by asking the fallback directly);
6. heavy-tailed primary latency (5% of calls take 3 s, drawn per request from a seeded RNG): p99
   without and with hedging, and the extra upstream calls hedging costs;
7. every model failing every call: upstream calls per request, against the retry budget.

Client, gateway and fake share one event loop (uvloop when installed), so latencies include their
contention; they are figures about decisions (which model, how many calls, how long a fallback
takes), not about the gateway's raw speed (``gateway.py`` measures that).

    python benchmarks/chaos.py            # full run, about 1-2 minutes
    python benchmarks/chaos.py --quick    # smaller request counts, under a minute

Prints the table and writes it to benchmarks/RESULTS.md between ``<!-- chaos:begin -->`` and
``<!-- chaos:end -->`` (the rest of the file is kept).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import math
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from switchman import configfile  # noqa: E402
from switchman.app import App  # noqa: E402
from switchman.gateway import Gateway  # noqa: E402
from switchman.http.server import HttpServer  # noqa: E402
from switchman.resilience.retry import RetryBudget  # noqa: E402
from switchman.testing.fake_upstream import FakeModel, FakeUpstream  # noqa: E402
from results import write_section  # noqa: E402



# ---- the fake, instrumented -----------------------------------------------------------------------


@dataclass(slots=True)
class Hit:
    """One request as the fake saw it: when it arrived and when its answer (headers) left."""

    model: str
    arrived: float
    answered: float | None = None
    status: int | None = None


class ChaosUpstream(FakeUpstream):
    """A ``FakeUpstream`` that time-stamps every request per model and can draw a model's latency
    per request (``latency_fns[model_id]() -> seconds``, slept before the fake's own behaviour),
    which a fixed ``FakeModel.latency`` cannot express (heavy tails)."""

    def __init__(self, *a, latency_fns: dict[str, Callable[[], float]] | None = None, **kw) -> None:
        super().__init__(*a, **kw)
        self.latency_fns = dict(latency_fns or {})
        self.hits: list[Hit] = []

    async def _serve(self, req, wire, call, rec):
        hit = Hit(call.model, time.monotonic())
        self.hits.append(hit)
        fn = self.latency_fns.get(call.model)
        if fn is not None:
            await asyncio.sleep(fn())
        resp = await super()._serve(req, wire, call, rec)
        hit.answered = time.monotonic()
        hit.status = resp.status
        return resp

    def calls(self, model: str) -> int:
        """Requests that reached ``model``, those cancelled during a drawn latency included."""
        return sum(1 for h in self.hits if h.model == model)


class SendLog:
    """Wraps the gateway's upstream client and cooldowns: when each request was sent (and to
    which upstream model id), and when each rate-limit cooldown began (the 429's arrival)."""

    def __init__(self, client) -> None:
        self.inner = client
        self.sent: list[tuple[float, str]] = []
        self.cooled: list[tuple[float, str]] = []

    @classmethod
    def install(cls, gw: Gateway) -> SendLog:
        log = cls(gw.executor.client)
        gw.executor.client = log
        cool = gw.executor.cooldowns.cool

        class Watched(type(gw.executor.cooldowns)):
            __slots__ = ()

            def cool(self, model: str, seconds: float) -> None:
                log.cooled.append((time.monotonic(), model))
                cool(model, seconds)

            def remaining(self, model: str) -> float:
                return inner.remaining(model)

        inner = gw.executor.cooldowns
        w = Watched(inner.clock)
        gw.executor.cooldowns = w
        return log

    async def request(self, method, url, headers, body, deadline=None):
        self.sent.append((time.monotonic(), json.loads(body).get("model", "?") if body else "?"))
        return await self.inner.request(method, url, headers, body, deadline)

    def __getattr__(self, name):
        return getattr(self.inner, name)


# ---- the stack --------------------------------------------------------------------------------------


class Stack:
    def __init__(self, fake: ChaosUpstream, gw: Gateway, server: HttpServer, base: str) -> None:
        self.fake, self.gw, self.server, self.base = fake, gw, server, base
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                             timeout=aiohttp.ClientTimeout(total=30))

    async def chat(self, model: str, stream: bool = False, content: str = "hi") -> Result:
        body = {"model": model, "messages": [{"role": "user", "content": content}], "stream": stream}
        t0 = time.monotonic()
        first: float | None = None
        try:
            async with self.session.post(self.base + "/v1/chat/completions", json=body) as r:
                if stream:
                    parts = []
                    async for chunk in r.content.iter_any():
                        if first is None and b'"content"' in chunk:
                            first = time.monotonic() - t0
                        parts.append(chunk)
                    text = b"".join(parts).decode()
                else:
                    text = await r.text()
                return Result(r.status, dict(r.headers), text, time.monotonic() - t0, first)
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            return Result(0, {}, f"client error: {e!r}", time.monotonic() - t0, first)

    async def close(self) -> None:
        await self.session.close()
        await self.server.stop(grace=0.2)
        await self.gw.close()
        await self.fake.stop(grace=0.1)


@dataclass(slots=True)
class Result:
    status: int
    headers: dict[str, str]
    text: str
    seconds: float
    first_content: float | None = None  # streams: seconds to the first chunk carrying content

    @property
    def model(self) -> str | None:
        return self.headers.get("x-switchman-model") or self.headers.get("X-Switchman-Model")

    @property
    def attempts(self) -> int:
        return int(self.headers.get("x-switchman-attempts") or self.headers.get("X-Switchman-Attempts") or 0)


async def start(models: dict[str, FakeModel], yaml_models: str, routes: str = "", top: str = "",
                latency_fns: dict[str, Callable[[], float]] | None = None) -> Stack:
    fake = ChaosUpstream(models, latency_fns=latency_fns, record_limit=10)
    await fake.start()
    text = f"""
providers:
  pa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "k"}}
  pb: {{kind: anthropic, base_url: "{fake.url('anthropic')}", api_key: "k"}}
models:
{yaml_models}
routes:
{routes}
{top}
"""
    gw = Gateway(configfile.loads(text, env={}))
    server = HttpServer(App(gw))
    port = await server.start("127.0.0.1", 0)
    return Stack(fake, gw, server, f"http://127.0.0.1:{port}")


def model(name: str, provider: str = "pa", extra: str = "") -> str:
    return f"  - {{name: {name}, provider: {provider}, model: {name}, price: {{input: 1, output: 2}}{extra}}}\n"


async def load(n: int, concurrency: int, one: Callable[[int], object]) -> list:
    """Run ``one(i)`` for i in 0..n-1 with at most ``concurrency`` in flight (closed loop)."""
    out: list = [None] * n
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            out[i] = await one(i)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    return out


def pct(xs: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``xs``."""
    s = sorted(xs)
    if not s:
        return float("nan")
    return s[max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))]


def ms(x: float) -> str:
    return f"{x * 1000:,.1f}"


# ---- the table ------------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    scenario: str
    figure: str
    value: str
    target: str = ""
    met: bool | None = None


@dataclass(slots=True)
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, scenario: str, figure: str, value, target: str = "", met: bool | None = None) -> None:
        row = Row(scenario, figure, str(value), target, met)
        self.rows.append(row)
        m = "" if met is None else ("met" if met else "NOT MET")
        print(f"  {figure}: {value}" + (f"  [target {target}: {m}]" if target else ""), flush=True)


def stream_content(text: str) -> tuple[str, bool, bool, bool]:
    """(content, saw an error event, every data line parsed, ended with ``data: [DONE]``)."""
    content, error, clean = [], False, True
    for line in text.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        try:
            d = json.loads(line[6:])
        except ValueError:
            clean = False
            continue
        if "error" in d:
            error = True
        for c in d.get("choices") or ():
            content.append((c.get("delta") or {}).get("content") or "")
    return "".join(content), error, clean, text.rstrip().endswith("data: [DONE]")


# ---- the scenarios -----------------------------------------------------------------------------------


async def s1_fail30(rep: Report, n: int) -> None:
    sc = "1. primary fails 30% (500), fallback on another provider"
    print(sc, flush=True)
    for label, breaker in (("breaker defaults", ""), ("breaker off", "\nbreaker: {failures: 1000000}")):
        cfg = "retry: {attempts: 2, backoff: 0.01}" + breaker
        s = await start({"primary": FakeModel(fail_rate=0.3, error_status=500), "backup": FakeModel()},
                        model("primary") + model("backup", "pb"),
                        "  - {name: r, policy: {kind: first, models: [primary, backup]}}", cfg)
        try:
            rs = await load(n, 16, lambda i: s.chat("r"))
            ok = [r for r in rs if r.status == 200 and "echo: hi" in r.text]
            lat = [r.seconds for r in rs]
            rep.add(sc, f"{label}: requests that succeeded (concurrency 16)", f"{len(ok):,} of {n:,}", "all",
                    len(ok) == n)
            rep.add(sc, f"{label}: mean attempts per request (x-switchman-attempts)",
                    f"{sum(r.attempts for r in rs) / n:.3f}")
            rep.add(sc, f"{label}: latency p50 / p99 (ms)", f"{ms(pct(lat, 50))} / {ms(pct(lat, 99))}")
            ej = s.gw.decisions.counts[("ejected", "primary")]
            rep.add(sc, f"{label}: answered by primary / backup; upstream calls primary / backup; ejections",
                    f"{sum(r.model == 'primary' for r in rs):,} / {sum(r.model == 'backup' for r in rs):,}; "
                    f"{s.fake.calls('primary'):,} / {s.fake.calls('backup'):,}; {ej}")
            rep.notes.append(f"scenario 1, {label}: config `{cfg.replace(chr(10), '; ')}`"
                             + ("; breaker defaults: 5 failures within 30 s eject for 30 s" if not breaker else ""))
        finally:
            await s.close()


async def s2_hard_down(rep: Report, quick: bool) -> None:
    sc = "2. primary hard down (503), breaker failures 3"
    print(sc, flush=True)
    interval = 0.5
    cfg = ("retry: {attempts: 2, backoff: 0.01}\n"
           f"breaker: {{failures: 3, window: 60, cooldown: 60, max_ejection_percent: 50}}\nhealth: {{interval: {interval}}}")
    for conc in (1, 16):
        s = await start({"bad": FakeModel(error_status=503), "good": FakeModel()},
                        model("bad") + model("good", "pb"),
                        "  - {name: r, policy: {kind: first, models: [bad, good]}}", cfg)
        try:
            rs = await load(100 if quick else 400, conc, lambda i: s.chat("r"))
            ok = sum(r.status == 200 for r in rs)
            reached = s.fake.calls("bad")
            rep.add(sc, f"upstream calls that reached it before ejection, concurrency {conc} ({len(rs)} requests, "
                        f"{ok} answered 200)", reached, "≤ 3 (failures)", reached <= 3)
            if conc == 1:
                continue
            # it comes back: health checks (every `interval`) must re-admit it without user traffic
            s.gw.start()
            await asyncio.sleep(interval * 0.37)  # an arbitrary phase against the probe timer
            s.fake.models["bad"] = FakeModel()
            t0 = time.monotonic()
            served = None
            while time.monotonic() - t0 < 10 * interval:
                r = await s.chat("r")
                if r.model == "bad":
                    served = time.monotonic() - t0
                    break
                await asyncio.sleep(0.005)
            rep.add(sc, f"time from its recovery until it serves again (health interval {interval} s, cooldown 60 s)",
                    "never (10 intervals)" if served is None else f"{served:.3f} s", f"≤ {interval} s",
                    served is not None and served <= interval)
        finally:
            await s.close()
    rep.notes.append(f"scenario 2: config `{cfg.replace(chr(10), '; ')}`; retried calls count as calls that reached "
                     "it. At concurrency 16 the calls beyond 3 are requests already sent to it (in flight) when the "
                     "3rd failure ejected it")


async def s3_rate_limited(rep: Report, quick: bool) -> None:
    sc = "3. primary rate-limited (429, Retry-After 2 s)"
    print(sc, flush=True)
    ra = 2.0
    dur = 3.0 if quick else 5.0
    cfg = "retry: {attempts: 2, backoff: 0.01}"
    s = await start({"lim": FakeModel(error_status=429, retry_after=ra), "spare": FakeModel()},
                    model("lim") + model("spare"),
                    "  - {name: r, policy: {kind: first, models: [lim, spare]}}", cfg)
    sends = SendLog.install(s.gw)
    try:
        rs: list[Result] = []
        t_end = time.monotonic() + dur

        async def worker() -> None:
            while time.monotonic() < t_end:
                rs.append(await s.chat("r"))
                await asyncio.sleep(0.002)

        await asyncio.gather(*(worker() for _ in range(8)))
        hits = [h for h in s.fake.hits if h.model == "lim"]
        ok = sum(r.status == 200 for r in rs)
        over = sum(r.model == "spare" for r in rs)
        rep.add(sc, f"share overflowed to the spare ({len(rs):,} requests over {dur:g} s, concurrency 8)",
                f"{over / len(rs):.1%} ({ok:,} answered 200)", "all answered", ok == len(rs))
        # gateway side: a send to it after the gateway had received a 429 from it and before that
        # 429's Retry-After ran out is early (requests already on the wire when the 429 came are not)
        got = sorted(t for t, m in sends.cooled if m == "lim")
        early = sum(1 for t, m in sends.sent if m == "lim" and any(c < t < c + ra for c in got))
        rep.add(sc, "requests the gateway sent it while a Retry-After it had received was running", early, "0",
                early == 0)
        # fake side: bursts of arrivals (the requests in flight when the limit is hit or lifts)
        bursts: list[list[Hit]] = []
        for h in sorted(hits, key=lambda h: h.arrived):
            if bursts and h.arrived - bursts[-1][0].arrived < 0.5:
                bursts[-1].append(h)
            else:
                bursts.append([h])
        gaps = [nb[0].arrived - max(x.answered or 0 for x in b) for b, nb in zip(bursts, bursts[1:])]
        t0 = bursts[0][0].arrived if bursts else 0.0
        rep.add(sc, "requests that reached it, by burst (start s: count)",
                ", ".join(f"{b[0].arrived - t0:.2f}: {len(b)}" for b in bursts))
        rep.add(sc, "shortest time from its last 429 of a burst to the next request reaching it",
                f"{min(gaps):.3f} s" if gaps else "—", f"≥ {ra:g} s", (min(gaps) >= ra) if gaps else None)
    finally:
        await s.close()


async def s4_cut_streams(rep: Report, n: int) -> None:
    sc = "4. streams cut"
    print(sc, flush=True)
    top = "retry: {attempts: 2, backoff: 0.01}\nbreaker: {failures: 1000000}"
    reply = "The first half of the answer, then"
    mend = " the second half."
    s = await start(
        {"cut0": FakeModel(cut_after=0, chunks=4), "cutter": FakeModel(reply=reply, chunks=6, cut_after=2),
         "mender": FakeModel(reply=mend), "whole": FakeModel(reply="a whole answer", chunks=4)},
        model("cut0") + model("cutter") + model("mender", "pb") + model("whole", "pb"),
        "  - {name: early, policy: {kind: first, models: [cut0, whole]}}\n"
        "  - {name: plain, policy: {kind: first, models: [cutter, mender]}}\n"
        "  - {name: resume, policy: {kind: first, models: [cutter, mender]}, stream: {on_cut: resume}}",
        top)
    try:
        rs = await load(n, 16, lambda i: s.chat("early", stream=True))
        good = 0
        for r in rs:
            content, err, clean, done = stream_content(r.text)
            good += r.status == 200 and content == "a whole answer" and not err and clean and done
        rep.add(sc + " before the first token (cut_after=0)", f"streams answered whole by the fallback "
                f"({n} streams, concurrency 16; cut model called {s.fake.calls('cut0')} times)",
                f"{good} of {n}", "all", good == n)
        rs = await load(n, 16, lambda i: s.chat("plain", stream=True))
        good = 0
        for r in rs:
            content, err, clean, done = stream_content(r.text)
            good += r.status == 200 and err and clean and done and reply.startswith(content) and content != ""
        rep.add(sc + " mid-stream (cut_after=2 of 6)", f"clients that got the text so far, a clean error event "
                f"and `data: [DONE]` ({n} streams)", f"{good} of {n}", "all", good == n)
        rs = await load(n, 16, lambda i: s.chat("resume", stream=True))
        good = 0
        for r in rs:
            content, err, clean, done = stream_content(r.text)
            head = content[: -len(mend)] if content.endswith(mend) else None
            good += (r.status == 200 and not err and clean and done and bool(head) and reply.startswith(head))
        rep.add(sc + " mid-stream, `on_cut: resume`", f"clients that got one complete answer, no error "
                f"({n} streams)", f"{good} of {n}", "all", good == n)
        rep.notes.append(f"scenario 4: config `{top.replace(chr(10), '; ')}` (the breaker kept out of the way, so "
                         "every stream meets the cut); the cut model on provider pa (OpenAI wire), the fallback on "
                         "pb (Anthropic wire); the client speaks OpenAI")
    finally:
        await s.close()


SLACK = 0.005  # timer slack: the event loop's timers fire on a 1 ms grid, and a first-token timeout is one


async def s5_first_token(rep: Report, n: int) -> None:
    sc = "5. first token later than `first_token`"
    print(sc, flush=True)
    ft, fb_latency = 0.2, 0.05
    for label, retry in (("retry defaults (attempts 2)", ""), ("retry attempts 1", "\nretry: {attempts: 1}")):
        top = "breaker: {failures: 1000000}" + retry
        s = await start({"sleepy": FakeModel(ttft=2.0), "quick": FakeModel(latency=fb_latency)},
                        model("sleepy", extra=f", timeout: {{first_token: {ft}}}") + model("quick", "pb"),
                        "  - {name: r, policy: {kind: first, models: [sleepy, quick]}}", top)
        try:
            direct = await load(n, 8, lambda i: s.chat("quick", stream=True))
            own = [r.first_content for r in direct if r.first_content is not None]
            rs = await load(n, 8, lambda i: s.chat("r", stream=True))
            ok = [r for r in rs if r.status == 200 and r.model == "quick" and stream_content(r.text)[3]]
            tt = [r.first_content for r in rs if r.first_content is not None]
            bound = ft + pct(own, 99) + SLACK
            rep.add(sc, f"{label}: streams answered by the fallback ({n}, concurrency 8; primary ttft 2 s, "
                        f"first_token {ft} s)", f"{len(ok)} of {n}", "all", len(ok) == n)
            rep.add(sc, f"{label}: fallback's own time to first content, p50 / p99 (ms), asked directly",
                    f"{ms(pct(own, 50))} / {ms(pct(own, 99))}")
            rep.add(sc, f"{label}: time to first content via the route, p50 / p99 / max (ms); upstream calls to "
                        "the slow model per request",
                    f"{ms(pct(tt, 50))} / {ms(pct(tt, 99))} / {ms(max(tt) if tt else float('nan'))}; "
                    f"{s.fake.calls('sleepy') / n:.2f}",
                    f"max ≤ first_token + fallback's p99 + 5 ms = {ms(bound)}", bool(tt) and max(tt) <= bound)
        finally:
            await s.close()
    rep.notes.append("scenario 5: with the default `retry.attempts: 2` a first-token timeout is retried on the "
                     "same slow model (after backoff) before the fallback is tried, while the retry budget lets "
                     "it; the issue says the next candidate is tried")


WARMUP = 40  # requests; the p95 hedge needs 20 observed latencies before it trusts its percentile


def tail_fn(seed: int) -> Callable[[], float]:
    """5% of calls take 3 s; the rest 10-30 ms (uniform)."""
    rng = random.Random(seed)

    def draw() -> float:
        return 3.0 if rng.random() < 0.05 else rng.uniform(0.010, 0.030)

    return draw


async def s6_hedging(rep: Report, n: int) -> None:
    sc = "6. heavy-tailed latency (5% of calls 3 s, else 10-30 ms)"
    print(sc, flush=True)
    results = {}
    for label, hedge in (("no hedging", ""), ("hedge after 0.1 s", ", hedge: {after: 0.1}"),
                         ("hedge after p95", ", hedge: {after: p95}")):
        s = await start({"a": FakeModel(), "b": FakeModel()}, model("a") + model("b", "pb"),
                        f"  - {{name: r, policy: {{kind: first, models: [a, b]}}{hedge}}}", "",
                        latency_fns={"a": tail_fn(1), "b": tail_fn(2)})
        try:
            rs = await load(n, 16, lambda i: s.chat("r"))
            ok = sum(r.status == 200 for r in rs)
            lat = [r.seconds for r in rs]
            calls = s.fake.calls("a") + s.fake.calls("b")
            results[label] = (pct(lat, 99), calls)
            warm = lat[WARMUP:]
            rep.add(sc, f"{label}: p50 / p99 (ms), upstream calls per request ({n} requests, concurrency 16, "
                        f"{ok} answered 200)",
                    f"{ms(pct(lat, 50))} / {ms(pct(lat, 99))}, {calls / n:.3f}")
            if "p95" in label:
                rep.add(sc, f"{label}: p99 (ms) without the first {WARMUP} requests (the p95 needs 20 samples; "
                            "before, the delay is 1 s)", ms(pct(warm, 99)))
        finally:
            await s.close()
    base_p99, base_calls = results["no hedging"]
    for label in ("hedge after 0.1 s", "hedge after p95"):
        p99, calls = results[label]
        cut, extra = base_p99 / p99, calls / base_calls - 1
        rep.add(sc, f"{label}: p99 cut, extra upstream calls", f"{cut:.1f}×, {extra:+.1%}",
                "≥ 5× for ≤ 10% more calls", cut >= 5 and extra <= 0.10)
    rep.notes.append("scenario 6: both models (a on pa, b on pb) draw their latency per request from the same "
                     "seeded distribution (`ChaosUpstream.latency_fns`); hedging goes to b, which is as slow in "
                     "5% of its calls. `after: p95` takes the delay from the running attempt's model's latency "
                     "history; until it holds 20 samples the delay is 1 s, which the first requests' p99 shows")


class WatchedBudget(RetryBudget):
    """The gateway's retry budget, checking its bound at every grant: retries in flight ≤ limit."""

    __slots__ = ("most", "over")

    def __init__(self, ratio: float, min_retries: int) -> None:
        super().__init__(ratio, min_retries)
        self.most = self.over = 0

    def try_acquire_retry(self) -> bool:
        ok = super().try_acquire_retry()
        if ok:
            self.most = max(self.most, self.retries_in_flight)
            self.over += self.retries_in_flight > self.limit
        return ok


async def s7_retry_budget(rep: Report, n: int) -> None:
    sc = "7. every model fails every call (500)"
    print(sc, flush=True)
    attempts, budget, min_retries = 3, 0.2, 3
    cfg = (f"retry: {{attempts: {attempts}, backoff: 0.05, budget: {budget}, min_retries: {min_retries}}}\n"
           "breaker: {failures: 1000000}")
    s = await start({"x": FakeModel(error_status=500), "y": FakeModel(error_status=500)},
                    model("x") + model("y", "pb"), "  - {name: r, policy: {kind: first, models: [x, y]}}", cfg)
    b = s.gw.executor.budget = WatchedBudget(budget, min_retries)
    try:
        rs = await asyncio.gather(*(s.chat("r") for _ in range(n)))  # all at once: the brown-out burst
        calls = s.fake.calls("x") + s.fake.calls("y")
        failed = sum(r.status >= 500 for r in rs)
        ceiling = attempts * 2
        rep.add(sc, f"upstream calls per request ({n} requests at once, 2 models, attempts {attempts}; "
                    f"{failed} answered 5xx)", f"{calls / n:.2f}  (without a budget: {ceiling})",
                "≤ 2 + retries the budget allows", None)
        rep.add(sc, "retries in flight, most seen / limit max(min_retries, budget × in flight)",
                f"{b.most} / {max(min_retries, int(budget * n))}", "never above the limit", b.over == 0)
        rep.add(sc, "retries denied by the budget", f"{b.denied:,}")
        rep.notes.append(f"scenario 7: config `{cfg.replace(chr(10), '; ')}`; Envoy's budget bounds retries *in "
                         "flight* (not a count per request), so the figure checked is that bound, and calls per "
                         "request are shown against the no-budget ceiling (attempts × models)")
    finally:
        await s.close()


# ---- main ----------------------------------------------------------------------------------------------


def write(path: Path, rep: Report, command: str, took: float) -> None:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["## Chaos: resilience under failing, slow and rate-limited upstreams", "",
             f"- date: {now}; run took {took:.0f} s",
             f"- command: `{command}`",
             f"- machine: Python {platform.python_version()}; gateway, its HTTP server, the fake upstream "
             "(`ChaosUpstream`, a `FakeUpstream` that time-stamps requests) and the aiohttp client in one process "
             "on loopback", "",
             "| scenario | figure | value | target | met |", "| --- | --- | --- | --- | --- |"]
    for r in rep.rows:
        m = "" if r.met is None else ("met" if r.met else "**not met**")
        lines.append(f"| {r.scenario} | {r.figure} | {r.value} | {r.target} | {m} |")
    lines.append("")
    lines += [f"- {n}" for n in rep.notes]
    write_section(path, "chaos", "\n".join(lines))


async def run(args: argparse.Namespace) -> Report:
    q = args.quick
    rep = Report()
    await s1_fail30(rep, 500 if q else 2000)
    await s2_hard_down(rep, q)
    await s3_rate_limited(rep, q)
    await s4_cut_streams(rep, 64 if q else 200)
    await s5_first_token(rep, 24 if q else 80)
    await s6_hedging(rep, 200 if q else 600)
    await s7_retry_budget(rep, 50 if q else 200)
    return rep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller request counts (under a minute)")
    p.add_argument("--results", default=str(HERE / "RESULTS.md"))
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    # the gateway logs every cut stream; this run cuts hundreds on purpose
    logging.getLogger("switchman").setLevel(logging.ERROR)
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    t0 = time.monotonic()
    rep = asyncio.run(run(args))
    took = time.monotonic() - t0
    command = "python benchmarks/chaos.py" + (" --quick" if args.quick else "")
    missed = [r for r in rep.rows if r.met is False]
    print(f"\n{len(rep.rows)} figures, {sum(r.met is True for r in rep.rows)} targets met, {len(missed)} not met; "
          f"took {took:.0f} s")
    if not args.no_write:
        write(Path(args.results), rep, command, took)
        print(f"written to {args.results}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
