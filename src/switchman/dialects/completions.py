"""The legacy OpenAI Completions API (``POST /v1/completions``), mapped onto chat upstreams.

The prompt becomes one user message, so any route and any upstream serves it; the answer's text
comes back as ``choices[0].text`` (``object: text_completion``), streamed as ``text_completion``
chunks ending in ``data: [DONE]``, with usage (and, streaming, ``stream_options.include_usage``)
as the API gives it (``openai/types/completion.py``, ``completion_choice.py``). What a chat model
cannot do is refused with a 400 naming the field, not ignored: several prompts or token-id
prompts, ``n``/``best_of`` above 1, ``echo``, ``suffix`` and ``logprobs``. ``max_tokens`` defaults
to 16, as the API's does.
"""

from __future__ import annotations

import secrets
import time

import orjson

from ..errors import InvalidRequest, SwitchmanError
from ..sse import frame
from ..types import ChatRequest, ChatResponse, Finish, FinishReason, Message, Role, Start, StreamEvent, TextDelta, \
    TextPart, Usage, UsageEvent
from .base import Dialect, StreamEncoder
from .openai import _error_dict, _number, _stop

_FINISH = {FinishReason.STOP: "stop", FinishReason.LENGTH: "length", FinishReason.CONTENT_FILTER: "content_filter",
           FinishReason.TOOL_CALLS: "stop"}
_REFUSED = {"suffix": "a chat model has no suffix to complete before",
            "echo": "the prompt is not echoed back", "logprobs": "token logprobs are not returned here"}


def _fail(param: str, msg: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}' {msg}", param=param)


def _decode(body: object) -> ChatRequest:
    if type(body) is not dict:
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if type(model) is not str or not model:
        raise _fail("model", "must be a non-empty string")
    prompt = body.get("prompt")
    if type(prompt) is list and len(prompt) == 1 and type(prompt[0]) is str:
        prompt = prompt[0]
    if type(prompt) is list:
        raise _fail("prompt", "must be one string here (several prompts, or token ids, are not served)")
    if type(prompt) is not str or not prompt:
        raise _fail("prompt", "is required: a non-empty string")
    for k in ("n", "best_of"):
        if body.get(k) not in (None, 1):
            raise _fail(k, "must be 1 (one completion per request)")
    for k, why in _REFUSED.items():
        if body.get(k) not in (None, False, 0, ""):
            raise _fail(k, f"is not supported: {why}")
    mt = body.get("max_tokens", 16)
    if mt is not None and (type(mt) is not int or mt < 1):
        raise _fail("max_tokens", "must be a positive integer")
    stream = body.get("stream", False)
    if type(stream) is not bool:
        raise _fail("stream", "must be a boolean")
    so = body.get("stream_options")
    if so is not None and type(so) is not dict:
        raise _fail("stream_options", "must be an object")
    user = body.get("user")
    if user is not None and type(user) is not str:
        raise _fail("user", "must be a string")
    return ChatRequest(model=model, messages=[Message(Role.USER, [TextPart(prompt)])], max_tokens=mt,
                       temperature=_number(body, "temperature", 0.0, 2.0), top_p=_number(body, "top_p", 0.0, 1.0),
                       stop=_stop(body), stream=stream, include_usage=bool(so and so.get("include_usage")),
                       user=user, dialect="completions")


def _usage(u: Usage) -> dict:
    return {"prompt_tokens": u.input_tokens, "completion_tokens": u.output_tokens,
            "total_tokens": u.input_tokens + u.output_tokens}


def _id(rid: str) -> str:
    return "cmpl-" + (rid.split("-", 1)[-1] if rid else secrets.token_hex(12))


class CompletionsDialect(Dialect):
    kind = "completions"

    def decode(self, body: object) -> ChatRequest:
        return _decode(body)

    def encode(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        out = {"id": _id(resp.id), "object": "text_completion", "created": resp.created or int(time.time()),
               "model": resp.model or req.model,
               "choices": [{"text": resp.text(), "index": 0, "logprobs": None,
                            "finish_reason": _FINISH.get(resp.finish_reason, "stop")}]}  # type: ignore[arg-type]
        if resp.usage is not None:
            out["usage"] = _usage(resp.usage)
        return orjson.dumps(out)

    def stream_encoder(self, req: ChatRequest) -> CompletionsStreamEncoder:
        return CompletionsStreamEncoder(req.model, req.include_usage)

    def encode_error(self, err: SwitchmanError) -> bytes:
        return orjson.dumps({"error": _error_dict(err)})


class CompletionsStreamEncoder(StreamEncoder):
    """Canonical events as ``text_completion`` chunks; usage last, when asked for."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = ""
        self.created = 0
        self.usage: Usage | None = None
        self.ended = False

    def _chunk(self, text: str, finish: str | None = None, usage: Usage | None = None) -> bytes:
        if not self.id:
            self.id, self.created = _id(""), int(time.time())
        d: dict = {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                   "choices": [] if usage is not None else
                   [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}]}
        if usage is not None:
            d["usage"] = _usage(usage)
        return frame(orjson.dumps(d))

    def encode(self, ev: StreamEvent) -> bytes:
        t = type(ev)
        if t is Start:
            self.id, self.created = _id(ev.id), ev.created or int(time.time())
            if ev.model:
                self.model = ev.model
            return b""
        if t is TextDelta:
            return self._chunk(ev.text) if ev.text else b""
        if t is Finish:
            return self._chunk("", _FINISH.get(ev.reason, "stop"))
        if t is UsageEvent:
            self.usage = ev.usage
        return b""

    def close(self) -> bytes:
        if self.ended:
            return b""
        self.ended = True
        tail = self._chunk("", usage=self.usage) if self.include_usage and self.usage is not None else b""
        return tail + b"data: [DONE]\n\n"

    def error(self, err: SwitchmanError) -> bytes:
        self.ended = True
        return frame(orjson.dumps({"error": _error_dict(err)})) + b"data: [DONE]\n\n"
