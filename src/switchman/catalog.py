"""The built-in model catalog: list prices, context windows and output caps of well-known models.

The data is ``catalog.json`` beside this module (package data). Each entry gives USD per 1M tokens
for ``input``, ``output``, ``cached_input`` (cache read), ``cache_write`` (the 5-minute write) and,
where the vendor sells one, ``cache_write_1h``; plus ``context_window``, ``max_output``, ``vision``,
the ``vendor`` that made the model and, for third-party hosts, the ``host`` that serves it. Every
entry names the ``source`` of its figures; the file's ``as_of`` dates the whole table.

Prices are kept as JSON strings and turned into ``Decimal`` with ``Decimal(str(x))``, so no binary
float ever touches money.

``lookup`` is what the config loader asks when a model has no explicit ``price``. It resolves, in
order, until something matches:

* the id itself, case-insensitively, against every entry's ``id`` and ``aliases`` (a host's own id,
  such as Together's ``meta-llama/Llama-3.3-70B-Instruct-Turbo``, is an id or alias like any other);
* the id without its leading ``vendor/`` or ``host/`` segment (``openai/gpt-4o``,
  ``models/gemini-2.5-flash``, ``groq/llama-3.3-70b-versatile``);
* the id without an Ollama tag (``llama3.1:8b`` -> ``llama3.1``);
* the id without a snapshot suffix: ``-YYYY-MM-DD`` (OpenAI), ``-YYYYMMDD`` (Anthropic), ``-NNN``
  (Gemini's ``-001``) or ``-latest``.

An exact entry always wins over a stripped one, so a snapshot that is priced apart (the first
``gpt-4o-2024-05-13``) keeps its own price. Anything else is unknown: ``None``.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from types import MappingProxyType

import orjson

from .config import Price

__all__ = ["CatalogEntry", "LongContext", "as_of", "entries", "lookup"]

_DATA_FILE = "catalog.json"

# Snapshot suffixes that name a dated or floating version of a model whose price is the base id's.
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{3}|latest)$")

_TOP_KEYS = frozenset({"as_of", "currency", "unit", "about", "models"})
_ENTRY_KEYS = frozenset(
    {
        "id", "vendor", "host", "input", "output", "cached_input", "cache_write", "cache_write_1h",
        "min_cache_tokens", "context_window", "max_output", "vision", "aliases", "long_context", "source", "note",
        "mode", "api",
    }
)
_TIER_KEYS = frozenset({"above", "input", "output", "cached_input", "cache_write", "cache_write_1h"})


@dataclass(frozen=True, slots=True)
class LongContext:
    """Rates that replace the base ones for a whole request whose prompt exceeds ``above`` tokens
    (Gemini Pro above 200K, GPT-6 above 272K, Claude Haiku 5.5 above 100K). Not applied yet."""

    above: int
    price: Price


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One model as the catalog knows it. Money is USD per 1M tokens, in ``Decimal``."""

    id: str  # canonical id, e.g. "gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash"
    vendor: str  # who made the model: openai | anthropic | google | mistral | deepseek | meta | qwen
    price: Price
    context_window: int | None
    max_output: int | None
    vision: bool
    host: str | None = None  # third-party server (groq, together, fireworks, ollama); None = vendor's own API
    aliases: tuple[str, ...] = ()
    long_context: LongContext | None = None
    source: str = ""  # where the figures came from
    min_cache_tokens: int | None = None  # the shortest prefix the vendor's prompt cache takes
    mode: str = "chat"  # chat | embedding: what the model does (an embedding model makes no chat answers)
    api: str = "chat"  # chat | responses: OpenAI models served only by the Responses API say so


@dataclass(frozen=True, slots=True)
class _Catalog:
    as_of: str
    entries: tuple[CatalogEntry, ...]
    index: Mapping[str, CatalogEntry]  # lower-cased id or alias -> entry


def lookup(model_id: str) -> CatalogEntry | None:
    """The catalog entry for ``model_id`` (an upstream model id in any common spelling), or ``None``."""
    index = _catalog().index
    todo = deque((model_id.strip().lower(),))
    seen: set[str] = set()
    while todo:
        key = todo.popleft()
        if not key or key in seen:
            continue
        seen.add(key)
        hit = index.get(key)
        if hit is not None:
            return hit
        if "/" in key:
            todo.append(key.split("/", 1)[1])
        if ":" in key:
            todo.append(key.split(":", 1)[0])
        bare = _SNAPSHOT.sub("", key)
        if bare != key:
            todo.append(bare)
    return None


def entries() -> list[CatalogEntry]:
    """Every catalog entry, in file order (vendor by vendor, newest first)."""
    return list(_catalog().entries)


def as_of() -> str:
    """The date (``YYYY-MM-DD``) the catalog's prices were last checked."""
    return _catalog().as_of


@cache
def _catalog() -> _Catalog:
    return _parse(resources.files(__package__).joinpath(_DATA_FILE).read_bytes())


def _parse(data: bytes) -> _Catalog:
    """Parse the catalog JSON strictly: unknown keys, bad money and duplicate names are errors,
    so a typo in the data file fails the test suite rather than mispricing a model."""
    raw = orjson.loads(data)
    _no_unknown_keys(raw, _TOP_KEYS, "catalog")
    built = tuple(_entry(item) for item in raw["models"])
    index: dict[str, CatalogEntry] = {}
    for entry in built:
        for name in (entry.id, *entry.aliases):
            key = name.lower()
            if key in index:
                raise ValueError(f"catalog: {name!r} names both {index[key].id!r} and {entry.id!r}")
            index[key] = entry
    return _Catalog(as_of=str(raw["as_of"]), entries=built, index=MappingProxyType(index))


def _entry(item: dict) -> CatalogEntry:
    model_id = item.get("id")
    if not isinstance(model_id, str) or not model_id:
        raise ValueError(f"catalog: entry without an id: {item!r}")
    where = f"catalog entry {model_id!r}"
    _no_unknown_keys(item, _ENTRY_KEYS, where)
    tier = item.get("long_context")
    return CatalogEntry(
        id=model_id,
        vendor=_required_str(item, "vendor", where),
        price=_price(item, where),
        context_window=_optional_int(item.get("context_window"), f"{where}: context_window"),
        max_output=_optional_int(item.get("max_output"), f"{where}: max_output"),
        vision=bool(item.get("vision", False)),
        host=item.get("host"),
        aliases=tuple(item.get("aliases", ())),
        long_context=None if tier is None else _long_context(tier, f"{where}: long_context"),
        source=_required_str(item, "source", where),
        min_cache_tokens=_optional_int(item.get("min_cache_tokens"), f"{where}: min_cache_tokens"),
        mode=_mode(item.get("mode", "chat"), where),
        api=_api(item.get("api", "chat"), where),
    )


def _api(v: object, where: str) -> str:
    if v not in ("chat", "responses"):
        raise ValueError(f"{where}: api must be chat or responses, not {v!r}")
    return v  # type: ignore[return-value]


def _mode(v: object, where: str) -> str:
    if v not in ("chat", "embedding"):
        raise ValueError(f"{where}: mode must be chat or embedding, not {v!r}")
    return v  # type: ignore[return-value]


@cache
def mode_of(model_id: str) -> str | None:
    """``chat`` or ``embedding`` for a model the catalog knows; None for one it does not (an
    OpenAI-compatible server may host either)."""
    e = lookup(model_id)
    return e.mode if e is not None else None


def _long_context(tier: dict, where: str) -> LongContext:
    _no_unknown_keys(tier, _TIER_KEYS, where)
    above = _optional_int(tier.get("above"), f"{where}: above")
    if above is None:
        raise ValueError(f"{where}: 'above' is required")
    return LongContext(above=above, price=_price(tier, where))


def _price(item: dict, where: str) -> Price:
    inp = _money(item.get("input"), f"{where}: input")
    out = _money(item.get("output"), f"{where}: output")
    if inp is None or out is None:
        raise ValueError(f"{where}: 'input' and 'output' prices are required")
    return Price(
        input=inp,
        output=out,
        cached_input=_money(item.get("cached_input"), f"{where}: cached_input"),
        cache_write=_money(item.get("cache_write"), f"{where}: cache_write"),
        cache_write_1h=_money(item.get("cache_write_1h"), f"{where}: cache_write_1h"),
    )


def _money(value: object, where: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{where}: expected a price, got {value!r}")
    try:
        amount = Decimal(str(value))  # str() first: Decimal(0.1) would carry the float's error
    except InvalidOperation:
        raise ValueError(f"{where}: expected a price, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{where}: expected a price, got {value!r}")
    return amount


def _optional_int(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{where}: expected a positive integer, got {value!r}")
    return value


def _required_str(item: dict, key: str, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{where}: {key!r} is required")
    return value


def _no_unknown_keys(item: object, allowed: frozenset[str], where: str) -> None:
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object, got {item!r}")
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}")
