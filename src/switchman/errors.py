"""The one error hierarchy. Foreign errors (sockets, vendors' statuses) are mapped into it once,
at the adapter or transport boundary; dialects re-encode it in the client's own error shape.

    SwitchmanError                    status  kind
    ├── ConfigError                      -    config file problems (file, line, key)
    ├── ClientError                           the client's request is at fault
    │   ├── InvalidRequest             400    invalid_request (names ``param``)
    │   ├── Unauthorized               401    authentication
    │   ├── Forbidden                  403    permission
    │   ├── UnknownModel               404    not_found (lists what exists)
    │   ├── BodyTooLarge               413    request_too_large
    │   ├── UnsupportedMediaType       415    invalid_request (a body that is not JSON)
    │   ├── UnknownEndpoint            404    not_found
    │   ├── MethodNotAllowed           405    invalid_request
    │   └── Unsupported                400    invalid_request (e.g. images to a text-only model)
    └── UpstreamError                         an attempt failed; ``origin`` local or upstream
        ├── ConnectFailed              502    local: connect refused, reset, DNS, TLS
        ├── UpstreamTimeout            504    local: no answer (or no first token) in time
        ├── StreamCut                  502    local: the stream ended before its end event
        ├── UpstreamStatus          status    upstream: the provider answered with an error;
        │                                     ``kind`` says which (rate_limited, overloaded, ...)
        └── AllAttemptsFailed          5xx    every planned attempt failed; keeps each error

Retryable is an explicit allow-list (``RETRYABLE_KINDS``), never a default.
"""

from __future__ import annotations

import enum


class SwitchmanError(Exception):
    status = 500
    kind = "api_error"

    def __init__(self, message: str, **fields) -> None:
        super().__init__(message)
        self.message = message
        self.param: str | None = fields.pop("param", None)
        for k, v in fields.items():
            setattr(self, k, v)


class ConfigError(SwitchmanError):
    """A config problem, located: ``where`` is ``file:line`` and ``key`` the dotted key."""

    def __init__(self, message: str, where: str | None = None, key: str | None = None) -> None:
        self.where = where
        self.key = key
        loc = ", ".join(x for x in (where, f"key '{key}'" if key else None) if x)
        super().__init__(f"{loc}: {message}" if loc else message)


class ClientError(SwitchmanError):
    status = 400
    kind = "invalid_request"


class InvalidRequest(ClientError):
    pass


class Unsupported(ClientError):
    pass


class Unauthorized(ClientError):
    status = 401
    kind = "authentication"


class Forbidden(ClientError):
    status = 403
    kind = "permission"


class UnknownModel(ClientError):
    status = 404
    kind = "not_found"


class BodyTooLarge(ClientError):
    status = 413
    kind = "request_too_large"


class UnsupportedMediaType(ClientError):
    status = 415


class UnknownEndpoint(ClientError):
    status = 404
    kind = "not_found"


class UnknownResource(ClientError):
    """A request id, episode or other object this caller may not see or that does not exist."""

    status = 404
    kind = "not_found"


class MethodNotAllowed(ClientError):
    status = 405
    kind = "invalid_request"


class Origin(str, enum.Enum):
    LOCAL = "local"  # we could not talk to the upstream: connect, reset, timeout
    UPSTREAM = "upstream"  # the upstream answered with an error status


class UpstreamKind(str, enum.Enum):
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    SERVER_ERROR = "server_error"
    CONTEXT_WINDOW = "context_window_exceeded"
    CONTENT_FILTER = "content_filter"
    BAD_REQUEST = "bad_request"
    AUTH = "auth"
    NOT_FOUND = "not_found"
    CONNECT = "connect"
    TIMEOUT = "timeout"
    STREAM_CUT = "stream_cut"


# What a retry or a fallback may be tried for. Everything else goes straight back to the client.
RETRYABLE_KINDS = frozenset(
    {
        UpstreamKind.RATE_LIMITED,
        UpstreamKind.OVERLOADED,
        UpstreamKind.SERVER_ERROR,
        UpstreamKind.CONNECT,
        UpstreamKind.TIMEOUT,
        UpstreamKind.STREAM_CUT,
    }
)

# The status a client sees for each kind (the same class as the upstream's own status).
_CLIENT_STATUS = {
    UpstreamKind.RATE_LIMITED: 429,
    UpstreamKind.OVERLOADED: 503,
    UpstreamKind.SERVER_ERROR: 502,
    UpstreamKind.CONTEXT_WINDOW: 400,
    UpstreamKind.CONTENT_FILTER: 400,
    UpstreamKind.BAD_REQUEST: 400,
    # The provider refused *our* credentials: not the client's fault, so not a 401 to it.
    UpstreamKind.AUTH: 502,
    UpstreamKind.NOT_FOUND: 404,
    UpstreamKind.CONNECT: 502,
    UpstreamKind.TIMEOUT: 504,
    UpstreamKind.STREAM_CUT: 502,
}


class UpstreamError(SwitchmanError):
    """One attempt's failure. ``model`` is the configured model name, ``retry_after`` seconds."""

    upstream_kind = UpstreamKind.SERVER_ERROR
    origin = Origin.UPSTREAM

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        upstream_kind: UpstreamKind | None = None,
        upstream_status: int | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        if upstream_kind is not None:
            self.upstream_kind = upstream_kind
        self.upstream_status = upstream_status
        self.retry_after = retry_after
        self.code = code

    @property
    def status(self) -> int:  # type: ignore[override]
        return _CLIENT_STATUS.get(self.upstream_kind, 502)

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.upstream_kind.value

    @property
    def retryable(self) -> bool:
        return self.upstream_kind in RETRYABLE_KINDS

    def short(self) -> str:
        """A few words for headers and reasons, e.g. ``gpt-4o:rate_limited(429)``."""
        s = f"({self.upstream_status})" if self.upstream_status else ""
        return f"{self.model or '?'}:{self.upstream_kind.value}{s}"


class ConnectFailed(UpstreamError):
    upstream_kind = UpstreamKind.CONNECT
    origin = Origin.LOCAL


class UpstreamTimeout(UpstreamError):
    upstream_kind = UpstreamKind.TIMEOUT
    origin = Origin.LOCAL


class StreamCut(UpstreamError):
    upstream_kind = UpstreamKind.STREAM_CUT
    origin = Origin.LOCAL


class UpstreamStatus(UpstreamError):
    origin = Origin.UPSTREAM


def kind_of_status(status: int) -> UpstreamKind:
    """The kind a bare HTTP status implies; adapters refine it with the vendor's error code."""
    if status == 429:
        return UpstreamKind.RATE_LIMITED
    if status in (503, 529):
        return UpstreamKind.OVERLOADED
    if status >= 500:
        return UpstreamKind.SERVER_ERROR
    if status in (401, 403):
        return UpstreamKind.AUTH
    if status == 404:
        return UpstreamKind.NOT_FOUND
    if status == 413:
        return UpstreamKind.CONTEXT_WINDOW
    return UpstreamKind.BAD_REQUEST


class AllAttemptsFailed(SwitchmanError):
    """Every planned attempt failed. The client sees the most telling error's status."""

    kind = "all_attempts_failed"

    def __init__(self, errors: list[UpstreamError]) -> None:
        self.errors = errors
        chain = "; ".join(f"{e.short()}: {e.message}" for e in errors)
        super().__init__(f"all {len(errors)} attempts failed: {chain}")

    @property
    def status(self) -> int:  # type: ignore[override]
        last = self.errors[-1] if self.errors else None
        if last is None:
            return 503
        # A client mistake (bad request, context too long) is that, whatever was tried before.
        if 400 <= last.status < 500 and last.upstream_kind is not UpstreamKind.RATE_LIMITED:
            return last.status
        if all(e.upstream_kind is UpstreamKind.RATE_LIMITED for e in self.errors):
            return 429
        return 503

    @property
    def retry_after(self) -> float | None:
        ras = [e.retry_after for e in self.errors if e.retry_after]
        return min(ras) if ras else None
