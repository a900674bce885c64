"""A per-model concurrency limit (``limits.concurrency``) with a bounded FIFO queue in front.

Like Envoy's ``max_requests`` / ``max_pending_requests`` pair: up to ``limit`` attempts run at
once, up to ``queue`` more wait their turn in arrival order, and anything beyond is refused at
once, so the caller can overflow to the next candidate (or answer 429/503 with Retry-After)
instead of piling up behind a saturated model.
"""

from __future__ import annotations

import asyncio
from collections import deque

from ..clock import Clock, SystemClock


class ConcurrencyLimit:
    """``limit`` slots, a FIFO of at most ``queue`` waiters; cancel-safe.

    A released slot is handed straight to the first waiter, so newcomers cannot overtake the
    queue. Every ``acquire()`` that returned ``True`` must be matched by one ``release()``.
    """

    def __init__(self, limit: int, queue: int = 0, clock: Clock | None = None) -> None:
        if limit < 1 or queue < 0:
            raise ValueError("need limit >= 1 and queue >= 0")
        self.limit = limit
        self.queue = queue
        self.clock = clock or SystemClock()
        self._in_flight = 0
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self.rejected = 0  # refused because the queue was full, for metrics

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return len(self._waiters)

    async def acquire(self, deadline: float | None = None) -> bool:
        """Take a slot: ``True`` once held; ``False`` if the queue is full (at once) or if
        ``deadline`` (a time on ``clock``) passes while waiting."""
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            return True
        if len(self._waiters) >= self.queue:
            self.rejected += 1
            return False
        if deadline is not None and deadline <= self.clock.now():
            return False
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        timer = None if deadline is None else asyncio.ensure_future(self._expire(fut, deadline))
        try:
            return await fut
        except asyncio.CancelledError:
            # Cancelled just after release() handed us the slot: pass it on, or it leaks.
            if fut.done() and not fut.cancelled() and fut.result():
                self.release()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            try:
                self._waiters.remove(fut)  # still queued: expired or cancelled
            except ValueError:
                pass

    def release(self) -> None:
        """Give a slot back: to the first live waiter if any, else to the pool."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(True)  # the slot changes hands; in_flight stays the same
                return
        if self._in_flight <= 0:
            raise RuntimeError("release() without a matching acquire()")
        self._in_flight -= 1

    async def _expire(self, fut: asyncio.Future[bool], deadline: float) -> None:
        await self.clock.sleep(deadline - self.clock.now())
        if not fut.done():
            fut.set_result(False)
