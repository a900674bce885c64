"""The Anthropic Messages adapter: ``POST {base_url}/v1/messages``.

Wire shapes follow https://docs.anthropic.com/en/api/messages and the installed ``anthropic``
SDK (``types/``, ``_client.py``, ``_constants.py``); errors follow
https://docs.anthropic.com/en/api/errors and the SDK's ``types/shared/`` error objects.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import orjson

from ..errors import (
    Unsupported,
    UpstreamError,
    UpstreamKind,
    UpstreamStatus,
    kind_of_status,
)
from .. import catalog
from ..providers import auth_headers
from ..types import (
    ChatRequest,
    ChatResponse,
    Finish,
    FinishReason,
    ImagePart,
    Start,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from .base import Adapter, StreamDecoder, UpstreamCall, retry_after, checked_usage

if TYPE_CHECKING:
    from ..config import ModelSpec

__all__ = ["AnthropicAdapter", "AnthropicStreamDecoder", "API_VERSION", "STABLE_API_VERSION"]

# The version the installed SDK sends (anthropic/_constants.py ANTHROPIC_API_VERSION). Under it
# ``temperature``, ``top_p`` and ``top_k`` are gone: the SDK's MessageCreateParams no longer has
# them and the API answers 400 "Extra inputs are not permitted" even for temperature 1.0
# (qiita.com/Synthorai/items/01a0067e88747257a4e6), while the newest models refuse temperature
# under older versions too ("temperature is deprecated for this model", BerriAI/litellm#26444).
# So requests we encode ourselves use it and carry no sampling parameters; an operator who wants
# them pins ``anthropic-version: 2023-06-01`` in the provider's ``headers``.
API_VERSION = "2026-10-21"
# The documented stable version (https://docs.anthropic.com/en/api/versioning). A client body
# passed through raw was written for the client's own version; when the client named none, this
# one accepts every field an older body may carry.
STABLE_API_VERSION = "2023-06-01"
_NO_SAMPLING_SINCE = "2026-10-21"  # ISO dates compare as strings

# Anthropic has no schema-less JSON mode: ``output_config.format`` needs a schema
# (anthropic/types/json_output_format_param.py). OpenAI's json_object becomes an instruction.
_JSON_OBJECT_INSTRUCTION = "Respond with a single JSON object and nothing else."

# Headers a client may never set upstream: ours carry our credentials and framing.
_NEVER_FORWARDED = frozenset(
    {
        "authorization",
        "x-api-key",
        "content-type",
        "content-length",
        "host",
        "accept-encoding",
        "transfer-encoding",
    }
)

_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP_SEQUENCE,
    "max_tokens": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
    "model_context_window_exceeded": FinishReason.CONTEXT_WINDOW,
    "pause_turn": FinishReason.OTHER,
}

# ``error.type`` -> kind (anthropic/types/shared/error_type.py).
_ERROR_KINDS = {
    "invalid_request_error": UpstreamKind.BAD_REQUEST,
    "authentication_error": UpstreamKind.AUTH,
    "permission_error": UpstreamKind.AUTH,
    "billing_error": UpstreamKind.AUTH,
    "not_found_error": UpstreamKind.NOT_FOUND,
    # 413: the body is over Anthropic's byte limit: too big for this model, as 413 is in the core.
    "request_too_large": UpstreamKind.CONTEXT_WINDOW,
    "rate_limit_error": UpstreamKind.RATE_LIMITED,
    "api_error": UpstreamKind.SERVER_ERROR,
    "timeout_error": UpstreamKind.TIMEOUT,
    "overloaded_error": UpstreamKind.OVERLOADED,
}
# The status each type comes with, for an error that arrives inside a 200 stream.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
# ``error.details.error_code`` values (the SDK's "stable code that names the cause",
# anthropic/_exceptions.py) saying our account cannot be used until someone acts: spend caps
# and holds (anthropic/types/shared/*_error_details.py). They come as 429 rate_limit_error, but
# retrying is futile until the cap resets ("Don't retry", learn.microsoft.com/microsoft-cloud/
# dev/dev-proxy/concepts/anthropic-529-overloaded-error): our credentials' problem, like a 401.
_ACCOUNT_BLOCKED = frozenset(
    {
        "enforced_spend_limit_reached",
        "contract_spend_limit_reached",
        "linked_organization_spend_limit_reached",
        "linked_organization_billing_unavailable",
        "organization_on_hold",
    }
)
# Anthropic gives a too-long prompt no code of its own, only invalid_request_error with a message
# such as "prompt is too long: 208327 tokens > 200000 maximum" or (older models) "input length
# and `max_tokens` exceed context limit" (https://docs.anthropic.com/en/api/errors,
# https://docs.anthropic.com/en/docs/build-with-claude/context-windows). So here, and only
# here, the message text decides.
_CONTEXT_WINDOW_TEXTS = ("prompt is too long", "exceed context limit")


# ---- request ----------------------------------------------------------------------------------


def _text_block(p: TextPart) -> dict:
    if p.cache_control is not None:
        return {"type": "text", "text": p.text, "cache_control": p.cache_control}
    return {"type": "text", "text": p.text}


def _media_type(data: str) -> str:
    """Anthropic requires a base64 image's media type; guess it from the magic bytes' base64."""
    if data.startswith("iVBOR"):
        return "image/png"
    if data.startswith("R0lG"):
        return "image/gif"
    if data.startswith("UklGR"):
        return "image/webp"
    return "image/jpeg"


def _image_block(p: ImagePart) -> dict:
    data, mt = p.data, p.media_type
    if data is None and p.url and p.url.startswith("data:"):
        # OpenAI clients inline images as data URLs; Anthropic's url source takes http(s) only.
        head, _, data = p.url.partition(",")
        mt = mt or head[5:].partition(";")[0] or None
    if data is not None:
        source = {"type": "base64", "media_type": mt or _media_type(data), "data": data}
        return {"type": "image", "source": source}
    return {"type": "image", "source": {"type": "url", "url": p.url}}




def _tool_result_block(p: ToolResultPart) -> dict:
    b: dict = {"type": "tool_result", "tool_use_id": p.tool_call_id}
    content = []
    for c in p.content:
        if type(c) is ImagePart:
            content.append(_image_block(c))
        elif c.text:  # Anthropic rejects empty text blocks
            content.append(_text_block(c))
    if content:
        b["content"] = content
    if p.is_error:
        b["is_error"] = True
    return b


def _messages(req: ChatRequest) -> list[dict]:
    """Canonical messages as Anthropic turns: tool calls are assistant blocks, tool results user
    blocks, consecutive same-role turns merged, and empty text left out (Anthropic rejects
    empty text blocks)."""
    out: list[dict] = []
    reorder = False
    for m in req.messages:
        role = m.role.value
        for p in m.parts:
            if type(p) is TextPart:
                if not p.text:
                    continue
                blk, r = _text_block(p), role
            elif type(p) is ImagePart:
                blk, r = _image_block(p), role
            elif type(p) is ToolCallPart:
                blk = {"type": "tool_use", "id": p.id, "name": p.name, "input": p.arguments_object()}
                r = "assistant"
            else:
                blk, r = _tool_result_block(p), "user"
            if out and out[-1]["role"] == r:
                content = out[-1]["content"]
                if blk["type"] == "tool_result" and content[-1]["type"] != "tool_result":
                    reorder = True
                content.append(blk)
            else:
                out.append({"role": r, "content": [blk]})
    if reorder:
        # In a user turn, tool_result blocks must come before any other content
        # (https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use).
        for msg in out:
            c = msg["content"]
            c.sort(key=lambda b: b["type"] != "tool_result")  # stable: keeps each group's order
    return out


def _encode(req: ChatRequest, model: ModelSpec, sampling: bool) -> dict:
    body: dict = {"model": model.upstream}
    system = [_text_block(p) for p in req.system if p.text]
    rf = req.response_format
    if rf:
        schema = (rf.get("json_schema") or {}).get("schema") if rf.get("type") == "json_schema" else None
        if type(schema) is dict:
            # Structured outputs, GA (anthropic/types/output_config_param.py; no beta header).
            body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        elif rf.get("type") in ("json_object", "json_schema"):
            system.append({"type": "text", "text": _JSON_OBJECT_INSTRUCTION})
    if req.reasoning_effort:  # a Responses client's reasoning.effort (output_config_param.py: low..max)
        e = req.reasoning_effort
        body.setdefault("output_config", {})["effort"] = "low" if e in ("none", "minimal") else e
    if system:
        body["system"] = system
    body["messages"] = _messages(req)
    # Required by Anthropic. The cap budgets reserved for (a request over the model's own limit is
    # brought down to it: the client could not know which model it would get).
    body["max_tokens"] = model.output_cap(req.max_tokens)
    if req.tools:
        tools = []
        for t in req.tools:
            d: dict = {"name": t.name, "input_schema": t.parameters or {"type": "object", "properties": {}}}
            if t.description:
                d["description"] = t.description
            if t.strict:
                d["strict"] = True
            tools.append(d)
        body["tools"] = tools
        tc = req.tool_choice
        if tc is not None:
            if tc.mode == "required":
                choice: dict = {"type": "any"}
            elif tc.mode == "tool":
                choice = {"type": "tool", "name": tc.name}
            else:
                choice = {"type": tc.mode}  # auto, none
            if tc.parallel is False and tc.mode != "none":
                choice["disable_parallel_tool_use"] = True
            body["tool_choice"] = choice
    if req.stop:
        body["stop_sequences"] = req.stop
    if sampling:
        if req.temperature is not None:
            # OpenAI's range is 0..2, Anthropic's 0..1: clamp rather than rescale, so the common
            # 0..1 settings keep their meaning and anything hotter is Anthropic's hottest.
            body["temperature"] = min(req.temperature, 1.0)
        if req.top_p is not None:
            body["top_p"] = req.top_p
    if req.user:
        body["metadata"] = {"user_id": req.user}
    if req.stream:
        body["stream"] = True
    return body


# The least prefix Anthropic caches, by model family (platform.claude.com prompt-caching docs, as
# quoted in anthropics/anthropic-sdk-python#1194; below it nothing is cached and no error is raised).
_MIN_CACHE_TOKENS = (("haiku-4-5", 4096), ("opus-4-5", 4096), ("opus-4-6", 4096), ("haiku-3", 2048),
                     ("sonnet-4-6", 2048))
_DEFAULT_MIN_CACHE = 1024


def min_cache_tokens(model: ModelSpec) -> int:
    """The shortest prefix the model's prompt cache takes: the catalog's figure, else by family."""
    e = catalog.lookup(model.upstream)
    if e is not None and e.min_cache_tokens:
        return e.min_cache_tokens
    name = model.upstream
    return next((n for part, n in _MIN_CACHE_TOKENS if part in name), _DEFAULT_MIN_CACHE)


def auto_cache(req: ChatRequest, model: ModelSpec) -> bool:
    """Whether to ask Anthropic to cache this request's prefix (its automatic mode, one top-level
    ``cache_control``): a request to Anthropic itself that carries no breakpoint of the client's,
    has a prefix others will repeat (a system prompt, tools, or earlier turns) and is long enough
    to be cached at all. A cache write costs 1.25x input once; each read after costs 0.1x."""
    if model.provider.kind != "anthropic" or req.cache_marked or model.prompt_cache == "off":
        return False
    if not (req.system or req.tools or len(req.messages) > 1):
        return False
    return req.estimated_tokens() >= min_cache_tokens(model)


def _mark_shared_prefix(body: dict, req: ChatRequest, model: ModelSpec, mark: dict) -> None:
    """A second breakpoint at the end of the system prompt, when it (with the tools) is long enough
    to cache on its own: conversations that share a system prompt then read it from one another's
    cache, where automatic mode alone writes a copy per conversation (its breakpoint moves with
    each turn). Two of Anthropic's four breakpoints; only where the client placed none."""
    chars = sum(len(p.text) for p in req.system) + sum(len(t.name) + len(t.description or "") + len(str(t.parameters))
                                                       for t in req.tools or ())
    system = body.get("system")
    if not system or chars // 4 < min_cache_tokens(model) or not req.messages:
        return
    if isinstance(system, str):
        body["system"] = system = [{"type": "text", "text": system}]
    if isinstance(system, list) and system and isinstance(system[-1], dict):
        system[-1] = {**system[-1], "cache_control": mark}


def _headers(req: ChatRequest, model: ModelSpec, same_kind: bool) -> dict[str, str]:
    p = model.provider
    h = {"content-type": "application/json", "accept-encoding": "identity"}
    h.update(auth_headers(p.auth, p.api_key))
    for k, v in p.headers:
        h[k.lower()] = v
    if same_kind and req.passthrough_headers:
        for k, v in req.passthrough_headers.items():
            if k in _NEVER_FORWARDED:
                continue
            if k == "anthropic-beta" and "anthropic-beta" in h:
                h[k] = h[k] + "," + v
            else:
                h[k] = v  # a client's anthropic-version wins: the body is the client's
    if "anthropic-version" not in h:
        h["anthropic-version"] = STABLE_API_VERSION if same_kind and req.raw is not None else API_VERSION
    return h


# ---- response ---------------------------------------------------------------------------------


@checked_usage
def _usage(u: dict, reasoning: int = 0) -> Usage:
    cr = u.get("cache_read_input_tokens") or 0
    cw = u.get("cache_creation_input_tokens") or 0
    return Usage(
        # Anthropic counts cached input apart from input_tokens; canonical input includes it.
        input_tokens=(u.get("input_tokens") or 0) + cr + cw,
        output_tokens=u.get("output_tokens") or 0,
        cache_read_tokens=cr,
        cache_write_tokens=cw,
        cache_write_1h_tokens=_one_hour_writes(u),
        reasoning_tokens=reasoning,
    )


def _one_hour_writes(u: dict) -> int:
    """Of the cache writes, those for the 1-hour cache (priced at 2x input, the 5-minute ones at
    1.25x): ``usage.cache_creation.ephemeral_1h_input_tokens`` (anthropic/types/cache_creation.py;
    ``cache_creation_input_tokens`` is the 5-minute and 1-hour writes together)."""
    cc = u.get("cache_creation")
    return (cc.get("ephemeral_1h_input_tokens") or 0) if type(cc) is dict else 0


def _thinking_tokens(u: dict) -> int:
    d = u.get("output_tokens_details")
    return (d.get("thinking_tokens") or 0) if type(d) is dict else 0


def _bad_body(model: ModelSpec, what: str) -> UpstreamStatus:
    return UpstreamStatus(
        f"unreadable answer from upstream: {what}",
        model=model.name,
        upstream_kind=UpstreamKind.SERVER_ERROR,
        upstream_status=200,
    )


class AnthropicAdapter(Adapter):
    """The codec for Anthropic's Messages API (and servers that speak it)."""

    kind = "anthropic"

    def build(self, req: ChatRequest, model: ModelSpec) -> UpstreamCall:
        """Same-kind requests are forwarded as the client wrote them (model replaced); others are
        encoded from canonical. Raises ``Unsupported`` for images to a text-only model."""
        if not model.vision and req.has_images():
            raise Unsupported(f"model '{model.name}' does not accept images", param="messages")
        same_kind = req.dialect == "anthropic"
        headers = _headers(req, model, same_kind)
        if same_kind and req.raw is not None:
            body = dict(req.raw)
            body["model"] = model.upstream
            body["max_tokens"] = model.output_cap(req.max_tokens)  # within the model's limit: what was reserved
            if req.stream:
                body["stream"] = True
            else:
                body.pop("stream", None)
        else:
            body = _encode(req, model, headers["anthropic-version"] < _NO_SAMPLING_SINCE)
        if auto_cache(req, model) and "cache_control" not in body:
            mark = {"type": "ephemeral", "ttl": "1h"} if req.prompt_ttl == "1h" else {"type": "ephemeral"}
            body["cache_control"] = mark  # automatic mode: the API places the breakpoint
            _mark_shared_prefix(body, req, model, mark)
        url = model.provider.base_url.rstrip("/") + "/v1/messages"
        return UpstreamCall("POST", url, headers, orjson.dumps(body))

    def count_call(self, req: ChatRequest, model: ModelSpec) -> UpstreamCall:
        """``POST /v1/messages/count_tokens``: the same body without what counting does not take."""
        call = self.build(replace(req, stream=False), model)
        body = orjson.loads(call.body)
        for k in ("max_tokens", "stream", "temperature", "top_p", "top_k", "stop_sequences", "metadata",
                  "service_tier", "cache_control", "thread", "container"):
            body.pop(k, None)
        return UpstreamCall("POST", call.url + "/count_tokens", call.headers, orjson.dumps(body))

    def parse_count(self, body: bytes) -> int | None:
        try:
            n = orjson.loads(body).get("input_tokens")
        except (orjson.JSONDecodeError, AttributeError):
            return None
        return n if type(n) is int and n >= 0 else None

    def parse(self, body: bytes, model: ModelSpec) -> ChatResponse:
        try:
            d = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise _bad_body(model, "not JSON") from None
        if type(d) is not dict or type(d.get("content")) is not list:
            raise _bad_body(model, "no content")
        parts: list[TextPart | ToolCallPart] = []
        for b in d["content"]:
            t = b.get("type")
            if t == "text":
                parts.append(TextPart(b.get("text") or ""))
            elif t == "tool_use":
                args = orjson.dumps(b.get("input") or {}).decode()
                parts.append(ToolCallPart(b.get("id", ""), b.get("name", ""), args))
            # thinking, server tool blocks and later kinds reach same-kind clients via ``raw``.
        u = d.get("usage")
        usage = _usage(u, _thinking_tokens(u)) if type(u) is dict else None
        sr = d.get("stop_reason")
        return ChatResponse(
            id=d.get("id") or "",
            model=d.get("model") or model.upstream,
            parts=parts,
            finish_reason=_FINISH.get(sr, FinishReason.OTHER) if sr else None,
            usage=usage,
            stop_sequence=d.get("stop_sequence"),
            dialect="anthropic",
            raw=d,
        )

    def stream_decoder(self, model: ModelSpec, keep_raw: bool = False) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(model, keep_raw)

    def error(self, status: int, headers: dict[str, str], body: bytes, model: ModelSpec) -> UpstreamError:
        try:
            d = orjson.loads(body)
        except orjson.JSONDecodeError:
            d = None
        e = d.get("error") if type(d) is dict else None
        if type(e) is not dict:
            text = body[:300].decode("utf-8", "replace").strip() or f"HTTP {status}"
            return UpstreamStatus(
                _redact(text, model),
                model=model.name,
                upstream_kind=kind_of_status(status),
                upstream_status=status,
                retry_after=retry_after(headers),
            )
        return _classify(e, status, model, retry_after(headers))


def _redact(msg: str, model: ModelSpec) -> str:
    key = model.provider.api_key
    return msg.replace(key, "***") if key and key in msg else msg


def _classify(e: dict, status: int | None, model: ModelSpec, ra: float | None) -> UpstreamError:
    """One Anthropic error object (``{"type": ..., "message": ..., "details": ...}``) as ours."""
    etype = e.get("type") if type(e.get("type")) is str else None
    msg = e.get("message") if type(e.get("message")) is str else ""
    details = e.get("details")
    code = details.get("error_code") if type(details) is dict else None
    if status is None:
        status = _ERROR_STATUS.get(etype or "", 500)
    if code in _ACCOUNT_BLOCKED:
        kind = UpstreamKind.AUTH
    elif status == 529:
        kind = UpstreamKind.OVERLOADED
    else:
        kind = _ERROR_KINDS.get(etype or "") or kind_of_status(status)
        if kind is UpstreamKind.BAD_REQUEST and any(s in msg for s in _CONTEXT_WINDOW_TEXTS):
            kind = UpstreamKind.CONTEXT_WINDOW
    text = f"{etype}: {msg}" if etype else (msg or f"HTTP {status}")
    return UpstreamStatus(
        _redact(text[:500], model),
        model=model.name,
        upstream_kind=kind,
        upstream_status=status,
        retry_after=ra,
        code=code if type(code) is str else etype,
    )


# ---- stream -----------------------------------------------------------------------------------


class AnthropicStreamDecoder(StreamDecoder):
    """Anthropic's SSE events (https://docs.anthropic.com/en/docs/build-with-claude/streaming)
    as canonical events.

    Tool calls are numbered among tool calls (content block indexes also count text and
    thinking blocks). Usage is cumulative: ``message_start`` gives the input counts,
    ``message_delta`` the output count and, on current models, the final input counts too.

    With ``keep_raw`` every upstream event must reach a same-kind client, including those with
    no canonical meaning (ping, thinking, block stops, message_stop): such an event rides on a
    ``UsageEvent`` repeating the counts known so far, which changes nothing for any consumer.
    """

    __slots__ = ("_model", "_keep_raw", "_done", "_tools", "_ntools", "_in", "_out", "_cr", "_cw", "_cw1h",
                 "_think")

    def __init__(self, model: ModelSpec, keep_raw: bool = False) -> None:
        self._model = model
        self._keep_raw = keep_raw
        self._done = False
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._ntools = 0
        self._in = self._out = self._cr = self._cw = self._cw1h = self._think = 0

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str | None, data: bytes) -> list[StreamEvent]:
        try:
            d = orjson.loads(data) if data else {}
        except orjson.JSONDecodeError:
            raise _bad_body(self._model, f"unparseable {event or 'stream'} event") from None
        if type(d) is not dict:
            return []
        t = d.get("type") or event
        raw = d if self._keep_raw else None
        out: list[StreamEvent] = []
        if t == "content_block_delta":
            delta = d.get("delta") or {}
            dt = delta.get("type")
            if dt == "text_delta":
                if delta.get("text"):
                    out.append(TextDelta(delta["text"], raw))
            elif dt == "input_json_delta":
                ti = self._tools.get(d.get("index"))  # type: ignore[arg-type]
                if ti is not None and delta.get("partial_json"):
                    out.append(ToolCallDelta(ti, delta["partial_json"], raw))
            # thinking_delta, signature_delta, citations_delta: no canonical form
        elif t == "content_block_start":
            b = d.get("content_block") or {}
            bt = b.get("type")
            if bt == "tool_use":
                ti = self._ntools
                self._ntools += 1
                self._tools[d.get("index")] = ti  # type: ignore[index]
                out.append(ToolCallStart(ti, b.get("id", ""), b.get("name", ""), raw))
                if b.get("input"):
                    out.append(ToolCallDelta(ti, orjson.dumps(b["input"]).decode(), raw))
            elif bt == "text" and b.get("text"):
                out.append(TextDelta(b["text"], raw))
        elif t == "message_start":
            m = d.get("message") or {}
            u = m.get("usage") or {}
            self._in = u.get("input_tokens") or 0
            self._cr = u.get("cache_read_input_tokens") or 0
            self._cw = u.get("cache_creation_input_tokens") or 0
            self._cw1h = _one_hour_writes(u)
            self._out = u.get("output_tokens") or 0
            self._think = _thinking_tokens(u)
            out.append(Start(m.get("id") or "", m.get("model") or self._model.upstream, 0, raw))
            out.append(UsageEvent(self._usage(), raw))
        elif t == "message_delta":
            u = d.get("usage") or {}
            self._out = u.get("output_tokens") or self._out
            # Counts here are cumulative totals; optional ones are left out when unchanged.
            if u.get("input_tokens") is not None:
                self._in = u["input_tokens"]
            if u.get("cache_read_input_tokens") is not None:
                self._cr = u["cache_read_input_tokens"]
            if u.get("cache_creation_input_tokens") is not None:
                self._cw = u["cache_creation_input_tokens"]
            if u.get("cache_creation") is not None:  # not sent in deltas today (message_delta_usage.py)
                self._cw1h = _one_hour_writes(u)
            self._think = _thinking_tokens(u) or self._think
            delta = d.get("delta") or {}
            sr = delta.get("stop_reason")
            if sr:
                out.append(Finish(_FINISH.get(sr, FinishReason.OTHER), delta.get("stop_sequence"), raw))
            out.append(UsageEvent(self._usage(), raw))
        elif t == "message_stop":
            self._done = True
        elif t == "error":
            e = d.get("error")
            # An error after the 200 (e.g. overloaded mid-stream): fail the attempt with it.
            raise _classify(e if type(e) is dict else {}, None, self._model, None)
        # ping, content_block_stop and event kinds added later carry nothing canonical.
        if raw is not None and not out:
            out.append(UsageEvent(self._usage(), raw))
        return out

    @checked_usage
    def _usage(self) -> Usage:
        return Usage(
            input_tokens=self._in + self._cr + self._cw,
            output_tokens=self._out,
            cache_read_tokens=self._cr,
            cache_write_tokens=self._cw,
            cache_write_1h_tokens=self._cw1h,
            reasoning_tokens=self._think,
        )
