"""Metering: the request path's side of the accounting package — admit a request (key, rate
limits, budget reservation, soft-limit downgrade, cost cap), count each model call against the
model's own rpm/tpm limits, then settle what it really cost, one ledger row per request and per
attempt. Settling happens off the request path (``Accountant.settle_later``).

The HTTP server (``app``) and in-process callers (``Metering.chat``) go through the same steps::

    async with Metering.from_config(Gateway.from_config("switchman.yaml")) as meter:
        reply = await meter.chat(model="auto", messages=[...], api_key=..., tags={"team": "search"})
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import replace
from decimal import Decimal

import orjson

from . import tokens
from .accounting import requestlog
from .accounting.admin import AdminApi
from .accounting.facade import Accountant, Admission, AdmissionContext
from .accounting.records import AttemptRecord, RequestRecord, Role
from .adapters.anthropic import auto_cache
from .cache.exact import ExactCache, Lookup
from .config import Config, ModelSpec
from .dialects import dialect_for
from .errors import Forbidden, SwitchmanError
from .executor import Outcome, cost_of, replay
from .gateway import Gateway, Planned, Reply
from .streams import Opened
from .types import (ChatRequest, ChatResponse, Finish, ResponseBuilder, StreamEvent, TextDelta, ToolCallDelta, ToolCallStart,
                    Message, TextPart, Usage, UsageEvent)
from .types import Role as Speaker
from .types import Start

log = logging.getLogger("switchman.accounting")

_ROLES = {r.value: r for r in Role}

# The admission of the request the current task is serving. The executor's per-model rate limit
# hook reads it, so each model call's tokens are corrected to the usage when the request settles,
# without the executor (or the gateway between) knowing of admissions. Attempts run in the
# request's task or in tasks it starts (hedges), which inherit it.
_ADMISSION: ContextVar[Admission | None] = ContextVar("switchman_admission", default=None)


_RANDOM: list[str] = []  # 64-bit hex strings, drawn from os.urandom a few hundred at a time
os.register_at_fork(after_in_child=_RANDOM.clear)  # a forked worker never reuses its parent's draws


def new_request_id() -> str:
    """A request id that sorts by time (milliseconds, then 64 random bits). The ledger is keyed by
    it: near-append-order keys keep its inserts and commits cheap, where random ones dirty index
    pages all over (SQLite: about 10 against 17 µs of CPU per entry). The random bits come from
    one ``os.urandom`` call per 512 ids (a system call per id was 3% of an exact cache hit's CPU)."""
    if not _RANDOM:
        h = os.urandom(8 * 512).hex()
        _RANDOM.extend(h[i:i + 16] for i in range(0, len(h), 16))
    return f"req_{time.time_ns() // 1_000_000:012x}{_RANDOM.pop()}"


class Ticket:
    """One admitted request, until it is settled (exactly once)."""

    __slots__ = ("meter", "adm", "rid", "t0", "route", "plan", "warning", "creq", "done", "streamed", "cache",
                 "lookup", "control", "internal")

    def __init__(self, meter: Metering, adm: Admission, rid: str, creq: ChatRequest, plan: Planned) -> None:
        self.meter = meter
        self.adm = adm
        self.rid = rid
        self.t0 = time.time()
        self.creq = creq
        self.plan = plan
        self.route = plan.route.name
        self.warning = adm.warning
        self.done = False
        self.streamed = ""  # a stream's text, for the kept bodies
        self.cache: str | None = None  # hit | miss | bypass, when the cache is on
        self.lookup: Lookup | None = None
        self.control: str | None = None  # x-switchman-cache: no-store | no-cache | only-if-cached
        self.internal = False  # the gateway's own call (a cache judge): never answered from the cache

    async def run(self, deadline: float | None = None) -> Reply:
        """Execute the admitted plan (or answer from the cache). A failure settles the ticket and
        is raised; a streaming reply's events settle it when they end, however they end."""
        cache = self.meter.cache if not self.internal and self.creq.embedding is None else None
        if cache is not None:
            s = self.plan.route.cache or cache.settings
            try:
                lk = self.lookup = await cache.lookup(self.creq, s, _scope(s.scope, self.adm, self.creq),
                                                      self.control)
            except Exception:  # noqa: BLE001 - a cache that fails is a miss, never a failed request
                log.exception("request %s: cache lookup failed; going upstream", self.rid)
                lk = self.lookup = Lookup("bypass")
            self.cache = lk.kind
            if lk.state == "hit":
                return self._hit(lk)
            if self.control == "only-if-cached":
                e = SwitchmanError("no answer in the cache for this request (x-switchman-cache: only-if-cached)",
                                   status=504, kind="cache_miss")
                self._cached(None, None)
                self.failed(e)
                raise e
        try:
            reply = await self.meter.gateway.run(self.creq, deadline=deadline, request_id=self.rid, plan=self.plan)
        except BaseException as e:
            self._cached(None, None)
            if isinstance(e, asyncio.CancelledError):  # the client went away: still release the reservation
                e = SwitchmanError("the client went away", status=499, kind="cancelled")
            self.failed(e if isinstance(e, SwitchmanError) else SwitchmanError("internal error"))
            raise
        reply.cache = self.cache
        if reply.outcome.events is not None:
            reply.outcome.events = self.stream(reply, reply.outcome.events)
        else:
            self.answered(reply, reply.response.usage if reply.response is not None else None)
            self._cached(reply.response if not reply.outcome.degraded else None, reply.outcome.model.name)
        return reply

    def _cached(self, resp: ChatResponse | None, model: str | None) -> None:
        """The miss is over: keep its answer (if complete), release identical requests waiting."""
        lk, cache = self.lookup, self.meter.cache
        if lk is not None and cache is not None and (lk.key is not None or lk.leader is not None):
            cache.done(lk, resp, model, (self.plan.route.cache or cache.settings).ttl)
            self.lookup = None

    def _hit(self, lk: Lookup) -> Reply:
        """Answer from the cache: no model called, $0 in the ledger, the answer's price as saved."""
        models = self.meter.config.models
        m = models.get(lk.model or "") or (self.plan.models[0] if self.plan.models else None)
        resp = lk.response
        outcome = Outcome(m, [], [], response=None if self.creq.stream else resp,
                          events=replay(resp) if self.creq.stream else None)
        p = lk.probe
        if p is None:
            reason = f"cache hit (exact): answered by {lk.model} before"
        else:
            # the kept prompt itself is not quoted: with a shared scope it may be another caller's words
            reason = (f"cache hit (semantic, similarity {p.sim:.3f} >= {p.threshold:.3f} learned for max_error "
                      f"{lk.semantic.max_error if lk.semantic else ''}): answered by {lk.model} before for a "
                      f"prompt like this one (entry {p.entry.id})" if p.entry is not None else "cache hit (semantic)")
        reply = Reply(self.route, reason, outcome, cache=lk.kind)
        saved = cost_of(m, resp.usage or Usage()) if m is not None else Decimal(0)
        self.meter.cache.saved += saved
        self.done = True
        req = RequestRecord(request_id=self.rid, time=self.t0, route=self.route, model=m.name if m else None,
                            provider=m.provider.name if m else None, status=200, baseline_cost=saved, cache=lk.kind,
                            latency_ms=(time.time() - self.t0) * 1000, reason=reason, stream=self.creq.stream,
                            **self._context_fields())
        self.meter.accountant.settle_later(self.adm, req, ())
        return reply

    def stream(self, reply: Reply, events: AsyncIterator[StreamEvent]) -> Opened[StreamEvent]:
        """``events`` (``reply``'s), passed through, noting the usage reported and the text
        streamed; settled when they end or are closed, read or not."""

        async def unread() -> None:
            await events.aclose()  # type: ignore[attr-defined]
            self.answered(reply, None, "", complete=False)
            self._cached(None, None)

        keep = ResponseBuilder() if self.lookup is not None and not reply.outcome.degraded else None


        async def gen() -> AsyncIterator[StreamEvent]:
            usage = None
            out: list[str] = []
            complete = False
            try:
                async for ev in events:
                    if keep is not None:
                        keep.add(ev)
                    t = type(ev)
                    if t is UsageEvent:
                        usage = ev.usage
                    elif t is TextDelta:
                        out.append(ev.text)
                    elif t is ToolCallDelta:
                        out.append(ev.arguments)
                    elif t is ToolCallStart:
                        out.append(ev.name)
                    elif t is Finish:
                        complete = True
                    yield ev
            finally:
                await events.aclose()  # type: ignore[attr-defined]
                self.answered(reply, usage, "".join(out), complete=complete)
                self._cached(keep.build() if keep is not None and complete else None, reply.outcome.model.name)

        return Opened(gen(), unread)

    def answered(self, reply: Reply, usage: Usage | None, streamed: str = "", complete: bool = True) -> None:
        """Settle an answered request. A stream cut before its end (``complete`` false) or that
        never reported usage is counted locally (``tokens``), in the background, and marked
        estimated; so is a stream that broke and was resumed by another model (``on_cut:
        resume``): what it had sent is paid for."""
        if self.done:
            return
        self.done = True
        self.streamed = streamed
        acc = self.meter.accountant
        winner = _winner(reply)
        if usage is not None and winner is not None:
            why = self._unusable(usage, reply.outcome.attempts[winner].model)
            if why is not None:  # counted locally instead, and flagged estimated
                log.warning("request %s: %s reported usage the ledger cannot take (%s); counting it locally",
                            self.rid, reply.outcome.attempts[winner].model, why)
                usage = None
                reply.usage_refused = why
                reply.reason = f"{reply.reason}; usage reported by {reply.outcome.attempts[winner].model} " \
                               f"not booked ({why}): counted locally"
                if not streamed and reply.response is not None:
                    streamed = _answer_text(reply.response)
        uncounted = (usage is None or not complete) and winner is not None
        try:
            if uncounted or any(a.cut_text is not None for a in reply.outcome.attempts):
                acc.later(self._estimated(reply, usage, streamed, uncounted))
            else:
                acc.settle_later(self.adm, *self._records(reply, usage))
        except Exception:  # noqa: BLE001 - the answer went out: the reservation must still be released
            log.exception("request %s: booking its usage failed; settled as an accounting error", self.rid)
            self._settle_error(reply)

    def _unusable(self, u: Usage, model: str) -> str | None:
        """Why an upstream's usage cannot be booked as reported (None: it can): unreadable counts
        (the adapter said so), or counts past what the model could have read or written."""
        if u.invalid:
            return u.invalid
        m = self.meter.config.models.get(model)
        if m is None:
            return None
        window = m.context_window or 10_000_000
        if u.input_tokens == 0:  # every prompt is at least a token: the counts are missing
            return "no input tokens reported"
        if u.input_tokens > 2 * window:
            return f"input_tokens={u.input_tokens} is past twice the model's window of {window}"
        cap = m.output_cap(self.creq.max_tokens)
        if u.output_tokens > 2 * cap + 1024:
            return f"output_tokens={u.output_tokens} is past twice the output cap of {cap} sent with the call"
        return None

    def _settle_error(self, reply: Reply) -> None:
        req = RequestRecord(request_id=self.rid, time=self.t0, route=self.route, model=reply.outcome.model.name,
                            provider=None, status=200, error="accounting_error",
                            latency_ms=(time.time() - self.t0) * 1000, stream=self.creq.stream, estimated=True,
                            **self._context_fields())
        self.meter.accountant.settle_later(self.adm, req, ())

    async def _estimated(self, reply: Reply, usage: Usage | None, streamed: str, count_winner: bool = True) -> None:
        prompt_text = "".join(self.creq.texts())
        if count_winner:
            usage = await self._counted(prompt_text, usage, streamed, self._cap(reply.outcome.model.name))
        for a in reply.outcome.attempts:
            if a.cut_text is not None:  # broken, then resumed by another model: it saw the original prompt
                a.usage = await self._counted(prompt_text, a.usage, a.cut_text, self._cap(a.model))
                a.cut_text = None
        try:
            records = self._records(reply, usage)
        except Exception:  # noqa: BLE001 - never leave the reservation held
            log.exception("request %s: booking its usage failed; settled as an accounting error", self.rid)
            self._settle_error(reply)
            return
        await self.meter.accountant.settle(self.adm, *records)

    def _cap(self, model: str) -> int | None:
        """The output cap the call to ``model`` was sent with: no count of its answer can be more."""
        m = self.meter.config.models.get(model)
        return m.output_cap(self.creq.max_tokens) if m is not None else None

    @staticmethod
    async def _counted(prompt_text: str, usage: Usage | None, streamed: str, cap: int | None = None) -> Usage:
        """The usage of a stream that did not report all of it: counted locally, estimated. The
        output is at most ``cap``: the upstream stopped there, whatever the local count says."""
        prompt, out = await tokens.count_later(prompt_text, streamed)
        if cap is not None:
            out = min(out, cap)
        if usage is None:
            return Usage(input_tokens=prompt, output_tokens=out, estimated=True)
        # the part reported before the cut (e.g. Anthropic's message_start), then what streamed
        return Usage(input_tokens=usage.input_tokens or prompt, output_tokens=max(usage.output_tokens, out),
                     cache_read_tokens=usage.cache_read_tokens, cache_write_tokens=usage.cache_write_tokens,
                     cache_write_1h_tokens=usage.cache_write_1h_tokens, estimated=True)

    def _records(self, reply: Reply, usage: Usage | None) -> tuple[RequestRecord, list[AttemptRecord]]:
        models = self.meter.config.models
        o = reply.outcome
        winner = _winner(reply)
        atts = []
        for i, a in enumerate(o.attempts):
            m = models.get(a.model)
            rec = AttemptRecord(index=i, role=_ROLES.get(a.role, Role.FALLBACK), model=a.model, provider=a.provider,
                                status=200, latency_ms=a.latency * 1000, time=a.started or self.t0)
            if a.usage is not None and i != winner and self._unusable(a.usage, a.model) is not None:
                # a judge, a rejected or a cut answer that reported garbage: its prompt, estimated
                a.usage = Usage(input_tokens=self.creq.estimated_tokens(), estimated=True)
            if i == winner and m is not None:
                _book(rec, m, usage or Usage())
                rec.ttft_ms = a.latency * 1000 if self.creq.stream else None
            elif a.error is not None:
                rec.status = a.error.upstream_status or a.error.status
                rec.error = a.error.kind
                rec.detail = a.error.message[:300]
                if a.usage is not None and m is not None:  # a stream that broke after sending: paid for
                    _book(rec, m, a.usage)
            elif a.usage is not None and m is not None:  # answered, not sent, paid for all the same
                _book(rec, m, a.usage)
                rec.error = "rejected" if a.rejected else "hedge_lost" if a.cancelled else None  # None: a judge
                rec.detail = a.rejected[:300] if a.rejected else None
            else:  # a hedge that lost: cancelled mid-generation, its usage never reported
                rec.status, rec.error = 499, "cancelled"
            atts.append(rec)
        answered = atts[winner] if winner is not None else None
        req = RequestRecord.from_attempts(
            self.rid, self.t0, self.route, atts, answered,
            latency_ms=(time.time() - self.t0) * 1000, reason=reply.reason, stream=self.creq.stream,
            cache=self.cache, **self._context_fields(),
            **({} if answered else {"status": 200, "error": "degraded"}),
        )
        if self.meter.keep_bodies:
            answer = self.streamed or (_answer_text(reply.response) if reply.response is not None else "")
            req.bodies = self._bodies(answer)
        return req, atts

    def _bodies(self, answer: str) -> tuple[str, str, bool]:
        """The prompt (the client's own body) and the answer's text, each cut to the configured size."""
        cap = self.meter.body_cap
        raw = self.creq.raw
        prompt = orjson.dumps(raw).decode() if raw is not None else "".join(self.creq.texts())
        cut = len(prompt) > cap or len(answer) > cap
        return prompt[:cap], answer[:cap], cut

    def _context_fields(self) -> dict:
        c = self.creq
        out = {"episode": c.episode, "dialect": c.dialect or None, "traceparent": c.traceparent}
        if self.plan.arm is not None or self.plan.tags:
            # an experiment's arm, a bandit's prompt cluster: tags that spend, the log and feedback see
            out["tags"] = {**self.adm.tags, **dict(self.plan.tags)}
            if self.plan.arm is not None:
                out["tags"][f"exp.{self.route}"] = self.plan.arm
        return out

    def failed(self, err: SwitchmanError) -> None:
        """Every candidate failed (or the request was refused after admission): settling still
        releases the reservation."""
        if self.done:
            return
        self.done = True
        req = RequestRecord(request_id=self.rid, time=self.t0, route=self.route, model=None, provider=None,
                            status=err.status, error=err.kind, latency_ms=(time.time() - self.t0) * 1000,
                            stream=self.creq.stream, reason=f"{self.plan.reason}; failed: {err.message[:200]}",
                            cache=self.cache, **self._context_fields())
        if self.meter.keep_bodies:
            req.bodies = self._bodies("")
        self.meter.accountant.settle_later(self.adm, req, ())


def _scope(kind: str, adm: Admission, creq: ChatRequest) -> str:
    """Whose answers a cached one may be served to: this key's (the default), this user's, this
    team's (the ``team`` tag) or everyone's. Without a user or team, the key's."""
    if kind == "global":
        return "global"
    if kind == "team" and (adm.tags or {}).get("team"):
        return f"team:{adm.tags['team']}"
    user = creq.end_user or creq.user
    if kind == "user" and user:
        return f"user:{adm.key_id or '-'}:{user}"
    return f"key:{adm.key_id or '-'}"


def _winner(reply: Reply) -> int | None:
    """The index of the attempt that answered (None: the route's fixed degraded reply)."""
    o = reply.outcome
    if o.degraded:
        return None
    winner = None
    for i, a in enumerate(o.attempts):  # not a cascade's rejected answer, nor its judge's grade
        if a.error is None and not a.cancelled and a.rejected is None and a.role != "judge":
            winner = i
    return winner


def _answer_text(resp) -> str:
    """What a whole answer said, for counting its tokens locally."""
    out = []
    for p in resp.parts:
        t = getattr(p, "text", None)
        if t:
            out.append(t)
        else:
            out.append(getattr(p, "name", "") + str(getattr(p, "arguments", "")))
    return "".join(out)


def _book(rec: AttemptRecord, m: ModelSpec, u: Usage) -> None:
    rec.input_tokens, rec.output_tokens = u.input_tokens, u.output_tokens
    rec.cache_read_tokens, rec.cache_write_tokens = u.cache_read_tokens, u.cache_write_tokens
    rec.cache_write_1h_tokens = u.cache_write_1h_tokens
    rec.estimated = u.estimated
    rec.cost = m.price.cost(u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens,
                            u.cache_write_1h_tokens)
    if u.cache_read_tokens or u.cache_write_tokens:
        rec.uncached = m.price.cost(u.input_tokens, u.output_tokens)


class Metering:
    def __init__(self, gateway: Gateway, accountant: Accountant) -> None:
        self.gateway = gateway
        self.config: Config = gateway.config
        self.accountant = accountant
        self.admin = AdminApi(accountant)
        tele = self.config.telemetry
        # prompts and answers: kept in the request log (log.bodies) or put on traces (tracing.content)
        self.keep_bodies = tele is not None and (tele.log.bodies or (tele.tracing.content and bool(tele.tracing.endpoint)))
        self.body_cap = (tele.log.max_body_kb if tele is not None else 64) * 1024
        self._pruning: asyncio.Task | None = None
        c = self.config.cache
        on = c is not None and (c.enabled or any(r.cache is not None and r.cache.enabled
                                                 for r in self.config.routes.values()))
        sem = {s.embedder for s in [c.semantic if c is not None else None,
                                    *(r.cache.semantic for r in self.config.routes.values() if r.cache is not None)]
               if s is not None}
        self.cache: ExactCache | None = ExactCache(c, semantic=sem) if on else None
        if self.cache is not None:
            self.cache.ask = self._ask
        # Per-model rpm/tpm limits cost a shared-state round trip per model call: only when set.
        if any(m.limits.rpm or m.limits.tpm for m in self.config.models.values()):
            gateway.executor.rate_limit = self._model_limit

    @classmethod
    def from_config(cls, gateway: Gateway) -> Metering | None:
        cfg = gateway.config
        if cfg.accounting is None:
            return None
        acc = Accountant(cfg.accounting, required=cfg.auth.keys_required or bool(cfg.auth.admin_key),
                         admin_key=cfg.auth.admin_key)
        return cls(gateway, acc)

    async def start(self) -> None:
        await self.accountant.start()
        tele = self.config.telemetry
        if tele is not None and tele.log.bodies and self.accountant.ledger is not None:
            self._pruning = asyncio.create_task(self._prune(tele.log.retention_days * 86400))

    async def _prune(self, keep: float) -> None:
        """Delete kept bodies past their retention, at start and every hour."""
        while True:
            try:
                n = await requestlog.prune_bodies(self.accountant.store, self.accountant._now() - keep)
                if n:
                    log.info("deleted %d request bodies older than the retention period", n)
            except Exception as e:  # noqa: BLE001 - the database may be down: try again later
                log.warning("pruning request bodies failed: %s", e)
            await asyncio.sleep(3600)

    async def close(self) -> None:
        if self._pruning is not None:
            self._pruning.cancel()
        if self.cache is not None:
            await self.cache.close()
        await self.accountant.close()  # drains the ledger: nothing written is lost

    async def __aenter__(self) -> Metering:
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def admit(self, rid: str, creq: ChatRequest, api_key: str | None, tags: Mapping[str, str],
                    user: str | None, max_cost: Decimal | None) -> Ticket:
        caller = await self.accountant.identify(api_key or None)
        key = caller[0]
        if key is not None and key.routes is not None and creq.model not in key.routes:
            # before the name is looked up: a restricted key learns nothing of names it may not use
            # (an unknown one and a forbidden one answer alike; money probe F11)
            raise Forbidden(f"key '{key.name}' may not use '{creq.model}' (it may use: {', '.join(key.routes)})",
                            param="model")
        if key is not None:  # the route's policy sees the key's tags and user, as budgets do
            creq.key_id = key.id
            if key.tags:
                creq.tags = {**(creq.tags or {}), **key.tags}
            if key.user:
                creq.end_user = key.user
        plan = self.gateway.candidates(creq)
        ctx = self._context(creq, plan, api_key, tags, user, max_cost, caller)
        adm = await self.accountant.admit(ctx)
        _ADMISSION.set(adm)
        if adm.downgrade_to and adm.downgrade_to != creq.model:
            plan = self._downgraded(creq, plan, adm, ctx, key)
        else:
            self._narrowed(plan, adm)
        return Ticket(self, adm, rid, creq, plan)

    def _context(self, creq: ChatRequest, plan: Planned, api_key: str | None, tags: Mapping[str, str],
                 user: str | None, max_cost: Decimal | None, caller) -> AdmissionContext:
        """What admission needs to know of a plan: every model it may call and every extra paid
        call (a cascade's judge, a hedge, a resumed stream), so the worst case is reserved."""
        route = plan.route
        judge = plan.checks.spec.judge if plan.checks is not None and plan.checked else None
        return AdmissionContext(
            api_key=api_key or None, route=creq.model, candidates=plan.models,
            input_tokens=creq.estimated_tokens(), max_tokens=creq.max_tokens,
            tags=tags, user=user or creq.user, max_cost_usd=max_cost,
            direct=creq.model in self.config.models, checked=plan.checked if plan.checks else 0,
            caller=caller, cache_writes=creq.cache_marked or any(auto_cache(creq, m) for m in plan.models),
            judge=self.config.models.get(judge) if judge else None,
            hedge=route.hedge.max if route.hedge is not None else 0,
            resume=creq.stream and route.on_cut == "resume",
        )

    def _narrowed(self, plan: Planned, adm: Admission) -> None:
        """``plan`` cut to what admission reserved for: candidates within the cost cap, and without
        the extras it dropped to fit it."""
        plan.models = [m for m in plan.models if m.name in adm.models]
        plan.checked = min(plan.checked, max(len(plan.models) - 1, 0))
        if not adm.dropped:
            return
        if "hedge" in adm.dropped and plan.route.hedge is not None:
            plan.route = replace(plan.route, hedge=None)
        if "resume" in adm.dropped:
            plan.route = replace(plan.route, on_cut="error")
        if "judge" in adm.dropped and plan.checked:
            plan.models, plan.checked = plan.models[plan.checked:], 0  # unjudged stages are no safety net
        plan.reason = f"{plan.reason}; cost cap: left out {', '.join(sorted(adm.dropped))}"

    def _downgraded(self, creq: ChatRequest, plan: Planned, adm: Admission, ctx: AdmissionContext,
                    key) -> Planned:
        """The soft limit's cheaper route, if the key may use it and its worst case fits what was
        reserved and the cost cap (money probe F6); else the original plan, with the reason."""
        target = adm.downgrade_to
        original = creq.model
        why = None
        if key is not None and key.routes is not None and target not in key.routes:
            why = f"key '{key.name}' may not use it"
        else:
            creq.model = target  # type: ignore[assignment]
            try:
                down = self.gateway.candidates(creq)
                dctx = replace(ctx, route=target, candidates=down.models,
                               checked=down.checked if down.checks else 0, max_cost_usd=ctx.max_cost_usd)
                costs, most, dropped = self.accountant.fit(dctx)
            except SwitchmanError as e:
                why = e.message[:80]
            else:
                if most > adm.max_cost:
                    why = f"it could cost up to ${most:.6f}, more than the ${adm.max_cost:.6f} reserved"
                else:
                    adm.models, adm.dropped = tuple(m.name for m, _ in costs), dropped
                    self._narrowed(down, adm)
                    down.reason = f"{down.reason}; budget soft limit: downgraded to {target}"
                    return down
            creq.model = original
        self._narrowed(plan, adm)
        plan.reason = f"{plan.reason}; budget soft limit: downgrade to {target} skipped ({why})"
        return plan

    async def _ask(self, model: str, system: str, prompt: str) -> str | None:
        """The semantic cache's judge: one call of ``model``, admitted, billed and logged like any
        request (as the admin, tagged ``switchman=cache-verify``); None when it fails."""
        creq = ChatRequest(model=model, messages=[Message(Speaker.USER, [TextPart(prompt)])],
                           system=[TextPart(system)], max_tokens=3, temperature=0.0)
        try:
            ticket = await self.admit(new_request_id(), creq, self.accountant.admin_key,
                                      {"switchman": "cache-verify"}, None, None)
            ticket.internal = True
            reply = await ticket.run()
            return reply.response.text() if reply.response is not None else None
        except Exception as e:  # noqa: BLE001 - a judge that fails teaches nothing, and fails nothing
            log.warning("cache judge %s failed: %s", model, e)
            return None

    async def chat(self, *, api_key: str | None = None, tags: Mapping[str, str] | None = None,
                   max_cost_usd: Decimal | None = None, deadline: float | None = None, **body) -> Reply:
        """``Gateway.chat`` as the server does it: the key, rate limits and budgets apply (raising
        what the server would answer: ``Unauthorized``, ``Forbidden``, ``RateLimited``,
        ``BudgetExceeded``), and the request and its attempts go to the ledger. A streaming
        reply's events settle it when they end or are closed."""
        creq = dialect_for("openai").decode(body)
        creq.tags = dict(tags) if tags else None  # rules see them, as they see x-switchman-tags
        ticket = await self.admit(new_request_id(), creq, api_key, tags or {}, None, max_cost_usd)
        return await ticket.run(deadline)

    async def feedback(self, fb: dict, key_id: str | None, admin: bool) -> tuple[int, dict]:
        """Store feedback (``POST /v1/feedback``). A request this worker settled moments ago may
        still be in the ledger's buffer: written first, then looked for again."""
        acc = self.accountant
        try:
            got = await requestlog.add_feedback(acc.store, fb, key_id, admin, acc._now(), wait=0)
        except requestlog.NotFound:
            if not requestlog.fresh(fb["request_id"]) and fb["request_id"] is not None:
                raise
            await acc.flush()
            got = await requestlog.add_feedback(acc.store, fb, key_id, admin, acc._now())
        if got[0] == 201 and fb["metric"] == "quality" and "target" in fb:  # new: a policy may learn from it
            route, model, tags = fb["target"]
            self.gateway.feedback(route, model, fb["score"], tags)
        return got

    async def _model_limit(self, model: ModelSpec, prompt_tokens: int) -> tuple[str, float] | None:
        """The executor's ``rate_limit`` hook: one call of ``model`` against its own limits."""
        return await self.accountant.try_model(_ADMISSION.get(), model, prompt_tokens)
