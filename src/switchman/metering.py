"""Metering: the request path's side of the accounting package — admit a request (key, rate
limits, budget reservation, soft-limit downgrade, cost cap), then settle what it really cost, one
ledger row per request and per attempt. Settling happens off the request path (``settle_later``)."""

from __future__ import annotations

import time
from decimal import Decimal

from .accounting.admin import AdminApi
from .accounting.facade import Accountant, Admission, AdmissionContext
from .accounting.records import AttemptRecord, RequestRecord, Role, cost, parse_tags
from .config import Config
from .errors import SwitchmanError
from .gateway import Gateway, Planned, Reply
from .types import CHARS_PER_TOKEN, ChatRequest, Usage

_ROLES = {r.value: r for r in Role}


class Ticket:
    """One admitted request, until it is settled (exactly once)."""

    __slots__ = ("meter", "adm", "rid", "t0", "route", "plan", "warning", "creq", "done")

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

    def answered(self, reply: Reply, usage: Usage | None, streamed_chars: int = 0,
                 request: ChatRequest | None = None) -> None:
        if self.done:
            return
        self.done = True
        models = self.meter.config.models
        o = reply.outcome
        winner = None
        if not o.degraded:
            for i, a in enumerate(o.attempts):
                if a.error is None and not a.cancelled and a.rejected is None and a.role != "judge":
                    winner = i
        atts = []
        for i, a in enumerate(o.attempts):
            m = models.get(a.model)
            rec = AttemptRecord(index=i, role=_ROLES.get(a.role, Role.FALLBACK), model=a.model, provider=a.provider,
                                status=200, latency_ms=a.latency * 1000, time=self.t0)
            if i != winner and a.usage is not None and m is not None:  # answered, not sent: paid for
                u = a.usage
                rec.input_tokens, rec.output_tokens = u.input_tokens, u.output_tokens
                rec.cache_read_tokens, rec.cache_write_tokens = u.cache_read_tokens, u.cache_write_tokens
                rec.cost = cost(m.price, u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)
                rec.error = "rejected" if a.rejected else None
            elif i == winner and m is not None:
                u = usage
                if u is None:  # the stream ended without usage: count locally, and say so
                    u = Usage(input_tokens=(request or self.creq).estimated_tokens(),
                              output_tokens=streamed_chars // CHARS_PER_TOKEN, estimated=True)
                rec.input_tokens, rec.output_tokens = u.input_tokens, u.output_tokens
                rec.cache_read_tokens, rec.cache_write_tokens = u.cache_read_tokens, u.cache_write_tokens
                rec.estimated = u.estimated
                rec.cost = cost(m.price, u.input_tokens, u.output_tokens, u.cache_read_tokens, u.cache_write_tokens)
                rec.ttft_ms = a.latency * 1000 if self.creq.stream else None
            elif a.error is not None:
                rec.status = a.error.upstream_status or a.error.status
                rec.error = a.error.kind
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
        plan = self.gateway.candidates(creq)
        ctx = AdmissionContext(
            api_key=api_key or None, route=creq.model, candidates=plan.models,
            input_tokens=creq.estimated_tokens(), max_tokens=creq.max_tokens,
            tags=parse_tags(tags), user=user or creq.user, max_cost_usd=max_cost,
            direct=creq.model in self.config.models, checked=plan.checked if plan.checks else 0,
        )
        adm = await self.accountant.admit(ctx)
        if adm.downgrade_to and adm.downgrade_to != creq.model:
            creq.model = adm.downgrade_to
            plan = self.gateway.candidates(creq)
            plan.reason = f"{plan.reason}; budget soft limit: downgraded to {adm.downgrade_to}"
        else:
            plan.models = [m for m in plan.models if m.name in adm.models]
            plan.checked = min(plan.checked, max(len(plan.models) - 1, 0))
        return Ticket(self, adm, rid, creq, plan)
