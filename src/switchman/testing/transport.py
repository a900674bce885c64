"""A scripted transport beside the real ``HttpClient``: answers each upstream call from a script,
waiting on an injected clock, so the executor's timing (backoff, Retry-After, hedging, ejection)
can be tested on a ``VirtualClock`` in microseconds of real time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from ..clock import Clock
from ..errors import UpstreamTimeout


@dataclass
class Scripted:
    """One upstream model's behaviour: ``latency`` before answering, then ``status`` (a 200 with
    an OpenAI chat completion, or an error with ``retry_after``)."""

    latency: float = 0.0
    status: int = 200
    retry_after: float | None = None
    text: str = "ok"


@dataclass
class Call:
    model: str
    at: float  # clock time it was sent
    cancelled: bool = False


class _Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self._body = status, headers, body

    async def read(self, deadline: float | None = None, limit: int | None = None, truncate: bool = False) -> bytes:
        return self._body[:limit] if truncate and limit else self._body

    async def chunks(self, deadline: float | None = None):
        yield self._body

    def close(self) -> None:
        pass


@dataclass
class ScriptedClient:
    """Drop-in for ``HttpClient`` (OpenAI wire only): ``script[model_id]`` says how each answers;
    ``calls`` records every call and whether it was cancelled (a hedge that lost)."""

    clock: Clock
    script: dict[str, Scripted | Callable[[int], Scripted]]
    calls: list[Call] = field(default_factory=list)

    async def request(self, method: str, url: str, headers: dict[str, str], body: bytes,
                      deadline: float | None = None) -> _Response:
        model = orjson.loads(body)["model"]
        n = sum(1 for c in self.calls if c.model == model)
        call = Call(model, self.clock.now())
        self.calls.append(call)
        s = self.script[model]
        s = s(n) if callable(s) else s
        # ``deadline`` is on the event loop's clock (the real transport's); as time left, it maps
        # onto our clock: past it the call times out, as the real client's would.
        left = None if deadline is None else deadline - asyncio.get_running_loop().time()
        try:
            if left is not None and s.latency > left:
                await self.clock.sleep(max(left, 0.0))
                raise UpstreamTimeout("upstream did not answer in time")
            await self.clock.sleep(s.latency)
        except asyncio.CancelledError:
            call.cancelled = True
            raise
        if s.status >= 400:
            h = {"retry-after": str(s.retry_after)} if s.retry_after is not None else {}
            return _Response(s.status, h, orjson.dumps({"error": {"message": "scripted", "type": "server_error"}}))
        return _Response(200, {}, orjson.dumps({
            "id": f"c{len(self.calls)}", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": s.text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }))

    async def close(self) -> None:
        pass
