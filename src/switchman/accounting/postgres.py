"""The PostgreSQL ledger (``ledger: {url: postgresql://user@host/db}``), for many instances.

Driver: asyncpg (the ``postgres`` extra). Measured here on a 2-core machine inserting 20,000
ledger-shaped rows in batches of 500 with ``ON CONFLICT DO NOTHING``: asyncpg ``executemany``
~62k rows/s, psycopg 3 async ``executemany`` ~54k rows/s; asyncpg also imports faster (85 vs
145 ms). Either keeps far ahead of one gateway's request rate; asyncpg is the lighter one.

``?schema=NAME`` in the URL puts the tables in that schema (created if missing), so several
deployments — or test runs — can share one database. Migrations take an advisory lock, so
workers starting together migrate once.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import replace
from decimal import Decimal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from . import rollups, schema
from .keys import KeyRecord
from .records import from_pusd
from .store import (
    AUDIT_ATTEMPTS, AUDIT_REQUESTS,
    INSERT_ATTEMPT, INSERT_BODY, INSERT_KEY, INSERT_REQUEST, INSERT_TAG, SELECT_KEY, Entry, SpendRow, Store,
    body_rows, key_of, key_row, new_entries, rows, scope_sql, spend_row, spend_sql,
)

try:
    import asyncpg
except ImportError:  # pragma: no cover - exercised only without the extra
    asyncpg = None

_DAY = "to_char(to_timestamp(r.ts) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
_MARK = re.compile(r"\?")
_LOCK = 0x5377_6D6C  # advisory lock id for migrations ("Swml")
_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def numbered(sql: str) -> str:
    """``?`` placeholders -> ``$1, $2, ...`` (the SQL here has no literal question marks)."""
    n = 0

    def sub(_m: re.Match) -> str:
        nonlocal n
        n += 1
        return f"${n}"

    return _MARK.sub(sub, sql)


def split_url(url: str) -> tuple[str, str | None]:
    """The DSN for asyncpg and the ``schema`` query parameter, taken out of it."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema_name = next((v for k, v in query if k == "schema"), None)
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    if schema_name is not None and not _SCHEMA_NAME.match(schema_name):
        raise ValueError(f"schema {schema_name!r} must be a plain SQL identifier")
    return urlunsplit(parts._replace(query=rest)), schema_name


_REQ, _ATT, _TAG = numbered(INSERT_REQUEST), numbered(INSERT_ATTEMPT), numbered(INSERT_TAG)
_KEY = numbered(INSERT_KEY)
_BODY = numbered(INSERT_BODY)
_UP_MINUTE, _UP_HOUR, _UP_DAY = (numbered(rollups.UPSERT_MINUTE), numbered(rollups.UPSERT_HOUR),
                                 numbered(rollups.UPSERT_DAY))


class PostgresStore(Store):
    dialect = "postgres"

    def __init__(self, url: str, *, pool_size: int = 4) -> None:
        if asyncpg is None:
            raise ImportError("a postgresql:// ledger needs asyncpg: pip install 'switchman[postgres]'")
        self.url = url
        self._dsn, self.schema = split_url(url)
        self._pool_size = pool_size
        self._pool = None

    async def open(self) -> None:
        self.data_errors = (*Store.data_errors, asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
        settings = {"search_path": self.schema} if self.schema else None
        if self.schema:  # the schema must exist before a connection can use it as its search path
            conn = await asyncpg.connect(self._dsn)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            except asyncpg.UniqueViolationError:  # created by a worker starting at the same moment
                pass
            finally:
                await conn.close()
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=self._pool_size,
                                               server_settings=settings)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
            await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            have = await conn.fetchval("SELECT MAX(version) FROM schema_version") or 0
            if have > schema.VERSION:
                raise RuntimeError(f"ledger has schema version {have}, newer than this switchman's "
                                   f"{schema.VERSION}: upgrade switchman")
            for v in range(have + 1, schema.VERSION + 1):
                for stmt in schema.statements("postgres", v):
                    await conn.execute(stmt)
                if v == 2:  # the rollups of what an older switchman wrote
                    for stmt in rollups.backfill("postgres"):
                        await conn.execute(stmt)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", v)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _p(self):
        if self._pool is None:
            raise RuntimeError("the ledger store is not open")
        return self._pool

    async def write(self, entries: Sequence[Entry]) -> None:
        reqs, atts, tags = rows(entries)
        bodies = body_rows(entries)
        async with self._p().acquire() as conn, conn.transaction():
            present = {r[0] for r in await conn.fetch("SELECT request_id FROM requests WHERE request_id = ANY($1::text[])",
                                                      [r[0] for r in reqs])} if self.rollups else set()
            await conn.executemany(_REQ, reqs)
            if atts:
                await conn.executemany(_ATT, atts)
            if tags:
                await conn.executemany(_TAG, tags)
            if bodies:
                await conn.executemany(_BODY, bodies)
            minute, hour, day = rollups.rows_for(*new_entries(entries, reqs, present)) \
                if self.rollups else ([], [], [])
            for sql, batch in ((_UP_MINUTE, minute), (_UP_HOUR, hour), (_UP_DAY, day)):
                if batch:
                    await conn.executemany(sql, batch)

    async def spend(self, by: str, since: float | None, until: float | None) -> list[SpendRow]:
        sql, args = spend_sql(by, _DAY, since, until)
        return [spend_row(tuple(r)) for r in await self._p().fetch(numbered(sql), *args)]

    async def audit(self) -> tuple[int, dict[tuple[str, bool], int]]:
        n = (await self._p().fetch(AUDIT_REQUESTS))[0][0]
        rows = await self._p().fetch(AUDIT_ATTEMPTS)
        return int(n), {(r[0], bool(r[1])): int(r[2] or 0) for r in rows}

    async def fetch(self, sql: str, args: Sequence = ()) -> list[tuple]:
        return [tuple(r) for r in await self._p().fetch(numbered(sql), *args)]

    async def transact(self, statements: Sequence[tuple[str, Sequence]]) -> list[int]:
        out = []
        async with self._p().acquire() as conn, conn.transaction():
            for sql, args in statements:
                status = await conn.execute(numbered(sql), *args)  # e.g. "INSERT 0 1", "UPDATE 3"
                out.append(int(status.rsplit(" ", 1)[-1]) if status[-1:].isdigit() else 0)
        return out

    async def scope_spend(self, scope: str, value: str | None, since: float) -> Decimal:
        sql, args = scope_sql(scope, value, since)
        got = await self._p().fetchval(numbered(sql), *args, since)
        return from_pusd(int(got or 0))

    async def insert_key(self, key: KeyRecord) -> None:
        try:
            await self._p().execute(_KEY, *key_row(replace(key, updated=time.time())))
        except asyncpg.UniqueViolationError:
            raise ValueError(f"a live key named {key.name!r} already exists") from None

    async def key_by_hash(self, digest: str) -> KeyRecord | None:
        row = await self._p().fetchrow(SELECT_KEY + " WHERE hash = $1", digest)
        return key_of(tuple(row)) if row else None

    async def find_key(self, id_or_name: str) -> KeyRecord | None:
        row = await self._p().fetchrow(SELECT_KEY + " WHERE id = $1 OR (name = $1 AND revoked IS NULL)", id_or_name)
        return key_of(tuple(row)) if row else None

    async def list_keys(self, include_revoked: bool = False) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked IS NULL"
        return [key_of(tuple(r)) for r in await self._p().fetch(SELECT_KEY + where + " ORDER BY created")]

    async def revoke_key(self, key_id: str, now: float) -> None:
        await self._p().execute("UPDATE keys SET revoked = $1, updated = $2 WHERE id = $3 AND revoked IS NULL",
                                now, time.time(), key_id)

    async def keys_changed_since(self, t: float) -> list[KeyRecord]:
        return [key_of(tuple(r)) for r in await self._p().fetch(SELECT_KEY + " WHERE updated >= $1", t)]
