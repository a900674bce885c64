"""The config sections of telemetry, parsed strictly into frozen settings::

    metrics:
      enabled: true          # GET /metrics (Prometheus text format)
      public: false          # true: /metrics needs no admin key (e.g. a scraper inside the network)
      tags: []               # tag names exposed as a label on switchman_requests_total, e.g. [team];
                             # each distinct value is a new series: name only bounded tags
      dir: null              # multiprocess directory with --workers N (default: a fresh temp dir per start)

    tracing:
      endpoint: http://127.0.0.1:4318/v1/traces   # OTLP over HTTP/protobuf; no endpoint: tracing off
      service_name: switchman
      headers: {}            # e.g. {authorization: "Bearer ${OTEL_TOKEN}"}
      content: false         # true: prompts and completions on spans (gen_ai.input/output.messages)
      sample: 1.0            # share of requests traced (a client's sampled traceparent is always kept)
      queue: 2048            # spans held for export at most; past it new spans are dropped (and counted)
      timeout: 5             # seconds per export call

    log:
      access: true           # one JSON line per request on logger switchman.access at INFO
      bodies: false          # keep prompts and answers with the request log (GET /admin/requests/{id})
      max_body_kb: 64        # per body kept; longer ones are cut and marked
      retention_days: 30     # bodies older than this are deleted

``parse(raw, error)`` reads the three sections (any may be missing) and raises ``error(dotted_path,
message)`` for anything wrong, naming unknown keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..accounting.settings import Error, _Section, _tname

_TAG = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    enabled: bool = True
    public: bool = False
    tags: tuple[str, ...] = ()
    dir: str | None = None


@dataclass(frozen=True, slots=True)
class TracingSettings:
    endpoint: str | None = None  # None: off
    service_name: str = "switchman"
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bool = False
    sample: float = 1.0
    queue: int = 2048
    timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class LogSettings:
    access: bool = True
    bodies: bool = False
    max_body_kb: int = 64
    retention_days: float = 30.0


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    log: LogSettings = LogSettings()


SECTIONS = ("metrics", "tracing", "log")


def parse(raw: Mapping[str, Any], error: Error) -> TelemetrySettings:
    return TelemetrySettings(_metrics(raw.get("metrics"), error), _tracing(raw.get("tracing"), error),
                             _log(raw.get("log"), error))


def _metrics(v: Any, error: Error) -> MetricsSettings:
    if v is None:
        return MetricsSettings()
    s = _Section("metrics", v, ("enabled", "public", "tags", "dir"), error)
    tags = s.get("tags", list, [])
    for i, t in enumerate(tags):
        if not isinstance(t, str) or not _TAG.match(t):
            raise error(f"metrics.tags[{i}]", f"must be a tag name (letters, digits, _ . -), not {t!r}")
    return MetricsSettings(enabled=s.get("enabled", bool, True), public=s.get("public", bool, False),
                           tags=tuple(tags), dir=s.get("dir", str))


def _tracing(v: Any, error: Error) -> TracingSettings:
    if v is None:
        return TracingSettings()
    s = _Section("tracing", v, ("endpoint", "service_name", "headers", "content", "sample", "queue", "timeout"),
                 error)
    endpoint = s.get("endpoint", str)
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise error("tracing.endpoint", f"must be an OTLP/HTTP URL (http://host:4318/v1/traces), not '{endpoint}'")
    headers = s.get("headers", dict, {})
    for k, hv in headers.items():
        if not isinstance(hv, str):
            raise error(f"tracing.headers.{k}", f"must be a string, not {_tname(hv)}")
    sample = s.get("sample", float, 1.0)
    if not 0 <= sample <= 1:
        raise error("tracing.sample", "must be between 0 and 1")
    return TracingSettings(endpoint=endpoint, service_name=s.get("service_name", str, "switchman"),
                           headers=dict(headers), content=s.get("content", bool, False), sample=sample,
                           queue=s.positive("queue", int, 2048), timeout=s.positive("timeout", float, 5.0))


def _log(v: Any, error: Error) -> LogSettings:
    if v is None:
        return LogSettings()
    s = _Section("log", v, ("access", "bodies", "max_body_kb", "retention_days"), error)
    return LogSettings(access=s.get("access", bool, True), bodies=s.get("bodies", bool, False),
                       max_body_kb=s.positive("max_body_kb", int, 64),
                       retention_days=s.positive("retention_days", float, 30.0))
