"""The soak benchmark's short version: mixed traffic with faults through ``switchman serve`` keeps
RSS and open fds flat (``benchmarks/soak.py`` runs it for 20 minutes)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

import soak  # noqa: E402


async def test_mixed_traffic_with_faults_keeps_memory_and_fds_flat():
    s = await soak.drive(minutes=0.3, interval=1.0, warmup=4.0)
    rss_ok, fds_ok, growth, allowed = s.verdict()
    assert sum(s.counts.values()) > 500  # it did run traffic, of every kind
    assert set(s.counts) == {"plain", "stream", "drop", "flaky", "limited", "resume", "badjson", "nokey", "giveup"}
    assert s.statuses.get(200, 0) > 0 and 400 in s.statuses and 401 in s.statuses
    assert 500 not in s.statuses  # faults upstream never become the gateway's own 500
    assert rss_ok, f"RSS grew {growth:.1f} MiB over the run (allowed {allowed:.1f}): {s.samples}"
    assert fds_ok, f"fds idle at the end: {s.fds_idle}, samples: {s.samples}"
