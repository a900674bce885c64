"""The SQLite ledger (the default, ``sqlite:///switchman.db``).

WAL mode, so reports read while the gateway writes and several worker processes can share one
file (one writer at a time; ``busy_timeout`` makes the others wait instead of failing). All
database work runs on one thread of its own, never on the event loop.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from . import rollups, schema
from .keys import KeyRecord
from .records import from_pusd
from .store import (
    AUDIT_ATTEMPTS, AUDIT_REQUESTS,
    INSERT_ATTEMPT, INSERT_BODY, INSERT_KEY, INSERT_REQUEST, INSERT_TAG, SELECT_KEY, Entry, SpendRow, Store,
    body_rows, key_of, key_row, new_entries, rows, scope_sql, spend_row, spend_sql,
)

_DAY = "strftime('%Y-%m-%d', r.ts, 'unixepoch')"


def path_of(url: str) -> str:
    """``sqlite:///rel.db`` -> ``rel.db``; ``sqlite:////abs.db`` -> ``/abs.db``; ``:memory:``."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"a SQLite ledger url looks like sqlite:///switchman.db, not {url!r}")
    return url[len("sqlite:///"):] or "switchman.db"


class _BigSum:
    """SUM for integer picodollars past SQLite's 64-bit range (about $9.2M in one group): Python
    ints do not overflow. Used only when the built-in SUM reports an overflow."""

    def __init__(self) -> None:
        self.total: int | None = None

    def step(self, v) -> None:
        if v is not None:
            self.total = (self.total or 0) + int(v)

    def finalize(self):
        return None if self.total is None else str(self.total)


class SQLiteStore(Store):
    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = path_of(url)
        self._db: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchman-sqlite")

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # -- lifecycle -----------------------------------------------------------------------------------
    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
        db.execute("PRAGMA busy_timeout=10000")
        db.create_aggregate("bigsum", 1, _BigSum)
        self._db = db
        self._migrate(db)

    def _migrate(self, db: sqlite3.Connection) -> None:
        db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then see it done
        try:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            have = row[0] or 0
            if have > schema.VERSION:
                raise RuntimeError(f"ledger {self.path} has schema version {have}, newer than this switchman's "
                                   f"{schema.VERSION}: upgrade switchman")
            for v in range(have + 1, schema.VERSION + 1):
                for stmt in schema.statements("sqlite", v):
                    db.execute(stmt)
                if v == 2:  # the rollups of what an older switchman wrote
                    for stmt in rollups.backfill("sqlite"):
                        db.execute(stmt)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (v,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._pool.shutdown(wait=True)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the ledger store is not open")
        return self._db

    # -- ledger --------------------------------------------------------------------------------------
    async def write(self, entries: Sequence[Entry]) -> None:
        await self._run(self._write, entries)

    def _write(self, entries: Sequence[Entry]) -> None:
        reqs, atts, tags = rows(entries)
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = [r[0] for r in reqs] if self.rollups else []
            present = {row[0] for i in range(0, len(ids), 900) for row in db.execute(
                f"SELECT request_id FROM requests WHERE request_id IN ({','.join('?' * len(ids[i:i + 900]))})",
                ids[i:i + 900])}
            db.executemany(INSERT_REQUEST, reqs)
            if atts:
                db.executemany(INSERT_ATTEMPT, atts)
            if tags:
                db.executemany(INSERT_TAG, tags)
            bodies = body_rows(entries)
            if bodies:
                db.executemany(INSERT_BODY, bodies)
            minute, hour, day = rollups.rows_for(*new_entries(entries, reqs, present)) \
                if self.rollups else ([], [], [])
            db.executemany(rollups.UPSERT_MINUTE, minute)
            db.executemany(rollups.UPSERT_HOUR, hour)
            if day:
                db.executemany(rollups.UPSERT_DAY, day)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def spend(self, by: str, since: float | None, until: float | None) -> list[SpendRow]:
        sql, args = spend_sql(by, _DAY, since, until)
        return [spend_row(r) for r in await self._run(self._query, sql, args)]

    async def audit(self) -> tuple[int, dict[tuple[str, bool], int]]:
        n = (await self._run(self._query, AUDIT_REQUESTS, []))[0][0]
        rows = await self._run(self._query, AUDIT_ATTEMPTS, [])
        return int(n), {(r[0], bool(r[1])): int(r[2] or 0) for r in rows}

    async def scope_spend(self, scope: str, value: str | None, since: float) -> Decimal:
        sql, args = scope_sql(scope, value, since)
        got = await self._run(self._query, sql, [*args, since])
        return from_pusd(int(got[0][0] or 0))

    async def fetch(self, sql: str, args: Sequence = ()) -> list[tuple]:
        return await self._run(self._query, sql, list(args))

    async def transact(self, statements: Sequence[tuple[str, Sequence]]) -> list[int]:
        return await self._run(self._transact, statements)

    def _transact(self, statements: Sequence[tuple[str, Sequence]]) -> list[int]:
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            out = [db.execute(sql, list(args)).rowcount for sql, args in statements]
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

    def _query(self, sql: str, args: Sequence) -> list[tuple]:
        db = self._conn()
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as e:
            # SUM's overflow is the generic SQLITE_ERROR with this text (sqlite.org/lang_aggfunc.html#sumunc):
            # no narrower code exists to test.
            if "integer overflow" not in str(e):
                raise
            return db.execute(sql.replace("SUM(", "bigsum("), args).fetchall()

    # -- keys ----------------------------------------------------------------------------------------
    async def insert_key(self, key: KeyRecord) -> None:
        await self._run(self._insert_key, key_row(replace(key, updated=time.time())))

    def _insert_key(self, row: tuple) -> None:
        try:
            self._conn().execute(INSERT_KEY, row)
        except sqlite3.IntegrityError:
            raise ValueError(f"a live key named {row[1]!r} already exists") from None

    async def key_by_hash(self, digest: str) -> KeyRecord | None:
        got = await self._run(self._query, SELECT_KEY + " WHERE hash = ?", [digest])
        return key_of(got[0]) if got else None

    async def find_key(self, id_or_name: str) -> KeyRecord | None:
        got = await self._run(self._query, SELECT_KEY + " WHERE id = ? OR (name = ? AND revoked IS NULL)",
                              [id_or_name, id_or_name])
        return key_of(got[0]) if got else None

    async def list_keys(self, include_revoked: bool = False) -> list[KeyRecord]:
        where = "" if include_revoked else " WHERE revoked IS NULL"
        return [key_of(r) for r in await self._run(self._query, SELECT_KEY + where + " ORDER BY created", [])]

    async def revoke_key(self, key_id: str, now: float) -> None:
        await self._run(self._query, "UPDATE keys SET revoked = ?, updated = ? WHERE id = ? AND revoked IS NULL",
                        [now, time.time(), key_id])

    async def keys_changed_since(self, t: float) -> list[KeyRecord]:
        return [key_of(r) for r in await self._run(self._query, SELECT_KEY + " WHERE updated >= ?", [t])]
