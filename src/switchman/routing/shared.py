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
  survives restarts;
- adds what each paced route spent since the last tick to its window's total (``pace:``, one
  counter per route and UTC window, expiring after two windows) and reads the sum back, so the
  route is paced on what every worker spent, across restarts;
- does the same for each experiment's arm figures, adopts the rollout's step, rollback and history,
  runs the canary's error-rate test on the totals at every tick, and reviews all four figures once
  ``min_requests`` new candidate requests came in anywhere; a decision
  is written by a script that takes it only if the rollout has not moved since it was read, so two
  workers reviewing at once cannot both step it.

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

import orjson

log = logging.getLogger("switchman")


_FIELDS = ("requests", "errors", "cost", "cost2", "fn", "fs", "fs2")

# A rollout's decision, taken only if no other worker moved it since this one read it:
# KEYS[1] the experiment's hash, KEYS[2] its history; ARGV: the step seen, the action, why, the
# history entry. Returns 1 when this decision is the one taken.
_DECIDE = """
local step = tonumber(redis.call('HGET', KEYS[1], 'step') or '0')
if step ~= tonumber(ARGV[1]) or redis.call('HGET', KEYS[1], 'rolled_back') or redis.call('HGET', KEYS[1], 'finished') then
  return 0
end
if ARGV[2] == 'rollback' then
  redis.call('HSET', KEYS[1], 'rolled_back', ARGV[3])
elseif ARGV[2] == 'step' then
  redis.call('HSET', KEYS[1], 'step', step + 1, 'at_step', 0)
else
  redis.call('HSET', KEYS[1], 'finished', '1')
end
redis.call('RPUSH', KEYS[2], ARGV[4])
return 1
"""


class SharedState:
    def __init__(self, url: str, prefix: str, live, bandits: dict, interval: float = 0.1, ttl: float = 3.0,
                 timeout: float = 0.25, experiments: dict | None = None, pacers: dict | None = None) -> None:
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
        self.experiments = experiments or {}  # route name -> Experiment
        for e in self.experiments.values():
            e.pending = {}
        self.pacers = pacers or {}  # route name -> Pacer
        for pc in self.pacers.values():
            pc.pending = 0.0
        self._decide = self.r.register_script(_DECIDE)

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
            for route, e in self.experiments.items():
                await self._experiment(route, e)
            if self.pacers:
                await self._paced()
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
            self.live.peers = 0
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
        self.live.peers = len(others) - len(gone)
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

    async def _paced(self) -> None:
        """Each paced route's spend this window, summed over the workers."""
        p = self.r.pipeline(transaction=False)
        sent = []
        for route, pc in self.pacers.items():
            pc.tradeoff()  # moves to a new window if one began
            key = f"{self.prefix}pace:{route}:{pc.label}"
            add, pc.pending = pc.pending, 0.0
            sent.append((pc, pc.label, add))
            p.incrbyfloat(key, add)
            p.expire(key, int(2 * (pc.window_end - pc.window_start)) + 60)
        try:
            got = await p.execute()
        except Exception:
            for pc, _, add in sent:  # not added: kept for the next tick
                pc.pending += add
            raise
        for (pc, label, _), total in zip(sent, got[::2]):
            pc.shared_total(label, float(total))

    async def _experiment(self, route: str, e) -> None:
        """Add this worker's arm figures to the shared totals, adopt the rollout's state, and review
        when ``min_requests`` new candidate requests have come in (anywhere)."""
        key = f"{self.prefix}exp:{route}"
        pending, e.pending = e.pending, {}
        p = self.r.pipeline(transaction=False)
        for arm, d in pending.items():
            for name, v in zip(_FIELDS, d):
                if v:
                    p.hincrbyfloat(key, f"{arm}|{name}", v)
            if e.spec.ramp and arm == e.arms[1] and d[0]:
                p.hincrbyfloat(key, "at_step", d[0])
        p.hgetall(key)
        p.lrange(f"{key}:history", 0, -1)
        try:
            got = await p.execute()
        except Exception:
            for arm, d in pending.items():  # not added: kept for the next tick
                w = e.pending.setdefault(arm, [0.0] * 7)
                for i in range(7):
                    w[i] += d[i]
            raise
        h = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
             for k, v in got[-2].items()}
        for arm, st in e.stats.items():
            vals = [float(h.get(f"{arm}|{n}", 0)) for n in _FIELDS]
            st.requests, st.errors, st.cost, st.cost2 = int(vals[0]), int(vals[1]), vals[2], vals[3]
            st.feedback_n, st.feedback_sum, st.feedback_sum2 = int(vals[4]), vals[5], vals[6]
        self._adopt(e, h, got[-1])
        if e.spec.ramp and not e.rolled_back and not e.finished:
            if float(h.get("at_step", 0)) >= e.spec.min_requests:
                action, why = e.verdict()
            else:  # between steps the error test looks at the totals on every tick
                worse = e.error_regression()
                if not worse:
                    return
                action, why = "rollback", worse
            share = {"rollback": 0.0, "done": 100.0}.get(action) or e.spec.ramp[e.step + 1]
            entry = {"time": time.time(), "action": action, "step": e.step + (action == "step"),
                     "candidate_share": share, "why": why}
            won = await self._decide(keys=[key, f"{key}:history"],
                                     args=[e.step, action, why, orjson.dumps(entry).decode()])
            if won:
                e.apply(action, why)

    @staticmethod
    def _adopt(e, h: dict, history: list) -> None:
        """The rollout's step, rollback and history as the shared state has them."""
        step = int(h.get("step", 0))
        e.rolled_back = h.get("rolled_back") or e.rolled_back
        e.finished = h.get("finished") == "1" or e.finished
        if step != e.step:
            e.step = step
            e.at_step = 0
        if len(history) > len(e.history) - 1:  # the local "start" entry is not shared
            e.history = e.history[:1] + [orjson.loads(x) for x in history]

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
