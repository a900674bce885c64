"""The Accountant as the gateway uses it: keys (401/403), rate limits and budgets (429), soft
thresholds, the per-request cost cap, settling into the ledger, and Redis going away."""

from __future__ import annotations

from decimal import Decimal

import pytest

from switchman.accounting import (
    Accountant, AccountingSettings, AdmissionContext, BudgetExceeded, RateLimited, RequestRecord, StateUnavailable,
)
from switchman.accounting.budgets import BudgetRule, Period, Scope
from switchman.accounting.records import AttemptRecord, Role
from switchman.accounting.settings import LedgerSettings, StateSettings
from switchman.config import Limits, ModelSpec, Price, ProviderSpec
from switchman.errors import Forbidden, Unauthorized

from .conftest import NOON, REDIS_URL

D = Decimal
PROV = ProviderSpec(name="p", kind="openai", wire="openai", base_url="http://127.0.0.1:9")


def model(name: str, inp: str, out: str, max_output: int | None = None, rpm=None, tpm=None) -> ModelSpec:
    return ModelSpec(name=name, provider=PROV, upstream=name, price=Price(D(inp), D(out)), max_output=max_output,
                     limits=Limits(rpm, tpm))


# 1,000 prompt tokens and max_tokens 1,000 on DEAR cost at most $0.10 + $0.20 = $0.30.
DEAR = model("dear", "100", "200")
CHEAP = model("cheap", "1", "2")


class Clock:
    def __init__(self, t: float = NOON) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def ctx(key: str | None, route: str = "auto", models=(DEAR,), **kw) -> AdmissionContext:
    kw.setdefault("input_tokens", 1_000)
    kw.setdefault("max_tokens", 1_000)
    return AdmissionContext(api_key=key, route=route, candidates=list(models), **kw)


def settings(url: str, budgets=(), state: StateSettings | None = None) -> AccountingSettings:
    return AccountingSettings(LedgerSettings(url=url, flush_interval=0.01), state or StateSettings(), tuple(budgets))


async def started(url: str, budgets=(), required=True, clock=None, **kw) -> Accountant:
    acc = Accountant(settings(url, budgets, kw.pop("state_settings", None)), required=required,
                     now=(clock or Clock()).now, **kw)
    await acc.start()
    return acc


def record(adm, cost: str, model: str = "dear", rid: str = "req", **kw) -> tuple[RequestRecord, list[AttemptRecord]]:
    a = AttemptRecord(0, Role.FIRST, model, "p", 200, input_tokens=kw.pop("inp", 1_000),
                      output_tokens=kw.pop("out", 100), cost=D(cost), time=NOON)
    return RequestRecord.from_attempts(rid, NOON, "auto", [a], a, **kw), [a]


async def test_keys_required(sqlite_url):
    acc = await started(sqlite_url)
    with pytest.raises(Unauthorized, match="missing API key") as e:
        await acc.admit(ctx(None))
    assert e.value.status == 401
    with pytest.raises(Unauthorized, match="invalid API key"):
        await acc.admit(ctx("sk-sm-not-a-key"))
    await acc.close()


async def test_keys_not_required_let_anonymous_traffic_in(sqlite_url):
    acc = await started(sqlite_url, required=False)
    assert (await acc.admit(ctx(None))).key is None
    assert (await acc.admit(ctx("sk-whatever-the-sdk-needs"))).key is None
    secret, rec = await acc.create_key(name="k")
    assert (await acc.admit(ctx(secret))).key_id == rec.id
    await acc.revoke_key("k")
    with pytest.raises(Unauthorized, match="revoked"):  # a known key that was revoked is refused all the same
        await acc.admit(ctx(secret))
    await acc.close()


async def test_a_key_attributes_its_spend_and_is_limited_to_its_routes(sqlite_url):
    clock = Clock()
    acc = await started(sqlite_url, clock=clock)
    secret, rec = await acc.create_key(name="search-bot", user="svc-search", tags="team=search", routes="auto,cheap",
                                       expires="2026-11-20")
    adm = await acc.admit(ctx(secret, tags={"team": "spoofed", "feature": "chat"}, user="mallory"))
    assert (adm.key_id, adm.user, adm.tags) == (rec.id, "svc-search", {"team": "search", "feature": "chat"})
    with pytest.raises(Forbidden, match="may not use 'dear'") as e:
        await acc.admit(ctx(secret, route="dear"))
    assert e.value.status == 403
    r, atts = record(adm, "0.25")
    await acc.settle(adm, r, atts)
    rows = await acc.spend("key", since=NOON - 1)
    assert [(x.group, x.label, x.cost) for x in rows] == [(rec.id, "search-bot", D("0.25"))]
    assert [(x.group, x.cost) for x in await acc.spend("user", since=NOON - 1)] == [("svc-search", D("0.25"))]
    clock.t = NOON + 3 * 86_400  # past 2026-11-20
    with pytest.raises(Unauthorized, match="expired"):
        await acc.admit(ctx(secret))
    await acc.close()


async def test_the_admin_key_is_a_key_without_key_limits(sqlite_url):
    acc = await started(sqlite_url, admin_key="admin-secret")
    adm = await acc.admit(ctx("admin-secret"))
    assert adm.admin and adm.key is None
    with pytest.raises(Unauthorized):
        await acc.admit(ctx("admin-secreT"))
    await acc.close()


async def test_key_rpm(sqlite_url):
    acc = await started(sqlite_url)
    secret, _ = await acc.create_key(name="k", rpm=3)
    for _ in range(3):
        await acc.admit(ctx(secret))
    with pytest.raises(RateLimited, match="3 requests per minute") as e:
        await acc.admit(ctx(secret))
    assert e.value.status == 429 and e.value.kind == "rate_limited" and 0 < e.value.retry_after <= 60
    await acc.close()


async def test_key_tpm_counts_the_prompt_then_the_actual_usage(sqlite_url):
    acc = await started(sqlite_url)
    secret, _ = await acc.create_key(name="k", tpm=2_500)
    a1 = await acc.admit(ctx(secret))  # 1,000 counted
    a2 = await acc.admit(ctx(secret))  # 2,000
    with pytest.raises(RateLimited, match="tokens per minute"):
        await acc.admit(ctx(secret))
    await acc.settle(a1, *record(a1, "0", inp=100, out=50))  # it used 150, not 1,000
    await acc.settle(a2, *record(a2, "0", rid="r2", inp=100, out=50))
    await acc.admit(ctx(secret))  # 300 + 1,000 fits
    await acc.close()


async def test_a_key_budget_holds_the_most_each_call_can_cost(sqlite_url):
    clock = Clock()
    acc = await started(sqlite_url, clock=clock)
    secret, _ = await acc.create_key(name="k", budget="1/day")
    adms = [await acc.admit(ctx(secret)) for _ in range(3)]  # 3 x $0.30 reserved
    with pytest.raises(BudgetExceeded, match=r"\$0.100000 left of \$1 this day") as e:
        await acc.admit(ctx(secret))
    assert e.value.status == 429 and e.value.kind == "budget_exceeded"
    assert e.value.retry_after == pytest.approx(12 * 3600)  # NOON to midnight UTC
    await acc.settle(adms[0], *record(adms[0], "0.05"))  # it cost $0.05: $0.25 more fits now
    await acc.admit(ctx(secret))
    clock.t = NOON + 86_400  # tomorrow the budget is whole again
    for _ in range(3):
        await acc.admit(ctx(secret))
    await acc.close()


async def test_without_max_tokens_the_models_output_cap_is_reserved(sqlite_url):
    acc = await started(sqlite_url, budgets=[BudgetRule(Scope.GLOBAL, None, D("1"), Period.DAY)], required=False)
    capped = model("capped", "100", "200", max_output=2_000)  # 0.1 + 0.4 = $0.50
    await acc.admit(ctx(None, models=[capped], max_tokens=None))
    await acc.admit(ctx(None, models=[capped], max_tokens=None))
    with pytest.raises(BudgetExceeded):
        await acc.admit(ctx(None, models=[capped], max_tokens=None))
    await acc.close()


async def test_a_budget_survives_a_restart_through_the_ledger(sqlite_url):
    rules = [BudgetRule(Scope.TAG, "team=*", D("1"), Period.MONTH)]
    acc = await started(sqlite_url, budgets=rules, required=False)
    adm = await acc.admit(ctx(None, tags={"team": "ads"}))
    await acc.settle(adm, *record(adm, "0.80"))
    await acc.close()
    # A new process: empty memory state, seeded from the ledger on first use.
    acc = await started(sqlite_url, budgets=rules, required=False)
    with pytest.raises(BudgetExceeded, match=r"tag:team=ads \$1/month has \$0.200000 left"):
        await acc.admit(ctx(None, tags={"team": "ads"}))
    await acc.admit(ctx(None, tags={"team": "search"}))  # another team has its own budget
    await acc.close()


async def test_soft_threshold_downgrades_with_a_warning(sqlite_url):
    rules = [BudgetRule(Scope.GLOBAL, None, D("10"), Period.MONTH, soft=0.5, downgrade_to="cheap")]
    acc = await started(sqlite_url, budgets=rules, required=False)
    adm = await acc.admit(ctx(None))
    assert adm.downgrade_to is None and adm.warning is None
    await acc.settle(adm, *record(adm, "5.0"))
    adm = await acc.admit(ctx(None))
    assert adm.downgrade_to == "cheap"
    assert adm.warning == "budget global $10/month at 53%; downgraded to cheap"
    adm = await acc.admit(ctx(None, route="cheap", models=[CHEAP]))
    assert adm.downgrade_to is None and "at 5" in adm.warning  # already there: warn only
    await acc.close()


async def test_the_per_request_cost_cap(sqlite_url):
    acc = await started(sqlite_url, required=False)
    adm = await acc.admit(ctx(None, models=[DEAR, CHEAP], max_cost_usd=D("0.01")))
    assert adm.models == ("cheap",) and adm.max_cost == D("0.003")
    with pytest.raises(BudgetExceeded, match="x-switchman-max-cost-usd cap of \\$0.001"):
        await acc.admit(ctx(None, models=[DEAR, CHEAP], max_cost_usd=D("0.001")))
    await acc.close()


async def test_savings_baseline_is_the_dearest_candidate(sqlite_url):
    acc = await started(sqlite_url, required=False)
    adm = await acc.admit(ctx(None, models=[CHEAP, DEAR]))
    r, atts = record(adm, "0.0012", model="cheap", inp=1_000, out=100)
    await acc.settle(adm, r, atts)
    assert r.baseline_cost == D("0.12")  # 1,000 x $100/M + 100 x $200/M
    direct = await acc.admit(ctx(None, route="cheap", models=[CHEAP, DEAR], direct=True))
    r2, atts2 = record(direct, "0.0012", model="cheap", rid="r2")
    await acc.settle(direct, r2, atts2)
    assert r2.baseline_cost == D("0.0012")  # the client chose the model: no savings claimed
    (row,) = await acc.spend("model", since=NOON - 1)
    assert row.savings == D("0.12") - D("0.0012")
    await acc.close()


async def test_model_limits_send_traffic_to_the_next_candidate(sqlite_url):
    acc = await started(sqlite_url, required=False)
    limited = model("limited", "1", "1", rpm=2)
    adm = await acc.admit(ctx(None, models=[limited]))
    assert await acc.try_model(adm, limited) is None
    assert await acc.try_model(adm, limited) is None
    which, wait = await acc.try_model(adm, limited)
    assert which == "rpm" and 0 < wait <= 60
    assert await acc.try_model(adm, CHEAP) is None  # no limits: never counted
    await acc.close()


async def test_redis_down_fails_open_and_the_ledger_still_records(sqlite_url, caplog):
    pytest.importorskip("redis", reason="redis-py is not installed (the 'redis' extra)")
    down = StateSettings(backend="redis", url="redis://127.0.0.1:1/0", timeout=0.1)
    rules = [BudgetRule(Scope.GLOBAL, None, D("0.5"), Period.DAY)]
    acc = await started(sqlite_url, budgets=rules, required=False, state_settings=down)
    adms = [await acc.admit(ctx(None)) for _ in range(3)]  # $0.90 of most cost on a $0.50 budget: not enforced
    assert all(a.degraded for a in adms)
    assert "limits not enforced" in caplog.text
    for i, a in enumerate(adms):
        await acc.settle(a, *record(a, "0.3", rid=f"r{i}"))
    rows = await acc.spend("model", since=NOON - 1)
    assert rows[0].requests == 3 and rows[0].cost == D("0.9")
    await acc.close()


async def test_redis_down_fails_closed_when_asked(sqlite_url):
    pytest.importorskip("redis", reason="redis-py is not installed (the 'redis' extra)")
    down = StateSettings(backend="redis", url="redis://127.0.0.1:1/0", timeout=0.1, on_error="closed")
    rules = [BudgetRule(Scope.GLOBAL, None, D("0.5"), Period.DAY)]
    acc = await started(sqlite_url, budgets=rules, required=False, state_settings=down)
    assert await acc.ready() == {"ledger": True, "state": False}
    with pytest.raises(StateUnavailable) as e:
        await acc.admit(ctx(None))
    assert e.value.status == 503
    await acc.close()


async def test_redis_backend_end_to_end(sqlite_url, redis_prefix):
    st = StateSettings(backend="redis", url=REDIS_URL, prefix=redis_prefix)
    acc = await started(sqlite_url, state_settings=st)
    secret, _ = await acc.create_key(name="k", budget="1/day", rpm=100)
    adms = [await acc.admit(ctx(secret)) for _ in range(3)]
    with pytest.raises(BudgetExceeded):
        await acc.admit(ctx(secret))
    await acc.settle(adms[0], *record(adms[0], "0.01"))
    await acc.admit(ctx(secret))
    await acc.revoke_key("k")
    with pytest.raises(Unauthorized, match="revoked"):
        await acc.admit(ctx(secret))
    await acc.close()


async def test_settle_later_is_finished_by_close(sqlite_url):
    acc = await started(sqlite_url, required=False)
    for i in range(20):
        adm = await acc.admit(ctx(None))
        acc.settle_later(adm, *record(adm, "0.01", rid=f"r{i}"))
    await acc.close()
    acc = await started(sqlite_url, required=False)
    (row,) = await acc.spend("model", since=NOON - 1)
    assert (row.requests, row.cost) == (20, D("0.2"))
    await acc.close()


async def test_a_monotonic_clock_is_anchored_to_the_calendar(sqlite_url):
    from switchman.clock import VirtualClock

    vc = VirtualClock(start=5.0)  # seconds since some boot: not a date
    acc = Accountant(settings(sqlite_url, [BudgetRule(Scope.GLOBAL, None, D("0.5"), Period.DAY)]), clock=vc)
    await acc.start()
    await acc.admit(ctx(None))
    with pytest.raises(BudgetExceeded) as e:
        await acc.admit(ctx(None))
    assert 0 < e.value.retry_after <= 86_400  # today's budget, on the real calendar
    vc.advance(e.value.retry_after + 1)  # past midnight UTC: a new day's budget
    await acc.admit(ctx(None))
    await acc.close()
