"""The OpenAI Responses API adapter: ``POST {base_url}/responses``, for models with ``api: responses``
(and the Responses-only ones the catalog marks, such as ``gpt-5.5-pro``).

Wire shapes follow the installed ``openai`` SDK's ``types/responses/`` (``response_create_params.py``,
``response_input_item_param.py``, ``response.py``, ``response_usage.py``, ``response_stream_event.py``)
and the API reference (platform.openai.com/docs/api-reference/responses). Errors are OpenAI's
``{"error": {message, type, param, code}}``, read as the Chat Completions adapter reads them.

Building the call:

- A client of the Responses API itself is sent its own body (``raw``), model replaced, so what
  only OpenAI runs reaches it untouched: built-in tools (web search, file search, code interpreter,
  MCP, ...), their call items, reasoning items, ``include``. The gateway keeps the conversation
  (``previous_response_id`` was resolved into ``input`` by ``dialects/responses_state.py``), so the
  upstream gets ``store: false`` and no id it could not resolve. With ``store: false`` OpenAI cannot
  look up a reasoning item by id, so reasoning items that carry no ``encrypted_content`` are left
  out, and ``reasoning.encrypted_content`` is asked for whenever the request reasons.
- Any other client's request is encoded from the canonical one: the system prompt as
  ``instructions``; messages as input items (``function_call`` / ``function_call_output`` for tool
  calls and results); function tools flattened; ``response_format`` as ``text.format``;
  ``reasoning_effort`` as ``reasoning.effort``; ``user`` as ``safety_identifier``; logprobs through
  ``include``. The API has no stop sequences: a request with ``stop`` is ``Unsupported`` here
  (another candidate may take it), never sent without them.
- Always an output cap, the one budgets reserved for, as ``max_output_tokens``. The API refuses
  one below 16 (``integer below minimum value``), so a smaller cap is sent as 16: such an answer
  may be up to 15 tokens longer than asked.

Reading the answer: ``message`` items give text (``output_text``, or a ``refusal``),
``function_call`` items give tool calls; every other item (reasoning, built-in tool calls) stays
in ``raw`` for a Responses client. ``status`` gives the finish reason (``incomplete`` with
``max_output_tokens`` is length); a ``failed`` response is an upstream error. The stream's typed
events become canonical ones; a stream ends at ``response.completed`` or ``response.incomplete``,
and ``response.failed`` or ``error`` is a mid-stream failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from ..errors import Unsupported
from ..types import (ChatRequest, ChatResponse, Finish, FinishReason, ImagePart, Role, Start, StreamEvent,
                     TextDelta, TextPart, ToolCallDelta, ToolCallPart, ToolCallStart, ToolResultPart, Usage,
                     UsageEvent)
from .base import StreamDecoder, UpstreamCall, checked_usage
from .openai import OpenAIAdapter, _bad_body, _classify, _headers, json_object

if TYPE_CHECKING:
    from ..config import ModelSpec

__all__ = ["ResponsesAdapter", "ResponsesStreamDecoder"]

MIN_OUTPUT = 16  # the API's least max_output_tokens
_INCOMPLETE = {"max_output_tokens": FinishReason.LENGTH, "content_filter": FinishReason.CONTENT_FILTER}
_ENCRYPTED = "reasoning.encrypted_content"
_LOGPROBS = "message.output_text.logprobs"


def _url(model: ModelSpec) -> str:
    p = model.provider
    base = p.base_url.rstrip("/")
    if p.auth == "api-key" and p.api_version:
        # Azure OpenAI's versioned API: the deployment goes in the body's "model"
        # (learn.microsoft.com/azure/ai-foundry/openai/how-to/responses); its v1 API (base URL
        # ending in /openai/v1) takes the plain path below.
        return f"{base}/openai/responses?api-version={p.api_version}"
    return base + "/responses"


# ---- request ----------------------------------------------------------------------------------


def _image(p: ImagePart) -> dict:
    url = p.url if p.url is not None else f"data:{p.media_type or 'image/png'};base64,{p.data}"
    return {"type": "input_image", "image_url": url, "detail": p.detail or "auto"}


def _input_parts(parts: list) -> list[dict]:
    return [{"type": "input_text", "text": p.text} if type(p) is TextPart else _image(p) for p in parts]


def _result(p: ToolResultPart) -> str | list[dict]:
    if all(type(c) is TextPart for c in p.content):
        return "".join(c.text for c in p.content)
    return _input_parts(p.content)


def _items(req: ChatRequest) -> list[dict]:
    out: list[dict] = []
    for m in req.messages:
        if m.role is Role.ASSISTANT:
            text = "".join(p.text for p in m.parts if type(p) is TextPart)
            if text:
                out.append({"role": "assistant", "content": text})
            out.extend({"type": "function_call", "call_id": p.id, "name": p.name, "arguments": p.arguments or "{}"}
                       for p in m.parts if type(p) is ToolCallPart)
            continue
        rest = []
        for p in m.parts:
            if type(p) is ToolResultPart:
                out.append({"type": "function_call_output", "call_id": p.tool_call_id, "output": _result(p)})
            else:
                rest.append(p)
        if rest:
            only_text = len(rest) == 1 and type(rest[0]) is TextPart
            out.append({"role": "user", "content": rest[0].text if only_text else _input_parts(rest)})
    return out


def _text_format(rf: dict) -> dict | None:
    """Chat's ``response_format`` as the Responses API's ``text.format`` (flattened json_schema)."""
    t = rf.get("type")
    if t == "json_schema" and type(rf.get("json_schema")) is dict:
        js = rf["json_schema"]
        fmt = {"type": "json_schema", "name": js.get("name") or "response", "schema": js.get("schema") or {}}
        for k in ("strict", "description"):
            if js.get(k) is not None:
                fmt[k] = js[k]
        return fmt
    if t == "json_object":
        return {"type": "json_object"}
    return None


def _encode(req: ChatRequest, model: ModelSpec) -> dict:
    if req.stop:
        raise Unsupported(f"'{model.name}' is reached through OpenAI's Responses API, which takes no stop "
                          "sequences", param="stop")
    body: dict = {"model": model.upstream, "input": _items(req), "store": False,
                  "max_output_tokens": max(MIN_OUTPUT, model.output_cap(req.max_tokens))}
    if req.system:
        body["instructions"] = "\n\n".join(p.text for p in req.system)
    if req.tools:
        tools = []
        for t in req.tools:
            tool: dict = {"type": "function", "name": t.name, "parameters": t.parameters,
                          "strict": bool(t.strict)}
            if t.description is not None:
                tool["description"] = t.description
            tools.append(tool)
        body["tools"] = tools
    tc = req.tool_choice
    if tc is not None:
        body["tool_choice"] = {"type": "function", "name": tc.name} if tc.mode == "tool" else tc.mode
        if tc.parallel is not None and req.tools:
            body["parallel_tool_calls"] = tc.parallel
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.response_format is not None:
        fmt = _text_format(req.response_format)
        if fmt is not None:
            body["text"] = {"format": fmt}
    if req.user:
        body["safety_identifier"] = req.user
    include = []
    if req.reasoning_effort:  # "max" is Anthropic's word for the top effort
        body["reasoning"] = {"effort": "xhigh" if req.reasoning_effort == "max" else req.reasoning_effort}
        include.append(_ENCRYPTED)
    if req.logprobs:
        include.append(_LOGPROBS)
    if include:
        body["include"] = include
    if req.stream:
        body["stream"] = True
    return body


def _kept(item: object) -> bool:
    """Whether an input item can go to a ``store: false`` upstream: a reasoning item only with its
    encrypted content (by id alone OpenAI would look it up, and find nothing)."""
    return not (type(item) is dict and item.get("type") == "reasoning" and not item.get("encrypted_content"))


def _passthrough(req: ChatRequest, model: ModelSpec) -> dict:
    """A Responses client's own body, model replaced, the conversation the gateway's."""
    body = dict(req.raw)  # type: ignore[arg-type]
    body["model"] = model.upstream
    body.pop("previous_response_id", None)  # resolved into input already (responses_state.py)
    body["store"] = False
    if type(body.get("input")) is list:
        body["input"] = [i for i in body["input"] if _kept(i)]
    body["max_output_tokens"] = max(MIN_OUTPUT, model.output_cap(req.max_tokens))
    if type(body.get("reasoning")) is dict and body["reasoning"].get("effort") not in (None, "none"):
        include = body.get("include") if type(body.get("include")) is list else []
        if _ENCRYPTED not in include:
            body["include"] = [*include, _ENCRYPTED]
    if req.logprobs:
        include = body.get("include") if type(body.get("include")) is list else []
        if _LOGPROBS not in include:
            body["include"] = [*include, _LOGPROBS]
    if req.stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


# ---- response ---------------------------------------------------------------------------------


@checked_usage
def _usage(u: dict) -> Usage:
    itd = u.get("input_tokens_details")
    otd = u.get("output_tokens_details")
    itd = itd if type(itd) is dict else {}
    otd = otd if type(otd) is dict else {}
    return Usage(input_tokens=u.get("input_tokens") or 0, output_tokens=u.get("output_tokens") or 0,
                 cache_read_tokens=itd.get("cached_tokens") or 0, cache_write_tokens=itd.get("cache_write_tokens") or 0,
                 reasoning_tokens=otd.get("reasoning_tokens") or 0)


def _finish(d: dict, calls: bool) -> FinishReason | None:
    status = d.get("status")
    if status == "incomplete":
        why = d.get("incomplete_details")
        return _INCOMPLETE.get(why.get("reason") if type(why) is dict else None, FinishReason.OTHER)
    if status == "completed":
        return FinishReason.TOOL_CALLS if calls else FinishReason.STOP
    return None


def _message_text(item: dict) -> tuple[str, list[float]]:
    text, logprobs = [], []
    for c in item.get("content") or ():
        if type(c) is not dict:
            continue
        if c.get("type") == "output_text" and type(c.get("text")) is str:
            text.append(c["text"])
            for t in c.get("logprobs") or ():
                if type(t) is dict and type(t.get("logprob")) in (int, float):
                    logprobs.append(float(t["logprob"]))
        elif c.get("type") == "refusal" and type(c.get("refusal")) is str:
            text.append(c["refusal"])  # the model's answer: a client of another dialect reads it as text
    return "".join(text), logprobs


def _error_of(e: object) -> dict:
    """A failed response's or an ``error`` event's error as an OpenAI error object."""
    if type(e) is not dict:
        return {"message": "", "type": "server_error"}
    code = e.get("code") if type(e.get("code")) is str else None
    etype = "requests" if code in ("rate_limit_exceeded", "rate_limit_error") else "server_error"
    if code in ("invalid_prompt", "invalid_request_error", "context_length_exceeded"):
        etype = "invalid_request_error"
    return {"message": e.get("message") if type(e.get("message")) is str else "", "code": code, "type": etype,
            "param": e.get("param")}


class ResponsesAdapter(OpenAIAdapter):
    """The codec for OpenAI's Responses API (errors as the Chat Completions adapter reads them)."""

    kind = "responses"

    def body(self, req: ChatRequest, model: ModelSpec) -> dict:
        return _passthrough(req, model) if req.dialect == "responses" and req.raw is not None else _encode(req, model)

    def url(self, model: ModelSpec) -> str:
        return _url(model)

    def parse(self, body: bytes, model: ModelSpec) -> ChatResponse:
        d = json_object(body, model)
        if d.get("status") == "failed" or (d.get("error") and d.get("object") != "response"):
            raise _classify(_error_of(d.get("error")), None, model, None)
        output = d.get("output")
        if type(output) is not list:
            raise _bad_body(model, "no output")
        parts: list[TextPart | ToolCallPart] = []
        logprobs: list[float] = []
        for i, item in enumerate(output):
            if type(item) is not dict:
                continue
            if item.get("type") == "message":
                text, lps = _message_text(item)
                logprobs += lps
                if text:
                    parts.append(TextPart(text))
            elif item.get("type") == "function_call":
                args = item.get("arguments")
                parts.append(ToolCallPart(item.get("call_id") or item.get("id") or f"call_{i}", item.get("name") or "",
                                          args if type(args) is str else orjson.dumps(args or {}).decode()))
        reason = _finish(d, any(type(p) is ToolCallPart for p in parts))
        if reason is None:
            raise _bad_body(model, f"a response with status {str(d.get('status'))[:30]!r}")
        u = d.get("usage")
        created = d.get("created_at")
        return ChatResponse(id=d.get("id") or "", model=d.get("model") or model.upstream, parts=parts,
                            finish_reason=reason, usage=_usage(u) if type(u) is dict else None,
                            created=int(created) if type(created) in (int, float) else 0, dialect="responses",
                            raw=d, logprob=sum(logprobs) / len(logprobs) if logprobs else None)

    def stream_decoder(self, model: ModelSpec, keep_raw: bool = False) -> ResponsesStreamDecoder:
        return ResponsesStreamDecoder(model, keep_raw)

    def count_call(self, req: ChatRequest, model: ModelSpec) -> UpstreamCall | None:
        """OpenAI's ``POST /responses/input_tokens``: the same input, counted and not answered."""
        keep = ("model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text",
                "reasoning", "truncation")
        body = {k: v for k, v in self.body(req, model).items() if k in keep}
        url = _url(model).replace("/responses", "/responses/input_tokens", 1)
        return UpstreamCall("POST", url, _headers(req, model), orjson.dumps(body))

    def parse_count(self, body: bytes) -> int | None:
        try:
            d = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        n = d.get("input_tokens") if type(d) is dict else None
        return n if type(n) is int and n >= 0 else None


# ---- stream -----------------------------------------------------------------------------------


class ResponsesStreamDecoder(StreamDecoder):
    """The Responses API's typed events as canonical events.

    Function calls are numbered from 0 in the order their items are added; their argument deltas
    are found by item id (or output index). With ``keep_raw`` every event reaches a Responses
    client: one with no canonical meaning (reasoning, built-in tools' progress, annotations) rides
    on an empty ``TextDelta``, which changes nothing for any consumer."""

    __slots__ = ("_model", "_keep_raw", "_done", "_started", "_calls", "_args_seen", "_text_seen")

    def __init__(self, model: ModelSpec, keep_raw: bool = False) -> None:
        self._model = model
        self._keep_raw = keep_raw
        self._done = False
        self._started = False
        self._calls: dict[object, int] = {}  # item id and output index -> our call index
        self._args_seen: set[int] = set()
        self._text_seen: set[object] = set()  # message items whose text came in deltas

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str | None, data: bytes) -> list[StreamEvent]:
        if data[:6] == b"[DONE]":
            return []
        try:
            ev = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _bad_body(self._model, "a stream event is not JSON") from None
        if type(ev) is not dict:
            raise _bad_body(self._model, "a stream event is not an object")
        t = ev.get("type") or event
        if t == "error":
            raise _classify(_error_of(ev), None, self._model, None)
        raw = ev if self._keep_raw else None
        resp = ev.get("response") if type(ev.get("response")) is dict else None
        if t == "response.failed":
            raise _classify(_error_of((resp or {}).get("error")), None, self._model, None)
        evs: list[StreamEvent] = []
        if not self._started:
            self._started = True
            r = resp or {}
            created = r.get("created_at")
            evs.append(Start(r.get("id") or "", r.get("model") or self._model.upstream,
                             int(created) if type(created) in (int, float) else 0, raw))
        if t in ("response.completed", "response.incomplete"):
            self._end(resp or {}, raw, evs)
        elif t == "response.output_text.delta" or t == "response.refusal.delta":
            delta = ev.get("delta")
            if type(delta) is str and delta:
                self._text_seen.add(ev.get("item_id"))
                evs.append(TextDelta(delta, raw))
        elif t in ("response.output_item.added", "response.output_item.done"):
            self._item(ev, t.endswith("done"), raw, evs)
        elif t == "response.function_call_arguments.delta":
            slot = self._slot(ev)
            delta = ev.get("delta")
            if slot is not None and type(delta) is str and delta:
                self._args_seen.add(slot)
                evs.append(ToolCallDelta(slot, delta, raw))
        if not evs and raw is not None:
            evs.append(TextDelta("", raw))
        return evs

    def _slot(self, ev: dict) -> int | None:
        got = self._calls.get(ev.get("item_id"))
        return got if got is not None else self._calls.get(("at", ev.get("output_index")))

    def _item(self, ev: dict, done: bool, raw: dict | None, evs: list[StreamEvent]) -> None:
        item = ev.get("item")
        if type(item) is not dict:
            return
        if item.get("type") == "message" and done and item.get("id") not in self._text_seen:
            text, _ = _message_text(item)  # a server that sends the text only with the item
            if text:
                evs.append(TextDelta(text, raw))
            return
        if item.get("type") != "function_call":
            return
        slot = self._calls.get(item.get("id"))
        if slot is None:
            slot = len(set(self._calls.values()))
            self._calls[item.get("id")] = self._calls[("at", ev.get("output_index"))] = slot
            evs.append(ToolCallStart(slot, item.get("call_id") or item.get("id") or f"call_{slot}",
                                     item.get("name") or "", raw))
        args = item.get("arguments")
        if done and slot not in self._args_seen and type(args) is str and args:
            self._args_seen.add(slot)  # arguments sent whole with the item, not in deltas
            evs.append(ToolCallDelta(slot, args, raw))

    def _end(self, resp: dict, raw: dict | None, evs: list[StreamEvent]) -> None:
        self._done = True
        evs.append(Finish(_finish(resp, bool(self._calls)) or FinishReason.OTHER, None, raw))
        u = resp.get("usage")
        if type(u) is dict:
            evs.append(UsageEvent(_usage(u), raw))
