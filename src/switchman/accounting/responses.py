"""Stored Responses API responses: what ``store`` keeps, ``previous_response_id`` continues, and
``GET`` / ``DELETE /v1/responses/{id}`` read and remove.

OpenAI keeps a stored response at OpenAI; a gateway that routes across vendors cannot send a
reference to any upstream, so the gateway keeps it itself and sends every upstream the whole
conversation. Each stored response keeps its own turn: the input items the client sent, the
response object it was answered with (its ``output`` items) and the id it continued. The history
of a continuation is the chain walked back to its start, oldest first, each response's input then
output: what OpenAI documents for ``previous_response_id`` (its ``instructions`` are not carried).

Storage is the ledger database (table ``responses``, schema 4), so stored responses outlive a
restart and every worker sees them; with no ledger, a bounded memory store in this process (the
newest ``MEMORY_MAX`` responses and ``MEMORY_BYTES`` of JSON). Each response belongs to a scope,
the virtual key that made it (or the admin key): another key, like a missing or expired id, gets a
404, and learns nothing of what exists. Responses expire ``retention`` seconds after they were
made (30 days by default, OpenAI's own period); expired rows are deleted as later ones are written.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from .store import Store

MEMORY_MAX = 10_000
MEMORY_BYTES = 256 << 20
MAX_CHAIN = 10_000  # turns walked back from one previous_response_id; a longer chain is refused
RETENTION = 30 * 86_400.0


@dataclass(slots=True)
class Stored:
    id: str
    scope: str
    ts: float
    previous: str | None
    input: list  # this turn's input items, as the client sent them
    response: dict  # the Response object the client was given


class ChainTooLong(ValueError):
    pass


class ResponseStore:
    """``db`` None: memory only. Times come from ``clock`` (tests inject one)."""

    def __init__(self, db: Store | None, retention: float = RETENTION, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.retention = retention
        self.clock = clock
        self._mem: OrderedDict[str, tuple[Stored, int]] = OrderedDict()
        self._bytes = 0
        self._pruned = 0.0

    async def put(self, scope: str, rid: str, previous: str | None, items: list, response: dict) -> None:
        now = self.clock()
        s = Stored(rid, scope, now, previous, items, response)
        if self.db is None:
            self._remember(s)
            return
        stmts = [("INSERT INTO responses (id, ts, scope, previous_id, input, response) VALUES (?, ?, ?, ?, ?, ?)",
                  (rid, now, scope, previous, orjson.dumps(items).decode(), orjson.dumps(response).decode()))]
        if now - self._pruned > 3600:  # expired rows go, at most once an hour per process
            self._pruned = now
            stmts.append(("DELETE FROM responses WHERE ts < ?", (now - self.retention,)))
        await self.db.transact(stmts)

    def _remember(self, s: Stored) -> None:
        size = len(orjson.dumps(s.input)) + len(orjson.dumps(s.response))
        self._mem[s.id] = (s, size)
        self._bytes += size
        while self._mem and (len(self._mem) > MEMORY_MAX or self._bytes > MEMORY_BYTES):
            _, (_, n) = self._mem.popitem(last=False)
            self._bytes -= n

    async def get(self, scope: str, rid: str) -> Stored | None:
        """The response, if it exists, is this scope's and has not expired."""
        if self.db is None:
            got = self._mem.get(rid)
            s = got[0] if got else None
        else:
            rows = await self.db.fetch("SELECT id, scope, ts, previous_id, input, response FROM responses "
                                       "WHERE id = ?", (rid,))
            s = (Stored(rows[0][0], rows[0][1], rows[0][2], rows[0][3], orjson.loads(rows[0][4]),
                        orjson.loads(rows[0][5])) if rows else None)
        if s is None or s.scope != scope or s.ts < self.clock() - self.retention:
            return None
        return s

    async def delete(self, scope: str, rid: str) -> bool:
        if await self.get(scope, rid) is None:
            return False
        if self.db is None:
            _, n = self._mem.pop(rid)
            self._bytes -= n
        else:
            await self.db.transact([("DELETE FROM responses WHERE id = ?", (rid,))])
        return True

    async def history(self, scope: str, rid: str) -> list | None:
        """The items a continuation of ``rid`` starts from, oldest first; None if ``rid`` (or any
        response it continues) is missing, foreign or expired: the history would be incomplete."""
        turns: list[Stored] = []
        nxt: str | None = rid
        while nxt is not None:
            if len(turns) >= MAX_CHAIN:
                raise ChainTooLong(f"the chain of responses behind {rid} is longer than {MAX_CHAIN}")
            s = await self.get(scope, nxt)
            if s is None:
                return None
            turns.append(s)
            nxt = s.previous
        items: list = []
        for s in reversed(turns):
            items.extend(s.input)
            out = s.response.get("output")
            if type(out) is list:
                items.extend(out)
        return items


def input_items(body: dict) -> list:
    """A request's ``input`` as items (a string is one user message)."""
    inp = body.get("input")
    if type(inp) is str:
        return [{"type": "message", "role": "user", "content": inp}]
    return list(inp) if type(inp) is list else []
