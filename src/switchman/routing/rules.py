"""The ``rules`` policy: ordered rules over what a request plainly shows, first match wins, no
model call. A rule sends to a model, or to another route (whose policy then plans, and whose
reason is appended), so rules can front a learned router or a cascade: the hybrid practitioners
recommend is ``rules`` with ``default: {route: <learned or cascade route>}``.

Conditions (all of a rule's must hold):

- ``tags: {team: search}``: the request's ``x-switchman-tags`` and its virtual key's tags, the
  key's winning (a list value: any of them);
- ``user: alice`` (or a list): the key's user, else ``x-switchman-user`` or the body's ``user``;
- ``tokens_over`` / ``tokens_under``: the prompt's estimated tokens (about 4 characters each);
- ``tools`` / ``images`` / ``json``: tools offered, images present, JSON output asked for;
- ``keywords: [refund, invoice]``: any of them as a whole word, any case, anywhere in the prompt;
- ``regex``: a Python regular expression searched in the prompt (system prompt and messages).
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import RuleSpec
from ..types import ChatRequest
from .base import Plan, Policy, RouteContext, prompt_text


def matches(rule: RuleSpec, req: ChatRequest, text: Callable[[], str]) -> bool:
    for cond, want in rule.when:
        if cond == "tags":
            tags = req.tags or {}
            if not all(tags.get(k) in vals for k, vals in want):  # type: ignore[union-attr]
                return False
        elif cond == "user":
            if (req.end_user or req.user) not in want:  # type: ignore[operator]
                return False
        elif cond == "tokens_over":
            if not req.estimated_tokens() > want:  # type: ignore[operator]
                return False
        elif cond == "tokens_under":
            if not req.estimated_tokens() < want:  # type: ignore[operator]
                return False
        elif cond == "tools":
            if bool(req.tools) != want:
                return False
        elif cond == "images":
            if req.has_images() != want:
                return False
        elif cond == "json":
            if (req.response_format is not None and req.response_format.get("type") != "text") != want:
                return False
        elif cond in ("keywords", "regex"):
            if want.search(text()) is None:  # type: ignore[union-attr]
                return False
    return True


class Rules(Policy):
    """``route``: how a rule's ``route:`` target is planned (the gateway passes its routes')."""

    def __init__(self, rules: tuple[RuleSpec, ...], default: RuleSpec,
                 route: Callable[[str, ChatRequest], tuple[Plan, tuple[str, ...]]]) -> None:
        self.rules = rules
        self.default = default
        self.route = route

    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan:
        cache: list[str] = []

        def text() -> str:  # the prompt's text, built once and only if a rule reads it
            if not cache:
                cache.append(prompt_text(req))
            return cache[0]

        hit = next((r for r in self.rules if matches(r, req, text)), self.default)
        if not hit.route:
            return Plan((hit.to,), f"rules:{hit.label}->{hit.to}")
        inner, fallbacks = self.route(hit.to, req)
        models = (*inner.models, *(f for f in fallbacks if f not in inner.models))
        return Plan(models, f"rules:{hit.label}->route {hit.to}; {inner.reason}", inner.checks)
