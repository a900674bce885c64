"""A driver for property tests of the money paths (issue 15): random sequences of requests through
the real gateway and metering (in-process, against ``FakeUpstream`` on loopback), then the
invariants a team trusts a budget for:

- spend never passes any applicable limit (each budget counter, and the ledger's spend per scope);
- every reservation is released once traffic is at rest;
- the ledger's total equals the upstream usage priced (attempts counted locally are flagged
  ``estimated`` and left out of that sum; sequences with a client that went away or a hedge are
  left out of this one check, as the upstream may have finished an answer the gateway cancelled);
- no entry is lost or doubled (one ledger row per admitted request).

``tests/accounting/test_properties.py`` drives it with Hypothesis on memory, SQLite, Redis and
PostgreSQL; ``benchmarks/ledger.py`` runs more sequences and reports the largest overshoot seen.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from decimal import Decimal

from ..accounting.budgets import Scope, holds_for
from ..accounting.errors import BudgetExceeded, RateLimited
from ..accounting.records import from_nusd
from ..configfile import loads
from ..errors import SwitchmanError
from ..gateway import Gateway
from ..metering import Metering
from .fake_upstream import FakeModel, FakeUpstream

# English prose: the 4 characters a token that reservations assume holds for it (text that tokenizes
# denser, like long runs of one letter or CJK, is a known limit of that estimate: see issue 15's note)
_WORDS = "The committee will review every budget request before the end of the quarter. "
PRICES = {"cheap": (1, 2), "mid": (20, 40), "dear": (100, 200), "judge": (50, 50)}
ROUTES = ("first", "fallback", "cascade", "hedged", "resumed", "downgraded")
BEHAVIOURS = ("ok", "fail", "r429", "cut", "huge", "negative", "fraction", "missing")
_USAGE = {"huge": {"completion_tokens": 10**13}, "negative": {"completion_tokens": -10**6},
          "fraction": {"prompt_tokens": 10.5}, "missing": {"prompt_tokens": None, "completion_tokens": None}}


@dataclass(frozen=True)
class Step:
    route: str  # one of ROUTES
    behaviour: str  # what the route's first model does: one of BEHAVIOURS
    stream: bool
    max_tokens: int | None
    prompt_chars: int
    user: str  # alice, bob
    team: str  # search, ads
    leave: bool  # the client goes away mid-request


@dataclass
class Outcome:
    admitted: int = 0  # requests surely admitted (answered, or failed after admission)
    refused: int = 0  # refused by a budget or rate limit (no ledger row)
    left: int = 0  # the client went away: admitted or not
    overshoot: Decimal = Decimal(0)  # the most any limit was passed by (USD); must stay 0
    problems: list[str] = field(default_factory=list)


def _config(fake: FakeUpstream, ledger_url: str, state: str) -> str:
    oa, an = fake.url("openai"), fake.url("anthropic")
    models = []
    for tier, (i, o) in PRICES.items():
        for b in BEHAVIOURS:
            prov = "an" if tier == "mid" else "oa"
            models.append(f"  - {{name: {tier}-{b}, provider: {prov}, price: {{input: {i}, output: {o}}}}}")
    return f"""
providers:
  oa: {{kind: openai, base_url: "{oa}", api_key: "k"}}
  an: {{kind: anthropic, base_url: "{an}", api_key: "k"}}
models:
{chr(10).join(models)}
routes:
{chr(10).join(_routes())}
auth: {{admin_key: "sk-money-admin", keys_required: true}}
ledger: {{url: "{ledger_url}", flush_interval: 0.01}}
state: {state}
retry: {{attempts: 1}}
budgets:
  - {{user: "*", limit: 0.5/day}}
  - {{user: alice, limit: 0.3/day, soft: 0.5, downgrade_to: cheap-ok}}
  - {{key: app, limit: 0.8/day}}
  - {{tag: "team=*", limit: 0.45/day}}
  - {{tag: team=search, limit: 0.35/day}}
default_max_output: 300
"""


def _routes() -> list[str]:
    out = []
    for b in BEHAVIOURS:
        out += [
            f"  - {{name: first-{b}, policy: {{kind: first, models: [mid-{b}]}}}}",
            f"  - {{name: fallback-{b}, policy: {{kind: first, models: [cheap-{b}, dear-ok]}}}}",
            f"  - {{name: cascade-{b}, policy: {{kind: cascade, models: [cheap-{b}, mid-ok, dear-ok], "
            f"checks: {{judge: {{model: judge-ok, min: 7}}}}}}}}",
            f"  - {{name: hedged-{b}, policy: {{kind: first, models: [cheap-{b}, mid-ok]}}, hedge: {{after: 0.001}}}}",
            f"  - {{name: resumed-{b}, policy: {{kind: first, models: [mid-{b}, dear-ok]}}, stream: {{on_cut: resume}}}}",
            f"  - {{name: downgraded-{b}, policy: {{kind: first, models: [dear-{b}]}}}}",
        ]
    return out


def _fake() -> FakeUpstream:
    """One upstream model id per configured model, so its usage can be priced at that model's price."""
    behave = {"ok": dict(reply="seven", chunks=3), "fail": dict(error_status=500),
              "r429": dict(error_status=429, retry_after=0.01), "cut": dict(cut_after=1, chunks=4)}
    behave.update({b: dict(usage=u) for b, u in _USAGE.items()})
    return FakeUpstream({f"{t}-{b}": FakeModel(**kw) for t in PRICES for b, kw in behave.items()})


async def run(steps: list[Step], ledger_url: str, state: str = "{backend: memory}",
              redis_prefix: str | None = None) -> Outcome:
    """Send ``steps`` (a few at a time, as concurrent clients would) and check the invariants."""
    fake = _fake()
    await fake.start()
    cfg = loads(_config(fake, ledger_url, state), file="money.yaml", env={})
    gw = Gateway(cfg)
    meter = Metering.from_config(gw)
    assert meter is not None
    await meter.start()
    out = Outcome()
    try:
        acc = meter.accountant
        secret, key = await acc.create_key(name="app")
        for i in range(0, len(steps), 4):
            await asyncio.gather(*(_one(meter, secret, s, out) for s in steps[i:i + 4]))
        await acc.flush()
        await _check(meter, key, steps, out)
        await _books(meter, fake, steps, out)
    finally:
        await meter.close()
        await gw.close()
        await fake.stop(grace=0.1)
    return out


async def _one(meter: Metering, secret: str, s: Step, out: Outcome) -> None:
    body = {"model": f"{s.route}-{s.behaviour}", "stream": s.stream,
            "messages": [{"role": "user", "content": (_WORDS * (s.prompt_chars // len(_WORDS) + 1))[:s.prompt_chars]}]}
    if s.max_tokens is not None:
        body["max_tokens"] = s.max_tokens
    task = asyncio.ensure_future(meter.chat(api_key=secret, tags={"team": s.team}, user=s.user, **body))
    try:
        if s.leave:
            await asyncio.sleep(0)
            task.cancel()
        reply = await task
    except (BudgetExceeded, RateLimited):
        out.refused += 1
        return
    except asyncio.CancelledError:
        out.left += 1  # admitted or not
        return
    except SwitchmanError:
        out.admitted += 1  # every candidate failed: settled all the same
        return
    if s.leave:
        out.left += 1
    else:
        out.admitted += 1
    if reply.events is not None:
        with contextlib.suppress(SwitchmanError):  # a stream that broke after it began: already counted
            async for _ in reply.events:
                if s.leave:
                    break
        await reply.events.aclose()  # type: ignore[union-attr]


async def _check(meter: Metering, key, steps: list[Step], out: Outcome) -> None:
    acc = meter.accountant
    now = acc._now()
    counters: dict[str, int] = {}
    for u, t in ((u, t) for u in ("alice", "bob") for t in ("search", "ads")):
        for h in holds_for(acc.rules, now, key_id=key.id, key_name=key.name, user=u, tags={"team": t}):
            counters[h.counter] = h.limit_nusd
    got = await acc.state.read(list(counters))
    for (counter, limit), v in zip(counters.items(), got):
        if v is None:
            continue
        spent, reserved = v
        if reserved != 0:
            out.problems.append(f"{counter}: {from_nusd(reserved)} still reserved at rest")
        if spent > limit:
            out.overshoot = max(out.overshoot, from_nusd(spent - limit))
            out.problems.append(f"{counter}: spent {from_nusd(spent)} over its limit {from_nusd(limit)}")
    for kind, value, limit in _scope_limits(acc.rules, key.id):
        total = await acc.ledger.scope_spend(kind, value, now - 86_400 * 2)  # type: ignore[union-attr]
        if total > limit:
            out.overshoot = max(out.overshoot, total - limit)
            out.problems.append(f"ledger {kind}:{value} spent {total} over {limit}")


async def _books(meter: Metering, fake: FakeUpstream, steps: list[Step], out: Outcome) -> None:
    """No row lost or doubled; the ledger's cost equals the upstream's reported usage, priced."""
    rows, costs = await meter.accountant.store.audit()
    if not out.admitted <= rows <= out.admitted + out.left:
        out.problems.append(f"{rows} ledger rows for {out.admitted} admitted requests (+{out.left} that left)")
    if out.left or any(s.route == "hedged" for s in steps):
        # A client that left, or a hedge that lost: the upstream may have finished an answer the
        # gateway had already cancelled, and booked at $0 (the probe's "unproven" note; see the
        # closing note of issue 15). Exact books are checked on the other sequences.
        return
    cfg = meter.config.models
    for name, st in fake.stats.items():
        m = cfg.get(name)
        if m is None or name.split("-", 1)[1] in _USAGE:
            continue  # absurd usage: counted locally, flagged estimated
        want = m.price.cost(st.input_tokens, st.output_tokens, st.cache_read_tokens, st.cache_write_tokens,
                            st.cache_write_1h_tokens)
        booked = from_nusd(0) + Decimal(costs.get((name, False), 0)) / Decimal(10**12)
        if booked != want:
            out.problems.append(f"{name}: ledger {booked} against {want} of reported usage")


def _scope_limits(rules, key_id: str) -> list[tuple[str, str | None, Decimal]]:
    out = []
    for r in rules:
        if r.scope is Scope.USER:
            for u in ("alice", "bob"):
                if r.match in ("*", u):
                    out.append(("user", u, r.limit))
        elif r.scope is Scope.TAG:
            for t in ("search", "ads"):
                if r.match in ("team=*", f"team={t}"):
                    out.append(("tag", f"team={t}", r.limit))
        elif r.scope is Scope.KEY:
            out.append(("key", key_id, r.limit))
    return out
