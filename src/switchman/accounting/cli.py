"""``switchman keys create/list/revoke`` and ``switchman spend``.

Both find the ledger database (and, for revocations, the shared state) in the config file
(``--config``, default ``./switchman.yaml``), or take ``--ledger URL`` / ``--state URL`` directly.
Tables for people; ``--json`` for machines. Exit codes: 0 success, 1 runtime failure (database
unreachable, no such key), 2 usage or config error.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import orjson

from ..errors import ConfigError
from .admin import spend_report, total_of
from .dates import iso, month_start, parse_when
from .facade import Accountant
from .requestlog import satisfaction_by
from .settings import AccountingSettings
from .state import MemoryState
from .store import GROUPINGS, SpendRow

Loader = Callable[[str | None], AccountingSettings]


def load_settings(path: str | None) -> AccountingSettings:
    """The accounting settings of a config file (what ``configfile`` loaded into ``accounting``)."""
    from .. import configfile

    cfg = configfile.load(path)
    return getattr(cfg, "accounting", None) or AccountingSettings()


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="config file (default ./switchman.yaml) naming the ledger and state")
    p.add_argument("--ledger", metavar="URL", help="ledger database, overriding the config (sqlite:///FILE, postgresql://...)")
    p.add_argument("--state", metavar="URL", help="redis:// URL of the shared state, overriding the config")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _settings(a: argparse.Namespace, load: Loader) -> AccountingSettings:
    s = load(a.config) if (a.config or not a.ledger) else AccountingSettings()
    if a.ledger:
        s = replace(s, ledger=replace(s.ledger, url=a.ledger))
    if a.state:
        s = replace(s, state=replace(s.state, backend="redis", url=a.state))
    return s


def _accountant(s: AccountingSettings) -> Accountant:
    # The CLI writes no ledger entries (and must not replay a running server's spill files), so it
    # opens the database alone; the shared state matters only to revoke.
    acc = Accountant(replace(s, ledger=replace(s.ledger, enabled=False)),
                     state=None if s.state.backend == "redis" else MemoryState())
    return acc


def _run(a: argparse.Namespace, load: Loader, work) -> int:
    try:
        s = _settings(a, load)
    except ConfigError as e:
        print(f"switchman: config error: {e}", file=sys.stderr)
        return 2

    async def main() -> int:
        try:
            acc = _accountant(s)
            await acc.store.open()
        except Exception as e:  # unreachable, refused, or the driver is not installed (ImportError)
            print(f"switchman: cannot open the ledger {s.ledger.url}: {e}", file=sys.stderr)
            return 1
        try:
            return await work(acc)
        finally:
            await acc.store.close()
            await acc.state.close()

    return asyncio.run(main())


# -- keys ----------------------------------------------------------------------------------------------
def keys_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchman keys", description="manage virtual keys")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = sub.add_parser("create", help="create a key and print it (the only time it is shown)")
    c.add_argument("--name", required=True)
    c.add_argument("--budget", help="spend limit, e.g. 50/month (USD per day, week or month)")
    c.add_argument("--rpm", type=int, help="requests per minute")
    c.add_argument("--tpm", type=int, help="tokens per minute")
    c.add_argument("--routes", help="comma-separated routes and models the key may use (default: all)")
    c.add_argument("--expires", help="date (UTC) the key stops working, e.g. 2026-12-31")
    c.add_argument("--user", help="user the key's spend is attributed to")
    c.add_argument("--tags", help="tags for the key's spend, e.g. team=search,feature=chat")
    _common(c)
    ls = sub.add_parser("list", help="list keys (never their secrets)")
    ls.add_argument("--all", action="store_true", help="include revoked keys")
    _common(ls)
    r = sub.add_parser("revoke", help="revoke a key by id or name")
    r.add_argument("key", help="the key's id (key_...) or name")
    _common(r)
    return p


def keys_main(argv: list[str], load: Loader = load_settings) -> int:
    p = keys_parser()
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if a.action == "create":
        return _run(a, load, lambda acc: _create(acc, a))
    if a.action == "list":
        return _run(a, load, lambda acc: _list(acc, a))
    return _run(a, load, lambda acc: _revoke(acc, a))


async def _create(acc: Accountant, a: argparse.Namespace) -> int:
    try:
        secret, rec = await acc.create_key(name=a.name, budget=a.budget, rpm=a.rpm, tpm=a.tpm, routes=a.routes,
                                           expires=a.expires, user=a.user, tags=a.tags)
    except ValueError as e:
        print(f"switchman keys create: {e}", file=sys.stderr)
        return 2 if "already exists" not in str(e) else 1
    if a.json:
        print(orjson.dumps({"key": secret, **_public(rec)}).decode())
    else:
        print(secret)
        print(f"created key '{rec.name}' ({rec.id}); this is the only time it is shown: store it now",
              file=sys.stderr)
    return 0


async def _list(acc: Accountant, a: argparse.Namespace) -> int:
    keys = await acc.list_keys(include_revoked=a.all)
    if a.json:
        print(orjson.dumps({"data": [_public(k) for k in keys]}).decode())
        return 0
    now = time.time()
    head = ("ID", "NAME", "KEY", "USER", "ROUTES", "RPM", "TPM", "BUDGET", "EXPIRES", "STATUS")
    rows = []
    for k in keys:
        status = "revoked" if k.revoked else ("expired" if k.expires and k.expires <= now else "live")
        d = k.as_dict()
        rows.append((k.id, k.name, k.hint, k.user or "", ",".join(k.routes) if k.routes else "all",
                     str(k.rpm or ""), str(k.tpm or ""), d["budget"] or "", (iso(k.expires) or "")[:10], status))
    print(_table(head, rows) if rows else "no keys")
    return 0


async def _revoke(acc: Accountant, a: argparse.Namespace) -> int:
    k = await acc.revoke_key(a.key)
    if k is None:
        print(f"switchman keys revoke: no key with id or name '{a.key}'", file=sys.stderr)
        return 1
    if a.json:
        print(orjson.dumps(_public(k)).decode())
    else:
        print(f"revoked key '{k.name}' ({k.id})")
    return 0


def _public(k) -> dict:
    d = k.as_dict()
    for f in ("created", "expires", "revoked"):
        d[f] = iso(d[f])
    return d


# -- spend ---------------------------------------------------------------------------------------------
def spend_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="switchman spend", description="report spend from the ledger")
    p.add_argument("--by", choices=GROUPINGS, default="model")
    p.add_argument("--since", help="from this date (UTC) or span back (7d); default: start of this month")
    p.add_argument("--until", help="up to this date (UTC), exclusive")
    _common(p)
    return p


def spend_main(argv: list[str], load: Loader = load_settings) -> int:
    p = spend_parser()
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    now = time.time()
    try:
        since = parse_when(a.since, now) if a.since else month_start(now)
        until = parse_when(a.until, now) if a.until else None
    except ValueError as e:
        print(f"switchman spend: {e}", file=sys.stderr)
        return 2

    async def work(acc: Accountant) -> int:
        rows = await acc.store.spend(a.by, since, until)
        sat = await satisfaction_by(acc.store, a.by, since, until)
        if a.json:
            print(orjson.dumps(spend_report(a.by, since, until, rows, sat)).decode())
        else:
            print(f"spend by {a.by}, {iso(since)} to {iso(until) or 'now'} (USD)")
            print(_spend_table(a.by, rows, sat))
        return 0

    return _run(a, load, work)


def _spend_table(by: str, rows: list[SpendRow], sat: dict | None = None) -> str:
    """The spend table; with feedback, a SATISFACTION column (mean quality score, and how many)."""
    sat = sat or {}
    cached = any(r.cache_saved for r in rows)
    head = (by.upper(), "REQUESTS", "INPUT TOK", "OUTPUT TOK", "COST", "BASELINE", "SAVINGS",
            *(("PROMPT CACHE",) if cached else ()), *(("SATISFACTION",) if sat else ()))

    def line(r: SpendRow, name: str, total: bool = False) -> tuple:
        pct = f" ({r.savings / r.baseline:.0%})" if r.baseline else ""
        got = sat.get(r.group)
        extra = () if not sat else ("" if total or got is None else f"{got[1]:.2f} (n={got[0]})",)
        return (name, f"{r.requests:,}", f"{r.input_tokens:,}", f"{r.output_tokens:,}", _usd(r.cost),
                _usd(r.baseline), _usd(r.savings) + pct, *((_usd(r.cache_saved),) if cached else ()), *extra)

    body = [line(r, (f"{r.label} ({r.group})" if r.label else r.group) or "-") for r in rows]
    if not body:
        return "no requests in this range"
    body.append(line(total_of(rows), "total" + (" (over tags)" if by == "tag" else ""), total=True))
    return _table(head, body)


def _usd(d) -> str:
    return f"{d:,.6f}" if abs(d) < 1 else f"{d:,.2f}"


def _table(head: tuple, rows: list[tuple]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    numeric = [i > 0 and all(_numeric(r[i]) for r in rows) for i in range(len(head))]

    def fmt(r: tuple) -> str:
        return "  ".join(str(x).rjust(w) if n else str(x).ljust(w) for x, w, n in zip(r, widths, numeric)).rstrip()

    return "\n".join([fmt(head), *(fmt(r) for r in rows)])


def _numeric(s: str) -> bool:
    t = str(s).replace(",", "").replace(".", "").replace("-", "").split(" ")[0]
    return t.isdigit() or t == ""
