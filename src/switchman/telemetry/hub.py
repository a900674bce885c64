"""``Telemetry``: where a finished request goes besides the ledger — Prometheus metrics, an
OpenTelemetry trace (with the ``otel`` extra and ``tracing: {endpoint: ...}``), and one access-log
line. The accountant calls ``request_done`` from its settle step, after the answer went out; the
app calls ``refused`` for a request answered with an error before any model was called.

The access log is one JSON object per request on logger ``switchman.access`` at INFO (shown with
``--log-level info``)::

    {"ts": "2026-12-02T10:04:05.123Z", "request_id": "req_…", "route": "auto", "model": "gpt-4o-mini",
     "status": 200, "latency_ms": 812.4, "ttft_ms": null, "cost_usd": "0.000123", "cache": null,
     "attempts": 1, "dialect": "openai", "key": "key_…", "user": null, "episode": null}

``serve`` hands log records to a thread (``QueueHandler``), so writing them never blocks the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timezone

import orjson

from ..accounting.records import AttemptRecord, RequestRecord
from ..config import Config
from .metrics import PROVIDER_NAMES, Metrics
from .settings import TelemetrySettings

log = logging.getLogger("switchman.telemetry")
access = logging.getLogger("switchman.access")


class Telemetry:
    def __init__(self, config: Config, *, metrics_dir: str | None = None) -> None:
        self.settings = config.telemetry or TelemetrySettings()
        names = [*config.models, *config.routes]
        providers = {p.name: PROVIDER_NAMES.get(p.kind, p.kind) for p in config.providers.values()}
        providers.update({m.provider.name: PROVIDER_NAMES.get(m.provider.kind, m.provider.kind)
                          for m in config.models.values()})
        self.providers = providers
        self.servers = {m.name: _server(m.provider.base_url) for m in config.models.values()}
        self.metrics = Metrics(self.settings.metrics, names, providers, metrics_dir) \
            if self.settings.metrics.enabled else None
        self.tracing = None
        if self.settings.tracing.endpoint:
            from .tracing import Tracing  # the otel extra: a clear ImportError naming it when missing

            self.tracing = Tracing(self.settings.tracing)

    def request_done(self, req: RequestRecord, attempts: Sequence[AttemptRecord]) -> None:
        dialect = req.dialect or "openai"
        if self.metrics is not None:
            self.metrics.request_done(req, attempts, dialect)
        if self.tracing is not None:
            content = None
            if self.settings.tracing.content and req.bodies is not None:
                content = (req.bodies[0], req.bodies[1])
            self.tracing.request_done(req, attempts, dialect=dialect, traceparent=req.traceparent,
                                      provider_names=self.providers, servers=self.servers, content=content)
        if not self.settings.log.bodies:
            req.bodies = None  # captured for the trace only: not kept in the ledger
        if self.settings.log.access and access.isEnabledFor(logging.INFO):
            access.info(orjson.dumps(_line(req)).decode())

    def refused(self, route: str | None, dialect: str, status: int, kind: str, request_id: str) -> None:
        if self.metrics is not None:
            self.metrics.refused(route, dialect, status, kind)
        if self.settings.log.access and access.isEnabledFor(logging.INFO):
            access.info(orjson.dumps({"ts": _iso(None), "request_id": request_id, "route": route, "status": status,
                                      "error": kind, "dialect": dialect}).decode())

    def decision(self, model: str, event: str, why: str) -> None:
        if self.metrics is not None:
            self.metrics.decision(event, model)

    def calls(self, model: str, delta: int) -> None:
        if self.metrics is not None:
            self.metrics.calls(model, delta)

    def close(self) -> None:
        if self.tracing is not None:
            self.tracing.shutdown()


def _line(r: RequestRecord) -> dict:
    return {"ts": _iso(r.time), "request_id": r.request_id, "route": r.route, "model": r.model, "status": r.status,
            "error": r.error, "latency_ms": round(r.latency_ms, 2),
            "ttft_ms": None if r.ttft_ms is None else round(r.ttft_ms, 2), "cost_usd": f"{r.cost:f}",
            "cache": r.cache, "attempts": r.attempts, "dialect": r.dialect, "key": r.key_id, "user": r.user,
            "episode": r.episode}


def _iso(t: float | None) -> str:
    d = datetime.now(timezone.utc) if t is None else datetime.fromtimestamp(t, timezone.utc)
    return d.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _server(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    u = urlsplit(url)
    return u.hostname or "", u.port or (443 if u.scheme == "https" else 80)
