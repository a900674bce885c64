"""Live routing state shared by every worker and replica through Redis (``state: {backend: redis}``):
``least-busy``'s calls in flight and ``bandit`` posteriors.

Nothing here is on the request path. A background task, every ``interval`` seconds:

- writes this worker's calls in flight per model (a hash per worker that expires unless renewed,
  so a dead worker's counts vanish within ``ttl``) and reads every other live worker's, summed into
  ``LiveStats.remote``: ``least-busy`` compares this worker's exact counts plus the others' as of
  the last tick;
- adds the feedback, failures and costs each bandit learned since the last tick to the route's
  totals in Redis (``HINCRBYFLOAT``, so concurrent workers never overwrite each other) and reads
  the totals back: every worker's posterior is the prior plus everything any worker learned, and
  survives restarts.

Redis down: the task keeps trying; ``least-busy`` uses this worker's counts and bandits what this
worker learned since, and both say so in the reason. Measured: a tick is two pipelined round
trips; decisions read only local snapshots (``benchmarks/adaptive.py``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter

log = logging.getLogger("switchman")


class SharedState:
    def __init__(self, url: str, prefix: str, live, bandits: dict, interval: float = 0.1, ttl: float = 3.0,
                 timeout: float = 0.25) -> None:
        import redis.asyncio as aioredis

        self.r = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.prefix = prefix
        self.live = live
        self.bandits = bandits  # route name -> Bandit
        self.interval = interval
        self.ttl = ttl
        self.worker = os.urandom(6).hex()
        self._task: asyncio.Task | None = None
        self._warned = -1e18
        for b in bandits.values():
            b.pending = {}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.interval)

    async def tick(self) -> bool:
        """One exchange with Redis; False (and local state marked as such) when it failed."""
        try:
            await self._busy()
            for route, b in self.bandits.items():
                await self._posteriors(route, b)
        except Exception as e:  # noqa: BLE001 - Redis down: route on local state, and say so
            self._down(e)
            return False
        self.live.shared = True
        for b in self.bandits.values():
            b.shared = True
        return True

    def _down(self, e: Exception) -> None:
        self.live.shared = False
        self.live.remote = Counter()
        for b in self.bandits.values():
            b.shared = False
        now = time.monotonic()
        if now - self._warned > 30:
            self._warned = now
            log.warning("shared routing state unreachable, routing on this worker's own: %s: %s", type(e).__name__, e)

    async def _busy(self) -> None:
        mine = f"{self.prefix}busy:{self.worker}"
        workers = f"{self.prefix}busy:workers"
        counts = {m: n for m, n in self.live.inflight.items() if n}
        if self.live.used:  # this minute's calls and tokens of rate-limited models (prefer: headroom)
            counts["minute"] = self.live.minute
            for m, (c, t) in self.live.used.items():
                counts[f"rpm|{m}"], counts[f"tpm|{m}"] = c, t
        p = self.r.pipeline(transaction=False)
        p.delete(mine)
        if counts:
            p.hset(mine, mapping=counts)
        p.set(f"{mine}:alive", 1, px=int(self.ttl * 1000))
        p.sadd(workers, self.worker)
        p.smembers(workers)
        got = await p.execute()
        others = [w.decode() if isinstance(w, bytes) else w for w in got[-1]]
        others = [w for w in others if w != self.worker]
        if not others:
            self.live.remote = Counter()
            self.live.remote_used = {}
            return
        p = self.r.pipeline(transaction=False)
        for w in others:
            p.exists(f"{self.prefix}busy:{w}:alive")
            p.hgetall(f"{self.prefix}busy:{w}")
        got = await p.execute()
        remote: Counter = Counter()
        used: dict[str, list[int]] = {}
        gone = []
        for w, alive, h in zip(others, got[0::2], got[1::2]):
            if not alive:
                gone.append(w)
                continue
            h = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in h.items()}
            same_minute = h.pop("minute", None) == self.live.minute
            for m, n in h.items():
                if "|" not in m:
                    remote[m] += n
                elif same_minute:
                    kind, model = m.split("|", 1)
                    used.setdefault(model, [0, 0])[kind == "tpm"] += n
        if gone:
            await self.r.srem(workers, *gone)
        self.live.remote = remote
        self.live.remote_used = used

    async def _posteriors(self, route: str, b) -> None:
        key = f"{self.prefix}bandit:{route}"
        pending, b.pending = b.pending, {}
        p = self.r.pipeline(transaction=False)
        for (ctx, model), (da, db, dc, dn) in pending.items():
            f = f"{ctx or ''}|{model}"
            for suffix, d in (("a", da), ("b", db), ("c", dc), ("n", dn)):
                if d:
                    p.hincrbyfloat(key, f"{f}|{suffix}", d)
        p.hgetall(key)
        try:
            got = (await p.execute())[-1]
        except Exception:
            for k, v in pending.items():  # not sent: keep them for the next tick
                w = b.pending.setdefault(k, [0.0, 0.0, 0.0, 0.0])
                for i in range(4):
                    w[i] += v[i]
            raise
        totals: dict[tuple[str | None, str], list[float]] = {}
        for f, v in got.items():
            f = f.decode() if isinstance(f, bytes) else f
            ctx, model, suffix = f.rsplit("|", 2)
            t = totals.setdefault((ctx or None, model), [0.0, 0.0, 0.0, 0.0])
            t["abcn".index(suffix)] += float(v)
        b.apply_shared(totals)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        try:
            await self.r.delete(f"{self.prefix}busy:{self.worker}", f"{self.prefix}busy:{self.worker}:alive")
        except Exception:  # noqa: BLE001
            pass
        await self.r.aclose()
