"""The OpenAI Chat Completions adapter: ``POST {base_url}/chat/completions``, for OpenAI itself
and every server that speaks its wire API (Azure OpenAI, vLLM, Ollama, TGI, Groq, Together,
DeepSeek, Mistral, OpenRouter, ...). They differ by data (base URL, auth style), not code paths.

Wire shapes follow the installed ``openai`` SDK's ``types/chat/`` (``completion_create_params``,
``ChatCompletion``, ``ChatCompletionChunk``) and ``types/completion_usage.py``. Compatible servers'
known deviations are handled where they are read, each with its source.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import TYPE_CHECKING

import orjson

from ..errors import (
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

__all__ = ["OpenAIAdapter", "OpenAIStreamDecoder"]

# OpenAI ``finish_reason`` -> canonical. ``function_call`` is the deprecated form of tool_calls.
_FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
    "content_filter": FinishReason.CONTENT_FILTER,
}

# Error codes that say more than the status. OpenAI: ``context_length_exceeded`` (400);
# ``content_policy_violation`` (OpenAI's moderation); Azure: ``content_filter`` (400, with an
# ``innererror.code`` of ResponsibleAIPolicyViolation; learn.microsoft.com/azure/ai-foundry/
# openai/concepts/content-filter). ``insufficient_quota`` comes with status 429 but is a billing
# failure ("You exceeded your current quota, please check your plan and billing details"):
# waiting does not cure it, so it must not be retried as a rate limit. The nearest kind is AUTH:
# this account cannot be used until a person acts, and it is not the client's fault.
# ``credit_balance_exhausted`` (prepaid balance at zero; listed in developersdigest.tech's OpenAI
# error reference as "Retry? No") and ``billing_hard_limit_reached`` are the same failure.
_CODE_KINDS = {
    "context_length_exceeded": UpstreamKind.CONTEXT_WINDOW,
    "content_filter": UpstreamKind.CONTENT_FILTER,
    "content_policy_violation": UpstreamKind.CONTENT_FILTER,
    "ResponsibleAIPolicyViolation": UpstreamKind.CONTENT_FILTER,
    "insufficient_quota": UpstreamKind.AUTH,
    "credit_balance_exhausted": UpstreamKind.AUTH,
    "billing_hard_limit_reached": UpstreamKind.AUTH,
    "invalid_api_key": UpstreamKind.AUTH,
    "model_not_found": UpstreamKind.NOT_FOUND,
}

# Anything that looks like a secret key, scrubbed from vendor messages: OpenAI's 401 message
# quotes the key it got, partly masked ("Incorrect API key provided: sk-proj-****abcd").
_KEYLIKE = re.compile(r"\b(?:sk|pk|key|rk)-[A-Za-z0-9_\-*]{4,}")
_MESSAGE_CHARS = 300


def _takes_max_completion_tokens(model: ModelSpec) -> bool:
    """OpenAI itself and Azure OpenAI (the only ``api-key`` auth style)."""
    p = model.provider
    return p.auth == "api-key" or (p.kind == "openai" and "api.openai.com" in p.base_url)


def _url(model: ModelSpec) -> str:
    p = model.provider
    base = p.base_url.rstrip("/")
    if p.auth == "api-key" and p.api_version:
        # Azure OpenAI's versioned API: the deployment is in the path and the version in the query
        # (learn.microsoft.com/azure/ai-foundry/openai/reference). Its v1 API (base URL ending in
        # /openai/v1, no api-version) takes the plain OpenAI path below, the deployment as "model".
        return f"{base}/openai/deployments/{model.upstream}/chat/completions?api-version={p.api_version}"
    return base + "/chat/completions"


def _headers(req: ChatRequest, model: ModelSpec) -> dict[str, str]:
    p = model.provider
    h = {"content-type": "application/json", "accept-encoding": "identity"}
    if req.dialect == "openai" and req.passthrough_headers:
        h.update(req.passthrough_headers)
    for k, v in p.headers:
        h[k.lower()] = v
    h.update(auth_headers(p.auth, p.api_key))
    return h


# ---- request ----------------------------------------------------------------------------------


def _image(p: ImagePart) -> dict:
    url = p.url if p.url is not None else f"data:{p.media_type or 'image/png'};base64,{p.data}"
    iu = {"url": url}
    if p.detail:
        iu["detail"] = p.detail
    return {"type": "image_url", "image_url": iu}


def _content(parts: list) -> str | list[dict]:
    """One text part as a plain string (what every compatible server accepts), else parts."""
    if len(parts) == 1 and type(parts[0]) is TextPart:
        return parts[0].text
    return [{"type": "text", "text": p.text} if type(p) is TextPart else _image(p) for p in parts]


def _messages(req: ChatRequest) -> list[dict]:
    out: list[dict] = []
    if req.system:
        out.append({"role": "system", "content": "\n\n".join(p.text for p in req.system)})
    for m in req.messages:
        if m.role is Role.ASSISTANT:
            text = [p.text for p in m.parts if type(p) is TextPart]
            calls = [
                {"id": p.id, "type": "function", "function": {"name": p.name, "arguments": p.arguments or "{}"}}
                for p in m.parts
                if type(p) is ToolCallPart
            ]
            msg: dict = {"role": "assistant", "content": "".join(text) if text or not calls else None}
            if calls:
                msg["tool_calls"] = calls
            out.append(msg)
            continue
        rest: list = []
        for p in m.parts:
            if type(p) is ToolResultPart:
                # Tool results are "tool" messages, which must directly follow the assistant's
                # calls; so they go first, the user's own parts after them. A tool message holds
                # only text, so a result's images follow in a user message.
                text = "".join(c.text for c in p.content if type(c) is TextPart)
                out.append({"role": "tool", "tool_call_id": p.tool_call_id, "content": text})
                rest.extend(c for c in p.content if type(c) is ImagePart)
            else:
                rest.append(p)
        if rest:
            out.append({"role": "user", "content": _content(rest)})
    return out


def cache_key(req: ChatRequest, model: ModelSpec) -> str | None:
    """A ``prompt_cache_key`` for OpenAI itself (not compatible servers, which may refuse the
    field): requests sharing a prefix (the episode, else the system prompt and tools, else the
    first message) reach the same cache machine. Only for prompts OpenAI caches at all (1,024+ tokens)."""
    if model.provider.kind != "openai" or model.prompt_cache == "off" or req.estimated_tokens() < 1024:
        return None
    if req.episode:
        basis = b"episode\0" + req.episode.encode()
    elif req.system or req.tools:  # the prefix conversations share
        basis = orjson.dumps([[p.text for p in req.system], [t.name for t in req.tools or ()]])
    else:  # a conversation's own: its first message
        basis = orjson.dumps([getattr(p, "text", "") for p in (req.messages[0].parts if req.messages else [])])
    return "sm-" + hashlib.sha256(basis).hexdigest()[:32]


def _encode(req: ChatRequest, model: ModelSpec) -> dict:
    body: dict = {"model": model.upstream, "messages": _messages(req)}
    if req.tools:
        tools = []
        for t in req.tools:
            fn: dict = {"name": t.name, "parameters": t.parameters}
            if t.description is not None:
                fn["description"] = t.description
            if t.strict is not None:
                fn["strict"] = t.strict
            tools.append({"type": "function", "function": fn})
        body["tools"] = tools
    tc = req.tool_choice
    if tc is not None:
        if tc.mode == "tool":
            body["tool_choice"] = {"type": "function", "function": {"name": tc.name}}
        else:
            body["tool_choice"] = tc.mode
        if tc.parallel is not None and req.tools:
            body["parallel_tool_calls"] = tc.parallel
    # Always a cap, the one budgets reserved for (money probe F3: with none, a model could write
    # past what was reserved). OpenAI deprecated max_tokens for max_completion_tokens, which its
    # reasoning models require (completion_create_params.py); Azure's current API versions take it
    # too. Most compatible servers document only max_tokens (Ollama, TGI, older vLLM): they get that.
    body["max_completion_tokens" if _takes_max_completion_tokens(model) else "max_tokens"] = model.output_cap(req.max_tokens)
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop:
        body["stop"] = req.stop
    if req.response_format is not None:
        body["response_format"] = req.response_format
    if req.user:
        body["user"] = req.user
    if req.logprobs:
        body["logprobs"] = True
    if req.reasoning_effort:  # a Responses client's reasoning.effort ("max" is Anthropic's word for xhigh)
        body["reasoning_effort"] = "xhigh" if req.reasoning_effort == "max" else req.reasoning_effort
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _passthrough(req: ChatRequest, model: ModelSpec) -> dict:
    """The client's own body, model replaced: every field it sent reaches the upstream."""
    body = dict(req.raw)  # type: ignore[arg-type]
    body["model"] = model.upstream
    # the output cap budgets reserved for, in the field the client used (else the model's own)
    cap = model.output_cap(req.max_tokens)
    if "max_completion_tokens" in body or "max_tokens" in body:
        for k in ("max_completion_tokens", "max_tokens"):
            if k in body:
                body[k] = cap
    else:
        body["max_completion_tokens" if _takes_max_completion_tokens(model) else "max_tokens"] = cap
    if req.logprobs:
        body["logprobs"] = True
    if req.stream:
        body["stream"] = True
        # Always ask for usage, to account cost; the dialect shows it only to clients that asked.
        so = body.get("stream_options")
        body["stream_options"] = {**so, "include_usage": True} if type(so) is dict else {"include_usage": True}
    else:
        body.pop("stream", None)
        body.pop("stream_options", None)
    return body


# ---- response ---------------------------------------------------------------------------------


@checked_usage
def _usage(u: dict) -> Usage:
    ptd = u.get("prompt_tokens_details")
    ctd = u.get("completion_tokens_details")
    cached = cache_write = reasoning = 0
    if type(ptd) is dict:
        cached = ptd.get("cached_tokens") or 0
        cache_write = ptd.get("cache_write_tokens") or 0
    if not cached:
        # DeepSeek reports cache hits at top level (api-docs.deepseek.com/guides/kv_cache).
        cached = u.get("prompt_cache_hit_tokens") or 0
    if type(ctd) is dict:
        reasoning = ctd.get("reasoning_tokens") or 0
    return Usage(
        input_tokens=u.get("prompt_tokens") or 0,
        output_tokens=u.get("completion_tokens") or 0,
        cache_read_tokens=cached,
        cache_write_tokens=cache_write,
        reasoning_tokens=reasoning,
    )


def _mean_logprob(lp: object) -> float | None:
    """The mean of ``choices[0].logprobs.content[].logprob``, when the upstream sent them."""
    content = lp.get("content") if type(lp) is dict else None
    if type(content) is not list:
        return None
    vals = [t["logprob"] for t in content if type(t) is dict and type(t.get("logprob")) in (int, float)]
    return sum(vals) / len(vals) if vals else None


def _finish(choice: dict) -> tuple[FinishReason | None, str | None]:
    fr = choice.get("finish_reason")
    if not fr:
        return None, None
    # vLLM names the stop string that matched in ``stop_reason`` (an int is a stop token id).
    sr = choice.get("stop_reason")
    if fr == "stop" and type(sr) is str:
        return FinishReason.STOP_SEQUENCE, sr
    return _FINISH.get(fr, FinishReason.OTHER), None


def _arguments(a: object) -> str:
    if a is None:
        return ""
    if type(a) is str:
        return a
    return orjson.dumps(a).decode()  # some servers send the arguments object itself, not its JSON


def _bad_body(model: ModelSpec, what: str) -> UpstreamStatus:
    return UpstreamStatus(
        f"unreadable answer from upstream: {what}",
        model=model.name,
        upstream_kind=UpstreamKind.SERVER_ERROR,
        upstream_status=200,
        code="malformed_response",
    )


def json_object(body: bytes, model: ModelSpec) -> dict:
    """A success body as a JSON object, else an unreadable-answer error."""
    try:
        d = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _bad_body(model, "not JSON") from None
    if type(d) is not dict:
        raise _bad_body(model, "not an object")
    return d


def _redact(msg: str, model: ModelSpec) -> str:
    key = model.provider.api_key
    if key and key in msg:
        msg = msg.replace(key, "***")
    return _KEYLIKE.sub("***", msg)


def _classify(e: object, status: int | None, model: ModelSpec, ra: float | None) -> UpstreamError:
    """An OpenAI-style error object (``{"message", "type", "param", "code"}``) as ours. ``status``
    is None for an error sent inside a stream, where only the object says what went wrong."""
    if type(e) is dict:
        msg = e.get("message") if type(e.get("message")) is str else ""
        code = e.get("code")
        etype = e.get("type") if type(e.get("type")) is str else None
        inner = e.get("innererror")
        inner_code = inner.get("code") if type(inner) is dict else None
    else:  # some servers send {"error": "text"}
        msg, code, etype, inner_code = (e if type(e) is str else ""), None, None, None
    code = code if type(code) is str else None  # vLLM puts the HTTP status here, as an int
    kind = _CODE_KINDS.get(code or "") or _CODE_KINDS.get(etype or "") or _CODE_KINDS.get(inner_code or "")
    if kind is None:
        if status is not None:
            kind = kind_of_status(status)
        elif etype in ("rate_limit_error", "tokens", "requests"):
            kind = UpstreamKind.RATE_LIMITED
        elif etype in ("invalid_request_error", "BadRequestError"):
            kind = UpstreamKind.BAD_REQUEST
        else:  # mid-stream, OpenAI sends type "server_error"
            kind = UpstreamKind.SERVER_ERROR
    label = code or etype or (f"HTTP {status}" if status else "error")
    text = _redact(msg, model)
    if len(text) > _MESSAGE_CHARS:
        text = text[:_MESSAGE_CHARS] + "..."
    where = f"upstream {status}" if status else "upstream stream error"
    return UpstreamStatus(
        f"{model.name}: {where} {label}: {text}" if text else f"{model.name}: {where} {label}",
        model=model.name,
        upstream_kind=kind,
        upstream_status=status,
        retry_after=ra,
        code=code or etype,
    )


class OpenAIAdapter(Adapter):
    """The codec for OpenAI's Chat Completions API and the servers compatible with it."""

    kind = "openai"

    def build(self, req: ChatRequest, model: ModelSpec) -> UpstreamCall:
        """Same-kind requests go as the client wrote them (model replaced, usage requested when
        streaming); others are encoded from canonical. Raises ``Unsupported`` for images to a
        text-only model."""
        if not model.vision and req.has_images():
            raise Unsupported(f"model '{model.name}' does not accept images", param="messages")
        body = self.body(req, model)
        key = cache_key(req, model)
        if key is not None and "prompt_cache_key" not in body:
            body["prompt_cache_key"] = key
            if req.prompt_retention and "prompt_cache_retention" not in body:
                body["prompt_cache_retention"] = req.prompt_retention
        return UpstreamCall("POST", self.url(model), _headers(req, model), orjson.dumps(body))

    def body(self, req: ChatRequest, model: ModelSpec) -> dict:
        """The request body: the client's own when it speaks this API, else encoded from canonical."""
        return _passthrough(req, model) if req.dialect == "openai" and req.raw is not None else _encode(req, model)

    def url(self, model: ModelSpec) -> str:
        return _url(model)

    def parse(self, body: bytes, model: ModelSpec) -> ChatResponse:
        d = json_object(body, model)
        if d.get("error"):  # some compatible servers answer 200 with an error object
            raise _classify(d["error"], None, model, None)
        choices = d.get("choices")
        if type(choices) is not list or not choices or type(choices[0]) is not dict:
            raise _bad_body(model, "no choices")
        choice = choices[0]
        msg = choice.get("message")
        if type(msg) is not dict:
            raise _bad_body(model, "no message")
        parts: list[TextPart | ToolCallPart] = []
        content = msg.get("content")
        if type(content) is str and content:
            parts.append(TextPart(content))
        elif type(msg.get("refusal")) is str:
            # A refusal is the model's answer: a client of another dialect sees it as text.
            parts.append(TextPart(msg["refusal"]))
        tcs = msg.get("tool_calls")
        if type(tcs) is list:
            for i, tc in enumerate(tcs):
                if type(tc) is not dict:
                    continue
                fn = tc.get("function") or {}
                parts.append(ToolCallPart(tc.get("id") or f"call_{i}", fn.get("name") or "", _arguments(fn.get("arguments"))))
        reason, stop_seq = _finish(choice)
        u = d.get("usage")
        return ChatResponse(
            id=d.get("id") or "",
            model=d.get("model") or model.upstream,
            parts=parts,
            finish_reason=reason,
            usage=_usage(u) if type(u) is dict else None,
            stop_sequence=stop_seq,
            created=d.get("created") or 0,
            dialect="openai",
            raw=d,
            logprob=_mean_logprob(choice.get("logprobs")),
        )

    def stream_decoder(self, model: ModelSpec, keep_raw: bool = False) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(model, keep_raw)

    def error(self, status: int, headers: dict[str, str], body: bytes, model: ModelSpec) -> UpstreamError:
        try:
            d = orjson.loads(body)
        except orjson.JSONDecodeError:
            d = None
        if type(d) is dict:
            # OpenAI nests the object under "error"; older vLLM sends it at top level.
            e = d.get("error") if "error" in d else d
            return _classify(e, status, model, retry_after(headers))
        text = _redact(body[:_MESSAGE_CHARS].decode("utf-8", "replace").strip(), model)
        return UpstreamStatus(
            f"{model.name}: upstream {status}: {text or 'no body'}",
            model=model.name,
            upstream_kind=kind_of_status(status),
            upstream_status=status,
            retry_after=retry_after(headers),
        )


# ---- stream -----------------------------------------------------------------------------------


class OpenAIStreamDecoder(StreamDecoder):
    """``chat.completion.chunk`` events as canonical events.

    Tool-call deltas vary by server: OpenAI sends id and name first, then argument fragments;
    others send name and arguments together, or a whole call in one chunk, or repeat the id on
    every fragment, or omit ``index`` (then a new id means a new call, no id the latest call).
    Upstream indexes are renumbered from 0 in order of appearance.

    With ``keep_raw`` every chunk reaches a same-kind client: a chunk with no canonical meaning
    (Azure's content-filter annotations, an empty delta) rides on an empty ``TextDelta``, which
    changes nothing for any consumer. The stream is complete at ``[DONE]``, or once both the
    finish reason and usage have arrived (a few servers close without ``[DONE]``).
    """

    __slots__ = ("_model", "_keep_raw", "_done", "_started", "_finished", "_usage_seen", "_slots", "_ids", "_pending")

    def __init__(self, model: ModelSpec, keep_raw: bool = False) -> None:
        self._model = model
        self._keep_raw = keep_raw
        self._done = False
        self._started = False
        self._finished = False
        self._usage_seen = False
        self._slots: dict[object, int] = {}  # upstream index (or id) -> our index
        self._ids: list[str | None] = []  # per our index: the call's id once started, else None
        self._pending: dict[int, list[str]] = {}  # arguments that came before the call's name

    @property
    def done(self) -> bool:
        return self._done or (self._finished and self._usage_seen)

    def feed(self, event: str | None, data: bytes) -> list[StreamEvent]:
        if data[:6] == b"[DONE]":
            self._done = True
            return []
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise _bad_body(self._model, "a stream chunk is not JSON") from None
        if type(chunk) is not dict:
            raise _bad_body(self._model, "a stream chunk is not an object")
        if chunk.get("error"):
            # OpenAI reports a failure after the stream began as a chunk holding an error object.
            raise _classify(chunk["error"], None, self._model, None)
        raw = chunk if self._keep_raw else None
        evs: list[StreamEvent] = []
        if not self._started:
            self._started = True
            evs.append(Start(chunk.get("id") or "", chunk.get("model") or self._model.upstream, chunk.get("created") or 0, raw))
        choices = chunk.get("choices")
        if choices:
            for choice in choices:
                if type(choice) is dict and not choice.get("index"):  # the first choice; n is 1
                    self._choice(choice, raw, evs)
                    break
        u = chunk.get("usage")
        if u is None:
            # Groq puts usage on the last chunk under ``x_groq`` (console.groq.com/docs/api-reference).
            xg = chunk.get("x_groq")
            u = xg.get("usage") if type(xg) is dict else None
        if type(u) is dict:
            self._usage_seen = True
            evs.append(UsageEvent(_usage(u), raw))
        if not evs and raw is not None:
            evs.append(TextDelta("", raw))
        return evs

    def _choice(self, choice: dict, raw: dict | None, evs: list[StreamEvent]) -> None:
        delta = choice.get("delta")
        if type(delta) is dict:
            text = delta.get("content")
            if type(text) is not str or not text:
                text = delta.get("refusal")  # as in parse(): a refusal reads as text elsewhere
            if type(text) is str and text:
                evs.append(TextDelta(text, raw))
            tcs = delta.get("tool_calls")
            if type(tcs) is list:
                for pos, tc in enumerate(tcs):
                    if type(tc) is dict:
                        self._tool_call(tc, pos, raw, evs)
        if not self._finished:
            reason, stop_seq = _finish(choice)
            if reason is not None:
                self._finished = True
                evs.append(Finish(reason, stop_seq, raw))

    def _slot(self, tc: dict, pos: int) -> int:
        idx = tc.get("index")
        tid = tc.get("id")
        if type(idx) is int:
            key: object = idx
        elif type(tid) is str and tid:
            key = ("id", tid)  # no index: the id tells calls apart
        else:
            return len(self._ids) - 1 if self._ids else pos  # no index, no id: the latest call
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = len(self._ids)
            self._ids.append(None)
        return slot

    def _tool_call(self, tc: dict, pos: int, raw: dict | None, evs: list[StreamEvent]) -> None:
        slot = self._slot(tc, pos)
        while slot >= len(self._ids):
            self._ids.append(None)
        fn = tc.get("function")
        if type(fn) is not dict:
            fn = {}
        args = _arguments(fn.get("arguments"))
        if self._ids[slot] is None:
            name = fn.get("name")
            if type(name) is not str or not name:
                if args:
                    self._pending.setdefault(slot, []).append(args)
                return
            tid = tc.get("id")
            tid = tid if type(tid) is str and tid else "call_" + secrets.token_hex(12)
            self._ids[slot] = tid
            evs.append(ToolCallStart(slot, tid, name, raw))
            early = self._pending.pop(slot, None)
            if early:
                args = "".join(early) + args
        if args:
            evs.append(ToolCallDelta(slot, args, raw))
