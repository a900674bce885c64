"""Reports over the rollups (``rollups.py``): what the dashboard's pages show. Each is a handful of
indexed range reads over pre-aggregated rows (per minute, per hour cube, per day and dimension),
never a scan of the request table, so they take the same time at 10M requests as at 10 thousand
(``benchmarks/dashboard.py``).
"""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal

from .records import from_pusd
from .rollups import HIST_COLUMNS, percentile
from .store import Store

_SUMS = ("SUM(requests), SUM(errors), SUM(cache_hits), SUM(input_tokens), SUM(output_tokens), SUM(cost_pusd), "
         "SUM(baseline_pusd), SUM(latency_ms), SUM(feedback_n), SUM(feedback_sum)")
_HIST = ", ".join(f"SUM({c})" for c in HIST_COLUMNS)
DIMS = ("route", "model", "provider", "key", "user", "tag")


def _usd(pusd) -> str:
    return f"{from_pusd(int(pusd or 0)):f}"


def _measures(row) -> dict:
    n, errors, hits, inp, out, cost, base, lat, fb_n, fb_sum = (v or 0 for v in row[:10])
    # PostgreSQL sums integers as numeric (Decimal) and doubles as float: one type each here
    n, errors, hits, inp, out, cost, base, fb_n = (int(v) for v in (n, errors, hits, inp, out, cost, base, fb_n))
    lat, fb_sum = float(lat), float(fb_sum)
    return {"requests": int(n), "errors": int(errors), "error_rate": errors / n if n else None,
            "cache_hits": int(hits), "cache_hit_rate": hits / n if n else None,
            "input_tokens": int(inp), "output_tokens": int(out), "cost_usd": _usd(cost), "baseline_usd": _usd(base),
            "savings_usd": _usd(int(base) - int(cost)), "mean_latency_ms": lat / n if n else None,
            "feedback_n": int(fb_n), "satisfaction": fb_sum / fb_n if fb_n else None}


def _quantiles(hist) -> dict:
    h = [int(v or 0) for v in hist]
    return {f"p{q}": percentile(h, q / 100) for q in (50, 95, 99)}


def day_start(t: float) -> float:
    return t - t % 86400


def month_start(t: float) -> float:
    d = dt.datetime.fromtimestamp(t, dt.timezone.utc)
    return dt.datetime(d.year, d.month, 1, tzinfo=dt.timezone.utc).timestamp()


async def overview(store: Store, now: float, hours: int = 24) -> dict:
    """The last ``hours``: totals, p50/p95/p99, a per-hour series (per minute for the last hour),
    spend today and this month, the top routes and models."""
    since = now - hours * 3600
    tot = (await store.fetch(f"SELECT {_SUMS}, {_HIST} FROM rollup_minute WHERE bucket >= ?", [since]))[0]
    out = {"hours": hours, **_measures(tot), **_quantiles(tot[10:])}
    out["requests_per_s"] = out["requests"] / (hours * 3600)
    out["series"] = await _series(store, "rollup_minute", 60, now - 3600, now)
    out["hourly"] = await _series(store, "rollup_minute", 3600, since, now)
    today = await store.fetch("SELECT SUM(cost_pusd), SUM(baseline_pusd) FROM rollup_minute WHERE bucket >= ?",
                              [day_start(now)])
    month = await store.fetch("SELECT SUM(cost_pusd), SUM(baseline_pusd) FROM rollup_day WHERE dim = 'route' "
                              "AND bucket >= ?", [month_start(now)])
    out["spend_today_usd"], out["spend_month_usd"] = _usd(today[0][0]), _usd(month[0][0])
    out["savings_month_usd"] = _usd(int(month[0][1] or 0) - int(month[0][0] or 0))
    out["top_routes"] = (await by_dim(store, "route", day_start(since), None))[:5]
    out["top_models"] = (await by_dim(store, "model", day_start(since), None))[:5]
    return out


async def _series(store: Store, table: str, step: int, since: float, now: float) -> list[dict]:
    """Per ``step`` seconds since ``since``: requests, errors, cost and latency quantiles."""
    rows = await store.fetch(
        f"SELECT bucket, {_SUMS}, {_HIST} FROM {table} WHERE bucket >= ? GROUP BY bucket ORDER BY bucket", [since])
    acc: dict[float, list] = {}
    for r in rows:
        b = r[0] - r[0] % step
        cur = acc.get(b)
        vals = [v or 0 for v in r[1:]]
        if cur is None:
            acc[b] = vals
        else:
            for i, v in enumerate(vals):
                cur[i] += v
    out = []
    b = since - since % step
    while b <= now:  # every step of the window, empty ones too, so a chart's axis is the window
        v = acc.get(b)
        if v is None:
            out.append({"t": b, "requests": 0, "errors": 0, "cost_usd": "0", "p50": None, "p95": None, "p99": None})
        else:
            m = _measures(v)
            out.append({"t": b, "requests": m["requests"], "errors": m["errors"], "cost_usd": m["cost_usd"],
                        **_quantiles(v[10:])})
        b += step
    return out


async def by_dim(store: Store, dim: str, since: float, until: float | None) -> list[dict]:
    """Spend and traffic per value of ``dim`` (route, model, provider, key, user, tag) per day
    rollup, dearest first; ``day`` groups by day."""
    if dim == "day":
        cond, args = _range(since, until)
        rows = await store.fetch(f"SELECT bucket, {_SUMS} FROM rollup_day WHERE dim = 'route' {cond} "
                                 "GROUP BY bucket ORDER BY bucket", args)
        return [{"group": dt.datetime.fromtimestamp(r[0], dt.timezone.utc).date().isoformat(), **_measures(r[1:])}
                for r in rows]
    if dim not in DIMS:
        raise ValueError(f"by must be one of {', '.join(DIMS)} or day, not {dim!r}")
    cond, args = _range(since, until)
    # Two steps: the dearest 200 values by one sum (a month of 10,000 users is 300,000 rows, and
    # each summed column costs SQLite about 40 ms over them), then every figure of just those.
    top = await store.fetch(f"SELECT value FROM rollup_day WHERE dim = ? {cond} GROUP BY value "
                            "ORDER BY SUM(cost_pusd) DESC, value LIMIT 200", [dim, *args])
    if not top:
        return []
    values = [r[0] for r in top]
    # point lookups on the key (dim, bucket, value): every day of the range times these values
    last = until if until is not None else max(time.time(), since or 0) + 86400
    days = [float(b) for b in range(int(day_start(since or 0)), int(last), 86400)] if since is not None else None
    if days is not None and len(days) <= 1000:
        rows = await store.fetch(f"SELECT value, {_SUMS} FROM rollup_day WHERE dim = ? AND bucket IN "
                                 f"({', '.join('?' for _ in days)}) AND value IN ({', '.join('?' for _ in values)}) "
                                 "GROUP BY value", [dim, *days, *values])
    else:
        rows = await store.fetch(f"SELECT value, {_SUMS} FROM rollup_day WHERE dim = ? {cond} AND value IN "
                                 f"({', '.join('?' for _ in values)}) GROUP BY value", [dim, *args, *values])
    got = {r[0]: r for r in rows}
    return [{"group": v or None, **_measures(got[v][1:])} for v in values]


def _range(since: float | None, until: float | None) -> tuple[str, list]:
    cond, args = "", []
    if since is not None:
        cond += " AND bucket >= ?"
        args.append(day_start(since))
    if until is not None:
        cond += " AND bucket < ?"
        args.append(until)
    return cond, args


async def latency_by(store: Store, dim: str, since: float) -> list[dict]:
    """p50/p95/p99 and error rate per route or model over the hour cube since ``since``."""
    if dim not in ("route", "model"):
        raise ValueError("latency is by route or model")
    rows = await store.fetch(f"SELECT {dim}, {_SUMS}, {_HIST} FROM rollup_hour WHERE bucket >= ? GROUP BY {dim}",
                             [since - since % 3600])
    out = [{"group": r[0] or None, **_measures(r[1:11]), **_quantiles(r[11:])} for r in rows if r[1]]
    return sorted(out, key=lambda d: -d["requests"])


async def satisfaction(store: Store, dim: str, since: float) -> dict:
    """Feedback (metric ``quality``) per model or route, in all and per day."""
    if dim not in ("route", "model"):
        raise ValueError("satisfaction is by route or model")
    rows = await store.fetch("SELECT value, bucket, SUM(feedback_n), SUM(feedback_sum), SUM(requests) FROM rollup_day "
                             "WHERE dim = ? AND bucket >= ? GROUP BY value, bucket ORDER BY bucket", [dim, day_start(since)])
    groups: dict[str, dict] = {}
    for value, bucket, n, s, reqs in rows:
        g = groups.setdefault(value or "", {"group": value or None, "feedback_n": 0, "score_sum": 0.0, "requests": 0,
                                            "days": []})
        g["feedback_n"] += int(n or 0)
        g["score_sum"] += float(s or 0)
        g["requests"] += int(reqs or 0)
        if n:
            g["days"].append({"t": bucket, "feedback_n": int(n), "satisfaction": float(s) / int(n)})
    out = []
    for g in groups.values():
        g["satisfaction"] = g["score_sum"] / g["feedback_n"] if g["feedback_n"] else None
        del g["score_sum"]
        out.append(g)
    return {"by": dim, "rows": sorted(out, key=lambda d: -d["feedback_n"])}


async def burn(store: Store, scope: str, match: str | None, now: float, days: int = 7) -> Decimal:
    """USD per day spent by a budget's scope over the last ``days`` days (for a month-end projection)."""
    since = day_start(now) - days * 86400
    if scope == "global":
        rows = await store.fetch("SELECT SUM(cost_pusd) FROM rollup_day WHERE dim = 'route' AND bucket >= ?", [since])
    else:
        dim = {"key": "key", "user": "user", "tag": "tag"}[scope]
        rows = await store.fetch("SELECT SUM(cost_pusd) FROM rollup_day WHERE dim = ? AND value = ? AND bucket >= ?",
                                 [dim, match, since])
    return from_pusd(int(rows[0][0] or 0)) / days
