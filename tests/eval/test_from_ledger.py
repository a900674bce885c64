"""``switchman eval --from-ledger`` and ``switchman train --from-ledger``: the traffic a gateway's
ledger recorded, read back as outcome rows. The ledger is written as users write one: ``switchman
serve`` with ``log: {bodies: true}`` in front of the fake upstream, requests through the OpenAI SDK
and the Anthropic wire, feedback through ``POST /v1/feedback``; then the commands run as a user runs
them, in a subprocess, and the tests read what they print and write."""

from __future__ import annotations

import asyncio
import gzip
import sqlite3
import subprocess
import sys
from decimal import Decimal

import aiohttp
import orjson
import pytest
from openai import AsyncOpenAI

from switchman.accounting.records import AttemptRecord, RequestRecord, Role
from switchman.accounting.requestlog import add_feedback, parse_feedback
from switchman.accounting.store import open_store
from switchman.eval import from_ledger
from switchman.testing.fake_upstream import FakeModel
from telemetry.serving import serve, stop

pytest.importorskip("sklearn")

MATH = [f"compute {a} times {b}" for a, b in ((3, 4), (12, 7), (9, 9), (21, 2), (5, 8), (6, 11))]
POEM = [f"write a poem about the {w}" for w in ("sea", "moon", "rain", "roses", "cats", "frogs")]
SYSTEM = "answer in one line"
CASCADE = "  - {name: casc, policy: {kind: cascade, models: [cheap, echo]}}\n"
CHEAP = "  - {name: cheap, provider: fake, model: cheap, price: {input: 0.1, output: 0.2}}\n"


def _cheap(text: str) -> str:
    """The cheap model: fine on sums, declines poems (the cascade's refusal check rejects that)."""
    return "I'm sorry, I can't help with poems" if "poem" in text else f"cheap says {text}"


async def _traffic(tmp) -> None:
    """Every prompt to echo (OpenAI SDK) and to claude (Anthropic wire, half of them streamed), with
    feedback: echo right on sums only, claude right on all. Then a cascade, a fallback, an episode."""
    s = await serve(tmp, extra="log: {bodies: true}", extra_models=CHEAP, routes=CASCADE,
                    models={"cheap": FakeModel(reply=_cheap)})
    key = s.admin()["authorization"][7:]
    try:
        client = AsyncOpenAI(base_url=s.base + "/v1", api_key=key, max_retries=0)
        async with aiohttp.ClientSession(headers=s.admin()) as http:

            async def openai(model: str, text: str, system: str | None = None, **headers) -> str:
                msgs = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
                raw = await client.chat.completions.with_raw_response.create(model=model, messages=msgs,
                                                                               extra_headers=headers)
                return raw.headers["x-switchman-request-id"]

            async def anthropic(text: str, stream: bool, system: str | None = None) -> str:
                body = {"model": "claude", "max_tokens": 100, "stream": stream,
                        "messages": [{"role": "user", "content": [{"type": "text", "text": text}]}]}
                if system:
                    body["system"] = system
                async with http.post(s.base + "/v1/messages", json=body) as r:
                    assert r.status == 200, await r.text()
                    await r.read()
                    return r.headers["x-switchman-request-id"]

            async def feedback(body: dict) -> None:
                async with http.post(s.base + "/v1/feedback", json=body) as r:
                    assert r.status == 201, await r.text()

            for i, text in enumerate(MATH + POEM):
                rid = await openai("echo", text)
                await feedback({"request_id": rid, "score": 1.0 if text in MATH else 0.0})
                rid = await anthropic(text, stream=i % 2 == 1)
                await feedback({"request_id": rid, "thumbs": "up"})
                await feedback({"request_id": rid, "score": 0.0, "metric": "tone"})  # not quality: not counted
            # the same conversation with a system prompt, in both dialects: one prompt
            await feedback({"request_id": await openai("echo", MATH[0], SYSTEM), "score": 1.0})
            await feedback({"request_id": await anthropic(MATH[0], False, SYSTEM), "score": 0.5})
            await openai("casc", MATH[1])  # cheap answers: no verdict, no feedback
            await openai("casc", POEM[1])  # cheap declines (rejected), echo answers
            await openai("auto", "hello there")  # broken fails (a server error), echo answers
            await openai("echo", "tell me a joke", **{"x-switchman-episode": "ep-1"})
            await feedback({"episode_id": "ep-1", "thumbs": "up"})
            await openai("echo", "forget me")  # its body is pruned below
    finally:
        await stop(s)
    db = sqlite3.connect(tmp / "ledger.db")
    with db:
        db.execute("DELETE FROM bodies WHERE prompt LIKE '%forget me%'")  # as log.retention_days prunes
    db.close()


@pytest.fixture(scope="module")
def ledger(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ledger")
    asyncio.run(_traffic(tmp))
    return tmp


def switchman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "switchman.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _rows(path) -> dict[tuple[str, str], dict]:
    with gzip.open(path, "rb") as f:
        return {(r["prompt"], r["model"]): r for r in map(orjson.loads, f)}


def test_export_turns_traffic_and_feedback_into_outcome_rows(ledger, tmp_path):
    out = tmp_path / "outcomes.jsonl.gz"
    got = switchman("eval", "--from-ledger", str(ledger / "ledger.db"), "--export", str(out))
    assert got.returncode == 0, got.stderr
    rows = _rows(out)
    assert f"wrote {len(rows)} outcome row(s) to {out}" in got.stdout
    assert "skipped 1 request(s): 1 no kept prompt body" in got.stdout  # the pruned one
    assert "left out 1 failed attempt(s) the provider caused" in got.stdout  # broken's server error
    assert not any(m == "broken" for _, m in rows)
    price = {"echo": (1, 2), "claude": (3, 15)}
    for text in MATH + POEM:
        for model in ("echo", "claude"):
            r = rows[(text, model)]
            assert r["response"] == f"echo: {text}", r  # the answer as sent, streamed or not
            assert r["split"] is None and r["task"] == "echo"  # the route of the prompt's first request
            pin, pout = price[model]
            if (text, model) != (POEM[1], "echo"):  # that one is two requests' mean
                assert r["cost_usd"] == pytest.approx((r["input_tokens"] * pin + r["output_tokens"] * pout) / 1e6)
        # feedback of metric quality became quality (tone was left aside)
        assert rows[(text, "echo")]["quality"] == (1.0 if text in MATH else 0.0)
        assert rows[(text, "claude")]["quality"] == 1.0
    # one prompt id per prompt, whichever model and dialect
    assert rows[(MATH[0], "echo")]["prompt_id"] == rows[(MATH[0], "claude")]["prompt_id"]
    both = rows[(f"{SYSTEM}\n{MATH[0]}", "echo")], rows[(f"{SYSTEM}\n{MATH[0]}", "claude")]
    assert [r["quality"] for r in both] == [1.0, 0.5] and both[0]["prompt_id"] == both[1]["prompt_id"]
    # the cascade: a declined answer is quality 0 (its text is not kept), an unjudged one unknown
    assert rows[(POEM[1], "cheap")]["quality"] == 0.0 and rows[(POEM[1], "cheap")]["response"] is None
    assert rows[(POEM[1], "cheap")]["cost_usd"] > 0  # paid for all the same
    assert rows[(MATH[1], "cheap")]["quality"] is None
    assert rows[(POEM[1], "echo")]["quality"] == 0.0  # the feedback's 0 and the cascade's unscored answer
    assert "merged 1 repeated (prompt, model) outcome(s)" in got.stdout
    assert rows[("tell me a joke", "echo")]["quality"] == 1.0  # feedback on its episode
    assert rows[("hello there", "echo")]["quality"] is None and rows[("hello there", "echo")]["task"] == "auto"
    assert not any(p == "forget me" for p, _ in rows)


def test_eval_on_the_ledger_compares_the_models_it_served(ledger, tmp_path):
    out = tmp_path / "eval"
    got = switchman("eval", "--from-ledger", str(ledger / "ledger.db"), "--out", str(out), "--test-share", "0.4",
                    "--bootstrap", "0", "--no-decisions")
    assert got.returncode == 0, got.stderr
    s = orjson.loads((out / "summary.json").read_bytes())
    assert s["models"] == ["claude", "echo"] and s["prompts"] < 13  # the test share of 13 prompts
    assert s["data"] == [f"ledger:sqlite:///{ledger / 'ledger.db'}"]
    assert s["notes"][0].startswith("evaluated on: train split")
    names = {x["name"]: x for x in s["strategies"]}
    claude, echo = (names[f"single:{m}"]["points"][0] for m in ("claude", "echo"))
    assert claude["quality"] > 0.9 > 0.7 > echo["quality"] and claude["cost"] > echo["cost"]
    assert "note: skipped 1 request(s): 1 no kept prompt body" in got.stdout
    assert "no quality (no feedback, no cascade verdict)" in got.stdout  # cheap's and hello there's
    assert "dropped model cheap" in got.stdout  # it answered too few of the prompts to compare


def test_train_from_the_config_then_eval_with_the_router(ledger, tmp_path):
    router = tmp_path / "router.npz"
    got = switchman("train", "--from-ledger", str(ledger / "switchman.yaml"), "--out", str(router))
    assert got.returncode == 0, got.stderr
    assert "trained on 13 prompts × 2 models" in got.stdout
    assert "note: ledger sqlite:///" in got.stderr and "skipped 1 request(s)" in got.stderr
    from switchman.routing.learned import Router

    r = Router.load(router)
    assert r.models == ["claude", "echo"] and r.meta["sources"] == [f"ledger:sqlite:///{ledger / 'ledger.db'}"]
    poem, sums = r.predict("write a poem about the stars"), r.predict("compute 4 times 4")
    assert poem[0] > poem[1]  # claude for poems
    assert sums[1] - sums[0] > poem[1] - poem[0]  # echo does better on sums than on poems
    got = switchman("eval", "--from-ledger", str(ledger / "ledger.db"), "--router", str(router),
                    "--out", str(tmp_path / "eval"), "--bootstrap", "0", "--no-decisions")
    assert got.returncode == 0, got.stderr
    assert "with the given router" in got.stdout
    assert "note: left out the ledger's outcomes of model(s) the router does not know: cheap" in got.stdout


def test_sources_that_are_not_a_usable_ledger_exit_2_with_one_line(tmp_path):
    jsonl = tmp_path / "o.jsonl"
    jsonl.write_text('{"prompt_id": "p", "prompt": "x", "model": "a", "quality": 1}\n')
    other = tmp_path / "other.db"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE t (x)")
    db.close()
    empty = tmp_path / "empty.db"
    asyncio.run(_empty_ledger(f"sqlite:///{empty}"))
    cases = [
        ((str(jsonl),), "o.jsonl is not a ledger"),
        ((str(tmp_path / "nope.db"),), "nope.db: no such file"),
        ((str(other),), "is a SQLite database but not a switchman ledger"),
        ((f"sqlite:///{tmp_path}/typo.db",), "no ledger at"),
        ((str(empty),), "no usable outcome rows in the ledger"),
    ]
    for args, words in cases:
        got = switchman("eval", "--from-ledger", *args, "--export", str(tmp_path / "x.jsonl"), timeout=60)
        assert got.returncode == 2, (args, got.stderr)
        lines = got.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], (args, got.stderr)
    assert not (tmp_path / "typo.db").exists()  # a typo is not made into a new ledger
    assert {r[0] for r in sqlite3.connect(other).execute("SELECT name FROM sqlite_master")} == {"t"}  # untouched
    apart = f"sqlite:///{tmp_path}/apart.db"  # each model answered other prompts: nothing to compare
    asyncio.run(_write(apart, [_req("a", 1, [_att(0, "small")], 0, _openai("q1")),
                               _req("b", 2, [_att(0, "big")], 0, _openai("q2"))], ["a", "b"]))
    got = switchman("eval", "--from-ledger", apart, "--out", str(tmp_path / "out"), timeout=60)
    assert got.returncode == 2 and "comparing models needs prompts that several models answered" in got.stderr
    got = switchman("train", "--out", str(tmp_path / "r.npz"), timeout=60)
    assert got.returncode == 2 and "--from-ledger SOURCE" in got.stderr
    got = switchman("train", "--data", str(jsonl), "--test-share", "0.3", "--out", str(tmp_path / "r.npz"), timeout=60)
    assert got.returncode == 2 and "--test-share: only for --from-ledger" in got.stderr


async def _empty_ledger(url: str) -> None:
    await _write(url, [], [])


async def _write(url: str, entries: list, liked: list[str]) -> None:
    """``entries`` written to the ledger at ``url`` as the gateway writes them, and a thumbs up for
    each request of ``liked``."""
    store = open_store(url)
    await store.open()
    try:
        if entries:
            await store.write(entries)
        for rid in liked:
            await add_feedback(store, parse_feedback({"request_id": rid, "thumbs": "up"}), None, True, T0 + 50)
    finally:
        await store.close()


# -- the rules, on entries written as the gateway writes them (SQLite and PostgreSQL) --------------------
T0 = 1_795_003_200.0  # 2026-11-18 12:00 UTC


def _att(i: int, model: str, role: Role = Role.FIRST, error: str | None = None, cost: str = "0.001") -> AttemptRecord:
    return AttemptRecord(index=i, role=role, model=model, provider="p", status=200 if error is None else 500,
                         error=error, input_tokens=10, output_tokens=5, cost=Decimal(cost), time=T0)


def _req(rid: str, t: float, atts: list[AttemptRecord], answered: int | None, prompt: str | None,
         answer: str = "an answer", cut: bool = False, dialect: str = "openai", **fields) -> tuple:
    r = RequestRecord.from_attempts(rid, T0 + t, fields.pop("route", "chat"), atts,
                                    atts[answered] if answered is not None else None, dialect=dialect,
                                    **({} if answered is not None else {"status": 502, "error": "server_error"}),
                                    **fields)
    r.bodies = (prompt, answer, cut) if prompt is not None else None
    return r, atts


def _openai(text: str) -> str:
    return orjson.dumps({"model": "auto", "messages": [{"role": "user", "content": text}]}).decode()


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/ledger.db"
        return
    from accounting.conftest import pg_schema

    with pg_schema() as u:
        yield u


async def test_the_rules_on_each_ledger_database(url):
    anthropic = orjson.dumps({"model": "a", "max_tokens": 9, "system": [{"type": "text", "text": "sys"}],
                              "messages": [{"role": "user", "content": "q2"}]}).decode()
    entries = [
        _req("r01", 1, [_att(0, "small", error="rejected"), _att(1, "big", Role.JUDGE), _att(2, "big", Role.ESCALATION)],
             2, _openai("q1"), tags={"feature": "faq"}),
        _req("r02", 2, [_att(0, "big", error="rate_limited", cost="0"), _att(1, "big", Role.RETRY)], 1, anthropic,
             dialect="anthropic"),
        _req("r03", 3, [_att(0, "small", error="context_window", cost="0"), _att(1, "big", Role.FALLBACK)], 1,
             _openai("q3"), cut=True),  # the prompt parses: only the answer was cut
        _req("r04", 4, [_att(0, "small"), _att(1, "big", Role.HEDGE, error="hedge_lost")], 0, _openai("q4")),
        _req("r05", 5, [_att(0, "small"), _att(1, "big", Role.HEDGE, error="cancelled")], 0, _openai("q5")),
        _req("r06", 6, [_att(0, "small")], 0, _openai("q6")[:20], cut=True),  # the prompt was cut
        _req("r07", 7, [_att(0, "small")], 0, _openai("q7"), cache="hit"),
        _req("r08", 8, [_att(0, "small")], 0, "judge this", tags={"switchman": "cache-verify"}),
        _req("r09", 9, [_att(0, "small")], 0, None),
        _req("r10", 10, [_att(0, "small", error="overloaded", cost="0")], None, _openai("q10")),
        _req("r11", 11, [_att(0, "small")], 0, "plain text prompt", dialect=None, episode="ep"),
        _req("r12", 100, [_att(0, "small")], 0, _openai("q1")),  # after --until below
    ]
    store = open_store(url)
    await store.open()
    try:
        await store.write(entries)
        for body in ({"request_id": "r01", "score": 0.8}, {"request_id": "r01", "score": 0.4},
                     {"request_id": "r02", "thumbs": "down"}, {"episode_id": "ep", "score": 0.9},
                     {"request_id": "r04", "score": 1, "metric": "tone"}):
            await add_feedback(store, parse_feedback(body), None, True, T0 + 50)
    finally:
        await store.close()

    got = await from_ledger.read(url, task_tag="feature", until=T0 + 50, test_share=0.5)
    rows = {(r.prompt, r.model): r for r in got.rows}
    assert got.requests == 11 and got.used == 6
    assert dict(got.skipped) == {from_ledger.CUT: 1, from_ledger.CACHE: 1, from_ledger.INTERNAL: 1,
                                 from_ledger.NO_BODY: 1, from_ledger.NO_CALL: 1}
    assert got.outages == 2 and got.answers_cut == 1
    assert set(rows) == {("q1", "small"), ("q1", "big"), ("sys\nq2", "big"), ("q3", "small"), ("q3", "big"),
                         ("q4", "small"), ("q4", "big"), ("q5", "small"), ("plain text prompt", "small")}
    q = {k: r.quality for k, r in rows.items()}
    assert q[("q1", "small")] == 0.0 and q[("q1", "big")] == pytest.approx(0.6)  # rejected; feedback's mean
    assert q[("sys\nq2", "big")] == 0.0  # thumbs down on the retry that answered
    assert q[("q3", "small")] == 0.0 and q[("q3", "big")] is None  # the prompt was too long for small
    assert q[("q4", "small")] is None and q[("q4", "big")] is None  # no quality feedback; a lost hedge
    assert q[("plain text prompt", "small")] == 0.9  # the episode's feedback
    assert rows[("q1", "big")].cost_usd == pytest.approx(0.001) and rows[("q1", "big")].task == "faq"
    assert rows[("q1", "big")].response == "an answer" and rows[("q3", "big")].response is None  # cut
    assert rows[("q4", "small")].task is None  # no tag 'feature'
    assert {r.split for r in got.rows} <= {"train", "test"}
    assert len({r.split for r in got.rows if r.prompt == "q1"}) == 1
    usable, notes = got.usable(known=["big"])
    assert {(r.prompt, r.model) for r in usable} == {("q1", "big"), ("sys\nq2", "big")}
    assert any("small" in n for n in notes) and any("no quality" in n for n in notes)
