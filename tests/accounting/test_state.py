"""Both state backends, one suite: all-or-nothing admission, reservations settled to the actual
cost, lapsed reservations given back, fixed rate windows, revocation."""

from __future__ import annotations

import asyncio

from switchman.accounting.state import AdmitOp, BudgetHold, Outcome, RateWindow, SettleOp

from .conftest import NOON

DAY = 2 * 86_400


def op(windows=(), holds=(), amount=0, rid="r1", until=NOON + 900, now=NOON, revocation=None):
    return AdmitOp(revocation, list(windows), list(holds), amount, rid, until, now)


async def test_an_unseeded_budget_asks_for_a_seed_and_then_counts_from_it(state):
    h = BudgetHold("b:key:k1:day:x", limit=1_000, ttl=DAY)
    v = await state.admit(op(holds=[h], amount=100))
    assert (v.outcome, v.index) == (Outcome.UNSEEDED, 0)
    await state.seed(h.counter, 850, DAY, NOON)
    await state.seed(h.counter, 0, DAY, NOON)  # a second seed (another worker) changes nothing
    v = await state.admit(op(holds=[h], amount=100))
    assert v.outcome is Outcome.OK and v.used == (950,)
    v = await state.admit(op(holds=[h], amount=100, rid="r2"))
    assert (v.outcome, v.before) == (Outcome.OVER_BUDGET, 950)
    assert await state.read([h.counter, "b:none"]) == [(850, 100), None]


async def test_settle_swaps_the_reservation_for_the_actual_cost(state):
    h = BudgetHold("b:global:month:x", limit=1_000, ttl=DAY)
    await state.seed(h.counter, 0, DAY, NOON)
    assert (await state.admit(op(holds=[h], amount=600))).outcome is Outcome.OK
    # 600 reserved: another 600 does not fit ...
    assert (await state.admit(op(holds=[h], amount=600, rid="r2"))).outcome is Outcome.OVER_BUDGET
    await state.settle(SettleOp([h.counter], "r1", 600, 150))
    assert await state.read([h.counter]) == [(150, 0)]
    # ... but after the call cost only 150, it does.
    assert (await state.admit(op(holds=[h], amount=600, rid="r2"))).outcome is Outcome.OK


async def test_admission_is_all_or_nothing(state):
    roomy = BudgetHold("b:a", limit=10_000, ttl=DAY)
    tight = BudgetHold("b:b", limit=100, ttl=DAY)
    for h in (roomy, tight):
        await state.seed(h.counter, 0, DAY, NOON)
    w = RateWindow("rpm:k:1", limit=5, amount=1, reset_in=30)
    v = await state.admit(op([w], [roomy, tight], amount=500))
    assert (v.outcome, v.index) == (Outcome.OVER_BUDGET, 1)
    # Nothing was taken from the roomy budget nor the rate window.
    assert await state.read([roomy.counter]) == [(0, 0)]
    for i in range(5):
        assert (await state.admit(op([w], rid=f"x{i}"))).outcome is Outcome.OK


async def test_a_reservation_never_settled_lapses(state):
    h = BudgetHold("b:lapse", limit=1_000, ttl=DAY)
    await state.seed(h.counter, 0, DAY, NOON)
    assert (await state.admit(op(holds=[h], amount=1_000, until=NOON + 10))).outcome is Outcome.OK
    assert (await state.admit(op(holds=[h], amount=1, rid="r2", now=NOON + 5))).outcome is Outcome.OVER_BUDGET
    v = await state.admit(op(holds=[h], amount=1, rid="r3", now=NOON + 11, until=NOON + 900))
    assert v.outcome is Outcome.OK and v.used == (1,)
    # The dead worker's late settle changes nothing but the spend it reports.
    await state.settle(SettleOp([h.counter], "r1", 1_000, 40))
    assert await state.read([h.counter]) == [(40, 1)]


async def test_rate_windows_count_exactly_and_reset(state):
    w = RateWindow("rpm:key:k:100", limit=3, amount=1, reset_in=20)
    got = [(await state.admit(op([w], rid=str(i)))).outcome for i in range(5)]
    assert got == [Outcome.OK] * 3 + [Outcome.RATE_LIMITED] * 2
    nxt = RateWindow("rpm:key:k:101", limit=3, amount=1, reset_in=60)
    assert (await state.admit(op([nxt], now=NOON + 30))).outcome is Outcome.OK


async def test_token_windows_are_corrected_by_actual_usage(state):
    w = RateWindow("tpm:key:k:7", limit=1_000, amount=800, reset_in=30)
    assert (await state.admit(op([w]))).outcome is Outcome.OK
    assert (await state.admit(op([w], rid="r2"))).outcome is Outcome.RATE_LIMITED
    await state.settle(SettleOp([], "r1", 0, 0, [(w.counter, -700)]))  # it used 100 tokens, not 800
    assert (await state.admit(op([w], rid="r3"))).outcome is Outcome.OK


async def test_revoked_keys_are_refused(state):
    assert (await state.admit(op(revocation="abc"))).outcome is Outcome.OK
    await state.revoke("abc")
    assert (await state.admit(op(revocation="abc"))).outcome is Outcome.REVOKED
    assert (await state.admit(op(revocation="other"))).outcome is Outcome.OK


async def test_200_concurrent_reservations_against_a_budget_covering_50(state):
    h = BudgetHold("b:key:busy:month:x", limit=50 * 1_000, ttl=DAY)
    await state.seed(h.counter, 0, DAY, NOON)
    got = await asyncio.gather(*(state.admit(op(holds=[h], amount=1_000, rid=f"r{i}")) for i in range(200)))
    assert sum(v.outcome is Outcome.OK for v in got) == 50
    assert await state.read([h.counter]) == [(0, 50_000)]


async def test_redis_announces_revocations_to_every_worker(redis_prefix):
    from switchman.accounting.redis_state import RedisState

    from .conftest import REDIS_URL

    heard: list[str] = []
    got = asyncio.Event()
    listener, revoker = RedisState(REDIS_URL, prefix=redis_prefix), RedisState(REDIS_URL, prefix=redis_prefix)

    def on_revoked(h: str) -> None:
        heard.append(h)
        got.set()

    await listener.watch(on_revoked)
    await asyncio.sleep(0.1)  # subscribed
    await revoker.revoke("deadbeef")
    await asyncio.wait_for(got.wait(), 1.0)
    assert heard == ["deadbeef"]
    await listener.close()
    await revoker.close()
