"""``Accountant``: the one object the gateway talks to about keys, limits, budgets and the ledger.

Per request::

    adm = await accountant.admit(AdmissionContext(api_key=..., route=..., candidates=models, ...))
    # adm.downgrade_to: plan that route/model instead; adm.models: candidates within the cost cap;
    # adm.warning: send as x-switchman-budget-warning
    for model in plan:   # (the executor, through ``Metering``'s rate-limit hook)
        if await accountant.try_model(adm, model, prompt_tokens) is not None:
            continue  # the model is at its own rpm/tpm limit: skip to the next candidate
        ...
    await accountant.settle(adm, RequestRecord.from_attempts(...), attempts)   # always, in a finally

``admit`` raises ``Unauthorized`` (no key when keys are required; unknown, revoked or expired key),
``Forbidden`` (a route the key may not use), ``RateLimited`` or ``BudgetExceeded``.

Reservations: before the call, the most it can cost (the prompt estimate plus ``max_tokens``, or the
model's output cap, at the dearest candidate's prices) is reserved on every budget that applies;
``settle`` replaces it with the actual cost. Concurrent requests therefore cannot overshoot a
budget except by what the prompt estimate misses.

When the shared state (Redis) is unreachable, limits **fail open** by default: requests are
admitted, a warning is logged (once every 30 s) and ``Admission.degraded`` is set; spend is still
recorded in the ledger, which never depends on Redis. ``state: {on_error: closed}`` answers 503
instead. Budget counters that Redis lost are re-seeded from the ledger on next use.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from ..clock import Clock
from ..config import ModelSpec, Price
from ..errors import Forbidden, Unauthorized
from .budgets import Hold, holds_for, key_rule, scope_of, soft_hits
from .dates import iso
from .errors import BudgetExceeded, RateLimited, StateUnavailable
from .keys import PREFIX, KeyRecord, KeyRing, key_fields, make_key
from .ledger import Ledger
from .records import AttemptRecord, RequestRecord, from_nusd, max_cost, to_nusd
from .settings import AccountingSettings
from .state import AdmitOp, BudgetHold, MemoryState, Outcome, RateWindow, SettleOp, StateBackend
from .store import SpendRow, Store, open_store

log = logging.getLogger("switchman.accounting")

_WINDOW = 60  # seconds: rate limits are per minute, in fixed windows aligned to the clock


def _worst(costs: list[tuple[ModelSpec, Decimal]], ctx: AdmissionContext, parts: frozenset[str]) -> Decimal:
    """The most a request can cost, every paid call of its plan included (money probe F2): its
    dearest candidate, or for a cascade every stage it may escalate from (the first ``checked``)
    plus the dearest of the rest; a judge call per checked stage; with hedging, the ``hedge``
    dearest running at once; with ``on_cut: resume``, a second model re-sent the prompt and the
    partial answer. ``parts`` are the extras still in the plan (``hedge``, ``resume``, ``judge``)."""
    if not costs:
        return Decimal(0)
    checked = min(ctx.checked, len(costs) - 1)
    if checked:
        most = sum((c for _, c in costs[:checked]), Decimal(0)) + max(c for _, c in costs[checked:])
    else:
        most = max(c for _, c in costs)
    if "judge" in parts and ctx.judge is not None and checked:
        most += sum((_judge_cost(ctx, m) for m, _ in costs[:checked]), Decimal(0))
    dearest = sorted((c for _, c in costs), reverse=True)
    if "hedge" in parts and ctx.hedge > 1 and len(costs) > 1:
        most += sum(dearest[1:ctx.hedge], Decimal(0))
    if "resume" in parts and ctx.resume and len(costs) > 1:
        m, _ = max(costs, key=lambda mc: mc[1])
        grown = ctx.input_tokens + m.output_cap(ctx.max_tokens)  # the prompt again, and the partial answer
        most += max(max_cost(x.price, grown, x.output_cap(ctx.max_tokens), ctx.cache_writes) for x, _ in costs)
    return most


def _judge_cost(ctx: AdmissionContext, stage: ModelSpec) -> Decimal:
    """A judge call on one stage's answer: ``checks.judge_request`` sends at most the last 6,000
    characters of the prompt and 4,000 of the answer (counted here at 2 characters a token, to
    be safe), a fixed instruction, and asks for 5 tokens."""
    j = ctx.judge
    assert j is not None
    tokens = min(ctx.input_tokens, 3_000) + min(stage.output_cap(ctx.max_tokens), 2_000) + 200
    return max_cost(j.price, tokens, j.output_cap(JUDGE_MAX_TOKENS))


JUDGE_MAX_TOKENS = 5  # what ``routing.checks.judge_request`` asks the judge for


@dataclass(slots=True)
class AdmissionContext:
    """What the gateway knows about a request before calling any model."""

    api_key: str | None  # the bearer token or x-api-key value; None or "" when none was sent
    route: str  # the name the client asked for (a route or a model)
    candidates: Sequence[ModelSpec]  # every model the plan may call (fallbacks included)
    input_tokens: int  # estimated prompt tokens
    max_tokens: int | None = None  # the client's; each model's ``output_cap`` of it is what is sent and reserved
    tags: Mapping[str, str] = field(default_factory=dict)  # x-switchman-tags
    user: str | None = None  # x-switchman-user or the body's user field
    max_cost_usd: Decimal | None = None  # x-switchman-max-cost-usd
    direct: bool = False  # the client named a model, not a route: no savings to claim
    checked: int = 0  # a cascade: the first ``checked`` candidates may all be paid for before one answers
    hold: float = 900.0  # seconds until an unsettled reservation lapses
    cache_writes: bool = False  # the request marks cache breakpoints: input may be billed at cache-write rates
    judge: ModelSpec | None = None  # a cascade's judge, called once per checked stage
    hedge: int = 0  # a hedging route: attempts in flight at most
    resume: bool = False  # a stream that may be resumed on another model after a cut
    caller: tuple[KeyRecord | None, bool] | None = None  # ``identify(api_key)``, when already asked


@dataclass(slots=True)
class Admission:
    """A request let in. Pass it back to ``try_model`` and ``settle``."""

    key: KeyRecord | None  # None: the admin key, or no key where none is required
    user: str | None  # the key's user, else the request's
    tags: dict[str, str]  # the request's tags, the key's overriding
    models: tuple[str, ...]  # candidates whose most possible cost fits x-switchman-max-cost-usd
    max_cost: Decimal  # what was reserved, in USD
    downgrade_to: str | None = None  # a soft budget threshold asks for this route or model instead
    warning: str | None = None  # for the x-switchman-budget-warning header
    degraded: bool = False  # limits were not checked: the shared state is down (failing open)
    admin: bool = False
    input_tokens: int = 0
    holds: tuple[Hold, ...] = ()
    reservation: str = ""
    reserved: int = 0  # nanodollars
    tpm_counted: tuple[tuple[str, int], ...] = ()  # the key's token window, tokens counted at admission
    model_counted: list[tuple[str, str, int]] = field(default_factory=list)  # (model, window, tokens)
    prices: tuple[Price, ...] = ()  # for the savings baseline
    settled: bool = False
    dropped: frozenset[str] = frozenset()  # parts of the plan left out to fit the cost cap: hedge, resume, judge

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key is not None else None


class Accountant:
    def __init__(self, settings: AccountingSettings | None = None, *, required: bool = False,
                 admin_key: str | None = None, clock: Clock | None = None, now: Callable[[], float] | None = None,
                 store: Store | None = None, state: StateBackend | None = None) -> None:
        """``required``: requests must carry a key (the gateway passes ``auth.keys_required or
        admin_key is set``). ``admin_key``: accepted as a key with no key limits.

        Budgets need calendar time (UTC days, weeks, months), so time here is unix seconds:
        ``now`` gives it directly (tests); a ``switchman.clock.Clock`` (monotonic, possibly
        virtual) is anchored to the wall clock once, so a ``VirtualClock`` moved by a day moves
        budgets by a day. Neither: ``time.time``."""
        s = settings or AccountingSettings()
        self.settings = s
        self.required = required
        self._admin = admin_key.encode() if admin_key else None
        if now is not None:
            self._now = now
        elif clock is not None:
            offset = time.time() - clock.now()
            self._now = lambda: offset + clock.now()
        else:
            self._now = time.time
        self.store = store or open_store(s.ledger.url)
        L = s.ledger
        self.ledger = (Ledger(self.store, batch=L.batch, flush_interval=L.flush_interval, buffer=L.buffer,
                              block=L.block, spill=L.spill) if L.enabled else None)
        self.state = state or _state(s)
        self.fail_closed = s.state.on_error == "closed"
        self.keyring = KeyRing(self.store, self._now)
        self.rules = s.budgets
        self._warned_at = -1e18
        self._settling: set[asyncio.Task] = set()
        # Called with every settled request and its attempts, before the ledger write (telemetry:
        # metrics, traces, the access log). Off the request path; an error in it is logged only.
        self.on_settled: Callable[[RequestRecord, Sequence[AttemptRecord]], None] | None = None
        self._seeding: dict[str, asyncio.Future] = {}  # counter -> the seed in progress

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self.ledger is not None:
            await self.ledger.start()
        else:
            await self.store.open()
        await self.keyring.start()
        await self.state.watch(lambda h: self.keyring.mark_revoked(h, self._now()))
        try:
            await self.state.start()
        except StateUnavailable as e:  # not fatal: admit applies on_error while it lasts
            self._warn(e)

    async def ready(self, timeout: float = 2.0) -> dict[str, bool]:
        """For ``/health/ready``: can the ledger database and the shared state be reached (each
        within ``timeout`` seconds)? Why not is logged."""
        out = {"ledger": True, "state": True}
        try:
            await asyncio.wait_for(self.store.key_by_hash("0" * 64), timeout)
        except Exception as e:  # noqa: BLE001 - any failure of the probe means not reachable
            log.warning("readiness: the ledger database is unreachable: %r", e)
            out["ledger"] = False
        try:
            await asyncio.wait_for(self.state.read(["ready-probe"]), timeout)
        except (StateUnavailable, TimeoutError) as e:
            log.warning("readiness: the shared state is unreachable: %s", e)
            out["state"] = False
        return out

    async def close(self) -> None:
        """Finish pending settles, stop polling keys, drain the ledger (spilling what the database
        cannot take), close."""
        if self._settling:
            await asyncio.gather(*list(self._settling), return_exceptions=True)
        await self.keyring.close()
        if self.ledger is not None:
            await self.ledger.close()
        else:
            await self.store.close()
        await self.state.close()

    # -- admission -----------------------------------------------------------------------------------
    @property
    def admin_key(self) -> str | None:
        """The admin key, for the gateway's own calls (a cache judge's)."""
        return self._admin.decode() if self._admin is not None else None

    async def admit(self, ctx: AdmissionContext) -> Admission:
        now = self._now()
        key, admin = await self._key(ctx, now)
        user = (key.user if key is not None and key.user else None) or ctx.user
        tags = {**ctx.tags, **key.tags} if key is not None and key.tags else dict(ctx.tags)

        costs, most, dropped = self.fit(ctx)
        adm = Admission(key=key, user=user, tags=tags, models=tuple(m.name for m, _ in costs), max_cost=most,
                        admin=admin, input_tokens=ctx.input_tokens, dropped=dropped,
                        prices=() if ctx.direct else tuple(m.price for m in ctx.candidates))

        windows: list[RateWindow] = []
        if key is not None and (key.rpm or key.tpm):
            idx, reset_in = divmod(now, _WINDOW)
            reset_in = _WINDOW - reset_in
            if key.rpm:
                windows.append(RateWindow(f"rpm:key:{key.id}:{int(idx)}", key.rpm, 1, reset_in))
            if key.tpm:
                windows.append(RateWindow(f"tpm:key:{key.id}:{int(idx)}", key.tpm, ctx.input_tokens, reset_in))
                adm.tpm_counted = ((windows[-1].counter, ctx.input_tokens),)
        rules = self.rules
        if key is not None and key.budget_usd is not None and key.budget_period:
            rules = (*rules, key_rule(key.name, key.budget_usd, key.budget_period))
        holds = holds_for(rules, now, key_id=adm.key_id, key_name=key.name if key else None, user=user, tags=tags)
        if not windows and not holds:
            return adm  # nothing to count: no round trip to the shared state
        adm.holds = tuple(holds)
        adm.reservation = os.urandom(8).hex()
        amount = to_nusd(most, up=True) if holds else 0
        op = AdmitOp(revocation=key.hash if key is not None else None, windows=windows,
                     holds=[_hold(h) for h in holds], amount=amount, reservation=adm.reservation,
                     until=now + ctx.hold, now=now)
        try:
            verdict = await self.state.admit(op)
            for _ in range(len(holds)):
                if verdict.outcome is not Outcome.UNSEEDED:
                    break
                await self._seed(holds[verdict.index], now)
                verdict = await self.state.admit(op)
            if verdict.outcome is Outcome.UNSEEDED:
                raise StateUnavailable(f"budget counter {holds[verdict.index].counter} vanished while seeding")
        except StateUnavailable as e:
            if self.fail_closed:
                raise
            self._warn(e)
            adm.degraded = True
            return adm  # holds kept with nothing reserved: settle still counts the spend if it can
        out = verdict.outcome
        if out is Outcome.OK:
            adm.reserved = amount
            self._soft(adm, holds, verdict.used, ctx.route)
            return adm
        if out is Outcome.REVOKED:
            assert key is not None
            self.keyring.mark_revoked(key.hash, now)
            raise Unauthorized(f"key '{key.name}' was revoked")
        if out is Outcome.RATE_LIMITED:
            w = windows[verdict.index]
            what = "requests" if w.counter.startswith("rpm:") else "tokens"
            raise RateLimited(f"key '{key.name if key else '?'}' is over its {w.limit} {what} per minute",
                              retry_after=w.reset_in, scope=f"key:{adm.key_id}")
        if out is Outcome.OVER_BUDGET:
            h = holds[verdict.index]
            left = max(h.limit_nusd - verdict.before, 0)
            raise BudgetExceeded(
                f"budget {h.describe()} has ${from_nusd(left):.6f} left of ${h.rule.limit} this "
                f"{h.rule.period.value} and this request could cost up to ${most:.6f}; it resets at "
                f"{iso(h.window.end)}", retry_after=h.window.end - now, scope=h.scope_id)
        raise AssertionError(f"unexpected verdict {verdict}")  # pragma: no cover

    @staticmethod
    def fit(ctx: AdmissionContext) -> tuple[list[tuple[ModelSpec, Decimal]], Decimal, frozenset[str]]:
        """The candidates that fit ``x-switchman-max-cost-usd`` (each with its most possible cost),
        the plan's worst case, and the parts of the plan dropped to fit the cap: the hedge, then
        resuming, then a cascade's dearest stages, then its judge. BudgetExceeded when nothing fits."""
        costs = [(m, max_cost(m.price, ctx.input_tokens, m.output_cap(ctx.max_tokens), ctx.cache_writes))
                 for m in ctx.candidates]
        parts = {p for p, on in (("hedge", ctx.hedge > 1), ("resume", ctx.resume), ("judge", ctx.judge is not None))
                 if on}
        cap = ctx.max_cost_usd
        if cap is None:
            return costs, _worst(costs, ctx, frozenset(parts)), frozenset()
        fit = [(m, c) for m, c in costs if c <= cap]
        if costs and not fit:
            least = min(c for _, c in costs)
            raise BudgetExceeded(
                f"this request could cost up to ${least:.6f} even on its cheapest model, over the "
                f"x-switchman-max-cost-usd cap of ${cap}; lower max_tokens or raise the cap", scope="request")
        costs = fit
        most = _worst(costs, ctx, frozenset(parts))
        for part in ("hedge", "resume"):
            if most > cap:
                parts.discard(part)
                most = _worst(costs, ctx, frozenset(parts))
        had, stages = set(parts), len(costs)
        while most > cap and ctx.checked and len(costs) > 1:
            costs = costs[:-1]  # a cascade under a cap: its dearest stages go until the worst case fits
            most = _worst(costs, ctx, frozenset(parts))
        if most > cap and "judge" in parts:
            parts.discard("judge")
            most = _worst(costs, ctx, frozenset(parts))
        if most > cap:
            raise BudgetExceeded(
                f"this request's plan could cost up to ${most:.6f}, over the x-switchman-max-cost-usd cap of "
                f"${cap}; lower max_tokens or raise the cap", scope="request")
        return costs, most, frozenset((had - parts) | ({"dearest stages"} if len(costs) < stages else set()))

    async def _key(self, ctx: AdmissionContext, now: float) -> tuple[KeyRecord | None, bool]:
        key, admin = ctx.caller if ctx.caller is not None else await self.identify(ctx.api_key, now)
        if key is not None and key.routes is not None and ctx.route not in key.routes:
            raise Forbidden(f"key '{key.name}' may not use '{ctx.route}' (it may use: {', '.join(key.routes)})",
                            param="model")
        return key, admin

    async def identify(self, api_key: str | None, now: float | None = None) -> tuple[KeyRecord | None, bool]:
        """Who is calling: ``(key, is_admin)``; ``(None, False)`` is anonymous (keys not required).
        Raises ``Unauthorized`` for a missing key where one is required, or an unknown, revoked or
        expired one. For endpoints without a route, such as ``/v1/models``."""
        got = self.identify_cached(api_key, now)
        if got is not None:
            return got
        return self._caller(await self.keyring.lookup(api_key), self._now() if now is None else now)  # type: ignore[arg-type]

    def identify_cached(self, api_key: str | None, now: float | None = None) -> tuple[KeyRecord | None, bool] | None:
        """``identify`` from memory alone (the HTTP server asks on the request's head, before its
        body is read): the caller, or None when only the database can tell. Raises as ``identify``."""
        secret = api_key or None
        if secret is None:
            if self.required:
                raise Unauthorized("missing API key (send it as a bearer token or x-api-key)")
            return None, False
        if self._admin is not None and hmac.compare_digest(secret.encode(), self._admin):
            return None, True
        # Virtual keys all start with PREFIX: any other token needs no lookup.
        if not secret.startswith(PREFIX):
            return self._caller(None, 0.0)
        known, key = self.keyring.cached(secret)
        return self._caller(key, self._now() if now is None else now) if known else None

    def _caller(self, key: KeyRecord | None, now: float) -> tuple[KeyRecord | None, bool]:
        if key is None:
            if self.required:
                raise Unauthorized("invalid API key")
            return None, False  # keys not required: an unknown token is no key (SDKs insist on one)
        if key.revoked is not None:
            raise Unauthorized(f"key '{key.name}' was revoked")
        if key.expires is not None and key.expires <= now:
            raise Unauthorized(f"key '{key.name}' expired at {iso(key.expires)}")
        return key, False

    async def _seed(self, h: Hold, now: float) -> None:
        """Start a budget counter from the ledger: the scope's spend since the period began.
        Concurrent requests needing the same counter share one query."""
        running = self._seeding.get(h.counter)
        if running is not None:
            await asyncio.shield(running)
            return
        fut = asyncio.get_running_loop().create_future()
        self._seeding[h.counter] = fut
        try:
            await self._seed_now(h, now)
            fut.set_result(None)
        except Exception as e:
            fut.set_exception(e)
            fut.exception()  # retrieved: the waiters re-raise it, nobody else needs to
            raise
        except BaseException:  # cancelled: the waiters go on and seed it themselves
            fut.set_result(None)
            raise
        finally:
            del self._seeding[h.counter]

    async def _seed_now(self, h: Hold, now: float) -> None:
        spent = Decimal(0)
        if self.ledger is not None:
            kind, value = scope_of(h.scope_id)
            try:
                await self.ledger.drain(timeout=1.0)  # this process's own entries first
                spent = await self.ledger.scope_spend(kind, value, h.window.start)
            except Exception as e:
                raise StateUnavailable(f"cannot read the ledger to start budget {h.describe()}: {e}") from e
        await self.state.seed(h.counter, to_nusd(spent), h.ttl, now)

    def _soft(self, adm: Admission, holds: Sequence[Hold], used: Sequence[int], route: str) -> None:
        hits = soft_hits(holds, used)
        if not hits:
            return
        down = next((h.rule.downgrade_to for h, _ in hits if h.rule.downgrade_to), None)
        if down == route:
            down = None
        adm.downgrade_to = down
        msg = "; ".join(f"budget {h.describe()} at {frac:.0%}" for h, frac in hits)
        adm.warning = msg + (f"; downgraded to {down}" if down else "")

    def _warn(self, e: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= 30.0:
            self._warned_at = now
            log.warning("limits not enforced: %s (state: on_error is open; the ledger still records spend)", e)

    # -- per attempt ---------------------------------------------------------------------------------
    async def try_model(self, adm: Admission | None, model: ModelSpec, tokens: int | None = None) -> tuple[str, float] | None:
        """Count one call of ``model`` (``tokens``: its prompt estimate, default the admission's)
        against the model's own rpm/tpm limits. None: go ahead; ``(limit, seconds)``: the model is
        at its ``limit`` ("rpm" or "tpm") for that many seconds, so try the next candidate.
        ``adm`` (None for a call outside any admission) gets the tokens counted, which ``settle``
        corrects to the usage. Shared state down: go ahead, or with ``on_error: closed`` raise
        ``StateUnavailable``."""
        lim = model.limits
        if not (lim.rpm or lim.tpm):
            return None
        if tokens is None:
            tokens = adm.input_tokens if adm is not None else 0
        now = self._now()
        idx, into = divmod(now, _WINDOW)
        reset_in = _WINDOW - into
        windows = []
        if lim.rpm:
            windows.append(RateWindow(f"rpm:model:{model.name}:{int(idx)}", lim.rpm, 1, reset_in))
        if lim.tpm:
            windows.append(RateWindow(f"tpm:model:{model.name}:{int(idx)}", lim.tpm, tokens, reset_in))
        try:
            v = await self.state.admit(AdmitOp(None, windows, (), 0, "", now, now))
        except StateUnavailable as e:
            if self.fail_closed:
                raise
            self._warn(e)
            return None
        if v.outcome is Outcome.RATE_LIMITED:
            return ("rpm" if windows[v.index].counter.startswith("rpm:") else "tpm"), reset_in
        if lim.tpm and adm is not None:
            adm.model_counted.append((model.name, windows[-1].counter, tokens))
        return None

    # -- after the request ---------------------------------------------------------------------------
    async def settle(self, adm: Admission, request: RequestRecord, attempts: Sequence[AttemptRecord] = ()) -> None:
        """Replace the reservation by the actual cost, correct token windows, and write the ledger
        entry (key, user and tags from the admission when the record has none). Call it once for
        every admitted request, failed ones too; a second call is ignored."""
        if adm.settled:
            return
        adm.settled = True
        if request.key_id is None:
            request.key_id = adm.key_id
        if request.user is None:
            request.user = adm.user
        if not request.tags:
            request.tags = adm.tags
        if request.baseline_cost is None:
            request.baseline_cost = self.baseline(adm, request)
        corrections = [(c, request.input_tokens + request.output_tokens - n) for c, n in adm.tpm_counted]
        # Per model: the usage of its attempts minus what try_model counted (the estimate per
        # call), corrected in the window of its first call.
        counted: dict[str, list] = {}
        for name, counter, n in adm.model_counted:
            counted.setdefault(name, [counter, 0])[1] += n
        for name, (counter, n) in counted.items():
            used = sum(a.input_tokens + a.output_tokens for a in attempts if a.model == name)
            corrections.append((counter, used - n))
        if adm.holds or corrections:
            try:
                await self.state.settle(SettleOp([h.counter for h in adm.holds], adm.reservation, adm.reserved,
                                                 to_nusd(request.cost), corrections))
            except StateUnavailable as e:
                self._warn(e)
        if self.on_settled is not None:
            try:
                self.on_settled(request, attempts)
            except Exception:  # noqa: BLE001 - telemetry never loses a ledger entry
                log.exception("request %s: telemetry failed", request.request_id)
        if self.ledger is not None:
            await self.ledger.write(request, attempts)

    def settle_later(self, adm: Admission, request: RequestRecord, attempts: Sequence[AttemptRecord] = ()) -> None:
        """``settle`` in a background task, so a request that has answered does not wait for the
        shared state's round trip (about 0.2 ms with Redis). ``close`` waits for every one."""
        self.later(self.settle(adm, request, attempts))

    def later(self, settling: Coroutine[Any, Any, None]) -> None:
        """Run ``settling`` (which ends by calling ``settle``) in a background task that ``close``
        waits for."""
        task = asyncio.get_running_loop().create_task(settling)
        self._settling.add(task)
        task.add_done_callback(self._settled)

    async def flush(self) -> None:
        """Wait for the settles under way and write the ledger's buffer, so ``spend`` and the
        limits count every request answered so far."""
        while self._settling:
            await asyncio.gather(*list(self._settling), return_exceptions=True)
        if self.ledger is not None:
            await self.ledger.drain()

    def _settled(self, task: asyncio.Task) -> None:
        self._settling.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("settling a request failed", exc_info=task.exception())

    @staticmethod
    def baseline(adm: Admission, request: RequestRecord) -> Decimal:
        """What this usage would have cost on the dearest of the route's models (the answering
        model's token counts, priced at each; never below the actual cost when nothing answered)."""
        if not adm.prices or request.model is None:
            return request.cost
        return max(p.cost(request.input_tokens, request.output_tokens, request.cache_read_tokens,
                          request.cache_write_tokens, request.cache_write_1h_tokens) for p in adm.prices)

    # -- management (admin API and CLI) --------------------------------------------------------------
    async def create_key(self, **fields) -> tuple[str, KeyRecord]:
        """Validate (``keys.key_fields``; ValueError names the field) and store a new key. The secret
        is returned once and kept nowhere."""
        now = self._now()
        name = fields.pop("name", None)
        secret, rec = make_key(str(name).strip(), now, **key_fields(name=name, now=now, **fields))
        await self.store.insert_key(rec)
        self.keyring.apply(rec)
        return secret, rec

    async def list_keys(self, include_revoked: bool = False) -> list[KeyRecord]:
        return await self.store.list_keys(include_revoked)

    async def revoke_key(self, id_or_name: str) -> KeyRecord | None:
        """Revoke by id or name: in the database (every worker's key ring sees it within a
        second) and in the shared state's revoked set (Redis workers see it at once)."""
        k = await self.store.find_key(id_or_name)
        if k is None:
            return None
        now = self._now()
        if k.revoked is None:
            await self.store.revoke_key(k.id, now)
            k = replace(k, revoked=now)
        self.keyring.apply(k)
        try:
            await self.state.revoke(k.hash)
        except StateUnavailable as e:
            log.warning("revoked key %s in the database, but not in the shared state (%s): other workers "
                        "see it within a second from the database", k.id, e)
        return k

    async def spend(self, by: str = "model", since: float | None = None, until: float | None = None) -> list[SpendRow]:
        if self.ledger is not None:
            return await self.ledger.spend(by, since, until)
        return await self.store.spend(by, since, until)

    async def budget_status(self) -> list[dict]:
        """The configured budgets with their current period's spend and reservations (global and
        exact-match rules; per-user and per-tag ``*`` rules are listed without a figure)."""
        now = self._now()
        out = []
        for r in self.rules:
            if r.match is not None and (r.match == "*" or r.match.endswith("=*") or r.scope.value == "key"):
                h = None
            else:
                hs = holds_for((r,), now, key_id=None, key_name=None,
                               user=r.match if r.scope.value == "user" else None,
                               tags=dict([r.match.split("=", 1)]) if r.scope.value == "tag" and r.match else {})
                h = hs[0] if hs else None
            row = {"scope": r.scope.value, "match": r.match, "limit_usd": str(r.limit), "period": r.period.value,
                   "soft": r.soft, "downgrade_to": r.downgrade_to, "spent_usd": None, "reserved_usd": None}
            if h is not None:
                try:
                    got = (await self.state.read([h.counter]))[0]
                except StateUnavailable:
                    got = None
                if got is None and self.ledger is not None:
                    kind, value = scope_of(h.scope_id)
                    got = (to_nusd(await self.ledger.scope_spend(kind, value, h.window.start)), 0)
                if got is not None:
                    row["spent_usd"] = f"{from_nusd(got[0]):f}"
                    row["reserved_usd"] = f"{from_nusd(got[1]):f}"
                row["resets"] = iso(h.window.end)
            out.append(row)
        return out


def _hold(h: Hold) -> BudgetHold:
    return BudgetHold(h.counter, h.limit_nusd, h.ttl)


def _state(s: AccountingSettings) -> StateBackend:
    if s.state.backend == "redis":
        from .redis_state import RedisState

        return RedisState(s.state.url or "redis://127.0.0.1:6379/0", prefix=s.state.prefix, timeout=s.state.timeout)
    return MemoryState()
