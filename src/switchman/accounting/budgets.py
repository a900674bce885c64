"""Budgets: a limit in USD per key, user, tag or globally, over a UTC day, ISO week (from Monday) or
calendar month, resetting on the period's boundary.

A ``BudgetRule`` says what is limited; ``holds_for`` turns the rules that apply to one request into
``Hold``s, each naming the shared counter of one scope in the current period (for example
``b:tag:team=search:2026-11``). The state backend reserves the request's most possible cost on
every hold at once, or on none (``state.py``).

``user: "*"`` and ``tag: "team=*"`` give every user, or every value of the tag, a budget of its own.
A rule may have a soft threshold (``soft: 0.8``): once the spend (with reservations in flight)
passes it, requests get a warning and, with ``downgrade_to``, are sent to that cheaper route or
model instead.
"""

from __future__ import annotations

import calendar
import enum
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from .records import to_nusd


class Period(str, enum.Enum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@dataclass(frozen=True, slots=True)
class Window:
    """One period: ``[start, end)`` in unix seconds, and a label for counter names."""

    start: float
    end: float
    label: str


def period_window(period: Period, now: float) -> Window:
    """The UTC period containing ``now``."""
    return _window_of_day(period, int(now // 86_400))


@functools.lru_cache(maxsize=64)
def _window_of_day(period: Period, day: int) -> Window:
    # Every period starts at a UTC midnight, so the day number decides the window: cached, as
    # each request asks for it.
    d = datetime.fromtimestamp(day * 86_400, timezone.utc)
    if period is Period.DAY:
        start = d.replace(hour=0, minute=0, second=0, microsecond=0)
        end, label = start + timedelta(days=1), start.strftime("%Y-%m-%d")
    elif period is Period.WEEK:
        start = (d - timedelta(days=d.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
        iso = start.isocalendar()
        end, label = start + timedelta(days=7), f"{iso.year}-W{iso.week:02d}"
    else:
        start = d.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        days = calendar.monthrange(start.year, start.month)[1]
        end, label = start + timedelta(days=days), start.strftime("%Y-%m")
    return Window(start.timestamp(), end.timestamp(), label)


_LIMIT = re.compile(r"^\s*\$?\s*([0-9]+(?:\.[0-9]+)?)\s*/\s*(day|week|month)\s*$")


def parse_limit(text: str) -> tuple[Decimal, Period]:
    """``"50/month"`` (or ``"$50 / month"``) -> ``(Decimal("50"), Period.MONTH)``; ValueError otherwise."""
    m = _LIMIT.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"a budget looks like 50/month (USD per day, week or month), not {text!r}")
    try:
        amount = Decimal(m.group(1))
    except InvalidOperation:  # pragma: no cover - the pattern admits only numbers
        raise ValueError(f"bad amount in budget {text!r}") from None
    return amount, Period(m.group(2))


class Scope(str, enum.Enum):
    GLOBAL = "global"
    KEY = "key"
    USER = "user"
    TAG = "tag"


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """``match``: a key's name, a user, or ``name=value`` for a tag (``*`` for any user or value);
    None for the global scope. ``where`` says where the rule came from, for messages."""

    scope: Scope
    match: str | None
    limit: Decimal
    period: Period
    soft: float | None = None
    downgrade_to: str | None = None
    where: str = ""


@dataclass(frozen=True, slots=True)
class Hold:
    """One rule applied to one request: the scope's counter in the current period."""

    rule: BudgetRule
    scope_id: str  # "global", "key:key_ab12", "user:alice", "tag:team=search"
    counter: str  # scope and period, e.g. "b:user:alice:day:2026-11-22"
    limit_nusd: int
    window: Window

    @property
    def ttl(self) -> int:
        """Seconds the counter must outlive the period by (a day's margin for stragglers)."""
        return int(self.window.end - self.window.start) + 86_400

    def describe(self) -> str:
        r = self.rule
        return f"{self.scope_id} ${r.limit}/{r.period.value}"


@functools.lru_cache(maxsize=1024)
def key_rule(name: str, limit: Decimal, period: str) -> BudgetRule:
    return BudgetRule(Scope.KEY, name, limit, Period(period), where=f"key '{name}'")


def holds_for(rules: Iterable[BudgetRule], now: float, *, key_id: str | None, key_name: str | None,
              user: str | None, tags: Mapping[str, str]) -> list[Hold]:
    """The holds a request takes: every rule whose scope matches the request's key, user or tags,
    one per counter. Rules that resolve to the same scope and period (``user: "*"`` and ``user:
    alice`` for alice; a key's own budget and a ``key:`` rule) share one counter, so they are one
    hold: the lowest limit, and the lowest soft threshold in dollars (with its ``downgrade_to``).
    Two holds on one counter would reserve twice and count spend twice."""
    out: dict[str, Hold] = {}
    for r in rules:
        sid = _scope_id(r, key_id, key_name, user, tags)
        if sid is None:
            continue
        w = period_window(r.period, now)
        counter = f"b:{sid}:{r.period.value}:{w.label}"
        h = Hold(r, sid, counter, to_nusd(r.limit), w)
        seen = out.get(counter)
        out[counter] = h if seen is None else _merged(seen, h)
    return list(out.values())


def _merged(a: Hold, b: Hold) -> Hold:
    """One hold for two rules on the same counter: the stricter limit and soft threshold."""
    low, other = (a, b) if a.limit_nusd <= b.limit_nusd else (b, a)
    soft_at = [(x.rule.soft * x.limit_nusd, x) for x in (a, b) if x.rule.soft is not None]
    rule = low.rule
    if soft_at:
        at, x = min(soft_at, key=lambda t: t[0])
        soft = min(at / low.limit_nusd, 1.0) if low.limit_nusd else x.rule.soft
        rule = replace(rule, soft=soft, downgrade_to=x.rule.downgrade_to or rule.downgrade_to,
                       where=f"{low.rule.where} (with {other.rule.where})".strip())
    return replace(low, rule=rule)


def _scope_id(r: BudgetRule, key_id: str | None, key_name: str | None, user: str | None,
              tags: Mapping[str, str]) -> str | None:
    if r.scope is Scope.GLOBAL:
        return "global"
    if r.scope is Scope.KEY:
        return f"key:{key_id}" if key_id is not None and r.match == key_name else None
    if r.scope is Scope.USER:
        return f"user:{user}" if user is not None and r.match in ("*", user) else None
    name, _, value = (r.match or "").partition("=")
    got = tags.get(name)
    if got is None or value not in ("*", got):
        return None
    return f"tag:{name}={got}"


def scope_of(scope_id: str) -> tuple[str, str | None]:
    """``"tag:team=search"`` -> ``("tag", "team=search")``; ``"global"`` -> ``("global", None)``:
    what ``Store.scope_spend`` takes to seed a counter from the ledger."""
    kind, _, value = scope_id.partition(":")
    return kind, (value or None)


def soft_hits(holds: Sequence[Hold], used: Sequence[int]) -> list[tuple[Hold, float]]:
    """The holds past their soft threshold, with the fraction used (reservations included)."""
    hits = []
    for h, u in zip(holds, used):
        s = h.rule.soft
        if s is not None and h.limit_nusd > 0 and u >= s * h.limit_nusd:
            hits.append((h, u / h.limit_nusd))
    return hits
