"""The money-path probe's findings (``MONEY_PATH_PROBE.md``) as regression tests on the accounting
core, on memory and on Redis state."""

from __future__ import annotations

from decimal import Decimal

import pytest

from switchman.accounting import BudgetExceeded
from switchman.accounting.budgets import BudgetRule, Period, Scope, holds_for
from switchman.accounting.settings import StateSettings

from .conftest import NOON, REDIS_URL
from .test_facade import Clock, ctx, record, started

D = Decimal


def _state(kind: str, prefix: str | None) -> StateSettings | None:
    return StateSettings(backend="redis", url=REDIS_URL, prefix=prefix) if kind == "redis" else None


@pytest.fixture(params=["memory", "redis"])
def state_settings(request):
    if request.param == "memory":
        return None
    return _state("redis", request.getfixturevalue("redis_prefix"))


def test_f1_rules_on_the_same_counter_are_one_hold_with_the_lowest_limit_and_soft_threshold():
    rules = [BudgetRule(Scope.USER, "*", D("5"), Period.DAY, soft=0.5),
             BudgetRule(Scope.USER, "alice", D("1"), Period.DAY, soft=0.9, downgrade_to="cheap")]
    (h,) = holds_for(rules, NOON, key_id=None, key_name=None, user="alice", tags={})
    assert h.limit_nusd == 1_000_000_000 and h.counter.startswith("b:user:alice:day:")
    assert h.rule.soft == 0.9 and h.rule.downgrade_to == "cheap"  # $0.90 is stricter than $2.50
    (h,) = holds_for(rules, NOON, key_id=None, key_name=None, user="bob", tags={})
    assert h.limit_nusd == 5_000_000_000  # bob has only the "*" rule
    two = holds_for([BudgetRule(Scope.USER, "*", D("1"), Period.DAY), BudgetRule(Scope.USER, "alice", D("1"), Period.WEEK)],
                    NOON, key_id=None, key_name=None, user="alice", tags={})
    assert len(two) == 2  # another period is another counter


@pytest.mark.parametrize("rules,key_fields,who", [
    ([BudgetRule(Scope.USER, "*", D("1"), Period.DAY), BudgetRule(Scope.USER, "alice", D("1"), Period.DAY)],
     {"user": "alice"}, "user:alice"),
    ([BudgetRule(Scope.KEY, "bot", D("1"), Period.DAY)], {"budget": "1/day"}, "key:"),
    ([BudgetRule(Scope.TAG, "team=*", D("1"), Period.WEEK), BudgetRule(Scope.TAG, "team=search", D("5"), Period.WEEK)],
     {"tags": {"team": "search"}}, "tag:team=search"),
])
async def test_f1_overlapping_rules_count_spend_once_and_release_every_reservation(
        sqlite_url, state_settings, rules, key_fields, who):
    clock = Clock()
    acc = await started(sqlite_url, budgets=rules, clock=clock, state_settings=state_settings)
    secret, _ = await acc.create_key(name="bot", **key_fields)
    for i in range(4):
        adm = await acc.admit(ctx(secret))  # $0.30 reserved at most
        await acc.settle(adm, *record(adm, "0.0008", rid=f"r{i}"))
    (h,) = [h for h in adm.holds if h.scope_id.startswith(who)]
    spent, reserved = (await acc.state.read([h.counter]))[0]
    assert spent == 4 * 800_000  # $0.0008 four times, counted once each
    assert reserved == 0  # nothing held at rest
    # the whole $1 (less what was spent) is usable: three $0.30 reservations fit, a fourth not
    adms = [await acc.admit(ctx(secret)) for _ in range(3)]
    with pytest.raises(BudgetExceeded):
        await acc.admit(ctx(secret))
    for a in adms:
        await acc.settle(a, *record(a, "0", rid=f"z{id(a)}"))
    assert (await acc.state.read([h.counter]))[0][1] == 0
    await acc.close()


async def test_f4_a_request_marking_cache_breakpoints_reserves_the_cache_write_rate(sqlite_url):
    from switchman.config import Price

    from .test_facade import model

    rules = [BudgetRule(Scope.GLOBAL, None, D("0.5"), Period.DAY)]
    acc = await started(sqlite_url, budgets=rules, required=False)
    m = model("sonnet", "3", "15")
    m = type(m)(**{**{f: getattr(m, f) for f in m.__slots__}, "price": Price(D(3), D(15), cache_write_1h=D(6))})
    # 100k prompt tokens, 10 out: $0.30 as plain input fits $0.5, but as 1-hour cache writes it is
    # $0.60 (what the probe saw billed): refused up front.
    with pytest.raises(BudgetExceeded):
        await acc.admit(ctx(None, models=[m], input_tokens=100_000, max_tokens=10, cache_writes=True))
    adm = await acc.admit(ctx(None, models=[m], input_tokens=100_000, max_tokens=10))
    assert adm.max_cost == D("0.30015")
    await acc.close()
