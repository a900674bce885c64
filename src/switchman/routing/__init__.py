"""Policies: a request and live state in, an ordered plan with a reason out (:mod:`.base`).

``build_policy`` turns a route's config into its policy; the kinds are ``first`` and
``weighted`` (:mod:`.simple`), ``cheapest``, ``rules``, ``learned``, ``cascade``, and
``least-latency`` and ``least-busy`` (:mod:`.live`), and ``bandit`` (:mod:`.bandit`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..config import PolicySpec, RouteSpec
from ..types import ChatRequest
from .base import Plan, Policy, RouteContext
from .simple import First, Weighted

__all__ = ["Plan", "Policy", "RouteContext", "build_policy"]

RoutePlanner = Callable[[str, ChatRequest], tuple[Plan, tuple[str, ...]]]


def build_policy(route: RouteSpec, route_plan: RoutePlanner) -> Policy:
    """``route_plan(name, req)``: another route's plan and fallbacks (for ``rules``)."""
    if route.policy == "weighted":
        return Weighted(route.models, route.weights)
    if route.spec is None:
        return First(route.models)
    return _build(route.spec, route_plan)


def _build(spec: PolicySpec, route_plan: RoutePlanner) -> Policy:
    # Imported here: numpy (learned, cheapest with a router) and jsonschema (cascade checks)
    # load only for the configs that use them.
    if spec.kind == "first":
        return First(spec.models)
    if spec.kind == "bandit":
        from .bandit import Bandit

        router = None
        if spec.router is not None:
            from .learned import Router

            router = Router.load(spec.router)
        return Bandit(spec.models, dict(spec.quality), spec.tradeoff or 0.0, spec.explore, prior=spec.prior,
                      context_tag=spec.context_tag, router=router, clusters=spec.context == "cluster",
                      rng=random.Random(spec.seed) if spec.seed is not None else None)
    if spec.kind in ("least-latency", "least-busy"):
        from .live import LeastBusy, LeastLatency

        if spec.kind == "least-busy":
            return LeastBusy(spec.models, dict(spec.weights))
        return LeastLatency(spec.models, dict(spec.weights), spec.tolerance, spec.explore, spec.stale)
    if spec.kind == "rules":
        from .rules import Rules

        assert spec.default is not None
        return Rules(spec.rules, spec.default, route_plan)
    router = None
    if spec.router is not None:
        from .learned import Router

        router = Router.load(spec.router)
    if spec.kind == "cheapest":
        from .cheapest import Cheapest

        return Cheapest(spec.models, spec.min_quality or 0.0, dict(spec.quality), router, dict(spec.aliases),
                        spec.output_tokens, spec.task_tag)
    if spec.kind == "learned":
        from .learned import Learned

        assert router is not None
        return Learned(router, min_quality=spec.min_quality, tradeoff=spec.tradeoff, aliases=dict(spec.aliases),
                       use_prices=Learned.prices_needed(router, spec.costs, dict(spec.aliases)), task_tag=spec.task_tag)
    if spec.kind == "cascade":
        from .cascade import Cascade
        from .checks import Checks

        assert spec.checks is not None
        scorer = None
        if spec.checks.scorer is not None:
            from .scorer import AnswerScorer

            scorer = AnswerScorer.load(spec.checks.scorer)
        start = _build(spec.start, route_plan) if spec.start is not None else None
        return Cascade(spec.models, Checks(spec.checks, scorer), start)
    raise ValueError(f"unknown policy kind {spec.kind!r}")
