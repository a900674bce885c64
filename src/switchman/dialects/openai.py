"""The OpenAI Chat Completions dialect: ``POST /v1/chat/completions`` as OpenAI's SDKs speak it.

Shapes follow the installed ``openai`` SDK's ``types/chat/`` (``completion_create_params``,
``ChatCompletion``, ``ChatCompletionChunk``, ``CompletionUsage``).

Decoding is strict: a bad field raises ``InvalidRequest`` whose ``param`` names it the way OpenAI
does (``messages[2].content``). What the canonical request cannot say (``logprobs``, ``seed``,
``reasoning_effort``, ``prompt_cache_key``, ``service_tier``, a message's ``name`` ...) is not
decoded: it reaches an OpenAI-wire upstream untouched through ``raw``, and an upstream of another
kind does not see it. What would be silently lost on any upstream (audio or file parts, custom
tools, legacy ``functions``, ``n`` > 1) is refused with ``Unsupported`` naming the field.

System and developer messages are hoisted into ``ChatRequest.system`` in order, wherever they
appear: the canonical request, like Anthropic's and Gemini's APIs, has one system prompt, so a
system message in mid-conversation moves to the front for an upstream of another kind.
"""

from __future__ import annotations

import secrets
import time

import orjson

from ..errors import InvalidRequest, SwitchmanError, Unsupported
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

__all__ = ["OpenAIDialect", "OpenAIStreamEncoder"]

# Canonical finish reason -> OpenAI ``finish_reason`` (types/chat/chat_completion.py: stop,
# length, tool_calls, content_filter). OpenAI has no separate reason for a matched stop
# sequence ("stop" covers both) nor for a full context window (the nearest is "length").
_FINISH = {
    FinishReason.STOP: "stop",
    FinishReason.STOP_SEQUENCE: "stop",
    FinishReason.LENGTH: "length",
    FinishReason.TOOL_CALLS: "tool_calls",
    FinishReason.CONTENT_FILTER: "content_filter",
    FinishReason.CONTEXT_WINDOW: "length",
    FinishReason.OTHER: "stop",
}

# Client status -> ``error.type``. OpenAI's SDKs pick their exception class by status alone
# (openai/_client.py ``_make_status_error``), so ``type`` is informative. OpenAI itself sends
# ``invalid_request_error`` for 4xx and ``server_error`` for 5xx (e.g. "The server had an error
# while processing your request"); for 401/403/429 we use the names of the SDK's own exception
# classes, which say more than OpenAI's varied types there (``requests``, ``tokens``, ...).
_ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}

_ROLE_KINDS = ("system", "developer", "user", "assistant", "tool")
_TOOL_CHOICE_MODES = ("auto", "none", "required")
_RESPONSE_FORMATS = ("text", "json_object", "json_schema")


def _fail(param: str | None, msg: str) -> InvalidRequest:
    return InvalidRequest(msg, param=param)


def _error_dict(err: SwitchmanError) -> dict:
    status = err.status
    etype = _ERROR_TYPES.get(status) or ("server_error" if status >= 500 else "invalid_request_error")
    return {"message": err.message, "type": etype, "param": err.param, "code": err.kind}


def _number(body: dict, key: str, lo: float, hi: float) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if type(v) not in (int, float):
        raise _fail(key, f"'{key}' must be a number")
    if not lo <= v <= hi:
        raise _fail(key, f"'{key}' must be between {lo:g} and {hi:g}")
    return float(v)


def _int(body: dict, key: str) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if type(v) is not int or v < 1:
        raise _fail(key, f"'{key}' must be a positive integer")
    return v


# ---- messages -------------------------------------------------------------------------------


def _image(p: dict, path: str) -> ImagePart:
    iu = p.get("image_url")
    if type(iu) is not dict or type(iu.get("url")) is not str or not iu["url"]:
        raise _fail(f"{path}.image_url", "'image_url' must be an object with a 'url' string")
    url: str = iu["url"]
    detail = iu.get("detail")
    if detail is not None and type(detail) is not str:
        raise _fail(f"{path}.image_url.detail", "'detail' must be a string")
    if url.startswith("data:"):
        # data:[<media type>];base64,<data> (RFC 2397); OpenAI accepts only base64 images.
        head, sep, data = url.partition(",")
        if not sep or not head.endswith(";base64"):
            raise _fail(f"{path}.image_url.url", "a data URL image must be base64 ('data:image/png;base64,...')")
        return ImagePart(data=data, media_type=head[5:-7] or None, detail=detail)
    return ImagePart(url=url, detail=detail)


def _text_parts(c: object, path: str, refusal_ok: bool = False) -> list[TextPart]:
    """Content that may only be text: a string, or an array of ``text`` (or ``refusal``) parts."""
    if type(c) is str:
        return [TextPart(c)]
    if type(c) is not list:
        raise _fail(path, "'content' must be a string or an array of content parts")
    out = []
    for i, p in enumerate(c):
        pp = f"{path}[{i}]"
        t = p.get("type") if type(p) is dict else None
        if t == "text":
            if type(p.get("text")) is not str:
                raise _fail(f"{pp}.text", "'text' must be a string")
            out.append(TextPart(p["text"]))
        elif t == "refusal" and refusal_ok:
            if type(p.get("refusal")) is not str:
                raise _fail(f"{pp}.refusal", "'refusal' must be a string")
            out.append(TextPart(p["refusal"]))
        else:
            raise _fail(f"{pp}.type", "expected a 'text' content part here")
    return out


def _user_parts(c: object, path: str) -> list[Part]:
    if type(c) is str:
        return [TextPart(c)]
    if type(c) is not list or not c:
        raise _fail(path, "'content' must be a string or a non-empty array of content parts")
    out: list[Part] = []
    for i, p in enumerate(c):
        pp = f"{path}[{i}]"
        if type(p) is not dict:
            raise _fail(pp, "a content part must be an object")
        t = p.get("type")
        if t == "text":
            if type(p.get("text")) is not str:
                raise _fail(f"{pp}.text", "'text' must be a string")
            out.append(TextPart(p["text"]))
        elif t == "image_url":
            out.append(_image(p, pp))
        elif t in ("input_audio", "file"):
            raise Unsupported(f"'{t}' content parts are not supported by this gateway", param=f"{pp}.type")
        else:
            raise _fail(f"{pp}.type", "'type' must be one of: text, image_url, input_audio, file")
    return out


def _tool_calls(tcs: object, path: str) -> list[ToolCallPart]:
    if type(tcs) is not list:
        raise _fail(path, "'tool_calls' must be an array")
    out = []
    for i, tc in enumerate(tcs):
        pp = f"{path}[{i}]"
        if type(tc) is not dict:
            raise _fail(pp, "a tool call must be an object")
        t = tc.get("type", "function")
        if t == "custom":
            raise Unsupported("custom tool calls are not supported by this gateway", param=f"{pp}.type")
        if t != "function":
            raise _fail(f"{pp}.type", "'type' must be 'function'")
        if type(tc.get("id")) is not str:
            raise _fail(f"{pp}.id", "'id' must be a string")
        fn = tc.get("function")
        if type(fn) is not dict or type(fn.get("name")) is not str:
            raise _fail(f"{pp}.function", "'function' must be an object with a 'name' string")
        args = fn.get("arguments", "")
        if type(args) is not str:
            raise _fail(f"{pp}.function.arguments", "'arguments' must be a JSON string")
        out.append(ToolCallPart(tc["id"], fn["name"], args))
    return out


def _messages(ms: object) -> tuple[list[TextPart], list[Message]]:
    if type(ms) is not list or not ms:
        raise _fail("messages", "'messages' must be a non-empty array")
    system: list[TextPart] = []
    out: list[Message] = []
    results: list[Part] | None = None  # the open run of tool messages, as one user message
    for i, m in enumerate(ms):
        path = f"messages[{i}]"
        if type(m) is not dict:
            raise _fail(path, "a message must be an object")
        role = m.get("role")
        if role not in _ROLE_KINDS:
            if role == "function":
                raise Unsupported("'function' messages are deprecated; use 'tool' messages", param=f"{path}.role")
            raise _fail(f"{path}.role", f"'role' must be one of: {', '.join(_ROLE_KINDS)}")
        c = m.get("content")
        if role == "tool":
            if type(m.get("tool_call_id")) is not str:
                raise _fail(f"{path}.tool_call_id", "'tool_call_id' must be a string")
            part = ToolResultPart(m["tool_call_id"], _text_parts(c, f"{path}.content"))  # type: ignore[arg-type]
            if results is None:
                results = [part]
                out.append(Message(Role.USER, results))
            else:
                results.append(part)
            continue
        if role in ("system", "developer"):
            # Hoisted, wherever it appears: the canonical request has one system prompt.
            system.extend(_text_parts(c, f"{path}.content"))
            continue
        results = None
        if role == "user":
            out.append(Message(Role.USER, _user_parts(c, f"{path}.content")))
            continue
        parts: list[Part] = []
        tcs = m.get("tool_calls")
        if c is not None:
            parts.extend(_text_parts(c, f"{path}.content", refusal_ok=True))
        elif type(m.get("refusal")) is str:
            parts.append(TextPart(m["refusal"]))
        if tcs is not None:
            calls = _tool_calls(tcs, f"{path}.tool_calls")
            if calls and parts and type(c) is str and not c:
                parts.clear()  # "" beside tool calls is how many clients say "no text"
            parts.extend(calls)
        elif m.get("function_call") is not None:
            raise Unsupported("'function_call' is deprecated; use 'tool_calls'", param=f"{path}.function_call")
        if not parts:
            raise _fail(f"{path}.content", "an assistant message needs 'content' or 'tool_calls'")
        out.append(Message(Role.ASSISTANT, parts))
    return system, out


# ---- tools and options ----------------------------------------------------------------------


def _tools(ts: object) -> list[Tool] | None:
    if ts is None:
        return None
    if type(ts) is not list:
        raise _fail("tools", "'tools' must be an array")
    out = []
    for i, t in enumerate(ts):
        path = f"tools[{i}]"
        if type(t) is not dict:
            raise _fail(path, "a tool must be an object")
        kind = t.get("type")
        if kind == "custom":
            raise Unsupported("custom tools are not supported by this gateway", param=f"{path}.type")
        if kind != "function":
            raise _fail(f"{path}.type", "'type' must be 'function'")
        fn = t.get("function")
        if type(fn) is not dict:
            raise _fail(f"{path}.function", "'function' must be an object")
        name = fn.get("name")
        if type(name) is not str or not name:
            raise _fail(f"{path}.function.name", "'name' must be a non-empty string")
        desc = fn.get("description")
        if desc is not None and type(desc) is not str:
            raise _fail(f"{path}.function.description", "'description' must be a string")
        params = fn.get("parameters")
        if params is None:
            params = {"type": "object", "properties": {}}  # "Omitting parameters defines a function with an empty parameter list"
        elif type(params) is not dict:
            raise _fail(f"{path}.function.parameters", "'parameters' must be a JSON schema object")
        else:
            check_depth(params, f"{path}.function.parameters")
        strict = fn.get("strict")
        if strict is not None and type(strict) is not bool:
            raise _fail(f"{path}.function.strict", "'strict' must be a boolean")
        out.append(Tool(name, desc, params, strict))
    return out or None


def _tool_choice(body: dict, tools: list[Tool] | None) -> ToolChoice | None:
    tc = body.get("tool_choice")
    par = body.get("parallel_tool_calls")
    if par is not None and type(par) is not bool:
        raise _fail("parallel_tool_calls", "'parallel_tool_calls' must be a boolean")
    if tc is None:
        return ToolChoice("auto", parallel=par) if par is not None and tools else None
    if type(tc) is str:
        if tc not in _TOOL_CHOICE_MODES:
            raise _fail("tool_choice", "'tool_choice' must be 'auto', 'none', 'required' or a named function")
        if tc == "required" and not tools:
            raise _fail("tool_choice", "'tool_choice' 'required' needs 'tools'")
        return ToolChoice(tc, parallel=par)
    if type(tc) is not dict:
        raise _fail("tool_choice", "'tool_choice' must be a string or an object")
    kind = tc.get("type")
    if kind in ("allowed_tools", "custom"):
        raise Unsupported(f"'{kind}' tool_choice is not supported by this gateway", param="tool_choice.type")
    if kind != "function":
        raise _fail("tool_choice.type", "'type' must be 'function'")
    fn = tc.get("function")
    name = fn.get("name") if type(fn) is dict else None
    if type(name) is not str:
        raise _fail("tool_choice.function.name", "'function.name' must be a string")
    if not tools or all(t.name != name for t in tools):
        raise _fail("tool_choice.function.name", f"tool_choice names '{name}', which is not in 'tools'")
    return ToolChoice("tool", name, par)


def _stop(body: dict) -> list[str] | None:
    s = body.get("stop")
    if s is None:
        return None
    if type(s) is str:
        return [s]
    if type(s) is not list or any(type(x) is not str for x in s):
        raise _fail("stop", "'stop' must be a string or an array of strings")
    return s or None


def _response_format(body: dict) -> dict | None:
    rf = body.get("response_format")
    if rf is None:
        return None
    if type(rf) is not dict or rf.get("type") not in _RESPONSE_FORMATS:
        raise _fail("response_format.type", "'response_format.type' must be text, json_object or json_schema")
    if rf["type"] == "json_schema":
        js = rf.get("json_schema")
        if type(js) is not dict or type(js.get("name")) is not str:
            raise _fail("response_format.json_schema", "'json_schema' must be an object with a 'name'")
        check_depth(js, "response_format.json_schema")
    return None if rf["type"] == "text" else rf


def _decode(body: object) -> ChatRequest:
    if type(body) is not dict:
        raise _fail(None, "the request body must be a JSON object")
    model = body.get("model")
    if type(model) is not str or not model:
        raise _fail("model", "'model' must be a non-empty string")
    system, messages = _messages(body.get("messages"))
    n = body.get("n")
    if n is not None and n != 1:
        raise Unsupported("only n=1 is supported: the gateway routes and accounts one choice", param="n")
    if body.get("functions") is not None:
        raise Unsupported("'functions' is deprecated; use 'tools'", param="functions")
    tools = _tools(body.get("tools"))
    max_tokens = _int(body, "max_completion_tokens")
    if max_tokens is None:
        max_tokens = _int(body, "max_tokens")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    elif type(stream) is not bool:
        raise _fail("stream", "'stream' must be a boolean")
    so = body.get("stream_options")
    include_usage = False
    if so is not None:
        if type(so) is not dict:
            raise _fail("stream_options", "'stream_options' must be an object")
        iu = so.get("include_usage", False)
        if type(iu) is not bool:
            raise _fail("stream_options.include_usage", "'include_usage' must be a boolean")
        include_usage = iu and stream
    user = body.get("user")
    if user is not None and type(user) is not str:
        raise _fail("user", "'user' must be a string")
    return ChatRequest(
        model=model,
        messages=messages,
        system=system,
        tools=tools,
        tool_choice=_tool_choice(body, tools),
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0, 2),
        top_p=_number(body, "top_p", 0, 1),
        stop=_stop(body),
        response_format=_response_format(body),
        stream=stream,
        include_usage=include_usage,
        user=user,
        dialect="openai",
        raw=body,
    )


# ---- responses ------------------------------------------------------------------------------


def _usage_dict(u: Usage) -> dict:
    details = {"cached_tokens": u.cache_read_tokens}
    if u.cache_write_tokens:
        details["cache_write_tokens"] = u.cache_write_tokens  # CompletionUsage.prompt_tokens_details
    return {
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.input_tokens + u.output_tokens,
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": u.reasoning_tokens},
    }


def _tool_call_dict(p: ToolCallPart) -> dict:
    return {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments}}


def _completion_id(rid: str) -> str:
    return rid or "chatcmpl-" + secrets.token_hex(12)


class OpenAIDialect(Dialect):
    """Decodes and encodes the OpenAI Chat Completions API (stateless; one shared instance)."""

    kind = "openai"

    def decode(self, body: object) -> ChatRequest:
        return _decode(body)

    def encode(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        if resp.dialect == "openai" and resp.raw is not None:
            return orjson.dumps(resp.raw)  # same wire: every vendor field as the upstream sent it
        text = [p.text for p in resp.parts if type(p) is TextPart]
        calls = [_tool_call_dict(p) for p in resp.parts if type(p) is ToolCallPart]
        message: dict = {"role": "assistant", "content": "".join(text) if text or not calls else None}
        if calls:
            message["tool_calls"] = calls
        out = {
            "id": _completion_id(resp.id),
            "object": "chat.completion",
            "created": resp.created or int(time.time()),
            "model": resp.model or req.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _FINISH.get(resp.finish_reason, "stop"),  # type: ignore[arg-type]
                }
            ],
        }
        if resp.usage is not None:
            out["usage"] = _usage_dict(resp.usage)
        return orjson.dumps(out)

    def stream_encoder(self, req: ChatRequest) -> OpenAIStreamEncoder:
        return OpenAIStreamEncoder(req.model, req.include_usage)

    def encode_error(self, err: SwitchmanError) -> bytes:
        return orjson.dumps({"error": _error_dict(err)})


class OpenAIStreamEncoder(StreamEncoder):
    """Canonical stream events as ``chat.completion.chunk`` server-sent events.

    Events carrying ``raw`` (an OpenAI-wire upstream's chunk) re-emit that chunk, once per chunk,
    so vendor fields pass through. The one exception is a usage-only chunk (``choices: []`` plus
    ``usage``): the gateway always asks its upstream for usage, to account cost, but the client
    sees such a chunk only if it asked ``stream_options.include_usage`` itself, and then once,
    just before ``[DONE]``, as OpenAI sends it. Usage may come before or after ``Finish``; the
    last ``UsageEvent`` wins.
    """

    __slots__ = ("_model", "_include_usage", "_id", "_created", "_last_raw", "_usage", "_usage_raw", "_ended")

    def __init__(self, model: str, include_usage: bool) -> None:
        self._model = model
        self._include_usage = include_usage
        self._id = ""
        self._created = 0
        self._last_raw: dict | None = None  # the raw chunk emitted last (its events are adjacent)
        self._usage: Usage | None = None
        self._usage_raw: dict | None = None  # the usage-only upstream chunk to emit at close
        self._ended = False

    def encode(self, ev: StreamEvent) -> bytes:
        raw = ev.raw
        t = type(ev)
        if t is UsageEvent:
            if raw is not None and raw.get("choices"):
                # Usage inside a content chunk (vLLM puts it on the last one): the client gets it
                # with that chunk, so nothing is left to send at close.
                self._usage = self._usage_raw = None
            else:
                self._usage, self._usage_raw = ev.usage, raw
        elif t is Start and not self._id:
            self._id = _completion_id(ev.id)
            self._created = ev.created or int(time.time())
            if ev.model:
                self._model = ev.model
        if raw is not None:
            if raw is self._last_raw:
                return b""
            self._last_raw = raw
            if not raw.get("choices") and raw.get("usage"):
                return b""  # usage-only: held for close()
            return frame(orjson.dumps(raw))
        if t is TextDelta:
            return self._chunk({"content": ev.text}) if ev.text else b""
        if t is ToolCallDelta:
            return self._chunk({"tool_calls": [{"index": ev.index, "function": {"arguments": ev.arguments}}]})
        if t is ToolCallStart:
            call = {"index": ev.index, "id": ev.id, "type": "function", "function": {"name": ev.name, "arguments": ""}}
            return self._chunk({"tool_calls": [call]})
        if t is Start:
            return self._chunk({"role": "assistant", "content": ""})
        if t is Finish:
            return self._chunk({}, _FINISH.get(ev.reason, "stop"))
        return b""

    def close(self) -> bytes:
        if self._ended:
            return b""
        self._ended = True
        out = b""
        if self._include_usage:
            if self._usage_raw is not None:
                out = frame(orjson.dumps(self._usage_raw))
            elif self._usage is not None:
                self._begin()
                out = frame(
                    orjson.dumps(
                        {
                            "id": self._id,
                            "object": "chat.completion.chunk",
                            "created": self._created,
                            "model": self._model,
                            "choices": [],
                            "usage": _usage_dict(self._usage),
                        }
                    )
                )
        return out + b"data: [DONE]\n\n"

    def error(self, err: SwitchmanError) -> bytes:
        # OpenAI's own mid-stream failure: a data event holding {"error": {...}}; then the end.
        self._ended = True
        return frame(orjson.dumps({"error": _error_dict(err)})) + b"data: [DONE]\n\n"

    def _begin(self) -> None:
        if not self._id:  # no Start seen: still a well-formed chunk
            self._id = _completion_id("")
            self._created = int(time.time())

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        self._begin()
        return frame(
            orjson.dumps(
                {
                    "id": self._id,
                    "object": "chat.completion.chunk",
                    "created": self._created,
                    "model": self._model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                }
            )
        )
