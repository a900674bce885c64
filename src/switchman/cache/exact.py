"""The exact response cache: an answer kept under the canonical request that produced it.

The key is the request after decoding, so an OpenAI-dialect and an Anthropic-dialect request for
the same thing share an entry: the route or model asked for, system, messages (text, images, tool
calls and results, without the dialects' own ids and cache markers), tools, tool choice, sampling
parameters, response format, stop and max tokens; and the scope (``key``, ``user``, ``team`` or
``global``), so one tenant's answer is never served to another. The stream flag, request ids and
client headers are not part of it: a streaming client is served a kept answer as a stream.

Only complete, successful answers are kept: not errors, a route's degraded reply, a cut stream,
an answer stopped by a content filter, nor a cascade's rejected answers (those never reach the
client). With ``when: deterministic`` (the default) a request with a temperature above 0 is not
cached. ``x-switchman-cache: no-store | no-cache | only-if-cached`` mean what HTTP's Cache-Control
does. Identical misses in flight at once wait (up to ``wait`` seconds) for the first one's answer
instead of each calling the upstream (single flight, per process).

A backend that fails (Redis down, an entry that does not decode) is a miss and a log line, never
a failed request.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, fields
from decimal import Decimal

import orjson

from ..types import ChatRequest, ChatResponse, FinishReason, TextPart, ToolCallPart, Usage
from .semantic import Probe, SemanticCache
from .settings import CacheSettings, SemanticSettings
from .stores import CacheStore, Warner, open_cache_store

log = logging.getLogger("switchman.cache")

_SKIP = frozenset(("raw", "cache_control", "id", "tool_call_id"))  # not what makes the answer


_FIELDS: dict[type, tuple[str, ...]] = {}


def _plain(v):
    """A request part as plain data for the key (dialect-specific ids and markers left out)."""
    t = type(v)
    if t is str or t is int or t is float or t is bool or v is None or t is dict:
        return v
    if t is list:
        return [_plain(x) for x in v]
    names = _FIELDS.get(t)
    if names is None and hasattr(v, "__dataclass_fields__"):
        names = _FIELDS[t] = tuple(f.name for f in fields(v) if f.name not in _SKIP)
    if names is not None:
        return [_plain(getattr(v, n)) for n in names]
    return getattr(v, "value", v)  # an enum


def request_key(creq: ChatRequest, scope: str) -> str:
    doc = [scope, creq.model, _plain(creq.system), _plain(creq.messages), _plain(creq.tools),
           _plain(creq.tool_choice), creq.max_tokens, creq.temperature, creq.top_p, creq.stop,
           creq.response_format]
    return hashlib.sha256(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest()


def encode_answer(resp: ChatResponse, model: str, scope: str = "", route: str = "") -> bytes:
    u = resp.usage or Usage()
    return orjson.dumps({
        "model": model, "scope": scope, "route": route, "id": resp.id, "upstream_model": resp.model, "created": resp.created,
        "parts": [{"text": p.text} if type(p) is TextPart else {"call": [p.id, p.name, p.arguments]} for p in resp.parts],
        "finish": resp.finish_reason.value if resp.finish_reason else None, "stop": resp.stop_sequence,
        "usage": [u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens],
        "at": time.time(),
    })


def decode_answer(b: bytes) -> tuple[ChatResponse, str]:
    d = orjson.loads(b)
    parts = [TextPart(p["text"]) if "text" in p else ToolCallPart(*p["call"]) for p in d["parts"]]
    i, o, cr, cw, cw1 = d["usage"]
    resp = ChatResponse(id=d["id"], model=d["upstream_model"], parts=parts,
                        finish_reason=FinishReason(d["finish"]) if d["finish"] else None,
                        usage=Usage(i, o, cr, cw, cw1), stop_sequence=d["stop"], created=d["created"])
    return resp, d["model"]


@dataclass(slots=True)
class Lookup:
    """What the cache says of one request: ``state`` is hit, miss or bypass (not cacheable, or
    ``no-cache``); ``key`` is set when the answer may be stored afterwards."""

    state: str
    key: str | None = None
    scope: str = ""
    route: str = ""
    response: ChatResponse | None = None
    model: str | None = None
    leader: asyncio.Future | None = None  # this request's answer, awaited by identical misses
    probe: Probe | None = None  # the semantic lookup (a semantic hit, or a candidate to compare with)
    semantic: SemanticSettings | None = None

    @property
    def kind(self) -> str:
        """What the client is told in ``x-switchman-cache``."""
        if self.state == "hit" and self.probe is not None:
            return "semantic-hit"
        return self.state


class ExactCache:
    def __init__(self, settings: CacheSettings, store: CacheStore | None = None, semantic: set[str] | bool = False) -> None:
        self.settings = settings
        self.store = store or open_cache_store(settings)
        self._flights: dict[str, asyncio.Future] = {}
        self._writes: set[asyncio.Task] = set()
        self.hits = self.misses = self.stored = 0
        self.saved = Decimal(0)
        self._warn = Warner(log)
        self.semantic: SemanticCache | None = None
        self.ask = None  # ask(model, system, prompt) -> text: a judge model's verdict (set by metering)
        if semantic:
            self.semantic = SemanticCache(request_key, settings.url if settings.backend == "redis" else None)
            self.semantic.load({"minilm"} if semantic is True else semantic)

    def cacheable(self, creq: ChatRequest, s: CacheSettings) -> bool:
        if not s.enabled or creq.logprobs:
            return False
        return s.when == "always" or not creq.temperature

    async def lookup(self, creq: ChatRequest, s: CacheSettings, scope: str, control: str | None) -> Lookup:
        if not self.cacheable(creq, s):
            return Lookup("bypass")
        key = request_key(creq, scope)
        store_ok = control != "no-store"
        if control != "no-cache":
            got = await self._get(key)
            if got is None and key in self._flights:  # the same request is on its way upstream
                try:
                    got = await asyncio.wait_for(asyncio.shield(self._flights[key]), s.wait)
                except (asyncio.TimeoutError, TimeoutError, asyncio.CancelledError):
                    got = None
            if got is not None:
                self.hits += 1
                return Lookup("hit", response=got[0], model=got[1])
        probe = None
        if s.semantic is not None and self.semantic is not None:
            probe = await self._semantic(creq, scope, s.semantic, control)
            if probe is not None and probe.decision == "hit":
                self.hits += 1
                self.semantic.hits += 1
                return Lookup("hit", response=probe.kept, model=probe.kept_model, probe=probe, semantic=s.semantic)
        self.misses += 1
        if not store_ok:
            return Lookup("miss")
        leader = None
        if key not in self._flights:
            leader = self._flights[key] = asyncio.get_running_loop().create_future()
        return Lookup("miss", key, scope, creq.model, leader=leader, probe=probe, semantic=s.semantic)

    async def _semantic(self, creq: ChatRequest, scope: str, s: SemanticSettings, control: str | None) -> Probe | None:
        """The semantic stage after an exact miss; any failure in it is a plain miss."""
        try:
            p = await self.semantic.find(creq, scope, creq.model, s)  # type: ignore[union-attr]
            if p is None or p.entry is None or p.decision == "none":
                return p
            got = await self._get(p.entry.key)
            if got is None:  # the answer expired or was cleared: the entry goes too
                self.semantic.forget(p.entry.key)  # type: ignore[union-attr]
                p.entry, p.decision = None, "none"
                return p
            p.kept, p.kept_model = got
            if control == "no-cache" and p.decision == "hit":
                p.decision = "verify"
            return p
        except Exception as e:  # noqa: BLE001 - a cache that fails is a miss
            self._warn(f"semantic cache lookup failed, treated as a miss: {type(e).__name__}: {e}")
            return None

    async def _get(self, key: str) -> tuple[ChatResponse, str] | None:
        try:
            b = await self.store.get(key)
            return decode_answer(b) if b is not None else None
        except Exception as e:  # noqa: BLE001 - a cache that fails is a miss
            self._warn(f"cache read failed, treated as a miss: {type(e).__name__}: {e}")
            return None

    def done(self, lk: Lookup, resp: ChatResponse | None, model: str | None, ttl: float) -> None:
        """The miss ``lk`` ended: keep ``resp`` (a complete answer) or nothing, and wake the
        identical requests that waited for it."""
        ok = resp is not None and resp.finish_reason is not FinishReason.CONTENT_FILTER
        if lk.leader is not None:
            if self._flights.get(lk.key) is lk.leader:  # type: ignore[arg-type]
                del self._flights[lk.key]  # type: ignore[arg-type]
            if not lk.leader.done():
                lk.leader.set_result((resp, model) if ok else None)
        if ok and lk.key is not None:
            value = encode_answer(resp, model or "", lk.scope, lk.route)
            self._spawn(self._put(lk.key, value, ttl))
            if lk.probe is not None and lk.semantic is not None:
                self._spawn(self._learn(lk, resp, ttl))  # type: ignore[arg-type]

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _learn(self, lk: Lookup, resp: ChatResponse, ttl: float) -> None:
        """After a semantic miss: compare with the candidate (if any), and index this prompt."""
        p, s, sem = lk.probe, lk.semantic, self.semantic
        try:
            same = p.kept is not None and p.entry is not None and await sem.judge(p, resp, s, self.ask)  # type: ignore[union-attr]
            if not same:  # a prompt that a kept entry already answers right needs no entry of its own
                await sem.embed_rest(p, s)  # type: ignore[union-attr,arg-type]
                sem.add(p, lk.key, ttl, s)  # type: ignore[union-attr,arg-type]
        except Exception as e:  # noqa: BLE001
            self._warn(f"semantic cache: indexing failed: {type(e).__name__}: {e}")

    async def _put(self, key: str, value: bytes, ttl: float) -> None:
        try:
            await self.store.put(key, value, ttl)
            self.stored += 1
        except Exception as e:  # noqa: BLE001
            self._warn(f"cache write failed: {type(e).__name__}: {e}")

    async def stats(self) -> dict:
        out = {"backend": self.settings.backend, "hits": self.hits, "misses": self.misses, "stored": self.stored,
               "hit_rate": self.hits / (self.hits + self.misses) if self.hits + self.misses else None,
               "saved_usd": f"{self.saved:f}", "in_flight": len(self._flights)}
        if self.semantic is not None:
            out["semantic"] = self.semantic.stats()
        try:
            out.update(await self.store.size())
        except Exception as e:  # noqa: BLE001
            out["error"] = f"{type(e).__name__}: {e}"
        return out

    async def clear(self, match: dict | None = None) -> int:
        n = await self.store.clear(match)
        if self.semantic is not None and not match:
            self.semantic.clear()  # with a match, entries whose answers went are dropped when met
        return n

    async def close(self) -> None:
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self.store.close()
        if self.semantic is not None:
            await self.semantic.close()
