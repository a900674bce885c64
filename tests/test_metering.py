"""The ledger and keys on the request path, over real HTTP: what a user sees with `switchman
keys` and `switchman spend` after traffic through the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from decimal import Decimal

import aiohttp
import anthropic
import openai
import pytest

from switchman import configfile
from switchman.accounting import BudgetExceeded
from switchman.app import App
from switchman.clock import VirtualClock
from switchman.gateway import Gateway
from switchman.http.server import HttpServer
from switchman import tokens
from switchman.metering import Metering
from switchman.testing.fake_upstream import FakeModel, FakeUpstream
from switchman.testing.transport import Scripted, ScriptedClient

ADMIN = "admin-secret-key"


@pytest.fixture
async def metered(tmp_path):
    fake = FakeUpstream({"gpt-4o-mini": FakeModel(cached_tokens=2), "claude-haiku-4-5": FakeModel(),
                         "broken": FakeModel(error_status=500)})
    await fake.start()
    cfg = configfile.loads(f"""
providers:
  oa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "k"}}
  an: {{kind: anthropic, base_url: "{fake.url('anthropic')}", api_key: "k"}}
models:
  - {{name: gpt-4o-mini, provider: oa}}
  - {{name: claude-haiku-4-5, provider: an}}
  - {{name: broken, provider: oa, price: {{input: 1, output: 1}}}}
routes:
  - {{name: auto, policy: {{kind: first, models: [broken, gpt-4o-mini, claude-haiku-4-5]}}}}
auth: {{admin_key: "{ADMIN}", keys_required: true}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db", flush_interval: 0.01}}
retry: {{attempts: 1}}
""", env={})
    gw = Gateway(cfg)
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter))
    port = await server.start("127.0.0.1", 0)
    yield fake, gw, meter, f"http://127.0.0.1:{port}"
    await server.stop(grace=0.5)
    await meter.close()
    await gw.close()
    await fake.stop()


async def admin(base, method, path, body=None):
    async with aiohttp.ClientSession() as s:
        async with s.request(method, base + path, json=body, headers={"authorization": f"Bearer {ADMIN}"}) as r:
            return r.status, await r.json()


async def test_keys_spend_and_ledger_agree_with_the_upstream(metered, tmp_path):
    fake, gw, meter, base = metered
    status, created = await admin(base, "POST", "/admin/keys", {"name": "team-a", "routes": ["auto"]})
    assert status in (200, 201), created
    key = created["key"]
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key=key, max_retries=0) as c:
        costs = Decimal(0)
        for i in range(5):
            raw = await c.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": f"question number {i} " * 5}])
            costs += Decimal(raw.headers["x-switchman-cost-usd"])
        s = await c.chat.completions.create(model="auto", stream=True,
                                            messages=[{"role": "user", "content": "a stream"}])
        async for _ in s:
            pass
        assert "auto" in {m.id async for m in c.models.list()}  # a virtual key may list models
        with pytest.raises(openai.PermissionDeniedError):  # the key may use the route only
            await c.chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": "x"}])
    async with openai.AsyncOpenAI(base_url=base + "/v1", api_key="sk-sm-not-a-real-key", max_retries=0) as c:
        with pytest.raises(openai.AuthenticationError):
            await c.chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
    await meter.accountant.ledger.drain()
    rows = {r.group: r for r in await meter.accountant.spend(by="model")}
    # broken (provider oa) fails first; the other provider's model answers (no retry configured)
    assert set(rows) >= {"claude-haiku-4-5"}
    total = Decimal(0)
    for name in ("gpt-4o-mini", "claude-haiku-4-5"):
        st = fake.stats[name]
        price = gw.config.models[name].price
        expect = price.cost(st.input_tokens, st.output_tokens, st.cache_read_tokens, st.cache_write_tokens)
        got = Decimal(str(rows[name].cost)) if name in rows else Decimal(0)
        assert got == expect, f"{name}: the ledger equals upstream-reported usage × price, exactly"
        total += expect
    assert costs > 0 and costs <= total  # the headers priced the non-streaming five
    status, spend = await admin(base, "GET", "/admin/spend?by=key")
    assert status == 200 and json.dumps(spend).count("team-a") >= 1
    # the key is stored hashed: its plaintext is nowhere in the database's files
    db_files = [p for p in tmp_path.iterdir() if p.name.startswith("ledger.db")]
    assert db_files
    assert all(key.encode() not in p.read_bytes() for p in db_files)
    assert any(b"team-a" in p.read_bytes() for p in db_files), "the files read are the ones holding the keys"


@contextlib.asynccontextmanager
async def serving(tmp_path, fakes: dict[str, FakeModel], models: str, extra: str = ""):
    """A metered gateway over the fake upstream's OpenAI and Anthropic wires, on loopback."""
    fake = FakeUpstream(fakes)
    await fake.start()
    cfg = configfile.loads(f"""
providers:
  oa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "k"}}
  an: {{kind: anthropic, base_url: "{fake.url('anthropic')}", api_key: "k"}}
models:
{models}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db", flush_interval: 0.01}}
retry: {{attempts: 1}}
{extra}
""", env={})
    gw = Gateway(cfg)
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter))
    port = await server.start("127.0.0.1", 0)
    try:
        yield fake, gw, meter, f"http://127.0.0.1:{port}"
    finally:
        await server.stop(grace=0.5)
        await meter.close()
        await gw.close()
        await fake.stop()


def ledger_rows(tmp_path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(tmp_path / "ledger.db")) as db:
        return db.execute(sql).fetchall()


async def test_five_minute_and_one_hour_cache_writes_are_priced_exactly(tmp_path):
    # 7,000 prompt tokens: 2,000 read from cache (0.1x input), 3,000 written of which 1,000 to the
    # 1-hour cache (2x input) and 2,000 to the 5-minute one (1.25x), 2,000 plain.
    spec = FakeModel(cached_tokens=2_000, cache_write_tokens=3_000, cache_write_1h_tokens=1_000)
    async with serving(tmp_path, {"claude-sonnet-4-5": spec}, "  - {name: sonnet, provider: an, model: claude-sonnet-4-5}") as (
            fake, gw, meter, base):
        prompt = "cache " * 4_666 + "me"  # 28,000 characters: 7,000 tokens to the fake
        async with anthropic.AsyncAnthropic(base_url=base, api_key="none", max_retries=0) as c:
            raw = await c.messages.with_raw_response.create(model="sonnet", max_tokens=100,
                                                            messages=[{"role": "user", "content": prompt}])
            msg = await raw.parse()
            async with c.messages.stream(model="sonnet", max_tokens=100, messages=[{"role": "user", "content": prompt}]) as s:
                streamed = await s.get_final_message()
        u = msg.usage
        assert (u.input_tokens, u.cache_read_input_tokens, u.cache_creation_input_tokens) == (2_000, 2_000, 3_000)
        assert (u.cache_creation.ephemeral_5m_input_tokens, u.cache_creation.ephemeral_1h_input_tokens) == (2_000, 1_000)
        assert streamed.usage.cache_creation.ephemeral_1h_input_tokens == 1_000
        out = u.output_tokens
        # claude-sonnet-4-5 list prices per 1M: input $3, output $15, read $0.30, 5-minute write $3.75, 1-hour write $6
        one = (2_000 * Decimal(3) + out * Decimal(15) + 2_000 * Decimal("0.30") + 2_000 * Decimal("3.75")
               + 1_000 * Decimal(6)) / 1_000_000
        assert Decimal(raw.headers["x-switchman-cost-usd"]) == one
        await meter.accountant.flush()
        (row,) = await meter.accountant.spend(by="model")
        assert row.cost == 2 * one, "the ledger prices both writes at their own rate, streamed or not"
        st = fake.stats["claude-sonnet-4-5"]
        assert row.cost == gw.config.models["sonnet"].price.cost(
            st.input_tokens, st.output_tokens, st.cache_read_tokens, st.cache_write_tokens, st.cache_write_1h_tokens)
    assert ledger_rows(tmp_path, "SELECT cache_write_tokens, cache_write_1h_tokens FROM requests") == [(3_000, 1_000)] * 2


async def ready(base: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.get(base + "/health/ready") as r:
            return r.status, await r.json()


MINI = "  - {name: gpt-4o-mini, provider: oa}"


async def test_ready_checks_the_ledger_database_and_the_shared_state(tmp_path):
    async with serving(tmp_path, {"gpt-4o-mini": FakeModel()}, MINI) as (_, _, meter, base):
        assert await ready(base) == (200, {"status": "ready", "models": 1, "ledger": "ok", "state": "ok",
                                           "ledger_pending": 0, "ledger_quarantined": 0})
        await meter.accountant.store.close()  # the database connection is gone
        status, body = await ready(base)
        assert status == 503 and body["ledger"] == "down" and "ledger database unreachable" in body["status"]
    closed = "state: {backend: redis, url: 'redis://127.0.0.1:1/0', timeout: 0.1, on_error: closed}"  # a closed port
    async with serving(tmp_path, {"gpt-4o-mini": FakeModel()}, MINI, closed) as (_, _, _, base):
        status, body = await ready(base)
        assert status == 503 and (body["ledger"], body["state"]) == ("ok", "down")
        assert body["status"] == "not ready: state backend unreachable (on_error: closed)"
    # Failing open, requests are still served: not ready would take every replica out of its load
    # balancer at once. Degraded, and saying so.
    async with serving(tmp_path, {"gpt-4o-mini": FakeModel()}, MINI, closed.replace("closed}", "open}")) as (_, _, _, base):
        status, body = await ready(base)
        assert status == 200 and body["state"] == "down" and body["status"].startswith("degraded")


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_a_cut_stream_is_counted_with_the_tokenizer_and_marked_estimated(tmp_path, wire):
    reply = "Streaming answers are billed for every token generated, reported or not. " * 8
    fakes = {"up": FakeModel(reply=reply, chunks=8, cut_after=5)}
    models = f"  - {{name: m, provider: {'oa' if wire == 'openai' else 'an'}, model: up, price: {{input: 1, output: 2}}}}"
    prompt = "Tell me about billing, please. " * 3
    async with serving(tmp_path, fakes, models) as (fake, gw, meter, base):
        got = []
        async with openai.AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0) as c:
            with pytest.raises(openai.APIError):
                async for chunk in await c.chat.completions.create(
                        model="m", stream=True, messages=[{"role": "user", "content": prompt}]):
                    got += [ch.delta.content or "" for ch in chunk.choices]
        await meter.accountant.flush()
    streamed = "".join(got)
    assert 0 < len(streamed) < len(reply)
    (row,) = ledger_rows(tmp_path, "SELECT input_tokens, output_tokens, estimated, cost_pusd FROM requests")
    inp, out, estimated, cost = row
    assert estimated == 1
    assert out == tokens.count(streamed), "the output streamed before the cut, counted by the tokenizer"
    # OpenAI reports usage only at the end: the prompt is counted too. Anthropic reported the
    # prompt in message_start, before the cut: that count is kept.
    reported = -(-len(prompt) // 4)  # the fake's count: a token per 4 characters, rounded up
    assert inp == (tokens.count(prompt) if wire == "openai" else reported)
    assert cost == (inp * 1 + out * 2) * 1_000_000  # picodollars at $1 / $2 per 1M tokens


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_a_stream_resumed_after_a_cut_books_what_the_cut_model_sent(tmp_path, wire):
    """``on_cut: resume``: the client gets one answer, and the ledger pays both models: the one
    that broke for its prompt and what it streamed (counted, estimated), the mender as reported."""
    first = "The first half of a long answer about billing, which then breaks off. " * 4
    fakes = {"cutter": FakeModel(reply=first, chunks=8, cut_after=5), "mender": FakeModel(reply=" And the rest.")}
    prov = "oa" if wire == "openai" else "an"
    models = (f"  - {{name: cut, provider: {prov}, model: cutter, price: {{input: 1, output: 2}}}}\n"
              "  - {name: mend, provider: oa, model: mender, price: {input: 3, output: 5}}")
    routes = "routes:\n  - {name: r, policy: {kind: first, models: [cut, mend]}, stream: {on_cut: resume}}"
    prompt = "Tell me about billing, please. " * 3
    async with serving(tmp_path, fakes, models, routes) as (fake, gw, meter, base):
        async with openai.AsyncOpenAI(base_url=base + "/v1", api_key="none", max_retries=0) as c:
            got = [ch.delta.content or "" async for chunk in await c.chat.completions.create(
                model="r", stream=True, messages=[{"role": "user", "content": prompt}]) for ch in chunk.choices]
        await meter.accountant.flush()
    text = "".join(got)
    assert text.endswith(" And the rest.") and text.startswith("The first half")
    streamed = text[: -len(" And the rest.")]
    rows = ledger_rows(tmp_path, "SELECT model, role, error, input_tokens, output_tokens, cost_pusd, estimated "
                                 "FROM attempts ORDER BY idx")
    (cut_m, _, err, cut_in, cut_out, cut_cost, cut_est), (mend_m, role, mend_err, mend_in, mend_out, mend_cost, _) = rows
    assert (cut_m, mend_m, role, mend_err) == ("cut", "mend", "fallback", None)  # the ledger has no "resume" role
    assert err and cut_est == 1
    assert cut_out == tokens.count(streamed), "what the cut model streamed, counted by the tokenizer"
    reported = -(-len(prompt) // 4)  # Anthropic reported the prompt in message_start, before the cut
    assert cut_in == (tokens.count(prompt) if wire == "openai" else reported)
    assert cut_cost == (cut_in * 1 + cut_out * 2) * 1_000_000
    st = fake.stats["mender"]
    assert (mend_in, mend_out) == (st.input_tokens, st.output_tokens)
    assert mend_cost == (mend_in * 3 + mend_out * 5) * 1_000_000
    (req,) = ledger_rows(tmp_path, "SELECT model, cost_pusd, estimated, status FROM requests")
    assert req == ("mend", cut_cost + mend_cost, 1, 200)


async def test_a_stream_closed_unread_is_settled_and_frees_its_slot_and_budget(tmp_path):
    """A caller that takes a streaming reply and closes it without reading a byte: the request is
    in the ledger (its prompt counted, estimated), the model's only concurrency slot is free
    again, and the budget reservation is released rather than held until it lapses."""
    models = "  - {name: m, provider: oa, model: up, price: {input: 1, output: 2}, limits: {concurrency: 1, queue: 0}}"
    budget = "budgets:\n  - {user: ann, limit: 0.0005/day}"  # room for one reservation at a time
    prompt = "Closed before reading. " * 4
    async with serving(tmp_path, {"up": FakeModel(reply="never read " * 20, chunks=6)}, models, budget) as (
            fake, gw, meter, base):
        body = {"model": "m", "user": "ann", "max_tokens": 200, "messages": [{"role": "user", "content": prompt}]}
        reply = await meter.chat(stream=True, **body)
        await reply.events.aclose()
        await meter.accountant.flush()  # the settling (it counts the prompt) runs in the background
        again = await meter.chat(**body)  # the slot and the reservation are back
        assert again.outcome.model.name == "m" and again.response.text().startswith("never read")
        await meter.accountant.flush()
    rows = ledger_rows(tmp_path, "SELECT input_tokens, output_tokens, estimated, status FROM requests ORDER BY ts")
    assert len(rows) == 2
    assert rows[0] == (tokens.count(prompt), 0, 1, 200)


async def test_in_process_calls_are_metered_like_the_servers(tmp_path):
    fake = FakeUpstream({"gpt-4o-mini": FakeModel()})
    await fake.start()
    cfg = configfile.loads(f"""
providers:
  oa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "k"}}
models:
  - {{name: gpt-4o-mini, provider: oa}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
budgets:
  - {{user: bob, limit: 0.001/day}}
""", env={})
    gw = Gateway(cfg)
    try:
        async with Metering.from_config(gw) as meter:
            one = await meter.chat(model="gpt-4o-mini", user="alice", tags={"team": "search"},
                                   messages=[{"role": "user", "content": "in-process"}])
            two = await meter.chat(model="gpt-4o-mini", user="alice", stream=True,
                                   messages=[{"role": "user", "content": "in-process, streamed"}])
            assert [type(ev).__name__ async for ev in two.events][-1] == "UsageEvent"
            with pytest.raises(BudgetExceeded, match="budget user:bob"):  # what the server answers 429 for
                await meter.chat(model="gpt-4o-mini", user="bob", messages=[{"role": "user", "content": "x"}])
            await meter.accountant.flush()
            (alice,) = [r for r in await meter.accountant.spend(by="user") if r.group == "alice"]
            st = fake.stats["gpt-4o-mini"]
            assert alice.requests == 2
            assert alice.cost == gw.config.models["gpt-4o-mini"].price.cost(st.input_tokens, st.output_tokens)
            assert alice.cost > one.cost() > 0
            (team,) = await meter.accountant.spend(by="tag")
            assert (team.group, team.cost) == ("team=search", one.cost())
    finally:
        await gw.close()
        await fake.stop()


async def test_a_hedge_that_answered_in_full_but_lost_is_booked_at_its_own_price(tmp_path):
    """The first model and its hedge answer in the same instant: the ledger names the model whose
    answer the client got, and books the loser's whole answer too, each at its own price."""
    clock = VirtualClock()
    script = {"slow": Scripted(latency=1.0, text="slow"), "fast": Scripted(latency=0.5, text="fast")}
    cfg = configfile.loads(f"""
providers:
  p0: {{kind: openai, base_url: "http://127.0.0.1:9/v1"}}
  p1: {{kind: openai, base_url: "http://127.0.0.1:8/v1"}}
models:
  - {{name: slow, provider: p0, price: {{input: 1, output: 1}}}}
  - {{name: fast, provider: p1, price: {{input: 100, output: 100}}}}
routes:
  - {{name: r, policy: {{kind: first, models: [slow, fast]}}, hedge: {{after: 0.5}}}}
auth: {{admin_key: "{ADMIN}"}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db"}}
""", env={})
    gw = Gateway(cfg, client=ScriptedClient(clock, script), clock=clock)
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter))
    port = await server.start("127.0.0.1", 0)
    try:
        async with openai.AsyncOpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=ADMIN, max_retries=0) as c:
            call = asyncio.ensure_future(c.chat.completions.create(model="r", messages=[{"role": "user", "content": "hi"}]))
            while not call.done():
                await clock.run_for(0.05)
            got = (await call).choices[0].message.content
        await meter.accountant.ledger.drain()
        with sqlite3.connect(tmp_path / "ledger.db") as db:
            (model, cost), = db.execute("SELECT model, cost_pusd FROM requests").fetchall()
            atts = db.execute("SELECT model, status, input_tokens, output_tokens FROM attempts ORDER BY idx").fetchall()
    finally:
        await server.stop(grace=0.1)
        await meter.close()
        await gw.close()
    assert model == got, "the answering model is the one whose answer the client got"
    assert atts == [("slow", 200, 3, 1), ("fast", 200, 3, 1)], "both answered in full, both reported usage"
    assert cost == 4 * 1_000_000 + 4 * 100_000_000, "4 tokens at $1/M plus 4 at $100/M, in picodollars"


async def test_a_telemetry_failure_never_fails_a_request_or_loses_its_ledger_row(metered, caplog):
    fake, gw, meter, base = metered
    app_telemetry = meter.accountant.on_settled

    def broken(req, attempts):
        raise RuntimeError("metrics exploded")

    meter.accountant.on_settled = broken
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(base + "/v1/chat/completions", headers={"authorization": f"Bearer {ADMIN}"},
                                 json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}) as r:
                assert r.status == 200
                rid = r.headers["x-switchman-request-id"]
        await meter.accountant.flush()
    finally:
        meter.accountant.on_settled = app_telemetry
    rows = await meter.accountant.store.fetch("SELECT status FROM requests WHERE request_id = ?", [rid])
    assert rows == [(200,)]
    assert "telemetry failed" in caplog.text
