"""The dialect interface: a client-facing API surface (OpenAI chat completions, Anthropic
messages). A dialect decodes a client's body into a canonical ``ChatRequest`` (raising
``InvalidRequest`` naming the bad field) and encodes canonical responses, stream events and errors
back into the client's own shapes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from ..errors import InvalidRequest, SwitchmanError
from ..types import ChatRequest, ChatResponse, StreamEvent


class StreamEncoder(ABC):
    """Encodes one response stream as server-sent-event bytes for the client."""

    @abstractmethod
    def encode(self, ev: StreamEvent) -> bytes:
        """Bytes for one event (may be empty: not every event has a wire form)."""

    @abstractmethod
    def close(self) -> bytes:
        """The stream's well-formed end (e.g. ``data: [DONE]``)."""

    @abstractmethod
    def error(self, err: SwitchmanError) -> bytes:
        """An error event after the stream began, in the dialect's shape, then the end."""


class Dialect(ABC):
    kind: str  # "openai" or "anthropic": same-kind adapters pass ``raw`` through

    @abstractmethod
    def decode(self, body: object) -> ChatRequest:
        """``body`` is the parsed JSON; anything not a valid request raises InvalidRequest."""

    @abstractmethod
    def encode(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        """A whole response body."""

    @abstractmethod
    def stream_encoder(self, req: ChatRequest) -> StreamEncoder: ...

    @abstractmethod
    def encode_error(self, err: SwitchmanError) -> bytes:
        """The error body; the status is ``err.status``."""


MAX_DEPTH = 64  # JSON schemas nest a few levels; the upstream encoders give up at 254 (orjson)


def check_depth(value: object, param: str, limit: int = MAX_DEPTH) -> None:
    """A 400 naming ``param`` when ``value`` nests deeper than ``limit`` (walked without
    recursion, so a hostile schema cannot exhaust the stack)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if d > limit:
            raise InvalidRequest(f"'{param}' is nested deeper than {limit} levels", param=param)
        if type(v) is dict:
            stack.extend((x, d + 1) for x in v.values() if type(x) in (dict, list))
        elif type(v) is list:
            stack.extend((x, d + 1) for x in v if type(x) in (dict, list))
