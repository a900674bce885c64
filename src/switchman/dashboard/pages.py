"""The dashboard's HTML, rendered on the server from the reports' dicts. Every value that came
from a client or the ledger (tags, users, reasons, model names) goes through ``h()``; charts read
their data from a JSON ``<script>`` block (``</`` escaped), drawn by the vendored uPlot from
``dashboard.js``. No inline script: the Content-Security-Policy allows only the dashboard's own.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from urllib.parse import urlencode

import orjson

NAV = (("overview", "/dashboard", "Overview"), ("spend", "/dashboard/spend", "Spend"),
       ("requests", "/dashboard/requests", "Requests"), ("live", "/dashboard/live", "Live routing"),
       ("budgets", "/dashboard/budgets", "Budgets"), ("feedback", "/dashboard/feedback", "Feedback"))


def h(v: object) -> str:
    return "" if v is None else html.escape(str(v), quote=True)


def when(t: float | str | None) -> str:
    if t is None:
        return ""
    if isinstance(t, str):
        return t.replace("T", " ").replace("Z", "")[:19]
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M")


def ms(v: float | None) -> str:
    return "–" if v is None else (f"{v:,.0f} ms" if v >= 10 else f"{v:.1f} ms")


def pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}%"


def usd(v: str | None) -> str:
    if v is None:
        return "–"
    f = float(v)
    return f"${f:,.2f}" if abs(f) >= 1 else f"${f:.6f}".rstrip("0").rstrip(".") if f else "$0"


def page(active: str, title: str, body: str, csrf: str | None, charts: Mapping | None = None) -> bytes:
    nav = "".join(f'<a href="{href}"{" class=on" if key == active else ""}>{label}</a>' for key, href, label in NAV)
    logout = (f'<form method="post" action="/dashboard/logout" class="logout"><input type="hidden" name="csrf" '
              f'value="{h(csrf)}"><button>Log out</button></form>') if csrf else ""
    data = orjson.dumps(charts or {}).decode().replace("</", "<\\/")
    return (f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{h(title)} · switchman</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" href="data:,">
<link rel="stylesheet" href="/dashboard/static/uplot-1.6.32.min.css"><link rel="stylesheet" href="/dashboard/static/dashboard.css">
</head><body><header><span class="brand">switchman</span><nav>{nav}</nav>{logout}</header>
<main><h1>{h(title)}</h1>{body}</main>
<script type="application/json" id="charts">{data}</script>
<script src="/dashboard/static/uplot-1.6.32.min.js"></script><script src="/dashboard/static/dashboard.js"></script>
</body></html>""").encode()


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """``rows`` are already-escaped cell HTML."""
    head = "".join(f"<th>{h(x)}</th>" for x in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="empty">nothing yet</td></tr>'
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def tiles(items: Sequence[tuple[str, str, str]]) -> str:
    return '<div class="tiles">' + "".join(
        f'<div class="tile" data-tile="{h(k)}"><div class="label">{h(label)}</div><div class="value">{value}</div></div>'
        for k, label, value in items) + "</div>"


def chart(cid: str, title: str) -> str:
    return f'<section class="chart-box"><h2>{h(title)}</h2><div class="chart" id="{h(cid)}"></div></section>'


def login(error: str | None, csrf: str) -> bytes:
    msg = f'<p class="error" role="alert">{h(error)}</p>' if error else ""
    body = f"""<form method="post" action="/dashboard/login" class="login">{msg}
<label>Admin key <input type="password" name="key" autocomplete="current-password" autofocus required></label>
<input type="hidden" name="csrf" value="{h(csrf)}"><button type="submit">Log in</button></form>"""
    return page("", "Log in", body, None)


def overview(o: Mapping, csrf: str | None) -> bytes:
    t = tiles([
        ("rps", f"Requests/s ({o['hours']} h)", f"{o['requests_per_s']:.3g}"),
        ("requests", "Requests", f"{o['requests']:,}"),
        ("p50", "Latency p50", ms(o["p50"])), ("p95", "p95", ms(o["p95"])), ("p99", "p99", ms(o["p99"])),
        ("errors", "Error rate", pct(o["error_rate"])),
        ("today", "Spend today", usd(o["spend_today_usd"])), ("month", "Spend this month", usd(o["spend_month_usd"])),
        ("savings", "Saved this month", usd(o["savings_month_usd"])),
        ("cache", "Cache hit rate", pct(o["cache_hit_rate"])),
    ])
    top = lambda rows: table(("name", "requests", "cost", "errors"),  # noqa: E731
                             ((h(r["group"]), f"{r['requests']:,}", usd(r["cost_usd"]), pct(r["error_rate"]))
                              for r in rows))
    body = (t + chart("traffic", "Requests per minute, last hour") + chart("latency", "Latency per hour (ms)")
            + f'<div class="cols"><section><h2>Top routes</h2>{top(o["top_routes"])}</section>'
            + f'<section><h2>Top models</h2>{top(o["top_models"])}</section></div>')
    charts = {
        "traffic": {"x": [p["t"] for p in o["series"]], "series": {"requests": [p["requests"] for p in o["series"]],
                                                                   "errors": [p["errors"] for p in o["series"]]}},
        "latency": {"x": [p["t"] for p in o["hourly"]], "series": {q: [p[q] for p in o["hourly"]]
                                                                   for q in ("p50", "p95", "p99")}},
    }
    return page("overview", "Overview", body, csrf, charts)


def spend(by: str, since: str, rows: Sequence[Mapping], days: Sequence[Mapping], csrf: str | None) -> bytes:
    opts = "".join(f'<option{" selected" if d == by else ""}>{d}</option>'
                   for d in ("model", "route", "provider", "key", "user", "tag", "day"))
    form = (f'<form method="get" class="filters"><label>by <select name="by">{opts}</select></label>'
            f'<label>since <input name="since" value="{h(since)}" placeholder="2026-12-01"></label>'
            '<button>Show</button></form>')
    total = sum(float(r["cost_usd"]) for r in rows)
    rows_html = ((h(r["group"] if r["group"] is not None else "(none)"), f"{r['requests']:,}",
                  f"{r['input_tokens']:,}", f"{r['output_tokens']:,}", usd(r["cost_usd"]), usd(r["baseline_usd"]),
                  usd(r["savings_usd"]), "–" if r["satisfaction"] is None else f"{r['satisfaction']:.2f}")
                 for r in rows)
    body = (form + tiles([("total", "Spend in range", usd(str(total)))]) + chart("spend", "Spend per day (USD)")
            + table((by, "requests", "input tokens", "output tokens", "cost", "on the dearest model", "saved",
                     "satisfaction"), rows_html, "spend"))
    if by == "tag":
        body += '<p class="note">A request with several tags counts under each.</p>'
    charts = {"spend": {"x": [_day_ts(d["group"]) for d in days], "series": {"USD": [float(d["cost_usd"]) for d in days]},
                        "bars": True}}
    return page("spend", "Spend", body, csrf, charts)


def _day_ts(day: str) -> float:
    return datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp()


FILTER_FIELDS = ("since", "until", "route", "model", "key", "user", "tag", "status", "cache", "cost_above", "feedback")


def requests(q: Mapping[str, str], got: Mapping, error: str | None, csrf: str | None) -> bytes:
    inputs = "".join(f'<label>{f} <input name="{f}" value="{h(q.get(f, ""))}"></label>' for f in FILTER_FIELDS)
    form = f'<form method="get" class="filters" id="request-filters">{inputs}<button>Filter</button></form>'
    err = f'<p class="error" role="alert">{h(error)}</p>' if error else ""
    rows = ((f'<a href="/dashboard/requests/{h(r["request_id"])}">{h(when(r["time"]))}</a>', h(r["route"]),
             h(r["model"] or "–"), f'<span class="st st{str(r["status"])[0]}">{h(r["status"])}</span>',
             ms(r["latency_ms"]), usd(r["cost_usd"]), h(r["attempts"]), h(r["cache"] or ""), h(r["user"] or ""),
             h(", ".join(f"{k}={v}" for k, v in r["tags"].items())), h(r["feedback_count"] or ""))
            for r in got.get("data", ()))
    more = ""
    if got.get("next_cursor"):
        more = f'<a class="more" href="/dashboard/requests?{h(urlencode({**q, "cursor": got["next_cursor"]}))}">Older →</a>'
    body = form + err + table(("time", "route", "model", "status", "latency", "cost", "attempts", "cache", "user",
                               "tags", "feedback"), rows, "requests") + more
    return page("requests", "Requests", body, csrf)


def request(r: Mapping, csrf: str | None) -> bytes:
    facts = [("Request", h(r["request_id"])), ("Time", h(when(r["time"]))), ("Route", h(r["route"])),
             ("Model", h(r["model"] or "– (no model answered)")), ("Status", h(r["status"])),
             ("Error", h(r["error"] or "")), ("Reason", h(r["reason"])), ("Latency", ms(r["latency_ms"])),
             ("Time to first token", ms(r["ttft_ms"])), ("Cost", usd(r["cost_usd"]) + (" (estimated)" if r["estimated"] else "")),
             ("Tokens in / out", f"{r['input_tokens']:,} / {r['output_tokens']:,}"), ("Cache", h(r["cache"] or "")),
             ("Key", h(r["key"] or "")), ("User", h(r["user"] or "")), ("Episode", h(r["episode"] or "")),
             ("Dialect", h(r["dialect"] or "")), ("Tags", h(", ".join(f"{k}={v}" for k, v in r["tags"].items())))]
    dl = '<dl class="facts">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>"
    atts = table(("#", "role", "model", "provider", "status", "error", "why", "latency", "tokens in / out", "cost"),
                 ((h(a["index"]), h(a["role"]), h(a["model"]), h(a["provider"]), h(a["status"]), h(a["error"] or ""),
                   h(a["detail"] or ""), ms(a["latency_ms"]), f"{a['input_tokens']:,} / {a['output_tokens']:,}",
                   usd(a["cost_usd"])) for a in r["attempt_list"]), "attempts")
    fb = table(("time", "metric", "score", "comment"),
               ((h(when(f["time"])), h(f["metric"]), f"{f['score']:.2f}", h(f["comment"] or "")) for f in r["feedback"]),
               "feedback")
    bodies = ""
    if "bodies" in r:
        b = r["bodies"]
        bodies = (f'<h2>Prompt</h2><pre>{h(b["prompt"])}</pre><h2>Answer</h2><pre>{h(b["answer"])}</pre>'
                  + ('<p class="note">Cut to the configured size.</p>' if b["truncated"] else ""))
    body = dl + "<h2>Attempts</h2>" + atts + "<h2>Feedback</h2>" + fb + bodies
    return page("requests", "Request", body, csrf)


def live(state: Mapping, csrf: str | None) -> bytes:
    models = table(("model", "state", "back in (s)", "ejections", "failures (window)", "last error",
                    "in flight (this worker)", "concurrency"),
                   ((h(m["model"]), f'<span class="state {h(m["state"])}">{h(m["state"])}</span>',
                     h(m["ejected_until"] or ""), h(m["ejections"]), h(m["failures_local"] + m["failures_upstream"]),
                     h(m["last_error"] or ""), h(state["inflight"].get(m["model"], 0)),
                     h(state["limits"].get(m["model"], ""))) for m in state["models"]), "live")
    cooling = table(("model", "rate-limited for (s)"), ((h(m), f"{c:.1f}") for m, c in state["cooling"].items()))
    body = (f'<p class="note">This worker\'s view, now (pid {h(state["pid"])}).</p>' + models
            + "<h2>Rate-limit cool-downs</h2>" + cooling)
    return page("live", "Live routing", body, csrf)


def budgets(rows: Sequence[Mapping], csrf: str | None) -> bytes:
    def row(b: Mapping) -> tuple:
        return (h(b["scope"]), h(b["match"] or ""), usd(b["limit_usd"]) + "/" + h(b["period"]),
                usd(b["spent_usd"]), pct(b.get("used")), "–" if b["soft"] is None else pct(b["soft"]),
                usd(b.get("burn_usd_per_day")), usd(b.get("projected_usd")), h(b.get("resets") or ""))
    body = table(("scope", "match", "limit", "spent", "used", "soft at", "burn per day (7 d)", "projected at period end",
                  "resets"), (row(b) for b in rows), "budgets")
    if not rows:
        body += '<p class="note">No budgets configured (the <code>budgets:</code> section).</p>'
    return page("budgets", "Budgets", body, csrf)


def feedback(by: str, data: Mapping, csrf: str | None) -> bytes:
    opts = "".join(f'<option{" selected" if d == by else ""}>{d}</option>' for d in ("model", "route"))
    form = f'<form method="get" class="filters"><label>by <select name="by">{opts}</select></label><button>Show</button></form>'
    rows = ((h(r["group"] or "(none)"), f"{r['feedback_n']:,}", f"{r['requests']:,}",
             "–" if r["satisfaction"] is None else f"{r['satisfaction']:.2f}") for r in data["rows"])
    body = form + chart("satisfaction", "Satisfaction per day (quality, 0..1)") + table(
        (by, "feedback", "requests", "satisfaction"), rows, "satisfaction")
    days = sorted({d["t"] for r in data["rows"] for d in r["days"]})
    series = {}
    for r in data["rows"][:8]:
        per = {d["t"]: d["satisfaction"] for d in r["days"]}
        series[r["group"] or "(none)"] = [per.get(t) for t in days]
    return page("feedback", "Feedback", body, csrf, {"satisfaction": {"x": days, "series": series}})
