"""The OpenAI Responses API dialect: ``POST /v1/responses`` as the ``openai`` SDK, the OpenAI Agents
SDK, pydantic-ai's ``OpenAIResponsesModel`` and langchain-openai speak it.

Shapes follow the installed ``openai`` SDK's ``types/responses/`` (``response_create_params.py``,
``response_input_item_param.py``, ``response.py``, ``response_usage.py``, ``response_stream_event.py``)
and the API reference (platform.openai.com/docs/api-reference/responses).

Decoding, into the canonical request (so any upstream serves it):

- ``instructions`` and ``system``/``developer`` input messages become the system prompt (hoisted,
  as the chat dialect does); ``input`` is a string (one user turn) or items: messages (content a
  string or ``input_text`` / ``input_image`` / ``output_text`` / ``refusal`` parts), ``function_call``
  and ``function_call_output`` items, which become tool calls and results.
- ``tools`` of ``type: function``, ``tool_choice``, ``parallel_tool_calls``, ``text.format``
  (``json_schema`` / ``json_object``, as the chat shape's ``response_format``), ``reasoning.effort``
  (``ChatRequest.reasoning_effort``: each adapter maps it where its API has an equivalent),
  ``max_output_tokens``, ``temperature``, ``top_p``, ``user`` / ``safety_identifier``.
- What only OpenAI's own Responses API can do is marked ``native_only`` and reaches an upstream of
  that API untouched through ``raw``; toward any other upstream it is a 400 naming it, never a
  silent drop: built-in tools (``web_search``, ``file_search``, ``code_interpreter``, ``mcp``,
  ``image_generation``, computer and shell tools, custom tools), their call items, ``input_file``
  parts, stored ``prompt`` templates, and any top-level field this module does not know.
- ``reasoning`` items (a reasoning model's own earlier thinking, often encrypted for OpenAI alone)
  are kept for an OpenAI Responses upstream and left out toward any other: no other model can read
  them, and every vendor drops a previous turn's thinking from the context anyway.
- Refused outright (400 naming the field): ``background`` mode, ``conversation`` objects (use
  ``previous_response_id``), ``item_reference`` items, ``file_id`` images, ``n``-like fields.

``previous_response_id`` and ``store`` are the gateway's own (``accounting/responses.py``): the
app resolves the earlier responses into ``history`` items before decoding, so the upstream, of any
kind, is sent the whole conversation and never a reference it cannot resolve.

Encoding builds a ``Response`` object (``object: "response"``) with ``message`` and
``function_call`` output items and usage with cached and reasoning token details; the stream's
typed events are in ``responses_stream.py``.
"""

from __future__ import annotations

import secrets
import time

import orjson

from ..errors import InvalidRequest, SwitchmanError, Unsupported
from ..types import (ChatRequest, ChatResponse, FinishReason, ImagePart, Message, Part, Role, TextPart, Tool,
                     ToolCallPart, ToolChoice, ToolResultPart, Usage)
from .base import Dialect, StreamEncoder, check_depth
from .openai import _error_dict, _number

__all__ = ["ResponsesDialect", "response_object", "new_response_id"]

# Top-level fields decoded here or harmless to leave out toward another upstream (hints that
# change no answer: metadata, include, prompt cache key, service tier, truncation, stream options).
_KNOWN = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls", "text", "reasoning",
    "max_output_tokens", "temperature", "top_p", "stream", "store", "previous_response_id", "user",
    "safety_identifier", "metadata", "include", "prompt_cache_key", "prompt_cache_retention", "service_tier",
    "truncation", "stream_options", "max_tool_calls", "top_logprobs", "prompt_cache_options",
})
_REFUSED = {
    "background": "background mode is not supported by this gateway; make the request in the foreground",
    "conversation": "conversation objects are not supported by this gateway; chain turns with "
                    "'previous_response_id' or send the whole conversation",
}
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_BUILT_IN_CALLS = frozenset({
    "file_search_call", "computer_call", "computer_call_output", "web_search_call", "tool_search_call",
    "tool_search_output", "image_generation_call", "code_interpreter_call", "local_shell_call",
    "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call", "apply_patch_call_output",
    "mcp_list_tools", "mcp_approval_request", "mcp_approval_response", "mcp_call", "custom_tool_call",
    "custom_tool_call_output", "additional_tools", "compaction", "compaction_trigger", "program",
    "program_output", "configuration_update",
})

_STATUS = {FinishReason.LENGTH: ("incomplete", "max_output_tokens"),
           FinishReason.CONTEXT_WINDOW: ("incomplete", "max_output_tokens"),
           FinishReason.CONTENT_FILTER: ("incomplete", "content_filter")}


def _fail(param: str | None, msg: str) -> InvalidRequest:
    return InvalidRequest(msg, param=param)


def new_response_id() -> str:
    return "resp_" + secrets.token_hex(24)


class _Decoder:
    """One request's decoding state: the system prompt, the messages, the first native-only field."""

    def __init__(self) -> None:
        self.system: list[TextPart] = []
        self.messages: list[Message] = []
        self.native: str | None = None

    def mark(self, what: str) -> None:
        if self.native is None:
            self.native = what

    def _append(self, role: Role, parts: list[Part]) -> None:
        """Consecutive items of one role make one message (a call's items, a run of results)."""
        last = self.messages[-1] if self.messages else None
        if last is not None and last.role is role:
            last.parts.extend(parts)
        else:
            self.messages.append(Message(role, parts))

    def items(self, items: list, base: str) -> None:
        for i, it in enumerate(items):
            path = f"{base}[{i}]"
            if type(it) is not dict:
                raise _fail(path, "an input item must be an object")
            t = it.get("type", "message")
            if t == "message":
                self._message(it, path)
            elif t == "function_call":
                self._call(it, path)
            elif t == "function_call_output":
                self._output(it, path)
            elif t == "reasoning":
                self.mark_reasoning()
            elif t == "item_reference":
                raise Unsupported("'item_reference' items are not supported by this gateway; send the item itself "
                                  "or chain with 'previous_response_id'", param=f"{path}.type")
            elif t in _BUILT_IN_CALLS:
                self.mark(f"{path} ({t})")
            else:
                raise _fail(f"{path}.type", f"unknown input item type {str(t)[:60]!r}")

    def mark_reasoning(self) -> None:
        pass  # kept in ``raw`` for an OpenAI Responses upstream; no other model can read it

    def _message(self, it: dict, path: str) -> None:
        role = it.get("role")
        c = it.get("content")
        if role in ("system", "developer"):
            self.system.extend(self._texts(c, f"{path}.content", ("input_text", "output_text")))
        elif role == "user":
            self._append(Role.USER, self._user(c, f"{path}.content"))
        elif role == "assistant":
            parts = self._texts(c, f"{path}.content", ("output_text", "refusal", "input_text"))
            if parts:
                self._append(Role.ASSISTANT, list(parts))
        else:
            raise _fail(f"{path}.role", "'role' must be one of: user, assistant, system, developer")

    def _texts(self, c: object, path: str, kinds: tuple[str, ...]) -> list[TextPart]:
        if type(c) is str:
            return [TextPart(c)]
        if type(c) is not list:
            raise _fail(path, "'content' must be a string or an array of content parts")
        out = []
        for j, p in enumerate(c):
            pp = f"{path}[{j}]"
            t = p.get("type") if type(p) is dict else None
            if t not in kinds:
                raise _fail(f"{pp}.type", f"expected one of: {', '.join(kinds)}")
            key = "refusal" if t == "refusal" else "text"
            if type(p.get(key)) is not str:
                raise _fail(f"{pp}.{key}", f"'{key}' must be a string")
            out.append(TextPart(p[key], _breakpoint(p)))
        return out

    def _user(self, c: object, path: str) -> list[Part]:
        if type(c) is str:
            return [TextPart(c)]
        if type(c) is not list or not c:
            raise _fail(path, "'content' must be a string or a non-empty array of content parts")
        out: list[Part] = []
        for j, p in enumerate(c):
            pp = f"{path}[{j}]"
            if type(p) is not dict:
                raise _fail(pp, "a content part must be an object")
            t = p.get("type")
            if t == "input_text":
                if type(p.get("text")) is not str:
                    raise _fail(f"{pp}.text", "'text' must be a string")
                out.append(TextPart(p["text"], _breakpoint(p)))
            elif t == "input_image":
                out.append(_image(p, pp))
            elif t == "input_file":
                self.mark(f"{pp} (input_file)")
            elif t == "input_audio":
                raise Unsupported("'input_audio' content parts are not supported by this gateway", param=f"{pp}.type")
            else:
                raise _fail(f"{pp}.type", "'type' must be one of: input_text, input_image, input_file")
        return out

    def _call(self, it: dict, path: str) -> None:
        for k in ("call_id", "name", "arguments"):
            if type(it.get(k)) is not str:
                raise _fail(f"{path}.{k}", f"'{k}' must be a string")
        self._append(Role.ASSISTANT, [ToolCallPart(it["call_id"], it["name"], it["arguments"])])

    def _output(self, it: dict, path: str) -> None:
        cid = it.get("call_id")
        if type(cid) is not str or not cid:
            raise _fail(f"{path}.call_id", "'call_id' must be a non-empty string")
        out = it.get("output")
        if type(out) is str:
            content: list = [TextPart(out)]
        elif type(out) is list:
            content = [p for p in self._user(out, f"{path}.output") if type(p) in (TextPart, ImagePart)]
        else:
            raise _fail(f"{path}.output", "'output' must be a string or an array of content parts")
        self._append(Role.USER, [ToolResultPart(cid, content, name=it.get("name") if type(it.get("name")) is str
                                                else None)])


def _breakpoint(p: dict) -> dict | None:
    """OpenAI's explicit ``prompt_cache_breakpoint`` as the canonical (Anthropic) cache marker, so
    a prefix the client marked is cached at whichever vendor answers: 12h asks the longest
    lifetime Anthropic sells (1h), 30m its default (5m, refreshed on every read)."""
    bp = p.get("prompt_cache_breakpoint")
    if type(bp) is not dict:
        return None
    return {"type": "ephemeral", "ttl": "1h"} if bp.get("ttl") == "12h" else {"type": "ephemeral"}


def _image(p: dict, path: str) -> ImagePart:
    if p.get("file_id") is not None:
        raise Unsupported("images by 'file_id' are not supported by this gateway; send 'image_url'",
                          param=f"{path}.file_id")
    url = p.get("image_url")
    if type(url) is not str or not url:
        raise _fail(f"{path}.image_url", "'image_url' must be a URL or a base64 data URL")
    detail = p.get("detail")
    if detail is not None and type(detail) is not str:
        raise _fail(f"{path}.detail", "'detail' must be a string")
    if url.startswith("data:"):
        head, sep, data = url.partition(",")
        if not sep or not head.endswith(";base64"):
            raise _fail(f"{path}.image_url", "a data URL image must be base64 ('data:image/png;base64,...')")
        return ImagePart(data=data, media_type=head[5:-7] or None, detail=detail)
    return ImagePart(url=url, detail=detail)


def _tools(ts: object, d: _Decoder) -> list[Tool] | None:
    if ts is None:
        return None
    if type(ts) is not list:
        raise _fail("tools", "'tools' must be an array")
    out = []
    for i, t in enumerate(ts):
        path = f"tools[{i}]"
        if type(t) is not dict or type(t.get("type")) is not str:
            raise _fail(path, "a tool must be an object with a 'type'")
        if t["type"] != "function":
            d.mark(f"{path} ({t['type'][:40]})")  # a built-in tool: OpenAI runs it, no other upstream can
            continue
        name = t.get("name")
        if type(name) is not str or not name:
            raise _fail(f"{path}.name", "'name' must be a non-empty string")
        desc = t.get("description")
        if desc is not None and type(desc) is not str:
            raise _fail(f"{path}.description", "'description' must be a string")
        params = t.get("parameters")
        if params is None:
            params = {"type": "object", "properties": {}}
        elif type(params) is not dict:
            raise _fail(f"{path}.parameters", "'parameters' must be a JSON schema object")
        check_depth(params, f"{path}.parameters")
        strict = t.get("strict")
        if strict is not None and type(strict) is not bool:
            raise _fail(f"{path}.strict", "'strict' must be a boolean")
        out.append(Tool(name, desc, params, strict))
    return out or None


def _tool_choice(body: dict, tools: list[Tool] | None, d: _Decoder) -> ToolChoice | None:
    tc = body.get("tool_choice")
    par = body.get("parallel_tool_calls")
    if par is not None and type(par) is not bool:
        raise _fail("parallel_tool_calls", "'parallel_tool_calls' must be a boolean")
    if tc is None:
        return ToolChoice("auto", parallel=par) if par is not None and tools else None
    if type(tc) is str:
        if tc not in ("auto", "none", "required"):
            raise _fail("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or an object")
        if tc == "required" and not tools and d.native is None:
            raise _fail("tool_choice", "'tool_choice' 'required' needs 'tools'")
        return ToolChoice(tc, parallel=par)
    if type(tc) is not dict or type(tc.get("type")) is not str:
        raise _fail("tool_choice", "'tool_choice' must be a string or an object with a 'type'")
    if tc["type"] != "function":
        d.mark(f"tool_choice ({tc['type'][:40]})")
        return None
    name = tc.get("name")
    if type(name) is not str:
        raise _fail("tool_choice.name", "'name' must be a string")
    if not tools or all(t.name != name for t in tools):
        raise _fail("tool_choice.name", f"tool_choice names '{name[:80]}', which is not in 'tools'")
    return ToolChoice("tool", name, par)


def _text_format(body: dict) -> dict | None:
    text = body.get("text")
    if text is None:
        return None
    if type(text) is not dict:
        raise _fail("text", "'text' must be an object")
    f = text.get("format")
    if f is None:
        return None
    if type(f) is not dict or f.get("type") not in ("text", "json_object", "json_schema"):
        raise _fail("text.format.type", "'text.format.type' must be text, json_object or json_schema")
    if f["type"] == "text":
        return None
    if f["type"] == "json_object":
        return {"type": "json_object"}
    if type(f.get("name")) is not str or type(f.get("schema")) is not dict:
        raise _fail("text.format", "a json_schema format needs a 'name' string and a 'schema' object")
    check_depth(f["schema"], "text.format.schema")
    js = {"name": f["name"], "schema": f["schema"]}
    for k in ("strict", "description"):
        if f.get(k) is not None:
            js[k] = f[k]
    return {"type": "json_schema", "json_schema": js}


def _effort(body: dict) -> str | None:
    r = body.get("reasoning")
    if r is None:
        return None
    if type(r) is not dict:
        raise _fail("reasoning", "'reasoning' must be an object")
    e = r.get("effort")
    if e is not None and e not in _EFFORTS:
        raise _fail("reasoning.effort", f"'reasoning.effort' must be one of: {', '.join(_EFFORTS)}")
    return e


def decode(body: object, history: list | None = None) -> ChatRequest:
    """``history``: the input and output items of the responses ``previous_response_id`` chains to,
    oldest first (already resolved by the app); they come before this request's ``input``."""
    if type(body) is not dict:
        raise _fail(None, "the request body must be a JSON object")
    model = body.get("model")
    if type(model) is not str or not model:
        raise _fail("model", "'model' must be a non-empty string")
    for k, why in _REFUSED.items():
        if body.get(k) not in (None, False):
            raise Unsupported(why, param=k)
    d = _Decoder()
    ins = body.get("instructions")
    if ins is not None:
        if type(ins) is not str:
            raise _fail("instructions", "'instructions' must be a string")
        d.system.append(TextPart(ins))
    if history:
        d.items(history, "previous_response_id")
    inp = body.get("input")
    if type(inp) is str:
        d.messages.append(Message(Role.USER, [TextPart(inp)]))
    elif type(inp) is list:
        d.items(inp, "input")
    elif inp is not None:
        raise _fail("input", "'input' must be a string or an array of input items")
    if not d.messages and d.native is None:
        raise _fail("input", "'input' is required: a string or a non-empty array of input items")
    for k in body:
        if k not in _KNOWN:
            d.mark(str(k)[:60])
    if body.get("prompt") is not None:
        d.mark("prompt")
    tools = _tools(body.get("tools"), d)
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    elif type(stream) is not bool:
        raise _fail("stream", "'stream' must be a boolean")
    for k in ("store",):
        if body.get(k) is not None and type(body[k]) is not bool:
            raise _fail(k, f"'{k}' must be a boolean")
    mt = body.get("max_output_tokens")
    if mt is not None and (type(mt) is not int or mt < 1):
        raise _fail("max_output_tokens", "'max_output_tokens' must be a positive integer")
    user = body.get("user", body.get("safety_identifier"))
    if user is not None and type(user) is not str:
        raise _fail("user", "'user' must be a string")
    return ChatRequest(
        model=model, messages=d.messages, system=d.system, tools=tools,
        tool_choice=_tool_choice(body, tools, d), max_tokens=mt,
        temperature=_number(body, "temperature", 0, 2), top_p=_number(body, "top_p", 0, 1),
        response_format=_text_format(body), reasoning_effort=_effort(body), stream=stream, include_usage=True,
        user=user, dialect="responses", raw=body, native_only=d.native,
    )


# ---- responses ------------------------------------------------------------------------------


def usage_dict(u: Usage) -> dict:
    """``ResponseUsage``: input counts cached tokens too, as the canonical usage does."""
    return {"input_tokens": u.input_tokens, "input_tokens_details": {"cached_tokens": u.cache_read_tokens},
            "output_tokens": u.output_tokens, "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
            "total_tokens": u.input_tokens + u.output_tokens}


def message_item(text: str, status: str = "completed", item_id: str | None = None) -> dict:
    return {"id": item_id or "msg_" + secrets.token_hex(24), "type": "message", "role": "assistant",
            "status": status, "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def call_item(p: ToolCallPart, status: str = "completed", item_id: str | None = None) -> dict:
    return {"id": item_id or "fc_" + secrets.token_hex(24), "type": "function_call", "status": status,
            "call_id": p.id, "name": p.name, "arguments": p.arguments}


def output_items(resp: ChatResponse) -> list[dict]:
    out = []
    text = resp.text()
    if text:
        out.append(message_item(text))
    out.extend(call_item(p) for p in resp.parts if type(p) is ToolCallPart)
    return out


def response_object(rid: str, req: ChatRequest, model: str, output: list, usage: Usage | None,
                    finish: FinishReason | None, created: float | None = None, status: str | None = None) -> dict:
    """A ``Response``, echoing the request's settings as OpenAI does."""
    body = req.raw or {}
    st, why = _STATUS.get(finish, ("completed", None))  # type: ignore[arg-type]
    text = body.get("text") if type(body.get("text")) is dict else {"format": {"type": "text"}}
    return {
        "id": rid, "object": "response", "created_at": int(created or time.time()), "status": status or st,
        "background": False, "error": None,
        "incomplete_details": {"reason": why} if why and not status else None,
        "instructions": body.get("instructions"), "max_output_tokens": body.get("max_output_tokens"),
        "model": model or req.model, "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning") or {"effort": None, "summary": None},
        "store": body.get("store", True), "temperature": body.get("temperature", 1.0), "text": text,
        "tool_choice": body.get("tool_choice", "auto"), "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0), "truncation": body.get("truncation", "disabled"),
        "usage": usage_dict(usage) if usage is not None else None,
        "user": body.get("user"), "metadata": body.get("metadata") or {},
    }


class ResponsesDialect(Dialect):
    kind = "responses"

    def decode(self, body: object) -> ChatRequest:
        return decode(body)

    def encode_object(self, resp: ChatResponse, req: ChatRequest, rid: str) -> dict:
        if resp.dialect == "responses" and type(resp.raw) is dict and type(resp.raw.get("output")) is list:
            # Same wire: every item (built-in tool calls, reasoning) as the upstream sent it, under our id.
            return {**resp.raw, "id": rid, "previous_response_id": (req.raw or {}).get("previous_response_id"),
                    "store": (req.raw or {}).get("store", True)}
        return response_object(rid, req, resp.model, output_items(resp), resp.usage, resp.finish_reason,
                               resp.created or None)

    def encode(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        return orjson.dumps(self.encode_object(resp, req, new_response_id()))

    def stream_encoder(self, req: ChatRequest, rid: str | None = None) -> StreamEncoder:
        from .responses_stream import ResponsesStreamEncoder

        return ResponsesStreamEncoder(req, rid or new_response_id())

    def encode_error(self, err: SwitchmanError) -> bytes:
        return orjson.dumps({"error": _error_dict(err)})
