import asyncio

import pytest

from switchman.clock import VirtualClock
from switchman.resilience.limiter import ConcurrencyLimit


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_under_the_limit_acquire_is_immediate():
    lim = ConcurrencyLimit(2, queue=0, clock=VirtualClock())
    assert await lim.acquire() and await lim.acquire()
    assert lim.in_flight == 2
    assert not await lim.acquire()  # no queue: refused at once, the caller overflows
    lim.release()
    assert await lim.acquire()


async def test_waiters_get_slots_in_arrival_order():
    lim = ConcurrencyLimit(1, queue=3, clock=VirtualClock())
    assert await lim.acquire()
    order: list[int] = []

    async def waiter(i: int) -> None:
        assert await lim.acquire()
        order.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
    await settle()
    assert lim.queued == 3
    assert not await lim.acquire()  # the queue is full: refused at once
    assert lim.rejected == 1
    for expected in ([0], [0, 1], [0, 1, 2]):
        lim.release()
        await settle()
        assert order == expected
        assert lim.in_flight == 1  # the slot changed hands, it was not freed
    await asyncio.gather(*tasks)
    lim.release()
    assert lim.in_flight == 0 and lim.queued == 0


async def test_a_newcomer_does_not_overtake_the_queue():
    lim = ConcurrencyLimit(1, queue=2, clock=VirtualClock())
    assert await lim.acquire()
    first = asyncio.create_task(lim.acquire())
    await settle()
    lim.release()  # handed to `first` before it even runs again
    newcomer = asyncio.create_task(lim.acquire())
    await settle()
    assert first.done() and first.result() is True
    assert not newcomer.done() and lim.queued == 1
    lim.release()
    await settle()
    assert newcomer.result() is True


async def test_waiting_past_the_deadline_gives_up():
    clock = VirtualClock()
    lim = ConcurrencyLimit(1, queue=5, clock=clock)
    assert await lim.acquire()
    task = asyncio.create_task(lim.acquire(deadline=clock.now() + 2.0))
    await clock.run_for(1.9)
    assert not task.done()
    await clock.run_for(0.2)
    assert task.done() and task.result() is False
    assert lim.queued == 0 and lim.in_flight == 1
    assert not await lim.acquire(deadline=clock.now())  # already past: no wait at all
    lim.release()
    assert lim.in_flight == 0


async def test_a_slot_freed_before_the_deadline_is_taken():
    clock = VirtualClock()
    lim = ConcurrencyLimit(1, queue=1, clock=clock)
    assert await lim.acquire()
    task = asyncio.create_task(lim.acquire(deadline=clock.now() + 5.0))
    await clock.run_for(1.0)
    lim.release()
    await clock.run_for(10.0)  # the expired timer must not undo the hand-off
    assert task.result() is True and lim.in_flight == 1
    assert clock.sleepers == 0


async def test_cancelled_waiter_leaks_no_slot_and_no_queue_place():
    lim = ConcurrencyLimit(1, queue=1, clock=VirtualClock())
    assert await lim.acquire()
    task = asyncio.create_task(lim.acquire(deadline=10.0))
    await settle()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert lim.queued == 0
    lim.release()
    assert lim.in_flight == 0
    assert await lim.acquire()  # the place in the queue and the slot are both free


async def test_cancelled_right_after_the_hand_off_passes_the_slot_on():
    lim = ConcurrencyLimit(1, queue=2, clock=VirtualClock())
    assert await lim.acquire()
    unlucky = asyncio.create_task(lim.acquire())
    nxt = asyncio.create_task(lim.acquire())
    await settle()
    lim.release()  # hands the slot to `unlucky`...
    unlucky.cancel()  # ...which is cancelled before it could use it
    await asyncio.gather(unlucky, return_exceptions=True)
    await settle()
    assert unlucky.cancelled()
    assert nxt.result() is True and lim.in_flight == 1
    lim.release()
    assert lim.in_flight == 0 and lim.queued == 0


async def test_release_without_acquire_is_a_bug():
    lim = ConcurrencyLimit(1, clock=VirtualClock())
    with pytest.raises(RuntimeError):
        lim.release()
