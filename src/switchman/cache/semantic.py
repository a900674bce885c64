"""The semantic cache: an answer served again for a prompt that says the same thing in other words.

Only the last user turn is embedded. Everything else that makes the answer (scope, route, system
prompt, earlier turns, tools, tool choice, sampling parameters) is hashed exactly into the entry's
namespace, so a follow-up like "how old is he?" only meets entries with the same conversation
before it. Turns shorter than ``min_chars`` (or with no text: a tool result) are not looked up.

A lookup is two-stage (see ``embedder``): the static vector finds up to ``K`` neighbours in the
namespace (numpy, or usearch past 20k entries); only if one is above ``PREFILTER`` does MiniLM
embed the prompt and rescore them. Candidates whose words conflict (``guard``: numbers, negation,
opposites) are dropped whatever their similarity. The best remaining one is then:

- a hit, if its similarity reaches the route's learned threshold (``calibration``) and the entry's
  own floor; a ``verify`` share of those (every ``1/verify``-th, counted per route) go upstream as
  well and are compared;
- a near miss, if it is above ``explore``: the request goes upstream (it must anyway) and the fresh
  answer is compared with the kept one, a free observation;
- nothing, otherwise.

Answers themselves stay in the exact cache's store under the original request's key, so their TTL,
size bound, scope and ``DELETE /admin/cache`` apply unchanged; an entry whose answer is gone is
dropped when next met. With the Redis backend, entries and observations are also appended to a
Redis stream that every worker reads before it looks up, so workers and replicas share one cache
and a restarted worker starts with it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

import orjson

from ..types import ChatRequest, ChatResponse, Message, Role, TextPart, ToolCallPart
from . import embedder as emb
from .calibration import Calibrator, load_prior
from .guard import conflict
from .settings import SemanticSettings
from .stores import Warner
from .vectors import Vectors

log = logging.getLogger("switchman.cache")

K = 8  # neighbours rescored
PREFILTER = 0.65  # static cosine below which MiniLM is not run (recall 1.0 of MiniLM >= 0.9 pairs)
STREAM = "{switchman}:semantic"


@dataclass(slots=True)
class Entry:
    id: int
    ns: str
    key: str  # the exact cache's key of the answer
    text: str
    sv: object  # static vector
    mv: object | None  # MiniLM vector (None with embedder: static)
    expires: float
    floor: float = 0.0  # a similarity at which this entry was found wrong


@dataclass(slots=True)
class Probe:
    """One lookup: what was embedded, the best candidate, and what the cache decided."""

    text: str
    ns: str
    route: str
    sv: object
    mv: object | None
    entry: Entry | None = None
    sim: float = 0.0
    threshold: float = 1.01
    decision: str = "none"  # hit | verify | explore | none
    kept: ChatResponse | None = None  # the candidate's answer, to compare a fresh one with
    kept_model: str | None = None
    weight: float = 1.0


def query_text(creq: ChatRequest, s: SemanticSettings) -> str | None:
    """The last turn's text if it is a user's text turn long enough to look up."""
    if not creq.messages:
        return None
    last = creq.messages[-1]
    if last.role is not Role.USER or any(type(p) is not TextPart for p in last.parts):
        return None
    text = _PUNCT.sub("", " ".join(" ".join(p.text for p in last.parts).split()))
    return text if len(text) >= s.min_chars else None


def namespace(creq: ChatRequest, scope: str, key_of) -> str:
    """The exact hash of everything but the last turn's text."""
    head = replace(creq, messages=[*creq.messages[:-1], Message(Role.USER, [])])
    return key_of(head, scope)[:32]


_PUNCT = re.compile(r"[\s?!.]+$")  # "how do I X" and "How do I X?" are one question


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".!? ")


def same_answer(a: ChatResponse, b: ChatResponse) -> bool:
    """The verifier: the final answers agree (text after normalising case and spacing; tool calls
    by name and parsed arguments)."""
    ta = _norm("".join(p.text for p in a.parts if type(p) is TextPart))
    tb = _norm("".join(p.text for p in b.parts if type(p) is TextPart))
    if ta != tb:
        return False

    def calls(r: ChatResponse):
        out = []
        for p in r.parts:
            if type(p) is ToolCallPart:
                try:
                    out.append((p.name, orjson.dumps(orjson.loads(p.arguments or "{}"), option=orjson.OPT_SORT_KEYS)))
                except orjson.JSONDecodeError:
                    out.append((p.name, p.arguments))
        return out

    return calls(a) == calls(b)


JUDGE_SYSTEM = ("You check a response cache. Given a question answered earlier and a new question with "
                "its own answer, say whether the earlier answer would be an equally correct and complete "
                "answer to the new question. Reply with one word: yes or no.")


def _judge_prompt(q1: str, a1: ChatResponse, q2: str, a2: ChatResponse) -> str:
    def text(r: ChatResponse) -> str:
        return (r.text() or orjson.dumps([[c.name, c.arguments] for c in r.tool_calls()]).decode())[:4000]

    return (f"Earlier question:\n{q1[:2000]}\n\nEarlier answer:\n{text(a1)}\n\nNew question:\n{q2[:2000]}\n\n"
            f"New answer:\n{text(a2)}\n\nWould the earlier answer do for the new question? yes or no:")


class SemanticCache:
    def __init__(self, key_of, redis_url: str | None = None, clock=time.time) -> None:
        self.key_of = key_of
        self.clock = clock
        self.entries: OrderedDict[int, Entry] = OrderedDict()
        self.by_key: dict[str, set[int]] = {}  # an answer's key -> the entries pointing at it
        self.spaces: dict[str, Vectors] = {}
        self.calibrators: dict[str, Calibrator] = {}
        self._ids = itertools.count(1)
        self.hits = self.verified = self.wrong = 0
        self.redis = _Shared(redis_url, self) if redis_url else None

    def load(self, kinds: set[str]) -> None:
        """Read the embedders the config uses now (about a second for MiniLM), not on the first
        request: the static table always (it is the prefilter), MiniLM when a route uses it."""
        emb.shared("static")
        if "minilm" in kinds:
            emb.shared("minilm")

    def calibrator(self, route: str, s: SemanticSettings) -> Calibrator:
        c = self.calibrators.get(route)
        if c is None:
            prior = load_prior(s.embedder) if s.prior == "builtin" else None
            c = self.calibrators[route] = Calibrator(s.max_error, prior, confidence=s.confidence)
        return c

    async def find(self, creq: ChatRequest, scope: str, route: str, s: SemanticSettings) -> Probe | None:
        text = query_text(creq, s)
        if text is None:
            return None
        if self.redis is not None:
            await self.redis.sync(s)
        static = emb.shared("static")
        sv = static.embed(text)
        p = Probe(text, namespace(creq, scope, self.key_of), route, sv, None)
        space = self.spaces.get(p.ns)
        if space is None:
            return p
        now = self.clock()
        cands = []
        for i, sim in space.search(sv, K):
            e = self.entries.get(i)
            if e is None or sim < (PREFILTER if s.embedder == "minilm" else s.explore):
                continue
            if e.expires <= now:
                self._drop(e)
                continue
            if conflict(text, e.text) is None:
                cands.append((sim, e))
        if not cands:
            return p
        if s.embedder == "minilm":
            p.mv = await asyncio.to_thread(emb.shared("minilm").embed, text)
            cands = [(float(p.mv @ e.mv.astype("float32")), e) for _, e in cands if e.mv is not None]
        if not cands:
            return p
        p.sim, p.entry = max(cands, key=lambda c: c[0])
        cal = self.calibrator(route, s)
        p.threshold = max(cal.threshold(), p.entry.floor + 1e-6)
        if p.sim >= p.threshold:
            cal.would_hit += 1  # systematic sampling: every (1/verify)-th would-be hit is checked
            if cal.would_hit % max(1, round(1 / s.verify)) == 0:
                p.decision, p.weight = "verify", 1.0 / s.verify
            else:
                p.decision = "hit"
        elif p.sim >= s.explore:
            p.decision = "explore"
        return p

    async def embed_rest(self, p: Probe, s: SemanticSettings) -> None:
        if p.mv is None and s.embedder == "minilm":
            p.mv = await asyncio.to_thread(emb.shared("minilm").embed, p.text)

    async def judge(self, p: Probe, fresh: ChatResponse, s: SemanticSettings, ask=None) -> bool | None:
        """Compare the fresh answer with the candidate's kept one and learn from it. True: they
        agree; None: the judge model could not tell (nothing learned). The same final text agrees
        without asking; otherwise, with ``judge`` set, ``ask(model, system, prompt)`` asks it."""
        assert p.entry is not None and p.kept is not None
        ok = same_answer(fresh, p.kept)
        if not ok and s.judge and ask is not None:
            said = await ask(s.judge, JUDGE_SYSTEM, _judge_prompt(p.entry.text, p.kept, p.text, fresh))
            word = (said or "").strip().lower()
            if not word.startswith(("yes", "no")):
                return None
            ok = word.startswith("yes")
        self.observe(p.route, s, p.sim, not ok, p.weight, p.entry)
        if self.redis is not None:
            self.redis.publish({"t": "obs", "route": p.route, "sim": p.sim, "wrong": not ok, "w": p.weight,
                                "key": p.entry.key})
        return ok

    def observe(self, route: str, s: SemanticSettings, sim: float, wrong: bool, weight: float,
                e: Entry | None) -> None:
        self.calibrator(route, s).observe(sim, wrong, weight)
        self.verified += 1
        if wrong:
            self.wrong += 1
            if e is not None:
                e.floor = max(e.floor, sim)

    def add(self, p: Probe, key: str, ttl: float, s: SemanticSettings, publish: bool = True) -> Entry:
        mv = p.mv.astype("float16") if p.mv is not None else None  # half the memory; 8 dot products a lookup
        e = Entry(next(self._ids), p.ns, key, p.text, p.sv, mv, self.clock() + ttl)
        self.entries[e.id] = e
        self.by_key.setdefault(key, set()).add(e.id)
        space = self.spaces.get(e.ns)
        if space is None:
            space = self.spaces[e.ns] = Vectors(len(e.sv))  # type: ignore[arg-type]
        space.add(e.id, e.sv)
        while len(self.entries) > s.max_entries:
            self._drop(next(iter(self.entries.values())))
        if publish and self.redis is not None:
            self.redis.publish({"t": "add", "ns": e.ns, "key": key, "text": e.text, "exp": e.expires,
                                "sv": _b(e.sv), "mv": _b(e.mv) if e.mv is not None else None})
        return e

    def _drop(self, e: Entry) -> None:
        self.entries.pop(e.id, None)
        ids = self.by_key.get(e.key)
        if ids is not None:
            ids.discard(e.id)
            if not ids:
                del self.by_key[e.key]
        space = self.spaces.get(e.ns)
        if space is not None:
            space.remove(e.id)
            if not len(space):
                del self.spaces[e.ns]

    def with_key(self, key: str) -> list[Entry]:
        """The entries whose answer is kept under ``key``."""
        return [self.entries[i] for i in self.by_key.get(key, ())]

    def forget(self, key: str) -> None:
        """The answer behind ``key`` is gone from the store: drop the entries pointing at it."""
        for e in self.with_key(key):
            self._drop(e)

    def clear(self) -> None:
        self.entries.clear()
        self.by_key.clear()
        self.spaces.clear()

    def stats(self) -> dict:
        return {"entries": len(self.entries), "hits": self.hits, "verified": self.verified, "wrong": self.wrong,
                "thresholds": {r: round(c.threshold(), 4) for r, c in self.calibrators.items()}}

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.close()


def _b(v) -> bytes:
    return v.astype("float16").tobytes()


class _Shared:
    """Entries and observations on a Redis stream, read by every worker before it looks up."""

    def __init__(self, url: str, cache: SemanticCache) -> None:
        import redis.asyncio as aioredis

        self.r = aioredis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self.cache = cache
        self.last = "0"
        self.mine: set[str] = set()
        self._tasks: set[asyncio.Task] = set()
        self._warn = Warner(log)

    def publish(self, d: dict) -> None:
        async def go() -> None:
            try:
                sid = await self.r.xadd(STREAM, {"d": orjson.dumps({k: v for k, v in d.items() if k not in ("sv", "mv")}),
                                                 "sv": d.get("sv") or b"", "mv": d.get("mv") or b""},
                                        maxlen=200_000, approximate=True)
                self.mine.add(sid.decode() if isinstance(sid, bytes) else sid)
            except Exception as e:  # noqa: BLE001 - a cache that fails is a miss
                self._warn(f"semantic cache: publishing to Redis failed: {type(e).__name__}: {e}")

        t = asyncio.get_running_loop().create_task(go())
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def sync(self, s: SemanticSettings) -> None:
        import numpy as np

        try:
            got = await self.r.xread({STREAM: self.last}, count=10_000)
        except Exception as e:  # noqa: BLE001
            self._warn(f"semantic cache: reading Redis failed, using this worker's entries: {type(e).__name__}: {e}")
            return
        for _, items in got or ():
            for sid, f in items:
                sid = sid.decode() if isinstance(sid, bytes) else sid
                self.last = sid
                if sid in self.mine:
                    self.mine.discard(sid)
                    continue
                d = orjson.loads(f[b"d"])
                if d["t"] == "add":
                    mv = np.frombuffer(f[b"mv"], np.float16).astype(np.float32) if f[b"mv"] else None
                    p = Probe(d["text"], d["ns"], "", np.frombuffer(f[b"sv"], np.float16).astype(np.float32), mv)
                    ttl = d["exp"] - self.cache.clock()
                    if ttl > 0:
                        self.cache.add(p, d["key"], ttl, s, publish=False)
                elif d["t"] == "obs":
                    e = next(iter(self.cache.with_key(d["key"])), None)
                    self.cache.observe(d["route"], s, d["sim"], d["wrong"], d["w"], e)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.r.aclose()
