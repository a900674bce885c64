"""``GET /metrics``: Prometheus text format, with ``prometheus_client``.

Two families of series:

* **GenAI client metrics**, named as the OpenTelemetry GenAI semantic conventions v1.41.1 pin them
  (``docs/gen-ai/gen-ai-metrics.md``), in Prometheus naming, with the recommended buckets: one
  observation per upstream call (switchman is the GenAI *client* of each provider)::

      gen_ai_client_operation_duration_seconds{gen_ai_operation_name, gen_ai_provider_name,
          gen_ai_request_model, gen_ai_response_model, error_type}
      gen_ai_client_token_usage{..., gen_ai_token_type="input"|"output"}     (billable tokens)
      gen_ai_client_operation_time_to_first_chunk_seconds{...}                (streams)
      gen_ai_client_operation_time_per_output_chunk_seconds{...}              (streams)

* **``switchman_*``**, what only a router knows: requests by route, model, dialect, status class
  and cache result; attempts by role and outcome; cost and savings in USD; ejections and ejected
  models; retry-budget exhaustion; budget use per budget rule; rate-limit refusals; in-flight calls
  per model.

Labels are a bounded set: configured model and route names (anything else is ``other``, so junk
names a client sends cannot mint series), dialects, status classes, roles, outcomes. Keys, users
and prompts are never labels. Tag values are, only for the tag names ``metrics: {tags: [...]}``
lists; each distinct value is a new series.

**Workers.** With ``--workers N`` each worker writes its values to mmap'd files in one directory
(prometheus_client's multiprocess mode) and a scrape of any worker reads them all, so counts are
the fleet's, not one worker's. ``serve`` creates the directory fresh at every start (a temp dir of
its own unless ``metrics: {dir: ...}``), wipes it, and marks a stopped worker dead. Gauges say how
they combine: in-flight calls add up across live workers (``livesum``), an ejected model is
ejected if any live worker ejected it (``livemax``), budget use is the latest reading.

Observing costs the request nothing: ``Telemetry`` calls ``request_done`` after the answer went out,
from the ledger's settle step.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client import multiprocess

from ..accounting.records import AttemptRecord, RequestRecord, answering
from .settings import MetricsSettings

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# semconv v1.41.1 ExplicitBucketBoundaries
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
# http.server.request.duration (stable HTTP semconv), for the whole request as the client sees it
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10)

# gen_ai.provider.name for each wire API (semconv well-known values)
PROVIDER_NAMES = {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini"}

_GENAI = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_response_model",
          "error_type")
_OTHER = "other"


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status < 600 else "other"


def outcome_of(a: AttemptRecord, answered: bool) -> str:
    """``ok`` (sent to the client), ``failed``, ``hedge_lost``, ``rejected`` (a cascade check
    refused it), ``judge`` (a cascade's grading call), ``cancelled``."""
    if answered:
        return "hedge_won" if a.role.value == "hedge" else "ok"
    if a.error in ("hedge_lost", "rejected", "cancelled"):
        return a.error
    if a.error is None:
        return "judge" if a.role.value == "judge" else "ok"
    return "failed"


class Metrics:
    """The gateway's Prometheus series. One per process; in multiprocess mode every worker's
    values meet at scrape time."""

    def __init__(self, settings: MetricsSettings, names: Iterable[str], providers: Mapping[str, str],
                 multiprocess_dir: str | None = None) -> None:
        self.settings = settings
        self.names = frozenset(names)  # configured models and routes: the only label values for them
        self.providers = dict(providers)  # provider config name -> gen_ai.provider.name
        self.dir = multiprocess_dir or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if self.dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = self.dir
            values.ValueClass = values.MultiProcessValue()
        self.registry = CollectorRegistry(auto_describe=True)
        self._children: dict = {}
        self._signatures: dict = {}  # an attempt's labels -> its series (``_attempt``); bounded as labels are
        r = self.registry
        tags = tuple(f"tag_{t.replace('.', '_').replace('-', '_')}" for t in settings.tags)
        self._tag_names = settings.tags
        self.duration = Histogram("gen_ai_client_operation_duration_seconds",
                                  "GenAI operation duration (one upstream call)", _GENAI,
                                  buckets=DURATION_BUCKETS, registry=r)
        self.tokens = Histogram("gen_ai_client_token_usage", "Billable tokens per upstream call",
                                (*_GENAI[:4], "gen_ai_token_type"), buckets=TOKEN_BUCKETS, registry=r)
        self.ttfc = Histogram("gen_ai_client_operation_time_to_first_chunk_seconds",
                              "Time to the first chunk of a streamed upstream call", _GENAI[:4],
                              buckets=DURATION_BUCKETS, registry=r)
        self.tpoc = Histogram("gen_ai_client_operation_time_per_output_chunk_seconds",
                              "Time per output token after the first, of a streamed upstream call", _GENAI[:4],
                              buckets=DURATION_BUCKETS, registry=r)
        self.requests = Counter("switchman_requests", "Requests answered or refused",
                                ("route", "model", "dialect", "status_class", "cache", *tags), registry=r)
        self.request_duration = Histogram("switchman_request_duration_seconds",
                                          "Whole requests as the client saw them (streams: to the last byte)",
                                          ("route", "dialect", "stream"), buckets=HTTP_BUCKETS, registry=r)
        self.attempts = Counter("switchman_attempts", "Upstream calls by why they were made and how they ended",
                                ("model", "provider", "role", "outcome"), registry=r)
        self.cost = Counter("switchman_cost_usd", "Spend in USD (each call on its own model)", ("route", "model"),
                            registry=r)
        self.savings = Counter("switchman_savings_usd",
                               "Spend avoided against each route's most expensive model", ("route",), registry=r)
        self.cache_savings = Counter("switchman_cache_savings_usd", "Spend avoided by answers served from cache",
                                     ("route",), registry=r)
        self.ejected = Gauge("switchman_model_ejected", "1 while a model is out of rotation (outlier ejection)",
                             ("model",), multiprocess_mode="livemax", registry=r)
        self.ejections = Counter("switchman_ejections", "Models taken out of rotation", ("model",), registry=r)
        self.retry_budget = Counter("switchman_retry_budget_exhausted",
                                    "Retries refused because the retry budget was spent", ("model",), registry=r)
        self.refusals = Counter("switchman_rate_limited",
                                "Requests refused by a rate limit or budget (kind: rate_limited | budget_exceeded)",
                                ("route", "kind"), registry=r)
        self.budget_used = Gauge("switchman_budget_used_ratio", "Spend this period over the limit, per budget rule",
                                 ("budget",), multiprocess_mode="mostrecent", registry=r)
        self.inflight = Gauge("switchman_inflight_calls", "Upstream calls in flight per model", ("model",),
                              multiprocess_mode="livesum", registry=r)

    # -- observing ---------------------------------------------------------------------------------
    def _child(self, metric, *labels):
        """``metric.labels(*labels)``, cached: prometheus_client's ``labels()`` validates and locks
        on every call (about 2 µs); label sets are bounded, so the cache is too."""
        key = (metric, labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def name(self, n: str | None) -> str:
        return n if n in self.names else (_OTHER if n else "")

    def request_done(self, req: RequestRecord, attempts: Sequence[AttemptRecord], dialect: str) -> None:
        route = self.name(req.route)
        model = self.name(req.model)
        tag_values = [req.tags.get(t, "") for t in self._tag_names]
        self._child(self.requests, route, model, dialect, status_class(req.status), req.cache or "none",
                             *tag_values).inc()
        self._child(self.request_duration, route, dialect, "true" if req.stream else "false").observe(req.latency_ms / 1000)
        end = req.time + req.latency_ms / 1000
        answered = answering(req, attempts)
        for i, a in enumerate(attempts):
            self._attempt(a, route, i == answered, req.stream, end)
        if req.baseline_cost is not None and req.baseline_cost > req.cost:
            saved = float(req.baseline_cost - req.cost)
            if req.cache in ("hit", "semantic-hit"):  # no model called: all it would have cost
                self._child(self.cache_savings, route).inc(saved)
            else:
                self._child(self.savings, route).inc(saved)

    def _attempt(self, a: AttemptRecord, route: str, answered: bool, stream: bool, end: float) -> None:
        outcome = outcome_of(a, answered)
        failed = outcome == "failed"
        sig = (route, a.model, a.provider, a.role, outcome, a.error if failed else None)
        s = self._signatures.get(sig)
        if s is None:
            s = _Series(self, a, route, outcome)
            if len(self._signatures) < 10_000:  # label sets are bounded by the config; this bound is a seatbelt
                self._signatures[sig] = s
        got = s.made  # each series resolved on first use (``_Series.get``)
        (got[0] or s.get(0)).inc()
        if a.cost:
            (got[1] or s.get(1)).inc(float(a.cost))
        # A streamed answer's call lasts until its last byte, not its first token.
        seconds = (end - a.time) if (answered and stream and a.time) else a.latency_ms / 1000
        (got[2] or s.get(2)).observe(max(seconds, 0.0))
        if failed and not a.input_tokens:
            return  # no usage metric when the counts are unknown (semconv)
        if a.input_tokens:
            (got[3] or s.get(3)).observe(a.input_tokens)
        if a.output_tokens:
            (got[4] or s.get(4)).observe(a.output_tokens)
        if stream and a.ttft_ms is not None:
            (got[5] or s.get(5)).observe(a.ttft_ms / 1000)
            if answered and a.output_tokens > 1:
                (got[6] or s.get(6)).observe(max(seconds - a.ttft_ms / 1000, 0.0) / (a.output_tokens - 1))

    def refused(self, route: str | None, dialect: str, status: int, kind: str) -> None:
        """A request answered with an error before any model was called (no ledger row)."""
        name = self.name(route)
        self._child(self.requests, name, "", dialect, status_class(status), "none", *("" for _ in self._tag_names)).inc()
        if kind in ("rate_limited", "budget_exceeded"):
            self._child(self.refusals, name, kind).inc()

    def decision(self, event: str, model: str) -> None:
        """The executor's decision events: ejections, readmissions, a spent retry budget."""
        m = self.name(model)
        if event == "ejected":
            self._child(self.ejections, m).inc()
            self._child(self.ejected, m).set(1)
        elif event == "readmitted":
            self._child(self.ejected, m).set(0)
        elif event == "retry_budget_spent":
            self._child(self.retry_budget, m).inc()

    def calls(self, model: str, delta: int) -> None:
        self._child(self.inflight, self.name(model)).inc(delta)

    def budgets(self, used: Iterable[tuple[str, float]]) -> None:
        for name, ratio in used:
            self._child(self.budget_used, name).set(ratio)

    # -- scraping ----------------------------------------------------------------------------------
    def render(self) -> bytes:
        if self.dir:
            reg = CollectorRegistry()
            multiprocess.MultiProcessCollector(reg, path=self.dir)
            return generate_latest(reg)
        return generate_latest(self.registry)


class _Series:
    """The series an attempt with one set of labels touches (its count, cost, duration, tokens in
    and out, time to first chunk and per chunk), each resolved the first time it is used: one
    lookup per attempt instead of one per series was half of the metrics' cost per request."""

    __slots__ = ("made", "specs")

    def __init__(self, m: Metrics, a: AttemptRecord, route: str, outcome: str) -> None:
        model = m.name(a.model)
        provider = m.providers.get(a.provider, a.provider)
        failed = outcome == "failed"
        labels = ("chat", provider, model, model)
        self.specs = ((m.attempts, (model, a.provider, a.role.value, outcome)), (m.cost, (route, model)),
                      (m.duration, ("chat", provider, model, "" if failed else model, (a.error or "") if failed else "")),
                      (m.tokens, (*labels, "input")), (m.tokens, (*labels, "output")),
                      (m.ttfc, labels), (m.tpoc, labels))
        self.made: list = [None] * len(self.specs)

    def get(self, i: int):
        c = self.made[i]
        if c is None:
            metric, labels = self.specs[i]
            c = self.made[i] = metric.labels(*labels)
        return c


def fresh_dir(path: str | None) -> str:
    """The multiprocess directory for one ``serve`` start: ``path`` emptied of old ``*.db`` files,
    or a new temp directory."""
    import tempfile

    if path is None:
        return tempfile.mkdtemp(prefix="switchman-metrics-")
    os.makedirs(path, exist_ok=True)
    for f in os.listdir(path):
        if f.endswith(".db"):
            os.remove(os.path.join(path, f))
    return path


def worker_stopped(pid: int, path: str) -> None:
    multiprocess.mark_process_dead(pid, path)
