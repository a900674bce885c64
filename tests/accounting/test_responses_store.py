"""Stored Responses API responses in each ledger database and in memory: a continuation's history,
the key that owns each response, expiry on the injected clock, and restarts."""

from __future__ import annotations

import pytest

from switchman.accounting.responses import ResponseStore
from switchman.accounting.store import open_store

from .conftest import NOON


class Clock:
    def __init__(self) -> None:
        self.t = NOON

    def __call__(self) -> float:
        return self.t


def _resp(text: str) -> dict:
    return {"id": "x", "status": "completed", "output": [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]}


@pytest.fixture(params=["memory", "ledger"])
async def backend(request, ledger_url):
    if request.param == "memory":
        if "postgres" in ledger_url:
            pytest.skip("memory once is enough")
        yield None
        return
    db = open_store(ledger_url)
    await db.open()
    yield db
    await db.close()


async def test_history_walks_the_chain_oldest_first_within_one_key(backend):
    clock = Clock()
    rs = ResponseStore(backend, retention=3600, clock=clock)
    await rs.put("key-a", "r1", None, [{"role": "user", "content": "one"}], _resp("ONE"))
    await rs.put("key-a", "r2", "r1", [{"role": "user", "content": "two"}], _resp("TWO"))
    hist = await rs.history("key-a", "r2")
    texts = [i.get("content") if i.get("role") == "user" else i["content"][0]["text"] for i in hist]
    assert texts == ["one", "ONE", "two", "TWO"]
    assert await rs.history("key-b", "r2") is None, "another key sees nothing"
    assert await rs.get("key-b", "r1") is None
    assert not await rs.delete("key-b", "r1")
    assert (await rs.get("key-a", "r1")).response["output"][0]["content"][0]["text"] == "ONE"


async def test_responses_expire_after_the_retention_and_a_broken_chain_is_no_history(backend):
    clock = Clock()
    rs = ResponseStore(backend, retention=3600, clock=clock)
    await rs.put("k", "old", None, [], _resp("a"))
    clock.t += 1800
    await rs.put("k", "new", "old", [], _resp("b"))
    assert await rs.history("k", "new") is not None
    clock.t += 1801  # "old" is past its hour, "new" is not
    assert await rs.get("k", "old") is None and await rs.get("k", "new") is not None
    assert await rs.history("k", "new") is None, "a continuation of a chain with a hole would lose context"
    assert await rs.delete("k", "new") and await rs.get("k", "new") is None


async def test_a_stored_response_outlives_a_restart(ledger_url):
    db = open_store(ledger_url)
    await db.open()
    await ResponseStore(db).put("k", "kept", None, [{"role": "user", "content": "hi"}], _resp("hello"))
    await db.close()
    db = open_store(ledger_url)
    await db.open()
    try:
        got = await ResponseStore(db).get("k", "kept")
        assert got is not None and got.input == [{"role": "user", "content": "hi"}]
    finally:
        await db.close()
