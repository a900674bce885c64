"""Resilience building blocks: retry backoff and budget, outlier ejection, rate-limit
cooldowns, latency percentiles and concurrency limits. Pure and time-injected (``switchman.clock``);
the executor wires them together."""
