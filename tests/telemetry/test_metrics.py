"""``GET /metrics`` scraped from ``switchman serve`` after known traffic, with one and two workers:
the counts are the fleet's, exact, under the names the OpenTelemetry GenAI conventions pin."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .serving import ADMIN, serve, stop


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def total(got: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in got.items() if n == name and want <= ls)


async def scrape(http: aiohttp.ClientSession, base: str) -> dict:
    async with http.get(base + "/metrics", headers={"authorization": f"Bearer {ADMIN}"}) as r:
        assert r.status == 200, await r.text()
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        return samples(await r.text())


async def settled(http, base: str, want: float, timeout: float = 10.0) -> dict:
    """Scrape until every request sent is counted (settling runs just after each answer)."""
    end = time.monotonic() + timeout
    while True:
        got = await scrape(http, base)
        if total(got, "switchman_requests_total") >= want or time.monotonic() > end:
            return got
        await asyncio.sleep(0.05)


async def traffic(http: aiohttp.ClientSession, base: str) -> None:
    key = {"authorization": f"Bearer {ADMIN}"}
    body = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}
    for _ in range(6):
        async with http.post(base + "/v1/chat/completions", json=body, headers=key) as r:
            assert r.status == 200
    for _ in range(3):  # streamed, with usage
        async with http.post(base + "/v1/chat/completions", headers=key,
                             json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
            assert r.status == 200
            await r.read()
    for _ in range(2):  # the route: broken fails (500), echo answers as the fallback
        async with http.post(base + "/v1/chat/completions", json={**body, "model": "auto"}, headers=key) as r:
            assert r.status == 200
    async with http.post(base + "/v1/messages", headers=key, json={"model": "claude", "max_tokens": 50,
                                                                    "messages": [{"role": "user", "content": "hi"}]}) as r:
        assert r.status == 200
    async with http.post(base + "/v1/chat/completions", json=body, headers={"authorization": "Bearer wrong"}) as r:
        assert r.status == 401
    async with http.post(base + "/v1/chat/completions", json={**body, "model": "no-such-model-xyz"}, headers=key) as r:
        assert r.status == 404


@pytest.mark.parametrize("workers", [1, 2])
async def test_counts_after_known_traffic_are_exact(tmp_path, workers):
    s = await serve(tmp_path, workers=workers)
    try:
        async with aiohttp.ClientSession() as http:
            await traffic(http, s.base)
            got = await settled(http, s.base, 14)
            await asyncio.sleep(0.3)  # nothing more may arrive: the counts are exact, not at least
            got = await scrape(http, s.base)
    finally:
        await stop(s)
    req = "switchman_requests_total"
    assert total(got, req) == 14
    assert total(got, req, route="echo", model="echo", dialect="openai", status_class="2xx") == 9
    assert total(got, req, route="auto", model="echo", status_class="2xx") == 2
    assert total(got, req, route="claude", dialect="anthropic", status_class="2xx") == 1
    assert total(got, req, status_class="4xx") == 2
    # junk model names never become series of their own
    assert not any("no-such-model-xyz" in str(ls) for _, ls in got)
    att = "switchman_attempts_total"
    assert total(got, att, model="broken", role="first", outcome="failed") == 2
    assert total(got, att, model="echo", role="fallback", outcome="ok") == 2
    assert total(got, att, model="echo", role="first", outcome="ok") == 9
    # GenAI conventions (v1.41.1), Prometheus naming: one duration per upstream call
    dur = "gen_ai_client_operation_duration_seconds_count"
    assert total(got, dur) == 14
    assert total(got, dur, gen_ai_provider_name="openai", gen_ai_request_model="broken", error_type="server_error") == 2
    assert total(got, dur, gen_ai_provider_name="anthropic", gen_ai_response_model="claude") == 1
    assert total(got, "gen_ai_client_token_usage_count", gen_ai_token_type="input", gen_ai_request_model="echo") == 11
    assert total(got, "gen_ai_client_operation_time_to_first_chunk_seconds_count") == 3
    assert total(got, "gen_ai_client_operation_time_to_first_chunk_seconds_bucket", le="0.01") <= 3
    # the semconv buckets, exactly
    les = {dict(ls)["le"] for (n, ls) in got if n == "gen_ai_client_operation_duration_seconds_bucket"}
    assert {"0.01", "0.02", "0.04", "81.92", "+Inf"} <= les
    # spend: 11 echo calls + 1 claude call, each priced; the failed call cost nothing
    assert total(got, "switchman_cost_usd_total", model="echo") > 0
    assert total(got, "switchman_cost_usd_total", model="broken") == 0
    assert total(got, "switchman_inflight_calls") == 0


async def test_metrics_need_the_admin_key_unless_public(tmp_path):
    s = await serve(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(s.base + "/metrics") as r:
                assert r.status == 401
            async with http.get(s.base + "/metrics", headers={"authorization": "Bearer nope"}) as r:
                assert r.status == 401
    finally:
        await stop(s)
    s = await serve(tmp_path, extra="metrics: {public: true}")
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(s.base + "/metrics") as r:
                assert r.status == 200
                assert "switchman_requests_total" in await r.text() or "# HELP switchman_requests" in await r.text()
    finally:
        await stop(s)


async def test_tag_labels_only_for_named_tags(tmp_path):
    s = await serve(tmp_path, extra="metrics: {tags: [team]}")
    try:
        async with aiohttp.ClientSession() as http:
            body = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
            for team in ("search", "search", "ads"):
                async with http.post(s.base + "/v1/chat/completions", json=body,
                                     headers={**s.admin(), "x-switchman-tags": f"team={team},feature=f-{team}"}) as r:
                    assert r.status == 200
            got = await settled(http, s.base, 3)
    finally:
        await stop(s)
    assert total(got, "switchman_requests_total", tag_team="search") == 2
    assert total(got, "switchman_requests_total", tag_team="ads") == 1
    assert not any("feature" in k for _, ls in got for k, _ in ls)  # not named: not a label


async def test_the_grafana_dashboard_names_only_what_metrics_exposes(tmp_path):
    import json
    import re
    from importlib import resources

    dash = json.loads(resources.files("switchman.telemetry").joinpath("grafana", "switchman.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if isinstance(v.get("query"), dict)]
    def metric_names(e: str) -> set[str]:  # label names (in by (...), selectors, label_values) are not metrics
        e = re.sub(r"by \([^)]*\)", "", e)
        e = re.sub(r",\s*[a-z_]+\)", ")", e)
        return set(re.findall(r"\b((?:gen_ai|switchman)_[a-z0-9_]+)\b(?!\s*[=!])", e))

    wanted = set().union(*(metric_names(e) for e in exprs))
    s = await serve(tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            await traffic(http, s.base)
            async with http.get(s.base + "/metrics", headers={"authorization": f"Bearer {ADMIN}"}) as r:
                text = await r.text()
    finally:
        await stop(s)
    exposed = set()
    labels: dict[str, set] = {}
    for fam in text_string_to_metric_families(text):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(fam.type, ("",))
        for sfx in suffixes:
            exposed.add(fam.name + sfx)
        for smp in fam.samples:
            labels.setdefault(smp.name, set()).update(smp.labels)
    assert len(wanted) >= 15
    assert wanted <= exposed, f"the dashboard names metrics /metrics does not expose: {sorted(wanted - exposed)}"
    for e in exprs:  # label names in selectors and by() clauses exist on the metric they group
        for metric, sel in re.findall(r"\b((?:gen_ai|switchman)_[a-z0-9_]+)\{([^}]*)\}", e):
            if metric in labels:
                used = set(re.findall(r"([a-z_]+)\s*[=!]~?", sel))
                assert used <= labels[metric] | {"le"}, (metric, used - labels[metric])
