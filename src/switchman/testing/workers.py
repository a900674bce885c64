"""Gateway workers' accounting as separate processes sharing one ledger database and one state
backend: how the tests and ``benchmarks/ledger.py`` show that budgets, rate limits and
revocations hold across workers.

    python -m switchman.testing.workers MODE LEDGER_URL STATE PREFIX SECRET N

STATE is ``memory`` or a redis:// URL. The worker starts its ``Accountant`` on a fixed clock
(:data:`NOON`), prints ``ready``, waits for a line on stdin, then prints one JSON line:

- ``budget``: N concurrent admissions of calls that can cost $0.30 each, held 50 ms, then settled
  at that full cost: ``{"admitted": k, "spent": "..."}``;
- ``rpm``: N admissions at once: ``{"admitted": k, "errors": e}`` (errors other than 429);
- ``watch``: admits every 5 ms until refused: ``{"refused_at": unix time}``.

:func:`spawn` starts them (each connected before any fires), :func:`release` fires them and
:func:`results` collects what they printed.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import orjson

from ..accounting import (
    Accountant,
    AccountingSettings,
    AdmissionContext,
    AttemptRecord,
    BudgetExceeded,
    RateLimited,
    RequestRecord,
    Role,
)
from ..accounting.settings import LedgerSettings, StateSettings
from ..config import ModelSpec, Price, ProviderSpec
from ..errors import Unauthorized

NOON = 1_795_003_200.0  # a fixed mid-month noon: no run straddles a period or a rate window
PROVIDER = ProviderSpec("bench", "openai", "openai", "http://127.0.0.1:9")
DEAR = ModelSpec(name="dear", provider=PROVIDER, upstream="dear", price=Price(Decimal(100), Decimal(200)))
STATE_TIMEOUT = 2.0  # seconds: generous, for a loaded machine


class FixedClock:
    def now(self) -> float:
        return NOON


def ctx(secret: str | None, route: str = "auto", models=(DEAR,)) -> AdmissionContext:
    """A call that can cost $0.30 on :data:`DEAR` (1,000 tokens in, ``max_tokens`` 1,000)."""
    return AdmissionContext(api_key=secret, route=route, candidates=list(models), input_tokens=1_000, max_tokens=1_000)


def record(cost: Decimal, rid: str) -> tuple[RequestRecord, list[AttemptRecord]]:
    """The ledger entries of such a call, answered at ``cost``."""
    a = AttemptRecord(0, Role.FIRST, "dear", PROVIDER.name, 200, input_tokens=1_000, output_tokens=1_000, cost=cost,
                      time=NOON)
    return RequestRecord.from_attempts(rid, NOON, "auto", [a], a), [a]


def accountant(url: str, state: str, prefix: str, *, enabled: bool = True, clock=None,
               flush_interval: float = 0.05, timeout: float = STATE_TIMEOUT) -> Accountant:
    st = StateSettings() if state == "memory" else StateSettings(backend="redis", url=state, prefix=prefix,
                                                                 timeout=timeout)
    return Accountant(AccountingSettings(LedgerSettings(url=url, enabled=enabled, flush_interval=flush_interval), st),
                      required=True, now=(clock or FixedClock()).now)


async def worker(mode: str, url: str, state: str, prefix: str, secret: str, n: int) -> None:
    acc = accountant(url, state, prefix, flush_interval=0.01)
    await acc.start()
    if mode == "watch":
        await acc.admit(ctx(secret))
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
            await asyncio.sleep(0.005)
    elif mode == "rpm":
        got = await asyncio.gather(*(acc.admit(ctx(secret)) for _ in range(n)), return_exceptions=True)
        bad = [g for g in got if isinstance(g, Exception) and not isinstance(g, RateLimited)]
        print(orjson.dumps({"admitted": sum(not isinstance(g, Exception) for g in got), "errors": len(bad)}).decode(),
              flush=True)
    else:
        async def one(i: int) -> Decimal:
            try:
                adm = await acc.admit(ctx(secret))
            except BudgetExceeded:
                return Decimal(0)
            await asyncio.sleep(0.05)  # in flight together
            await acc.settle(adm, *record(adm.max_cost, f"w{os.getpid()}_{i}_{uuid.uuid4().hex[:6]}"))
            return adm.max_cost

        costs = await asyncio.gather(*(one(i) for i in range(n)))
        print(orjson.dumps({"admitted": sum(1 for c in costs if c), "spent": str(sum(costs))}).decode(), flush=True)
    await acc.close()


def spawn(mode: str, url: str, state: str, prefix: str, secret: str, n: int, count: int) -> list[subprocess.Popen]:
    """``count`` workers, each started and connected (it printed ``ready``)."""
    src = str(Path(__file__).resolve().parents[2])  # this switchman, installed or not
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen([sys.executable, "-m", "switchman.testing.workers", mode, url, state, prefix, secret,
                               str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
             for _ in range(count)]
    for p in procs:
        line = p.stdout.readline().strip()  # type: ignore[union-attr]
        if line != "ready":
            for q in procs:
                q.kill()
            raise RuntimeError(f"worker failed to start: {line!r}")
    return procs


def release(procs: list[subprocess.Popen]) -> None:
    """Fire every worker at once."""
    for p in procs:
        p.stdin.write("go\n")  # type: ignore[union-attr]
        p.stdin.flush()  # type: ignore[union-attr]


def results(procs: list[subprocess.Popen], timeout: float = 30) -> list[dict]:
    """What each worker printed last, once it has ended (a worker that failed raises)."""
    out = []
    for p in procs:
        stdout, _ = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"worker exited with {p.returncode}")
        out.append(orjson.loads(stdout.strip().splitlines()[-1]))
    return out


if __name__ == "__main__":
    m, u, s, p, k, count = sys.argv[1:7]
    asyncio.run(worker(m, u, s, p, k, int(count)))
