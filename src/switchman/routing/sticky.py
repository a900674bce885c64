"""Cache-aware stickiness: a conversation stays on the model that holds its warm prompt cache
while staying there is cheaper than switching.

A provider's prompt cache lives with one model at one provider. Moving a conversation mid-way
re-bills its whole prefix uncached (plus the write premium on Anthropic and GPT-5.6+): weave-os's
production replay found never-switching 89% dearer and a planner that ignores cache economics 131%
dearer than one that prices the switch (``../shared/research/CACHING_AND_ADAPTIVE.md``, A1).

The rule (katanemo/plano's ``switch_cost``, with output priced too): after a model answers, the
conversation's key (the ``x-switchman-episode`` header, else a hash of the caller's key, system
prompt, tools and first message) is remembered with that model, the prompt's size and an expiry
no later than the provider's cache TTL (5 minutes, or 1 hour for a route with ``prompt_ttl: 1h``).
When the policy's plan puts another model first and the anchor is in the plan, compare

- staying: the remembered prefix at the anchor's cached-input rate, the rest of the prompt at its
  input rate, and the expected output at its output rate;
- switching: the whole prompt at the new model's input rate plus the same output at its rate;

and move the anchor to the front when staying is no dearer. Prompts shorter than ``MIN_PREFIX`` are
not keyed at all: no model caches them, so there is nothing to stay for (and no hash on the request path). The plan is only reordered: an anchor
that fails or is ejected is skipped by the executor as any first choice is, so failover still wins.
Only models whose catalog or configured price has a cache discount hold a cache worth keeping.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from decimal import Decimal

from ..config import ModelSpec
from ..types import ChatRequest

_TTL = {"5m": 300.0, "1h": 3600.0}
_OUT = 256  # output tokens assumed when the request sets no max_tokens
MIN_PREFIX = 512  # the shortest prompt any catalog model caches: below it no cache is worth keeping


@dataclass(slots=True)
class _Anchor:
    model: str
    tokens: int  # the prompt the model saw last: the prefix it now holds
    expires: float
    at: float


def conversation(req: ChatRequest, caller: str = "") -> str:
    """The key a conversation's requests share."""
    if req.episode:
        return "ep:" + req.episode
    h = hashlib.sha256(caller.encode())
    for p in req.system:
        h.update(b"\0s" + p.text.encode())
    for t in req.tools or ():
        h.update(b"\0t" + t.name.encode())
    if req.messages:
        for p in req.messages[0].parts:
            h.update(b"\0m" + getattr(p, "text", "").encode())
    return h.hexdigest()[:32]


def caches(m: ModelSpec) -> bool:
    return m.prompt_cache != "off" and m.price.cached_input is not None and m.price.cached_input < m.price.input


class Affinity:
    def __init__(self, clock, max_entries: int = 100_000) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self._d: OrderedDict[str, _Anchor] = OrderedDict()

    def remember(self, key: str, model: ModelSpec, tokens: int, ttl: str = "5m") -> None:
        if not caches(model):
            return
        now = self.clock.now()
        self._d[key] = _Anchor(model.name, tokens, now + _TTL.get(ttl, 300.0), now)
        self._d.move_to_end(key)
        while len(self._d) > self.max_entries:
            self._d.popitem(last=False)

    def prefer(self, key: str, req: ChatRequest, models: list[ModelSpec], reason: str) -> tuple[list[ModelSpec], str]:
        """``models`` with the anchor first when staying is no dearer, and the reason why."""
        a = self._d.get(key)
        if a is None or not models:
            return models, reason
        now = self.clock.now()
        if a.expires <= now:
            del self._d[key]
            return models, reason
        anchor = next((m for m in models if m.name == a.model), None)
        first = models[0]
        if anchor is None or anchor is first:
            return models, reason
        tokens = req.estimated_tokens()
        prefix = min(a.tokens, tokens)
        out = req.max_tokens or _OUT
        p, q = anchor.price, first.price
        stay = (prefix * (p.cached_input if p.cached_input is not None else p.input) + (tokens - prefix) * p.input
                + out * p.output) / Decimal(1_000_000)
        switch = (tokens * q.input + out * q.output) / Decimal(1_000_000)
        age = int(now - a.at)
        if stay <= switch:
            return ([anchor, *(m for m in models if m is not anchor)],
                    f"{reason}; sticky: {anchor.name} holds this conversation's prompt cache (~{prefix} tokens, "
                    f"{age}s old): ${stay:.6f} there against ${switch:.6f} on {first.name}")
        return models, (f"{reason}; left {anchor.name}'s prompt cache: {first.name} costs ${switch:.6f} "
                        f"uncached against ${stay:.6f} there")
