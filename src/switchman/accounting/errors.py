"""The accounting errors, in the one hierarchy of ``switchman.errors``::

    ClientError
    ├── BudgetExceeded     429  budget_exceeded   a budget (or the request's own cost cap) is spent
    └── RateLimited        429  rate_limited      a key's requests or tokens per minute are used up
    SwitchmanError
    └── StateUnavailable   503  state_unavailable the shared state is down and limits fail closed

Both 429s carry ``retry_after`` (seconds): to the next rate window, or to the budget's next period.
Keys use ``errors.Unauthorized`` (401: missing, unknown, revoked or expired) and ``errors.Forbidden``
(403: a route or model the key may not use).
"""

from __future__ import annotations

from ..errors import ClientError, SwitchmanError


class BudgetExceeded(ClientError):
    status = 429
    kind = "budget_exceeded"

    def __init__(self, message: str, *, retry_after: float | None = None, scope: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after, scope=scope)


class RateLimited(ClientError):
    status = 429
    kind = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, scope: str | None = None) -> None:
        super().__init__(message, retry_after=retry_after, scope=scope)


class StateUnavailable(SwitchmanError):
    status = 503
    kind = "state_unavailable"
