"""Rate-limit cooldowns: a model that answered 429 with Retry-After is not sent another request
until that time has passed; meanwhile requests overflow to the next candidate. Apart from outlier
ejection on purpose: a rate limit says the account is busy, not that the model is broken.
"""

from __future__ import annotations

from ..clock import Clock


class Cooldowns:
    """Per-model "not before" times on an injected clock."""

    __slots__ = ("_until", "clock", "max_seconds")

    def __init__(self, clock: Clock, max_seconds: float = 300.0) -> None:
        self.clock = clock
        self.max_seconds = max_seconds  # an upstream's Retry-After is trusted up to this (Envoy's max_interval)
        self._until: dict[str, float] = {}

    def cool(self, model: str, seconds: float) -> None:
        """Keep ``model`` out for ``seconds`` from now, at most ``max_seconds`` (a longer cooldown
        already set stands)."""
        if not seconds > 0:  # also NaN
            return
        seconds = min(seconds, self.max_seconds)
        until = self.clock.now() + seconds
        if until > self._until.get(model, 0.0):
            self._until[model] = until

    def remaining(self, model: str) -> float:
        """Seconds until ``model`` may be used again; 0.0 when it may be now."""
        until = self._until.get(model)
        if until is None:
            return 0.0
        left = until - self.clock.now()
        if left <= 0:
            del self._until[model]
            return 0.0
        return left

    def cooling(self) -> dict[str, float]:
        """Every model still cooling down, with its seconds left (for the admin view)."""
        return {m: left for m in list(self._until) if (left := self.remaining(m)) > 0}
