"""Rollups agree with the request table they summarise: every grouping, to the picodollar, on
SQLite and PostgreSQL; a replayed entry is not counted twice; percentiles fall in the right bucket."""

from __future__ import annotations

import random
from decimal import Decimal

from switchman.accounting import reports
from switchman.accounting.records import AttemptRecord, RequestRecord
from switchman.accounting.rollups import percentile
from switchman.accounting.schema import LATENCY_BOUNDS

from .conftest import NOON
from .test_ledger import entry, started


def varied(i: int) -> tuple[RequestRecord, list[AttemptRecord]]:
    """Spread over three days and hours, keys, users, tags, with failures and fallbacks."""
    t = NOON + (i % 3) * 86_400 + (i % 7) * 3_600 + i
    r, atts = entry(i, t, key=("key_a", "key_b", None)[i % 3], user=None if i % 5 == 0 else f"u{i % 4}",
                    tags={"team": "search" if i % 2 else "ads", **({"feature": "chat"} if i % 3 == 0 else {})},
                    route=("auto", "cheap")[i % 2])
    r.latency_ms = 20.0 + (i * 37) % 3000
    if i % 11 == 0:  # every attempt failed: no model, an error status
        r.model, r.provider, r.status, r.error = None, None, 503, "overloaded"
    return r, atts


async def test_every_grouping_adds_up_to_the_ledger(ledger_url):
    led = await started(ledger_url, batch=50, flush_interval=0.01)
    entries = [varied(i) for i in range(400)]
    for r, atts in entries:
        await led.write(r, atts)
    await led.drain()
    store = led.store
    since = NOON - 86_400
    for by, dim in (("model", "model"), ("route", "route"), ("key", "key"), ("user", "user"), ("tag", "tag"),
                    ("provider", "provider")):
        ledger = {(x.group or ""): (x.requests, x.cost, x.baseline, x.input_tokens, x.output_tokens)
                  for x in await led.spend(by, since=since)}
        rolled = {(x["group"] or ""): (x["requests"], Decimal(x["cost_usd"]), Decimal(x["baseline_usd"]),
                                       x["input_tokens"], x["output_tokens"])
                  for x in await reports.by_dim(store, dim, since, None)}
        if by == "user":  # the rollups keep no row for requests without a user
            ledger.pop("", None)
        # a model or provider whose only calls failed for free: nothing to report
        ledger = {g: v for g, v in ledger.items() if any(v)}
        assert rolled == ledger, by
    days = {x.group: (x.requests, x.cost) for x in await led.spend("day", since=since)}
    assert {x["group"]: (x["requests"], Decimal(x["cost_usd"])) for x in await reports.by_dim(store, "day", since, None)} == days
    errors = sum(1 for r, _ in entries if r.status >= 400 or r.error)
    ov = await reports.overview(store, NOON + 3 * 86_400, hours=96)
    assert ov["requests"] == 400 and ov["errors"] == errors
    assert Decimal(ov["spend_month_usd"]) == sum((r.cost for r, _ in entries), Decimal(0))
    await led.close()


async def test_a_replayed_entry_is_not_counted_twice(ledger_url):
    led = await started(ledger_url, flush_interval=0.01)
    entries = [varied(i) for i in range(20)]
    for r, atts in entries:
        await led.write(r, atts)
    await led.drain()
    await led.store.write(entries[:10])  # a spill file replayed after a crash: already written
    await led.drain()
    ov = await reports.overview(led.store, NOON + 3 * 86_400, hours=96)
    assert ov["requests"] == 20
    assert sum(x["requests"] for x in await reports.by_dim(led.store, "model", NOON - 86_400, None)) == 20
    await led.close()


def test_percentiles_fall_in_their_bucket():
    rng = random.Random(7)
    values = sorted(rng.lognormvariate(5, 1.2) for _ in range(5000))
    hist = [0] * (len(LATENCY_BOUNDS) + 1)
    from bisect import bisect_left

    for v in values:
        hist[bisect_left(LATENCY_BOUNDS, v)] += 1
    for q in (0.5, 0.95, 0.99):
        exact = values[int(q * len(values)) - 1]
        got = percentile(hist, q)
        assert exact / 1.42 <= got <= exact * 1.42, (q, exact, got)  # within one √2 bucket
    assert percentile([0] * len(hist), 0.5) is None


async def test_kept_bodies_past_retention_are_deleted(ledger_url):
    from switchman.accounting.requestlog import get_request, prune_bodies

    led = await started(ledger_url, flush_interval=0.01)
    old, new = varied(1), varied(2)
    old[0].time, new[0].time = NOON - 40 * 86_400, NOON
    old[0].bodies, new[0].bodies = ("old prompt", "old answer", False), ("new prompt", "new answer", False)
    for r, atts in (old, new):
        await led.write(r, atts)
    await led.drain()
    assert await prune_bodies(led.store, NOON - 30 * 86_400) == 1
    assert "bodies" not in await get_request(led.store, old[0].request_id)
    assert (await get_request(led.store, new[0].request_id))["bodies"]["prompt"] == "new prompt"
    await led.close()


async def test_a_ledger_from_before_rollups_is_rolled_up_on_upgrade(ledger_url):
    """Schema 2 backfills the rollups from the requests an older switchman wrote."""
    from switchman.accounting import rollups

    led = await started(ledger_url, batch=50, flush_interval=0.01)
    # (not the requests whose paid attempts all failed: the backfill books those on no model)
    entries = [varied(i) for i in range(300) if i % 11]
    for r, atts in entries:
        await led.write(r, atts)
    await led.drain()
    store, since = led.store, NOON - 86_400
    want = {dim: await reports.by_dim(store, dim, since, None) for dim in (*reports.DIMS, "day")}
    want_ov = await reports.overview(store, NOON + 3 * 86_400, hours=96)
    await store.transact([(f"DELETE FROM {t}", []) for t in ("rollup_minute", "rollup_hour", "rollup_day")])
    assert (await reports.overview(store, NOON + 3 * 86_400, hours=96))["requests"] == 0
    await store.transact([(sql, []) for sql in rollups.backfill(store.dialect)])
    for dim, rows in want.items():
        assert await reports.by_dim(store, dim, since, None) == rows, dim
    got_ov = await reports.overview(store, NOON + 3 * 86_400, hours=96)
    for k in ("requests", "errors", "p50", "p95", "p99", "spend_month_usd", "input_tokens"):
        assert got_ov[k] == want_ov[k], k
    await led.close()
