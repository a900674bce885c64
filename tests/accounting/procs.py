"""A gateway worker's accounting, as a separate process, for the multi-process tests.

    python procs.py MODE LEDGER_URL STATE PREFIX SECRET N

STATE is ``memory`` or a redis:// URL. The worker starts its ``Accountant`` on the fixed test
clock, prints ``ready``, waits for a line on stdin, then:

- ``budget``: N concurrent admissions of calls that can cost $0.30 each, held 50 ms, then settled
  at that full cost; prints ``{"admitted": k, "spent": "..."}``;
- ``rpm``: N admissions at once; prints ``{"admitted": k}``;
- ``watch``: admits every 10 ms until refused; prints ``{"refused_at": unix time}``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import orjson  # noqa: E402

from switchman.accounting import (  # noqa: E402
    Accountant, AccountingSettings, AdmissionContext, AttemptRecord, BudgetExceeded, RateLimited, RequestRecord, Role,
)
from switchman.accounting.settings import LedgerSettings, StateSettings  # noqa: E402
from switchman.config import ModelSpec, Price, ProviderSpec  # noqa: E402
from switchman.errors import Unauthorized  # noqa: E402

SLOW_OK = 2.0  # as conftest.SLOW_OK: this runs as its own process, outside the test package

NOON = 1_795_003_200.0
DEAR = ModelSpec(name="dear", provider=ProviderSpec("p", "openai", "openai", "http://127.0.0.1:9"), upstream="dear",
                 price=Price(Decimal(100), Decimal(200)))


class Clock:
    def now(self) -> float:
        return NOON


def ctx(secret: str) -> AdmissionContext:
    return AdmissionContext(api_key=secret, route="auto", candidates=[DEAR], input_tokens=1_000, max_tokens=1_000)


async def main(mode: str, url: str, state: str, prefix: str, secret: str, n: int) -> None:
    st = StateSettings() if state == "memory" else StateSettings(backend="redis", url=state, prefix=prefix, timeout=SLOW_OK)
    acc = Accountant(AccountingSettings(LedgerSettings(url=url, flush_interval=0.01), st), required=True,
                     now=Clock().now)
    await acc.start()
    await acc.admit(ctx(secret)) if mode == "watch" else None
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if mode == "watch":
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                await acc.admit(ctx(secret))
            except Unauthorized:
                print(orjson.dumps({"refused_at": time.time()}).decode(), flush=True)
                break
            await asyncio.sleep(0.01)
    elif mode == "rpm":
        got = await asyncio.gather(*(acc.admit(ctx(secret)) for _ in range(n)), return_exceptions=True)
        assert all(not isinstance(g, Exception) or isinstance(g, RateLimited) for g in got), got
        print(orjson.dumps({"admitted": sum(not isinstance(g, Exception) for g in got)}).decode(), flush=True)
    else:
        async def one(i: int) -> Decimal:
            try:
                adm = await acc.admit(ctx(secret))
            except BudgetExceeded:
                return Decimal(0)
            await asyncio.sleep(0.05)
            a = AttemptRecord(0, Role.FIRST, "dear", "p", 200, input_tokens=1_000, output_tokens=1_000,
                              cost=adm.max_cost, time=NOON)
            rid = f"req_{prefix}_{id(adm)}_{i}_{time.monotonic_ns()}"
            await acc.settle(adm, RequestRecord.from_attempts(rid, NOON, "auto", [a], a), [a])
            return adm.max_cost

        costs = await asyncio.gather(*(one(i) for i in range(n)))
        print(orjson.dumps({"admitted": sum(1 for c in costs if c), "spent": str(sum(costs))}).decode(), flush=True)
    await acc.close()


if __name__ == "__main__":
    m, u, s, p, k, count = sys.argv[1:7]
    asyncio.run(main(m, u, s, p, k, int(count)))
