import asyncio
import random

import pytest

from switchman.clock import VirtualClock
from switchman.resilience.retry import Backoff, RetryBudget


def test_full_jitter_stays_within_the_exponential_cap():
    b = Backoff(base=0.5, max=4.0, rng=random.Random(7))
    for n, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (40, 4.0), (10_000, 4.0)]:
        delays = [b.delay(n, None) for _ in range(500)]
        assert all(0.0 <= d <= cap for d in delays)
        # full jitter spreads over the whole interval, not just near its top
        assert min(delays) < cap * 0.1 and max(delays) > cap * 0.9


def test_retry_after_is_taken_exactly():
    b = Backoff(base=0.5, max=4.0, rng=random.Random(1))
    assert b.delay(1, 7.5) == 7.5  # longer than max: still what the upstream asked for
    assert b.delay(3, 0.0) == 0.0


def test_budget_floor_of_three_with_few_requests():
    budget = RetryBudget(ratio=0.2, min_retries=3)
    for _ in range(4):
        budget.start_request()
    granted = [budget.try_acquire_retry() for _ in range(5)]
    assert granted == [True, True, True, False, False]
    budget.release_retry()
    assert budget.try_acquire_retry()


@pytest.mark.parametrize("requests,expected", [(1, 1), (10, 3), (15, 3), (20, 4), (50, 10), (100, 20)])
async def test_budget_is_twenty_percent_of_concurrent_requests(requests, expected):
    """Every request in flight fails and wants a retry at once: only the budget's share get one."""
    clock = VirtualClock()
    budget = RetryBudget()
    started = asyncio.Event()
    granted = 0
    in_flight = 0

    async def request() -> None:
        nonlocal granted, in_flight
        with budget.request():
            in_flight += 1
            if in_flight == requests:
                started.set()
            await started.wait()
            with budget.retry() as ok:
                if ok:
                    granted += 1
                    await clock.sleep(1.0)  # the retry's backoff and attempt

    tasks = [asyncio.create_task(request()) for _ in range(requests)]
    await clock.run_for(2.0)
    await asyncio.gather(*tasks)
    assert granted == expected
    assert budget.requests_in_flight == 0 and budget.retries_in_flight == 0
    assert budget.denied == requests - expected
