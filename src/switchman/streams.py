"""Async generators over a stream that is already open (an upstream response, a concurrency slot,
a budget reservation), made safe to close before they start.

Python runs an async generator's ``finally`` only once its body has started: a generator closed
before its first ``__anext__`` never releases what it wraps. A reply whose events are dropped or
closed unread (a library caller that changes its mind, a client that leaves between the headers
and the body) would keep the upstream connection, the model's concurrency slot and the request's
budget reservation. :class:`Opened` pairs a generator with the one ``close`` its ``finally``
runs, and runs it itself when the generator is closed unstarted: exactly once either way.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Opened(Generic[T]):
    """``gen`` (whose ``finally`` awaits ``close()``), iterated as is; ``aclose()`` before the
    first item awaits ``close()`` itself."""

    __slots__ = ("_gen", "_close", "_started")

    def __init__(self, gen: AsyncGenerator[T, None], close: Callable[[], Awaitable[None]]) -> None:
        self._gen = gen
        self._close = close
        self._started = False

    def __aiter__(self) -> "Opened[T]":
        return self

    def __anext__(self) -> Awaitable[T]:
        self._started = True
        return self._gen.__anext__()

    async def aclose(self) -> None:
        if self._started:
            await self._gen.aclose()
            return
        self._started = True  # closed unread: the generator's finally will never run, so close here
        await self._gen.aclose()
        await self._close()
