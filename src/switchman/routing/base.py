"""The policy interface: a request and live state in, an ordered plan with a reason out.

A route's policy decides which models to try and in what order; the executor then runs the plan
(retries, fallbacks). Policies never call models themselves, so the same policy code serves the
gateway and the offline evaluator (which replays recorded outcomes).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..types import ChatRequest

if TYPE_CHECKING:
    from ..config import ModelSpec


@dataclass(frozen=True, slots=True)
class Plan:
    models: tuple[str, ...]  # configured model names, first choice first
    reason: str  # a few words: why this order (becomes x-switchman-reason)


@dataclass(slots=True)
class RouteContext:
    """What a policy may look at besides the request: the models it may choose among."""

    models: dict[str, "ModelSpec"]


class Policy(ABC):
    @abstractmethod
    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan: ...
