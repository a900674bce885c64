"""Injected time. Everything that waits or measures (deadlines, backoff, ejection, cooldowns,
hedging, queues) asks a ``Clock``, so tests and the simulator run it on ``VirtualClock`` in
milliseconds of real time while production uses ``SystemClock``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from abc import ABC, abstractmethod


class Clock(ABC):
    """Monotonic seconds and a sleep that honours them."""

    @abstractmethod
    def now(self) -> float:
        """Seconds on a monotonic clock (only differences mean anything)."""

    @abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock (``<= 0``: just yield to the event loop)."""


class SystemClock(Clock):
    """Real time.

    ``now()`` is ``time.monotonic()`` whether or not a loop runs: it is the clock both asyncio's
    default loop and uvloop count on (CLOCK_MONOTONIC), so deadlines convert to loop times by a
    plain offset, but uvloop's ``loop.time()`` is cached per loop iteration at millisecond
    resolution (measured here: 3044.381 vs 3044.381314946), too coarse for the sub-millisecond
    latencies the tracker and the benchmarks record; and finding the running loop alone costs
    ~5x a ``monotonic()`` call (314 vs 58 ns here).
    """

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class VirtualClock(Clock):
    """Time that moves only when a test says so.

    ``sleep()`` parks the caller until ``advance()`` (or ``run_for()``) moves the clock past its
    wake time. Sleepers are woken in wake-time order (ties: in the order they slept).
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []  # a heap
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)  # like asyncio.sleep(0): a chance for others to run
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._seq), fut))
        await fut  # cancelling the caller cancels ``fut``; advance() then skips it

    @property
    def sleepers(self) -> int:
        """How many sleeps are still waiting (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_wake(self) -> float | None:
        """The earliest pending wake time, if any."""
        self._drop_cancelled()
        return self._sleepers[0][0] if self._sleepers else None

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` and wake every sleeper due by then, in time order.

        Synchronous: woken coroutines run once the caller yields to the loop, and by then
        ``now()`` is already the new time. Use ``run_for`` when woken code sleeps again.
        """
        if seconds < 0:
            raise ValueError("time does not go backwards")
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            wake, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, wake)
            if not fut.done():
                fut.set_result(None)
        self._now = target

    async def run_for(self, seconds: float, settle: int = 20) -> None:
        """Advance ``seconds`` from sleeper to sleeper, letting the loop run between, so that
        chained sleeps progress and each sleeper wakes with ``now()`` equal to its wake time.

        ``settle`` is how many loop turns each stop gets: enough for a woken task to run on and
        park again behind a few futures (queues, events, gathered tasks).
        """
        end = self._now + seconds
        await _turns(settle)
        while True:
            wake = self.next_wake()
            if wake is None or wake > end:
                break
            self.advance(wake - self._now)
            await _turns(settle)
        self.advance(end - self._now)
        await _turns(settle)

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)


async def _turns(n: int) -> None:
    for _ in range(n):
        await asyncio.sleep(0)
