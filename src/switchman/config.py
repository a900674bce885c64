"""Runtime config objects (frozen, every reference resolved). Loading lives in ``config_load``."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from .http.limits import Limits as ConnectionLimits

if TYPE_CHECKING:
    from .accounting.settings import AccountingSettings
    from .cache.settings import CacheSettings
    from .routing.experiment import ExperimentSpec
    from .routing.pacing import PaceSpec
    from .telemetry.settings import TelemetrySettings


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens."""

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None  # default: input (no discount known)
    cache_write: Decimal | None = None  # default: input × 1.25 (Anthropic's 5-minute write)
    cache_write_1h: Decimal | None = None  # default: input × 2 (Anthropic's 1-hour write)

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0,
             cache_write_1h: int = 0) -> Decimal:
        """Exact cost in USD for one call's usage (``input_tokens`` includes cached ones;
        ``cache_write`` counts every cache write, of which ``cache_write_1h`` were 1-hour writes)."""
        plain = max(input_tokens - cache_read - cache_write, 0)
        cr = self.cached_input if self.cached_input is not None else self.input
        cw = self.cache_write if self.cache_write is not None else self.input * Decimal("1.25")
        cw1h = self.cache_write_1h if self.cache_write_1h is not None else self.input * 2
        total = (plain * self.input + output_tokens * self.output + cache_read * cr
                 + (cache_write - cache_write_1h) * cw + cache_write_1h * cw1h)
        return total / 1_000_000


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None  # calls in flight to this model
    queue: int = 0  # requests that may wait for a slot; beyond it they overflow to the next model


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
    max_output: int | None = None  # the model's own output cap, when the catalog or config knows it
    default_output: int = 4096  # the cap when neither the request nor max_output gives one (config)
    vision: bool = True
    limits: Limits = Limits()
    timeout: Timeout = Timeout()
    fallbacks: tuple[str, ...] = ()
    priced_by: str = "config"  # config | catalog | unknown
    prompt_cache: str = "auto"  # auto: ask the provider to cache a long repeated prefix (Anthropic, OpenAI) | off
    api: str = "chat"  # chat | responses: an OpenAI-wire model reached through OpenAI's Responses API

    @property
    def wire(self) -> str:
        """The adapter for this model's chat calls: its provider's wire, or ``responses``."""
        return "responses" if self.api == "responses" else self.provider.wire

    def output_cap(self, requested: int | None) -> int:
        """The output tokens a call may produce, sent upstream as its cap and reserved by budgets
        for exactly that: the request's ``max_tokens`` (at most the model's own limit), else the
        model's limit, else ``default_output``."""
        if requested is None:
            return self.max_output or self.default_output
        return min(requested, self.max_output) if self.max_output else requested


@dataclass(frozen=True, slots=True)
class HedgeSpec:
    """Send a second attempt to the next candidate when the first has not answered (or produced
    its first token) ``after`` seconds, or after the model's observed ``percentile`` latency."""

    after: float | None = None
    percentile: float | None = None  # e.g. 95 for ``after: p95``
    max: int = 2  # attempts in flight at most, the first included
    min_after: float = 0.05  # floor for a percentile delay (too few samples: ``after`` or 1 s)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One rule of a ``rules`` policy: every condition in ``when`` holds -> ``to`` (a model or,
    with ``route``, another route's plan). ``label`` names the rule in reasons."""

    when: tuple[tuple[str, object], ...]  # (condition, value): tags, user, tokens_over, ... (configfile)
    to: str
    route: bool = False
    label: str = ""


@dataclass(frozen=True, slots=True)
class ChecksSpec:
    """A cascade's acceptance checks; an answer failing any of them escalates to the next model."""

    refusal: bool = True  # an empty answer, or one that declines ("I can't help with that")
    json: bool = True  # when the request asks for JSON: the answer parses (and meets its schema)
    tools: bool = True  # a tool call names an offered tool, with arguments meeting its schema
    arithmetic: bool = False  # every calculation the answer states ("3 * 20 = 60") is right
    agree: int = 0  # this many of the answers already bought settle on the same answer (0: off)
    logprob: float | None = None  # least mean token probability, where the upstream returns logprobs
    scorer: str | None = None  # a trained answer scorer file (``switchman train --scorer``)
    scorer_min: float = 0.5  # least score (probability the answer is right) to accept
    judge: str | None = None  # a configured model asked to grade the answer, 0..10
    judge_min: float = 7.0  # least grade to accept


@dataclass(frozen=True, slots=True)
class PolicySpec:
    """A route's ``policy:`` beyond the kind and models (each kind reads its own fields)."""

    kind: str
    models: tuple[str, ...] = ()  # as the route's (a cascade's ``start`` policy: within its chain)
    min_quality: float | None = None  # cheapest, learned
    tradeoff: float | None = None  # learned: quality - λ × cost share
    quality: tuple[tuple[str, float], ...] = ()  # cheapest: each model's expected quality
    router: str | None = None  # learned (and cheapest): a trained router file
    aliases: tuple[tuple[str, str], ...] = ()  # configured model name -> the router's name
    task_tag: str = "task"  # cheapest, learned: the request tag naming the prompt's task for the router
    costs: str | None = None  # learned: "router" (its per-prompt estimates) or "prices"; None: chosen (learned.py)
    output_tokens: int = 256  # cheapest: expected answer length, to price a request
    rules: tuple[RuleSpec, ...] = ()
    default: RuleSpec | None = None  # rules: where a request no rule matches goes
    checks: ChecksSpec | None = None  # cascade
    start: PolicySpec | None = None  # cascade: a policy choosing where in the chain to begin
    weights: tuple[tuple[str, float], ...] = ()  # least-latency, least-busy: ties split (draws made) by weight
    tolerance: float = 0.2  # least-latency: models this share slower than the fastest count as tied
    explore: float = 0.05  # least-latency: the share of requests that measure another model first
    stale: float = 60.0  # least-latency: seconds after which a model's figure is measured again
    prior: float = 10.0  # bandit: the weight of a ``quality`` prior, in observations
    context_tag: str | None = None  # bandit: learn per value of this request tag
    context: str | None = None  # bandit: "cluster": learn per prompt cluster of its router
    seed: int | None = None  # bandit: seeds its draws (a replay that must repeat itself)
    experiment: "ExperimentSpec | None" = None  # experiment: arms, split, ramp (routing/experiment.py)


@dataclass(frozen=True, slots=True)
class RouteSpec:
    name: str
    policy: str  # kind: first | weighted | cheapest | rules | learned | cascade | least-latency | least-busy | bandit
    models: tuple[str, ...]
    weights: tuple[float, ...] = ()
    fallbacks: tuple[str, ...] = ()
    hedge: HedgeSpec | None = None
    fallback_on: frozenset[str] = frozenset()  # extra failure kinds that move on, e.g. content_filter
    on_cut: str = "error"  # a stream cut after its first byte: error | resume
    degrade_reply: str | None = None  # a fixed answer when every candidate failed
    escalate_webhook: str | None = None  # POSTed the request id and error chain when all failed
    prefer_other_provider: bool = True  # after a failure, try another provider's model first
    spec: PolicySpec | None = None  # the policy's own settings (None: first/weighted need none)
    cache: "CacheSettings | None" = None  # the route's own cache settings (None: the top-level ones)
    pace: "PaceSpec | None" = None  # budget pacing: spend spread over a window (routing/pacing.py)
    prefer: str | None = None  # headroom: models near their rpm/tpm limits go last (routing/headroom.py)


@dataclass(frozen=True, slots=True)
class RetrySpec:
    attempts: int = 2  # calls to one model per request, the first included
    backoff: float = 0.25  # seconds, the first retry's full-jitter ceiling; doubles each retry
    max_backoff: float = 8.0
    budget: float = 0.2  # retries in flight at most this share of requests in flight (Envoy)
    min_retries: int = 3  # ... but always at least this many
    max_retry_after: float = 300.0  # seconds an upstream's Retry-After may keep a model out, at most


@dataclass(frozen=True, slots=True)
class BreakerSpec:
    failures: int = 5  # failures of one origin (local or upstream) within ``window`` eject a model
    window: float = 30.0
    cooldown: float = 30.0  # first ejection; doubles with each consecutive one
    max_cooldown: float = 300.0
    max_ejection_percent: float = 50.0


@dataclass(frozen=True, slots=True)
class ResilienceSpec:
    deadline: float = 300.0  # overall seconds for a request, retries and fallbacks included
    retry: RetrySpec = RetrySpec()
    breaker: BreakerSpec = BreakerSpec()
    health_interval: float | None = None  # seconds between probes of ejected models; None: off


@dataclass(frozen=True, slots=True)
class ServerSpec:
    host: str = "127.0.0.1"
    port: int = 4000
    workers: int = 1
    max_body_bytes: int = 32 * 1024 * 1024
    allow_public_without_key: bool = False
    limits: ConnectionLimits = ConnectionLimits()  # per-connection sizes, deadlines and the connection cap (http/limits.py)


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
    resilience: ResilienceSpec = ResilienceSpec()
    accounting: "AccountingSettings | None" = None  # ledger, state, budgets; None: no accounting
    telemetry: "TelemetrySettings | None" = None  # metrics, tracing, log; None: the defaults
    cache: "CacheSettings | None" = None  # the response cache; None: off
    source: str = "<defaults>"
