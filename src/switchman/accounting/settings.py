"""The config sections of accounting, parsed strictly into frozen settings::

    ledger:
      url: sqlite:///switchman.db     # or postgresql://user@host/db[?schema=NAME]
      enabled: true                   # false: no ledger at all (budgets then count from zero)
      batch: 500                      # entries per database transaction
      flush_interval: 0.2             # seconds: the most an entry waits in memory
      buffer: 10000                   # entries held in memory at most (then back-pressure, then spill)
      block: 1.0                      # seconds a finishing request may wait for room in the buffer
      spill: null                     # spill-file prefix (default: beside the SQLite file, or ./switchman-ledger)
      responses_days: 30              # how long stored Responses API responses are kept (store: true)

    state:
      backend: memory                 # memory (one worker) | redis (every worker, every machine)
      url: redis://127.0.0.1:6379/0   # for redis
      prefix: "{switchman}:"          # Redis key prefix
      timeout: 0.25                   # seconds per Redis call before it counts as down
      on_error: open                  # open: admit while Redis is down (with a warning) | closed: 503

    budgets:
      - {global: true, limit: 1000/month}
      - {tag: team=search, limit: 200/month, soft: 80%, downgrade_to: cheap}
      - {tag: "team=*", limit: 100/week}          # every team its own budget
      - {user: "*", limit: 5/day}                 # every user their own budget
      - {key: ci-bot, limit: 20/day, soft: 0.9}   # by key name; keys may also carry --budget

``parse(raw, error)`` reads the three top-level sections (any may be missing) and raises
``error(dotted_path, message)`` — the caller's located ``ConfigError`` — for anything wrong,
naming unknown keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .budgets import BudgetRule, Scope, parse_limit

Error = Callable[[str, str], Exception]


DEFAULT_LEDGER_URL = "sqlite:///switchman.db"


@dataclass(frozen=True, slots=True)
class LedgerSettings:
    url: str = DEFAULT_LEDGER_URL
    enabled: bool = True
    batch: int = 500
    flush_interval: float = 0.2
    buffer: int = 10_000
    block: float = 1.0
    spill: str | None = None
    responses_days: float = 30.0


@dataclass(frozen=True, slots=True)
class StateSettings:
    backend: str = "memory"
    url: str | None = None
    prefix: str = "{switchman}:"
    timeout: float = 0.25
    on_error: str = "open"


@dataclass(frozen=True, slots=True)
class AccountingSettings:
    ledger: LedgerSettings = LedgerSettings()
    state: StateSettings = StateSettings()
    budgets: tuple[BudgetRule, ...] = field(default_factory=tuple)


def parse(raw: Mapping[str, Any], error: Error, names: Iterable[str] | None = None) -> AccountingSettings:
    """Parse ``raw['ledger']``, ``raw['state']``, ``raw['budgets']``. With ``names`` (every route and
    model), ``downgrade_to`` must name one of them."""
    ledger = _ledger(raw.get("ledger"), error)
    state = _state(raw.get("state"), error)
    budgets = _budgets(raw.get("budgets"), error, None if names is None else set(names))
    return AccountingSettings(ledger, state, budgets)


class _Section:
    def __init__(self, path: str, value: Any, allowed: tuple[str, ...], error: Error) -> None:
        if not isinstance(value, dict):
            raise error(path, f"must be a mapping, not {_tname(value)}")
        for k in value:
            if k not in allowed:
                raise error(f"{path}.{k}", f"unknown key '{k}' (allowed: {', '.join(allowed)})")
        self.path, self.v, self.error = path, value, error

    def get(self, key: str, typ: type | tuple, default: Any = None) -> Any:
        v = self.v.get(key)
        if v is None:
            return default
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if isinstance(v, bool) and typ in (int, float):
            raise self.error(f"{self.path}.{key}", "must be a number, not a boolean")
        if not isinstance(v, typ):
            want = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
            raise self.error(f"{self.path}.{key}", f"must be {want}, not {_tname(v)}")
        return v

    def positive(self, key: str, typ: type, default: Any) -> Any:
        v = self.get(key, typ, default)
        if v <= 0:
            raise self.error(f"{self.path}.{key}", "must be greater than 0")
        return v

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        v = self.get(key, str, default)
        if v not in choices:
            raise self.error(f"{self.path}.{key}", f"must be one of {', '.join(choices)}, not '{v}'")
        return v


def _tname(v: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", int: "an integer", float: "a number",
            bool: "a boolean", type(None): "empty"}.get(type(v), type(v).__name__)


def _ledger(v: Any, error: Error) -> LedgerSettings:
    if v is None:
        return LedgerSettings()
    s = _Section("ledger", v, ("url", "enabled", "batch", "flush_interval", "buffer", "block", "spill",
                                   "responses_days"), error)
    url = s.get("url", str, DEFAULT_LEDGER_URL)
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise error("ledger.url", f"must be sqlite:///FILE or postgresql://..., not '{url}'")
    block = s.get("block", float, 1.0)
    if block < 0:
        raise error("ledger.block", "must be 0 or more")
    batch = s.positive("batch", int, 500)
    buffer = s.positive("buffer", int, 10_000)
    if buffer < batch:
        raise error("ledger.buffer", f"must hold at least one batch ({batch})")
    return LedgerSettings(url=url, enabled=s.get("enabled", bool, True), batch=batch,
                          flush_interval=s.positive("flush_interval", float, 0.2), buffer=buffer, block=block,
                          spill=s.get("spill", str), responses_days=s.positive("responses_days", float, 30.0))


def _state(v: Any, error: Error) -> StateSettings:
    if v is None:
        return StateSettings()
    s = _Section("state", v, ("backend", "url", "prefix", "timeout", "on_error"), error)
    backend = s.choice("backend", ("memory", "redis"), "memory")
    url = s.get("url", str)
    if backend == "redis":
        url = url or "redis://127.0.0.1:6379/0"
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise error("state.url", f"must be redis://HOST:PORT/DB (or rediss://, unix://), not '{url}'")
    elif url is not None:
        raise error("state.url", "is for backend: redis")
    return StateSettings(backend=backend, url=url, prefix=s.get("prefix", str, "{switchman}:"),
                         timeout=s.positive("timeout", float, 0.25),
                         on_error=s.choice("on_error", ("open", "closed"), "open"))


_SCOPES = ("global", "key", "user", "tag")


def _budgets(v: Any, error: Error, names: set[str] | None) -> tuple[BudgetRule, ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        raise error("budgets", f"must be a list, not {_tname(v)}")
    out = []
    for i, item in enumerate(v):
        path = f"budgets[{i}]"
        s = _Section(path, item, (*_SCOPES, "limit", "soft", "downgrade_to"), error)
        given = [k for k in _SCOPES if k in item]
        if len(given) != 1:
            raise error(path, "needs exactly one of global: true, key: NAME, user: NAME, tag: NAME=VALUE")
        scope = Scope(given[0])
        match: str | None = None
        if scope is Scope.GLOBAL:
            if s.get("global", bool) is not True:
                raise error(f"{path}.global", "must be true")
        else:
            match = s.get(given[0], str)
            if not match:
                raise error(f"{path}.{given[0]}", "must not be empty")
            if scope is Scope.TAG and ("=" not in match or match.startswith("=")):
                raise error(f"{path}.tag", f"must be NAME=VALUE (or NAME=* for each value), not '{match}'")
        if "limit" not in item:
            raise error(path, "missing required key 'limit' (e.g. limit: 50/month)")
        if isinstance(item["limit"], (int, float)) and not isinstance(item["limit"], bool):
            raise error(f"{path}.limit", f"needs a period: {item['limit']}/day, /week or /month")
        try:
            limit, period = parse_limit(s.get("limit", str))
        except ValueError as e:
            raise error(f"{path}.limit", str(e)) from None
        soft = _fraction(s, "soft", error)
        down = s.get("downgrade_to", str)
        if down is not None and soft is None:
            raise error(f"{path}.downgrade_to", "needs a soft threshold (soft: 80%) to act on")
        if down is not None and names is not None and down not in names:
            raise error(f"{path}.downgrade_to", f"unknown route or model '{down}' (known: {', '.join(sorted(names))})")
        out.append(BudgetRule(scope, match, limit, period, soft, down, where=path))
    return tuple(out)


def _fraction(s: _Section, key: str, error: Error) -> float | None:
    v = s.get(key, (int, float, str))
    if v is None:
        return None
    path = f"{s.path}.{key}"
    if isinstance(v, bool):
        raise error(path, "must be a fraction (0.8) or a percentage (80%)")
    try:
        f = float(v[:-1]) / 100 if isinstance(v, str) and v.endswith("%") else float(v)
    except ValueError:
        raise error(path, f"must be a fraction (0.8) or a percentage (80%), not '{v}'") from None
    if not 0 < f < 1:
        raise error(path, "must be between 0 and 1 (or 0% and 100%), exclusive")
    return f
