import asyncio

import pytest

from switchman.clock import SystemClock, VirtualClock


async def test_sleepers_wake_in_time_order_at_their_own_time():
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper(n, s)) for n, s in [("c", 3.0), ("a", 1.0), ("b", 2.0)]]
    await clock.run_for(10.0)
    assert woke == [("a", 1.0), ("b", 2.0), ("c", 3.0)]
    assert clock.now() == 10.0
    await asyncio.gather(*tasks)


async def test_advance_wakes_only_what_is_due():
    clock = VirtualClock()
    task = asyncio.create_task(clock.sleep(5.0))
    await asyncio.sleep(0)
    clock.advance(4.999)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(0.001)
    await asyncio.sleep(0)
    assert task.done()


async def test_run_for_progresses_chained_sleeps():
    clock = VirtualClock()
    ticks: list[float] = []

    async def ticker() -> None:
        for _ in range(5):
            await clock.sleep(1.0)
            ticks.append(clock.now())

    task = asyncio.create_task(ticker())
    await clock.run_for(3.5)
    assert ticks == [1.0, 2.0, 3.0]
    await clock.run_for(10)
    assert ticks == [1.0, 2.0, 3.0, 4.0, 5.0]
    await task


async def test_cancelled_sleeper_is_dropped():
    clock = VirtualClock()
    task = asyncio.create_task(clock.sleep(1.0))
    await asyncio.sleep(0)
    assert clock.sleepers == 1
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert clock.sleepers == 0 and clock.next_wake() is None
    clock.advance(2.0)  # must not trip over the cancelled future


async def test_time_never_goes_backwards():
    with pytest.raises(ValueError):
        VirtualClock().advance(-1)


async def test_system_clock_sleeps_real_time():
    clock = SystemClock()
    t0 = clock.now()
    await clock.sleep(0.01)
    assert 0.009 <= clock.now() - t0 < 0.5
