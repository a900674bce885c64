"""``switchman keys`` and ``switchman spend`` as a person (and a script) would run them."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import orjson

from switchman.accounting.cli import keys_main, spend_main
from switchman.accounting.ledger import Ledger
from switchman.accounting.store import open_store

from .test_ledger import entry


def run_keys(capsys, *argv):
    code = keys_main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_create_prints_the_key_once_then_list_and_revoke(sqlite_url, capsys):
    code, out, err = run_keys(capsys, "create", "--name", "search-bot", "--budget", "50/month", "--rpm", "60",
                              "--routes", "auto,cheap", "--user", "svc", "--tags", "team=search",
                              "--ledger", sqlite_url)
    assert code == 0
    secret = out.strip()
    assert secret.startswith("sk-sm-") and len(secret) == 38
    assert "only time it is shown" in err and secret not in err
    code, out, _ = run_keys(capsys, "list", "--ledger", sqlite_url)
    assert code == 0 and secret not in out
    assert "search-bot" in out and "50/month" in out and "auto,cheap" in out and "live" in out
    code, out, _ = run_keys(capsys, "list", "--json", "--ledger", sqlite_url)
    (k,) = orjson.loads(out)["data"]
    assert (k["name"], k["rpm"], k["routes"], k["tags"], k["budget"]) == (
        "search-bot", 60, ["auto", "cheap"], {"team": "search"}, "50/month")
    assert run_keys(capsys, "revoke", "search-bot", "--ledger", sqlite_url)[0] == 0
    assert "no keys" in run_keys(capsys, "list", "--ledger", sqlite_url)[1]
    assert "revoked" in run_keys(capsys, "list", "--all", "--ledger", sqlite_url)[1]


def test_exit_codes(sqlite_url, capsys):
    assert run_keys(capsys, "create", "--ledger", sqlite_url)[0] == 2  # --name missing
    code, _, err = run_keys(capsys, "create", "--name", "x", "--budget", "lots", "--ledger", sqlite_url)
    assert code == 2 and "50/month" in err
    code, _, err = run_keys(capsys, "revoke", "nobody", "--ledger", sqlite_url)
    assert code == 1 and "no key" in err
    code, _, err = run_keys(capsys, "list", "--ledger", "postgresql://nobody@127.0.0.1:1/none")
    assert code == 1 and "cannot open the ledger" in err
    assert spend_main(["--since", "yesterday-ish", "--ledger", sqlite_url]) == 2


def test_create_json_for_scripts(sqlite_url, capsys):
    code, out, _ = run_keys(capsys, "create", "--name", "x", "--expires", "2099-01-01", "--json", "--ledger", sqlite_url)
    d = orjson.loads(out)
    assert code == 0 and d["key"].startswith("sk-sm-") and d["expires"] == "2099-01-01T00:00:00Z"


def test_spend_table_and_json(sqlite_url, capsys):
    now = time.time()

    async def fill():
        led = Ledger(open_store(sqlite_url))
        await led.start()
        for i in range(30):
            await led.write(*entry(i, t=now - 60))
        await led.close()

    asyncio.run(fill())
    want = sum((entry(i)[0].cost for i in range(30)), Decimal(0))
    assert spend_main(["--by", "model", "--since", "1d", "--ledger", sqlite_url]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[1].split()[:2] == ["MODEL", "REQUESTS"]
    assert "total" in out and "mini" in out and "sonnet" in out
    assert spend_main(["--by", "tag", "--json", "--since", "1d", "--ledger", sqlite_url]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert {r["group"] for r in report["rows"]} == {"team=search", "team=ads"}
    assert spend_main(["--by", "day", "--json", "--since", "1d", "--ledger", sqlite_url]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["total"]["requests"] == 30 and Decimal(report["total"]["cost_usd"]) == want
    assert spend_main(["--by", "key", "--since", "2099-01-01", "--ledger", sqlite_url]) == 0
    assert "no requests" in capsys.readouterr().out
