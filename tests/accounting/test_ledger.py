"""The ledger on SQLite and PostgreSQL: what is written comes back exactly, reports group it,
nothing is lost when the database is slow, failing, or the process stops."""

from __future__ import annotations

import asyncio
import glob
import os
from decimal import Decimal

import pytest

from switchman.accounting import schema
from switchman.accounting.ledger import Ledger
from switchman.accounting.records import AttemptRecord, RequestRecord, Role
from switchman.accounting.store import open_store
from switchman.config import Price

from .conftest import NOON

D = Decimal
PRICES = {
    "mini": Price(D("0.15"), D("0.60"), D("0.075")),
    "sonnet": Price(D("3"), D("15"), D("0.30"), D("3.75")),
    "free": Price(D(0), D(0)),
}


def entry(i: int, t: float = NOON, model: str | None = None, *, key: str | None = "key_a", user: str | None = "alice",
          tags: dict | None = None, route: str = "auto") -> tuple[RequestRecord, list[AttemptRecord]]:
    model = model or ("mini", "sonnet", "free")[i % 3]
    p = PRICES[model]
    inp, out, cr, cw = 100 + i, 7 + i % 50, i % 13, i % 5
    failed = AttemptRecord(0, Role.FIRST, "sonnet", "anthropic", 529, "overloaded", time=t)
    ok = AttemptRecord(1, Role.FALLBACK, model, "prov", 200, input_tokens=inp, output_tokens=out,
                       cache_read_tokens=cr, cache_write_tokens=cw, cost=p.cost(inp, out, cr, cw), time=t)
    atts = [failed, ok] if i % 4 == 0 else [replace_index(ok, 0)]
    r = RequestRecord.from_attempts(f"req_{i}", t, route, atts, atts[-1], key_id=key, user=user,
                                    tags=tags if tags is not None else {"team": "search" if i % 2 else "ads"})
    r.baseline_cost = PRICES["sonnet"].cost(inp, out, cr, cw)
    return r, atts


def replace_index(a: AttemptRecord, i: int) -> AttemptRecord:
    from dataclasses import replace

    return replace(a, index=i, role=Role.FIRST)


async def started(url: str, **kw) -> Ledger:
    led = Ledger(open_store(url), **kw)
    await led.start()
    return led


async def test_totals_are_exact_to_the_picodollar(ledger_url):
    led = await started(ledger_url, batch=64, flush_interval=0.01)
    entries = [entry(i) for i in range(500)]
    for r, atts in entries:
        await led.write(r, atts)
    rows = await led.spend("model", since=NOON - 1)
    want = sum((r.cost for r, _ in entries), D(0))
    assert sum((x.cost for x in rows), D(0)) == want
    assert sum(x.requests for x in rows) == 500
    by_model = {x.group: x for x in rows}
    assert by_model["mini"].cost == sum((r.cost for r, _ in entries if r.model == "mini"), D(0))
    assert by_model["free"].cost == 0
    # Savings: the same usage on the dearest model, less what it cost.
    assert sum((x.savings for x in rows), D(0)) == sum((r.baseline_cost - r.cost for r, _ in entries), D(0))
    await led.close()


async def test_spend_groupings(ledger_url):
    led = await started(ledger_url, flush_interval=0.01)
    day2 = NOON + 86_400
    await led.write(*entry(0, model="mini", key="key_a", user="alice", tags={"team": "search", "feature": "chat"}))
    await led.write(*entry(1, model="sonnet", key="key_b", user="bob", tags={"team": "ads"}, route="big"))
    await led.write(*entry(2, t=day2, model="sonnet", key="key_b", user="bob", tags={}))
    c = {i: entry(i, model=m)[0].cost for i, m in ((0, "mini"), (1, "sonnet"), (2, "sonnet"))}

    def totals(rows):
        return {x.group: (x.requests, x.cost) for x in rows}

    assert totals(await led.spend("key")) == {"key_a": (1, c[0]), "key_b": (2, c[1] + c[2])}
    assert totals(await led.spend("user")) == {"alice": (1, c[0]), "bob": (2, c[1] + c[2])}
    assert totals(await led.spend("tag")) == {"team=search": (1, c[0]), "feature=chat": (1, c[0]),
                                              "team=ads": (1, c[1])}
    assert totals(await led.spend("route")) == {"auto": (2, c[0] + c[2]), "big": (1, c[1])}
    assert totals(await led.spend("day")) == {"2026-11-18": (2, c[0] + c[1]), "2026-11-19": (1, c[2])}
    assert totals(await led.spend("day", since=day2)) == {"2026-11-19": (1, c[2])}
    assert totals(await led.spend("day", until=day2)) == {"2026-11-18": (2, c[0] + c[1])}
    assert await led.scope_spend("tag", "team=ads", NOON - 1) == c[1]
    assert await led.scope_spend("user", "bob", day2) == c[2]
    assert await led.scope_spend("global", None, NOON - 1) == c[0] + c[1] + c[2]
    await led.close()


async def test_every_attempt_is_kept(ledger_url):
    led = await started(ledger_url)
    r, atts = entry(0)
    await led.write(r, atts)
    await led.close()
    store = open_store(ledger_url)
    await store.open()
    if store.dialect == "sqlite":
        got = await store._run(store._query, "SELECT idx, role, model, status, error FROM attempts ORDER BY idx", [])
    else:
        got = [tuple(x) for x in await store._p().fetch("SELECT idx, role, model, status, error FROM attempts ORDER BY idx")]
    await store.close()
    assert got == [(0, "first", "sonnet", 529, "overloaded"), (1, "fallback", "mini", 200, None)]


async def test_shutdown_drains_everything(ledger_url):
    # A long flush interval and a batch larger than what is written: only close() can flush it.
    led = await started(ledger_url, batch=5000, flush_interval=60)
    for i in range(3000):
        await led.write(*entry(i))
    assert led.pending == 3000
    await led.close()
    led2 = await started(ledger_url)
    rows = await led2.spend("model")
    assert sum(x.requests for x in rows) == 3000
    await led2.close()


class SlowStore:
    """Wraps a store: each write takes ``delay`` seconds, or fails while ``failing``."""

    def __init__(self, inner, delay=0.0):
        self.inner, self.delay, self.failing, self.writes = inner, delay, False, 0
        self.url, self.dialect = inner.url, inner.dialect

    async def open(self):
        await self.inner.open()

    async def close(self):
        await self.inner.close()

    async def write(self, entries):
        await asyncio.sleep(self.delay)
        if self.failing:
            raise ConnectionError("database is down")
        self.writes += 1
        await self.inner.write(entries)

    async def spend(self, *a):
        return await self.inner.spend(*a)


async def test_a_slow_database_pushes_back_and_nothing_is_lost(sqlite_url, tmp_path):
    store = SlowStore(open_store(sqlite_url), delay=0.05)
    led = Ledger(store, batch=10, buffer=20, flush_interval=0.01, block=2.0, spill=str(tmp_path / "spill"))
    await led.start()
    for i in range(100):  # five times the buffer: writers must wait for room
        await led.write(*entry(i))
    assert led.stats.waited > 0 and led.stats.spilled == 0  # healthy but slow: back-pressure only
    await led.close()
    check = await started(sqlite_url)
    assert sum(x.requests for x in await check.spend("model")) == 100
    await check.close()


async def test_a_failing_database_spills_to_disk_and_replays_on_next_start(sqlite_url, tmp_path):
    spill = str(tmp_path / "spill")
    store = SlowStore(open_store(sqlite_url))
    led = Ledger(store, batch=10, buffer=20, flush_interval=0.01, block=0.05, spill=spill, max_backoff=0.05)
    await led.start()
    store.failing = True
    for i in range(50):
        await led.write(*entry(i))
    await led.close()  # the database is still down: the rest goes to the spill file too
    assert led.stats.spilled == 50 and led.stats.written == 0
    assert glob.glob(spill + ".spill-*.jsonl")
    led2 = Ledger(open_store(sqlite_url), spill=spill)
    await led2.start()
    assert led2.stats.replayed == 50
    rows = await led2.spend("model")
    assert sum(x.requests for x in rows) == 50
    assert sum((x.cost for x in rows), D(0)) == sum((entry(i)[0].cost for i in range(50)), D(0))
    await led2.close()
    assert not glob.glob(spill + ".spill-*")


async def test_replaying_twice_writes_once(sqlite_url, tmp_path):
    led = await started(sqlite_url)
    r, atts = entry(1)
    await led.write(r, atts)
    await led.drain()
    await led.store.write([(r, atts)])  # the same entry again, as a replay would
    rows = await led.spend("model")
    assert sum(x.requests for x in rows) == 1
    await led.close()


async def test_a_live_processs_spill_file_is_left_alone(sqlite_url, tmp_path):
    spill = str(tmp_path / "spill")
    path = f"{spill}.spill-{os.getppid()}.jsonl"  # our parent is alive and may still be writing
    from switchman.accounting.ledger import encode_entry

    with open(path, "wb") as f:
        f.write(encode_entry(entry(1)) + b"\n")
    led = Ledger(open_store(sqlite_url), spill=spill)
    await led.start()
    assert led.stats.replayed == 0 and os.path.exists(path)
    await led.close()


async def test_schema_version_is_recorded_and_a_newer_one_refused(sqlite_url):
    import sqlite3

    led = await started(sqlite_url)
    await led.close()
    path = sqlite_url[len("sqlite:///"):]
    db = sqlite3.connect(path)
    assert db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == schema.VERSION
    db.execute("INSERT INTO schema_version VALUES (?)", (schema.VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="newer than this switchman"):
        await started(sqlite_url)


async def test_postgres_migrates_once_when_workers_start_together(pg_url):
    stores = [open_store(pg_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    versions = [x[0] for x in await stores[0]._p().fetch("SELECT version FROM schema_version")]
    assert versions == list(range(1, schema.VERSION + 1))
    await asyncio.gather(*(s.close() for s in stores))


async def test_spilled_entries_reach_the_database_as_soon_as_it_keeps_up_without_a_restart(sqlite_url, tmp_path):
    spill = str(tmp_path / "spill")
    store = SlowStore(open_store(sqlite_url))
    led = Ledger(store, batch=10, buffer=20, flush_interval=0.01, block=0.05, spill=spill, max_backoff=0.05)
    await led.start()
    store.failing = True
    for i in range(60):
        await led.write(*entry(i))
    assert led.stats.spilled > 0 and led.pending == 60  # buffered or on disk: none in the database yet
    store.failing = False
    for _ in range(200):
        await asyncio.sleep(0.02)
        if led.pending == 0:
            break
    assert led.pending == 0 and led.stats.replayed == led.stats.spilled
    rows = await led.spend("model")
    assert sum(x.requests for x in rows) == 60  # shown now, not at the next start
    assert not glob.glob(spill + ".spill-*")
    await led.close()


def poisoned(i: int):
    r, atts = entry(i)
    atts[-1].output_tokens = 10**13  # an upstream's absurd usage that got this far
    atts[-1].cost = D(2 * 10**7)
    r.cost = D(2 * 10**7)
    return r, atts


async def test_an_entry_the_database_refuses_is_quarantined_and_the_rest_written(ledger_url, tmp_path):
    spill = str(tmp_path / "spill")
    led = Ledger(open_store(ledger_url), batch=10, flush_interval=0.01, spill=spill, max_backoff=0.05)
    await led.start()
    await led.write(*poisoned(0))
    for i in range(1, 30):
        await led.write(*entry(i))
    assert await led.drain(timeout=10)  # the writer is not stuck behind the bad entry
    assert led.stats.quarantined == 1 and led.pending == 0
    rows = await led.spend("model")
    assert sum(x.requests for x in rows) == 29
    quarantine = open(spill + ".quarantine.jsonl").read()
    assert "req_0" in quarantine
    await led.close()


async def test_a_poisoned_spill_file_never_blocks_a_restart(ledger_url, tmp_path):
    from switchman.accounting.ledger import encode_entry

    spill = str(tmp_path / "spill")
    with open(f"{spill}.spill-999999999.jsonl", "wb") as f:  # a process long gone
        f.write(encode_entry(poisoned(0)) + b"\n" + encode_entry(entry(1)) + b"\n" + b"{torn line\n")
    led = Ledger(open_store(ledger_url), spill=spill)
    await led.start()
    assert led.stats.quarantined == 2  # the poisoned entry and the torn line
    assert sum(x.requests for x in await led.spend("model")) == 1
    await led.close()
