"""Fixtures for accounting: the embedded defaults (SQLite in a tmp dir, memory state) and the real
services on loopback — Redis on 6379 and PostgreSQL on 5432 (``.ci/run`` starts both). Each test
gets its own Redis key prefix and its own PostgreSQL schema, removed afterwards, so runs never
collide. A test needing a service that is not reachable is skipped, saying which."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib
import os
import socket
import uuid

import pytest

from switchman.accounting.state import MemoryState

REDIS_URL = os.environ.get("SWITCHMAN_TEST_REDIS", "redis://127.0.0.1:6379/0")
# Redis call timeout for tests about exactness, not outages: a loaded CI machine must not look like Redis down.
SLOW_OK = 2.0
PG_BASE = os.environ.get("SWITCHMAN_TEST_POSTGRES", "")
PG_USERS = ("postgres", "root")

# A fixed moment in the middle of a month, a week and a day (2026-11-18 Wed 12:00 UTC), so no test
# straddles a budget period or a rate window whatever the wall clock says.
NOON = 1_795_003_200.0


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/ledger.db"


def _run(coro):
    """Run ``coro`` to the end on a loop of its own (in a thread: a test's loop may be running)."""
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        return ex.submit(asyncio.run, coro).result()


def _pg_base() -> str | None:
    if PG_BASE:
        return PG_BASE
    if not _reachable(5432):
        return None
    try:
        import asyncpg
    except ImportError:
        return None

    async def probe(user: str) -> bool:
        try:
            c = await asyncpg.connect(f"postgresql://{user}@127.0.0.1:5432/test", timeout=2)
        except Exception:
            return False
        await c.close()
        return True

    for user in PG_USERS:
        if _run(probe(user)):
            return f"postgresql://{user}@127.0.0.1:5432/test"
    return None


_PG: list = []


def pg_base() -> str | None:
    """The test database's URL (found once per run), or None when it is not reachable."""
    if not _PG:
        _PG.append(_pg_base())
    return _PG[0]


@contextlib.contextmanager
def pg_schema():
    """A PostgreSQL ledger URL with a schema of its own, dropped afterwards."""
    base = pg_base()
    if base is None:
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432 (database 'test', user postgres or root), "
                    "or asyncpg is not installed")
    import asyncpg

    schema = unique("sw_test_")

    async def drop() -> None:
        c = await asyncpg.connect(base)
        try:
            await c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await c.close()

    try:
        yield f"{base}?schema={schema}"
    finally:
        _run(drop())


@pytest.fixture
def pg_url():
    with pg_schema() as url:
        yield url


def redis_available() -> bool:
    try:
        importlib.import_module("redis")
    except ImportError:
        return False
    return _reachable(6379)


def _flush(prefix: str) -> None:
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    pattern = prefix.replace("{", "\\{").replace("}", "\\}") + "*"
    keys = list(r.scan_iter(match=pattern, count=1000))
    if keys:
        r.delete(*keys)
    r.close()


@pytest.fixture
def redis_prefix():
    """A fresh key prefix on the test Redis; its keys are deleted afterwards."""
    if not redis_available():
        pytest.skip("Redis is not reachable on 127.0.0.1:6379, or redis-py is not installed")
    prefix = "{" + unique("swtest_") + "}:"
    yield prefix
    _flush(prefix)


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request, tmp_path):
    """Each ledger database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
        return
    with pg_schema() as url:
        yield url


@pytest.fixture(params=["memory", "redis"])
def state_kind(request):
    return request.param


@pytest.fixture
async def state(state_kind, request):
    """Each state backend, fresh."""
    if state_kind == "memory":
        yield MemoryState()
        return
    prefix = request.getfixturevalue("redis_prefix")
    from switchman.accounting.redis_state import RedisState

    st = RedisState(REDIS_URL, prefix=prefix, timeout=SLOW_OK)  # exactness, not outages: a loaded machine is not Redis down
    await st.start()
    yield st
    await st.close()
