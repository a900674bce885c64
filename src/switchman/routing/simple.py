"""The simplest policies: ``first`` (try in order) and ``weighted`` (split traffic)."""

from __future__ import annotations

import random

from ..types import ChatRequest
from .base import Plan, Policy, RouteContext


class First(Policy):
    """Try the models in the configured order."""

    def __init__(self, models: tuple[str, ...]) -> None:
        self._plan = Plan(tuple(models), "first")

    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan:
        return self._plan


class Weighted(Policy):
    """Pick the first model at random by weight; the others follow by descending weight, so a
    failed pick falls back to the next-most-trusted model."""

    def __init__(self, models: tuple[str, ...], weights: tuple[float, ...], rng: random.Random | None = None) -> None:
        self._models = tuple(models)
        self._weights = tuple(weights)
        self._rng = rng or random.Random()
        order = sorted(range(len(models)), key=lambda i: -weights[i])
        self._rest = {m: tuple(models[i] for i in order if models[i] != m) for m in models}

    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan:
        pick = self._rng.choices(self._models, self._weights)[0]
        return Plan((pick, *self._rest[pick]), f"weighted:{pick}")
