"""Limits that hold under concurrency: in one worker, and across worker processes sharing Redis
and one ledger database — the figures the issue asks for."""

from __future__ import annotations

import asyncio
import subprocess
import time
from decimal import Decimal

import orjson
import pytest

from switchman.accounting import AdmissionContext, BudgetExceeded
from switchman.accounting.settings import StateSettings
from switchman.testing import workers

from .conftest import REDIS_URL, SLOW_OK
from .test_facade import DEAR, record, started

D = Decimal


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_200_concurrent_requests_on_a_key_whose_budget_covers_50(backend, sqlite_url, request):
    # Each call can cost up to $0.30 (1,000 tokens in, max_tokens 1,000 on DEAR): $15 covers 50.
    st = None
    if backend == "redis":
        st = StateSettings(backend="redis", url=REDIS_URL, prefix=request.getfixturevalue("redis_prefix"), timeout=SLOW_OK)
    acc = await started(sqlite_url, state_settings=st)
    secret, rec = await acc.create_key(name="busy", budget="15/month")

    async def one(i: int) -> Decimal:
        try:
            adm = await acc.admit(AdmissionContext(secret, "auto", [DEAR], 1_000, 1_000))
        except BudgetExceeded:
            return D(0)
        await asyncio.sleep(0.01)
        await acc.settle(adm, *record(adm, str(adm.max_cost), rid=f"r{i}", inp=1_000, out=1_000))
        return adm.max_cost

    spent = await asyncio.gather(*(one(i) for i in range(200)))
    assert sum(1 for s in spent if s) == 50
    (row,) = await acc.spend("key")
    assert row.cost == sum(spent) == D(15)  # admitted spend never above the budget
    await acc.close()


def go(procs: list[subprocess.Popen]) -> list[dict]:
    workers.release(procs)
    return workers.results(procs, timeout=20)


async def test_budget_holds_across_4_workers_sharing_redis(sqlite_url, redis_prefix):
    acc = await started(sqlite_url)
    secret, _ = await acc.create_key(name="busy", budget="15/month")
    await acc.close()
    procs = await asyncio.to_thread(workers.spawn, "budget", sqlite_url, REDIS_URL, redis_prefix, secret, 50, 4)
    results = await asyncio.to_thread(go, procs)
    assert sum(r["admitted"] for r in results) == 50
    assert sum(D(r["spent"]) for r in results) == D(15)
    acc = await started(sqlite_url)
    (row,) = await acc.spend("key")
    assert row.requests == 50 and row.cost == D(15)  # every worker's ledger entries arrived
    await acc.close()


async def test_rpm_100_admits_exactly_100_across_4_workers_sharing_redis(sqlite_url, redis_prefix):
    acc = await started(sqlite_url)
    secret, _ = await acc.create_key(name="chatty", rpm=100)
    await acc.close()
    procs = await asyncio.to_thread(workers.spawn, "rpm", sqlite_url, REDIS_URL, redis_prefix, secret, 60, 4)
    results = await asyncio.to_thread(go, procs)
    assert sum(r["admitted"] for r in results) == 100 and not any(r["errors"] for r in results)


async def test_a_revoked_key_is_refused_by_every_worker_within_a_second(sqlite_url):
    await _revocation_lag(sqlite_url, "memory", "-")  # no Redis: the workers' key rings poll the database


async def test_a_revoked_key_is_refused_by_every_worker_within_a_second_postgres_redis(pg_url, redis_prefix):
    await _revocation_lag(pg_url, REDIS_URL, redis_prefix)


async def _revocation_lag(url: str, state: str, prefix: str) -> None:
    acc = await started(url, state_settings=None if state == "memory" else
                        StateSettings(backend="redis", url=state, prefix=prefix, timeout=SLOW_OK))
    secret, _ = await acc.create_key(name="doomed")
    procs = await asyncio.to_thread(workers.spawn, "watch", url, state, prefix, secret, 0, 2)
    workers.release(procs)
    await asyncio.sleep(0.3)  # the workers are admitting the key
    revoked_at = time.time()
    await acc.revoke_key("doomed")
    out = []
    for p in procs:
        stdout, _ = await asyncio.to_thread(p.communicate, timeout=15)
        out.append(orjson.loads(stdout.strip().splitlines()[-1]))
    lags = [r["refused_at"] - revoked_at for r in out]
    assert all(0 <= lag < 1.0 for lag in lags), lags
    await acc.close()
