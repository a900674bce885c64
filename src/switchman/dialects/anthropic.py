"""The Anthropic Messages dialect: ``POST /v1/messages`` as clients of Anthropic's SDKs speak it.

Shapes follow the API reference (https://docs.anthropic.com/en/api/messages) and the installed
``anthropic`` SDK's ``types/`` (``MessageCreateParams``, ``Message``, ``RawMessageStreamEvent``,
``shared/ErrorResponse``); the tests check our output against the SDK itself.

What the canonical request cannot say (thinking, documents, server tools and their results,
``top_k``, ``output_config.effort``, top-level ``cache_control`` ...) stays out of it and reaches
an Anthropic upstream untouched through ``raw``; an upstream of another kind does not see it.
"""

from __future__ import annotations

import secrets

import orjson

from ..errors import InvalidRequest, SwitchmanError
from ..sse import frame
from ..types import (
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    ImagePart,
    Message,
    Part,
    Role,
    Start,
    StreamEvent,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from .base import Dialect, StreamEncoder, check_depth

__all__ = ["AnthropicDialect", "AnthropicStreamEncoder"]

_ROLES = {"user": Role.USER, "assistant": Role.ASSISTANT}
_TOOL_CHOICE_MODES = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}

# Canonical finish reason -> Anthropic ``stop_reason`` (anthropic/types/stop_reason.py).
_STOP_REASONS = {
    FinishReason.STOP: "end_turn",
    FinishReason.STOP_SEQUENCE: "stop_sequence",
    FinishReason.LENGTH: "max_tokens",
    FinishReason.TOOL_CALLS: "tool_use",
    FinishReason.CONTENT_FILTER: "refusal",
    FinishReason.CONTEXT_WINDOW: "model_context_window_exceeded",
    # OTHER comes from a vendor reason with no Anthropic equivalent: the turn did end.
    FinishReason.OTHER: "end_turn",
}

# Client status -> Anthropic ``error.type`` (anthropic/types/shared/error_type.py; statuses per
# https://docs.anthropic.com/en/api/errors: 529 overloaded, 504 timeout_error, 402 billing).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _error_type(status: int) -> str:
    """Anthropic's ``error.type`` for an HTTP status."""
    t = _ERROR_TYPES.get(status)
    if t is not None:
        return t
    return "invalid_request_error" if status < 500 else "api_error"


def _error_body(err: SwitchmanError) -> bytes:
    e = {"type": _error_type(err.status), "message": err.message}
    details = getattr(err, "details", None)
    if details:  # e.g. a thread's ``error_code``, which the SDK's thread recovery reads
        e["details"] = details
    return orjson.dumps({"type": "error", "error": e})


def _fail(param: str, msg: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {msg}", param=param)


def _str(d: dict, key: str, path: str, required: bool = True) -> str | None:
    v = d.get(key)
    if type(v) is str:
        return v
    if v is None and not required:
        return None
    raise _fail(f"{path}.{key}" if path else key, "must be a string")


def _number(body: dict, key: str, lo: float, hi: float) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if type(v) not in (int, float) or not lo <= v <= hi:
        raise _fail(key, f"must be a number between {lo:g} and {hi:g}")
    return float(v)


def _cache_control(b: dict, path: str) -> dict | None:
    cc = b.get("cache_control")
    if cc is not None and type(cc) is not dict:
        raise _fail(f"{path}.cache_control", "must be an object")
    return cc


# ---- decoding ---------------------------------------------------------------------------------


def _image(src: object, path: str) -> ImagePart | None:
    if type(src) is not dict:
        raise _fail(path, "must be an object")
    kind = src.get("type")
    if kind == "base64":
        return ImagePart(data=_str(src, "data", path), media_type=_str(src, "media_type", path))
    if kind == "url":
        return ImagePart(url=_str(src, "url", path))
    # "file" (a Files API id) and later kinds name something only Anthropic can fetch.
    return None


def _tool_result(b: dict, path: str) -> ToolResultPart:
    tid = _str(b, "tool_use_id", path)
    c = b.get("content")
    parts: list[TextPart | ImagePart] = []
    if type(c) is str:
        parts.append(TextPart(c))
    elif type(c) is list:
        for i, sub in enumerate(c):
            p = _block(sub, f"{path}.content.{i}")
            # Only text and images can be a tool's result elsewhere; documents and search
            # results stay in ``raw`` for an Anthropic upstream.
            if type(p) is TextPart or type(p) is ImagePart:
                parts.append(p)
    elif c is not None:
        raise _fail(f"{path}.content", "must be a string or a list of content blocks")
    err = b.get("is_error", False)
    if type(err) is not bool:
        raise _fail(f"{path}.is_error", "must be a boolean")
    return ToolResultPart(tid, parts, err)


def _block(b: object, path: str) -> Part | None:
    """One content block, or None for a kind only an Anthropic upstream understands
    (thinking, redacted_thinking, document, search_result, server tool blocks ...)."""
    if type(b) is not dict:
        raise _fail(path, "must be an object")
    t = b.get("type")
    if t == "text":
        return TextPart(_str(b, "text", path), _cache_control(b, path))
    if t == "image":
        return _image(b.get("source"), f"{path}.source")
    if t == "tool_use":
        inp = b.get("input")
        if type(inp) is not dict:
            raise _fail(f"{path}.input", "must be an object")
        return ToolCallPart(_str(b, "id", path), _str(b, "name", path), orjson.dumps(inp).decode())
    if t == "tool_result":
        return _tool_result(b, path)
    if type(t) is not str:
        raise _fail(f"{path}.type", "must be a string")
    return None


def _content(c: object, path: str) -> list[Part]:
    if type(c) is str:
        return [TextPart(c)]
    if type(c) is not list:
        raise _fail(path, "must be a string or a list of content blocks")
    parts = []
    for i, b in enumerate(c):
        p = _block(b, f"{path}.{i}")
        if p is not None:
            parts.append(p)
    return parts


def _messages(ms: object) -> list[Message]:
    if type(ms) is not list or not ms:
        raise _fail("messages", "must be a non-empty list")
    out = []
    for i, m in enumerate(ms):
        path = f"messages.{i}"
        if type(m) is not dict:
            raise _fail(path, "must be an object")
        r = m.get("role")
        role = _ROLES.get(r) if type(r) is str else None
        if role is None:
            raise _fail(f"{path}.role", "must be 'user' or 'assistant'")
        if "content" not in m:
            raise _fail(f"{path}.content", "is required")
        out.append(Message(role, _content(m["content"], f"{path}.content")))
    return out


def _system(s: object) -> list[TextPart]:
    if s is None:
        return []
    if type(s) is str:
        return [TextPart(s)] if s else []
    if type(s) is not list:
        raise _fail("system", "must be a string or a list of text blocks")
    out = []
    for i, b in enumerate(s):
        path = f"system.{i}"
        if type(b) is not dict or b.get("type") != "text":
            raise _fail(path, "must be a text block")
        out.append(TextPart(_str(b, "text", path), _cache_control(b, path)))
    return out


def _tools(ts: object) -> list[Tool] | None:
    if ts is None:
        return None
    if type(ts) is not list:
        raise _fail("tools", "must be a list")
    out = []
    for i, t in enumerate(ts):
        path = f"tools.{i}"
        if type(t) is not dict:
            raise _fail(path, "must be an object")
        if t.get("type") not in (None, "custom"):
            continue  # a server tool (web_search_..., code_execution_...): Anthropic-only
        schema = t.get("input_schema")
        if type(schema) is not dict:
            raise _fail(f"{path}.input_schema", "must be an object")
        check_depth(schema, f"{path}.input_schema")
        strict = t.get("strict")
        if strict is not None and type(strict) is not bool:
            raise _fail(f"{path}.strict", "must be a boolean")
        out.append(Tool(_str(t, "name", path), _str(t, "description", path, False), schema, strict))
    return out or None


def _tool_choice(tc: object) -> ToolChoice | None:
    if tc is None:
        return None
    if type(tc) is not dict:
        raise _fail("tool_choice", "must be an object")
    t = tc.get("type")
    mode = _TOOL_CHOICE_MODES.get(t) if type(t) is str else None
    if mode is None:
        raise _fail("tool_choice.type", "must be one of auto, any, tool, none")
    name = _str(tc, "name", "tool_choice", mode == "tool")
    dp = tc.get("disable_parallel_tool_use")
    if dp is not None and type(dp) is not bool:
        raise _fail("tool_choice.disable_parallel_tool_use", "must be a boolean")
    return ToolChoice(mode, name, None if dp is None else not dp)


def _offered(tc: ToolChoice | None, tools: object) -> ToolChoice | None:
    """A forced tool must be one the request offers (as the OpenAI dialect checks), and ``any``
    needs tools at all: otherwise the upstream's own 400 would come back as a failed attempt."""
    if tc is None or tc.mode not in ("tool", "required"):
        return tc
    names = {t.get("name") for t in tools if type(t) is dict} if type(tools) is list else set()
    if not names:
        raise _fail("tool_choice", f"tool_choice '{'tool' if tc.mode == 'tool' else 'any'}' needs 'tools'")
    if tc.mode == "tool" and tc.name not in names:
        raise _fail("tool_choice.name", f"tool_choice names '{str(tc.name)[:100]}', which is not in 'tools'")
    return tc


def _response_format(body: dict) -> dict | None:
    """Structured outputs, ``output_config.format`` (GA; see anthropic/types/output_config_param.py
    and https://platform.claude.com/docs/en/build-with-claude/structured-outputs), or the
    deprecated beta ``output_format``, in OpenAI's ``response_format`` shape. Anthropic always
    enforces the schema, hence ``strict``."""
    oc = body.get("output_config")
    if oc is not None and type(oc) is not dict:
        raise _fail("output_config", "must be an object")
    fmt, path = (oc.get("format"), "output_config.format") if oc else (None, "")
    if fmt is None:
        fmt, path = body.get("output_format"), "output_format"
    if fmt is None:
        return None
    if type(fmt) is not dict or fmt.get("type") != "json_schema" or type(fmt.get("schema")) is not dict:
        raise _fail(path, "must be {'type': 'json_schema', 'schema': {...}}")
    check_depth(fmt["schema"], f"{path}.schema")
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"], "strict": True}}


def _decode(body: object) -> ChatRequest:
    """A Messages API request body (parsed JSON) as a canonical request; see ``AnthropicDialect``."""
    if type(body) is not dict:
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if type(model) is not str or not model:
        raise _fail("model", "must be a non-empty string")
    mt = body.get("max_tokens")
    # 0 is allowed: it pre-warms the prompt cache without generating (MessageCreateParams docs).
    if type(mt) is not int or mt < 0:
        raise _fail("max_tokens", "is required: a non-negative integer")
    stop = body.get("stop_sequences")
    if stop is not None and (type(stop) is not list or any(type(s) is not str for s in stop)):
        raise _fail("stop_sequences", "must be a list of strings")
    stream = body.get("stream", False)
    if type(stream) is not bool:
        raise _fail("stream", "must be a boolean")
    meta = body.get("metadata")
    user = None
    if meta is not None:
        if type(meta) is not dict:
            raise _fail("metadata", "must be an object")
        user = _str(meta, "user_id", "metadata", False)
    return ChatRequest(
        native_only=_native_only(body),
        model=model,
        messages=_messages(body.get("messages")),
        system=_system(body.get("system")),
        tools=_tools(body.get("tools")),
        tool_choice=_offered(_tool_choice(body.get("tool_choice")), body.get("tools")),
        max_tokens=mt,
        temperature=_number(body, "temperature", 0.0, 1.0),
        top_p=_number(body, "top_p", 0.0, 1.0),
        stop=stop or None,
        response_format=_response_format(body),
        stream=stream,
        user=user,
        dialect="anthropic",
        raw=body,
    )


# Blocks the canonical form carries, or may drop without changing what is asked (thinking is the
# model's own scratch work; another model neither needs nor accepts it).
_PORTABLE_BLOCKS = frozenset({"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"})


# Top-level fields the canonical request carries, or that another upstream may go without (a
# cost hint, a scratch-work budget). Any other is Anthropic's own: ``thread`` (a continuation the
# gateway does not keep, ``anthropic_threads.py``, goes to Anthropic alone), MCP servers,
# containers, context management, and whatever a newer SDK adds. Never dropped in silence.
_PORTABLE_FIELDS = frozenset({
    "model", "max_tokens", "messages", "system", "tools", "tool_choice", "temperature", "top_p", "top_k",
    "stop_sequences", "stream", "metadata", "output_config", "output_format", "thinking", "service_tier",
    "cache_control",
})


def _native_only(body: dict) -> str | None:
    """The path of the first field, block or tool only an Anthropic upstream understands (a
    server-side thread, documents, search results, server tools and their results), or None."""
    for k in body:
        if k not in _PORTABLE_FIELDS:
            return k
    for i, t in enumerate(body.get("tools") or ()):
        if type(t) is dict and t.get("type") not in (None, "custom"):
            return f"tools.{i}"
    for i, m in enumerate(body.get("messages") or ()):
        c = m.get("content") if type(m) is dict else None
        if type(c) is not list:
            continue
        for j, b in enumerate(c):
            if type(b) is not dict:
                continue
            if b.get("type") not in _PORTABLE_BLOCKS:
                return f"messages.{i}.content.{j}"
            if b.get("type") == "tool_result" and type(b.get("content")) is list:
                for k, sub in enumerate(b["content"]):
                    if type(sub) is dict and sub.get("type") not in ("text", "image"):
                        return f"messages.{i}.content.{j}.content.{k}"
    return None


# ---- encoding ---------------------------------------------------------------------------------




def _usage_dict(u: Usage | None) -> dict:
    """Canonical usage in Anthropic's shape: its ``input_tokens`` excludes cache reads and writes,
    which it counts apart (anthropic/types/usage.py: total input is the sum of the three)."""
    if u is None:
        return {"input_tokens": 0, "output_tokens": 0}
    d = {
        "input_tokens": max(u.input_tokens - u.cache_read_tokens - u.cache_write_tokens, 0),
        "output_tokens": u.output_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
    }
    if u.cache_write_tokens:
        d["cache_creation"] = {"ephemeral_5m_input_tokens": u.cache_write_tokens - u.cache_write_1h_tokens,
                               "ephemeral_1h_input_tokens": u.cache_write_1h_tokens}
    if u.reasoning_tokens:
        d["output_tokens_details"] = {"thinking_tokens": u.reasoning_tokens}
    return d


def _message_id(rid: str) -> str:
    if rid.startswith("msg_"):
        return rid
    return "msg_" + (rid or secrets.token_hex(12))


def _stop_reason(reason: FinishReason | None) -> str:
    return _STOP_REASONS.get(reason, "end_turn") if reason is not None else "end_turn"


class AnthropicDialect(Dialect):
    """``POST /v1/messages``: decodes with strict validation naming the bad field, encodes
    messages, the exact SSE event sequence Anthropic emits, and Anthropic's error shape."""

    kind = "anthropic"

    def decode(self, body: object) -> ChatRequest:
        """``model``, ``max_tokens`` (required, as Anthropic requires it) and ``messages`` are
        checked; blocks canonical types cannot carry are left to ``raw`` (module docstring)."""
        return _decode(body)

    def encode(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        if resp.dialect == "anthropic" and resp.raw is not None:
            return orjson.dumps(resp.raw)
        content: list[dict] = []
        for p in resp.parts:
            if type(p) is TextPart:
                if p.text:
                    content.append({"type": "text", "text": p.text})
            else:
                inp = p.arguments_object()
                content.append({"type": "tool_use", "id": p.id, "name": p.name, "input": inp})
        return orjson.dumps(
            {
                "id": _message_id(resp.id),
                "type": "message",
                "role": "assistant",
                "model": resp.model or req.model,
                "content": content,
                "stop_reason": _stop_reason(resp.finish_reason),
                "stop_sequence": resp.stop_sequence,
                "usage": _usage_dict(resp.usage),
            }
        )

    def stream_encoder(self, req: ChatRequest) -> AnthropicStreamEncoder:
        return AnthropicStreamEncoder(req.model)

    def encode_error(self, err: SwitchmanError) -> bytes:
        return _error_body(err)


_NO_BLOCK = -1


def _tool_block(tid: str, name: str) -> dict:
    return {"type": "tool_use", "id": tid, "name": name, "input": {}}


class AnthropicStreamEncoder(StreamEncoder):
    """Canonical stream events as Anthropic's SSE sequence: ``message_start``, then per content
    block ``content_block_start`` / ``_delta`` / ``_stop`` (opened and closed in order: a text
    block closes when a tool call starts), then ``message_delta`` and ``message_stop`` at
    ``close()``, per https://docs.anthropic.com/en/docs/build-with-claude/streaming.

    ``message_start`` waits for the first event after ``Start`` so that input counts decoded
    from the same upstream chunk make it in. ``Finish`` waits for ``close()``: an OpenAI upstream
    sends usage only after its finish chunk, and ``message_delta`` carries the final usage.

    Events carrying ``raw`` (an Anthropic upstream's own event dicts) are re-emitted verbatim,
    each distinct dict once; the upstream's ``message_stop`` then ends the stream, so ``close()``
    adds nothing.
    """

    __slots__ = (
        "_model",
        "_start",
        "_started",
        "_usage",
        "_finish",
        "_next",
        "_open",
        "_open_tool",
        "_tools",
        "_last_raw",
        "_raw_seen",
    )

    def __init__(self, model: str) -> None:
        self._model = model
        self._start: Start | None = None
        self._started = False
        self._usage: Usage | None = None
        self._finish: Finish | None = None
        self._next = 0  # the next content block index
        self._open = _NO_BLOCK  # the open block's index
        self._open_tool = -1  # the open block's tool index, or -1 for text
        self._tools: dict[int, int] = {}  # canonical tool index -> block index
        self._last_raw: dict | None = None
        self._raw_seen = False

    def encode(self, ev: StreamEvent) -> bytes:
        raw = ev.raw
        if raw is not None:
            if raw is self._last_raw:
                return b""
            self._last_raw = raw
            self._raw_seen = True
            return frame(orjson.dumps(raw), raw.get("type") or "message")
        if self._raw_seen:
            # The upstream's own events already describe this stream; a second message_start
            # from encoding would corrupt it for the client.
            return b""
        t = type(ev)
        if t is Start:
            self._start = ev
            return b""
        if t is UsageEvent:
            self._usage = ev.usage
            return self._begin()
        out = self._begin()
        if t is TextDelta:
            if ev.text:
                if self._open == _NO_BLOCK or self._open_tool != -1:
                    out += self._open_block({"type": "text", "text": ""}, -1)
                out += self._delta(self._open, {"type": "text_delta", "text": ev.text})
        elif t is ToolCallStart:
            out += self._open_block(_tool_block(ev.id, ev.name), ev.index)
        elif t is ToolCallDelta:
            if ev.arguments:
                blk = self._tools.get(ev.index)
                if blk is None:  # arguments before their start: a malformed upstream stream
                    out += self._open_block(_tool_block("", ""), ev.index)
                    blk = self._open
                # A delta for an earlier, closed block (interleaved parallel calls) still names
                # its block index, which is how the SDKs accumulate input JSON.
                out += self._delta(blk, {"type": "input_json_delta", "partial_json": ev.arguments})
        elif t is Finish:
            self._finish = ev
        return out

    def close(self) -> bytes:
        if self._raw_seen:
            return b""
        out = self._begin() + self._close_block()
        f = self._finish
        usage = _usage_dict(self._usage) if self._usage is not None else {"output_tokens": 0}
        delta = {
            "type": "message_delta",
            "delta": {
                "stop_reason": _stop_reason(f.reason if f else None),
                "stop_sequence": f.stop_sequence if f else None,
            },
            "usage": usage,
        }
        return out + frame(orjson.dumps(delta), "message_delta") + _MESSAGE_STOP

    def error(self, err: SwitchmanError) -> bytes:
        # Anthropic itself sends just the error event mid-stream, without closing the open
        # block or a message_stop (https://docs.anthropic.com/en/api/messages-streaming#error-events);
        # its SDKs raise on it, so nothing after it would be read anyway.
        return frame(_error_body(err), "error")

    # ---- helpers ----

    def _begin(self) -> bytes:
        if self._started:
            return b""
        self._started = True
        s = self._start
        u = self._usage
        usage = _usage_dict(u)
        msg = {
            "id": _message_id(s.id if s else ""),
            "type": "message",
            "role": "assistant",
            "model": (s.model if s else "") or self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return frame(orjson.dumps({"type": "message_start", "message": msg}), "message_start")

    def _open_block(self, block: dict, tool: int) -> bytes:
        out = self._close_block()
        idx = self._next
        self._next += 1
        self._open, self._open_tool = idx, tool
        if tool != -1:
            self._tools[tool] = idx
        ev = {"type": "content_block_start", "index": idx, "content_block": block}
        return out + frame(orjson.dumps(ev), "content_block_start")

    def _close_block(self) -> bytes:
        if self._open == _NO_BLOCK:
            return b""
        idx, self._open = self._open, _NO_BLOCK
        return frame(orjson.dumps({"type": "content_block_stop", "index": idx}), "content_block_stop")

    @staticmethod
    def _delta(idx: int, delta: dict) -> bytes:
        ev = {"type": "content_block_delta", "index": idx, "delta": delta}
        return frame(orjson.dumps(ev), "content_block_delta")


_MESSAGE_STOP = frame(b'{"type":"message_stop"}', "message_stop")
