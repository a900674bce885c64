"""OpenTelemetry traces of finished requests, exported over OTLP/HTTP (protobuf). The ``otel``
extra: ``pip install 'switchman[otel]'`` and ``tracing: {endpoint: http://collector:4318/v1/traces}``.

Shape (GenAI semantic conventions v1.41.1, ``gen-ai-spans.md``): one SERVER span per request,
``{operation} {route}``, carrying what the client asked for and the switchman decision
(``switchman.route``, ``.reason``, ``.cache``, ``.cost_usd``, ``.request_id``), and one CLIENT child
per upstream attempt, ``{operation} {model}``, with ``gen_ai.provider.name``, the model, tokens,
``server.address``, its role (first, retry, fallback, hedge, escalation, judge) and, when it
failed, ``error.type`` and an ERROR status. A client's W3C ``traceparent`` is continued: the request
span is its child, in its trace. Prompts and answers (``gen_ai.input.messages`` /
``gen_ai.output.messages``) only with ``tracing: {content: true}``.

Nothing here is on the request path. Spans are built after the request has settled, from its
ledger records, with their real start and end times, and handed to the SDK's batch processor,
whose thread exports them. A dead collector costs at most ``queue`` spans held (newer ones are
dropped), an export retried within ``timeout`` seconds, and one warning per minute from here; the
exporter's own per-batch error lines are silenced.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence

from ..accounting.records import AttemptRecord, RequestRecord
from .settings import TracingSettings

try:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
    from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - exercised by the test that hides the extra
    OTLPSpanExporter = None  # type: ignore[assignment,misc]
    SpanExporter = object  # type: ignore[assignment,misc]

log = logging.getLogger("switchman.telemetry")
_QUIET = ("opentelemetry.exporter.otlp.common.http", "opentelemetry.exporter.otlp.proto.http.trace_exporter",
          "opentelemetry.sdk.trace.export")


class _Reporting(SpanExporter):  # type: ignore[misc,valid-type]
    """The OTLP exporter, with failures counted and said once a minute instead of per batch."""

    def __init__(self, inner, every: float = 60.0) -> None:
        self.inner = inner
        self.every = every
        self.failed = 0
        self.exported = 0
        self._said = -1e18
        self._lock = threading.Lock()

    def export(self, spans):
        try:
            result = self.inner.export(spans)
        except Exception as e:  # noqa: BLE001 - an exporter must never take the thread down
            log.debug("span export raised: %s", e)
            result = SpanExportResult.FAILURE
        with self._lock:
            if result is SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                self.failed += len(spans)
                now = time.monotonic()
                if now - self._said >= self.every:
                    self._said = now
                    log.warning("tracing: could not export %d spans to the collector (%d so far); requests are "
                                "unaffected, spans are dropped while it is down", len(spans), self.failed)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Tracing:
    def __init__(self, settings: TracingSettings, *, exporter=None) -> None:
        if OTLPSpanExporter is None:
            raise ImportError("tracing needs the otel extra: pip install 'switchman[otel]'")
        self.settings = settings
        for name in _QUIET:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        inner = exporter or OTLPSpanExporter(endpoint=settings.endpoint, headers=dict(settings.headers),
                                             timeout=settings.timeout)
        self.exporter = _Reporting(inner)
        self.provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}),
                                       sampler=ParentBased(TraceIdRatioBased(settings.sample)))
        self.processor = BatchSpanProcessor(self.exporter, max_queue_size=settings.queue,
                                            max_export_batch_size=min(512, settings.queue), schedule_delay_millis=500,
                                            export_timeout_millis=int(settings.timeout * 1000))
        self.provider.add_span_processor(self.processor)
        self.tracer = self.provider.get_tracer("switchman")
        self._propagator = TraceContextTextMapPropagator()

    def request_done(self, req: RequestRecord, attempts: Sequence[AttemptRecord], *, dialect: str,
                     traceparent: str | None = None, operation: str = "chat",
                     provider_names: Mapping[str, str] | None = None,
                     servers: Mapping[str, tuple[str, int]] | None = None,
                     content: tuple[str, str] | None = None) -> None:
        """Spans for one settled request. Never raises: tracing must not fail a request."""
        try:
            self._spans(req, attempts, dialect, traceparent, operation, provider_names or {}, servers or {}, content)
        except Exception:  # noqa: BLE001
            log.exception("tracing: request %s not traced", req.request_id)

    def _spans(self, req, attempts, dialect, traceparent, operation, providers, servers, content) -> None:
        parent = self._propagator.extract({"traceparent": traceparent}) if traceparent else None
        start = int(req.time * 1e9)
        end = int((req.time + req.latency_ms / 1000) * 1e9)
        attrs = {"gen_ai.operation.name": operation, "gen_ai.request.model": req.route,
                 "gen_ai.usage.input_tokens": req.input_tokens, "gen_ai.usage.output_tokens": req.output_tokens,
                 "gen_ai.usage.cache_read.input_tokens": req.cache_read_tokens,
                 "gen_ai.usage.cache_creation.input_tokens": req.cache_write_tokens,
                 "gen_ai.request.stream": req.stream, "http.response.status_code": req.status,
                 "switchman.request_id": req.request_id, "switchman.route": req.route, "switchman.reason": req.reason,
                 "switchman.cost_usd": float(req.cost), "switchman.attempts": req.attempts,
                 "switchman.dialect": dialect}
        for k, v in (("gen_ai.response.model", req.model), ("switchman.cache", req.cache),
                     ("switchman.key_id", req.key_id), ("switchman.user", req.user),
                     ("switchman.episode", req.episode), ("error.type", req.error)):
            if v is not None:
                attrs[k] = v
        if content is not None and self.settings.content:
            attrs["gen_ai.input.messages"], attrs["gen_ai.output.messages"] = content
        span = self.tracer.start_span(f"{operation} {req.route}", context=parent, kind=SpanKind.SERVER,
                                      attributes=attrs, start_time=start)
        if req.status >= 500 or req.model is None:
            span.set_status(Status(StatusCode.ERROR, req.error or f"status {req.status}"))
        ctx = set_span_in_context(span)
        for a in attempts:
            self._attempt(a, ctx, operation, providers, servers, end)
        span.end(end_time=end)

    def _attempt(self, a: AttemptRecord, ctx, operation: str, providers, servers, req_end: int) -> None:
        attrs = {"gen_ai.operation.name": operation, "gen_ai.provider.name": providers.get(a.provider, a.provider),
                 "gen_ai.request.model": a.model, "gen_ai.usage.input_tokens": a.input_tokens,
                 "gen_ai.usage.output_tokens": a.output_tokens, "switchman.attempt.role": a.role.value,
                 "switchman.attempt.index": a.index, "switchman.cost_usd": float(a.cost)}
        if a.cache_read_tokens:
            attrs["gen_ai.usage.cache_read.input_tokens"] = a.cache_read_tokens
        server = servers.get(a.model)
        if server is not None:
            attrs["server.address"], attrs["server.port"] = server
        if a.ttft_ms is not None:
            attrs["gen_ai.response.time_to_first_chunk"] = a.ttft_ms / 1000
        if a.error is not None:
            attrs["error.type"] = a.error
        start = int(a.time * 1e9)
        end = start + int(a.latency_ms * 1e6)
        if a.ttft_ms is not None and a.error is None:  # a stream lasts until its last byte
            end = max(end, req_end)
        span = self.tracer.start_span(f"{operation} {a.model}", context=ctx, kind=SpanKind.CLIENT, attributes=attrs,
                                      start_time=start)
        if a.error is not None and a.error not in ("hedge_lost", "cancelled", "rejected"):
            span.set_status(Status(StatusCode.ERROR, a.detail or a.error))
        span.end(end_time=end)

    def shutdown(self) -> None:
        """Export what is queued (bounded by the timeout), then stop."""
        try:
            self.provider.shutdown()
        except Exception:  # noqa: BLE001
            log.exception("tracing: shutdown failed")
