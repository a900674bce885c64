"""Shared state for limits: rate-limit windows, budget counters with reservations, revoked keys.

``StateBackend`` has two implementations with the same semantics: ``MemoryState`` (one worker; the
default) and ``RedisState`` (``redis_state.py``: every worker on every machine, each operation one
atomic Lua script). Both are dumb on purpose: the caller (``facade.Accountant``) names the
counters and limits, so the rules live in one place and the two backends are tested against one
suite.

``admit`` is all-or-nothing: it checks the revocation set, then every rate window, then every
budget hold, and only when all pass adds the request to each window and reserves ``amount`` on
each hold. A reservation names its request and expires at ``until`` if never settled (a worker
that died mid-request cannot pin a budget forever). ``settle`` swaps the reservation for the
actual cost, and corrects token windows by the difference between the estimate and the usage.

Budget counters start empty in a fresh process (or after Redis restarts); ``admit`` then answers
``UNSEEDED`` and the caller seeds the counter from the ledger (``seed``), which is the truth.
Amounts are integer nanodollars and token counts.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RateWindow:
    """A fixed rate window: ``counter`` (which includes the window's index), at most ``limit``,
    this request adds ``amount``; the window ends ``reset_in`` seconds from now."""

    counter: str
    limit: int
    amount: int
    reset_in: float


@dataclass(frozen=True, slots=True)
class BudgetHold:
    counter: str
    limit: int  # nanodollars
    ttl: int  # seconds the counter lives


@dataclass(frozen=True, slots=True)
class AdmitOp:
    revocation: str | None  # a key hash to look for in the revoked set
    windows: Sequence[RateWindow]
    holds: Sequence[BudgetHold]
    amount: int  # nanodollars to reserve on every hold
    reservation: str  # the request's reservation id (no ':')
    until: float  # when an unsettled reservation lapses (unix seconds)
    now: float


class Outcome(enum.IntEnum):
    OK = 0
    REVOKED = 1
    RATE_LIMITED = 2
    OVER_BUDGET = 3
    UNSEEDED = 4


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    index: int = -1  # the window or hold that refused (or needs a seed)
    used: tuple[int, ...] = ()  # OK: per hold, spent + reserved including this request
    before: int = 0  # OVER_BUDGET: spent + reserved before this request


@dataclass(frozen=True, slots=True)
class SettleOp:
    holds: Sequence[str]  # the budget counters reserved on
    reservation: str
    reserved: int
    actual: int  # nanodollars actually spent
    corrections: Sequence[tuple[str, int]] = field(default=())  # (window counter, token delta)


class StateBackend(abc.ABC):
    """Where limits are counted. All methods raise ``StateUnavailable`` when the backend cannot be
    reached; what limits do then is the caller's policy (``facade``)."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def watch(self, on_revoked: Callable[[str], None]) -> None:
        """Call ``on_revoked(key_hash)`` whenever any process revokes a key (backends shared by
        several processes push it; a single-process backend has nothing to push)."""

    @abc.abstractmethod
    async def admit(self, op: AdmitOp) -> Verdict: ...

    @abc.abstractmethod
    async def settle(self, op: SettleOp) -> None: ...

    @abc.abstractmethod
    async def seed(self, counter: str, spent: int, ttl: int, now: float) -> None:
        """Start a budget counter at ``spent``, to live ``ttl`` seconds, unless another worker
        already did."""

    @abc.abstractmethod
    async def revoke(self, key_hash: str) -> None: ...

    @abc.abstractmethod
    async def read(self, counters: Sequence[str]) -> list[tuple[int, int] | None]:
        """``(spent, reserved)`` of each budget counter, None for one not started."""


class MemoryState(StateBackend):
    """Limits for one worker process. Each operation runs without an ``await`` inside, so on one
    event loop it is atomic like the Redis scripts."""

    def __init__(self) -> None:
        self._windows: dict[str, tuple[int, float]] = {}  # counter -> (count, expires at)
        self._budgets: dict[str, list] = {}  # counter -> [spent, reserved, expires at, {rid: (amount, until)}]
        self._revoked: set[str] = set()
        self._next_sweep = 0.0

    async def admit(self, op: AdmitOp) -> Verdict:
        now = op.now
        if now >= self._next_sweep:
            self._sweep(now)
        if op.revocation is not None and op.revocation in self._revoked:
            return Verdict(Outcome.REVOKED)
        for i, w in enumerate(op.windows):
            cur = self._windows.get(w.counter)
            n = cur[0] if cur is not None and cur[1] > now else 0
            if n + w.amount > w.limit:
                return Verdict(Outcome.RATE_LIMITED, i)
        used = []
        for j, h in enumerate(op.holds):
            b = self._budgets.get(h.counter)
            if b is None or b[2] <= now:
                return Verdict(Outcome.UNSEEDED, j)
            self._lapse(b, now)
            u = b[0] + b[1] + op.amount
            if u > h.limit:
                return Verdict(Outcome.OVER_BUDGET, j, before=b[0] + b[1])
            used.append(u)
        for w in op.windows:
            cur = self._windows.get(w.counter)
            n = cur[0] if cur is not None and cur[1] > now else 0
            self._windows[w.counter] = (n + w.amount, now + w.reset_in + 1.0)
        for h in op.holds:
            b = self._budgets[h.counter]
            if op.reservation not in b[3]:  # a counter named twice is reserved once
                b[1] += op.amount
                b[3][op.reservation] = (op.amount, op.until)
        return Verdict(Outcome.OK, used=tuple(used))

    async def settle(self, op: SettleOp) -> None:
        for c in dict.fromkeys(op.holds):  # one counter counts once, however many rules named it
            b = self._budgets.get(c)
            if b is None:
                continue  # counter gone (a new period began): the ledger has the spend
            held = b[3].pop(op.reservation, None)
            if held is not None:
                b[1] -= held[0]
            b[0] += op.actual
        for c, delta in op.corrections:
            cur = self._windows.get(c)
            if cur is not None:
                self._windows[c] = (cur[0] + delta, cur[1])

    async def seed(self, counter: str, spent: int, ttl: int, now: float) -> None:
        b = self._budgets.get(counter)
        if b is None or b[2] <= now:
            self._budgets[counter] = [spent, 0, now + ttl, {}]

    async def revoke(self, key_hash: str) -> None:
        self._revoked.add(key_hash)

    async def read(self, counters: Sequence[str]) -> list[tuple[int, int] | None]:
        out: list[tuple[int, int] | None] = []
        for c in counters:
            b = self._budgets.get(c)
            out.append(None if b is None else (b[0], b[1]))
        return out

    @staticmethod
    def _lapse(b: list, now: float) -> None:
        gone = [rid for rid, (_, until) in b[3].items() if until <= now]
        for rid in gone:
            b[1] -= b[3].pop(rid)[0]

    def _sweep(self, now: float) -> None:
        """Drop ended windows and budget counters; runs at most every 10 s of clock time."""
        self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        self._budgets = {k: v for k, v in self._budgets.items() if v[2] > now}
        self._next_sweep = now + 10.0
