from decimal import Decimal

import pytest

from switchman.accounting.budgets import Period, Scope
from switchman.accounting.settings import AccountingSettings, parse
from switchman.errors import ConfigError


def err(path: str, message: str) -> ConfigError:
    return ConfigError(message, where="test.yaml", key=path)


def test_nothing_configured_gives_working_defaults():
    s = parse({}, err)
    assert s == AccountingSettings()
    assert s.ledger.url == "sqlite:///switchman.db" and s.state.backend == "memory" and s.state.on_error == "open"


def test_a_full_config():
    s = parse({
        "ledger": {"url": "postgresql://u@h/db?schema=x", "batch": 100, "flush_interval": 0.5, "buffer": 1000},
        "state": {"backend": "redis", "url": "redis://10.0.0.1:6379/2", "on_error": "closed"},
        "budgets": [
            {"global": True, "limit": "1000/month"},
            {"tag": "team=search", "limit": "$200/week", "soft": "80%", "downgrade_to": "cheap"},
            {"user": "*", "limit": "5/day", "soft": 0.9},
        ],
    }, err, names=["cheap", "auto"])
    assert s.ledger.batch == 100 and s.state.url == "redis://10.0.0.1:6379/2" and s.state.on_error == "closed"
    g, t, u = s.budgets
    assert (g.scope, g.match, g.limit, g.period) == (Scope.GLOBAL, None, Decimal(1000), Period.MONTH)
    assert (t.scope, t.match, t.soft, t.downgrade_to) == (Scope.TAG, "team=search", 0.8, "cheap")
    assert (u.match, u.period, u.soft) == ("*", Period.DAY, 0.9)


@pytest.mark.parametrize("raw, key, words", [
    ({"ledger": {"urll": "x"}}, "ledger.urll", "unknown key 'urll'"),
    ({"ledger": {"url": "mysql://x"}}, "ledger.url", "sqlite:///FILE or postgresql://"),
    ({"ledger": {"batch": 0}}, "ledger.batch", "greater than 0"),
    ({"state": {"backend": "etcd"}}, "state.backend", "memory, redis"),
    ({"state": {"url": "redis://x"}}, "state.url", "for backend: redis"),
    ({"state": {"backend": "redis", "on_error": "maybe"}}, "state.on_error", "open, closed"),
    ({"budgets": {"global": True}}, "budgets", "must be a list"),
    ({"budgets": [{"limit": "5/day"}]}, "budgets[0]", "exactly one of"),
    ({"budgets": [{"user": "a", "tag": "t=x", "limit": "5/day"}]}, "budgets[0]", "exactly one of"),
    ({"budgets": [{"user": "a"}]}, "budgets[0]", "missing required key 'limit'"),
    ({"budgets": [{"user": "a", "limit": 5}]}, "budgets[0].limit", "needs a period"),
    ({"budgets": [{"user": "a", "limit": "5/year"}]}, "budgets[0].limit", "50/month"),
    ({"budgets": [{"tag": "team", "limit": "5/day"}]}, "budgets[0].tag", "NAME=VALUE"),
    ({"budgets": [{"user": "a", "limit": "5/day", "soft": "120%"}]}, "budgets[0].soft", "between 0 and 1"),
    ({"budgets": [{"user": "a", "limit": "5/day", "downgrade_to": "x"}]}, "budgets[0].downgrade_to", "soft"),
    ({"budgets": [{"user": "a", "limit": "5/day", "soft": 0.5, "downgrade_to": "nope"}]},
     "budgets[0].downgrade_to", "unknown route or model 'nope'"),
    ({"budgets": [{"user": "a", "limit": "5/day", "period": "day"}]}, "budgets[0].period", "unknown key"),
])
def test_mistakes_name_the_key(raw, key, words):
    with pytest.raises(ConfigError) as e:
        parse(raw, err, names=["auto"])
    assert e.value.key == key and words in str(e.value)
