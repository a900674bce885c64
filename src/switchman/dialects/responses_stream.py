"""The Responses API's typed stream events, from canonical stream events.

The order follows OpenAI's (``types/responses/response_stream_event.py``): ``response.created``
and ``response.in_progress`` first; per output item ``response.output_item.added``, for a message
``response.content_part.added``, ``response.output_text.delta``\\* , ``response.output_text.done``,
``response.content_part.done``, for a function call ``response.function_call_arguments.delta``\\* and
``.done``, then ``response.output_item.done``; last ``response.completed`` (or ``.incomplete``)
carrying the whole response with usage. Every event has an increasing ``sequence_number``. A
failure after the first byte is an ``error`` event followed by ``response.failed``.

When the upstream speaks the Responses API too, its events (``raw``) are passed through as they
came, so built-in tools' and reasoning items' events reach the client; only the response's id is
the gateway's, so that ``previous_response_id`` and ``GET /v1/responses/{id}`` find it here.
"""

from __future__ import annotations

import orjson

from ..errors import SwitchmanError
from ..types import (ChatRequest, Finish, ResponseBuilder, Start, StreamEvent, TextDelta,
                     ToolCallDelta, ToolCallPart, ToolCallStart)
from .base import StreamEncoder
from .openai import _error_dict
from .responses import call_item, message_item, response_object

_RESPONSE_EVENTS = frozenset({"response.created", "response.in_progress", "response.completed",
                              "response.incomplete", "response.failed", "response.queued"})


class ResponsesStreamEncoder(StreamEncoder):
    def __init__(self, req: ChatRequest, rid: str) -> None:
        self.req = req
        self.rid = rid
        self.seq = 0
        self.model = req.model
        self.created: float | None = None
        self.built = ResponseBuilder()
        self.items: list[dict] = []  # output items, in order, as they will be in the final response
        self.open_msg: dict | None = None
        self.calls: dict[int, tuple[int, dict]] = {}  # canonical call index -> (output index, item)
        self.started = False
        self.final: dict | None = None  # the whole response once the stream ended well (for storage)
        self.last_raw: dict | None = None
        self.passthrough = False

    def _ev(self, type_: str, **fields) -> bytes:
        d = {"type": type_, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: " + type_.encode() + b"\ndata: " + orjson.dumps(d) + b"\n\n"

    def _response(self, status: str | None = None) -> dict:
        b = self.built
        return response_object(self.rid, self.req, b.model or self.model, list(self.items), b.usage, b.finish,
                               self.created, status)

    def _start(self) -> bytes:
        self.started = True
        r = self._response("in_progress")
        r["usage"] = None
        return self._ev("response.created", response=r) + self._ev("response.in_progress", response=r)

    def _raw(self, raw: dict) -> bytes:
        """An upstream Responses event, as it came, under the gateway's response id."""
        if raw is self.last_raw:
            return b""
        self.last_raw = raw
        self.passthrough = True
        t = raw.get("type")
        if t in _RESPONSE_EVENTS and type(raw.get("response")) is dict:
            resp = {**raw["response"], "id": self.rid,
                    "previous_response_id": (self.req.raw or {}).get("previous_response_id"),
                    "store": (self.req.raw or {}).get("store", True)}
            raw = {**raw, "response": resp}
            if t in ("response.completed", "response.incomplete"):
                self.final = resp
        return b"event: " + str(t).encode() + b"\ndata: " + orjson.dumps(raw) + b"\n\n"

    def _close_message(self) -> bytes:
        m = self.open_msg
        if m is None:
            return b""
        self.open_msg = None
        idx = self.items.index(m)
        text = m["content"][0]["text"]
        m["status"] = "completed"
        part = m["content"][0]
        return (self._ev("response.output_text.done", item_id=m["id"], output_index=idx, content_index=0,
                         text=text, logprobs=[])
                + self._ev("response.content_part.done", item_id=m["id"], output_index=idx, content_index=0,
                           part=part)
                + self._ev("response.output_item.done", output_index=idx, item=m))

    def _text(self, text: str) -> bytes:
        out = b""
        if self.open_msg is None:
            m = message_item("", "in_progress")
            self.open_msg = m
            self.items.append(m)
            idx = len(self.items) - 1
            out += self._ev("response.output_item.added", output_index=idx,
                            item={**m, "content": []})
            out += self._ev("response.content_part.added", item_id=m["id"], output_index=idx, content_index=0,
                            part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
        m = self.open_msg
        m["content"][0]["text"] += text
        return out + self._ev("response.output_text.delta", item_id=m["id"], output_index=self.items.index(m),
                              content_index=0, delta=text, logprobs=[])

    def _call_start(self, ev: ToolCallStart) -> bytes:
        out = self._close_message()
        item = call_item(ToolCallPart(ev.id, ev.name, ""), "in_progress")
        self.items.append(item)
        self.calls[ev.index] = (len(self.items) - 1, item)
        return out + self._ev("response.output_item.added", output_index=len(self.items) - 1, item=dict(item))

    def _call_delta(self, ev: ToolCallDelta) -> bytes:
        got = self.calls.get(ev.index)
        if got is None or not ev.arguments:
            return b""
        idx, item = got
        item["arguments"] += ev.arguments
        return self._ev("response.function_call_arguments.delta", item_id=item["id"], output_index=idx,
                        delta=ev.arguments)

    def _close_calls(self) -> bytes:
        out = b""
        for idx, item in self.calls.values():
            if item["status"] == "completed":
                continue
            item["status"] = "completed"
            out += self._ev("response.function_call_arguments.done", item_id=item["id"], output_index=idx,
                            arguments=item["arguments"], name=item["name"])
            out += self._ev("response.output_item.done", output_index=idx, item=item)
        return out

    def encode(self, ev: StreamEvent) -> bytes:
        self.built.add(ev)
        raw = getattr(ev, "raw", None)
        if type(raw) is dict and "type" in raw and self.req.dialect == "responses":
            return self._raw(raw)
        t = type(ev)
        if t is Start:
            if ev.model:
                self.model = ev.model
            self.created = ev.created or None
            return b"" if self.started else self._start()
        out = b"" if self.started else self._start()
        if t is TextDelta:
            return out + (self._text(ev.text) if ev.text else b"")
        if t is ToolCallStart:
            return out + self._call_start(ev)
        if t is ToolCallDelta:
            return out + self._call_delta(ev)
        if t is Finish:
            return out + self._close_message() + self._close_calls()
        return out  # usage: in the final response

    def close(self) -> bytes:
        if self.passthrough:
            return b""
        if self.final is not None:
            return b""
        out = (b"" if self.started else self._start()) + self._close_message() + self._close_calls()
        r = self._response()
        self.final = r
        kind = "response.incomplete" if r["status"] == "incomplete" else "response.completed"
        return out + self._ev(kind, response=r)

    def error(self, err: SwitchmanError) -> bytes:
        e = _error_dict(err)
        r = self._response("failed")
        r["error"] = {"code": err.kind or "server_error", "message": err.message}
        self.final = None
        return (self._ev("error", code=e["code"], message=e["message"], param=e["param"])
                + self._ev("response.failed", response=r))

