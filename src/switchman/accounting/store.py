"""The ledger database behind one small interface, ``Store``, with SQLite (``sqlite.py``, the default)
and PostgreSQL (``postgres.py``) beside it. ``open_store(url)`` picks one by the URL's scheme.

SQL is written once here with ``?`` placeholders; the PostgreSQL store numbers them. Rows are
built here too, so both databases hold exactly the same values.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import orjson

from .keys import KeyRecord
from .records import AttemptRecord, RequestRecord, from_pusd, to_pusd

GROUPINGS = ("model", "key", "user", "tag", "route", "day", "provider", "cache")

# One ledger entry: a request and its attempts, written together.
Entry = tuple[RequestRecord, Sequence[AttemptRecord]]


@dataclass(frozen=True, slots=True)
class SpendRow:
    """Spend of one group (a model, key, user, tag, route or day) over a time range."""

    group: str | None
    requests: int
    input_tokens: int
    output_tokens: int
    cost: Decimal
    baseline: Decimal  # the same usage at the route's most expensive model
    label: str | None = None  # for keys: the key's name
    cache_saved: Decimal = Decimal(0)  # what provider prompt caching saved against the same usage uncached

    @property
    def savings(self) -> Decimal:
        return self.baseline - self.cost

    def as_dict(self) -> dict:
        return {
            "group": self.group, "label": self.label, "requests": self.requests,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cost_usd": f"{self.cost:f}", "baseline_usd": f"{self.baseline:f}", "savings_usd": f"{self.savings:f}",
            "prompt_cache_savings_usd": f"{self.cache_saved:f}",
        }


class Store(abc.ABC):
    """A ledger database. Every method is safe to call concurrently from one event loop."""

    dialect: str
    url: str
    rollups: bool = True  # keep the rollups up to date in each write (benchmarks switch it off to compare)
    # What a write raises for an entry the database refuses (a value out of range, a bad type), as
    # against the database being unreachable: the ledger quarantines such an entry and goes on.
    data_errors: tuple[type[BaseException], ...] = (ArithmeticError, ValueError, TypeError)

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema to the current version."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def write(self, entries: Sequence[Entry]) -> None:
        """Insert a batch in one transaction; an entry already present is left as it is."""

    @abc.abstractmethod
    async def spend(self, by: str, since: float | None, until: float | None) -> list[SpendRow]: ...

    async def audit(self) -> tuple[int, dict[tuple[str, bool], int]]:
        """For checking the books: the number of request rows, and the cost (picodollars) of the
        attempts per (model, estimated)."""
        raise NotImplementedError

    @abc.abstractmethod
    async def fetch(self, sql: str, args: Sequence = ()) -> list[tuple]:
        """Rows of a read query written with ``?`` placeholders (reports, the request log)."""

    @abc.abstractmethod
    async def transact(self, statements: Sequence[tuple[str, Sequence]]) -> list[int]:
        """Run ``(sql, args)`` statements in one transaction; the rows each one changed."""

    @abc.abstractmethod
    async def scope_spend(self, scope: str, value: str | None, since: float) -> Decimal:
        """Total cost since ``since`` of a budget scope: ``global``, ``key`` (an id), ``user`` or
        ``tag`` (``name=value``)."""

    @abc.abstractmethod
    async def insert_key(self, key: KeyRecord) -> None:
        """Raises ``ValueError`` when a live key already has this name."""

    @abc.abstractmethod
    async def key_by_hash(self, digest: str) -> KeyRecord | None: ...

    @abc.abstractmethod
    async def find_key(self, id_or_name: str) -> KeyRecord | None:
        """A key by id, or the live key of that name."""

    @abc.abstractmethod
    async def list_keys(self, include_revoked: bool = False) -> list[KeyRecord]: ...

    @abc.abstractmethod
    async def revoke_key(self, key_id: str, now: float) -> None: ...

    @abc.abstractmethod
    async def keys_changed_since(self, t: float) -> list[KeyRecord]: ...


def open_store(url: str) -> Store:
    """The store for a ledger URL: ``sqlite:///relative.db``, ``sqlite:////abs/path.db``,
    ``sqlite:///:memory:``, or ``postgresql://user@host/db[?schema=name]``."""
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql:", "postgres:")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise ValueError(f"unsupported ledger url {url!r}: use sqlite:///FILE or postgresql://...")


# -- SQL shared by both stores -----------------------------------------------------------------------
REQUEST_COLUMNS = (
    "request_id", "ts", "key_id", "user_id", "tags", "route", "model", "provider", "status", "error",
    "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
    "cost_pusd", "baseline_pusd", "latency_ms", "ttft_ms", "cache", "reason", "estimated", "attempts", "stream",
    "episode", "dialect", "cache_saved_pusd",
)
ATTEMPT_COLUMNS = (
    "request_id", "idx", "ts", "role", "model", "provider", "status", "error", "input_tokens", "output_tokens",
    "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "cost_pusd", "latency_ms", "ttft_ms",
    "estimated", "detail",
)
TAG_COLUMNS = ("request_id", "tag", "ts", "cost_pusd", "baseline_pusd", "input_tokens", "output_tokens")
KEY_COLUMNS = (
    "id", "name", "hash", "hint", "created", "updated", "expires", "revoked", "user_id", "tags", "routes",
    "rpm", "tpm", "budget_usd", "budget_period",
)


def _insert(table: str, columns: tuple[str, ...], conflict: str) -> str:
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT ({conflict}) DO NOTHING"


INSERT_REQUEST = _insert("requests", REQUEST_COLUMNS, "request_id")
INSERT_ATTEMPT = _insert("attempts", ATTEMPT_COLUMNS, "request_id, idx")
INSERT_TAG = _insert("request_tags", TAG_COLUMNS, "request_id, tag")
INSERT_KEY = f"INSERT INTO keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join('?' for _ in KEY_COLUMNS)})"
SELECT_KEY = f"SELECT {', '.join(KEY_COLUMNS)} FROM keys"


INSERT_BODY = _insert("bodies", ("request_id", "ts", "prompt", "answer", "truncated"), "request_id")


def new_entries(entries: Sequence[Entry], reqs: Sequence[tuple], present: set[str]) -> tuple[list, list]:
    """The entries of a batch whose request is not in the database yet (only these are rolled up:
    a replayed spill file must not count twice), with their (cost, baseline) from ``reqs``' rows."""
    keep = [i for i, e in enumerate(entries) if e[0].request_id not in present]
    return [entries[i] for i in keep], [(reqs[i][15], reqs[i][16]) for i in keep]


def body_rows(entries: Sequence[Entry]) -> list[tuple]:
    return [(r.request_id, r.time, r.bodies[0], r.bodies[1], int(r.bodies[2])) for r, _ in entries
            if r.bodies is not None]


def rows(entries: Sequence[Entry]) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """The requests, attempts and request_tags rows of a batch."""
    reqs, atts, tags = [], [], []
    for r, attempts in entries:
        cost = to_pusd(r.cost)
        base = to_pusd(r.baseline_cost) if r.baseline_cost is not None else cost
        reqs.append((
            r.request_id, r.time, r.key_id, r.user, orjson.dumps(dict(r.tags)).decode() if r.tags else None,
            r.route, r.model, r.provider, r.status, r.error, r.input_tokens, r.output_tokens,
            r.cache_read_tokens, r.cache_write_tokens, r.cache_write_1h_tokens, cost, base,
            r.latency_ms, r.ttft_ms, r.cache, r.reason, int(r.estimated), r.attempts or len(attempts), int(r.stream),
            r.episode, r.dialect, to_pusd(r.cache_saved),
        ))
        for a in attempts:
            atts.append((
                r.request_id, a.index, a.time or r.time, a.role.value, a.model, a.provider, a.status, a.error,
                a.input_tokens, a.output_tokens, a.cache_read_tokens, a.cache_write_tokens,
                a.cache_write_1h_tokens, to_pusd(a.cost), a.latency_ms, a.ttft_ms, int(a.estimated), a.detail,
            ))
        for k, v in r.tags.items():
            tags.append((r.request_id, f"{k}={v}", r.time, cost, base, r.input_tokens, r.output_tokens))
    return reqs, atts, tags


def time_range(since: float | None, until: float | None, col: str = "r.ts") -> tuple[list[str], list]:
    """SQL conditions (and their arguments) for ``since <= col < until``, either end open."""
    where, args = [], []
    if since is not None:
        where.append(f"{col} >= ?")
        args.append(since)
    if until is not None:
        where.append(f"{col} < ?")
        args.append(until)
    return where, args


def spend_sql(by: str, day_expr: str, since: float | None, until: float | None) -> tuple[str, list]:
    """The spend query for ``by``; ``day_expr`` is the dialect's UTC date of ``ts``."""
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r} (choose from {', '.join(GROUPINGS)})")
    table, label = "requests r", "NULL"
    if by == "tag":
        table, group = "request_tags r", "r.tag"
    elif by == "day":
        group = day_expr
    elif by == "key":
        table, group, label = "requests r LEFT JOIN keys k ON k.id = r.key_id", "r.key_id", "MAX(k.name)"
    else:
        group = {"model": "r.model", "user": "r.user_id", "route": "r.route", "provider": "r.provider",
                 "cache": "r.cache"}[by]
    where, args = time_range(since, until)
    cond = f"WHERE {' AND '.join(where)}" if where else ""
    order = "1" if by == "day" else "5 DESC, 1"
    if by in ("model", "provider"):
        # Each attempt's tokens and cost are booked on its own model and provider (money probe F10:
        # a cascade's judge, a stream cut and resumed elsewhere); ``requests`` and the savings
        # baseline go to the one that answered. Rows add up to the ledger's totals.
        col = by
        sql = (f"SELECT g, SUM(n), SUM(i), SUM(o), SUM(c), SUM(b), NULL, SUM(s) FROM ("
               f"SELECT a.{col} AS g, 0 AS n, SUM(a.input_tokens) AS i, "
               f"SUM(a.output_tokens) AS o, SUM(a.cost_pusd) AS c, 0 AS b, 0 AS s "
               f"FROM attempts a JOIN requests r ON r.request_id = a.request_id {cond} GROUP BY a.{col} "
               f"UNION ALL SELECT r.{col}, COUNT(*), 0, 0, 0, SUM(r.baseline_pusd), SUM(r.cache_saved_pusd) "
               f"FROM requests r {cond} GROUP BY r.{col}) t GROUP BY g ORDER BY {order}")
        return sql, args + args
    saved = "0" if by == "tag" else "SUM(r.cache_saved_pusd)"
    sql = (f"SELECT {group}, COUNT(*), SUM(r.input_tokens), SUM(r.output_tokens), SUM(r.cost_pusd), "
           f"SUM(r.baseline_pusd), {label}, {saved} FROM {table} {cond} GROUP BY {group} ORDER BY {order}")
    return sql, args


def spend_row(row: Sequence) -> SpendRow:
    g, n, i, o, c, b, label, s = row
    return SpendRow(None if g is None else str(g), int(n), int(i or 0), int(o or 0),
                    from_pusd(int(c or 0)), from_pusd(int(b or 0)), label, from_pusd(int(s or 0)))


def scope_sql(scope: str, value: str | None, since: float | None = None) -> tuple[str, list]:
    """The query for a budget scope's spend since ``since`` (its last argument). A budget period
    starts at a UTC midnight: then the day rollups answer it, not a scan of the month's requests."""
    if since is not None and since % 86400 == 0 and scope in ("global", "key", "user", "tag"):
        if scope == "global":
            return "SELECT SUM(cost_pusd) FROM rollup_day WHERE dim = 'route' AND bucket >= ?", []
        return "SELECT SUM(cost_pusd) FROM rollup_day WHERE dim = ? AND value = ? AND bucket >= ?", [scope, value]
    if scope == "global":
        return "SELECT SUM(cost_pusd) FROM requests WHERE ts >= ?", []
    if scope == "tag":
        return "SELECT SUM(cost_pusd) FROM request_tags WHERE tag = ? AND ts >= ?", [value]
    column = {"key": "key_id", "user": "user_id"}.get(scope)
    if column is None:
        raise ValueError(f"unknown budget scope {scope!r}")
    return f"SELECT SUM(cost_pusd) FROM requests WHERE {column} = ? AND ts >= ?", [value]


def key_row(k: KeyRecord) -> tuple:
    return (
        k.id, k.name, k.hash, k.hint, k.created, k.updated, k.expires, k.revoked, k.user,
        orjson.dumps(dict(k.tags)).decode() if k.tags else None,
        orjson.dumps(list(k.routes)).decode() if k.routes is not None else None,
        k.rpm, k.tpm, None if k.budget_usd is None else str(k.budget_usd), k.budget_period,
    )


def key_of(row: Sequence) -> KeyRecord:
    (kid, name, digest, hint, created, updated, expires, revoked, user, tags, routes, rpm, tpm, budget,
     period) = row
    return KeyRecord(
        id=kid, name=name, hash=digest, hint=hint, created=created, updated=updated, expires=expires,
        revoked=revoked, user=user, tags=orjson.loads(tags) if tags else {},
        routes=tuple(orjson.loads(routes)) if routes is not None else None,
        rpm=rpm, tpm=tpm, budget_usd=Decimal(budget) if budget is not None else None, budget_period=period,
    )


AUDIT_REQUESTS = "SELECT COUNT(*) FROM requests"
AUDIT_ATTEMPTS = "SELECT model, estimated, SUM(cost_pusd) FROM attempts GROUP BY model, estimated"
