"""The vendors' prompt-caching rules, simulated for the fake upstream (``FakeModel.prompt_caching``).

A benchmark can then measure what asking for prompt caching saves (the gateway's automatic
``cache_control`` and ``prompt_cache_key``) against traffic that does not ask. Tokens are the fake's
own rule, ``ceil(chars / 4)`` of the text of the system prompt and messages, so a prefix's tokens
are ``ceil(chars / 4)`` of the text up to its end; tool definitions, tool calls and images shape a
prefix's identity but count no tokens. Each wire keeps its own state per model id; time comes from
the fake's clock, so tests can expire entries without sleeping.

- Anthropic (https://docs.claude.com/en/docs/build-with-claude/prompt-caching): only breakpoints
  cache. A breakpoint is a block's ``cache_control`` (tools, then system, then message blocks), or
  the top-level ``cache_control`` (automatic mode: the last block of the last message). At most 4
  per request. A prefix is everything up to and including a breakpoint's block, told apart by a
  hash of its canonical JSON (``cache_control`` itself left out, as moving a breakpoint does not
  change the prefix). The read is the longest stored prefix ending at a breakpoint or in the 20
  blocks before one (the documented look-back that lets a conversation's new breakpoint find the
  previous turn's); the write is the last breakpoint's prefix less the read, when that prefix has
  ``min_cache_tokens``; every breakpoint prefix that long is then stored. Entries live 5 minutes
  (``ttl: "1h"``: an hour) from their last use.
- OpenAI (https://platform.openai.com/docs/guides/prompt-caching): automatic from 1,024 tokens,
  in 128-token steps, on one of ``machines`` cache machines chosen by ``prompt_cache_key`` and the
  prompt's first 256 tokens; entries live 10 minutes idle (``prompt_cache_retention: "24h"``: a day).
  No write is reported.
- Gemini implicit caching (https://ai.google.dev/gemini-api/docs/caching): as OpenAI's, on one
  machine, from ``min_cache_tokens`` in 128-token steps, 5 minutes idle.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from .wires import BadRequest, _text_of

MAX_BREAKPOINTS = 4
LOOKBACK = 20  # blocks before a breakpoint where Anthropic still finds an earlier cached prefix
OPENAI_MIN = 1024
STEP = 128  # OpenAI and Gemini cache in steps of this many tokens past the minimum
ROUTE_CHARS = 1024  # the first 256 tokens, which (with the key) pick an OpenAI cache machine

_TTL_5M = 300.0
_TTL_1H = 3600.0
_OPENAI_IDLE = 600.0
_OPENAI_24H = 86400.0
_GEMINI_IDLE = 300.0
_PURGE_AT = 10_000  # entries in one store before the expired ones are swept out
_SORTED = orjson.OPT_SORT_KEYS


@dataclass(slots=True)
class CacheUse:
    """What one request read from and wrote to the prompt cache, in tokens."""

    read: int = 0
    write: int = 0
    write_1h: int = 0  # of ``write``, the part written for an hour


@dataclass(slots=True)
class _Entry:
    expires: float
    ttl: float


def _tokens(chars: int) -> int:
    return (chars + 3) // 4


def machine(key: str | None, text: str, machines: int) -> int:
    """The OpenAI cache machine a prompt goes to: a stable hash of ``prompt_cache_key`` (when
    sent) and the prompt's first 256 tokens (``ROUTE_CHARS`` characters of its text)."""
    basis = (b"\1" + key.encode() if key is not None else b"\0") + b"\0" + text[:ROUTE_CHARS].encode()
    return int.from_bytes(hashlib.sha256(basis).digest()[:8], "big") % max(1, machines)


def _ttl(cc: dict) -> float:
    return _TTL_1H if cc.get("ttl") == "1h" else _TTL_5M


def _mark(b) -> dict | None:
    """A block's breakpoint, when it has one (``{"type": "ephemeral"[, "ttl": ...]}``)."""
    cc = b.get("cache_control") if type(b) is dict else None
    return cc if type(cc) is dict and cc.get("type") == "ephemeral" else None


def _bare(b) -> object:
    if type(b) is dict and "cache_control" in b:
        return {k: v for k, v in b.items() if k != "cache_control"}
    return b


@dataclass(slots=True)
class _Block:
    """One Anthropic block in prefix order, with what its prefix holds."""

    digest: bytes  # of the canonical JSON of everything up to and including this block
    tokens: int  # of the text up to and including this block
    mark: dict | None  # its own breakpoint


def _anthropic_items(d: dict) -> Iterable[tuple[list, int, dict | None]]:
    """(canonical form, characters of text, breakpoint) per block: tools, system, messages."""
    for t in d.get("tools") or ():
        yield ["tool", _bare(t)], 0, _mark(t)
    system = d.get("system")
    if type(system) is str:
        yield ["system", {"type": "text", "text": system}], len(system), None
    elif type(system) is list:
        for b in system:
            yield ["system", _bare(b)], len(_text_of([b])), _mark(b)
    for i, m in enumerate(d.get("messages") or ()):
        if type(m) is not dict:
            continue
        content = m.get("content")
        if type(content) is str:  # the same prompt as one text block
            yield ["message", i, m.get("role"), {"type": "text", "text": content}], len(content), None
        elif type(content) is list:
            for b in content:
                yield ["message", i, m.get("role"), _bare(b)], len(_text_of([b])), _mark(b)


def _anthropic_blocks(d: dict) -> list[_Block]:
    h = hashlib.sha256()
    chars = 0
    out = []
    for form, n, mark in _anthropic_items(d):
        entry = orjson.dumps(form, option=_SORTED)
        h.update(len(entry).to_bytes(8, "big") + entry)
        chars += n
        out.append(_Block(h.copy().digest(), _tokens(chars), mark))
    return out


def _breakpoints(d: dict, blocks: list[_Block]) -> dict[int, float]:
    """Block index -> TTL of each breakpoint; 400 beyond ``MAX_BREAKPOINTS``."""
    points = {i: _ttl(b.mark) for i, b in enumerate(blocks) if b.mark is not None}
    found = len(points)
    top = d.get("cache_control")
    if type(top) is dict and top.get("type") == "ephemeral" and blocks and type(d.get("messages")) is list:
        last = len(blocks) - 1  # the last block of the last message (messages come last)
        if last not in points:
            points[last] = _ttl(top)
            found += 1
    if found > MAX_BREAKPOINTS:
        raise BadRequest(f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {found}.")
    return points


def _segments(parts: Iterable[tuple[object, str]]) -> list[tuple[bytes, str]]:
    return [(orjson.dumps(meta, option=_SORTED), text) for meta, text in parts]


def _openai_parts(d: dict) -> Iterable[tuple[object, str]]:
    """(structure, text) per message: the text is what the fake counts, the rest (role, tool calls,
    images) only tells prefixes apart."""
    for m in d.get("messages") or ():
        if type(m) is not dict:
            continue
        content = m.get("content")
        blocks = content if type(content) is list else ()
        rest = [b for b in blocks if not (type(b) is dict and b.get("type") == "text")]
        yield [{k: v for k, v in m.items() if k != "content"}, rest], _text_of(content)


def _gemini_parts(d: dict) -> Iterable[tuple[object, str]]:
    si = d.get("systemInstruction") or d.get("system_instruction")
    if type(si) is dict:
        parts = [p for p in si.get("parts") or () if type(p) is dict]
        yield ["system", [p for p in parts if "text" not in p]], "".join(p.get("text") or "" for p in parts)
    for c in d.get("contents") or ():
        if type(c) is not dict:
            continue
        parts = [p for p in c.get("parts") or () if type(p) is dict]
        text = "".join(p["text"] for p in parts if type(p.get("text")) is str)
        yield [c.get("role", "user"), [p for p in parts if type(p.get("text")) is not str]], text


def _prefix_digests(header: bytes, segments: list[tuple[bytes, str]], bounds: list[int]) -> list[bytes]:
    """The digest of the prompt's first ``c`` characters of text, with the structure before them,
    for each ``c`` of ``bounds`` (ascending)."""
    h = hashlib.sha256(header)
    out: list[bytes] = []
    i = pos = 0
    for meta, text in segments:
        h.update(b"\0" + len(meta).to_bytes(8, "big") + meta)
        end = pos + len(text)
        fed = pos
        while i < len(bounds) and bounds[i] <= end:
            h.update(text[fed - pos:bounds[i] - pos].encode())
            fed = bounds[i]
            out.append(h.copy().digest())
            i += 1
        h.update(text[fed - pos:].encode())
        pos = end
    return out


class PromptCaches:
    """Every model's prompt-cache state for one fake upstream, on its clock."""

    def __init__(self, clock: Callable[[], float], machines: int = 4) -> None:
        self.clock = clock
        self.machines = max(1, machines)
        self._stores: dict[tuple[str, str, int], dict[bytes, _Entry]] = {}

    def clear(self) -> None:
        self._stores.clear()

    def use(self, wire: str, model: str, d: dict, min_tokens: int) -> CacheUse:
        """Apply ``wire``'s rules to request ``d`` for ``model``: what it reads and writes, with the
        cache updated. Raises ``BadRequest`` for more Anthropic breakpoints than allowed."""
        if wire == "anthropic":
            return self._anthropic(model, d, min_tokens)
        if wire in ("openai", "azure"):
            segs = _segments(_openai_parts(d))
            key = d.get("prompt_cache_key")
            key = key if type(key) is str else None
            at = machine(key, "".join(t for _, t in segs)[:ROUTE_CHARS], self.machines)
            ttl = _OPENAI_24H if d.get("prompt_cache_retention") == "24h" else _OPENAI_IDLE
            return self._implicit(("openai", model, at), d.get("tools"), segs, OPENAI_MIN, ttl)
        if wire == "gemini":
            segs = _segments(_gemini_parts(d))
            return self._implicit(("gemini", model, 0), [d.get("tools"), d.get("toolConfig")], segs,
                                  max(1, min_tokens), _GEMINI_IDLE)
        return CacheUse()

    def _store(self, where: tuple[str, str, int]) -> dict[bytes, _Entry]:
        s = self._stores.get(where)
        if s is None:
            s = self._stores[where] = {}
        elif len(s) >= _PURGE_AT:
            now = self.clock()
            for k in [k for k, e in s.items() if e.expires <= now]:
                del s[k]
        return s

    def _hit(self, store: dict[bytes, _Entry], digest: bytes, now: float) -> bool:
        """Whether ``digest`` is cached and alive; a hit keeps it alive for its TTL again."""
        e = store.get(digest)
        if e is None or e.expires <= now:
            return False
        e.expires = now + e.ttl
        return True

    @staticmethod
    def _put(store: dict[bytes, _Entry], digest: bytes, now: float, ttl: float) -> None:
        e = store.get(digest)
        if e is None:
            store[digest] = _Entry(now + ttl, ttl)
        else:
            e.ttl = max(e.ttl, ttl) if e.expires > now else ttl
            e.expires = max(e.expires, now + ttl)

    def _anthropic(self, model: str, d: dict, min_tokens: int) -> CacheUse:
        blocks = _anthropic_blocks(d)
        points = _breakpoints(d, blocks)
        if not points:
            return CacheUse()
        store = self._store(("anthropic", model, 0))
        now = self.clock()
        candidates = sorted({j for i in points for j in range(max(0, i - LOOKBACK), i + 1)}, reverse=True)
        read = 0
        for j in candidates:  # the longest live prefix wins, and only it is refreshed
            if blocks[j].tokens >= min_tokens and self._hit(store, blocks[j].digest, now):
                read = blocks[j].tokens
                break
        use = CacheUse(read=read)
        prev = read
        for i in sorted(points):
            b = blocks[i]
            if b.tokens < min_tokens:
                continue  # too short to cache: silently not cached
            if b.tokens > prev:  # the new tokens up to this breakpoint, written for its TTL
                use.write += b.tokens - prev
                if points[i] == _TTL_1H:
                    use.write_1h += b.tokens - prev
                prev = b.tokens
            self._put(store, b.digest, now, points[i])
        return use

    def _implicit(self, where: tuple[str, str, int], header: object, segs: list[tuple[bytes, str]],
                  first: int, ttl: float) -> CacheUse:
        chars = sum(len(t) for _, t in segs)
        tokens = _tokens(chars)
        if tokens < first:
            return CacheUse()
        steps = list(range(first, tokens + 1, STEP))
        digests = _prefix_digests(orjson.dumps(header, option=_SORTED), segs, [min(4 * s, chars) for s in steps])
        store = self._store(where)
        now = self.clock()
        read = 0
        for s, dg in zip(reversed(steps), reversed(digests)):
            if self._hit(store, dg, now):
                read = s
                break
        for dg in digests:
            self._put(store, dg, now, ttl)
        return CacheUse(read=read)
