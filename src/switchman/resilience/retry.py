"""How long to wait before a retry, and whether a retry may be made at all.

``Backoff`` is exponential backoff with "full jitter" (AWS Architecture Blog, "Exponential Backoff
And Jitter", 2015): spreading retries uniformly over the whole interval is what keeps a crowd of
clients that failed together from retrying together. A Retry-After from the upstream wins.

``RetryBudget`` is Envoy's retry budget (``CircuitBreakers.Thresholds.RetryBudget``): retries in
flight may be at most ``budget_percent`` of the active requests, but never fewer than
``min_retry_concurrency`` (defaults 20% and 3), so that a brown-out upstream is not hit with
``attempts``-times its normal load by the gateway's own retries.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# 2**62 seconds is already far beyond any cap; a larger exponent would overflow the float.
_MAX_EXPONENT = 62


@dataclass(slots=True)
class Backoff:
    """Full-jitter exponential backoff: retry ``n`` (1-based) waits ``uniform(0, min(max,
    base * 2**(n-1)))`` seconds."""

    base: float
    max: float
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry).

        When the upstream said Retry-After, exactly that: it knows when it will take requests
        again, and a jittered guess shorter than it is a wasted attempt. Whether it fits in the
        request's deadline is the caller's call.
        """
        if retry_after is not None:
            return max(0.0, retry_after)
        n = min(max(retry_number, 1) - 1, _MAX_EXPONENT)
        return self.rng.uniform(0.0, min(self.max, self.base * 2.0**n))


class RetryBudget:
    """Envoy's retry budget: concurrent retries bounded relative to requests in flight.

    Not time-based: it counts what is in flight now. Call ``start_request`` / ``end_request``
    around every request (or use ``request()``), and ``try_acquire_retry`` / ``release_retry``
    around every retry's wait-and-attempt (or use ``retry()``).
    """

    __slots__ = ("_requests", "_retries", "denied", "min_retries", "ratio")

    def __init__(self, ratio: float = 0.2, min_retries: int = 3) -> None:
        if ratio < 0 or min_retries < 0:
            raise ValueError("retry budget ratio and min_retries must be >= 0")
        self.ratio = ratio
        self.min_retries = min_retries
        self._requests = 0
        self._retries = 0
        self.denied = 0  # retries refused so far, for metrics

    @property
    def requests_in_flight(self) -> int:
        return self._requests

    @property
    def retries_in_flight(self) -> int:
        return self._retries

    @property
    def limit(self) -> int:
        """Retries allowed in flight now: ``max(min_retries, ratio * requests in flight)``."""
        # Truncated to whole retries, as Envoy does (its limit is an integer count); the epsilon
        # keeps float noise (0.29 * 100 = 28.999...) from costing a retry.
        return max(self.min_retries, int(self.ratio * self._requests + 1e-9))

    def start_request(self) -> None:
        self._requests += 1

    def end_request(self) -> None:
        self._requests = max(0, self._requests - 1)

    def try_acquire_retry(self) -> bool:
        """Take a retry slot if the budget has one; ``False`` means: do not retry."""
        if self._retries < self.limit:
            self._retries += 1
            return True
        self.denied += 1
        return False

    def release_retry(self) -> None:
        self._retries = max(0, self._retries - 1)

    @contextmanager
    def request(self) -> Iterator[None]:
        """``with budget.request():`` around one request."""
        self.start_request()
        try:
            yield
        finally:
            self.end_request()

    @contextmanager
    def retry(self) -> Iterator[bool]:
        """``with budget.retry() as ok:`` a retry slot held for the block when ``ok``."""
        ok = self.try_acquire_retry()
        try:
            yield ok
        finally:
            if ok:
                self.release_retry()
