#!/usr/bin/env python3
"""The ledger, keys, budgets and rate limits against the figures of issue 5, in one run.

1. 200 concurrent requests on a key whose budget covers 50 of them: admitted spend against the
   budget, on one worker (memory state, then Redis) and on 4 worker processes sharing Redis;
2. an RPM limit of 100 across 4 worker processes sharing Redis: how many are admitted;
3. a revoked key: how long until every one of 4 workers refuses it (database poll only, and Redis);
4. keys never in plaintext in the database or the logs; no key -> 401; a route the key may not
   use -> 403;
5. the ledger's write rate (entries/s, SQLite and PostgreSQL) against the gateway's request rate,
   and the accounting's cost on the request path (admit + settle, ledger on vs off, same run).

TODO (needs the gateway wiring of the Accountant, issue 5's lead part): the end-to-end figures —
over >= 5,000 requests mixing streaming, tools, retries, fallbacks and hedges against the fake
upstream, the ledger's total equals the sum of upstream-reported usage x price exactly
(``FakeUpstream.stats`` against ``switchman spend --json``), and the added latency with the
ledger on vs off through the HTTP server in the same run (``benchmarks/gateway.py``'s load
generator with ``ledger: {enabled: false}`` and with the default ledger). ``e2e()`` below is the
place; it reports "not run" until then.

    python benchmarks/ledger.py             # about 30 s
    python benchmarks/ledger.py --no-write  # print only

Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (database ``test``, user postgres
or root) for their parts; a part whose service is missing is reported as skipped. Writes the
table to stdout and to benchmarks/RESULTS.md between ``<!-- ledger:begin -->`` and
``<!-- ledger:end -->`` (other sections are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import glob
import io
import logging
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import orjson  # noqa: E402

from switchman.accounting import (  # noqa: E402
    Accountant, AccountingSettings, AdmissionContext, AttemptRecord, BudgetExceeded, RateLimited, RequestRecord, Role,
)
from switchman.accounting.ledger import Ledger  # noqa: E402
from switchman.accounting.settings import LedgerSettings, StateSettings  # noqa: E402
from switchman.accounting.store import open_store  # noqa: E402
from switchman.config import ModelSpec, Price, ProviderSpec  # noqa: E402
from switchman.errors import Forbidden, Unauthorized  # noqa: E402

REDIS = "redis://127.0.0.1:6379/0"
NOON = 1_795_003_200.0  # a fixed mid-month noon: no run straddles a period or a rate window
PROV = ProviderSpec("bench", "openai", "openai", "http://127.0.0.1:9")
DEAR = ModelSpec(name="dear", provider=PROV, upstream="dear", price=Price(Decimal(100), Decimal(200)))
CHEAP = ModelSpec(name="cheap", provider=PROV, upstream="cheap", price=Price(Decimal("0.15"), Decimal("0.60")))
CALL_MAX = Decimal("0.30")  # 1,000 tokens in + max_tokens 1,000 on DEAR


class FixedClock:
    def now(self) -> float:
        return NOON


def reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def ctx(secret: str | None, route: str = "auto", models=(DEAR,)) -> AdmissionContext:
    return AdmissionContext(api_key=secret, route=route, candidates=list(models), input_tokens=1_000,
                            max_tokens=1_000)


def record(adm, cost: Decimal, rid: str) -> tuple[RequestRecord, list[AttemptRecord]]:
    a = AttemptRecord(0, Role.FIRST, "dear", "bench", 200, input_tokens=1_000, output_tokens=1_000, cost=cost,
                      time=NOON)
    return RequestRecord.from_attempts(rid, NOON, "auto", [a], a), [a]


def accountant(url: str, state: str, prefix: str, *, enabled: bool = True, clock=None) -> Accountant:
    st = StateSettings() if state == "memory" else StateSettings(backend="redis", url=state, prefix=prefix)
    return Accountant(AccountingSettings(LedgerSettings(url=url, enabled=enabled, flush_interval=0.05), st),
                      required=True, now=(clock or FixedClock()).now)


# -- worker processes ----------------------------------------------------------------------------------
async def worker(mode: str, url: str, state: str, prefix: str, secret: str, n: int) -> None:
    acc = accountant(url, state, prefix)
    await acc.start()
    if mode == "watch":
        await acc.admit(ctx(secret))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if mode == "watch":
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                await acc.admit(ctx(secret))
            except Unauthorized:
                print(orjson.dumps({"refused_at": time.time()}).decode(), flush=True)
                break
            await asyncio.sleep(0.005)
    elif mode == "rpm":
        got = await asyncio.gather(*(acc.admit(ctx(secret)) for _ in range(n)), return_exceptions=True)
        bad = [g for g in got if isinstance(g, Exception) and not isinstance(g, RateLimited)]
        print(orjson.dumps({"admitted": sum(not isinstance(g, Exception) for g in got), "errors": len(bad)}).decode())
    else:
        async def one(i: int) -> Decimal:
            try:
                adm = await acc.admit(ctx(secret))
            except BudgetExceeded:
                return Decimal(0)
            await asyncio.sleep(0.05)  # in flight together
            await acc.settle(adm, *record(adm, adm.max_cost, f"w{os.getpid()}_{i}_{uuid.uuid4().hex[:6]}"))
            return adm.max_cost

        costs = await asyncio.gather(*(one(i) for i in range(n)))
        print(orjson.dumps({"admitted": sum(1 for c in costs if c), "spent": str(sum(costs))}).decode())
    await acc.close()


def spawn(mode: str, url: str, state: str, prefix: str, secret: str, n: int, count: int) -> list[subprocess.Popen]:
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", mode, url, state, prefix, secret, str(n)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(count)]
    for p in procs:
        line = p.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"worker failed to start: {line!r}")
    return procs


def release(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()


def results(procs: list[subprocess.Popen]) -> list[dict]:
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=30)
        out.append(orjson.loads(stdout.strip().splitlines()[-1]))
    return out


# -- the figures ---------------------------------------------------------------------------------------
async def budget_one_worker(url: str, state: str, prefix: str) -> dict:
    acc = accountant(url, state, prefix)
    await acc.start()
    secret, _ = await acc.create_key(name=f"busy-{uuid.uuid4().hex[:6]}", budget="15/month")

    async def one(i: int) -> Decimal:
        try:
            adm = await acc.admit(ctx(secret))
        except BudgetExceeded:
            return Decimal(0)
        await asyncio.sleep(0.05)
        await acc.settle(adm, *record(adm, adm.max_cost, f"one_{uuid.uuid4().hex}"))
        return adm.max_cost

    costs = await asyncio.gather(*(one(i) for i in range(200)))
    await acc.close()
    return {"admitted": sum(1 for c in costs if c), "spent": sum(costs)}


async def budget_workers(url: str, prefix: str) -> dict:
    acc = accountant(url, "memory", "-")
    await acc.start()
    secret, _ = await acc.create_key(name=f"busy4-{uuid.uuid4().hex[:6]}", budget="15/month")
    await acc.close()
    procs = await asyncio.to_thread(spawn, "budget", url, REDIS, prefix, secret, 50, 4)
    release(procs)
    out = await asyncio.to_thread(results, procs)
    return {"admitted": sum(r["admitted"] for r in out), "spent": sum(Decimal(r["spent"]) for r in out)}


async def rpm_workers(url: str, prefix: str) -> dict:
    acc = accountant(url, "memory", "-")
    await acc.start()
    secret, _ = await acc.create_key(name=f"rpm-{uuid.uuid4().hex[:6]}", rpm=100)
    await acc.close()
    procs = await asyncio.to_thread(spawn, "rpm", url, REDIS, prefix, secret, 100, 4)
    release(procs)
    out = await asyncio.to_thread(results, procs)
    return {"attempted": 400, "admitted": sum(r["admitted"] for r in out), "errors": sum(r["errors"] for r in out)}


async def revocation(url: str, state: str, prefix: str) -> float:
    acc = accountant(url, state, prefix)
    await acc.start()
    secret, rec = await acc.create_key(name=f"doomed-{uuid.uuid4().hex[:6]}")
    procs = await asyncio.to_thread(spawn, "watch", url, state, prefix, secret, 0, 4)
    release(procs)
    await asyncio.sleep(0.3)
    t = time.time()
    await acc.revoke_key(rec.id)
    out = await asyncio.to_thread(results, procs)
    await acc.close()
    return max(r["refused_at"] - t for r in out)


async def key_checks(url: str, path: str | None) -> dict:
    log = io.StringIO()
    handler = logging.StreamHandler(log)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    acc = accountant(url, "memory", "-")
    await acc.start()
    secret, _ = await acc.create_key(name=f"scoped-{uuid.uuid4().hex[:6]}", routes="auto")
    adm = await acc.admit(ctx(secret))
    await acc.settle(adm, *record(adm, Decimal("0.01"), f"k_{uuid.uuid4().hex}"))
    out = {"no_key_401": False, "route_403": False}
    try:
        await acc.admit(ctx(None))
    except Unauthorized as e:
        out["no_key_401"] = e.status == 401
    try:
        await acc.admit(ctx(secret, route="dear"))
    except Forbidden as e:
        out["route_403"] = e.status == 403
    await acc.close()
    root.removeHandler(handler)
    raw = b"".join(Path(p).read_bytes() for p in glob.glob(path + "*")) if path else b""
    body = secret[len("sk-sm-"):]
    out["plaintext_in_db"] = secret.encode() in raw or body.encode() in raw
    out["plaintext_in_logs"] = secret in log.getvalue() or body in log.getvalue()
    return out


async def ledger_rate(url: str, n: int) -> float:
    led = Ledger(open_store(url), batch=500, flush_interval=0.05, buffer=20_000)
    await led.start()
    entries = []
    for i in range(n):
        a = AttemptRecord(0, Role.FIRST, "cheap", "bench", 200, input_tokens=500 + i % 97, output_tokens=100,
                          cost=Decimal("0.000135"), latency_ms=3.0, time=NOON)
        r = RequestRecord.from_attempts(f"rate_{uuid.uuid4().hex}", NOON, "auto", [a], a, key_id="key_x",
                                        user="u", tags={"team": "t"})
        entries.append((r, [a]))
    t = time.perf_counter()
    for r, atts in entries:
        await led.write(r, atts)
    await led.drain()
    rate = n / (time.perf_counter() - t)
    await led.close()
    return rate


async def request_path(url: str, state: str, prefix: str, enabled: bool, n: int) -> tuple[float, float]:
    """p50 / p99 µs of admit + settle for a keyed request with a key budget, a global budget and
    an rpm limit (what the gateway would add per request)."""
    acc = accountant(url, state, prefix, enabled=enabled, clock=FixedClock())
    await acc.start()
    secret, _ = await acc.create_key(name=f"path-{uuid.uuid4().hex[:6]}", budget="1000000/month", rpm=10**7)
    times = []
    for i in range(n):
        t = time.perf_counter()
        adm = await acc.admit(AdmissionContext(secret, "auto", [CHEAP, DEAR], 500, 256, tags={"team": "x"}))
        r, atts = record(adm, Decimal("0.000135"), f"p_{i}_{uuid.uuid4().hex[:8]}")
        await acc.settle(adm, r, atts)
        times.append(time.perf_counter() - t)
    await acc.close()
    times.sort()
    return times[len(times) // 2] * 1e6, times[int(len(times) * 0.99)] * 1e6


async def e2e() -> str | None:
    # TODO(issue 5, after the gateway wiring): drive >= 5,000 mixed requests (streaming, tools,
    # retries, fallbacks, hedges) through the gateway against the fake upstream, then compare
    # ``FakeUpstream.stats`` usage x price with the ledger's total, and the added latency with the
    # ledger on vs off. Returns None until then.
    return None


async def pg_url() -> str | None:
    if not reachable(5432):
        return None
    try:
        import asyncpg
    except ImportError:
        return None
    for user in ("postgres", "root"):
        try:
            c = await asyncpg.connect(f"postgresql://{user}@127.0.0.1:5432/test", timeout=2)
        except Exception:
            continue
        await c.close()
        return f"postgresql://{user}@127.0.0.1:5432/test"
    return None


async def drop_schema(base: str, schema: str) -> None:
    import asyncpg

    c = await asyncpg.connect(base)
    await c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    await c.close()


async def redis_cleanup(prefix: str) -> None:
    from switchman.accounting.redis_state import RedisState

    st = RedisState(REDIS, prefix=prefix)
    await st.flush_prefix()
    await st.close()


# -- the run -------------------------------------------------------------------------------------------
async def run(quick: bool) -> tuple[list[tuple], list[str]]:
    rows: list[tuple] = []
    notes: list[str] = []
    has_redis = reachable(6379)
    pg = await pg_url()
    tmp = tempfile.mkdtemp(prefix="switchman-ledger-bench-")
    sqlite = f"sqlite:///{tmp}/ledger.db"
    prefix = "{swbench_" + uuid.uuid4().hex[:8] + "}:"
    schema = "swbench_" + uuid.uuid4().hex[:8]
    pgu = f"{pg}?schema={schema}" if pg else None
    budget = Decimal(15)
    try:
        b = await budget_one_worker(sqlite, "memory", "-")
        rows.append(("200 concurrent on a $15 budget ($0.30 most per call), 1 worker, memory: admitted / spend",
                     f"{b['admitted']} / ${b['spent']}", "≤ budget", _met(b["spent"] <= budget)))
        if has_redis:
            b = await budget_one_worker(sqlite, REDIS, prefix + "1:")
            rows.append(("same, 1 worker, Redis: admitted / spend", f"{b['admitted']} / ${b['spent']}", "≤ budget",
                         _met(b["spent"] <= budget)))
            b = await budget_workers(sqlite, prefix + "4:")
            rows.append(("same, 4 worker processes sharing Redis: admitted / spend",
                         f"{b['admitted']} / ${b['spent']}", "≤ budget", _met(b["spent"] <= budget)))
            r = await rpm_workers(sqlite, prefix + "rpm:")
            rows.append(("RPM 100, 4 workers sharing Redis, 400 at once: admitted", str(r["admitted"]), "exactly 100",
                         _met(r["admitted"] == 100 and r["errors"] == 0)))
        else:
            notes.append("Redis not reachable on 127.0.0.1:6379: the Redis figures were skipped")
        lag = await revocation(sqlite, "memory", "-")
        rows.append(("revoked key refused by all of 4 workers after (ms), SQLite + memory state (database poll)",
                     f"{lag * 1000:.0f}", "< 1,000", _met(lag < 1.0)))
        if has_redis and pgu:
            lag = await revocation(pgu, REDIS, prefix + "rev:")
            rows.append(("same, PostgreSQL + Redis (pub/sub)", f"{lag * 1000:.0f}", "< 1,000", _met(lag < 1.0)))
        k = await key_checks(sqlite, sqlite[len("sqlite:///"):])
        rows.append(("key in plaintext in the database / in the logs",
                     f"{_yn(k['plaintext_in_db'])} / {_yn(k['plaintext_in_logs'])}", "no / no",
                     _met(not k["plaintext_in_db"] and not k["plaintext_in_logs"])))
        rows.append(("no key -> 401; a route the key may not use -> 403",
                     f"{_yn(k['no_key_401'])} / {_yn(k['route_403'])}", "yes / yes",
                     _met(k["no_key_401"] and k["route_403"])))
        n = 10_000 if quick else 50_000
        rate = await ledger_rate(f"sqlite:///{tmp}/rate.db", n)
        rows.append((f"ledger write rate, SQLite ({n:,} entries, batches of 500) (entries/s)", f"{rate:,.0f}",
                     "> the gateway's ~8,000 req/s", _met(rate > 8_000)))
        if pgu:
            rate = await ledger_rate(pgu, n)
            rows.append((f"ledger write rate, PostgreSQL ({n:,} entries) (entries/s)", f"{rate:,.0f}",
                         "> the gateway's ~8,000 req/s", _met(rate > 8_000)))
        m = 2_000 if quick else 10_000
        off = await request_path(f"sqlite:///{tmp}/path.db", "memory", "-", False, m)
        on = await request_path(f"sqlite:///{tmp}/path.db", "memory", "-", True, m)
        rows.append(("admit + settle per request, memory state, ledger off, p50 / p99 (µs)",
                     f"{off[0]:.0f} / {off[1]:.0f}", "", ""))
        rows.append(("admit + settle per request, memory state, ledger on (SQLite), p50 / p99 (µs)",
                     f"{on[0]:.0f} / {on[1]:.0f}", "ledger adds ≈ 0", _met(on[0] - off[0] < 20)))
        if has_redis:
            rd = await request_path(f"sqlite:///{tmp}/path.db", REDIS, prefix + "path:", True, m // 2)
            rows.append(("admit + settle per request, Redis state, ledger on, p50 / p99 (µs)",
                         f"{rd[0]:.0f} / {rd[1]:.0f}", "", ""))
            notes.append("with Redis, admit and settle are one Lua script each (≈ 20 µs in Redis); the rest is "
                         "redis-py's client and two loopback round trips. `Accountant.settle_later` moves the "
                         "settle off the request path.")
        e = await e2e()
        rows.append(("≥ 5,000 mixed requests end to end: ledger total = upstream usage × price; added latency "
                     "ledger on vs off", e or "not run (TODO: needs the gateway wiring)", "exact; ≈ 0", ""))
    finally:
        if has_redis:
            await redis_cleanup(prefix)
        if pg:
            await drop_schema(pg, schema)
        for p in glob.glob(f"{tmp}/*"):
            os.unlink(p)
        os.rmdir(tmp)
    return rows, notes


def _met(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def _yn(b: bool) -> str:
    return "yes" if b else "no"


def render(rows: list[tuple], notes: list[str], took: float, quick: bool) -> str:
    head = [
        "## Ledger, keys, budgets and rate limits",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; run took {took:.0f} s",
        f"- command: `python benchmarks/ledger.py{' --quick' if quick else ''}`",
        f"- machine: {os.cpu_count()} CPUs; Python {platform.python_version()}",
        "- services: Redis and PostgreSQL on loopback; workers are separate processes sharing them and one SQLite "
        "ledger file; every process runs on a fixed mid-month clock so no figure straddles a period or a window",
        "",
        "| figure | result | target | met |",
        "| --- | --- | --- | --- |",
    ]
    body = [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    tail = [""] + [f"- {n}" for n in notes] if notes else []
    return "\n".join(head + body + tail) + "\n"


def write_section(path: Path, text: str) -> None:
    begin, end = "<!-- ledger:begin -->", "<!-- ledger:end -->"
    block = f"{begin}\n{text}{end}\n"
    old = path.read_text() if path.exists() else "# Benchmark results\n\n"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + block
    path.write_text(new)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        mode, url, state, prefix, secret, n = sys.argv[2:8]
        asyncio.run(worker(mode, url, state, prefix, secret, int(n)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer samples")
    ap.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "RESULTS.md"))
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    t = time.time()
    rows, notes = asyncio.run(run(a.quick))
    text = render(rows, notes, time.time() - t, a.quick)
    print(text)
    if not a.no_write:
        write_section(Path(a.results), text)
    return 0 if all(r[3] != "NOT MET" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
