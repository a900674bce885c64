from datetime import datetime, timezone
from decimal import Decimal

import pytest

from switchman.accounting.budgets import (
    BudgetRule, Period, Scope, holds_for, parse_limit, period_window, soft_hits,
)


def ts(s: str) -> float:
    return datetime.fromisoformat(s).replace(tzinfo=timezone.utc).timestamp()


def test_periods_reset_on_utc_boundaries():
    w = period_window(Period.MONTH, ts("2028-02-29T23:59:59"))
    assert (w.start, w.end, w.label) == (ts("2028-02-01T00:00:00"), ts("2028-03-01T00:00:00"), "2028-02")
    assert period_window(Period.MONTH, ts("2028-03-01T00:00:00")).label == "2028-03"
    w = period_window(Period.WEEK, ts("2026-11-22T23:00:00"))  # a Sunday: the week began on Monday 16th
    assert (w.start, w.end, w.label) == (ts("2026-11-16T00:00:00"), ts("2026-11-23T00:00:00"), "2026-W47")
    w = period_window(Period.DAY, ts("2026-12-31T12:00:00"))
    assert (w.end, w.label) == (ts("2027-01-01T00:00:00"), "2026-12-31")


def test_limits_read_like_the_cli():
    assert parse_limit("50/month") == (Decimal("50"), Period.MONTH)
    assert parse_limit(" $2.5 / day ") == (Decimal("2.5"), Period.DAY)
    for bad in ("50", "50/year", "-1/day", "fifty/week"):
        with pytest.raises(ValueError, match="50/month"):
            parse_limit(bad)


def rule(scope, match, limit="10", period=Period.DAY, soft=None, down=None):
    return BudgetRule(Scope(scope), match, Decimal(limit), period, soft, down)


def test_rules_match_their_scope_and_stars_give_each_their_own():
    rules = [rule("global", None), rule("user", "*"), rule("user", "bob"), rule("tag", "team=*"),
             rule("tag", "team=ads"), rule("key", "ci")]
    now = ts("2026-11-18T12:00:00")
    hs = holds_for(rules, now, key_id="key_1", key_name="ci", user="alice", tags={"team": "search"})
    assert [h.scope_id for h in hs] == ["global", "user:alice", "tag:team=search", "key:key_1"]
    assert hs[1].counter == "b:user:alice:day:2026-11-18"
    hs = holds_for(rules, now, key_id=None, key_name=None, user=None, tags={})
    assert [h.scope_id for h in hs] == ["global"]


def test_soft_threshold_counts_reservations():
    r = rule("global", None, limit="1", soft=0.8, down="cheap")
    (h,) = holds_for([r], 0.0, key_id=None, key_name=None, user=None, tags={})
    assert soft_hits([h], [790_000_000]) == []
    assert soft_hits([h], [800_000_000]) == [(h, 0.8)]
