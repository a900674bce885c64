"""The Gemini adapter: Google's ``generateContent`` wire API (the Gemini Developer API).

Reference: https://ai.google.dev/api/generate-content. Requests go to
``{base_url}/v1beta/models/{model}:generateContent``, or ``:streamGenerateContent?alt=sse`` for a
stream, whose every ``data:`` event is a whole ``GenerateContentResponse``. The API key travels in
the ``x-goog-api-key`` header and never in the URL (``?key=`` would put it in every access log).

Two quirks shape this module:

- Gemini 3 models return a ``thoughtSignature`` on a turn's first ``functionCall`` and reject a
  later request whose history lacks it (https://ai.google.dev/gemini-api/docs/thought-signatures).
  The canonical types have no field for it, so it rides on the tool-call id we hand the client
  (``<id>__ts__<signature>``), which every client echoes back verbatim. Where no signature is known
  (history written by another model), the doc's own escape hatch is sent instead.
- Gemini may not give a function call an ``id``; we then make one up (``gcall_<token>_<i>``) and
  never send it back upstream, since Gemini did not issue it.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from ..errors import (
    InvalidRequest,
    Unsupported,
    UpstreamError,
    UpstreamKind,
    UpstreamStatus,
    kind_of_status,
)
from ..providers import auth_headers
from ..types import (
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    ImagePart,
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
from .base import Adapter, StreamDecoder, UpstreamCall, retry_after, checked_usage

if TYPE_CHECKING:
    from ..config import ModelSpec

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"

_SIG_SEP = "__ts__"  # between a tool-call id and the thought signature riding on it
_SYNTH = "gcall_"  # prefix of the tool-call ids we make up when Gemini gives none
# Documented for histories that carry no real signature, e.g. "transferring a trace from a
# different model": https://ai.google.dev/gemini-api/docs/thought-signatures (FAQ).
_SKIP_SIGNATURE = "skip_thought_signature_validator"
# Signatures are base64; the URL-safe alphabet keeps ids within ``[A-Za-z0-9_-]`` (Anthropic's id
# pattern, for when the conversation later falls back there). Protobuf's JSON mapping accepts
# either alphabet for ``bytes`` (https://protobuf.dev/programming-guides/json/), so the URL-safe
# form is sent back as is.
_URLSAFE = str.maketrans("+/", "-_")

# https://ai.google.dev/api/generate-content#FinishReason
_FINISH = {
    "MAX_TOKENS": FinishReason.LENGTH,
    "SAFETY": FinishReason.CONTENT_FILTER,
    "RECITATION": FinishReason.CONTENT_FILTER,
    "BLOCKLIST": FinishReason.CONTENT_FILTER,
    "PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "SPII": FinishReason.CONTENT_FILTER,
    "IMAGE_SAFETY": FinishReason.CONTENT_FILTER,
    "IMAGE_PROHIBITED_CONTENT": FinishReason.CONTENT_FILTER,
    "IMAGE_RECITATION": FinishReason.CONTENT_FILTER,
}

# google.rpc.Code names in ``error.status``: https://ai.google.dev/gemini-api/docs/troubleshooting
_KIND_OF_CODE = {
    "RESOURCE_EXHAUSTED": UpstreamKind.RATE_LIMITED,
    "UNAVAILABLE": UpstreamKind.OVERLOADED,
    "INTERNAL": UpstreamKind.SERVER_ERROR,
    "UNKNOWN": UpstreamKind.SERVER_ERROR,
    # Google's own deadline passed while it worked: the same class of failure as our own timeout
    # (a retry or another model may well answer in time), and a client should see 504 for it.
    # ``origin`` stays upstream, so outlier ejection counts it as the provider's failure.
    "DEADLINE_EXCEEDED": UpstreamKind.TIMEOUT,
    "UNAUTHENTICATED": UpstreamKind.AUTH,
    "PERMISSION_DENIED": UpstreamKind.AUTH,
    "NOT_FOUND": UpstreamKind.NOT_FOUND,
    "INVALID_ARGUMENT": UpstreamKind.BAD_REQUEST,
    "FAILED_PRECONDITION": UpstreamKind.BAD_REQUEST,
    "OUT_OF_RANGE": UpstreamKind.BAD_REQUEST,
}

_IMAGE_EXT = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "gif": "image/gif",
    "heic": "image/heic",
    "heif": "image/heif",
}
_BASE64_MAGIC = (("iVBOR", "image/png"), ("/9j/", "image/jpeg"), ("R0lGOD", "image/gif"), ("UklGR", "image/webp"))


class GeminiAdapter(Adapter):
    """Codec for Google's Gemini ``generateContent`` API."""

    kind = "gemini"

    def build(self, req: ChatRequest, model: ModelSpec) -> UpstreamCall:
        if not model.vision and req.has_images():
            raise Unsupported(f"model '{model.name}' does not accept images", param="messages")
        if req.dialect == "gemini" and req.raw is not None:
            body = _passthrough(req, model)
        else:
            body = {"contents": _contents(req)}
            system = [{"text": p.text} for p in req.system if p.text]
            if system:
                body["systemInstruction"] = {"parts": system}
            if req.tools:
                body["tools"] = [{"functionDeclarations": [_declaration(t) for t in req.tools]}]
                if req.tool_choice is not None:
                    body["toolConfig"] = {"functionCallingConfig": _calling_config(req.tool_choice)}
            config = _generation_config(req, model)
            if config:
                body["generationConfig"] = config

        p = model.provider
        upstream = model.upstream.removeprefix("models/")
        method = ":streamGenerateContent?alt=sse" if req.stream else ":generateContent"
        url = f"{(p.base_url or DEFAULT_BASE_URL).rstrip('/')}/v1beta/models/{upstream}{method}"
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        headers.update(auth_headers(p.auth, p.api_key))
        for k, v in p.headers:
            headers[k] = v
        return UpstreamCall("POST", url, headers, orjson.dumps(body))

    def count_call(self, req: ChatRequest, model: ModelSpec) -> UpstreamCall:
        """``models/{m}:countTokens`` over the whole ``generateContentRequest`` (system prompt and
        tools included, which a bare ``contents`` count would leave out)."""
        call = self.build(replace(req, stream=False), model)
        body = orjson.loads(call.body)
        body["model"] = "models/" + model.upstream.removeprefix("models/")
        url = call.url.replace(":generateContent", ":countTokens")
        return UpstreamCall("POST", url, call.headers, orjson.dumps({"generateContentRequest": body}))

    def parse_count(self, body: bytes) -> int | None:
        try:
            n = orjson.loads(body).get("totalTokens")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return n if type(n) is int and n >= 0 else None

    def parse(self, body: bytes, model: ModelSpec) -> ChatResponse:
        d = _loads(body, model)
        err = d.get("error")
        if type(err) is dict:
            raise _upstream_error(int(err.get("code") or 500), {}, err, body, model)
        ids = _CallIds()
        text: list[str] = []
        calls: list[ToolCallPart] = []
        cands = d.get("candidates")
        logprob = None
        if cands:
            cand = cands[0]
            if type(cand.get("avgLogprobs")) in (int, float):  # Gemini sends it unasked
                logprob = float(cand["avgLogprobs"])
            for part in (cand.get("content") or {}).get("parts") or ():
                fc = part.get("functionCall")
                if fc is not None:
                    calls.append(ids.call(fc, part))
                elif "text" in part and not part.get("thought"):
                    text.append(part["text"])
            reason = cand.get("finishReason")
            finish = _finish(reason, bool(calls)) if reason else None
        else:
            # A prompt blocked before generation answers 200 with ``promptFeedback.blockReason``
            # and no candidates: that is a filter result, not a failure worth retrying elsewhere.
            finish = FinishReason.CONTENT_FILTER if _blocked(d) else FinishReason.OTHER
        parts: list[TextPart | ToolCallPart] = [TextPart("".join(text))] if text else []
        parts.extend(calls)
        usage = d.get("usageMetadata")
        return ChatResponse(
            id=d.get("responseId") or _response_id(),
            model=d.get("modelVersion") or model.upstream,
            parts=parts,
            finish_reason=finish,
            usage=_usage(usage) if usage else None,
            created=int(time.time()),
            dialect=self.kind,
            raw=d,
            logprob=logprob,
        )

    def stream_decoder(self, model: ModelSpec, keep_raw: bool = False) -> StreamDecoder:
        return _GeminiStream(model, keep_raw)

    def error(self, status: int, headers: dict[str, str], body: bytes, model: ModelSpec) -> UpstreamError:
        err = None
        try:
            d = orjson.loads(body)
        except orjson.JSONDecodeError:
            d = None
        if type(d) is list and d:  # the non-SSE stream method wraps its answer in an array
            d = d[0]
        if type(d) is dict and type(d.get("error")) is dict:
            err = d["error"]
        return _upstream_error(status, headers, err, body, model)


class _GeminiStream(StreamDecoder):
    """Each event is a whole ``GenerateContentResponse``; Gemini's SSE has no end marker, so the
    stream is complete once a candidate's ``finishReason`` has been seen."""

    __slots__ = ("_model", "_keep_raw", "_started", "_finished", "_ids")

    def __init__(self, model: ModelSpec, keep_raw: bool) -> None:
        self._model = model
        self._keep_raw = keep_raw
        self._started = False
        self._finished = False
        self._ids = _CallIds()

    @property
    def done(self) -> bool:
        return self._finished

    def feed(self, event: str | None, data: bytes) -> list[StreamEvent]:
        if not data.strip():
            return []
        chunk = _loads(data, self._model)
        err = chunk.get("error")
        if type(err) is dict:  # an error after the stream began comes as an event of its own
            raise _upstream_error(int(err.get("code") or 500), {}, err, data, self._model)
        raw = chunk if self._keep_raw else None
        out: list[StreamEvent] = []
        if not self._started:
            self._started = True
            rid = chunk.get("responseId") or _response_id()
            model = chunk.get("modelVersion") or self._model.upstream
            out.append(Start(rid, model, int(time.time()), raw=raw))
        cands = chunk.get("candidates")
        if cands:
            cand = cands[0]
            ids = self._ids
            for part in (cand.get("content") or {}).get("parts") or ():
                fc = part.get("functionCall")
                if fc is not None:
                    # Calls arrive whole (we never ask for streamed arguments), so each becomes a
                    # start and a single arguments delta.
                    i = ids.n
                    call = ids.call(fc, part)
                    out.append(ToolCallStart(i, call.id, call.name, raw=raw))
                    out.append(ToolCallDelta(i, call.arguments, raw=raw))
                elif "text" in part and not part.get("thought") and part["text"]:
                    out.append(TextDelta(part["text"], raw=raw))
            reason = cand.get("finishReason")
            if reason and not self._finished:
                self._finished = True
                out.append(Finish(_finish(reason, ids.n > 0), raw=raw))
        elif _blocked(chunk) and not self._finished:
            self._finished = True
            out.append(Finish(FinishReason.CONTENT_FILTER, raw=raw))
        usage = chunk.get("usageMetadata")
        if usage:
            out.append(UsageEvent(_usage(usage), raw=raw))
        return out


class _CallIds:
    """Canonical ids for one response's function calls, counting them as it goes."""

    __slots__ = ("n", "_token")

    def __init__(self) -> None:
        self.n = 0
        self._token: str | None = None

    def call(self, fc: dict, part: dict) -> ToolCallPart:
        cid = fc.get("id")
        if not cid:
            if self._token is None:
                self._token = os.urandom(4).hex()
            cid = f"{_SYNTH}{self._token}_{self.n}"
        sig = part.get("thoughtSignature")
        if sig:
            cid = cid + _SIG_SEP + sig.translate(_URLSAFE).rstrip("=")
        self.n += 1
        return ToolCallPart(cid, fc.get("name") or "", orjson.dumps(fc.get("args") or {}).decode())


# ---- request encoding -----------------------------------------------------------------------


def _contents(req: ChatRequest) -> list[dict]:
    names: dict[str, str] = {}  # tool-call id -> function name, from the turns so far
    contents: list[dict] = []
    for m in req.messages:
        role = "model" if m.role is Role.ASSISTANT else "user"
        parts: list[dict] = []
        first_call: dict | None = None
        signed = False
        for p in m.parts:
            t = type(p)
            if t is TextPart:
                if p.text:  # Gemini rejects an empty text part
                    parts.append({"text": p.text})
            elif t is ToolCallPart:
                names[p.id] = p.name
                cid, _, sig = p.id.partition(_SIG_SEP)
                fc: dict = {"name": p.name, "args": _args(p)}
                if not cid.startswith(_SYNTH):
                    fc["id"] = cid
                part = {"functionCall": fc}
                if sig:
                    part["thoughtSignature"] = sig
                    signed = True
                elif first_call is None:
                    first_call = part
                parts.append(part)
            elif t is ToolResultPart:
                _tool_result(p, names, parts)
            elif t is ImagePart:
                parts.append(_image(p))
        if first_call is not None and not signed:
            first_call["thoughtSignature"] = _SKIP_SIGNATURE
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:  # Gemini wants turns to alternate
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return contents


def _passthrough(req: ChatRequest, model: ModelSpec) -> dict:
    """A Gemini client's own body (``dialects/gemini.py``): every field it sent (thought signatures,
    built-in tools, safety settings) reaches Gemini, with the output cap budgets reserved for."""
    body = {k: v for k, v in req.raw.items() if k != "model"}  # type: ignore[union-attr]
    key = "generation_config" if "generation_config" in body else "generationConfig"
    config = dict(body.get(key) or {})
    config.pop("max_output_tokens", None)
    config["maxOutputTokens"] = model.output_cap(req.max_tokens)
    body[key] = config
    return body


def _args(p: ToolCallPart) -> dict:
    a = p.arguments
    if not a or a.isspace():
        return {}
    try:
        v = orjson.loads(a)
    except orjson.JSONDecodeError:
        v = None
    if type(v) is not dict:
        # Gemini's ``args`` is a JSON object; silently rewriting the caller's history would change
        # what the model is told it did, so this is the caller's to fix.
        raise InvalidRequest(f"arguments of tool call '{p.id}' ({p.name}) are not a JSON object", param="messages")
    return v


def _tool_result(p: ToolResultPart, names: dict[str, str], parts: list[dict]) -> None:
    name = p.name or names.get(p.tool_call_id)
    if not name:
        raise InvalidRequest(f"tool result '{p.tool_call_id}' answers no earlier tool call", param="messages")
    text = "".join(c.text for c in p.content if type(c) is TextPart)
    # The doc for FunctionResponse.response: 'Use "output" key to specify function output and
    # "error" key to specify error details' (https://ai.google.dev/api/caching#FunctionResponse).
    fr: dict = {"name": name, "response": {"error" if p.is_error else "output": text}}
    cid = p.tool_call_id.partition(_SIG_SEP)[0]
    if not cid.startswith(_SYNTH):
        fr["id"] = cid
    parts.append({"functionResponse": fr})
    # Images a tool returned go beside its response: ``functionResponse.parts`` is taken by
    # Gemini 3 models only, sibling parts by every model.
    for c in p.content:
        if type(c) is ImagePart:
            parts.append(_image(c))


def _image(p: ImagePart) -> dict:
    if p.data is not None:
        return {"inlineData": {"mimeType": p.media_type or _sniff(p.data), "data": p.data}}
    url = p.url or ""
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        if not header.endswith(";base64"):
            raise Unsupported("image data URLs must be base64-encoded", param="messages")
        return {"inlineData": {"mimeType": header[:-7] or _sniff(data), "data": data}}
    if url.startswith(("https://", "http://", "gs://")):
        # Gemini fetches public and signed URLs itself (https://ai.google.dev/gemini-api/docs/
        # file-input-methods). The MIME type is sent when known, else Gemini infers it.
        fd = {"fileUri": url}
        path = url.partition("?")[0].partition("#")[0]
        mime = p.media_type or _IMAGE_EXT.get(path.rpartition(".")[2].lower())
        if mime:
            fd["mimeType"] = mime
        return {"fileData": fd}
    raise Unsupported("images must be https URLs, gs:// URIs or base64 data", param="messages")


def _sniff(b64: str) -> str:
    for magic, mime in _BASE64_MAGIC:
        if b64.startswith(magic):
            return mime
    raise InvalidRequest("an inline image needs its media type", param="messages")


def _declaration(t: Tool) -> dict:
    d: dict = {"name": t.name}
    if t.description:
        d["description"] = t.description
    if t.parameters:
        # ``parametersJsonSchema`` takes full JSON Schema ($ref, anyOf, additionalProperties, type
        # arrays), which is what OpenAI and Anthropic clients send; ``parameters`` takes an
        # OpenAPI 3.0 subset and rejects those keys, so using it would mean a lossy translation.
        d["parametersJsonSchema"] = t.parameters
    return d


def _calling_config(tc: ToolChoice) -> dict:
    mode = tc.mode
    if mode == "auto":
        return {"mode": "AUTO"}
    if mode == "none":
        return {"mode": "NONE"}
    if mode == "required":
        return {"mode": "ANY"}
    if mode == "tool" and tc.name:
        return {"mode": "ANY", "allowedFunctionNames": [tc.name]}
    raise InvalidRequest(f"unknown tool_choice '{mode}'", param="tool_choice")


def _generation_config(req: ChatRequest, model: ModelSpec) -> dict:
    c: dict = {}
    if req.temperature is not None:
        c["temperature"] = req.temperature
    if req.top_p is not None:
        c["topP"] = req.top_p
    c["maxOutputTokens"] = model.output_cap(req.max_tokens)  # the cap budgets reserved for
    if req.stop:
        c["stopSequences"] = req.stop
    rf = req.response_format
    if rf:
        kind = rf.get("type")
        if kind == "json_object":
            c["responseMimeType"] = "application/json"
        elif kind == "json_schema":
            c["responseMimeType"] = "application/json"
            schema = (rf.get("json_schema") or {}).get("schema")
            if schema is not None:
                # ``responseJsonSchema`` takes full JSON Schema, as the client wrote it; the older
                # ``responseSchema`` takes the OpenAPI subset (same reason as for tools).
                c["responseJsonSchema"] = schema
        elif kind not in (None, "text"):
            raise Unsupported(f"response_format '{kind}' is not supported by Gemini", param="response_format")
    if req.reasoning_effort:  # a Responses client's reasoning.effort, as a thinking budget in tokens
        c["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGET.get(req.reasoning_effort, -1)}
    return c


# reasoning.effort -> thinkingBudget (ai.google.dev/gemini-api/docs/thinking: 0 turns thinking off
# where the model allows it, -1 lets the model decide); the budgets follow OpenAI's rough scale.
_THINKING_BUDGET = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}


# ---- response decoding ----------------------------------------------------------------------


def _finish(reason: str, saw_call: bool) -> FinishReason:
    if reason == "STOP":  # Gemini says STOP for a matched stop sequence and for function calls too
        return FinishReason.TOOL_CALLS if saw_call else FinishReason.STOP
    return _FINISH.get(reason, FinishReason.OTHER)


def _blocked(d: dict) -> bool:
    fb = d.get("promptFeedback")
    return bool(fb and fb.get("blockReason"))


@checked_usage
def _usage(u: dict) -> Usage:
    thoughts = u.get("thoughtsTokenCount") or 0
    return Usage(
        # promptTokenCount already includes cached tokens (the canonical convention).
        input_tokens=(u.get("promptTokenCount") or 0) + (u.get("toolUsePromptTokenCount") or 0),
        # Thinking is billed as output (https://ai.google.dev/gemini-api/docs/pricing) but is not
        # part of candidatesTokenCount.
        output_tokens=(u.get("candidatesTokenCount") or 0) + thoughts,
        cache_read_tokens=u.get("cachedContentTokenCount") or 0,
        reasoning_tokens=thoughts,
    )


def _response_id() -> str:
    return "gemini-" + os.urandom(12).hex()


def _loads(body: bytes, model: ModelSpec) -> dict:
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError:
        d = None
    if type(d) is not dict:
        raise UpstreamStatus("Gemini sent a body that is not a JSON object", model=model.name, upstream_status=200)
    return d


# ---- errors ---------------------------------------------------------------------------------


def _upstream_error(status: int, headers: dict[str, str], err: dict | None, body: bytes, model: ModelSpec) -> UpstreamError:
    code = err.get("status") if err else None
    msg = (err.get("message") if err else None) or body[:2000].decode("utf-8", "replace") or f"HTTP {status}"
    kind = _KIND_OF_CODE.get(code) if code else None
    if kind is None:
        kind = kind_of_status(status)
    if kind is UpstreamKind.BAD_REQUEST and err:
        details = err.get("details") or ()
        # A wrong key is 400 INVALID_ARGUMENT, told apart by its google.rpc.ErrorInfo reason.
        if any(type(x) is dict and str(x.get("reason", "")).startswith("API_KEY_") for x in details):
            kind = UpstreamKind.AUTH
        # Gemini has no code for an over-long prompt: it is INVALID_ARGUMENT with "The input token
        # count (N) exceeds the maximum number of tokens allowed (M)." The troubleshooting page
        # (https://ai.google.dev/gemini-api/docs/troubleshooting) lists no distinct status, so
        # the message is the only signal; this is the one place we read it.
        elif "exceeds the maximum number of tokens" in msg:
            kind = UpstreamKind.CONTEXT_WINDOW
    key = model.provider.api_key
    if key and key in msg:  # scrubbed before truncating, so no part of it survives a cut
        msg = msg.replace(key, "[redacted]")
    if len(msg) > 500:
        msg = msg[:500] + "..."
    return UpstreamStatus(
        f"{code or status}: {msg}",
        model=model.name,
        upstream_kind=kind,
        upstream_status=status,
        retry_after=retry_after(headers) or (_retry_delay(err) if err else None),
        code=code,
    )


def _retry_delay(err: dict) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail, whose ``retryDelay`` is a protobuf
    Duration in JSON form such as ``"7s"`` or ``"0.5s"``."""
    for x in err.get("details") or ():
        if type(x) is dict and str(x.get("@type", "")).endswith("google.rpc.RetryInfo"):
            d = x.get("retryDelay")
            if type(d) is str and d.endswith("s"):
                try:
                    return float(d[:-1])
                except ValueError:
                    return None
    return None
