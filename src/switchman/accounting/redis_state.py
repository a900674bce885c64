"""``RedisState``: limits shared by every worker on every machine (``state: {backend: redis}``).

Each operation is one Lua script, so it is atomic in Redis and costs one round trip: ``admit``
checks the revocation set, every rate window and every budget hold, then commits all or nothing.

Keys (under ``prefix``, default ``{switchman}:``, whose braces keep every key in one Redis Cluster
hash slot, as multi-key scripts need):

- ``revoked``: a set of revoked keys' SHA-256s (checked by ``admit`` whenever a request has limits
  to count), and a pub/sub channel of the same name on which each revocation is announced, so
  every worker's key cache drops the key at once;
- ``<window counter>``: a plain integer per fixed window, expiring after it;
- ``<budget counter>``: a hash ``{spent, reserved}`` in nanodollars, and ``<budget counter>:r``, a
  sorted set of reservations (``"<id>:<amount>"`` scored by when it lapses), so a reservation whose
  worker died is given back by the next ``admit`` after it lapses.

Lua numbers are doubles: nanodollars stay exact to 2**53 (about $9 million per counter).

Redis unreachable: every method raises ``StateUnavailable`` quickly (connect and read timeouts of
``timeout`` seconds, then no new attempt for ``retry`` seconds), and the caller applies its
policy. The ledger never depends on Redis.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from .errors import StateUnavailable
from .state import AdmitOp, Outcome, SettleOp, StateBackend, Verdict

try:
    import redis.asyncio as aioredis
    from redis.exceptions import BusyLoadingError, ConnectionError as RedisConnectionError, TimeoutError as RedisTimeout
except ImportError:  # pragma: no cover - exercised only without the extra
    aioredis = None

log = logging.getLogger("switchman.accounting")

_ADMIT = """
local nw = tonumber(ARGV[2])
local nh = tonumber(ARGV[3])
if ARGV[1] ~= '' and redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {1} end
local a = 8
for i = 1, nw do
  local cur = tonumber(redis.call('GET', KEYS[1 + i]) or '0')
  if cur + tonumber(ARGV[a + 1]) > tonumber(ARGV[a]) then return {2, i - 1} end
  a = a + 3
end
local amount = tonumber(ARGV[4])
local now = ARGV[7]
local used = {0}
local b = a
for j = 1, nh do
  local h = KEYS[1 + nw + 2 * j - 1]
  local z = KEYS[1 + nw + 2 * j]
  if redis.call('EXISTS', h) == 0 then return {4, j - 1} end
  local lapsed = redis.call('ZRANGEBYSCORE', z, '-inf', now)
  if #lapsed > 0 then
    local back = 0
    for _, m in ipairs(lapsed) do back = back + tonumber(string.match(m, ':(%d+)$')) end
    redis.call('HINCRBY', h, 'reserved', -back)
    redis.call('ZREMRANGEBYSCORE', z, '-inf', now)
  end
  local v = redis.call('HMGET', h, 'spent', 'reserved')
  local before = tonumber(v[1] or '0') + tonumber(v[2] or '0')
  if before + amount > tonumber(ARGV[b]) then return {3, j - 1, before} end
  used[j + 1] = before + amount
  b = b + 2
end
a = 8
for i = 1, nw do
  redis.call('INCRBY', KEYS[1 + i], ARGV[a + 1])
  redis.call('EXPIRE', KEYS[1 + i], ARGV[a + 2])
  a = a + 3
end
local seen = {}
for j = 1, nh do
  local h = KEYS[1 + nw + 2 * j - 1]
  local z = KEYS[1 + nw + 2 * j]
  if not seen[h] then  -- a counter named twice is reserved once: its lapse member exists once
    seen[h] = true
    redis.call('HINCRBY', h, 'reserved', ARGV[4])
    redis.call('ZADD', z, ARGV[6], ARGV[5] .. ':' .. ARGV[4])
  end
  redis.call('EXPIRE', h, ARGV[a + 1])
  redis.call('EXPIRE', z, ARGV[a + 1])
  a = a + 2
end
return used
"""

_SETTLE = """
local nh = tonumber(ARGV[1])
local member = ARGV[2] .. ':' .. ARGV[3]
for j = 1, nh do
  local h = KEYS[2 * j - 1]
  if redis.call('EXISTS', h) == 1 then
    if redis.call('ZREM', KEYS[2 * j], member) == 1 then
      redis.call('HINCRBY', h, 'reserved', -tonumber(ARGV[3]))
    end
    redis.call('HINCRBY', h, 'spent', ARGV[4])
  end
end
for i = 2 * nh + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], ARGV[4 + i - 2 * nh])
  end
end
return 0
"""

_SEED = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'spent', ARGV[1], 'reserved', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class RedisState(StateBackend):
    def __init__(self, url: str, *, prefix: str = "{switchman}:", timeout: float = 0.25, retry: float = 1.0,
                 connections: int = 32) -> None:
        if aioredis is None:
            raise ImportError("state: {backend: redis} needs redis-py: pip install 'switchman[redis]'")
        self.url = url
        self.prefix = prefix
        self.retry = retry
        # A bounded pool that makes a burst wait for a free connection (up to 2 s) rather than
        # open hundreds or fail: one script is ~0.1 ms, so 32 connections serve any burst.
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=connections, timeout=2.0,
                                                        socket_timeout=timeout, socket_connect_timeout=timeout)
        self._r = aioredis.Redis(connection_pool=pool)
        self._admit = self._r.register_script(_ADMIT)
        self._settle = self._r.register_script(_SETTLE)
        self._seed = self._r.register_script(_SEED)
        self._down_until = 0.0
        self._watcher: asyncio.Task | None = None

    async def start(self) -> None:
        await self._call(self._r.ping())

    async def watch(self, on_revoked: Callable[[str], None]) -> None:
        self._watcher = asyncio.create_task(self._listen(on_revoked), name="switchman-revocations")

    async def _listen(self, on_revoked: Callable[[str], None]) -> None:
        """Revocations pushed by pub/sub: every worker hears of one in about a millisecond. If
        the subscription drops, the database poll of ``KeyRing`` still catches it within a second."""
        channel = self.prefix + "revoked"
        while True:
            pubsub = self._r.pubsub()
            try:
                await pubsub.subscribe(channel)
                while True:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if msg is not None and msg.get("type") == "message":
                        data = msg["data"]
                        on_revoked(data.decode() if isinstance(data, bytes) else str(data))
            except asyncio.CancelledError:
                raise
            except Exception as e:  # Redis away: try again shortly
                log.debug("revocation subscription lost: %s", e)
                await asyncio.sleep(1.0)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
        await self._r.aclose()
        await self._r.connection_pool.disconnect()

    async def _call(self, aw):
        """Await a Redis operation; an unreachable Redis becomes ``StateUnavailable``, and for
        ``retry`` seconds afterwards calls fail at once instead of waiting out a timeout each."""
        now = time.monotonic()
        if now < self._down_until:
            aw.close()  # the coroutine was never awaited
            raise StateUnavailable("redis unavailable")
        try:
            return await aw
        except (RedisConnectionError, RedisTimeout, BusyLoadingError, OSError) as e:
            self._down_until = time.monotonic() + self.retry
            raise StateUnavailable(f"redis unavailable: {e}") from e

    async def admit(self, op: AdmitOp) -> Verdict:
        p = self.prefix
        keys = [p + "revoked", *(p + w.counter for w in op.windows)]
        for h in op.holds:
            keys += (p + h.counter, p + h.counter + ":r")
        args: list = [op.revocation or "", len(op.windows), len(op.holds), op.amount, op.reservation,
                      repr(op.until), repr(op.now)]
        for w in op.windows:
            args += (w.limit, w.amount, int(w.reset_in) + 2)
        for h in op.holds:
            args += (h.limit, h.ttl)
        got = await self._call(self._admit(keys=keys, args=args))
        code = Outcome(int(got[0]))
        if code is Outcome.OK:
            return Verdict(code, used=tuple(int(x) for x in got[1:]))
        if code is Outcome.OVER_BUDGET:
            return Verdict(code, int(got[1]), before=int(got[2]))
        return Verdict(code, int(got[1]) if len(got) > 1 else -1)

    async def settle(self, op: SettleOp) -> None:
        p = self.prefix
        keys: list[str] = []
        holds = list(dict.fromkeys(op.holds))  # one counter counts once, however many rules named it
        for c in holds:
            keys += (p + c, p + c + ":r")
        keys += (p + c for c, _ in op.corrections)
        args: list = [len(holds), op.reservation, op.reserved, op.actual, *(d for _, d in op.corrections)]
        await self._call(self._settle(keys=keys, args=args))

    async def seed(self, counter: str, spent: int, ttl: int, now: float) -> None:
        await self._call(self._seed(keys=[self.prefix + counter], args=[spent, ttl]))

    async def revoke(self, key_hash: str) -> None:
        pipe = self._r.pipeline(transaction=True)
        pipe.sadd(self.prefix + "revoked", key_hash)
        pipe.publish(self.prefix + "revoked", key_hash)
        await self._call(pipe.execute())

    async def read(self, counters: Sequence[str]) -> list[tuple[int, int] | None]:
        pipe = self._r.pipeline(transaction=False)
        for c in counters:
            pipe.hmget(self.prefix + c, "spent", "reserved")
        got = await self._call(pipe.execute())
        return [None if v[0] is None else (int(v[0]), int(v[1] or 0)) for v in got]

    async def flush_prefix(self) -> int:
        """Delete every key under this prefix (tests and ``switchman`` maintenance)."""
        n = 0
        async for k in self._r.scan_iter(match=self.prefix.replace("{", "\\{").replace("}", "\\}") + "*", count=500):
            n += await self._r.delete(k)
        return n
