"""Virtual keys: ``sk-sm-`` + 32 random URL-safe characters (192 bits), shown once at creation and
stored only as their SHA-256.

A key is found by the hash of what the client sent, so the secret itself is never compared and
never kept; with 192 random bits an unsalted SHA-256 is as strong as the key (salting protects
low-entropy passwords, which these are not). The admin key, a configured secret, is compared in
constant time by whoever holds it (``facade.Accountant``).

``KeyRing`` is the request path's view: every live key cached in memory, refreshed from the
database every ``refresh`` seconds (default 0.5), so a key revoked by any process — another
worker, ``switchman keys revoke``, ``DELETE /admin/keys/..`` — is refused by every worker within
one second even without Redis. An unknown key is looked up in the database once and then
remembered as unknown for ``negative_ttl`` seconds, so a flood of bad keys costs no queries.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("switchman.accounting")

PREFIX = "sk-sm-"
_RANDOM_BYTES = 24  # -> 32 URL-safe characters


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def digest(secret: str) -> str:
    """The stored form of a key: SHA-256, hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def hint(secret: str) -> str:
    """What lists show to tell keys apart: the prefix and 4 of the 32 random characters."""
    return secret[: len(PREFIX) + 4] + "…"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A virtual key as stored (never the secret). ``routes`` None = every route and model."""

    id: str
    name: str
    hash: str = field(repr=False)
    hint: str
    created: float
    updated: float
    expires: float | None = None
    revoked: float | None = None
    user: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    routes: tuple[str, ...] | None = None
    rpm: int | None = None
    tpm: int | None = None
    budget_usd: Decimal | None = None
    budget_period: str | None = None  # day | week | month

    def as_dict(self) -> dict:
        """The public view (for lists and the admin API): no hash."""
        budget = f"{self.budget_usd}/{self.budget_period}" if self.budget_usd is not None else None
        return {
            "id": self.id, "name": self.name, "hint": self.hint, "created": self.created,
            "expires": self.expires, "revoked": self.revoked, "user": self.user, "tags": dict(self.tags),
            "routes": list(self.routes) if self.routes is not None else None, "rpm": self.rpm, "tpm": self.tpm,
            "budget": budget,
        }


def make_key(name: str, now: float, **fields) -> tuple[str, KeyRecord]:
    """A new key: the secret (to show once) and the record to store."""
    secret = new_secret()
    rec = KeyRecord(id="key_" + secrets.token_hex(6), name=name, hash=digest(secret), hint=hint(secret),
                    created=now, updated=now, **fields)
    return secret, rec


MAX_NAME = 128  # a key's name, user and route names


def key_fields(*, name: object, budget: object = None, rpm: object = None, tpm: object = None,
               routes: object = None, expires: object = None, user: object = None, tags: object = None,
               now: float) -> dict:
    """Validate what a person asked for (CLI flags or an admin request body) into ``make_key``'s
    fields. Lists may come as ``"a,b"`` strings, tags as ``"k=v,k2=v2"``; ValueError names the
    field at fault."""
    from .budgets import parse_limit
    from .dates import parse_when
    from .records import check_tags, parse_tags

    if not isinstance(name, str) or not name.strip():
        raise ValueError("name: a key needs a name")
    if len(name) > MAX_NAME:
        raise ValueError(f"name: at most {MAX_NAME} characters")
    out: dict = {}
    if budget is not None:
        if not isinstance(budget, str):
            raise ValueError("budget: expected a string like 50/month")
        try:
            amount, period = parse_limit(budget)
        except ValueError as e:
            raise ValueError(f"budget: {e}") from None
        out["budget_usd"], out["budget_period"] = amount, period.value
    for field_name, v in (("rpm", rpm), ("tpm", tpm)):
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"{field_name}: expected a positive integer, not {v!r}")
            out[field_name] = v
    if routes is not None:
        items = routes.split(",") if isinstance(routes, str) else routes
        if not isinstance(items, list | tuple) or not all(isinstance(r, str) for r in items):
            raise ValueError("routes: expected names, as a list or 'a,b'")
        names = tuple(r.strip() for r in items if r.strip())
        if len(names) > 1000 or any(len(r) > MAX_NAME for r in names):
            raise ValueError(f"routes: at most 1000 names of at most {MAX_NAME} characters")
        if not names:
            raise ValueError("routes: name at least one route or model")
        out["routes"] = names
    if expires is not None:
        if not isinstance(expires, str):
            raise ValueError("expires: expected a date like 2026-12-31")
        try:
            when = parse_when(expires, now)
        except ValueError as e:
            raise ValueError(f"expires: {e}") from None
        if when <= now:
            raise ValueError(f"expires: {expires} is in the past")
        out["expires"] = when
    if user is not None:
        if not isinstance(user, str) or not user or len(user) > MAX_NAME:
            raise ValueError(f"user: expected a name of at most {MAX_NAME} characters")
        out["user"] = user
    if tags is not None:
        if isinstance(tags, str):
            tags = parse_tags(tags)
        if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
            raise ValueError("tags: expected name=value pairs")
        check_tags(tags)
        out["tags"] = dict(tags)
    return out


class KeyRing:
    """Live keys by hash, kept in step with the database."""

    def __init__(self, store: Store, now: Callable[[], float] = time.time, refresh: float = 0.5,
                 negative_ttl: float = 1.0) -> None:
        self._store = store
        self._now = now
        self._refresh = refresh
        self._negative_ttl = negative_ttl
        self._by_hash: dict[str, KeyRecord] = {}
        self._unknown: dict[str, float] = {}  # hash -> until when it is taken as unknown
        self._seen = 0.0
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._seen = time.time()
        for k in await self._store.list_keys(include_revoked=False):
            self._by_hash[k.hash] = k
        self._task = asyncio.create_task(self._poll(), name="switchman-keyring")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def cached(self, secret: str) -> tuple[bool, KeyRecord | None]:
        """``lookup`` without the database: ``(True, key or None)`` when memory knows the answer,
        ``(False, None)`` when only the database can tell."""
        h = digest(secret)
        k = self._by_hash.get(h)
        if k is not None:
            return True, k
        until = self._unknown.get(h)
        return (True, None) if until is not None and until > self._now() else (False, None)

    async def lookup(self, secret: str) -> KeyRecord | None:
        """The key ``secret`` names (revoked and expired ones included: the caller says why it
        refuses), or None when no key has this secret."""
        known, k = self.cached(secret)
        if known:
            return k
        h = digest(secret)
        now = self._now()
        k = await self._store.key_by_hash(h)
        if k is None:
            if len(self._unknown) > 10_000:  # a flood of random keys: forget, do not grow
                self._unknown.clear()
            self._unknown[h] = now + self._negative_ttl
            return None
        self._by_hash[h] = k
        return k

    def apply(self, k: KeyRecord) -> None:
        """Take a change made in this process at once (the poll would, within ``refresh``)."""
        self._by_hash[k.hash] = k
        self._unknown.pop(k.hash, None)

    def mark_revoked(self, key_hash: str, when: float) -> None:
        k = self._by_hash.get(key_hash)
        if k is not None and k.revoked is None:
            self._by_hash[key_hash] = replace(k, revoked=when)

    async def refresh(self) -> None:
        """Apply every key changed since the last look (with a margin for clock skew between
        the processes that write the database)."""
        start = time.time()
        for k in await self._store.keys_changed_since(self._seen - 5.0):
            self._by_hash[k.hash] = k
            self._unknown.pop(k.hash, None)
        self._seen = start

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._refresh)
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is away: keep serving from the cache
                log.warning("key refresh failed: %s", e)
