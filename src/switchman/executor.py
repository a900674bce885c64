"""The executor: runs a plan's attempts until one answers, inside the request's overall deadline.

Streaming and non-streaming share this path. A streaming answer is committed only once its first
content event has arrived (within the model's ``first_token`` timeout): until then a failure moves
on without the client seeing anything. After the first byte, a cut stream either ends with an
error event (the dialect's) or, with ``stream: {on_cut: resume}``, continues from a fallback.

Envoy's semantics throughout: a per-try timeout inside an overall deadline; retries of the same
model with full-jitter backoff, Retry-After honoured, under a retry budget; outlier ejection per
model (``OutlierDetector``), never of more than ``max_ejection_percent`` of a route; a
rate-limited model cools down for its Retry-After while traffic overflows to the next; hedging
after a per-try delay, first good answer wins, the losers' connections closed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal

from . import catalog, tokens
from .adapters import adapter_for, adapter_of
from .adapters.base import UpstreamCall
from .clock import Clock, SystemClock
from .config import ModelSpec, ResilienceSpec, RouteSpec
from .errors import (
    AllAttemptsFailed,
    ClientError,
    Origin,
    StreamCut,
    SwitchmanError,
    Unsupported,
    UpstreamError,
    UpstreamKind,
    UpstreamStatus,
    UpstreamTimeout,
)
from .http.client import MAX_ERROR_BODY, HttpClient
from .resilience.cooldown import Cooldowns
from .resilience.latency import LatencyTracker
from .resilience.live import LiveStats
from .resilience.limiter import ConcurrencyLimit
from .resilience.outlier import EjectionPolicy, HealthState, OutlierDetector
from .resilience.retry import Backoff, RetryBudget
from .sse import SSEDecoder
from .streams import Opened
from .types import (
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    Message,
    Role,
    Start,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    UsageEvent,
    events_of,
)

log = logging.getLogger("switchman.executor")

# Failures after which the next candidate is worth trying although retrying the same model is
# not: a prompt too long for this model (a later one may have a larger window), a provider that
# rejects our credentials or is out of credit, or does not know the model. A bad request or a
# content filter goes straight back to the client (another model would be asked the same thing),
# unless the route lists it in ``fallback_on``.
_FALL_THROUGH = frozenset({UpstreamKind.CONTEXT_WINDOW, UpstreamKind.AUTH, UpstreamKind.NOT_FOUND})
# Failures that say the model (or the path to it) is unhealthy: they count toward ejection.
_UNHEALTHY = frozenset({UpstreamKind.SERVER_ERROR, UpstreamKind.OVERLOADED, UpstreamKind.CONNECT,
                        UpstreamKind.TIMEOUT, UpstreamKind.STREAM_CUT})
# Failures retried on the next candidate, not on the same model: a rate-limited model cools down
# while traffic overflows, and a model too slow to answer (or to start a stream) in its timeout
# would most likely be as slow again.
_NEXT_NOT_AGAIN = frozenset({UpstreamKind.RATE_LIMITED, UpstreamKind.TIMEOUT})
# A 429 without Retry-After still cools the model a little, so the next requests overflow.
_DEFAULT_COOL = 1.0
_CONTENT = (TextDelta, ToolCallStart, ToolCallDelta, Finish)

# A model's own rpm/tpm limits, counted where every worker sees them (the accounting's shared
# state): ``await rate_limit(model, prompt_tokens)`` counts one call of ``model`` and answers None,
# or ``(limit, seconds)`` when the model is at its ``limit`` ("rpm" or "tpm") for that long.
RateLimit = Callable[[ModelSpec, int], Awaitable["tuple[str, float] | None"]]


@dataclass(slots=True)
class Attempt:
    """One call of one model: for headers, reasons, and the ledger."""

    model: str
    provider: str
    role: str  # first | retry | fallback | hedge | resume
    error: UpstreamError | None = None
    latency: float = 0.0  # to the answer (non-streaming) or the first token (streaming)
    cancelled: bool = False  # a hedge that lost: its connection was closed
    usage: Usage | None = None  # an answer paid for but not sent: a cascade's reject, its judge's grade,
    #                             a hedge that lost after answering in full, a stream cut and resumed
    rejected: str | None = None  # why a cascade did not send this attempt's answer
    cut_text: str | None = None  # ``on_cut: resume``: what this stream had sent when it broke (paid for)
    started: float = 0.0  # wall clock (unix seconds) when the call went out, for the request log and traces


@dataclass(slots=True)
class Outcome:
    """The answering attempt, and what went before it."""

    model: ModelSpec
    attempts: list[Attempt]
    skipped: list[str]
    response: ChatResponse | None = None  # when not streaming
    events: AsyncIterator[StreamEvent] | None = None  # when streaming: the first is already in
    degraded: bool = False  # the route's fixed ``degrade`` reply, not a model's
    unsent_cost: Decimal = Decimal(0)  # answers paid for but not sent: a cascade's rejects, its judge
    attempt: Attempt | None = None  # the attempt that answered

    @property
    def errors(self) -> list[UpstreamError]:
        return [a.error for a in self.attempts if a.error is not None]

    def cost(self) -> Decimal | None:
        """What the request cost in all (None until the answer's usage is known)."""
        if self.response is None or self.response.usage is None or self.degraded:
            return None
        return cost_of(self.model, self.response.usage) + self.unsent_cost


def cost_of(model: ModelSpec, usage: Usage) -> Decimal:
    return model.price.cost(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens,
                            usage.cache_write_1h_tokens)


_DEFAULT_ROUTE = RouteSpec(name="", policy="first", models=())


@dataclass(slots=True)
class _Run:
    """One request's state while the executor works on it."""

    req: ChatRequest
    route: RouteSpec
    deadline: float
    candidates: list[ModelSpec] = field(default_factory=list)  # the whole plan, for a resume
    attempts: list[Attempt] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unsupported: ClientError | None = None
    last_failed_provider: str | None = None
    forced: dict[str, str] = field(default_factory=dict)
    est_tokens: int = 0  # the prompt's estimated size, computed once per request
    probes: set[str] = field(default_factory=set)  # models this request holds the one probe of
    limited: list[float] = field(default_factory=list)  # seconds until a model at its rpm/tpm limit has room


class Executor:
    def __init__(self, client: HttpClient | None = None, spec: ResilienceSpec | None = None,
                 clock: Clock | None = None, models: dict[str, ModelSpec] | None = None,
                 rng: random.Random | None = None,
                 on_decision: Callable[[str, str, str], None] | None = None) -> None:
        self.client = client or HttpClient()
        self.spec = spec or ResilienceSpec()
        self.clock = clock or SystemClock()
        b = self.spec.breaker
        self.outliers = OutlierDetector(
            EjectionPolicy(failures=b.failures, window=b.window, cooldown=b.cooldown, max_cooldown=b.max_cooldown,
                           max_ejection_percent=b.max_ejection_percent),
            self.clock, on_event=on_decision,
        )
        self.cooldowns = Cooldowns(self.clock, self.spec.retry.max_retry_after)
        self.latency = LatencyTracker()
        self.live = LiveStats(self.clock)  # latency estimates and in-flight calls, for least-latency / least-busy
        r = self.spec.retry
        self.backoff = Backoff(r.backoff, r.max_backoff, rng or random.Random())
        self.budget = RetryBudget(r.budget, r.min_retries)
        self.limits: dict[str, ConcurrencyLimit] = {
            m.name: ConcurrencyLimit(m.limits.concurrency, m.limits.queue, self.clock)
            for m in (models or {}).values() if m.limits.concurrency
        }
        self.rate_limit: RateLimit | None = None  # set by metering when some model has rpm/tpm limits
        self.on_decision = on_decision
        # Called with (model, +1) when a call goes out and (model, -1) when it ends (a stream: at
        # its last event): in-flight calls per model, for metrics.
        self.on_call: Callable[[str, int], None] | None = None

    # -- the plan ------------------------------------------------------------------------------
    async def run(self, req: ChatRequest, candidates: list[ModelSpec], route: RouteSpec | None = None,
                  deadline: float | None = None) -> Outcome:
        """Try ``candidates`` in order (retries, fallbacks, hedges) within ``deadline`` seconds."""
        route = route or _DEFAULT_ROUTE
        seconds = self.spec.deadline if deadline is None else min(deadline, self.spec.deadline)
        run = _Run(req, route, self.clock.now() + seconds, list(candidates), est_tokens=req.estimated_tokens())
        adm = self.outliers.filter([m.name for m in candidates])
        names, ejected = adm
        run.skipped += [f"{n}:{why}" for n, why in ejected]
        run.forced = adm.forced  # unhealthy, but tried anyway (panic, or max_ejection_percent)
        by_name = {m.name: m for m in candidates}
        queue = [by_name[n] for n in names]
        self.budget.start_request()
        try:
            if route.hedge is not None and len(queue) > 1:
                return await self._hedged(run, queue)
            return await self._sequential(run, queue)
        except (AllAttemptsFailed, UpstreamError) as e:
            # The fixed reply stands in for failed upstreams, never for the client's own mistake.
            if route.degrade_reply is not None and (e.status >= 500 or e.status == 429):
                return self._degrade(run, candidates[0])
            raise
        finally:
            self.budget.end_request()

    async def _sequential(self, run: _Run, queue: list[ModelSpec]) -> Outcome:
        role = "first"
        while queue:
            model = self._next(run, queue)
            if not self._admissible(run, model):
                continue
            last: UpstreamError | None = None
            for n in range(self.spec.retry.attempts):
                if n:  # a retry of the same model: still admitted, backoff, deadline, budget
                    if self._ejected(run, model):
                        break  # the failure just seen ejected it: no more calls to it
                    delay = self.backoff.delay(n, last.retry_after if last else None)
                    if self.clock.now() + delay >= run.deadline:
                        run.skipped.append(f"{model.name}:no-time-to-retry")
                        break
                    if not self.budget.try_acquire_retry():
                        run.skipped.append(f"{model.name}:retry-budget-spent")
                        if self.on_decision is not None:
                            self.on_decision(model.name, "retry_budget_spent", "retry budget spent")
                        break
                try:
                    if n:
                        await self.clock.sleep(delay)
                        if self._ejected(run, model):
                            break  # another request's failure ejected it during the backoff
                    return await self._attempt(run, model, "retry" if n else role)
                except _Skip:
                    break
                except UpstreamError as e:
                    if not self._moves_on(run, e):
                        raise
                    last = e
                    if e.upstream_kind in _NEXT_NOT_AGAIN or not e.retryable:
                        break
                finally:
                    if n:
                        self.budget.release_retry()
            role = "fallback"
            run.last_failed_provider = model.provider.name
        return self._exhausted(run)

    async def _hedged(self, run: _Run, queue: list[ModelSpec]) -> Outcome:
        """Race candidates: a new one starts when the newest has not answered within the hedge
        delay (or at once when one fails); the first good answer wins, the rest are cancelled."""
        spec = run.route.hedge
        assert spec is not None
        running: set[asyncio.Task] = set()
        timer: asyncio.Task | None = None
        role = "first"

        newest: list[str] = []  # the model launched last: its latency sets the hedge delay

        def launch() -> bool:
            nonlocal role
            while queue:
                model = self._next(run, queue)
                if self._admissible(run, model):
                    running.add(asyncio.ensure_future(self._attempt(run, model, role)))
                    newest[:] = [model.name]
                    role = "hedge"
                    return True
            return False

        def hedge_delay(model_name: str) -> float:
            if spec.percentile is not None:
                p = self.latency.percentile(model_name, spec.percentile)
                return max(spec.min_after, p) if p is not None else (spec.after or 1.0)
            return spec.after or 1.0

        try:
            launch()
            while running:
                if timer is None and queue and len(running) < spec.max:
                    timer = asyncio.ensure_future(self.clock.sleep(hedge_delay(newest[0])))
                waits = running | ({timer} if timer is not None else set())
                remaining = run.deadline - self.clock.now()
                done, _ = await asyncio.wait(waits, timeout=max(remaining, 0), return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break  # the overall deadline passed
                if timer is not None and timer in done:
                    timer = None
                    if len(running) < spec.max:
                        launch()
                for t in done:
                    if t not in running:
                        continue
                    running.discard(t)
                    exc = t.exception()
                    if exc is None:
                        return t.result()
                    if isinstance(exc, _Skip):
                        launch()
                    elif isinstance(exc, UpstreamError) and self._moves_on(run, exc):
                        launch()  # a failure moves on at once, hedge delay or not
                    else:
                        raise exc
        finally:
            if timer is not None:
                timer.cancel()
            for t in running:  # the losers: closing their connections stops the upstream generating
                t.cancel()
            if running:
                for lost in await asyncio.gather(*running, return_exceptions=True):
                    if type(lost) is Outcome:  # it answered in the same instant as the winner
                        await _lost(lost)
        if running:  # the overall deadline passed with attempts still out
            raise UpstreamTimeout("no answer within the request deadline")
        return self._exhausted(run)

    # -- one model -----------------------------------------------------------------------------
    def _next(self, run: _Run, queue: list[ModelSpec]) -> ModelSpec:
        """The next candidate: after a failure, a model of another provider first (correlated
        outages: the same provider is likely still failing)."""
        if run.route.prefer_other_provider and run.last_failed_provider is not None:
            for i, m in enumerate(queue):
                if m.provider.name != run.last_failed_provider:
                    return queue.pop(i)
        return queue.pop(0)

    def _ejected(self, run: _Run, model: ModelSpec) -> bool:
        """Whether ``model`` is out of rotation now (then a retry of it is skipped, and said so)."""
        if self.outliers.state(model.name) is HealthState.HEALTHY:
            return False
        run.skipped.append(f"{model.name}:ejected")
        return True

    def _admissible(self, run: _Run, model: ModelSpec) -> bool:
        """Checks made before any call: window, API kind, cool-down, ejection probe."""
        est = run.est_tokens
        if model.context_window and est > model.context_window:
            run.skipped.append(f"{model.name}:context~{est}>{model.context_window}")
            return False
        cool = self.cooldowns.remaining(model.name)
        if cool > 0:
            run.skipped.append(f"{model.name}:cooling-{cool:.1f}s")
            return False
        ok, why = self.outliers.admit(model.name, forced=model.name in run.forced)
        if not ok:
            run.skipped.append(f"{model.name}:{why}")
            return False
        if why == "probe":
            run.probes.add(model.name)
        return True

    @staticmethod
    def _moves_on(run: _Run, e: UpstreamError) -> bool:
        """Whether, after this failure, another attempt may be made for the request."""
        kind = e.upstream_kind
        return e.retryable or kind in _FALL_THROUGH or kind.value in run.route.fallback_on

    async def _attempt(self, run: _Run, model: ModelSpec, role: str) -> Outcome:
        req = run.req
        adapter = adapter_of(req, model)
        att = Attempt(model.name, model.provider.name, role)
        try:
            _check_takes(req, model, adapter.kind)
            call = adapter.build(req, model)
        except ClientError as e:  # e.g. images to a text-only model: another may take them
            run.unsupported = run.unsupported or e
            run.skipped.append(f"{model.name}:{e.kind}")
            raise _Skip(e.message, model=model.name) from None
        if self.rate_limit is not None and (model.limits.rpm or model.limits.tpm):
            self.live.count(model.name, run.est_tokens)
            full = await self.rate_limit(model, run.est_tokens)
            if full is not None:  # the next candidate rather than the upstream's own 429
                run.skipped.append(f"{model.name}:at-{full[0]}-limit")
                run.limited.append(full[1])
                raise _Skip(f"at its {full[0]} limit", model=model.name, retry_after=full[1])
        limit = self.limits.get(model.name)
        if limit is not None and not await limit.acquire(run.deadline):
            run.skipped.append(f"{model.name}:at-concurrency-limit")
            raise _Skip("at its concurrency limit", model=model.name, retry_after=1.0)
        run.attempts.append(att)
        att.started = time.time()
        live = self.live
        live.inflight[model.name] += 1
        hook = self.on_call
        on_call = (lambda name, d: (live.calls(name, d), hook(name, d))) if hook is not None else live.calls
        if hook is not None:
            hook(model.name, 1)
        start = self.clock.now()
        t = model.timeout
        deadline = min(run.deadline, start + t.total)
        first = deadline if t.first_token is None else min(deadline, start + t.first_token)
        released = False
        try:
            if call.more:  # one answer in several calls (an upstream's batch cap): not a stream
                outcome = Outcome(model, run.attempts, run.skipped,
                                  response=_counted(req, await self._split(call, adapter, model, deadline)))
            else:
                try:
                    resp = await self.client.request(call.method, call.url, call.headers, call.body,
                                                     _loop_time(self.clock, first if req.stream else deadline))
                except UpstreamTimeout:
                    if req.stream and first < deadline:
                        raise UpstreamTimeout(f"no first token within {first - start:g}s") from None
                    raise
                if resp.status >= 400:
                    body = await resp.read(_loop_time(self.clock, deadline), MAX_ERROR_BODY, truncate=True)
                    raise adapter.error(resp.status, resp.headers, body, model)
                if not req.stream:
                    body = await resp.read(_loop_time(self.clock, deadline))
                    outcome = Outcome(model, run.attempts, run.skipped, response=_counted(req, adapter.parse(body, model)))
                else:
                    # Same-kind streams pass the upstream's own events through, unless the route may
                    # resume a cut stream from another model: then every event must be canonical, so
                    # the splice is one well-formed stream.
                    keep_raw = req.dialect == adapter.kind and run.route.on_cut != "resume"
                    decoder = adapter.stream_decoder(model, keep_raw=keep_raw)
                    events = _decode(resp.chunks(_loop_time(self.clock, deadline)), decoder, model)
                    head = await _first_content(events, _loop_time(self.clock, first), first - start, model)
                    released = True  # the stream holds the slot until it ends
                    stream = _hold(_chain(head, events), limit, lambda: on_call(model.name, -1),
                                   tail=lambda secs, n, m=model.name: live.observe_tail(m, secs, n), clock=self.clock)
                    if run.route.on_cut == "resume":
                        stream = self._resumable(run, model, stream)
                    outcome = Outcome(model, run.attempts, run.skipped, events=stream)
        except UpstreamError as e:
            e.model = model.name
            att.error = e
            att.latency = self.clock.now() - start
            self._record_failure(model, e, run)
            raise
        except asyncio.CancelledError:
            att.cancelled = True
            if model.name in run.probes:
                self.outliers.abandon_probe(model.name)
            raise
        finally:
            if not released:
                if limit is not None:
                    limit.release()
                on_call(model.name, -1)
        att.latency = self.clock.now() - start
        self.latency.observe(model.name, att.latency)
        live.observe(model.name, att.latency, req.stream)
        self.outliers.record_success(model.name)
        outcome.attempt = att
        return outcome

    async def _split(self, call: UpstreamCall, adapter, model: ModelSpec, deadline: float) -> ChatResponse:
        """A call and its ``more``, all at once; the first failure cancels the rest and is the attempt's."""

        async def one(c: UpstreamCall) -> ChatResponse:
            resp = await self.client.request(c.method, c.url, c.headers, c.body, _loop_time(self.clock, deadline))
            if resp.status >= 400:
                body = await resp.read(_loop_time(self.clock, deadline), MAX_ERROR_BODY, truncate=True)
                raise adapter.error(resp.status, resp.headers, body, model)
            return adapter.parse(await resp.read(_loop_time(self.clock, deadline)), model)

        tasks = [asyncio.ensure_future(one(c)) for c in (call, *call.more)]
        try:
            return adapter.join(list(await asyncio.gather(*tasks)), model)
        finally:
            for t in tasks:
                t.cancel()

    def _record_failure(self, model: ModelSpec, e: UpstreamError, run: _Run | None = None) -> None:
        if e.upstream_kind in _UNHEALTHY:
            self.outliers.record_failure(model.name, e.origin, error=e.short())
            return
        if e.upstream_kind is UpstreamKind.RATE_LIMITED:
            self.cooldowns.cool(model.name, e.retry_after or _DEFAULT_COOL)
        if run is not None and model.name in run.probes:
            self.outliers.abandon_probe(model.name)  # says nothing of health: the next probe decides

    async def count(self, req: ChatRequest, model: ModelSpec, timeout: float = 10.0) -> int | None:
        """The vendor's own count of ``req``'s input tokens at ``model`` (``count_tokens``,
        ``countTokens``); None where its API has none, or the call failed: then the caller counts
        locally. A count is free and changes no state, so it takes no retries, breakers or ledger."""
        adapter = adapter_for(model.wire)
        try:
            call = adapter.count_call(req, model)
        except ClientError:
            return None
        if call is None:
            return None
        until = asyncio.get_running_loop().time() + timeout
        try:
            resp = await self.client.request(call.method, call.url, call.headers, call.body, until)
            body = await resp.read(until, MAX_ERROR_BODY, truncate=True)
        except (SwitchmanError, OSError):
            return None
        return adapter.parse_count(body) if resp.status == 200 else None

    # -- the ends ------------------------------------------------------------------------------
    def _exhausted(self, run: _Run) -> Outcome:
        errors = [a.error for a in run.attempts if a.error is not None]
        if not errors:
            if run.unsupported is not None:
                raise run.unsupported
            why = "no candidate model can take this request now: " + ", ".join(run.skipped)
            cooling = [c for c in (self.cooldowns.remaining(s.split(":")[0]) for s in run.skipped) if c > 0]
            cooling += run.limited
            if cooling:  # rate limited, upstream or by our own limits: come back when a limit lifts
                raise UpstreamStatus(why, upstream_kind=UpstreamKind.RATE_LIMITED, retry_after=min(cooling))
            if any(s.endswith("at-concurrency-limit") for s in run.skipped):
                raise UpstreamStatus(why, upstream_kind=UpstreamKind.OVERLOADED, retry_after=1.0)
            raise UpstreamStatus(why, upstream_kind=UpstreamKind.CONTEXT_WINDOW)
        # One model (maybe retried): its own error says the most.
        e = errors[-1] if len({a.model for a in run.attempts}) == 1 else AllAttemptsFailed(errors)
        e.attempts = run.attempts  # for whoever accounts them (a cascade that falls back)
        raise e

    def _degrade(self, run: _Run, model: ModelSpec) -> Outcome:
        """The route's fixed reply, marked as such (reason and model header say 'degraded')."""
        text = run.route.degrade_reply or ""
        resp = ChatResponse(id="degraded", model="switchman-degraded", parts=[TextPart(text)],
                            finish_reason=FinishReason.STOP, usage=Usage(estimated=True))
        o = Outcome(model, run.attempts, run.skipped, degraded=True)
        if run.req.stream:
            o.events = replay(resp)
        else:
            o.response = resp
        return o

    def _resumable(self, run: _Run, model: ModelSpec, stream: AsyncIterator[StreamEvent]) -> Opened[StreamEvent]:
        """``on_cut: resume``: when the stream breaks after its first byte, ask the next candidate
        to continue the text so far, and splice its answer in, so the client sees one answer. A
        cut inside a tool call cannot be spliced (the arguments would be two models' halves):
        that one ends with the error event. Closing it closes both streams."""
        resumed: list[AsyncIterator[StreamEvent]] = []  # the fallback's events, once it answers

        async def close() -> None:
            await stream.aclose()  # type: ignore[attr-defined]
            for events in resumed:
                await events.aclose()  # type: ignore[attr-defined]

        async def gen() -> AsyncIterator[StreamEvent]:
            try:
                text: list[str] = []
                in_tool = False
                usage: Usage | None = None
                try:
                    async for ev in stream:
                        t = type(ev)
                        if t is TextDelta:
                            text.append(ev.text)
                        elif t is ToolCallStart or t is ToolCallDelta:
                            in_tool = True
                        elif t is UsageEvent:
                            usage = ev.usage
                        yield ev
                    return
                except UpstreamError as cut:
                    if in_tool:
                        raise
                    self._record_failure(model, cut)
                    partial = "".join(text)
                    for a in reversed(run.attempts):
                        if a.model == model.name and a.error is None:
                            # the answering attempt failed after all: it counts as failed, and
                            # what it streamed (and usage reported before the cut) is paid for
                            a.error, a.cut_text, a.usage = cut, partial, usage
                            break
                cont = _continuation(run.req, partial)
                others = [m for m in run.candidates if m.name != model.name]
                sub = _Run(cont, _DEFAULT_ROUTE, run.deadline, others, run.attempts, run.skipped,
                           est_tokens=cont.estimated_tokens())
                try:
                    outcome = await self._sequential(sub, others)
                except (UpstreamError, AllAttemptsFailed) as e:
                    raise StreamCut(f"stream cut and could not be resumed: {e}", model=model.name) from None
                assert outcome.events is not None
                resumed.append(outcome.events)
                run.attempts[-1].role = "resume"
                async for ev in outcome.events:
                    if type(ev) is Start:
                        continue
                    yield ev
            finally:
                await close()

        return Opened(gen(), close)


async def _lost(o: Outcome) -> None:
    """A hedge that answered but lost the race: marked so, a stream closed (its connection with
    it), a whole answer's usage kept for the ledger (the provider bills it all the same)."""
    att = o.attempt
    assert att is not None
    att.cancelled = True
    if o.events is not None:
        # A stream never iterated would close without its clean-up: take its first event (in hand
        # already), so closing it closes its connection and frees its concurrency slot.
        await anext(o.events, None)  # type: ignore[call-overload]
        await o.events.aclose()  # type: ignore[attr-defined]
    elif o.response is not None:
        att.usage = o.response.usage


class _Skip(UpstreamError):
    """A candidate passed over before any call (unsupported input, concurrency limit)."""

    upstream_kind = UpstreamKind.OVERLOADED
    origin = Origin.LOCAL


def _counted(req: ChatRequest, resp: ChatResponse) -> ChatResponse:
    if resp.usage is None and req.embedding is not None:  # Gemini's embeddings report none
        resp.usage = Usage(input_tokens=tokens.count("".join(req.texts())), estimated=True)
    return resp


def _check_takes(req: ChatRequest, model: ModelSpec, kind: str) -> None:
    """``Unsupported`` when ``model`` cannot take ``req`` at all: a chat request to an embedding
    model (or the reverse), or a field only the client's own API has toward another API."""
    mode = catalog.mode_of(model.upstream)
    if mode is not None and (mode == "embedding") != (req.embedding is not None):
        raise Unsupported(f"'{model.name}' is {'an embedding' if mode == 'embedding' else 'a chat'} model: it "
                          f"makes no {'chat answers' if mode == 'embedding' else 'embeddings'}", param="model")
    if req.native_only and kind != req.dialect:
        hint = ("; send the whole conversation in messages instead (the SDK's thread=False)"
                if req.native_only == "thread" else "")
        raise Unsupported(f"{req.native_only} can only be sent to a model of the {req.dialect} API; "
                          f"{model.name} is reached through the {kind} API{hint}", param=req.native_only)


def _loop_time(clock: Clock, t: float) -> float:
    """Our deadlines are on ``clock``; the transport's are on the event loop's clock."""
    return asyncio.get_running_loop().time() + (t - clock.now())


def _continuation(req: ChatRequest, partial: str) -> ChatRequest:
    """The request that asks a fallback model to continue ``partial`` seamlessly."""
    msgs = list(req.messages)
    msgs.append(Message(Role.ASSISTANT, [TextPart(partial)]))
    msgs.append(Message(Role.USER, [TextPart(
        "Your previous answer was cut off. Continue it exactly from where it stopped, without repeating "
        "anything and without any preamble.")]))
    return replace(req, messages=msgs, raw=None, dialect="", passthrough_headers=None)


def replay(resp: ChatResponse) -> AsyncIterator[StreamEvent]:
    """A whole answer as a stream: for a streaming client served a buffered answer."""
    return _iterate(events_of(resp))


async def _iterate(evs: list[StreamEvent]) -> AsyncIterator[StreamEvent]:
    for ev in evs:
        yield ev


async def _decode(chunks: AsyncIterator[bytes], decoder, model: ModelSpec) -> AsyncIterator[StreamEvent]:
    sse = SSEDecoder()
    try:
        async for chunk in chunks:
            for name, data in sse.feed(chunk):
                for ev in decoder.feed(name, data):
                    yield ev
        if not decoder.done:
            raise StreamCut("upstream stream ended before its end marker", model=model.name)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def _first_content(events: AsyncIterator[StreamEvent], deadline: float, seconds: float,
                         model: ModelSpec) -> list[StreamEvent]:
    """Pull events until the first one a client would see as content, within ``deadline``."""
    head: list[StreamEvent] = []
    try:
        async with asyncio.timeout_at(deadline):
            async for ev in events:
                head.append(ev)
                if isinstance(ev, _CONTENT):
                    return head
    except TimeoutError:
        await events.aclose()  # type: ignore[attr-defined]
        raise UpstreamTimeout(f"no first token within {seconds:g}s", model=model.name) from None
    except BaseException:
        await events.aclose()  # type: ignore[attr-defined]
        raise
    # The stream ended (cleanly) before any content: an empty answer is still an answer.
    if not any(type(e) is Finish for e in head):
        raise StreamCut("upstream stream ended before any content", model=model.name)
    return head


def _chain(head: list[StreamEvent], rest: AsyncIterator[StreamEvent]) -> Opened[StreamEvent]:
    async def gen() -> AsyncIterator[StreamEvent]:
        try:
            for ev in head:
                yield ev
            async for ev in rest:
                yield ev
        finally:
            await rest.aclose()  # type: ignore[attr-defined]

    return Opened(gen(), rest.aclose)  # type: ignore[attr-defined]


def _hold(stream: AsyncIterator[StreamEvent], limit: ConcurrencyLimit | None,
          ended: Callable[[], None] | None = None, tail: Callable[[float, int], None] | None = None,
          clock: Clock | None = None) -> Opened[StreamEvent]:
    """Keep the model's concurrency slot until the stream ends, however it ends (closed unread
    included); then call ``ended``. A stream read whole to its finish tells ``tail`` the seconds
    from now (its first token is in) to its end and its output tokens (as reported, else about
    four characters a token)."""
    t0 = clock.now() if clock is not None and tail is not None else 0.0

    async def close() -> None:
        try:
            await stream.aclose()  # type: ignore[attr-defined]
        finally:
            if limit is not None:
                limit.release()
            if ended is not None:
                ended()

    async def gen() -> AsyncIterator[StreamEvent]:
        try:
            if tail is None or clock is None:
                async for ev in stream:
                    yield ev
                return
            chars = tokens = 0
            finished = False
            async for ev in stream:
                t = type(ev)
                if t is TextDelta:
                    chars += len(ev.text)  # type: ignore[union-attr]
                elif t is UsageEvent:
                    tokens = ev.usage.output_tokens or tokens  # type: ignore[union-attr]
                elif t is Finish:
                    finished = True
                yield ev
            if finished:
                tail(clock.now() - t0, tokens or (chars + 3) // 4)
        finally:
            await close()

    return Opened(gen(), close)
