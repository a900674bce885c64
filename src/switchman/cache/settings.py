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
      prompt_ttl: 5m           # Anthropic breakpoints the gateway adds: 5m | 1h (writes cost 1.25x | 2x input)
      prompt_retention: 24h    # OpenAI's prompt_cache_retention (in_memory | 24h); not sent unless set
      sticky: true             # a conversation stays on the model holding its warm prompt cache while cheaper
      semantic:                # off unless present (needs pip install 'switchman[semantic]')
        max_error: 0.02        # the share of wrong hits accepted; the similarity needed is learned
        confidence: 0.84       # how sure the evidence must make us of that bound (0.5: its point estimate)
        verify: 0.05           # share of would-be hits also sent upstream and compared
        explore: 0.8           # near misses above this similarity are compared (they go upstream anyway)
        min_chars: 12          # shorter last turns are not looked up
        embedder: minilm       # minilm (static prefilter, then MiniLM) | static (the prefilter alone)
        prior: builtin         # builtin (thresholds start from shipped measurements) | none
        judge: gpt-4o-mini     # a model that tells whether a kept answer also answers the new prompt
                               # (default: only the same final text counts as agreeing)
        max_entries: 100000

    routes:
      - {name: faq, policy: {...}, cache: {enabled: true, ttl: 86400, scope: global, semantic: {max_error: 0.01}}}
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..accounting.settings import Error, _Section

SCOPES = ("key", "user", "team", "global")
_PROMPT_KEYS = ("prompt_ttl", "prompt_retention", "sticky")
_KEYS = ("enabled", "backend", "url", "max_mb", "ttl", "scope", "when", "wait", "semantic", *_PROMPT_KEYS)
_ROUTE_KEYS = ("enabled", "ttl", "scope", "when", "semantic", *_PROMPT_KEYS)
_SEMANTIC_KEYS = ("max_error", "confidence", "verify", "explore", "min_chars", "embedder", "prior", "max_entries",
                  "judge")


@dataclass(frozen=True, slots=True)
class SemanticSettings:
    max_error: float = 0.02
    confidence: float = 0.84
    verify: float = 0.05
    explore: float = 0.8
    min_chars: int = 12
    embedder: str = "minilm"
    prior: str = "builtin"
    max_entries: int = 100_000
    judge: str | None = None  # a model that decides whether two answers agree (else: the same final text)


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
    semantic: SemanticSettings | None = None
    prompt_ttl: str = "5m"  # Anthropic's prompt-cache TTL for the breakpoints the gateway adds: 5m | 1h
    prompt_retention: str | None = None  # OpenAI's prompt_cache_retention: in_memory | 24h (None: not sent)
    sticky: bool = True  # prefer the model holding a conversation's warm prompt cache while it is cheaper


def _semantic(v: Any, path: str, error: Error, base: SemanticSettings | None) -> SemanticSettings | None:
    if v is None or v is False:
        return base if v is None else None
    if v is True:
        v = {}
    from .embedder import missing_extra

    s = _Section(path, v, _SEMANTIC_KEYS, error)
    b = base or SemanticSettings()
    out = SemanticSettings(max_error=s.positive("max_error", float, b.max_error),
                           confidence=s.get("confidence", float, b.confidence),
                           verify=s.get("verify", float, b.verify), explore=s.get("explore", float, b.explore),
                           min_chars=s.get("min_chars", int, b.min_chars),
                           embedder=s.choice("embedder", ("minilm", "static"), b.embedder),
                           prior=s.choice("prior", ("builtin", "none"), b.prior),
                           max_entries=s.positive("max_entries", int, b.max_entries),
                           judge=s.get("judge", str, b.judge))
    if out.max_error >= 0.5:
        raise error(f"{path}.max_error", f"must be below 0.5 (a share of wrong hits), not {out.max_error}")
    if not 0.5 <= out.confidence < 1:
        raise error(f"{path}.confidence", f"must be at least 0.5 and below 1, not {out.confidence}")
    if not 0 < out.verify <= 1:
        raise error(f"{path}.verify", f"must be a share above 0 and at most 1, not {out.verify}")
    if not 0 < out.explore < 1:
        raise error(f"{path}.explore", f"must be a cosine similarity between 0 and 1, not {out.explore}")
    if out.min_chars < 1:
        raise error(f"{path}.min_chars", "must be 1 or more")
    why = missing_extra()
    if why:
        raise error(path, why)
    return out


def check_judge(c: CacheSettings | None, path: str, error: Error, models) -> None:
    judge = c.semantic.judge if c is not None and c.semantic is not None else None
    if judge is not None and judge not in models:
        raise error(path, f"unknown model '{judge}' (models: {', '.join(models) or 'none'})")


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
                         wait=s.positive("wait", float, 5.0),
                         semantic=_semantic(v.get("semantic"), "cache.semantic", error, None),
                         **_prompt(s, CacheSettings()))


def _prompt(s: _Section, base: CacheSettings) -> dict:
    """The provider prompt-cache keys: they apply whether or not answers are cached."""
    return {"prompt_ttl": s.choice("prompt_ttl", ("5m", "1h"), base.prompt_ttl),
            "prompt_retention": s.choice("prompt_retention", ("in_memory", "24h"), base.prompt_retention or "in_memory")
            if s.v.get("prompt_retention") is not None else base.prompt_retention,
            "sticky": s.get("sticky", bool, base.sticky)}


def for_route(v: Any, path: str, error: Error, base: CacheSettings) -> CacheSettings:
    """A route's ``cache:`` over the top-level one (its backend and size are the top level's). A
    route section turns answer caching on unless it says ``enabled: false`` or holds only the
    prompt-cache keys (``prompt_ttl``, ``prompt_retention``, ``sticky``)."""
    s = _Section(path, v, _ROUTE_KEYS, error)
    answers = any(k not in _PROMPT_KEYS for k in v)  # prompt-cache keys alone do not cache answers
    return replace(base, enabled=s.get("enabled", bool, answers or base.enabled), **_prompt(s, base), ttl=s.positive("ttl", float, base.ttl),
                   scope=s.choice("scope", SCOPES, base.scope),
                   when=s.choice("when", ("deterministic", "always"), base.when),
                   semantic=_semantic(s.v.get("semantic"), f"{path}.semantic", error, base.semantic))
