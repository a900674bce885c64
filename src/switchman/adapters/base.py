"""The adapter interface: the codec for one upstream wire API.

An adapter turns a canonical ``ChatRequest`` into one HTTP call for one model, and the upstream's
answer (a whole body, or server-sent events) back into canonical types. It does no I/O: the
executor owns the transport, so adapters are pure and testable on bytes. Errors are mapped here,
once, from the vendor's status and error code (never its message text) into ``UpstreamError``.
"""

from __future__ import annotations

import math

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UpstreamError
from ..types import ChatRequest, ChatResponse, StreamEvent, Usage

if TYPE_CHECKING:
    from ..config import ModelSpec


@dataclass(slots=True)
class UpstreamCall:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    more: tuple[UpstreamCall, ...] = ()
    """Further calls of the same answer, where the upstream caps a batch (Gemini embeds at most 100
    inputs a call): the executor sends them all at once and the adapter's ``join`` makes one answer."""


class StreamDecoder(ABC):
    """Turns one upstream stream, event by event, into canonical stream events."""

    @abstractmethod
    def feed(self, event: str | None, data: bytes) -> list[StreamEvent]:
        """One server-sent event (its ``event:`` name, if any, and its ``data:`` payload)."""

    @property
    @abstractmethod
    def done(self) -> bool:
        """Whether the upstream's own end-of-stream marker has been seen (else: a cut stream)."""


class Adapter(ABC):
    kind: str  # the wire API, as in the provider's ``kind``

    @abstractmethod
    def build(self, req: ChatRequest, model: ModelSpec) -> UpstreamCall:
        """The HTTP call for ``req`` to ``model`` (streaming iff ``req.stream``). Raises
        ``Unsupported`` for what the target cannot take (e.g. images to a text-only model)."""

    @abstractmethod
    def parse(self, body: bytes, model: ModelSpec) -> ChatResponse:
        """A whole (non-streaming) success body."""

    @abstractmethod
    def stream_decoder(self, model: ModelSpec, keep_raw: bool = False) -> StreamDecoder:
        """``keep_raw``: attach each upstream chunk dict to its events (see ``types``)."""

    @abstractmethod
    def error(self, status: int, headers: dict[str, str], body: bytes, model: ModelSpec) -> UpstreamError:
        """An error answer, classified by status and the vendor's error code."""

    def join(self, parts: list[ChatResponse], model: ModelSpec) -> ChatResponse:
        """One answer from the answers of a call and its ``more`` (in order); only adapters that
        build such calls need it."""
        raise NotImplementedError(f"{type(self).__name__} builds no split calls")

    def count_call(self, req: ChatRequest, model: ModelSpec) -> UpstreamCall | None:
        """The vendor's own input-token count for ``req`` (Anthropic's ``count_tokens``, Gemini's
        ``countTokens``), or None where the API has none: the gateway then counts locally."""
        return None

    def parse_count(self, body: bytes) -> int | None:
        """The count from a ``count_call``'s answer; None if the answer holds none."""
        return None


def retry_after(headers: dict[str, str]) -> float | None:
    """Seconds from ``retry-after`` (seconds form) or ``retry-after-ms``; header names lower-case.
    Whatever the upstream sends, the answer is None or a finite number of seconds, at least 0:
    ``inf``, ``nan``, ``1e400`` and negative values are ignored, as garbage. How long a model may
    be kept out for it is capped where it is used (``retry.max_retry_after``)."""
    v = headers.get("retry-after-ms")
    if v:
        got = _seconds(v, 1000)
        if got is not None:
            return got
    v = headers.get("retry-after")
    if v:
        return _seconds(v, 1)  # an HTTP date: rare from LLM vendors; treated as unknown
    return None


def _seconds(v: str, per_second: int) -> float | None:
    try:
        x = float(v[:32]) / per_second
    except ValueError:
        return None
    return x if math.isfinite(x) and x >= 0 else None


MAX_COUNT = 10**9  # no single call reads or writes a billion tokens: past it a count is garbage
_COUNTS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
           "reasoning_tokens")


def checked_usage(parse: Callable[..., Usage]) -> Callable[..., Usage]:
    """Wrap an adapter's usage parser so what it returns is always counts the ledger can take:
    non-negative integers (not floats, strings or bools) below ``MAX_COUNT``, cache counts within
    the input. Anything else (money probe F7-F9: 10**13, -1000000, 10.5, "many") comes back as an
    empty ``Usage`` whose ``invalid`` says why: the request is then counted locally, flagged
    estimated, and its answer still reaches the client."""

    def parse_checked(*args) -> Usage:
        try:
            u = parse(*args)
        except (TypeError, ValueError, OverflowError, AttributeError) as e:
            return Usage(estimated=True, invalid=f"unreadable usage ({type(e).__name__})")
        bad = [f"{k}={getattr(u, k)!r}"[:48] for k in _COUNTS if not _count_ok(getattr(u, k))]
        if not bad and (u.cache_read_tokens + u.cache_write_tokens > u.input_tokens
                        or u.cache_write_1h_tokens > u.cache_write_tokens):
            bad.append("cache counts exceed the input")
        if bad:
            return Usage(estimated=True, invalid=", ".join(bad))
        return u

    return parse_checked


def _count_ok(v: object) -> bool:
    return type(v) is int and 0 <= v <= MAX_COUNT
