"""What the ledger keeps: one ``RequestRecord`` per request and one ``AttemptRecord`` per attempt
(failed, retried, hedged and escalated attempts included), and the money arithmetic behind them.

Money is ``Decimal`` in USD everywhere in Python. The database keeps integer picodollars
(1e-12 USD), which is exact for any price given to six decimal places per 1M tokens (list prices
have at most three), so the ledger's totals equal usage × price exactly, and sums stay integers.
Shared state (Redis, whose Lua numbers are doubles, exact to 2**53) counts whole nanodollars,
which keeps budgets exact up to $9 million per counter.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal

from ..config import Price

ZERO = Decimal(0)
_PICO = Decimal(10) ** 12
_NANO = Decimal(10) ** 9
_PER_M = 1_000_000


def to_pusd(usd: Decimal) -> int:
    """USD -> integer picodollars (rounded half-even below 1e-12 USD)."""
    return int((usd * _PICO).to_integral_value(ROUND_HALF_EVEN))


def from_pusd(pusd: int) -> Decimal:
    return Decimal(pusd) / _PICO


def to_nusd(usd: Decimal, *, up: bool = False) -> int:
    """USD -> integer nanodollars; ``up`` rounds toward +inf (reservations never under-reserve)."""
    return int((usd * _NANO).to_integral_value(ROUND_CEILING if up else ROUND_HALF_EVEN))


def from_nusd(nusd: int) -> Decimal:
    return Decimal(nusd) / _NANO


class Role(str, enum.Enum):
    """Why an attempt was made."""

    FIRST = "first"
    RETRY = "retry"  # the same model again
    FALLBACK = "fallback"  # the next candidate after a failure
    HEDGE = "hedge"  # a parallel try after the hedge delay
    ESCALATION = "escalation"  # a cascade moving up after a failed quality check
    JUDGE = "judge"  # a cascade's judge model grading an answer


def max_cost(price: Price, input_tokens: int, max_tokens: int, cache_writes: bool = False) -> Decimal:
    """The most a call can cost: every input token at the dearest rate it may be billed (with
    ``cache_writes``, a request that marks cache breakpoints: the 5-minute or 1-hour cache-write
    rate, up to 2x input) plus ``max_tokens`` of output."""
    rate = price.input
    if cache_writes:
        rate = max(rate, price.cache_write if price.cache_write is not None else price.input * Decimal("1.25"),
                   price.cache_write_1h if price.cache_write_1h is not None else price.input * 2)
    return (input_tokens * rate + max_tokens * price.output) / _PER_M


@dataclass(slots=True)
class AttemptRecord:
    """One call of one model. ``status`` is the HTTP status it ended with (200 when it answered);
    ``error`` the error kind otherwise. Token counts are as the upstream reported them (input
    includes cached tokens), or counted locally with ``estimated`` set."""

    index: int  # 0-based, in the order attempts started
    role: Role
    model: str
    provider: str
    status: int
    error: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # all cache writes ...
    cache_write_1h_tokens: int = 0  # ... of which 1-hour writes
    cost: Decimal = ZERO
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    estimated: bool = False
    time: float = 0.0  # start, unix seconds
    detail: str | None = None  # why it failed (the error's message) or why its answer was not sent
    uncached: Decimal | None = None  # what the same usage would cost with no prompt cache at all


@dataclass(slots=True)
class RequestRecord:
    """One client request. Tokens and ``cost`` are totals over its attempts (``from_attempts``);
    ``model``/``provider`` name the one that answered (None when none did). ``baseline_cost`` is
    what the same usage would have cost on the route's most expensive model (for savings); the
    ``Accountant`` fills it, and ``key_id``, ``user`` and ``tags`` when left empty."""

    request_id: str
    time: float  # arrival, unix seconds
    route: str
    model: str | None
    provider: str | None
    status: int
    error: str | None = None
    key_id: str | None = None
    user: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    cost: Decimal = ZERO
    baseline_cost: Decimal | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cache: str | None = None  # miss | hit | semantic-hit | bypass
    reason: str = ""
    estimated: bool = False
    attempts: int = 0
    stream: bool = False
    episode: str | None = None  # x-switchman-episode
    dialect: str | None = None  # the API the client spoke: openai | anthropic | ...
    traceparent: str | None = None  # the client's trace context (for tracing; not stored)
    bodies: tuple[str, str, bool] | None = None  # (prompt, answer, cut) with ``log: {bodies: true}``
    cache_saved: Decimal = ZERO  # provider prompt caching: uncached cost minus cost (writes can make it negative)

    @classmethod
    def from_attempts(cls, request_id: str, time: float, route: str, attempts: Iterable[AttemptRecord],
                      answered: AttemptRecord | None, **fields) -> RequestRecord:
        """A request whose tokens and cost are the sums over ``attempts``, answered by ``answered``
        (None: every attempt failed; pass ``status``/``error`` then)."""
        atts = list(attempts)
        if answered is not None:
            fields.setdefault("status", answered.status)
            fields.setdefault("ttft_ms", answered.ttft_ms)
        fields.setdefault("status", atts[-1].status if atts else 500)
        fields.setdefault("error", None if answered is not None else (atts[-1].error if atts else None))
        return cls(
            request_id=request_id, time=time, route=route,
            model=answered.model if answered else None, provider=answered.provider if answered else None,
            input_tokens=sum(a.input_tokens for a in atts),
            output_tokens=sum(a.output_tokens for a in atts),
            cache_read_tokens=sum(a.cache_read_tokens for a in atts),
            cache_write_tokens=sum(a.cache_write_tokens for a in atts),
            cache_write_1h_tokens=sum(a.cache_write_1h_tokens for a in atts),
            cost=sum((a.cost for a in atts), ZERO),
            cache_saved=sum((a.uncached - a.cost for a in atts if a.uncached is not None), ZERO),
            estimated=any(a.estimated for a in atts),
            attempts=len(atts),
            **fields,
        )


MAX_TAGS = 32  # per request or key: tags are report dimensions, not a payload
MAX_TAG_NAME = 64
MAX_TAG_VALUE = 256


def parse_tags(header: str | None) -> dict[str, str]:
    """``x-switchman-tags: team=search,feature=chat`` -> ``{"team": "search", "feature": "chat"}``.
    A bare word is a tag with an empty value; blanks around names are dropped. ValueError past
    ``MAX_TAGS`` tags or a name or value too long (each is a ledger row and a report label)."""
    out: dict[str, str] = {}
    if not header:
        return out
    for part in header.split(",", MAX_TAGS + 1):
        k, _, v = part.partition("=")
        k = k.strip()
        if k:
            out[k] = v.strip()
    check_tags(out)
    return out


def check_tags(tags: Mapping[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} tags")
    for k, v in tags.items():
        if len(k) > MAX_TAG_NAME or len(v) > MAX_TAG_VALUE:
            raise ValueError(f"tag {k[:40]!r}: names are at most {MAX_TAG_NAME} characters, values {MAX_TAG_VALUE}")


def answering(r: RequestRecord, attempts: Sequence[AttemptRecord]) -> int | None:
    """The index of the attempt that answered ``r`` (the last clean one on its model), if any."""
    if r.model is None:
        return None
    for i in range(len(attempts) - 1, -1, -1):
        a = attempts[i]
        if a.model == r.model and a.error is None and a.role is not Role.JUDGE:
            return i
    return None
