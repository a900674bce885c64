"""The policy interface: a request and live state in, an ordered plan with a reason out.

A route's policy decides which models to try and in what order; the executor then runs the plan
(retries, fallbacks). Policies never call models themselves, so the same policy code serves the
gateway and the offline evaluator (which replays recorded outcomes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..types import ChatRequest, TextPart, ToolResultPart

if TYPE_CHECKING:
    from ..config import ModelSpec
    from ..resilience.live import LiveStats
    from .checks import Checks


@dataclass(frozen=True, slots=True)
class Plan:
    models: tuple[str, ...]  # configured model names, first choice first
    reason: str  # a few words: why this order (becomes x-switchman-reason)
    checks: "Checks | None" = None  # a cascade: each answer is checked before it is sent
    arm: str | None = None  # an experiment: the arm this request was assigned
    tags: tuple[tuple[str, str], ...] = ()  # tags the policy gives the request (a bandit's prompt cluster)


@dataclass(slots=True)
class RouteContext:
    """What a policy may look at besides the request: the models it may choose among, and what
    the executor observes of them now (latency estimates, calls in flight)."""

    models: dict[str, "ModelSpec"]
    live: "LiveStats | None" = None


class Policy(ABC):
    @abstractmethod
    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan: ...


def prompt_text(req: ChatRequest) -> str:
    """The text the router reads: system, then every message's text, in order."""
    parts = [p.text for p in req.system]
    for m in req.messages:
        for p in m.parts:
            t = type(p)
            if t is TextPart:
                parts.append(p.text)  # type: ignore[union-attr]
            elif t is ToolResultPart:
                parts.extend(c.text for c in p.content if type(c) is TextPart)  # type: ignore[union-attr]
    return "\n".join(parts)


def request_task(req: ChatRequest, tag: str) -> str | None:
    """The task the request says it is (its tag ``tag``), for a router that learned per task."""
    return req.tags.get(tag) if req.tags else None
