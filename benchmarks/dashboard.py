#!/usr/bin/env python3
"""Observability at scale, against the figures of the observability issue, in one run:

1. ``/metrics`` scrape time with 4 workers (``switchman serve --workers 4`` after mixed traffic
   over several routes, models, dialects and statuses), median and p95 of 200 scrapes;
2. the rollups' cost on the ledger's write path: entries/s and CPU per entry of ``Store.write``
   with the rollups against the same store with them switched off, SQLite and PostgreSQL;
3. every dashboard page and ``/admin/requests`` query, through ``switchman serve`` over HTTP,
   with a ledger of 10M requests (SQLite and PostgreSQL), p50 and p95 of 20 loads each.

The 10M-request ledgers are built with SQL inside each database (a recursive CTE in SQLite,
``generate_series`` in PostgreSQL): 10M requests over 30 days, 50 keys, 10,000 users, 6 routes, 10
models, 20 team tags, 2% failures, 10% with a fallback attempt, 1% with feedback, then their
rollups aggregated by SQL the way the write path keeps them. Building takes minutes and is kept
(``--keep``) for reruns with ``--reuse``.

    python benchmarks/dashboard.py                      # everything (about 30 minutes, mostly the build)
    python benchmarks/dashboard.py --parts scrape,rollup
    python benchmarks/dashboard.py --rows 1000000       # a smaller ledger (say so in the results)

Writes the table to stdout and to benchmarks/RESULTS.md between ``<!-- dashboard:begin -->`` and
``<!-- dashboard:end -->``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import re
import shlex
import sqlite3
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import aiohttp

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from gateway import free_port, pct, start_server, stop, switchman_cmd  # noqa: E402
from results import write_section  # noqa: E402

from switchman.accounting.records import AttemptRecord, RequestRecord, Role  # noqa: E402
from switchman.accounting.store import open_store  # noqa: E402
from switchman.testing.fake_upstream import FakeModel, FakeUpstream  # noqa: E402

ADMIN = "sk-bench-dashboard-admin"
PG = "postgresql://postgres@127.0.0.1:5432/test"
TARGETS = {"scrape_ms": 50.0, "page_ms": 300.0, "rollup_share": 0.10}
DAYS = 30
ROUTES = ("auto", "cheap", "best", "smart", "support", "batch")
MODELS = ("gpt-4o-mini", "gpt-4o", "claude-haiku-4-5", "claude-sonnet-4-5", "gemini-2.5-flash", "gemini-2.5-pro",
          "llama-70b", "mistral-large", "deepseek-v3", "o4-mini")
PROVIDERS = ("openai", "openai", "anthropic", "anthropic", "gemini", "gemini", "groq", "mistral", "deepseek", "openai")


# ---- 1. scrape ----------------------------------------------------------------------------------
async def scrape_part(env: dict, tmp: Path) -> list[tuple]:
    fake = FakeUpstream({"echo": FakeModel(chunks=3), "other": FakeModel(chunks=3), "broken": FakeModel(error_status=500)})
    fport = await fake.start()
    cfg = tmp / "scrape.yaml"
    cfg.write_text(f"""\
providers:
  oa: {{kind: openai, base_url: "http://127.0.0.1:{fport}/v1", api_key: "up"}}
  an: {{kind: anthropic, base_url: "http://127.0.0.1:{fport}", api_key: "up"}}
models:
  - {{name: m1, provider: oa, model: echo, price: {{input: 1, output: 2}}}}
  - {{name: m2, provider: an, model: other, price: {{input: 3, output: 15}}}}
  - {{name: m3, provider: oa, model: broken, price: {{input: 1, output: 2}}}}
  - {{name: m4, provider: an, model: echo, price: {{input: 1, output: 2}}}}
routes:
  - {{name: r1, policy: {{kind: first, models: [m3, m1]}}}}
  - {{name: r2, policy: {{kind: first, models: [m2]}}}}
  - {{name: r3, policy: {{kind: weighted, models: {{m1: 1, m4: 1}}}}}}
auth: {{admin_key: "{ADMIN}"}}
retry: {{attempts: 1}}
ledger: {{url: "sqlite:///{tmp}/scrape.db"}}
metrics: {{tags: [team]}}
""")
    port = free_port()
    p = start_server("switchman-4w", [*switchman_cmd(), "serve", "--config", str(cfg), "--port", str(port),
                                      "--workers", "4"], port, "/health/live", env, tmp / "scrape.log", 60)
    base = f"http://127.0.0.1:{port}"
    auth = {"authorization": f"Bearer {ADMIN}"}
    try:
        async with aiohttp.ClientSession() as http:
            async def one(i: int) -> None:
                route = ("r1", "r2", "r3", "m1", "m2")[i % 5]
                body = {"model": route, "messages": [{"role": "user", "content": f"hi {i}"}],
                        **({"stream": True} if i % 3 == 0 else {})}
                path = "/v1/messages" if i % 4 == 0 else "/v1/chat/completions"
                if path == "/v1/messages":
                    body["max_tokens"] = 32
                async with http.post(base + path, json=body,
                                     headers={**auth, "x-switchman-tags": f"team=t{i % 8}"}) as r:
                    await r.read()
            for start in range(0, 2000, 50):
                await asyncio.gather(*(one(i) for i in range(start, start + 50)))
            await asyncio.sleep(1.0)
            times, size, series = [], 0, 0
            for _ in range(200):
                t0 = time.perf_counter()
                async with http.get(base + "/metrics", headers=auth) as r:
                    body = await r.read()
                times.append((time.perf_counter() - t0) * 1000)
                size = len(body)
            series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
            reqs = sum(float(x.split()[-1]) for x in body.decode().splitlines()
                       if x.startswith("switchman_requests_total{"))
    finally:
        stop(p)
        await fake.stop()
    p95 = pct(times, 95)
    return [("`/metrics` scrape, 4 workers, p50 / p95 (ms)", f"{pct(times, 50):.1f} / {p95:.1f}",
             f"≤ {TARGETS['scrape_ms']:g} (p95)", "met" if p95 <= TARGETS["scrape_ms"] else "**not met**"),
            ("  series in the scrape / bytes / requests counted (2,000 sent)", f"{series:,} / {size:,} / {reqs:,.0f}",
             "", "")]


# ---- 2. rollup cost -----------------------------------------------------------------------------
def _entries(n: int, t0: float) -> list:
    out = []
    for i in range(n):
        m = MODELS[i % 10]
        atts = [AttemptRecord(0, Role.FIRST, m, PROVIDERS[i % 10], 200, input_tokens=500 + i % 300,
                              output_tokens=100 + i % 50, cost=Decimal("0.000123"), latency_ms=300.0, time=t0 + i * 0.01)]
        if i % 10 == 0:
            atts.insert(0, AttemptRecord(0, Role.FIRST, "o4-mini", "openai", 503, "overloaded", time=t0 + i * 0.01))
            atts[1].index, atts[1].role = 1, Role.FALLBACK
        r = RequestRecord.from_attempts(f"req_{i:016d}", t0 + i * 0.01, ROUTES[i % 6], atts, atts[-1],
                                        key_id=f"key_{i % 50}", user=f"user_{i % 10000}", tags={"team": f"t{i % 20}"},
                                        latency_ms=300.0 + i % 900, reason="first", dialect="openai")
        r.baseline_cost = Decimal("0.0005")
        out.append((r, atts))
    return out


async def _write_rate(url: str, entries: list, with_rollups: bool) -> tuple[float, float]:
    """(entries/s wall, CPU µs per entry of this process) writing ``entries`` in batches of 500."""
    store = open_store(url)
    await store.open()
    store.rollups = with_rollups  # the same store, the rollups switched off or on
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i in range(0, len(entries), 500):
            await store.write(entries[i:i + 500])
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        await store.close()
    return len(entries) / wall, cpu / len(entries) * 1e6


async def rollup_part(tmp: Path, pg: bool) -> list[tuple]:
    n = 50_000
    rows = []
    for db in ("sqlite", *(("postgres",) if pg else ())):
        got = {}
        for rep in range(3):  # alternate on/off, take the median of each
            for on in (False, True):
                entries = _entries(n, 1_795_000_000.0 + rep * 10_000)
                url = f"sqlite:///{tmp}/rollup-{rep}-{on}.db" if db == "sqlite" else \
                    f"{PG}?schema=sm_bench_rollup_{rep}_{int(on)}_{os.getpid()}"
                if db == "sqlite":  # a fresh file: entries already there would be skipped, rollups and all
                    for suffix in ("", "-wal", "-shm"):
                        Path(f"{tmp}/rollup-{rep}-{on}.db{suffix}").unlink(missing_ok=True)
                got.setdefault(on, []).append(await _write_rate(url, entries, on))
                if db == "postgres":
                    await _drop_schema(url)
        off_rate = statistics.median(r for r, _ in got[False])
        on_rate = statistics.median(r for r, _ in got[True])
        off_cpu = statistics.median(c for _, c in got[False])
        on_cpu = statistics.median(c for _, c in got[True])
        share = (on_cpu - off_cpu) / off_cpu  # the rollups' CPU over the ledger's own
        wall_share = off_rate / on_rate - 1
        rows.append((f"ledger write, {db}, rollups off / on: entries/s; CPU µs per entry (this process)",
                     f"{off_rate:,.0f} / {on_rate:,.0f}; {off_cpu:.1f} / {on_cpu:.1f}", "", ""))
        rows.append((f"  rollup cost on the write path, {db}: CPU / wall time per entry, over the ledger's own",
                     f"{share:+.1%} / {wall_share:+.1%}", f"≤ {TARGETS['rollup_share']:.0%}",
                     "met" if max(share, wall_share) <= TARGETS["rollup_share"] else "**not met**"))
    from switchman.accounting import rollups

    entries = _entries(n, 1_795_000_000.0)
    t0 = time.process_time()
    ups = 0
    for i in range(0, n, 500):
        m, h, d = rollups.rows_for(entries[i:i + 500])
        ups += len(m) + len(h) + len(d)
    agg = (time.process_time() - t0) / n * 1e6
    rows.append(("  of which: aggregating in Python (µs per entry); rows upserted per entry",
                 f"{agg:.1f}; {ups / n:.2f} (users: 500 distinct per batch of 500)", "", ""))
    return rows


async def _drop_schema(url: str) -> None:
    import asyncpg

    name = url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(PG)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
    finally:
        await conn.close()


# ---- 3. 10M requests ----------------------------------------------------------------------------
def _case(expr: str, values: tuple[str, ...]) -> str:
    return "CASE " + expr + " " + " ".join(f"WHEN {i} THEN '{v}'" for i, v in enumerate(values)) + " END"


def _select(dialect: str, t0: float, step: float) -> tuple[str, str, str, str]:
    """SELECT lists (over an integer ``i``) for requests, attempts, request_tags, feedback."""
    ts = f"({t0} + i * {step})"
    if dialect == "sqlite":
        rid = f"printf('req_%012x%016x', CAST({ts} * 1000 AS INTEGER), i)"
    else:
        rid = f"'req_' || lpad(to_hex(CAST({ts} * 1000 AS BIGINT)), 12, '0') || lpad(to_hex(i), 16, '0')"
    m = "((i * 31) % 10)"
    failed = "(i % 50 = 0)"
    cost = "(((i * 131) % 5000 + 100) * 1000000)"
    req = ", ".join([
        rid, ts, "'key_' || (i % 50)", "'user_' || ((i * 7919) % 10000)", "'{\"team\":\"t' || (i % 20) || '\"}'",
        _case("(i % 6)", ROUTES), f"CASE WHEN {failed} THEN NULL ELSE {_case(m, MODELS)} END",
        f"CASE WHEN {failed} THEN NULL ELSE {_case(m, PROVIDERS)} END", f"CASE WHEN {failed} THEN 503 ELSE 200 END",
        f"CASE WHEN {failed} THEN 'overloaded' END", "200 + (i * 37) % 2000", "50 + (i * 53) % 500",
        "0", "0", "0", cost, f"{cost} * 3", "100.0 + (i * 7907) % 4000", "CASE WHEN i % 3 = 0 THEN 80.0 + i % 400 END",
        "CASE WHEN i % 10 = 1 THEN 'hit' END", "'cheapest: the least expensive model that fits'", "0",
        "CASE WHEN i % 10 = 0 THEN 2 ELSE 1 END", "CASE WHEN i % 3 = 0 THEN 1 ELSE 0 END",
        "CASE WHEN i % 7 = 0 THEN 'ep_' || (i % 100000) END", "CASE WHEN i % 4 = 0 THEN 'anthropic' ELSE 'openai' END",
    ])
    att = ", ".join([rid, "0", ts, "'first'", f"{_case(m, MODELS)}", f"{_case(m, PROVIDERS)}",
                     f"CASE WHEN {failed} THEN 503 ELSE 200 END", f"CASE WHEN {failed} THEN 'overloaded' END",
                     "200 + (i * 37) % 2000", "50 + (i * 53) % 500", "0", "0", "0", cost, "100.0 + (i * 7907) % 4000",
                     "NULL", "0", f"CASE WHEN {failed} THEN 'upstream 503: overloaded' END"])
    tag = ", ".join([rid, "'team=t' || (i % 20)", ts, cost, f"{cost} * 3", "200 + (i * 37) % 2000", "50 + (i * 53) % 500"])
    fb = ", ".join(["'fb_' || i", ts, rid, "NULL", "'key_' || (i % 50)", "'quality'", "((i / 100) % 5) / 4.0", "NULL",
                    _case("(i % 6)", ROUTES), _case(m, MODELS), ts])
    return req, att, tag, fb


def _statements(dialect: str, lo: int, hi: int, t0: float, step: float) -> list[str]:
    from switchman.accounting.store import ATTEMPT_COLUMNS, REQUEST_COLUMNS, TAG_COLUMNS

    req, att, tag, fb = _select(dialect, t0, step)
    src = (f"(WITH RECURSIVE s(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM s WHERE i < {hi - 1}) SELECT i FROM s)"
           if dialect == "sqlite" else f"generate_series({lo}::bigint, {hi - 1}::bigint) AS g(i)")
    fcols = "id, ts, request_id, episode, key_id, metric, score, comment, route, model, request_ts"
    return [
        f"INSERT INTO requests ({', '.join(REQUEST_COLUMNS)}) SELECT {req} FROM {src}",
        f"INSERT INTO attempts ({', '.join(ATTEMPT_COLUMNS)}) SELECT {att} FROM {src}",
        f"INSERT INTO request_tags ({', '.join(TAG_COLUMNS)}) SELECT {tag} FROM {src}",
        f"INSERT INTO feedback ({fcols}) SELECT {fb} FROM {src} WHERE i % 100 = 0",
    ]


async def build(dialect: str, url: str, n: int, now: float) -> float:
    """A ledger of ``n`` requests over the last 30 days, then its rollups; seconds taken."""
    from switchman.accounting import rollups as r

    t_start = time.perf_counter()
    store = open_store(url)
    await store.open()  # the schema, current version
    await store.close()
    t0, step = now - DAYS * 86400, DAYS * 86400 / n
    chunk = 1_000_000
    if dialect == "sqlite":
        db = sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-1000000")
        run = lambda sql: db.execute(sql)  # noqa: E731
    else:
        import asyncpg

        conn = await asyncpg.connect(url.split("?")[0], server_settings={"search_path": url.rsplit("schema=", 1)[1]})
        await conn.execute("SET synchronous_commit = off")
        run = None
    for lo in range(0, n, chunk):
        for sql in _statements(dialect, lo, min(n, lo + chunk), t0, step):
            if run is not None:
                run("BEGIN")
                run(sql)
                run("COMMIT")
            else:
                await conn.execute(sql)
        print(f"    {dialect}: {min(n, lo + chunk):,} of {n:,} requests ({time.perf_counter() - t_start:.0f} s)", flush=True)
    for sql in r.backfill(dialect):
        if run is not None:
            run(sql)
        else:
            await conn.execute(sql)
    fb_update = ("UPDATE rollup_day SET feedback_n = f.n, feedback_sum = f.s FROM (SELECT model AS v, "
                 "{day} AS b, COUNT(*) AS n, SUM(score) AS s FROM feedback GROUP BY model, {day}) f "
                 "WHERE rollup_day.dim = 'model' AND rollup_day.value = f.v AND rollup_day.bucket = f.b")
    day = "(CAST(request_ts AS INTEGER) - CAST(request_ts AS INTEGER) % 86400)" if dialect == "sqlite" \
        else "(floor(request_ts / 86400) * 86400)"
    if run is not None:
        run(fb_update.format(day=day))
        run("ANALYZE")
        db.close()
    else:
        await conn.execute(fb_update.format(day=day))
        await conn.execute("ANALYZE")
        await conn.close()
    return time.perf_counter() - t_start


PAGES = [
    ("overview", "/dashboard"), ("spend by model", "/dashboard/spend?by=model"),
    ("spend by key", "/dashboard/spend?by=key"), ("spend by user (10,000)", "/dashboard/spend?by=user"),
    ("spend by user, last 30 days (300,000 user-days)", "/dashboard/spend?by=user&since=30d"),
    ("spend by tag", "/dashboard/spend?by=tag"), ("spend by day", "/dashboard/spend?by=day"),
    ("requests (newest 50)", "/dashboard/requests"), ("requests, route filter", "/dashboard/requests?route=best"),
    ("requests, model filter", "/dashboard/requests?model=gpt-4o"),
    ("requests, status 5xx", "/dashboard/requests?status=5xx"),
    ("requests, tag filter", "/dashboard/requests?tag=team%3Dt3"),
    ("requests, user filter", "/dashboard/requests?user=user_17"),
    ("requests, key + time range", "/dashboard/requests?key=key_3&since=7d"),
    ("requests, cost above", "/dashboard/requests?cost_above=0.004"),
    ("requests, cache hits", "/dashboard/requests?cache=hit"),
    ("requests, with feedback", "/dashboard/requests?feedback=true"),
    ("one request", "/dashboard/requests/{rid}"),
    ("live routing", "/dashboard/live"), ("budgets", "/dashboard/budgets"), ("feedback", "/dashboard/feedback"),
    ("/admin/requests?limit=100", "/admin/requests?limit=100"),
    ("/admin/requests, model + status, page 2", "/admin/requests?model=claude-haiku-4-5&status=2xx&cursor={cursor}"),
    ("/admin/requests/{id}", "/admin/requests/{rid}"),
]


async def pages_part(dialect: str, url: str, env: dict, tmp: Path, reps: int) -> list[tuple]:
    cfg = tmp / f"pages-{dialect}.yaml"
    cfg.write_text(f"""\
providers:
  oa: {{kind: openai, base_url: "http://127.0.0.1:9/v1", api_key: "up"}}
models:
{chr(10).join(f'  - {{name: {m}, provider: oa, price: {{input: 1, output: 2}}}}' for m in MODELS)}
routes:
{chr(10).join(f'  - {{name: {r}, policy: {{kind: first, models: [gpt-4o-mini]}}}}' for r in ROUTES)}
auth: {{admin_key: "{ADMIN}"}}
ledger: {{url: "{url}"}}
budgets:
  - {{global: true, limit: 100000/month, soft: 80%}}
  - {{tag: team=t3, limit: 5000/month}}
""")
    port = free_port()
    p = start_server(f"switchman-{dialect}", [*switchman_cmd(), "serve", "--config", str(cfg), "--port", str(port)],
                     port, "/health/live", env, tmp / f"pages-{dialect}.log", 120)
    base = f"http://127.0.0.1:{port}"
    out = []
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:  # cookies for 127.0.0.1
            async with http.get(base + "/dashboard/login") as r:
                token = re.search(r'name="csrf" value="([^"]+)"', await r.text()).group(1)
            async with http.post(base + "/dashboard/login", data={"key": ADMIN, "csrf": token}, allow_redirects=False) as r:
                assert r.status == 303, r.status
            auth = {"authorization": f"Bearer {ADMIN}"}
            async with http.get(base + "/admin/requests?limit=1", headers=auth) as r:
                rid = (await r.json())["data"][0]["request_id"]
            async with http.get(base + "/admin/requests?model=claude-haiku-4-5&status=2xx", headers=auth) as r:
                cursor = (await r.json())["next_cursor"]
            for name, path in PAGES:
                path = path.format(rid=rid, cursor=cursor)
                times = []
                for _ in range(reps):
                    t0 = time.perf_counter()
                    async with http.get(base + path, headers=auth if path.startswith("/admin") else {}) as r:
                        body = await r.read()
                        assert r.status == 200, (path, r.status, body[:300])
                    times.append((time.perf_counter() - t0) * 1000)
                p95 = pct(times, 95)
                out.append((f"{dialect}: {name}", f"{pct(times, 50):.0f} / {p95:.0f}", f"≤ {TARGETS['page_ms']:g} (p95)",
                            "met" if p95 <= TARGETS["page_ms"] else "**not met**"))
    finally:
        stop(p)
    return out


async def ledger_rows(url: str) -> int:
    store = open_store(url)
    await store.open()
    try:
        return (await store.fetch("SELECT COUNT(*) FROM requests"))[0][0]
    finally:
        await store.close()


# ---- the run ------------------------------------------------------------------------------------
async def main_async(a: argparse.Namespace) -> int:
    parts = set(a.parts.split(","))
    tmp = Path(a.dir or tempfile.mkdtemp(prefix="switchman-dash-"))
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(HERE.parent / "src"), PYTHONUNBUFFERED="1")
    pg = _pg_up()
    rows: list[tuple] = []
    notes = []
    t_run = time.perf_counter()
    if "scrape" in parts:
        print("1. /metrics with 4 workers ...", flush=True)
        rows += await scrape_part(env, tmp)
    if "rollup" in parts:
        print("2. the rollups' cost on the ledger's write path ...", flush=True)
        rows += await rollup_part(tmp, pg)
    if "pages" in parts:
        now = time.time()
        for dialect in ("sqlite", *(("postgres",) if pg else ())):
            url = f"sqlite:///{tmp}/ledger-{a.rows}.db" if dialect == "sqlite" else f"{PG}?schema=sm_bench_{a.rows}"
            have = await ledger_rows(url) if a.reuse else 0
            if have != a.rows:
                if dialect == "sqlite" and Path(url[len("sqlite:///"):]).exists():
                    Path(url[len("sqlite:///"):]).unlink()
                if dialect == "postgres":
                    await _drop_schema(url)
                print(f"3. building a {a.rows:,}-request ledger on {dialect} ...", flush=True)
                took = await build(dialect, url, a.rows, now)
                notes.append(f"{dialect}: built {a.rows:,} requests (+ attempts, tags, 1% feedback, rollups) in {took:.0f} s")
            else:
                notes.append(f"{dialect}: reused the {a.rows:,}-request ledger in {tmp}")
            print(f"3. timing pages on {dialect} ...", flush=True)
            rows += await pages_part(dialect, url, env, tmp, a.reps)
    text = report(rows, notes, a, time.perf_counter() - t_run, pg)
    print(text)
    if not a.no_write:
        write_section(HERE / "RESULTS.md", "dashboard", text)
    return 0


def _pg_up() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


def report(rows: list[tuple], notes: list[str], a, seconds: float, pg: bool) -> str:
    cmd = "python " + " ".join(shlex.quote(x) for x in sys.argv)
    lines = ["## Observability: /metrics, rollups, dashboard at 10M requests", "",
             f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; run took {seconds:.0f} s",
             f"- command: `{cmd}`",
             f"- machine: {os.cpu_count()} CPUs; Python {sys.version.split()[0]}; PostgreSQL {'on 127.0.0.1:5432' if pg else 'not reachable: skipped'}",
             f"- ledger for the pages: {a.rows:,} requests over {DAYS} days (50 keys, 10,000 users, 6 routes, 10 models, "
             "20 team tags, 2% failed, 10% with two attempts, every 3rd streamed, 1% with feedback); each page "
             f"loaded {a.reps} times over HTTP from `switchman serve` (one worker) after logging in; times are the "
             "whole response on loopback, p50 / p95",
             "", "| figure | measured | target | met |", "|---|---|---|---|"]
    lines += [f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} |" for r in rows]
    lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="scrape,rollup,pages")
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--dir", help="where the ledgers are built (kept; default: a new temp dir)")
    p.add_argument("--reuse", action="store_true", help="reuse ledgers of the right size in --dir")
    p.add_argument("--no-write", action="store_true")
    return asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
