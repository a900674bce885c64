"""Rollups: the ledger pre-aggregated as it writes, so reports and the dashboard never scan the
request table (LiteLLM's spend logs and UI break down at 0.7-1M rows; its fix was daily tables).

Three tables, written in the same transaction as the entries they count (``rows_for``):

* ``rollup_minute`` (bucket): every request, for the overview's rates and percentiles;
* ``rollup_hour`` (bucket, route, model, provider, key_id): the cube the spend, latency and error
  views group. A request counts on the model that answered; each other attempt's tokens and cost
  on its own model, with no request (as ``spend --by model`` books them), so every grouping adds up
  to the ledger's totals;
* ``rollup_day`` (dim, bucket, value): per day by ``route``, ``model``, ``provider``, ``key``,
  ``user`` and ``tag`` (``name=value``; a request with several tags counts under each).

Each row holds counts and sums (requests, errors, streams, cache hits, tokens, cost and baseline
in picodollars, latency and time-to-first-token sums, feedback count and score sum) and, in the
minute and hour tables, a latency histogram (√2-spaced buckets from 10 ms), from which p50/p95/p99
are read to within one bucket.

Entries are aggregated per batch in Python, then upserted (``ON CONFLICT DO UPDATE`` adds), so the
cost on the write path is a handful of dictionary updates per request plus one upsert per distinct
row per batch. A replayed entry (a spill file written again) must not count twice: the stores
pass only the entries whose request row is new.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from .records import AttemptRecord, RequestRecord, answering, to_pusd
from .schema import LATENCY_BOUNDS

NB = len(LATENCY_BOUNDS) + 1
# requests, errors, streams, cache_hits, input_tokens, output_tokens, cost_pusd, baseline_pusd,
# latency_ms, ttft_ms, ttft_n, feedback_n, feedback_sum
MEASURES = ("requests", "errors", "streams", "cache_hits", "input_tokens", "output_tokens", "cost_pusd",
            "baseline_pusd", "latency_ms", "ttft_ms", "ttft_n", "feedback_n", "feedback_sum")
_M = len(MEASURES)
HIST_COLUMNS = tuple(f"lat_{i}" for i in range(NB))
DAY_DIMS = ("route", "model", "provider", "key", "user", "tag")


def _upsert(table: str, keys: tuple[str, ...], hist: bool) -> str:
    cols = (*keys, *MEASURES, *(HIST_COLUMNS if hist else ()))
    sets = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in cols[len(keys):])
    return (f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)}) "
            f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}")


UPSERT_MINUTE = _upsert("rollup_minute", ("bucket",), True)
UPSERT_HOUR = _upsert("rollup_hour", ("bucket", "route", "model", "provider", "key_id"), True)
UPSERT_DAY = _upsert("rollup_day", ("dim", "bucket", "value"), False)


def _new(hist: bool) -> list:
    return [0] * (_M + (NB if hist else 0))


def _add_request(v: list, r: RequestRecord, cost: int, base: int, hist_at: int | None) -> None:
    v[0] += 1
    if r.status >= 400 or r.error is not None:
        v[1] += 1
    if r.stream:
        v[2] += 1
    if r.cache in ("hit", "semantic-hit"):
        v[3] += 1
    v[4] += r.input_tokens
    v[5] += r.output_tokens
    v[6] += cost
    v[7] += base
    v[8] += r.latency_ms
    if r.ttft_ms is not None:
        v[9] += r.ttft_ms
        v[10] += 1
    if hist_at is not None:
        v[_M + hist_at] += 1


def rows_for(entries: Sequence[tuple[RequestRecord, Sequence[AttemptRecord]]],
             costs: Sequence[tuple[int, int]] | None = None) -> tuple[list, list, list]:
    """The minute, hour and day upsert rows of a batch of new entries. ``costs``: each entry's
    (cost, baseline) in picodollars, when the caller has them already."""
    minute: dict[float, list] = {}
    hour: dict[tuple, list] = {}
    day: dict[tuple, list] = {}
    for j, (r, attempts) in enumerate(entries):
        if costs is not None:
            cost, base = costs[j]
        else:
            cost = to_pusd(r.cost)
            base = to_pusd(r.baseline_cost) if r.baseline_cost is not None else cost
        h = bisect_left(LATENCY_BOUNDS, r.latency_ms)
        t = r.time
        m = minute.get(mb := t - t % 60)
        if m is None:
            minute[mb] = m = _new(True)
        _add_request(m, r, cost, base, h)
        hb = t - t % 3600
        key = r.key_id or ""
        rest = [0, 0, 0]  # cost, input and output tokens booked on the other attempts' models
        one = len(attempts) == 1 and attempts[0].error is None and attempts[0].model == r.model
        won = 0 if one else answering(r, attempts)
        for i, a in enumerate(() if one else attempts):
            c = to_pusd(a.cost)
            if i == won or not (c or a.input_tokens or a.output_tokens):
                continue
            k = (hb, r.route, a.model, a.provider, key)
            v = hour.get(k)
            if v is None:
                hour[k] = v = _new(True)
            v[4] += a.input_tokens
            v[5] += a.output_tokens
            v[6] += c
            rest[0] += c
            rest[1] += a.input_tokens
            rest[2] += a.output_tokens
        k = (hb, r.route, r.model or "", r.provider or "", key)
        v = hour.get(k)
        if v is None:
            hour[k] = v = _new(True)
        _add_request(v, r, cost - rest[0], base, h)  # the request, on the model that answered
        v[4] -= rest[1]
        v[5] -= rest[2]
        db = t - t % 86400
        if r.user:
            _day(day, ("user", db, r.user), r, cost, base)
        for tk, tv in r.tags.items():
            _day(day, ("tag", db, f"{tk}={tv}"), r, cost, base)
    for (hb, route, model, provider, key), v in hour.items():
        db = hb - hb % 86400
        for dim, value in (("route", route), ("model", model), ("provider", provider), ("key", key)):
            d = day.get(k := (dim, db, value))
            if d is None:
                day[k] = d = _new(False)
            for i in range(_M):
                d[i] += v[i]
    return ([(b, *v) for b, v in minute.items()], [(*k, *v) for k, v in hour.items()],
            [(*k, *v) for k, v in day.items()])


def _day(day: dict, k: tuple, r: RequestRecord, cost: int, base: int) -> None:
    d = day.get(k)
    if d is None:
        day[k] = d = _new(False)
    _add_request(d, r, cost, base, None)


def percentile(hist: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (0..1) of a latency histogram, in ms, interpolated inside its bucket."""
    n = sum(hist)
    if not n:
        return None
    want = q * n
    seen = 0
    for i, c in enumerate(hist):
        if c and seen + c >= want:
            lo = LATENCY_BOUNDS[i - 1] if i else 0.0
            hi = LATENCY_BOUNDS[i] if i < len(LATENCY_BOUNDS) else LATENCY_BOUNDS[-1] * 2
            return lo + (hi - lo) * ((want - seen) / c)
        seen += c
    return LATENCY_BOUNDS[-1]


def backfill(dialect: str) -> list[str]:
    """SQL that builds the rollups from the request table (empty rollups assumed): schema
    migration 2 runs it, so a ledger written before rollups existed reports its past too. One
    difference from the write path: a request's failed-but-paid attempts count on the model that
    answered, not their own (the SQL does not split a request's cost across its attempts)."""
    mod = (lambda col, n: f"(CAST({col} AS INTEGER) - CAST({col} AS INTEGER) % {n})") if dialect == "sqlite" \
        else (lambda col, n: f"(floor({col} / {n}) * {n})")
    hist = ", ".join(
        f"SUM(CASE WHEN latency_ms <= {b} {'' if i == 0 else f'AND latency_ms > {LATENCY_BOUNDS[i - 1]}'} THEN 1 ELSE 0 END)"
        for i, b in enumerate(LATENCY_BOUNDS)) + f", SUM(CASE WHEN latency_ms > {LATENCY_BOUNDS[-1]} THEN 1 ELSE 0 END)"
    def measures(r: str = "") -> str:
        return (f"COUNT(*), SUM(CASE WHEN {r}status >= 400 OR {r}error IS NOT NULL THEN 1 ELSE 0 END), SUM({r}stream), "
                f"SUM(CASE WHEN {r}cache IN ('hit', 'semantic-hit') THEN 1 ELSE 0 END), SUM({r}input_tokens), "
                f"SUM({r}output_tokens), SUM({r}cost_pusd), SUM({r}baseline_pusd), SUM({r}latency_ms), "
                f"SUM(COALESCE({r}ttft_ms, 0)), SUM(CASE WHEN {r}ttft_ms IS NULL THEN 0 ELSE 1 END), 0, 0")

    sums = measures()
    cols = ", ".join(MEASURES)
    hcols = ", ".join(HIST_COLUMNS)
    day = mod("ts", 86400)
    day_of_hour = mod("bucket", 86400)
    dims = ", ".join(f"SUM({m})" for m in MEASURES)
    return [
        f"INSERT INTO rollup_minute (bucket, {cols}, {hcols}) SELECT {mod('ts', 60)}, {sums}, {hist} FROM requests "
        f"GROUP BY {mod('ts', 60)}",
        f"INSERT INTO rollup_hour (bucket, route, model, provider, key_id, {cols}, {hcols}) SELECT {mod('ts', 3600)}, "
        f"route, COALESCE(model, ''), COALESCE(provider, ''), COALESCE(key_id, ''), {sums}, {hist} FROM requests "
        f"GROUP BY {mod('ts', 3600)}, route, COALESCE(model, ''), COALESCE(provider, ''), COALESCE(key_id, '')",
        *(f"INSERT INTO rollup_day (dim, bucket, value, {cols}) SELECT '{dim}', {day_of_hour}, {col}, {dims} "
          f"FROM rollup_hour GROUP BY {day_of_hour}, {col}"
          for dim, col in (("route", "route"), ("model", "model"), ("provider", "provider"), ("key", "key_id"))),
        f"INSERT INTO rollup_day (dim, bucket, value, {cols}) SELECT 'user', {day}, user_id, {sums} FROM requests "
        f"WHERE user_id IS NOT NULL GROUP BY {day}, user_id",
        f"INSERT INTO rollup_day (dim, bucket, value, {cols}) SELECT 'tag', {mod('t.ts', 86400)}, t.tag, "
        f"{measures('r.')} FROM request_tags t JOIN requests r "
        f"ON r.request_id = t.request_id GROUP BY {mod('t.ts', 86400)}, t.tag",
    ]
