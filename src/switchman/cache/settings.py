"""The ``cache:`` section (top level, and per route to override it), parsed strictly::

    cache:
      enabled: true            # off by default
      backend: memory          # memory (this process, LRU bounded in bytes) | redis (every worker and replica)
      url: redis://127.0.0.1:6379/0   # for redis; default: state.url when state is redis
      max_mb: 256              # memory backend: the most the entries may take
      ttl: 3600                # seconds an entry lives
      scope: key               # key | user | team | global: whose answers may be shared (never across scopes)
      when: deterministic      # deterministic (temperature 0 or unset) | always
      wait: 5                  # seconds identical concurrent misses wait for the first one's answer

    routes:
      - {name: faq, policy: {...}, cache: {enabled: true, ttl: 86400, scope: global}}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..accounting.settings import Error, _Section

SCOPES = ("key", "user", "team", "global")
_KEYS = ("enabled", "backend", "url", "max_mb", "ttl", "scope", "when", "wait")
_ROUTE_KEYS = ("enabled", "ttl", "scope", "when")


@dataclass(frozen=True, slots=True)
class CacheSettings:
    enabled: bool = False
    backend: str = "memory"
    url: str | None = None
    max_mb: float = 256.0
    ttl: float = 3600.0
    scope: str = "key"
    when: str = "deterministic"
    wait: float = 5.0


def parse(v: Any, error: Error, state_url: str | None = None) -> CacheSettings:
    if v is None:
        return CacheSettings()
    s = _Section("cache", v, _KEYS, error)
    backend = s.choice("backend", ("memory", "redis"), "memory")
    url = s.get("url", str)
    if backend == "redis":
        url = url or state_url or "redis://127.0.0.1:6379/0"
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise error("cache.url", f"must be redis://HOST:PORT/DB (or rediss://, unix://), not '{url}'")
    elif url is not None:
        raise error("cache.url", "is for backend: redis")
    return CacheSettings(enabled=s.get("enabled", bool, False), backend=backend, url=url,
                         max_mb=s.positive("max_mb", float, 256.0), ttl=s.positive("ttl", float, 3600.0),
                         scope=s.choice("scope", SCOPES, "key"), when=s.choice("when", ("deterministic", "always"),
                                                                             "deterministic"),
                         wait=s.positive("wait", float, 5.0))


def for_route(v: Any, path: str, error: Error, base: CacheSettings) -> CacheSettings:
    """A route's ``cache:`` over the top-level one (its backend and size are the top level's)."""
    s = _Section(path, v, _ROUTE_KEYS, error)
    return replace(base, enabled=s.get("enabled", bool, True), ttl=s.positive("ttl", float, base.ttl),
                   scope=s.choice("scope", SCOPES, base.scope),
                   when=s.choice("when", ("deterministic", "always"), base.when))
