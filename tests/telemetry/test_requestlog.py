"""The request log and feedback through ``switchman serve``: what an operator asks of
``/admin/requests`` and what a client sends to ``/v1/feedback``, with virtual keys, over real HTTP."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from .serving import serve, stop

BODY = {"model": "echo", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
async def gw(tmp_path):
    s = await serve(tmp_path, args=("--log-level", "info"))
    yield s
    await stop(s)


async def key(http, s, name: str) -> str:
    async with http.post(s.base + "/admin/keys", json={"name": name}, headers=s.admin()) as r:
        assert r.status == 201, await r.text()
        return (await r.json())["key"]


async def chat(http, s, secret: str, body=BODY, **headers) -> str:
    async with http.post(s.base + "/v1/chat/completions", json=body,
                         headers={"authorization": f"Bearer {secret}", **headers}) as r:
        assert r.status == 200, await r.text()
        await r.read()
        return r.headers["x-switchman-request-id"]


async def admin_get(http, s, path: str, status: int = 200) -> dict:
    async with http.get(s.base + path, headers=s.admin()) as r:
        assert r.status == status, await r.text()
        return await r.json()


async def until_logged(http, s, n: int) -> dict:
    for _ in range(100):
        got = await admin_get(http, s, "/admin/requests?limit=500")
        if len(got["data"]) >= n:
            return got
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {len(got['data'])} of {n} requests in the log")


async def test_filters_pages_and_one_request(gw):
    s = gw
    async with aiohttp.ClientSession() as http:
        a, b = await key(http, s, "team-a"), await key(http, s, "team-b")
        ids = [await chat(http, s, a, **{"x-switchman-tags": "team=search", "x-switchman-user": "u1"}) for _ in range(3)]
        ids.append(await chat(http, s, b, {**BODY, "model": "auto"}, **{"x-switchman-episode": "ep-7"}))
        ids.append(await chat(http, s, b, {**BODY, "stream": True}))
        await until_logged(http, s, 5)
        keys = {k["name"]: k["id"] for k in (await admin_get(http, s, "/admin/keys"))["data"]}

        async def ids_of(q: str) -> list[str]:
            return [r["request_id"] for r in (await admin_get(http, s, "/admin/requests?" + q))["data"]]

        assert await ids_of("") == ids[::-1]  # newest first
        assert await ids_of(f"key={keys['team-a']}") == ids[2::-1]
        assert await ids_of("tag=team=search") == ids[2::-1]
        assert await ids_of("user=u1&route=echo") == ids[2::-1]
        assert await ids_of("route=auto") == [ids[3]]
        assert await ids_of("episode=ep-7") == [ids[3]]
        assert await ids_of("status=2xx") == ids[::-1]
        assert await ids_of("status=5xx") == []
        assert await ids_of("cache=none") == ids[::-1]
        assert await ids_of("cost_above=1") == []
        assert len(await ids_of("cost_above=0.0000001")) == 5

        # pages: limit 2, following next_cursor, every row once, in order
        seen, cursor = [], None
        while True:
            got = await admin_get(http, s, "/admin/requests?limit=2" + (f"&cursor={cursor}" if cursor else ""))
            seen += [r["request_id"] for r in got["data"]]
            cursor = got["next_cursor"]
            if cursor is None:
                break
        assert seen == ids[::-1]

        one = await admin_get(http, s, f"/admin/requests/{ids[3]}")
        assert one["route"] == "auto" and one["model"] == "echo" and one["episode"] == "ep-7"
        assert "fallback" in one["reason"] or one["reason"]
        first, second = one["attempt_list"]
        assert (first["model"], first["role"], first["status"], first["error"]) == ("broken", "first", 500, "server_error")
        assert first["detail"]  # the upstream's own message, for the operator
        assert (second["model"], second["role"], second["status"], second["error"]) == ("echo", "fallback", 200, None)
        streamed = await admin_get(http, s, f"/admin/requests/{ids[4]}")
        assert streamed["stream"] is True and streamed["ttft_ms"] is not None

        # bad input: 400 naming the problem, 404 for an unknown id
        for q, word in (("statu=5xx", "statu"), ("status=9xx", "status"), ("since=yesterday-ish", "since"),
                        ("cursor=%%%", "cursor"), ("limit=0", "limit"), ("cost_above=-1", "cost_above"),
                        ("feedback=maybe", "feedback"), ("tag=nope", "tag")):
            err = await admin_get(http, s, "/admin/requests?" + q, status=400)
            assert word in err["error"]["message"], (q, err)
        await admin_get(http, s, "/admin/requests/req_nope", status=404)
        async with http.get(s.base + "/admin/requests", headers={"authorization": f"Bearer {a}"}) as r:
            assert r.status == 401  # a virtual key is not the admin key
    log = s.log.read_text()
    lines = [orjson.loads(line.split("switchman.access: ", 1)[1]) for line in log.splitlines() if "switchman.access: " in line]
    assert {ln["request_id"] for ln in lines} >= set(ids)
    auto = next(ln for ln in lines if ln["request_id"] == ids[3])
    assert auto["route"] == "auto" and auto["model"] == "echo" and auto["status"] == 200 and auto["attempts"] == 2
    assert float(auto["cost_usd"]) > 0 and auto["latency_ms"] > 0


async def test_feedback(gw):
    s = gw
    async with aiohttp.ClientSession() as http:
        a, b = await key(http, s, "fa"), await key(http, s, "fb")
        rid = await chat(http, s, a, **{"x-switchman-episode": "ep-1"})

        async def send(secret: str, body: dict, status: int) -> dict:
            async with http.post(s.base + "/v1/feedback", json=body, headers={"authorization": f"Bearer {secret}"}) as r:
                assert r.status == status, await r.text()
                return await r.json()

        # right after the answer: the ledger row may not be written yet; feedback still lands
        got = await send(a, {"request_id": rid, "score": 0.8, "comment": "good"}, 201)
        assert got["metric"] == "quality" and got["score"] == 0.8
        await send(a, {"request_id": rid, "thumbs": "down", "metric": "tone", "id": "fb-1"}, 201)
        again = await send(a, {"request_id": rid, "thumbs": "down", "metric": "tone", "id": "fb-1"}, 200)
        assert again["id"] == "fb-1"  # idempotent: stored once
        await send(a, {"episode_id": "ep-1", "thumbs": "up"}, 201)
        # another key's request, an unknown one: 404 alike
        foreign = await send(b, {"request_id": rid, "score": 1}, 404)
        unknown = await send(a, {"request_id": "req_000000000000deadbeef", "score": 1}, 404)
        assert foreign["error"]["message"] == unknown["error"]["message"].replace("req_000000000000deadbeef", rid)
        await send(s.admin()["authorization"][7:], {"request_id": rid, "score": 1, "metric": "admin"}, 201)
        for body, word in (({"request_id": rid, "score": 2}, "score"), ({"request_id": rid, "score": True}, "score"),
                           ({"request_id": rid, "thumbs": "sideways"}, "thumbs"), ({"score": 1}, "request_id"),
                           ({"request_id": rid, "score": 1, "stars": 5}, "stars"),
                           ({"request_id": rid, "score": 1, "metric": "x" * 100}, "metric")):
            err = await send(a, body, 400)
            assert word in err["error"]["message"], (body, err)
        one = await admin_get(http, s, f"/admin/requests/{rid}")
        assert sorted((f["metric"], f["score"]) for f in one["feedback"]) == [
            ("admin", 1.0), ("quality", 0.8), ("tone", 0.0)]
        assert [r["request_id"] for r in (await admin_get(http, s, "/admin/requests?feedback=true"))["data"]] == [rid]


async def test_satisfaction_in_spend_and_kept_bodies(tmp_path):
    s = await serve(tmp_path, extra="log: {bodies: true, max_body_kb: 1}")
    try:
        async with aiohttp.ClientSession() as http:
            long = "tell me everything " * 200  # past the 1 KiB cap
            rids = [await chat(http, s, s.admin()["authorization"][7:], {**BODY, "messages": [
                {"role": "user", "content": long}]}) for _ in range(3)]
            for rid, score in zip(rids, (1, 0.5, 0)):
                async with http.post(s.base + "/v1/feedback", json={"request_id": rid, "score": score},
                                     headers=s.admin()) as r:
                    assert r.status == 201
            spend = await admin_get(http, s, "/admin/spend?by=model")
            one = await admin_get(http, s, f"/admin/requests/{rids[0]}")
    finally:
        await stop(s)
    echo = next(r for r in spend["rows"] if r["group"] == "echo")
    assert echo["feedback"] == 3 and echo["satisfaction"] == pytest.approx(0.5)
    b = one["bodies"]
    assert b["truncated"] is True and len(b["prompt"]) == 1024 and b["prompt"].startswith('{"model":"echo"')
    assert b["answer"]  # the model's reply text
    # the command line says the same
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "switchman.cli", "spend", "--by", "model", "--config",
                          str(tmp_path / "switchman.yaml")], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "SATISFACTION" in out.stdout and "0.50 (n=3)" in out.stdout


async def test_feedback_for_a_request_still_being_written_looks_once_when_told_not_to_wait(tmp_path, monkeypatch):
    """The server first looks for a fresh request's row without waiting (``wait=0``), then writes
    its own buffer and looks again: the first look must not sleep, or every feedback sent right after
    its answer takes a tenth of a second."""
    from switchman.accounting import requestlog
    from switchman.accounting.store import open_store
    from switchman.metering import new_request_id

    slept = []

    async def sleep(s):
        slept.append(s)

    monkeypatch.setattr(requestlog.asyncio, "sleep", sleep)
    store = open_store(f"sqlite:///{tmp_path}/ledger.db")
    await store.open()
    try:
        fb = requestlog.parse_feedback({"request_id": new_request_id(), "score": 1})
        with pytest.raises(requestlog.NotFound):
            await requestlog.add_feedback(store, fb, None, True, 0.0, wait=0)
        assert slept == []
        with pytest.raises(requestlog.NotFound):
            await requestlog.add_feedback(store, fb, None, True, 0.0, wait=0.2)
        assert slept == [0.1, 0.1]  # three looks, a tenth of a second apart
    finally:
        await store.close()
