"""Metering: the request path's side of the accounting package — admit a request (key, rate
limits, budget reservation, soft-limit downgrade, cost cap), then settle what it really cost, one
ledger row per request and per attempt. Settling happens off the request path (``settle_later``)."""

from __future__ import annotations

import time
from decimal import Decimal

from .accounting.admin import AdminApi
from .accounting.facade import Accountant, Admission, AdmissionContext
from .accounting.records import AttemptRecord, RequestRecord, Role, cost, parse_tags
from .config import Config, ModelSpec, RouteSpec
from .errors import SwitchmanError
from .gateway import Gateway, Reply
from .types import CHARS_PER_TOKEN, ChatRequest, Usage

_ROLES = {r.value: r for r in Role}


class Ticket:
    """One admitted request, until it is settled (exactly once)."""

    __slots__ = ("meter", "adm", "rid", "t0", "route", "plan", "warning", "creq", "done")

    def __init__(self, meter: Metering, adm: Admission, rid: str, creq: ChatRequest,
                 plan: tuple[RouteSpec, list[ModelSpec], str]) -> None:
        self.meter = meter
        self.adm = adm
        self.rid = rid
        self.t0 = time.time()
        self.creq = creq
        self.plan = plan
        self.route = plan[0].name
        self.warning = adm.warning
        self.done = False

    def answered(self, reply: Reply, usage: Usage | None, streamed_chars: int = 0,
                 request: ChatRequest | None = None, final: bool = True) -> None:
        """Book the answer. ``usage``: the counts the upstream reported; ``final`` False when a
        stream ended before its final counts (cut, or the client left): the entry is then an
        estimate, from the counts reported so far (Anthropic and Gemini send the input early) and
        the text streamed."""
        if self.done:
            return
        self.done = True
        models = self.meter.config.models
        o = reply.outcome
        winner = None
        if not o.degraded:
            for i, a in enumerate(o.attempts):
                if a.error is None and not a.cancelled:
                    winner = i
        atts = []
        for i, a in enumerate(o.attempts):
            m = models.get(a.model)
            rec = AttemptRecord(index=i, role=_ROLES.get(a.role, Role.FALLBACK), model=a.model, provider=a.provider,
                                status=200, latency_ms=a.latency * 1000, time=self.t0)
            if i == winner and m is not None:
                u = usage if final else None
                if u is None:  # no final usage: count locally, and say so
                    u = _estimate(usage, request or self.creq, streamed_chars)
                _book(rec, m, u)
                rec.ttft_ms = a.latency * 1000 if self.creq.stream else None
            elif a.error is not None:
                rec.status = a.error.upstream_status or a.error.status
                rec.error = a.error.kind
            elif a.usage is not None and m is not None:  # a hedge that lost after answering in full
                rec.error = "hedge_lost"
                _book(rec, m, a.usage)
            else:  # a hedge that lost: cancelled mid-generation, its usage never reported
                rec.status, rec.error = 499, "cancelled"
            atts.append(rec)
        answered = atts[winner] if winner is not None else None
        req = RequestRecord.from_attempts(
            self.rid, self.t0, self.route, atts, answered,
            latency_ms=(time.time() - self.t0) * 1000, reason=reply.reason, stream=self.creq.stream,
            **({} if answered else {"status": 200, "error": "degraded"}),
        )
        self.meter.accountant.settle_later(self.adm, req, atts)

    def failed(self, err: SwitchmanError) -> None:
        """Every candidate failed (or the request was refused after admission): settling still
        releases the reservation."""
        if self.done:
            return
        self.done = True
        req = RequestRecord(request_id=self.rid, time=self.t0, route=self.route, model=None, provider=None,
                            status=err.status, error=err.kind, latency_ms=(time.time() - self.t0) * 1000,
                            stream=self.creq.stream)
        self.meter.accountant.settle_later(self.adm, req, ())


def _book(rec: AttemptRecord, m: ModelSpec, u: Usage) -> None:
    rec.input_tokens, rec.output_tokens = u.input_tokens, u.output_tokens
    rec.cache_read_tokens, rec.cache_write_tokens = u.cache_read_tokens, u.cache_write_tokens
    rec.estimated = u.estimated
    rec.cost = cost(m.price, u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)


def _estimate(partial: Usage | None, request: ChatRequest, streamed_chars: int) -> Usage:
    """Usage for a stream that ended without its final counts: the input the upstream reported
    before it broke (else the prompt counted locally), the output counted from what was streamed."""
    out = streamed_chars // CHARS_PER_TOKEN
    if partial is None:
        return Usage(input_tokens=request.estimated_tokens(), output_tokens=out, estimated=True)
    return Usage(input_tokens=partial.input_tokens, output_tokens=max(out, partial.output_tokens),
                 cache_read_tokens=partial.cache_read_tokens, cache_write_tokens=partial.cache_write_tokens,
                 estimated=True)


class Metering:
    def __init__(self, gateway: Gateway, accountant: Accountant) -> None:
        self.gateway = gateway
        self.config: Config = gateway.config
        self.accountant = accountant
        self.admin = AdminApi(accountant)

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

    async def close(self) -> None:
        await self.accountant.close()  # drains the ledger: nothing written is lost

    async def admit(self, rid: str, creq: ChatRequest, api_key: str, tags: str | None, user: str | None,
                    max_cost: Decimal | None) -> Ticket:
        route, models, why = self.gateway.candidates(creq)
        ctx = AdmissionContext(
            api_key=api_key or None, route=creq.model, candidates=models,
            input_tokens=creq.estimated_tokens(), max_tokens=creq.max_tokens,
            tags=parse_tags(tags), user=user or creq.user, max_cost_usd=max_cost,
            direct=creq.model in self.config.models,
        )
        adm = await self.accountant.admit(ctx)
        if adm.downgrade_to and adm.downgrade_to != creq.model:
            creq.model = adm.downgrade_to
            route, models, why = self.gateway.candidates(creq)
            why = f"{why}; budget soft limit: downgraded to {adm.downgrade_to}"
        else:
            models = [m for m in models if m.name in adm.models]
        return Ticket(self, adm, rid, creq, (route, models, why))
