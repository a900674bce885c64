"""The executor: runs a plan's attempts, one model after another, until one answers.

Streaming and non-streaming share this path. A streaming answer is committed only once its first
content event has arrived (within the model's ``first_token`` timeout): until then a failure moves
on to the next candidate without the client seeing anything. What happens after the first byte
is the caller's (the stream's own error event).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal

from .adapters import adapter_for
from .config import ModelSpec
from .errors import (
    AllAttemptsFailed,
    ClientError,
    StreamCut,
    UpstreamError,
    UpstreamKind,
    UpstreamStatus,
    Unsupported,
    UpstreamTimeout,
)
from .http.client import HttpClient
from .sse import SSEDecoder
from .types import ChatRequest, ChatResponse, Finish, Start, StreamEvent, UsageEvent

# Failures after which the next candidate is worth trying although retrying the same model is
# not: a prompt too long for this model (a later one may have a larger window), a provider that
# rejects our credentials or is out of credit, or does not know the model. A bad request or a
# content filter goes straight back to the client: another model would be asked the same thing.
_FALL_THROUGH = frozenset({UpstreamKind.CONTEXT_WINDOW, UpstreamKind.AUTH, UpstreamKind.NOT_FOUND})

# A rough prompt size: ~4 characters a token for English text (OpenAI's rule of thumb). Used only
# to skip models whose window is plainly too small before calling them.
_CHARS_PER_TOKEN = 4


@dataclass(slots=True)
class Outcome:
    """The answering attempt, and what went before it."""

    model: ModelSpec
    errors: list[UpstreamError]
    skipped: list[str]
    response: ChatResponse | None = None  # when not streaming
    events: AsyncIterator[StreamEvent] | None = None  # when streaming: the first is already in

    @property
    def attempts(self) -> int:
        return len(self.errors) + 1

    def cost(self) -> Decimal | None:
        if self.response is None or self.response.usage is None:
            return None
        return cost_of(self.model, self.response.usage)


def cost_of(model: ModelSpec, usage) -> Decimal:
    return model.price.cost(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens)


@dataclass(slots=True)
class Executor:
    client: HttpClient = field(default_factory=HttpClient)

    async def run(self, req: ChatRequest, candidates: list[ModelSpec]) -> Outcome:
        errors: list[UpstreamError] = []
        skipped: list[str] = []
        unsupported: ClientError | None = None
        est = req.text_chars() // _CHARS_PER_TOKEN
        loop = asyncio.get_running_loop()
        for model in candidates:
            if model.context_window and est > model.context_window:
                skipped.append(f"{model.name}:context~{est}>{model.context_window}")
                continue
            adapter = adapter_for(model.provider.wire)
            try:
                if req.native_only and adapter.kind != req.dialect:
                    raise Unsupported(f"{req.native_only} can only be sent to a model of the {req.dialect} API; "
                                      f"{model.name} is reached through the {adapter.kind} API", param=req.native_only)
                call = adapter.build(req, model)
            except ClientError as e:  # e.g. images to a text-only model: another may take them
                unsupported = unsupported or e
                skipped.append(f"{model.name}:{e.kind}")
                continue
            start = loop.time()
            deadline = start + model.timeout.total
            first = deadline if model.timeout.first_token is None else min(deadline, start + model.timeout.first_token)
            try:
                try:
                    resp = await self.client.request(call.method, call.url, call.headers, call.body,
                                                     first if req.stream else deadline)
                except UpstreamTimeout:
                    if req.stream and first < deadline:
                        raise UpstreamTimeout(f"no first token within {first - start:g}s") from None
                    raise
                if resp.status >= 400:
                    body = await resp.read(deadline)
                    raise adapter.error(resp.status, resp.headers, body, model)
                if not req.stream:
                    body = await resp.read(deadline)
                    return Outcome(model, errors, skipped, response=adapter.parse(body, model))
                decoder = adapter.stream_decoder(model, keep_raw=req.dialect == adapter.kind)
                events = _decode(resp.chunks(deadline), decoder, model)
                head = await _first_content(events, first, first - start, model)
                return Outcome(model, errors, skipped, events=_chain(head, events))
            except UpstreamError as e:
                e.model = model.name
                errors.append(e)
                if not (e.retryable or e.upstream_kind in _FALL_THROUGH):
                    break
        if not errors:
            if unsupported is not None:
                raise unsupported
            raise UpstreamStatus(
                "no candidate model can take this request: " + ", ".join(skipped),
                upstream_kind=UpstreamKind.CONTEXT_WINDOW,
            )
        if len(errors) == 1 and not skipped:
            raise errors[0]
        raise AllAttemptsFailed(errors)


async def _decode(chunks: AsyncIterator[bytes], decoder, model: ModelSpec) -> AsyncIterator[StreamEvent]:
    sse = SSEDecoder()
    try:
        async for chunk in chunks:
            for name, data in sse.feed(chunk):
                for ev in decoder.feed(name, data):
                    yield ev
        if not decoder.done:
            raise StreamCut("upstream stream ended before its end marker", model=model.name)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]


async def _first_content(events: AsyncIterator[StreamEvent], deadline: float, seconds: float,
                         model: ModelSpec) -> list[StreamEvent]:
    """Pull events until the first one a client would see as content, within ``deadline``."""
    head: list[StreamEvent] = []
    try:
        async with asyncio.timeout_at(deadline):
            async for ev in events:
                head.append(ev)
                if type(ev) not in (Start, UsageEvent):
                    return head
    except TimeoutError:
        await events.aclose()  # type: ignore[attr-defined]
        raise UpstreamTimeout(f"no first token within {seconds:g}s", model=model.name) from None
    except BaseException:
        await events.aclose()  # type: ignore[attr-defined]
        raise
    # The stream ended (cleanly) before any content: an empty answer is still an answer.
    if not any(type(e) is Finish for e in head):
        raise StreamCut("upstream stream ended before any content", model=model.name)
    return head


async def _chain(head: list[StreamEvent], rest: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    try:
        for ev in head:
            yield ev
        async for ev in rest:
            yield ev
    finally:
        await rest.aclose()  # type: ignore[attr-defined]
