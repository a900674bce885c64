"""Runtime config objects (frozen, every reference resolved). Loading lives in ``config_load``."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None  # default: input (no discount known)
    cache_write: Decimal | None = None  # default: input × 1.25 (Anthropic's 5-minute write)

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0) -> Decimal:
        """Exact cost in USD for one call's usage (``input_tokens`` includes cached ones)."""
        plain = max(input_tokens - cache_read - cache_write, 0)
        cr = self.cached_input if self.cached_input is not None else self.input
        cw = self.cache_write if self.cache_write is not None else self.input * Decimal("1.25")
        total = plain * self.input + output_tokens * self.output + cache_read * cr + cache_write * cw
        return total / 1_000_000


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None


@dataclass(frozen=True, slots=True)
class Timeout:
    """Seconds: ``total`` for the whole answer, ``first_token`` for the first byte of it."""

    total: float = 600.0
    first_token: float | None = None
    connect: float = 10.0


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    name: str
    kind: str  # as configured: openai, anthropic, gemini, azure, groq, ...
    wire: str  # the adapter: openai, anthropic or gemini
    base_url: str
    api_key: str | None = field(default=None, repr=False)  # never printed, never logged
    auth: str = "bearer"  # bearer | x-api-key | api-key | x-goog-api-key | none
    api_version: str | None = None  # Azure's api-version query parameter
    headers: tuple[tuple[str, str], ...] = ()  # extra headers sent upstream


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str  # what clients ask for
    provider: ProviderSpec
    upstream: str  # the upstream's model id (Azure: the deployment name)
    price: Price
    context_window: int | None = None
    max_output: int | None = None  # the model's own output cap, when the catalog knows it
    vision: bool = True
    limits: Limits = Limits()
    timeout: Timeout = Timeout()
    fallbacks: tuple[str, ...] = ()
    priced_by: str = "config"  # config | catalog | unknown


@dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str
    policy: str  # kind: first | weighted
    models: tuple[str, ...]
    weights: tuple[float, ...] = ()
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServerSpec:
    host: str = "127.0.0.1"
    port: int = 4000
    workers: int = 1
    max_body_bytes: int = 32 * 1024 * 1024
    allow_public_without_key: bool = False


@dataclass(frozen=True, slots=True)
class AuthSpec:
    admin_key: str | None = field(default=None, repr=False)
    keys_required: bool = False


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerSpec
    providers: dict[str, ProviderSpec]
    models: dict[str, ModelSpec]
    routes: dict[str, RouteSpec]
    auth: AuthSpec = AuthSpec()
    source: str = "<defaults>"
