"""Canonical request, response and stream-event types.

Every dialect decodes into these and every adapter encodes from them, so any client API reaches
any upstream API. Each object may carry ``raw``: the wire dict it was decoded from, so that when
the client's dialect and the upstream's wire API are the same kind, vendor-specific fields pass
through untouched.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Union

import orjson


CHARS_PER_TOKEN = 4  # the rough local estimate where no tokenizer count is at hand


class Role(str, enum.Enum):
    USER = "user"
    ASSISTANT = "assistant"


class FinishReason(str, enum.Enum):
    """Why generation stopped, in the union of the vendors' vocabularies."""

    STOP = "stop"  # natural end of turn
    STOP_SEQUENCE = "stop_sequence"  # a caller's stop sequence matched
    LENGTH = "length"  # max tokens reached
    TOOL_CALLS = "tool_calls"
    CONTENT_FILTER = "content_filter"  # filtered or refused
    CONTEXT_WINDOW = "context_window"  # Anthropic's model_context_window_exceeded
    OTHER = "other"


@dataclass(slots=True)
class TextPart:
    text: str
    cache_control: dict | None = None  # Anthropic prompt-cache marker, carried where possible


@dataclass(slots=True)
class ImagePart:
    """An image by URL or inline base64 ``data`` with its ``media_type``."""

    url: str | None = None
    data: str | None = None
    media_type: str | None = None
    detail: str | None = None


@dataclass(slots=True)
class ToolCallPart:
    id: str
    name: str
    arguments: str  # JSON text, exactly as the model produced it

    def arguments_object(self) -> dict:
        """The arguments as an object, for APIs whose tool calls carry one (Anthropic's
        ``tool_use.input``). Text that is not a JSON object (a call cut off by ``max_tokens``,
        which the client sees as such) becomes ``{}``: an invented partial object could run a
        tool with arguments the model never finished choosing."""
        if not self.arguments:
            return {}
        try:
            v = orjson.loads(self.arguments)
        except orjson.JSONDecodeError:
            return {}
        return v if type(v) is dict else {}


@dataclass(slots=True)
class ToolResultPart:
    tool_call_id: str
    content: list[TextPart | ImagePart]
    is_error: bool = False
    name: str | None = None  # Gemini wants the function name with its response


Part = Union[TextPart, ImagePart, ToolCallPart, ToolResultPart]


@dataclass(slots=True)
class Message:
    role: Role
    parts: list[Part]


@dataclass(slots=True)
class Tool:
    name: str
    description: str | None
    parameters: dict  # JSON schema
    strict: bool | None = None


@dataclass(slots=True)
class ToolChoice:
    """``mode`` is auto, none, required (any tool) or tool (the one named)."""

    mode: str
    name: str | None = None
    parallel: bool | None = None


@dataclass(slots=True)
class Embedding:
    """What an embeddings request asks besides its model: ``inputs`` are texts, or token-id lists
    (OpenAI's own API takes those); ``dimensions`` shortens each vector where the model can."""

    inputs: list
    dimensions: int | None = None
    base64: bool = False  # the client wants little-endian float32 in base64 (the openai SDK's default)


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    system: list[TextPart] = field(default_factory=list)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    response_format: dict | None = None  # OpenAI shape: {"type": "json_object"|"json_schema", ...}
    stream: bool = False
    include_usage: bool = False  # OpenAI stream_options.include_usage
    user: str | None = None
    dialect: str = ""  # the wire kind ``raw`` came from
    raw: dict | None = None
    # Vendor headers a same-kind adapter forwards (e.g. ``anthropic-beta``); lower-case names.
    passthrough_headers: dict[str, str] | None = None
    # The first field only an upstream of the client's own kind can take (e.g. an Anthropic
    # ``document`` block): the executor will not send such a request to another kind, where
    # that content would silently be lost.
    native_only: str | None = None
    tags: dict[str, str] | None = None  # x-switchman-tags: for rules
    end_user: str | None = None  # x-switchman-user: for rules (never sent upstream; ``user`` is)
    episode: str | None = None  # x-switchman-episode: groups one task's calls (request log, feedback)
    key_id: str | None = None  # the caller's virtual key (an experiment may assign by it)
    traceparent: str | None = None  # the client's W3C trace context, continued by tracing
    reasoning_effort: str | None = None  # Responses ``reasoning.effort``: adapters map it where their API can
    logprobs: bool = False  # ask the upstream for token logprobs (a cascade's confidence check)
    cache_marked: bool = False  # the client marked prompt-cache breakpoints: input may be billed as cache writes
    prompt_ttl: str | None = None  # the route's prompt-cache TTL for breakpoints the gateway adds ("1h")
    prompt_retention: str | None = None  # the route's OpenAI prompt_cache_retention
    # ``POST /v1/embeddings``: the same route, plan, resilience and ledger as chat, with the
    # embedding codecs (``adapters/embeddings.py``) in place of the chat ones.
    embedding: Embedding | None = None
    _chars: int = field(default=-1, init=False, repr=False, compare=False)  # text_chars(), once counted

    def has_images(self) -> bool:
        for m in self.messages:
            for p in m.parts:
                if type(p) is ImagePart:
                    return True
                if type(p) is ToolResultPart and any(type(c) is ImagePart for c in p.content):
                    return True
        return False

    def estimated_tokens(self) -> int:
        """A rough prompt size, for checks before any call (context windows, budget
        reservations): about 4 characters a token for English text (OpenAI's rule of thumb)."""
        return self.text_chars() // CHARS_PER_TOKEN

    def text_chars(self) -> int:
        """Characters of text in the prompt: a cheap basis for token estimates. Counted once: a
        request's prompt is never changed in place (``dataclasses.replace`` makes a new request,
        counted afresh), and admission, the plan and the executor each ask (about 2% of a plain
        request's time, counted every time)."""
        if self._chars < 0:
            self._chars = sum(map(len, self.texts()))
        return self._chars

    def texts(self) -> Iterator[str]:
        """The prompt's text pieces (system, messages, tool calls and results, tool definitions):
        what a local token count or estimate counts."""
        yield from (p.text for p in self.system)
        for m in self.messages:
            for p in m.parts:
                t = type(p)
                if t is TextPart:
                    yield p.text
                elif t is ToolCallPart:
                    yield p.name
                    yield p.arguments
                elif t is ToolResultPart:
                    yield from (c.text for c in p.content if type(c) is TextPart)
        for tool in self.tools or ():
            yield tool.name
            yield tool.description or ""
            yield str(tool.parameters)


@dataclass(slots=True)
class Usage:
    """Token counts as the upstream reported them.

    ``input_tokens`` counts every prompt token, cached or not (OpenAI's and Gemini's convention;
    Anthropic's three input counters are summed into it), so cost is
    ``(input - cache_read - cache_write) * input + cache_read * cached + cache_write * write``,
    where ``cache_write_1h_tokens`` of the ``cache_write_tokens`` are priced at the 1-hour rate.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # every cache write (Anthropic's cache_creation_input_tokens) ...
    cache_write_1h_tokens: int = 0  # ... of which 1-hour writes (cache_creation.ephemeral_1h_input_tokens)
    reasoning_tokens: int = 0
    estimated: bool = False
    invalid: str | None = None  # why the upstream's report could not be used (then counted locally)


@dataclass(slots=True)
class ChatResponse:
    id: str
    model: str
    parts: list[TextPart | ToolCallPart]
    finish_reason: FinishReason | None
    usage: Usage | None
    stop_sequence: str | None = None
    created: int = 0
    dialect: str = ""  # the wire kind ``raw`` came from
    raw: dict | None = None
    logprob: float | None = None  # mean token logprob, when asked for and the upstream gives it

    def text(self) -> str:
        return "".join(p.text for p in self.parts if type(p) is TextPart)

    def tool_calls(self) -> list[ToolCallPart]:
        return [p for p in self.parts if type(p) is ToolCallPart]


# ---- stream events --------------------------------------------------------------------------
# A stream is: Start, then any of TextDelta / ToolCallStart / ToolCallDelta, then Finish, with
# UsageEvent anywhere (the last one wins: each carries the cumulative counts known so far).
# ``raw`` holds the upstream chunk dict the event came from, set only when the decoder was asked
# to keep it (client dialect and upstream wire are the same kind). Every event decoded from one
# chunk shares that same dict object, so an encoder emits each distinct ``raw`` once (compare by
# identity) and so passes vendor fields through untouched. Events with no ``raw`` are encoded.


@dataclass(slots=True)
class Start:
    id: str
    model: str
    created: int = 0
    raw: dict | None = None


@dataclass(slots=True)
class TextDelta:
    text: str
    raw: dict | None = None


@dataclass(slots=True)
class ToolCallStart:
    index: int  # position among this response's tool calls, from 0
    id: str
    name: str
    raw: dict | None = None


@dataclass(slots=True)
class ToolCallDelta:
    index: int
    arguments: str  # a fragment of the JSON arguments
    raw: dict | None = None


@dataclass(slots=True)
class Finish:
    reason: FinishReason
    stop_sequence: str | None = None
    raw: dict | None = None


@dataclass(slots=True)
class UsageEvent:
    usage: Usage
    raw: dict | None = None


StreamEvent = Union[Start, TextDelta, ToolCallStart, ToolCallDelta, Finish, UsageEvent]


class ResponseBuilder:
    """Assembles stream events into a ChatResponse: the one place a stream becomes an answer.

    Used for non-streaming calls to streaming-only paths, for the ledger, and for the cache, so
    streamed tool-call arguments are joined in exactly one place.
    """

    __slots__ = ("id", "model", "created", "text", "calls", "finish", "stop_sequence", "usage")

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.created = 0
        self.text: list[str] = []
        self.calls: dict[int, list] = {}
        self.finish: FinishReason | None = None
        self.stop_sequence: str | None = None
        self.usage: Usage | None = None

    def add(self, ev: StreamEvent) -> None:
        t = type(ev)
        if t is TextDelta:
            self.text.append(ev.text)
        elif t is ToolCallDelta:
            call = self.calls.get(ev.index)
            if call is None:
                call = self.calls[ev.index] = ["", "", []]
            call[2].append(ev.arguments)
        elif t is ToolCallStart:
            call = self.calls.setdefault(ev.index, ["", "", []])
            call[0], call[1] = ev.id, ev.name
        elif t is UsageEvent:
            self.usage = ev.usage
        elif t is Finish:
            self.finish = ev.reason
            self.stop_sequence = ev.stop_sequence
        elif t is Start:
            self.id, self.model, self.created = ev.id, ev.model, ev.created

    def build(self) -> ChatResponse:
        parts: list[TextPart | ToolCallPart] = []
        if self.text:
            parts.append(TextPart("".join(self.text)))
        for i in sorted(self.calls):
            cid, name, args = self.calls[i]
            parts.append(ToolCallPart(cid, name, "".join(args)))
        return ChatResponse(
            id=self.id,
            model=self.model,
            parts=parts,
            finish_reason=self.finish,
            usage=self.usage,
            stop_sequence=self.stop_sequence,
            created=self.created,
        )


def events_of(resp: ChatResponse) -> list[StreamEvent]:
    """The stream a whole response would have been: lets a non-streaming upstream call serve a
    streaming client through the same encoder."""
    evs: list[StreamEvent] = [Start(resp.id, resp.model, resp.created)]
    i = 0
    for p in resp.parts:
        if type(p) is TextPart:
            evs.append(TextDelta(p.text))
        else:
            evs.append(ToolCallStart(i, p.id, p.name))
            evs.append(ToolCallDelta(i, p.arguments))
            i += 1
    evs.append(Finish(resp.finish_reason or FinishReason.STOP, resp.stop_sequence))
    if resp.usage is not None:
        evs.append(UsageEvent(resp.usage))
    return evs


Json = Any
