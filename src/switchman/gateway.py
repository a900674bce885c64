"""The gateway: names resolved to routes or models, policies planned, the plan executed.

Usable in-process, without a server::

    gw = Gateway.from_config("switchman.yaml")
    reply = await gw.chat(model="auto", messages=[{"role": "user", "content": "hi"}])
    print(reply.response.text(), reply.outcome.model.name, reply.reason)

The HTTP server (``app``) is a thin layer over the same ``Gateway.run``.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal

import asyncio
import logging

import orjson

from . import configfile
from .clock import Clock, SystemClock
from .config import Config, ModelSpec, RouteSpec
from .decisions import DecisionLog
from .dialects import dialect_for
from .errors import AllAttemptsFailed, UnknownModel, UpstreamError
from .executor import Executor, Outcome
from .health import HealthChecker
from .http.client import HttpClient
from .routing.base import Policy, RouteContext
from .routing.simple import First, Weighted
from .types import ChatRequest, ChatResponse, StreamEvent

log = logging.getLogger("switchman")


@dataclass(slots=True)
class Reply:
    """What ``Gateway.run`` returns: the outcome plus the decision's facts, for headers."""

    route: str  # the route's name, or the model's when the client named a model
    reason: str
    outcome: Outcome

    @property
    def response(self) -> ChatResponse | None:
        return self.outcome.response

    @property
    def events(self) -> AsyncIterator[StreamEvent] | None:
        return self.outcome.events

    def cost(self) -> Decimal | None:
        return self.outcome.cost()


class _Target:
    """A name a client may ask for: a route (policy + fallbacks) or a single model."""

    __slots__ = ("spec", "policy", "ctx")

    def __init__(self, spec: RouteSpec, policy: Policy, ctx: RouteContext) -> None:
        self.spec = spec
        self.policy = policy
        self.ctx = ctx


class Gateway:
    def __init__(self, config: Config, client: HttpClient | None = None, clock: Clock | None = None) -> None:
        self.config = config
        self.client = client or HttpClient()
        self.clock = clock or SystemClock()
        self.decisions = DecisionLog()
        self.executor = Executor(self.client, config.resilience, self.clock, config.models,
                                 on_decision=lambda model, event, why: self.decisions.record(event, model, why))
        self.health = HealthChecker(self.executor, config.models, self.clock, config.resilience.health_interval)
        self._escalations: set[asyncio.Task] = set()
        ctx = RouteContext(models=dict(config.models))
        self._targets: dict[str, _Target] = {}
        for r in config.routes.values():
            policy: Policy = Weighted(r.models, r.weights) if r.policy == "weighted" else First(r.models)
            self._targets[r.name] = _Target(r, policy, ctx)
        for m in config.models.values():
            spec = RouteSpec(name=m.name, policy="first", models=(m.name,), fallbacks=m.fallbacks)
            self._targets[m.name] = _Target(spec, First((m.name,)), ctx)

    @classmethod
    def from_config(cls, path: str | os.PathLike | Config | None = None) -> Gateway:
        config = path if isinstance(path, Config) else configfile.load(path)
        return cls(config)

    def names(self) -> list[str]:
        return list(self._targets)

    def candidates(self, req: ChatRequest) -> tuple[RouteSpec, list[ModelSpec], str]:
        """The route, the models to try in order, and the plan's reason."""
        t = self._targets.get(req.model)
        if t is None:
            raise UnknownModel(
                f"unknown model '{req.model}'; this gateway serves: {', '.join(self._targets) or 'nothing'}",
                param="model",
            )
        plan = t.policy.plan(req, t.ctx)
        names = list(plan.models)
        for group in (t.spec.fallbacks, *(self.config.models[n].fallbacks for n in plan.models)):
            for n in group:
                if n not in names:
                    names.append(n)
        models = self.config.models
        return t.spec, [models[n] for n in names], plan.reason

    async def run(self, req: ChatRequest, *, deadline: float | None = None, request_id: str | None = None,
                  plan: tuple[RouteSpec, list[ModelSpec], str] | None = None) -> Reply:
        """Plan and execute ``req``. ``deadline``: seconds the client allows (at most the
        configured one). ``plan``: ``candidates(req)`` already worked out (and maybe narrowed,
        e.g. by budgets) by the caller."""
        route, models, why = plan or self.candidates(req)
        try:
            outcome = await self.executor.run(req, models, route, deadline)
        except (UpstreamError, AllAttemptsFailed) as e:
            self.decisions.record("failed", route.name, str(e)[:300], request_id)
            if route.escalate_webhook:
                self._escalate(route, getattr(e, "errors", None) or [e], request_id)
            raise
        if outcome.degraded and route.escalate_webhook:
            self._escalate(route, outcome.errors, request_id)
        reply = Reply(route.name, _reason(why, outcome), outcome)
        self.decisions.record("degraded" if outcome.degraded else "answered", outcome.model.name, reply.reason,
                              request_id)
        return reply

    def _escalate(self, route: RouteSpec, errors: list, request_id: str | None) -> None:
        """POST the request id and the error chain to the route's webhook, off the request path."""
        body = orjson.dumps({
            "request_id": request_id, "route": route.name,
            "errors": [{"model": getattr(x, "model", None), "kind": getattr(x, "kind", "error"),
                        "status": getattr(x, "upstream_status", None), "message": getattr(x, "message", str(x))}
                       for x in errors],
        })

        async def post() -> None:
            try:
                loop = asyncio.get_running_loop()
                r = await self.client.request("POST", route.escalate_webhook, {"content-type": "application/json"},
                                              body, loop.time() + 10)
                await r.read(loop.time() + 10)
                self.decisions.record("escalated", route.name, f"webhook answered {r.status}", request_id)
            except Exception as exc:  # noqa: BLE001 - a failing webhook must not fail anything else
                log.warning("escalation webhook for %s failed: %s", request_id, exc)

        task = asyncio.ensure_future(post())
        self._escalations.add(task)
        task.add_done_callback(self._escalations.discard)

    async def chat(self, **body) -> Reply:
        """An OpenAI-style chat completion in-process (``stream=True`` gives ``reply.events``)."""
        return await self.run(dialect_for("openai").decode(body))

    def start(self) -> None:
        """Background work: active health checks of ejected models."""
        self.health.start()

    async def close(self) -> None:
        await self.health.stop()
        if self._escalations:
            await asyncio.wait(self._escalations, timeout=5)
        await self.client.close()


def _reason(plan: str, o: Outcome) -> str:
    """Why this model answered, in a few header-safe words."""
    parts = [plan]
    parts += [f"skipped {s}" for s in o.skipped]
    for a in o.attempts:
        if a.error is not None:
            parts.append(f"failed {a.error.short()}")
        elif a.cancelled:
            parts.append(f"hedge lost {a.model}")
    if o.degraded:
        parts.append("degraded: every candidate failed, fixed reply")
    elif any(a.role == "hedge" and a.model == o.model.name for a in o.attempts):
        parts.append(f"hedge won {o.model.name}")
    elif o.errors or o.skipped:
        parts.append(f"fallback to {o.model.name}")
    return "; ".join(parts)
