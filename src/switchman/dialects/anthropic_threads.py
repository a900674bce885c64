"""Anthropic threads, kept by the gateway so that a thread reaches any upstream.

anthropic 2.16's tool runner keeps the conversation on the server by default: the first turn sends
``thread: {"type": "create"}`` with the whole history, each later one ``{"type": "continue",
"previous_message_id": ID}`` with only the new messages and without ``system`` and ``tools``,
which the server keeps from the create (``anthropic/lib/threads/_thread_state.py``).

The gateway keeps every turn of every thread itself, in the store of Responses API responses
(``accounting/responses.py``: the ledger database, per key, with its retention), under a scope of
its own so that neither API sees the other's: the messages the turn sent, the reply, and the
thread's ``system`` and ``tools``. Then:

* a ``create`` goes as it is: an Anthropic upstream creates its own thread from it; any other is
  sent the same messages without the field, which loses nothing;
* a ``continue`` of a reply an Anthropic model gave natively, in this process, goes to that model
  alone, natively (``routing/threads.py``);
* any other ``continue`` is rebuilt into the whole conversation (the stored turns, oldest first,
  then the new messages, with the thread's ``system`` and ``tools``) and routed like any request,
  to any upstream, fallbacks included;
* a ``continue`` of a reply the gateway does not hold (expired, another key's, never seen) is a
  404 with ``error_code: thread_not_found``, on which the SDK replays the whole history under a
  new thread, as it does when Anthropic itself has lost one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from ..accounting.responses import ChainTooLong, ResponseStore
from ..errors import InvalidRequest, SwitchmanError, UnknownResource
from ..types import ChatRequest, Start, StreamEvent, TextDelta, ToolCallDelta, ToolCallStart
from .anthropic import AnthropicStreamEncoder, _decode, _message_id
from .base import StreamEncoder

SCOPE = "thread:"  # stored turns live apart from the Responses API's
FIELDS = ("system", "tools")  # what a continue leaves out: the server keeps them from the create


@dataclass(slots=True)
class ThreadTurn:
    scope: str
    previous: str | None
    items: list  # the messages this turn sent
    fields: dict  # the thread's system and tools
    saved: bool = False
    rid: str = field(default="")  # the reply's id, once answered

    async def save(self, store: ResponseStore, message: dict) -> None:
        mid = message.get("id")
        if self.saved or type(mid) is not str or message.get("stop_reason") == "refusal":
            return  # the SDK does not continue from a refused turn
        self.saved, self.rid = True, mid
        reply = {"role": "assistant", "content": message.get("content") or []}
        await store.put(self.scope, mid, self.previous, self.items,
                        {"status": "completed", "output": [reply], "fields": self.fields})


def not_found(mid: str) -> UnknownResource:
    return UnknownResource(f"thread.previous_message_id: no thread message '{mid[:100]}' (expired, another "
                           f"key's, or never answered here); send the whole history with a new thread",
                           param="thread.previous_message_id", details={"error_code": "thread_not_found"})


async def open_thread(store: ResponseStore, body: dict, scope: str,
                      native: Callable[[str], bool]) -> tuple[ChatRequest, ThreadTurn]:
    """The canonical request for a body carrying ``thread``, and the turn to keep once answered.
    ``native(id)``: whether an Anthropic model in this process holds the thread of reply ``id``."""
    t = body["thread"]
    kind = t.get("type") if type(t) is dict else None
    if kind not in ("create", "continue"):
        raise InvalidRequest("thread: must be {\"type\": \"create\"} or {\"type\": \"continue\", "
                             "\"previous_message_id\": ID}", param="thread")
    msgs = body.get("messages")
    items = msgs if type(msgs) is list else []
    scope = SCOPE + scope
    if kind == "create":
        creq = _decode({k: v for k, v in body.items() if k != "thread"})  # portable as it stands
        creq.raw = body  # an Anthropic upstream creates its own thread from it
        return creq, ThreadTurn(scope, None, items, {f: body[f] for f in FIELDS if f in body})
    prev = t.get("previous_message_id")
    if type(prev) is not str or not prev:
        raise InvalidRequest("thread.previous_message_id: must be a non-empty string",
                             param="thread.previous_message_id")
    got = await store.get(scope, prev)
    fields = (got.response.get("fields") if got is not None else None) or {}
    if native(prev):
        return _decode(body), ThreadTurn(scope, prev, items, fields)  # to the holder alone
    try:
        history = await store.history(scope, prev)
    except ChainTooLong as e:
        raise InvalidRequest(f"thread.previous_message_id: {e}", param="thread.previous_message_id") from None
    if history is None:
        raise not_found(prev)
    whole = {k: v for k, v in body.items() if k != "thread"}
    for f, v in fields.items():
        whole.setdefault(f, v)
    whole["messages"] = history + items
    return _decode(whole), ThreadTurn(scope, prev, items, fields)


class ThreadStream(StreamEncoder):
    """The Anthropic stream encoder, noting the reply as it goes: ``final`` is the whole message
    once the stream has ended well, for the turn to be kept before the client reads the end."""

    def __init__(self, inner: AnthropicStreamEncoder) -> None:
        self.inner = inner
        self.final: dict | None = None
        self.native = False  # an Anthropic upstream's own events: it holds the thread itself
        self._id = ""
        self._blocks: list[dict] = []
        self._args: dict[int, tuple[dict, list[str]]] = {}

    def encode(self, ev: StreamEvent) -> bytes:
        t = type(ev)
        self.native = self.native or ev.raw is not None
        if t is Start:
            self._id = _message_id(ev.id)
        elif t is TextDelta:
            if ev.text:
                if not self._blocks or self._blocks[-1]["type"] != "text":
                    self._blocks.append({"type": "text", "text": ""})
                self._blocks[-1]["text"] += ev.text
        elif t is ToolCallStart:
            b = {"type": "tool_use", "id": ev.id, "name": ev.name, "input": {}}
            self._blocks.append(b)
            self._args[ev.index] = (b, [])
        elif t is ToolCallDelta and ev.index in self._args:
            self._args[ev.index][1].append(ev.arguments)
        out = self.inner.encode(ev)
        if ev.raw is not None and ev.raw.get("type") == "message_stop":
            self._end()  # an Anthropic upstream's own end: kept before the client reads it
        return out

    def close(self) -> bytes:
        out = self.inner.close()
        self._end()
        return out

    def error(self, err: SwitchmanError) -> bytes:
        return self.inner.error(err)

    def _end(self) -> None:
        if self.final is not None or not self._id:
            return
        for b, parts in self._args.values():
            try:
                v = orjson.loads("".join(parts)) if parts else {}
            except orjson.JSONDecodeError:
                v = {}
            b["input"] = v if type(v) is dict else {}
        self.final = {"id": self._id, "role": "assistant", "content": self._blocks}
