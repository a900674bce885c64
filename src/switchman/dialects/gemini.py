"""The Gemini API dialect: ``POST /v1beta/models/{model}:generateContent`` and
``:streamGenerateContent`` as the ``google-genai`` SDK speaks them, routed to any upstream.

Shapes follow the installed ``google-genai`` SDK (``google/genai/types.py``: ``Content``, ``Part``,
``FunctionCall``, ``FunctionResponse``, ``GenerateContentConfig``, ``GenerateContentResponse``) and
ai.google.dev/api/generate-content. The model (a switchman model or route) is the URL's; the key
comes as ``x-goog-api-key``, ``?key=`` or a bearer token (``app.py``).

Decoding: ``contents`` (roles ``user`` / ``model``; parts ``text``, ``inlineData`` and ``fileData``
images, ``functionCall``, ``functionResponse``), ``systemInstruction``, ``tools[].functionDeclarations``
(``parametersJsonSchema`` as is; ``parameters``, Google's OpenAPI subset, turned into JSON Schema:
lower-case types, ``nullable``), ``toolConfig.functionCallingConfig`` (AUTO, ANY, NONE,
``allowedFunctionNames``) and ``generationConfig`` (temperature, topP, maxOutputTokens,
stopSequences, JSON mode with ``responseSchema`` or ``responseJsonSchema``, ``thinkingConfig`` as a
reasoning effort). Function calls without an ``id`` get one, and each ``functionResponse`` without
one answers the earliest unanswered call of its name, as Gemini pairs them. A thought signature
rides on its call's canonical id (the Gemini adapter's convention), so it goes back to Gemini.

What only Gemini can do is ``native_only``: it reaches a Gemini upstream untouched through ``raw``
and is a 400 naming it toward any other: built-in tools (``googleSearch``, ``codeExecution``,
``urlContext`` ...), ``cachedContent``, non-image files, code parts, audio or image output, enum
output, and any top-level field not known here. Sampling hints no other vendor takes (``topK``,
``seed``, penalties, ``safetySettings``) are sent to Gemini and left out elsewhere, as the OpenAI
dialect does with its own. ``candidateCount`` above 1 is refused.

Streaming with ``alt=sse`` sends one ``GenerateContentResponse`` per event (text as it comes, a
function call whole, the finish reason and usage last); without it, the same objects as one JSON
array, as Google does. Errors are Google's: ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import base64
import secrets
from urllib.parse import unquote

import orjson

from ..adapters.gemini import _SIG_SEP, _SYNTH
from ..errors import InvalidRequest, SwitchmanError, UnknownEndpoint, Unsupported
from ..types import (ChatRequest, ChatResponse, Finish, FinishReason, ImagePart, Message, Part, Role, Start,
                     StreamEvent, TextDelta, TextPart, Tool, ToolCallDelta, ToolCallPart, ToolCallStart, ToolChoice,
                     ToolResultPart, Usage, UsageEvent)
from .base import Dialect, StreamEncoder, check_depth

__all__ = ["GeminiDialect", "GeminiStreamEncoder", "parse_path"]

_KNOWN = frozenset({"contents", "systemInstruction", "system_instruction", "tools", "toolConfig", "tool_config",
                    "generationConfig", "generation_config", "safetySettings", "safety_settings", "labels", "model"})
_CONFIG_HINTS = frozenset({"topK", "seed", "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
                           "candidateCount", "responseModalities", "mediaResolution", "includeThoughts",
                           "audioTimestamp", "enableEnhancedCivicAnswers"})
_FINISH = {FinishReason.STOP: "STOP", FinishReason.STOP_SEQUENCE: "STOP", FinishReason.TOOL_CALLS: "STOP",
           FinishReason.LENGTH: "MAX_TOKENS", FinishReason.CONTEXT_WINDOW: "MAX_TOKENS",
           FinishReason.CONTENT_FILTER: "SAFETY", FinishReason.OTHER: "OTHER"}
_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           405: "INVALID_ARGUMENT", 409: "ABORTED", 413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT",
           429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE",
           503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}
_EFFORT_LEVELS = {"minimal": "minimal", "low": "low", "medium": "medium", "high": "high"}


def _fail(param: str, msg: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {msg}", param=param)


def parse_path(path: str) -> tuple[str, str]:
    """``(model, method)`` of ``/v1beta/models/{model}:{method}``; 404 for anything else."""
    rest = path.split("/models/", 1)[1] if "/models/" in path else ""
    model, sep, method = unquote(rest).rpartition(":")
    if not sep or method not in ("generateContent", "streamGenerateContent") or not model:
        raise UnknownEndpoint(f"no such endpoint: {path[:200]}")
    return model, method


def _get(d: dict, camel: str):
    """Google's JSON takes lowerCamel and, from protobuf clients, snake_case names."""
    v = d.get(camel)
    if v is None:
        snake = "".join("_" + c.lower() if c.isupper() else c for c in camel)
        v = d.get(snake)
    return v


def json_schema(s: object, depth: int = 0) -> object:
    """Google's OpenAPI-subset ``Schema`` as JSON Schema: lower-case ``type`` (``OBJECT`` ->
    ``object``), ``nullable`` as a ``null`` type, ``propertyOrdering`` dropped."""
    if depth > 64 or type(s) is not dict:
        return s
    out: dict = {}
    for k, v in s.items():
        if k == "propertyOrdering" or k == "property_ordering":
            continue
        if k == "type" and type(v) is str:
            out["type"] = v.lower()
        elif k == "properties" and type(v) is dict:
            out[k] = {n: json_schema(x, depth + 1) for n, x in v.items()}
        elif k in ("items", "not") and type(v) is dict:
            out[k] = json_schema(v, depth + 1)
        elif k in ("anyOf", "any_of", "oneOf", "allOf") and type(v) is list:
            out["anyOf" if k == "any_of" else k] = [json_schema(x, depth + 1) for x in v]
        elif k == "nullable":
            continue
        else:
            out[k] = v
    if s.get("nullable") is True and type(out.get("type")) is str:
        out["type"] = [out["type"], "null"]
    return out


class _Decoder:
    def __init__(self) -> None:
        self.native: str | None = None
        self.messages: list[Message] = []
        self.open_calls: list[tuple[str, str]] = []  # (name, canonical id) not yet answered, in order
        self.by_id: dict[str, str] = {}  # the id the client sees -> the canonical id
        self.n = 0
        self.token = secrets.token_hex(4)

    def mark(self, what: str) -> None:
        if self.native is None:
            self.native = what

    def contents(self, cs: object) -> None:
        if type(cs) is not list or not cs:
            raise _fail("contents", "must be a non-empty array of Content")
        for i, c in enumerate(cs):
            path = f"contents[{i}]"
            if type(c) is not dict:
                raise _fail(path, "must be a Content object")
            role = c.get("role") or "user"
            if role not in ("user", "model"):
                raise _fail(f"{path}.role", "must be 'user' or 'model'")
            parts = c.get("parts")
            if type(parts) is not list:
                raise _fail(f"{path}.parts", "must be an array of Part")
            out: list[Part] = []
            for j, p in enumerate(parts):
                got = self.part(p, f"{path}.parts[{j}]", role)
                if got is not None:
                    out.append(got)
            r = Role.ASSISTANT if role == "model" else Role.USER
            if not out:
                continue
            if self.messages and self.messages[-1].role is r:
                self.messages[-1].parts.extend(out)
            else:
                self.messages.append(Message(r, out))

    def part(self, p: object, path: str, role: str) -> Part | None:
        if type(p) is not dict:
            raise _fail(path, "must be a Part object")
        if "text" in p:
            if type(p["text"]) is not str:
                raise _fail(f"{path}.text", "must be a string")
            return None if p.get("thought") else TextPart(p["text"])  # a model's thinking: Gemini's alone
        fc = _get(p, "functionCall")
        if fc is not None:
            return self.call(fc, p, f"{path}.functionCall")
        fr = _get(p, "functionResponse")
        if fr is not None:
            return self.result(fr, f"{path}.functionResponse")
        blob = _get(p, "inlineData")
        if blob is not None:
            return self.inline(blob, f"{path}.inlineData")
        fd = _get(p, "fileData")
        if fd is not None:
            mime, uri = _get(fd, "mimeType"), _get(fd, "fileUri") if type(fd) is dict else None
            if type(uri) is not str or not uri:
                raise _fail(f"{path}.fileData.fileUri", "must be a URI string")
            if type(mime) is str and mime.startswith("image/") and not uri.startswith("https://generativelanguage"):
                return ImagePart(url=uri, media_type=mime)
            self.mark(f"{path}.fileData")
            return None
        for k in p:
            if k not in ("thought", "thoughtSignature", "thought_signature", "partMetadata", "videoMetadata"):
                self.mark(f"{path}.{k}")
                return None
        return None

    def inline(self, blob: object, path: str) -> Part | None:
        if type(blob) is not dict or type(_get(blob, "data")) is not str or type(_get(blob, "mimeType")) is not str:
            raise _fail(path, "must have 'mimeType' and base64 'data' strings")
        mime = _get(blob, "mimeType")
        if not mime.startswith("image/"):
            self.mark(f"{path} ({mime[:40]})")
            return None
        return ImagePart(data=_get(blob, "data"), media_type=mime)

    def call(self, fc: object, p: dict, path: str) -> ToolCallPart:
        if type(fc) is not dict or type(fc.get("name")) is not str or not fc["name"]:
            raise _fail(f"{path}.name", "must be a non-empty string")
        args = fc.get("args", {})
        if args is None:
            args = {}
        if type(args) is not dict:
            raise _fail(f"{path}.args", "must be an object")
        seen = fc.get("id")
        cid = seen if type(seen) is str and seen else f"{_SYNTH}{self.token}_{self.n}"
        self.n += 1
        sig = _get(p, "thoughtSignature")
        canonical = cid + _SIG_SEP + sig if type(sig) is str and sig else cid
        if type(seen) is str and seen:
            self.by_id[seen] = canonical
        self.open_calls.append((fc["name"], canonical))
        return ToolCallPart(canonical, fc["name"], orjson.dumps(args).decode())

    def result(self, fr: object, path: str) -> ToolResultPart:
        if type(fr) is not dict or type(fr.get("name")) is not str or not fr["name"]:
            raise _fail(f"{path}.name", "must be a non-empty string")
        name = fr["name"]
        rid = fr.get("id")
        canonical = self.by_id.get(rid) if type(rid) is str else None
        if canonical is None:  # Gemini's own pairing: the earliest unanswered call of that name
            canonical = next((c for n, c in self.open_calls if n == name), None)
        if canonical is None:
            raise _fail(path, f"answers no earlier functionCall named '{name[:80]}'")
        self.open_calls = [(n, c) for n, c in self.open_calls if c != canonical]
        resp = fr.get("response", {})
        if type(resp) is not dict:
            raise _fail(f"{path}.response", "must be an object")
        # {"output": ...} / {"error": ...} is the documented convention; anything else goes as JSON.
        err = "error" in resp and "output" not in resp
        body = resp.get("error" if err else "output", resp) if len(resp) == 1 else resp
        text = body if type(body) is str else orjson.dumps(body).decode()
        return ToolResultPart(canonical, [TextPart(text)], is_error=err, name=name)


def _system(v: object) -> list[TextPart]:
    if v is None:
        return []
    if type(v) is str:
        return [TextPart(v)]
    if type(v) is not dict or type(v.get("parts")) is not list:
        raise _fail("systemInstruction", "must be a Content with 'parts'")
    out = []
    for j, p in enumerate(v["parts"]):
        if type(p) is not dict or type(p.get("text")) is not str:
            raise _fail(f"systemInstruction.parts[{j}].text", "must be a string (text parts only)")
        out.append(TextPart(p["text"]))
    return out


def _tools(ts: object, d: _Decoder) -> list[Tool] | None:
    if ts is None:
        return None
    if type(ts) is not list:
        raise _fail("tools", "must be an array of Tool")
    out = []
    for i, t in enumerate(ts):
        if type(t) is not dict:
            raise _fail(f"tools[{i}]", "must be a Tool object")
        for k, v in t.items():
            if k not in ("functionDeclarations", "function_declarations"):
                d.mark(f"tools[{i}].{k}")  # googleSearch, codeExecution, urlContext ...: Gemini runs them
                continue
            if type(v) is not list:
                raise _fail(f"tools[{i}].functionDeclarations", "must be an array")
            for j, fd in enumerate(v):
                out.append(_declaration(fd, f"tools[{i}].functionDeclarations[{j}]"))
    return out or None


def _declaration(fd: object, path: str) -> Tool:
    if type(fd) is not dict or type(fd.get("name")) is not str or not fd["name"]:
        raise _fail(f"{path}.name", "must be a non-empty string")
    desc = fd.get("description")
    if desc is not None and type(desc) is not str:
        raise _fail(f"{path}.description", "must be a string")
    schema = _get(fd, "parametersJsonSchema")
    if schema is None:
        schema = json_schema(fd["parameters"]) if fd.get("parameters") is not None else None
    if schema is None:
        schema = {"type": "object", "properties": {}}
    if type(schema) is not dict:
        raise _fail(f"{path}.parameters", "must be a schema object")
    check_depth(schema, f"{path}.parameters")
    return Tool(fd["name"], desc, schema)


def _tool_choice(v: object, tools: list[Tool] | None) -> tuple[ToolChoice | None, list[Tool] | None]:
    if v is None:
        return None, tools
    fcc = _get(v, "functionCallingConfig") if type(v) is dict else None
    if type(fcc) is not dict:
        return None, tools
    mode = str(fcc.get("mode") or "AUTO").upper()
    names = _get(fcc, "allowedFunctionNames")
    if mode == "NONE":
        return ToolChoice("none"), tools
    if mode in ("AUTO", "MODE_UNSPECIFIED"):
        return ToolChoice("auto"), tools
    if mode not in ("ANY", "VALIDATED"):
        raise _fail("toolConfig.functionCallingConfig.mode", "must be AUTO, ANY, VALIDATED or NONE")
    if names:
        if type(names) is not list or any(type(n) is not str for n in names):
            raise _fail("toolConfig.functionCallingConfig.allowedFunctionNames", "must be an array of names")
        unknown = [n for n in names if not tools or all(t.name != n for t in tools)]
        if unknown:
            raise _fail("toolConfig.functionCallingConfig.allowedFunctionNames",
                        f"names '{unknown[0][:80]}', which is not declared in 'tools'")
        tools = [t for t in tools or () if t.name in names]  # only those may be called: exactly so
        if mode == "VALIDATED":
            return ToolChoice("auto"), tools
        if len(tools) == 1:
            return ToolChoice("tool", tools[0].name), tools
    if mode == "VALIDATED":  # calls or text, the calls held to their schemas: auto, not forced
        return ToolChoice("auto"), tools
    if not tools:
        raise _fail("toolConfig.functionCallingConfig.mode", "ANY needs function declarations in 'tools'")
    return ToolChoice("required"), tools


def _config(c: object, d: _Decoder) -> dict:
    if c is None:
        return {}
    if type(c) is not dict:
        raise _fail("generationConfig", "must be an object")
    out: dict = {}
    n = _get(c, "candidateCount")
    if n not in (None, 1):
        raise Unsupported("generationConfig.candidateCount: only 1 candidate is served (the gateway routes and "
                          "accounts one)", param="generationConfig.candidateCount")
    for key, field, lo, hi in (("temperature", "temperature", 0, 2), ("topP", "top_p", 0, 1)):
        v = _get(c, key)
        if v is not None:
            if type(v) not in (int, float) or not lo <= v <= hi:
                raise _fail(f"generationConfig.{key}", f"must be a number between {lo} and {hi}")
            out[field] = float(v)
    mt = _get(c, "maxOutputTokens")
    if mt is not None:
        if type(mt) is not int or mt < 1:
            raise _fail("generationConfig.maxOutputTokens", "must be a positive integer")
        out["max_tokens"] = mt
    stop = _get(c, "stopSequences")
    if stop is not None:
        if type(stop) is not list or any(type(s) is not str for s in stop):
            raise _fail("generationConfig.stopSequences", "must be an array of strings")
        out["stop"] = stop or None
    mime = _get(c, "responseMimeType")
    js, schema = _get(c, "responseJsonSchema"), _get(c, "responseSchema")
    if mime == "application/json" or js is not None or schema is not None:
        sch = js if js is not None else (json_schema(schema) if schema is not None else None)
        if sch is not None:
            if type(sch) is not dict:
                raise _fail("generationConfig.responseJsonSchema", "must be a schema object")
            check_depth(sch, "generationConfig.responseJsonSchema")
            out["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": sch}}
        else:
            out["response_format"] = {"type": "json_object"}
    elif mime not in (None, "text/plain"):
        d.mark(f"generationConfig.responseMimeType ({str(mime)[:40]})")
    mods = _get(c, "responseModalities")
    if mods is not None and any(str(m).upper() != "TEXT" for m in mods or ()):
        d.mark("generationConfig.responseModalities")
    for k in ("speechConfig", "imageConfig", "routingConfig"):
        if _get(c, k) is not None:
            d.mark(f"generationConfig.{k}")
    think = _get(c, "thinkingConfig")
    if type(think) is dict:
        level, budget = _get(think, "thinkingLevel"), _get(think, "thinkingBudget")
        if type(level) is str and level.lower() in _EFFORT_LEVELS:
            out["reasoning_effort"] = _EFFORT_LEVELS[level.lower()]
        elif type(budget) is int and budget >= 0:
            out["reasoning_effort"] = ("none" if budget == 0 else "low" if budget <= 1024
                                       else "medium" if budget <= 8192 else "high")
    return out


def decode(body: object, model: str, stream: bool) -> ChatRequest:
    if type(body) is not dict:
        raise InvalidRequest("the request body must be a JSON object")
    d = _Decoder()
    d.contents(body.get("contents"))
    if not d.messages and d.native is None:
        raise _fail("contents", "holds no content to answer")
    for k in body:
        if k not in _KNOWN:
            d.mark(str(k)[:60])  # cachedContent, and whatever Google adds next
    tools = _tools(body.get("tools"), d)
    choice, tools = _tool_choice(_get(body, "toolConfig"), tools)
    cfg = _config(_get(body, "generationConfig"), d)
    return ChatRequest(model=model, messages=d.messages, system=_system(_get(body, "systemInstruction")),
                       tools=tools, tool_choice=choice if tools or (choice and choice.mode == "none") else None,
                       stream=stream, include_usage=True, dialect="gemini", raw=body, native_only=d.native, **cfg)


# ---- answers ----------------------------------------------------------------------------------


def _call_part(p: ToolCallPart) -> dict:
    cid, _, sig = p.id.partition(_SIG_SEP)
    try:
        args = orjson.loads(p.arguments) if p.arguments.strip() else {}
    except orjson.JSONDecodeError:
        args = {}
    part: dict = {"functionCall": {"id": cid, "name": p.name, "args": args if type(args) is dict else {}}}
    if sig:
        part["thoughtSignature"] = sig
    return part


def usage_metadata(u: Usage) -> dict:
    """Gemini counts thinking apart from the answer: ``candidatesTokenCount`` excludes it."""
    out = {"promptTokenCount": u.input_tokens, "candidatesTokenCount": u.output_tokens - u.reasoning_tokens,
           "totalTokenCount": u.input_tokens + u.output_tokens}
    if u.cache_read_tokens:
        out["cachedContentTokenCount"] = u.cache_read_tokens
    if u.reasoning_tokens:
        out["thoughtsTokenCount"] = u.reasoning_tokens
    return out


def _response(parts: list[dict], finish: str | None, usage: Usage | None, model: str, rid: str) -> dict:
    cand: dict = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        cand["finishReason"] = finish
    out: dict = {"candidates": [cand], "modelVersion": model, "responseId": rid}
    if usage is not None:
        out["usageMetadata"] = usage_metadata(usage)
    return out


def _rid(rid: str) -> str:
    return rid if rid else base64.urlsafe_b64encode(secrets.token_bytes(12)).decode().rstrip("=")


class GeminiDialect(Dialect):
    kind = "gemini"

    def decode(self, body: object) -> ChatRequest:
        model = body.get("model") if type(body) is dict else None  # the app passes the URL's model instead
        return decode(body, model if type(model) is str else "", False)

    def encode(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        if resp.dialect == "gemini" and type(resp.raw) is dict and resp.raw.get("candidates"):
            return orjson.dumps(resp.raw)  # same wire: grounding, safety ratings and all, as Gemini sent them
        parts: list[dict] = [{"text": p.text} if type(p) is TextPart else _call_part(p) for p in resp.parts]
        finish = _FINISH.get(resp.finish_reason or FinishReason.STOP, "STOP")
        return orjson.dumps(_response(parts, finish, resp.usage, resp.model or req.model, _rid(resp.id)))

    def stream_encoder(self, req: ChatRequest, sse: bool = True) -> GeminiStreamEncoder:
        return GeminiStreamEncoder(req, sse)

    def encode_error(self, err: SwitchmanError) -> bytes:
        msg = err.message
        return orjson.dumps({"error": {"code": err.status, "message": msg, "status": _STATUS.get(err.status, "UNKNOWN")}})


class GeminiStreamEncoder(StreamEncoder):
    """Canonical events as ``GenerateContentResponse`` chunks; a same-wire upstream's own chunks
    (``raw``) pass through once each."""

    def __init__(self, req: ChatRequest, sse: bool = True) -> None:
        self.req = req
        self.sse = sse
        self.model = req.model
        self.rid = ""
        self.calls: dict[int, ToolCallPart] = {}
        self.usage: Usage | None = None
        self.last_raw: dict | None = None
        self.sent = 0
        self.finished = False
        self.finish = "STOP"

    def _out(self, d: dict) -> bytes:
        data = orjson.dumps(d)
        self.sent += 1
        if self.sse:
            return b"data: " + data + b"\r\n\r\n"
        return (b"[" if self.sent == 1 else b",\r\n") + data

    def _flush_calls(self) -> list[dict]:
        parts = [_call_part(self.calls[i]) for i in sorted(self.calls)]
        self.calls.clear()
        return parts

    def encode(self, ev: StreamEvent) -> bytes:
        raw = getattr(ev, "raw", None)
        if type(raw) is dict and self.req.dialect == "gemini":
            if raw is self.last_raw:
                return b""
            self.last_raw = raw
            if type(ev) is Finish:
                self.finished = True
            return self._out(raw)
        t = type(ev)
        if t is Start:
            self.rid = _rid(ev.id)
            self.model = ev.model or self.model
        elif t is TextDelta and ev.text:
            return self._out(_response([{"text": ev.text}], None, None, self.model, self.rid or _rid("")))
        elif t is ToolCallStart:
            self.calls[ev.index] = ToolCallPart(ev.id, ev.name, "")
        elif t is ToolCallDelta and ev.index in self.calls:
            c = self.calls[ev.index]
            c.arguments += ev.arguments
        elif t is UsageEvent:
            self.usage = ev.usage
        elif t is Finish:
            self.finish = _FINISH.get(ev.reason, "STOP")
        return b""

    def close(self) -> bytes:
        out = b""
        if not self.finished:
            self.finished = True
            parts = self._flush_calls()
            out = self._out(_response(parts, self.finish, self.usage, self.model, self.rid or _rid("")))
        return out + (b"" if self.sse else (b"]" if self.sent else b"[]"))

    def error(self, err: SwitchmanError) -> bytes:
        self.finished = True
        body = {"error": {"code": err.status, "message": err.message, "status": _STATUS.get(err.status, "UNKNOWN")}}
        return self._out(body) + (b"" if self.sse else b"]")
