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
from dataclasses import dataclass, replace
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
from .executor import Attempt, Executor, Outcome, cost_of, replay
from .health import HealthChecker
from .http.client import HttpClient
from .routing import build_policy
from .routing.base import Plan, Policy, RouteContext
from .routing.checks import Checks
from .routing.simple import First
from .routing.headroom import prefer_headroom
from .routing.sticky import MIN_PREFIX, Affinity, conversation
from .routing.threads import Threads, continued, threaded
from .types import ChatRequest, ChatResponse, StreamEvent

log = logging.getLogger("switchman")


@dataclass(slots=True)
class Reply:
    """What ``Gateway.run`` returns: the outcome plus the decision's facts, for headers."""

    route: str  # the route's name, or the model's when the client named a model
    reason: str
    outcome: Outcome
    cache: str | None = None  # hit | miss | bypass, when the response cache is on
    # why the answering model's reported usage could not be booked (the ledger counts it locally,
    # after the answer is sent): its cost is then not known when the headers go out
    usage_refused: str | None = None

    @property
    def response(self) -> ChatResponse | None:
        return self.outcome.response

    @property
    def events(self) -> AsyncIterator[StreamEvent] | None:
        return self.outcome.events

    def cost(self) -> Decimal | None:
        if self.cache in ("hit", "semantic-hit"):
            return Decimal(0)  # served from the cache: no model was called
        if self.usage_refused is not None:
            return None  # not the refused usage's price: the ledger books the local count
        return self.outcome.cost()


@dataclass(slots=True)
class Planned:
    """What a request will try: the route, its models in order (the plan's, then fallbacks), the
    plan's reason, and, for a cascade, the checks an answer of one of the first ``checked``
    models must pass before it is sent."""

    route: RouteSpec
    models: list[ModelSpec]
    reason: str
    checks: Checks | None = None
    checked: int = 0
    conversation: str | None = None  # the prompt-cache stickiness key, on routes that keep it
    arm: str | None = None  # an experiment's arm for this request
    tags: tuple[tuple[str, str], ...] = ()  # the policy's tags for this request (routing/base.py Plan)


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
        live = self.executor.live
        ctx = RouteContext(models=dict(config.models), live=live)
        self._targets: dict[str, _Target] = {}
        self._pacers: dict = {}
        self.experiments: dict = {}  # route name -> Experiment
        self.shared = None  # routing/shared.py, with state: {backend: redis}
        self.threads = Threads()  # Anthropic thread messages -> the model holding them
        self.affinity = Affinity(self.clock)
        for r in config.routes.values():
            own = RouteContext({n: config.models[n] for n in r.models}, live) if r.models else ctx
            if r.spec is not None and r.spec.experiment is not None:
                from .routing.experiment import Experiment

                policy = self.experiments[r.name] = Experiment(r.name, r.spec.experiment, self._route_plan,
                                                               frozenset(config.routes))
            else:
                policy = build_policy(r, self._route_plan)
            self._targets[r.name] = _Target(r, policy, own)
            if r.pace is not None:
                from .routing.pacing import Pacer

                steered = getattr(policy, "start", None) or policy  # a cascade: the policy it starts by
                steered.pacer = self._pacers[r.name] = Pacer(r.pace, self.clock,
                                                             getattr(steered, "tradeoff", 0.0) or 1.0)
        for m in config.models.values():
            spec = RouteSpec(name=m.name, policy="first", models=(m.name,), fallbacks=m.fallbacks)
            self._targets[m.name] = _Target(spec, First((m.name,)), ctx)

    @classmethod
    def from_config(cls, path: str | os.PathLike | Config | None = None) -> Gateway:
        config = path if isinstance(path, Config) else configfile.load(path)
        return cls(config)

    def names(self) -> list[str]:
        return list(self._targets)

    # -- learning from live traffic (policies that learn: ``bandit``) ------------------------------
    def _learner(self, route: str):
        """The route's policy that learns (a bandit), or the one a cascade starts by."""
        t = self._targets.get(route)
        if t is None:
            return None
        p = t.policy if hasattr(t.policy, "learn") else getattr(t.policy, "start", None)
        return p if p is not None and hasattr(p, "learn") else None

    def _request_learner(self, route: str | None, tags) -> object | None:
        """The learner a request's outcome teaches: its route's, or, for an experiment, that of
        the route its arm sent it to (a bandit A/B tested against another route)."""
        exp = self.experiments.get(route or "")
        if exp is not None:
            arm = tags.get(exp.tag) if tags else None
            target = exp.target.get(arm) if arm else None
            return self._learner(target) if target else None
        return self._learner(route or "")

    def feedback(self, route: str | None, model: str | None, score: float, tags: dict | None) -> None:
        """A quality score (``POST /v1/feedback``) for what ``model`` answered on ``route``."""
        exp = self.experiments.get(route or "")
        if exp is not None and tags and tags.get(exp.tag):
            exp.feedback(tags[exp.tag], score)
        p = self._request_learner(route, tags)
        if p is not None and model:
            p.learn(model, score, tags)

    def settled(self, request, attempts) -> None:
        """A settled request's record (accounting's): its failed calls count as quality 0 and its
        cost as the answering model's, for the route's learning policy."""
        pacer = self._pacers.get(request.route)
        if pacer is not None:
            pacer.spend(float(request.cost))
        exp = self.experiments.get(request.route)
        if exp is not None and request.tags and request.tags.get(exp.tag):
            exp.settled(request.tags[exp.tag], request.status >= 500 or request.error == "degraded",
                        request.latency_ms, float(request.cost))
        p = self._request_learner(request.route, request.tags)
        if p is None:
            return
        tags = dict(request.tags) if request.tags else None
        for a in attempts:
            if a.error is not None and a.error not in ("hedge_lost", "cancelled", "rejected"):
                p.learn(a.model, 0.0, tags)
        if request.model is not None and request.cache not in ("hit", "semantic-hit"):
            p.cost(request.model, float(request.cost), tags)

    def _route_plan(self, name: str, req: ChatRequest) -> tuple[Plan, tuple[str, ...]]:
        """Another route's plan and fallbacks: where a ``rules`` policy sends a request."""
        t = self._targets[name]
        return t.policy.plan(req, t.ctx), t.spec.fallbacks

    def candidates(self, req: ChatRequest) -> Planned:
        """The route, the models to try in order, and the plan's reason."""
        t = self._targets.get(req.model)
        if t is None:
            raise UnknownModel(
                f"unknown model '{req.model}'; this gateway serves: {', '.join(self._targets) or 'nothing'}",
                param="model",
            )
        prev = continued(req.raw) if req.dialect == "anthropic" else None
        holder = self.threads.holder(prev) if prev else None
        if holder is not None and holder in self.config.models:  # the thread lives there: nowhere else
            why = f"thread: continuing on {holder}, which holds the conversation ({prev[:40]})"
            return Planned(t.spec, [self.config.models[holder]], why)
        plan = t.policy.plan(req, t.ctx)
        models = self.config.models
        chosen, reason, key = [models[n] for n in plan.models], plan.reason, None
        c = t.spec.cache or self.config.cache
        if len(chosen) > 1 and plan.checks is None and (c is None or c.sticky) and req.estimated_tokens() >= MIN_PREFIX:
            key = conversation(req, req.end_user or "")
            chosen, reason = self.affinity.prefer(key, req, chosen, reason)
        if t.spec.prefer == "headroom":
            chosen, reason = prefer_headroom(chosen, reason, self.executor.live)
        names = [m.name for m in chosen]
        for group in (t.spec.fallbacks, *(models[n].fallbacks for n in plan.models)):
            for n in group:
                if n not in names:
                    names.append(n)
        return Planned(t.spec, [models[n] for n in names], reason, plan.checks, max(len(plan.models) - 1, 0), key,
                       plan.arm, plan.tags)

    async def run(self, req: ChatRequest, *, deadline: float | None = None, request_id: str | None = None,
                  plan: Planned | None = None) -> Reply:
        """Plan and execute ``req``. ``deadline``: seconds the client allows (at most the
        configured one). ``plan``: ``candidates(req)`` already worked out (and maybe narrowed,
        e.g. by budgets) by the caller."""
        p = plan or self.candidates(req)
        route, models, why = p.route, p.models, p.reason
        c = route.cache or self.config.cache
        if c is not None:
            req.prompt_ttl, req.prompt_retention = c.prompt_ttl, c.prompt_retention
        try:
            if p.checks is not None and p.checked:
                outcome, why = await self._cascade(req, p, deadline)
            else:
                outcome = await self.executor.run(req, models, route, deadline)
        except (UpstreamError, AllAttemptsFailed) as e:
            self.decisions.record("failed", route.name, str(e)[:300], request_id)
            if route.escalate_webhook:
                self._escalate(route, getattr(e, "errors", None) or [e], request_id)
            raise
        if outcome.degraded and route.escalate_webhook:
            self._escalate(route, outcome.errors, request_id)
        reply = Reply(route.name, _reason(why, outcome), outcome)
        if (outcome.response is not None and req.dialect == "anthropic" == outcome.response.dialect
                and threaded(req.raw)):  # a thread Anthropic itself holds
            self.threads.answered(outcome.response.id, outcome.model.name)
        if p.conversation is not None and not outcome.degraded:
            self.affinity.remember(p.conversation, outcome.model, req.estimated_tokens(), req.prompt_ttl or "5m")
        self.decisions.record("degraded" if outcome.degraded else "answered", outcome.model.name, reply.reason,
                              request_id)
        return reply

    async def _cascade(self, req: ChatRequest, p: Planned, deadline: float | None) -> tuple[Outcome, str]:
        """Ask the chain's models in turn until an answer passes the checks (or the last model,
        whose answer is not checked, answers). A stage that fails outright falls over inside the
        executor as usual; if every later stage fails, the last rejected answer is sent rather
        than an error, and the reason says so. Returns the combined outcome and the reason."""
        checks = p.checks
        assert checks is not None
        seconds = self.config.resilience.deadline if deadline is None else min(deadline, self.config.resilience.deadline)
        end = self.clock.now() + seconds
        attempts: list[Attempt] = []
        skipped: list[str] = []
        notes = [p.reason]
        earlier: list[str] = []
        rejected: Outcome | None = None
        unsent = Decimal(0)
        i = 0

        async def judge(jreq: ChatRequest) -> ChatResponse:
            nonlocal unsent
            o = await self.executor.run(jreq, [self.config.models[jreq.model]], None, end - self.clock.now())
            for a in o.attempts:
                a.role = "judge"
            assert o.response is not None
            _answering(o).usage = o.response.usage
            attempts.extend(o.attempts)
            if o.response.usage is not None:
                unsent += cost_of(o.model, o.response.usage)
            return o.response

        while True:
            buffered = i < p.checked
            stage = replace(req, stream=False, logprobs=checks.wants_logprobs) if buffered else req
            failed = None  # why escalating got no answer, when a rejected one is in hand
            try:
                # a checked stage does not hedge: the hedge would be the next, dearer model of the
                # chain, answering before the cheap answer was ever checked
                route = replace(p.route, hedge=None) if buffered and p.route.hedge is not None else p.route
                o = await self.executor.run(stage, p.models[i:], route, end - self.clock.now())
                if o.degraded and rejected is not None:  # a real answer beats the route's fixed reply
                    attempts.extend(o.attempts)
                    failed = "every candidate failed"
            except (UpstreamError, AllAttemptsFailed) as e:
                if rejected is None:
                    raise
                attempts.extend(getattr(e, "attempts", None) or ())
                failed = e.kind
            if failed is not None:
                assert rejected is not None
                notes.append(f"escalation failed ({failed}): sent {rejected.model.name}'s answer")
                o, buffered = rejected, True
                a = _answering(o)
                a.usage, a.rejected = None, None  # sent after all: the answer, not an unsent one
                if o.response is not None and o.response.usage is not None:
                    unsent -= cost_of(o.model, o.response.usage)
                break
            if i:
                o.attempts[0].role = "escalation"
            attempts.extend(o.attempts)
            skipped += o.skipped
            k = next(j for j, m in enumerate(p.models) if m.name == o.model.name)
            if o.degraded or not buffered or k >= p.checked:
                break
            assert o.response is not None
            why = await checks.verdict(req, o.response, earlier, judge if checks.spec.judge else None,
                                       o.model.upstream)
            exp = self.experiments.get(p.route.name)
            learner = self._learner(exp.target.get(p.arm, "") if exp is not None and p.arm else p.route.name)
            if learner is not None:  # a bandit the cascade starts by: a verdict is a quality score
                tags = {**req.tags, **dict(p.tags)} if req.tags else dict(p.tags)  # its context (a cluster)
                learner.learn(o.model.name, 0.0 if why else 1.0, tags or None)
            if why is None:
                notes.append(f"{o.model.name} passed checks")
                break
            a = _answering(o)
            a.usage, a.rejected = o.response.usage, why
            if o.response.usage is not None:
                unsent += cost_of(o.model, o.response.usage)
            notes.append(f"{o.model.name} rejected: {why}")
            earlier.append(o.response.text())
            rejected, i = o, k + 1
        out = Outcome(o.model, attempts, skipped, degraded=o.degraded, unsent_cost=unsent)
        if req.stream and buffered and o.response is not None:
            out.events = replay(o.response)
        elif req.stream:
            out.events = o.events
        else:
            out.response = o.response
        return out, "; ".join(notes)

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
        """Background work: active health checks of ejected models; with Redis state, sharing
        calls in flight and bandit posteriors with the other workers."""
        self.health.start()
        st = self.config.accounting.state if self.config.accounting is not None else None
        uses = self._pacers or any(t.spec.policy in ("least-busy", "bandit", "experiment")
                                   or self._learner(n) is not None for n, t in self._targets.items())
        if st is not None and st.backend == "redis" and uses and self.shared is None:
            from .routing.shared import SharedState

            bandits = {n: b for n in self._targets if (b := self._learner(n)) is not None}
            self.shared = SharedState(st.url, st.prefix, self.executor.live, bandits, timeout=st.timeout,
                                      experiments=self.experiments, pacers=self._pacers)
            self.shared.start()

    async def close(self) -> None:
        if self.shared is not None:
            await self.shared.close()
        await self.health.stop()
        if self._escalations:
            await asyncio.wait(self._escalations, timeout=5)
        await self.client.close()


def _answering(o: Outcome) -> Attempt:
    """The attempt whose answer ``o`` carries."""
    return next(a for a in reversed(o.attempts) if a.error is None and not a.cancelled)


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
