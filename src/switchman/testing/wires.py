"""The three vendor wire formats the fake upstream speaks: reading requests, writing answers and errors.

Pure code on data, no I/O and no timing (``fake_upstream`` owns those). Shapes follow the installed
SDKs' own types, which is what the test suite checks them against:

- OpenAI chat completions: ``openai/types/chat/chat_completion.py``, ``chat_completion_chunk.py``,
  ``openai/types/completion_usage.py``; errors ``{"error": {message, type, param, code}}``.
- Anthropic messages: ``anthropic/types/message.py``, ``raw_message_stream_event.py``,
  ``usage.py``, ``message_delta_usage.py``; errors ``{"type": "error", "error": {type, message}}``
  with the types of ``anthropic/types/shared/error_type.py``.
- Gemini ``generateContent``: https://ai.google.dev/api/generate-content; errors are Google's
  ``{"error": {code, message, status, details}}`` with ``google.rpc.Code`` names in ``status``
  (https://ai.google.dev/gemini-api/docs/troubleshooting).
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

import orjson

CONTEXT_LENGTH = "context_length_exceeded"  # OpenAI's code; the other wires have their own forms


class BadRequest(Exception):
    """The request is malformed for its wire (answered 400 in that wire's shape)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(slots=True)
class Call:
    """What the fake needs from one request, whatever wire it came in on."""

    model: str
    stream: bool
    prompt_chars: int  # characters of text in the system prompt and messages
    last_user: str  # the text of the last user turn
    tool: str | None  # the tool a call would name, when tools are offered and a call is allowed
    max_tokens: int | None
    include_usage: bool = False  # OpenAI: ``stream_options.include_usage``
    sse: bool = True  # Gemini: ``alt=sse``; without it a stream is one JSON array sent piece by piece
    logprobs: bool = True  # OpenAI: ``logprobs: true`` asked for them (the other wires: always sent)
    searches: bool = False  # Responses: a ``web_search`` built-in tool is offered (the answer runs it)


@dataclass(slots=True)
class Answer:
    """One generated answer, before it is put in a wire's shape."""

    id: str
    call_id: str  # the tool call's id, when ``tool`` is set
    model: str
    created: int
    pieces: list[str]  # the text, or the tool call's JSON arguments, split as it will stream
    tool: str | None
    arguments: dict | None
    finish: str  # "stop", "length" or "tool"
    input_tokens: int  # every prompt token, cached or not
    output_tokens: int
    cache_read: int
    cache_write: int  # reported on the Anthropic wire only ...
    cache_write_1h: int  # ... of which 1-hour writes
    include_usage: bool
    sse: bool
    logprob: float | None = None  # mean token logprob to report (OpenAI: only when asked)
    usage_override: dict | None = None  # ``FakeModel.usage``: laid over the reported usage
    searches: bool = False  # Responses: the answer begins with a ``web_search_call`` item

    @property
    def text(self) -> str:
        return "".join(self.pieces)


Frames = tuple[list[bytes], list[bytes], list[bytes]]  # before the first token, content, after it


class Wire:
    """One vendor's wire format."""

    name = ""
    stream_type = "text/event-stream; charset=utf-8"

    def read(self, d: dict, path_model: str | None, path_stream: bool, query: str) -> Call:
        raise NotImplementedError

    def credential(self, headers: dict[str, str], query: str) -> str | None:
        raise NotImplementedError

    def error(self, status: int, code: str | None, message: str | None,
              retry_after: float | None = None) -> tuple[int, bytes]:
        """An injected (or generic) error: ``code`` is the vendor's own error code field."""
        raise NotImplementedError

    def unauthorized(self, present: bool) -> tuple[int, bytes]:
        raise NotImplementedError

    def not_found(self, model: str) -> tuple[int, bytes]:
        raise NotImplementedError

    def too_long(self, tokens: int, window: int) -> tuple[int, bytes]:
        raise NotImplementedError

    def bad_request(self, e: BadRequest) -> tuple[int, bytes]:
        return self.error(400, None, e.message)

    def stream_error(self, status: int, code: str | None, message: str | None) -> bytes:
        """The error event a stream that already answered 200 ends with."""
        raise NotImplementedError

    def body(self, a: Answer) -> bytes:
        raise NotImplementedError

    def frames(self, a: Answer) -> Frames:
        raise NotImplementedError


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Overloaded" if status == 529 else f"HTTP {status}"


def _injected(status: int, message: str | None) -> str:
    return message or f"{_phrase(status)} (injected by switchman's fake upstream)"


def _text_of(content) -> str:
    """OpenAI/Anthropic content: a string, or a list of blocks whose text blocks count (an
    Anthropic ``tool_result`` counts by its own content)."""
    if type(content) is str:
        return content
    if type(content) is not list:
        return ""
    out = []
    for b in content:
        if type(b) is dict:
            t = b.get("type")
            if t == "text" and type(b.get("text")) is str:
                out.append(b["text"])
            elif t == "tool_result":
                out.append(_text_of(b.get("content")))
    return "".join(out)


# ---- OpenAI -----------------------------------------------------------------------------------

_FINGERPRINT = "fp_fake0001"
_OPENAI_FINISH = {"stop": "stop", "length": "length", "tool": "tool_calls"}


def _openai_type(status: int) -> str:
    if status == 429:
        return "requests"  # what OpenAI sends for a request-rate limit (its code: rate_limit_exceeded)
    return "server_error" if status >= 500 else "invalid_request_error"


class OpenAIWire(Wire):
    """``POST /v1/chat/completions``; ``azure=True``: the same body on Azure's deployment path,
    with the key in ``api-key`` (https://learn.microsoft.com/azure/ai-services/openai/reference)."""

    def __init__(self, azure: bool = False) -> None:
        self.azure = azure
        self.name = "azure" if azure else "openai"

    def read(self, d: dict, path_model: str | None, path_stream: bool, query: str) -> Call:
        model = path_model or d.get("model")
        if type(model) is not str or not model:
            raise BadRequest("you must provide a model parameter", "model")
        msgs = d.get("messages")
        if type(msgs) is not list or not msgs:
            raise BadRequest("Missing required parameter: 'messages'.", "messages")
        chars = 0
        last_user = ""
        for m in msgs:
            if type(m) is not dict:
                raise BadRequest("Invalid type for 'messages': expected an object.", "messages")
            t = _text_of(m.get("content"))
            chars += len(t)
            if m.get("role") == "user":
                last_user = t
        tool = None
        tools = d.get("tools")
        choice = d.get("tool_choice")
        if tools and type(tools) is list and choice != "none":
            if type(choice) is dict:
                tool = (choice.get("function") or {}).get("name")
            if not tool and type(tools[0]) is dict:
                first = tools[0]
                tool = (first.get("function") or first.get("custom") or {}).get("name")
        so = d.get("stream_options")
        mt = d.get("max_completion_tokens") or d.get("max_tokens")
        return Call(model, bool(d.get("stream")), chars, last_user, tool, mt if type(mt) is int else None,
                    include_usage=type(so) is dict and bool(so.get("include_usage")),
                    logprobs=d.get("logprobs") is True)

    def credential(self, headers: dict[str, str], query: str) -> str | None:
        if self.azure and "api-key" in headers:
            return headers["api-key"]
        auth = headers.get("authorization")
        if auth and auth[:7].lower() == "bearer ":
            return auth[7:]
        return None

    def _err(self, status: int, message: str, type_: str, code: str | None, param: str | None = None) -> tuple[int, bytes]:
        return status, orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})

    def error(self, status, code, message, retry_after=None):
        code = code or ("rate_limit_exceeded" if status == 429 else None)
        return self._err(status, _injected(status, message), _openai_type(status), code)

    def bad_request(self, e):
        return self._err(400, e.message, "invalid_request_error", None, e.param)

    def unauthorized(self, present):
        if not present:
            return self._err(401, "You didn't provide an API key. You need to provide your API key in an "
                             "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                             "invalid_request_error", None)
        return self._err(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")

    def not_found(self, model):
        if self.azure:
            return self._err(404, "The API deployment for this resource does not exist.", "invalid_request_error",
                             "DeploymentNotFound")
        return self._err(404, f"The model `{model}` does not exist or you do not have access to it.",
                         "invalid_request_error", "model_not_found")

    def too_long(self, tokens, window):
        return self._err(400, f"This model's maximum context length is {window} tokens. However, your messages "
                         f"resulted in {tokens} tokens. Please reduce the length of the messages.",
                         "invalid_request_error", CONTEXT_LENGTH, "messages")

    def stream_error(self, status, code, message):
        # The SDK raises on a ``data:`` whose object has ``error`` (openai/_streaming.py).
        return b"data: " + self.error(status, code, message)[1] + b"\n\n"

    @staticmethod
    def _usage(a: Answer) -> dict:
        return _over({
            "prompt_tokens": a.input_tokens,
            "completion_tokens": a.output_tokens,
            "total_tokens": a.input_tokens + a.output_tokens,
            "prompt_tokens_details": {"cached_tokens": a.cache_read, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        }, a)

    def body(self, a):
        if a.tool is not None:
            msg = {"role": "assistant", "content": None, "refusal": None, "annotations": [],
                   "tool_calls": [{"id": a.call_id, "type": "function",
                                   "function": {"name": a.tool, "arguments": a.text}}]}
        else:
            msg = {"role": "assistant", "content": a.text, "refusal": None, "annotations": []}
        return orjson.dumps({
            "id": a.id, "object": "chat.completion", "created": a.created, "model": a.model,
            "choices": [{"index": 0, "message": msg, "finish_reason": _OPENAI_FINISH[a.finish],
                         "logprobs": None if a.logprob is None else {"content": [
                             {"token": p, "logprob": a.logprob, "bytes": None, "top_logprobs": []} for p in a.pieces],
                             "refusal": None}}],
            "usage": self._usage(a), "service_tier": "default", "system_fingerprint": _FINGERPRINT,
        })

    def frames(self, a):
        # Every chunk repeats id/created/model; with include_usage each carries ``usage: null`` and
        # one last chunk with empty ``choices`` carries the usage (chat_completion_chunk.py).
        base = {"id": a.id, "object": "chat.completion.chunk", "created": a.created, "model": a.model,
                "service_tier": "default", "system_fingerprint": _FINGERPRINT}
        with_usage = a.include_usage

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            d = base.copy()
            d["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if with_usage:
                d["usage"] = None
            return b"data: " + orjson.dumps(d) + b"\n\n"

        if a.tool is not None:
            # As OpenAI streams a call: id, type and name first with empty arguments, then the
            # arguments in fragments carrying only the index.
            head: list[bytes] = []
            content = [chunk({"role": "assistant", "content": None, "refusal": None, "tool_calls": [
                {"index": 0, "id": a.call_id, "type": "function", "function": {"name": a.tool, "arguments": ""}}]})]
            content += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in a.pieces]
        else:
            head = [chunk({"role": "assistant", "content": "", "refusal": None})]
            content = [chunk({"content": p}) for p in a.pieces]
        tail = [chunk({}, _OPENAI_FINISH[a.finish])]
        if with_usage:
            d = base.copy()
            d["choices"] = []
            d["usage"] = self._usage(a)
            tail.append(b"data: " + orjson.dumps(d) + b"\n\n")
        tail.append(b"data: [DONE]\n\n")
        return head, content, tail


# ---- Anthropic --------------------------------------------------------------------------------

_ANTHROPIC_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
    503: "overloaded_error", 504: "timeout_error", 529: "overloaded_error",
}
_ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "tool": "tool_use"}
_PING = b'event: ping\ndata: {"type": "ping"}\n\n'
_PING_EVERY = 8  # Anthropic interleaves pings with the deltas; the SDK must skip them


def _event(name: str, d: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(d) + b"\n\n"


class AnthropicWire(Wire):
    """``POST /v1/messages``."""

    name = "anthropic"

    def read(self, d, path_model, path_stream, query):
        model = d.get("model")
        if type(model) is not str or not model:
            raise BadRequest("model: Field required", "model")
        msgs = d.get("messages")
        if type(msgs) is not list or not msgs:
            raise BadRequest("messages: Field required", "messages")
        mt = d.get("max_tokens")
        if type(mt) is not int:  # required by the Messages API, unlike OpenAI's
            raise BadRequest("max_tokens: Field required", "max_tokens")
        chars = len(_text_of(d.get("system")))
        last_user = ""
        for m in msgs:
            if type(m) is not dict:
                raise BadRequest("messages: Input should be a valid dictionary", "messages")
            t = _text_of(m.get("content"))
            chars += len(t)
            if m.get("role") == "user":
                last_user = t
        tool = None
        tools = d.get("tools")
        choice = d.get("tool_choice")
        ctype = choice.get("type") if type(choice) is dict else None
        if tools and type(tools) is list and ctype != "none":
            tool = choice.get("name") if ctype == "tool" else None
            if not tool and type(tools[0]) is dict:
                tool = tools[0].get("name")
        return Call(model, bool(d.get("stream")), chars, last_user, tool, mt)

    def credential(self, headers, query):
        if "x-api-key" in headers:
            return headers["x-api-key"]
        auth = headers.get("authorization")  # the SDK's ``auth_token`` sends a bearer token
        if auth and auth[:7].lower() == "bearer ":
            return auth[7:]
        return None

    @staticmethod
    def _err(status: int, type_: str, message: str) -> tuple[int, bytes]:
        return status, orjson.dumps({"type": "error", "error": {"type": type_, "message": message},
                                     "request_id": "req_fake"})

    def error(self, status, code, message, retry_after=None):
        # Anthropic has no separate code field: ``error.type`` is its code.
        return self._err(status, code or _ANTHROPIC_TYPES.get(status) or "api_error", _injected(status, message))

    def unauthorized(self, present):
        return self._err(401, "authentication_error", "invalid x-api-key" if present else "x-api-key header is required")

    def not_found(self, model):
        return self._err(404, "not_found_error", f"model: {model}")

    def too_long(self, tokens, window):
        # No code tells this apart, only the message (https://docs.anthropic.com/en/api/errors).
        return self._err(400, "invalid_request_error", f"prompt is too long: {tokens} tokens > {window} maximum")

    def stream_error(self, status, code, message):
        return b"event: error\ndata: " + self.error(status, code, message)[1] + b"\n\n"

    @staticmethod
    def _usage(a: Answer) -> dict:
        # ``input_tokens`` excludes the cache reads and writes, which are counted apart.
        return _over({
            "input_tokens": a.input_tokens - a.cache_read - a.cache_write,
            "cache_creation_input_tokens": a.cache_write,
            "cache_read_input_tokens": a.cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": a.cache_write - a.cache_write_1h,
                               "ephemeral_1h_input_tokens": a.cache_write_1h},
            "output_tokens": a.output_tokens,
            "service_tier": "standard",
        }, a)

    def _block(self, a: Answer, whole: bool) -> dict:
        if a.tool is not None:
            return {"type": "tool_use", "id": a.call_id, "name": a.tool, "input": a.arguments if whole else {}}
        return {"type": "text", "text": a.text if whole else ""}

    def body(self, a):
        return orjson.dumps({
            "id": a.id, "type": "message", "role": "assistant", "model": a.model,
            "content": [self._block(a, True)], "stop_reason": _ANTHROPIC_STOP[a.finish], "stop_sequence": None,
            "usage": self._usage(a),
        })

    def frames(self, a):
        usage = self._usage(a)
        start_usage = dict(usage, output_tokens=1)
        msg = {"id": a.id, "type": "message", "role": "assistant", "model": a.model, "content": [],
               "stop_reason": None, "stop_sequence": None, "usage": start_usage}
        head = [_event("message_start", {"type": "message_start", "message": msg}),
                _event("content_block_start", {"type": "content_block_start", "index": 0,
                                               "content_block": self._block(a, False)}),
                _PING]
        if a.tool is not None:
            # Tool input streams as JSON fragments, the first one empty, as the API sends it.
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *a.pieces]]
        else:
            deltas = [{"type": "text_delta", "text": p} for p in a.pieces]
        content = []
        for i, dl in enumerate(deltas):
            f = _event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": dl})
            content.append(_PING + f if i and i % _PING_EVERY == 0 else f)
        # message_delta's usage is cumulative (message_delta_usage.py), so it repeats the input side.
        delta_usage = {k: usage[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                             "cache_read_input_tokens", "output_tokens")}
        tail = [_event("content_block_stop", {"type": "content_block_stop", "index": 0}),
                _event("message_delta", {"type": "message_delta",
                                         "delta": {"stop_reason": _ANTHROPIC_STOP[a.finish], "stop_sequence": None},
                                         "usage": delta_usage}),
                _event("message_stop", {"type": "message_stop"})]
        return head, content, tail


# ---- Gemini -----------------------------------------------------------------------------------

_GEMINI_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED",
    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_GEMINI_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool": "STOP"}  # a call also ends with STOP


class GeminiWire(Wire):
    """``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent[?alt=sse]``."""

    name = "gemini"
    stream_type = "text/event-stream"

    def read(self, d, path_model, path_stream, query):
        contents = d.get("contents")
        if type(contents) is not list or not contents:
            raise BadRequest("* GenerateContentRequest.contents: contents is not specified", "contents")
        si = d.get("systemInstruction") or d.get("system_instruction")
        chars = sum(len(p.get("text") or "") for p in (si.get("parts") or ()) if type(p) is dict) if type(si) is dict else 0
        last_user = ""
        for c in contents:
            if type(c) is not dict:
                raise BadRequest("* GenerateContentRequest.contents: invalid value", "contents")
            t = "".join(p["text"] for p in c.get("parts") or () if type(p) is dict and type(p.get("text")) is str)
            chars += len(t)
            if c.get("role", "user") == "user" and t:
                last_user = t
        tool = None
        cfg = ((d.get("toolConfig") or {}).get("functionCallingConfig") or {})
        mode = cfg.get("mode")
        if mode != "NONE":
            allowed = cfg.get("allowedFunctionNames")
            if allowed and mode == "ANY":
                tool = allowed[0]
            else:
                for t in d.get("tools") or ():
                    decls = t.get("functionDeclarations") or t.get("function_declarations") if type(t) is dict else None
                    if decls:
                        tool = decls[0].get("name")
                        break
        gc = d.get("generationConfig") or {}
        mt = gc.get("maxOutputTokens")
        return Call(path_model or "", path_stream, chars, last_user, tool, mt if type(mt) is int else None,
                    sse="alt=sse" in query)

    def credential(self, headers, query):
        if "x-goog-api-key" in headers:
            return headers["x-goog-api-key"]
        if "key=" in query:  # the documented query-string form; parsed only when present
            for kv in query.split("&"):
                if kv.startswith("key="):
                    return kv[4:]
        return None

    @staticmethod
    def _err(status: int, rpc: str, message: str, details: list | None = None) -> tuple[int, bytes]:
        e: dict = {"code": status, "message": message, "status": rpc}
        if details:
            e["details"] = details
        return status, orjson.dumps({"error": e})

    def error(self, status, code, message, retry_after=None):
        details = None
        if retry_after is not None:
            # Google puts the delay in a google.rpc.RetryInfo detail, a protobuf Duration ("7s"),
            # rather than a Retry-After header.
            details = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"}]
        rpc = code or _GEMINI_STATUS.get(status) or ("UNAVAILABLE" if status >= 500 else "UNKNOWN")
        return self._err(status, rpc, _injected(status, message), details)

    def unauthorized(self, present):
        # What Google actually answers for an API key: a wrong one is 400 INVALID_ARGUMENT told
        # apart by its ErrorInfo reason; a missing one is 403 (there is no 401 for API keys).
        if not present:
            return self._err(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers (callers without "
                             "established identity). Please use API Key or other form of API consumer identity "
                             "to call this API.")
        return self._err(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com", "metadata": {"service": "generativelanguage.googleapis.com"}}])

    def not_found(self, model):
        return self._err(404, "NOT_FOUND", f"models/{model} is not found for API version v1beta, or is not supported "
                         "for generateContent. Call ListModels to see the list of available models and their "
                         "supported methods.")

    def too_long(self, tokens, window):
        # Gemini has no code for this, only INVALID_ARGUMENT and this message.
        return self._err(400, "INVALID_ARGUMENT", f"The input token count ({tokens}) exceeds the maximum number "
                         f"of tokens allowed ({window}).")

    def stream_error(self, status, code, message):
        return b"data: " + self.error(status, code, message)[1] + b"\r\n\r\n"

    @staticmethod
    def _usage(a: Answer, final: bool) -> dict:
        p = a.input_tokens
        u: dict = {"promptTokenCount": p}
        if final:
            u["candidatesTokenCount"] = a.output_tokens
        u["totalTokenCount"] = p + a.output_tokens if final else p
        if a.cache_read:  # proto3 JSON omits zero counts
            u["cachedContentTokenCount"] = a.cache_read
        u["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": p}]
        if a.cache_read:
            u["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": a.cache_read}]
        return _over(u, a) if final else u

    def _response(self, a: Answer, parts: list, finish: str | None, final: bool) -> dict:
        cand: dict = {"content": {"parts": parts, "role": "model"}}
        if finish:
            cand["finishReason"] = finish
            if a.logprob is not None:
                cand["avgLogprobs"] = a.logprob
        cand["index"] = 0
        return {"candidates": [cand], "usageMetadata": self._usage(a, final), "modelVersion": a.model,
                "responseId": a.id}

    def _parts(self, a: Answer) -> list:
        if a.tool is not None:
            return [{"functionCall": {"name": a.tool, "args": a.arguments}}]
        return [{"text": a.text}]

    def body(self, a):
        return orjson.dumps(self._response(a, self._parts(a), _GEMINI_FINISH[a.finish], True))

    def frames(self, a):
        if a.tool is not None:  # calls arrive whole: Gemini does not stream their arguments
            objs = [self._response(a, self._parts(a), None, False)]
        else:
            objs = [self._response(a, [{"text": p}], None, False) for p in a.pieces]
        # The last event carries the finish reason and the whole usage: Gemini's stream has no
        # other end marker.
        last = self._response(a, [{"text": ""}], _GEMINI_FINISH[a.finish], True)
        if a.sse:
            # Google frames its events with CRLF line ends.
            content = [b"data: " + orjson.dumps(o) + b"\r\n\r\n" for o in objs]
            return [], content, [b"data: " + orjson.dumps(last) + b"\r\n\r\n"]
        # Without alt=sse the stream is a single JSON array, written element by element.
        content = [(b"[" if i == 0 else b",\r\n") + orjson.dumps(o) for i, o in enumerate(objs)]
        return [], content, [b",\r\n" + orjson.dumps(last) + b"]"]


def _over(usage: dict, a: Answer) -> dict:
    """``usage`` with ``FakeModel.usage`` laid over it (a None value removes the field)."""
    if not a.usage_override:
        return usage
    out = dict(usage)
    for k, v in a.usage_override.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out
