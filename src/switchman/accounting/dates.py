"""Dates as people type them on the command line and in admin requests, read as UTC."""

from __future__ import annotations

import re
from datetime import datetime, timezone

_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def parse_when(text: str, now: float) -> float:
    """``2026-11-01``, ``2026-11-01T12:00``, ``2026-11-01T12:00:00+02:00`` (no zone: UTC), or a
    span back from ``now``: ``30m``, ``24h``, ``7d``, ``2w``. Unix seconds; ValueError otherwise."""
    t = text.strip()
    m = _RELATIVE.match(t)
    if m:
        return now - int(m.group(1)) * _UNITS[m.group(2)]
    try:
        d = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(f"expected a date like 2026-11-01 (UTC) or a span like 7d, not {text!r}") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return d.timestamp()


def iso(t: float | None) -> str | None:
    """Unix seconds -> ``2026-11-22T10:00:00Z`` (None stays None)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def month_start(now: float) -> float:
    d = datetime.fromtimestamp(now, timezone.utc)
    return d.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()
