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

from . import configfile
from .config import Config, ModelSpec
from .dialects import dialect_for
from .errors import UnknownModel
from .executor import Executor, Outcome
from .http.client import HttpClient
from .routing.base import Policy, RouteContext
from .routing.simple import First, Weighted
from .types import ChatRequest, ChatResponse, StreamEvent


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

    __slots__ = ("name", "policy", "fallbacks", "ctx")

    def __init__(self, name: str, policy: Policy, fallbacks: tuple[str, ...], ctx: RouteContext) -> None:
        self.name = name
        self.policy = policy
        self.fallbacks = fallbacks
        self.ctx = ctx


class Gateway:
    def __init__(self, config: Config, client: HttpClient | None = None) -> None:
        self.config = config
        self.client = client or HttpClient()
        self.executor = Executor(self.client)
        ctx = RouteContext(models=dict(config.models))
        self._targets: dict[str, _Target] = {}
        for r in config.routes.values():
            policy: Policy = Weighted(r.models, r.weights) if r.policy == "weighted" else First(r.models)
            self._targets[r.name] = _Target(r.name, policy, r.fallbacks, ctx)
        for m in config.models.values():
            self._targets[m.name] = _Target(m.name, First((m.name,)), m.fallbacks, ctx)

    @classmethod
    def from_config(cls, path: str | os.PathLike | Config | None = None) -> Gateway:
        config = path if isinstance(path, Config) else configfile.load(path)
        return cls(config)

    def names(self) -> list[str]:
        return list(self._targets)

    def candidates(self, req: ChatRequest) -> tuple[str, list[ModelSpec], str]:
        """The route name, the models to try in order, and the plan's reason."""
        t = self._targets.get(req.model)
        if t is None:
            raise UnknownModel(
                f"unknown model '{req.model}'; this gateway serves: {', '.join(self._targets) or 'nothing'}",
                param="model",
            )
        plan = t.policy.plan(req, t.ctx)
        names = list(plan.models)
        for group in (t.fallbacks, *(self.config.models[n].fallbacks for n in plan.models)):
            for n in group:
                if n not in names:
                    names.append(n)
        models = self.config.models
        return t.name, [models[n] for n in names], plan.reason

    async def run(self, req: ChatRequest) -> Reply:
        route, models, why = self.candidates(req)
        outcome = await self.executor.run(req, models)
        return Reply(route, _reason(why, outcome), outcome)

    async def chat(self, **body) -> Reply:
        """An OpenAI-style chat completion in-process (``stream=True`` gives ``reply.events``)."""
        return await self.run(dialect_for("openai").decode(body))

    async def close(self) -> None:
        await self.client.close()


def _reason(plan: str, o: Outcome) -> str:
    """Why this model answered, in a few header-safe words."""
    parts = [plan]
    parts += [f"skipped {s}" for s in o.skipped]
    parts += [f"failed {e.short()}" for e in o.errors]
    if o.errors or o.skipped:
        parts.append(f"fallback to {o.model.name}")
    return "; ".join(parts)
