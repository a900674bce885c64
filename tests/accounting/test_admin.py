"""``/admin/keys``, ``/admin/spend`` and ``/admin/budgets`` through their handlers."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from switchman.accounting.admin import AdminApi
from switchman.accounting.budgets import BudgetRule, Period, Scope
from switchman.accounting.facade import AdmissionContext
from switchman.errors import Unauthorized

from .test_facade import DEAR, record, started


@pytest.fixture
async def api(sqlite_url):
    rules = [BudgetRule(Scope.GLOBAL, None, Decimal(100), Period.MONTH), BudgetRule(Scope.USER, "*", Decimal(1), Period.DAY)]
    acc = await started(sqlite_url, budgets=rules)
    yield AdminApi(acc)
    await acc.close()


def body(d: dict) -> bytes:
    return orjson.dumps(d)


async def test_create_list_revoke(api):
    status, made = await api("POST", "/admin/keys", "", body({"name": "web", "budget": "50/month", "rpm": 10,
                                                              "routes": ["auto"], "tags": {"team": "web"}}))
    assert status == 201 and made["key"].startswith("sk-sm-") and made["budget"] == "50/month"
    status, listed = await api("GET", "/admin/keys", "", b"")
    assert status == 200 and [k["name"] for k in listed["data"]] == ["web"]
    assert made["key"] not in orjson.dumps(listed).decode()
    status, gone = await api("DELETE", "/admin/keys/web", "", b"")
    assert status == 200 and gone["revoked"] is not None
    with pytest.raises(Unauthorized, match="revoked"):
        await api.acc.admit(AdmissionContext(made["key"], "auto", [DEAR], 10, 10))
    assert (await api("GET", "/admin/keys", "", b""))[1]["data"] == []
    assert len((await api("GET", "/admin/keys", "all=1", b""))[1]["data"]) == 1
    assert (await api("DELETE", "/admin/keys/web", "", b""))[0] == 404


@pytest.mark.parametrize("method, path, query, data, status, words", [
    ("POST", "/admin/keys", "", b"{", 400, "not valid JSON"),
    ("POST", "/admin/keys", "", b"[]", 400, "JSON object"),
    ("POST", "/admin/keys", "", b'{"name": "x", "colour": "red"}', 400, "unknown field(s) colour"),
    ("POST", "/admin/keys", "", b'{"name": "x", "rpm": -1}', 400, "rpm"),
    ("PUT", "/admin/keys", "", b"", 405, "PUT"),
    ("GET", "/admin/keys/x", "", b"", 405, "DELETE"),
    ("GET", "/admin/spend", "by=colour", b"", 400, "by must be one of"),
    ("GET", "/admin/spend", "since=someday", b"", 400, "expected a date"),
    ("GET", "/admin/nothing", "", b"", 404, "no such admin endpoint"),
])
async def test_mistakes(api, method, path, query, data, status, words):
    got, answer = await api(method, path, query, data)
    assert got == status and words in answer["error"]["message"]


async def test_spend_and_budgets(api):
    _, made = await api("POST", "/admin/keys", "", body({"name": "k", "user": "ann"}))
    adm = await api.acc.admit(AdmissionContext(made["key"], "auto", [DEAR], 1_000, 1_000))
    await api.acc.settle(adm, *record(adm, "0.25"))
    status, report = await api("GET", "/admin/spend", "by=user&since=2026-11-01", b"")
    assert status == 200 and report["since"] == "2026-11-01T00:00:00Z"
    assert [(r["group"], r["cost_usd"]) for r in report["rows"]] == [("ann", "0.25")]
    status, budgets = await api("GET", "/admin/budgets", "", b"")
    g, u = budgets["data"]
    assert (g["scope"], g["limit_usd"], Decimal(g["spent_usd"]), g["resets"]) == (
        "global", "100", Decimal("0.25"), "2026-12-01T00:00:00Z")
    assert (u["match"], u["spent_usd"]) == ("*", None)  # one budget per user: no single figure
