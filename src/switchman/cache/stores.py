"""Where kept answers live: in this process (an LRU bounded in bytes, the default) or in Redis
(every worker and replica sees the same entries; each entry expires by Redis's own TTL).

Values are the encoded answer (``exact.encode_answer``), which carries the scope, route and model
it was kept for, so the admin API can clear by any of them.
"""

from __future__ import annotations

import abc
import time
from collections import OrderedDict

import orjson

from .settings import CacheSettings

_OVERHEAD = 200  # bytes an entry costs beyond its key and value (the dict, the tuple, the floats)


class Warner:
    """A warning at most every ``every`` seconds: a cache that keeps failing logs once, not per request."""

    def __init__(self, logger, every: float = 30.0) -> None:
        self.log = logger
        self.every = every
        self._at = -1e18

    def __call__(self, msg: str) -> None:
        now = time.monotonic()
        if now - self._at > self.every:
            self._at = now
            self.log.warning(msg)


class CacheStore(abc.ABC):
    @abc.abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abc.abstractmethod
    async def put(self, key: str, value: bytes, ttl: float) -> None: ...

    @abc.abstractmethod
    async def size(self) -> dict: ...

    @abc.abstractmethod
    async def clear(self, match: dict | None = None) -> int:
        """Remove every entry, or those whose ``scope``/``route``/``model`` equal ``match``'s."""

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        return True


def _matches(value: bytes, match: dict | None) -> bool:
    if not match:
        return True
    try:
        d = orjson.loads(value)
    except orjson.JSONDecodeError:
        return True  # undecodable: clearing it is no loss
    return all(d.get(k) == v for k, v in match.items())


class MemoryStore(CacheStore):
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._d: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get(self, key: str) -> bytes | None:
        got = self._d.get(key)
        if got is None:
            return None
        if got[0] <= time.monotonic():
            self._drop(key)
            return None
        self._d.move_to_end(key)
        return got[1]

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        cost = len(key) + len(value) + _OVERHEAD
        if cost > self.max_bytes:
            return
        if key in self._d:
            self._drop(key)
        self._d[key] = (time.monotonic() + ttl, value)
        self.bytes += cost
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._d)))  # least recently used first

    def _drop(self, key: str) -> None:
        _, v = self._d.pop(key)
        self.bytes -= len(key) + len(v) + _OVERHEAD

    async def size(self) -> dict:
        return {"entries": len(self._d), "bytes": self.bytes, "max_bytes": self.max_bytes}

    async def clear(self, match: dict | None = None) -> int:
        doomed = [k for k, (_, v) in self._d.items() if _matches(v, match)]
        for k in doomed:
            self._drop(k)
        return len(doomed)


class RedisStore(CacheStore):
    def __init__(self, url: str, prefix: str = "{switchman}:cache:", timeout: float = 0.25) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - the redis extra
            raise ImportError("cache: {backend: redis} needs the redis extra: pip install 'switchman[redis]'") from None
        self.prefix = prefix
        self.r = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)

    async def get(self, key: str) -> bytes | None:
        return await self.r.get(self.prefix + key)

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        await self.r.set(self.prefix + key, value, px=max(1, int(ttl * 1000)))

    async def _keys(self) -> list[bytes]:
        return [k async for k in self.r.scan_iter(match=self.prefix + "*", count=1000)]

    async def size(self) -> dict:
        keys = await self._keys()
        used = 0
        for i in range(0, len(keys), 500):
            used += sum(len(v or b"") for v in await self.r.mget(keys[i:i + 500]))
        return {"entries": len(keys), "bytes": used}

    async def clear(self, match: dict | None = None) -> int:
        keys = await self._keys()
        n = 0
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            doomed = chunk if not match else [k for k, v in zip(chunk, await self.r.mget(chunk))
                                              if v is not None and _matches(v, match)]
            if doomed:
                n += await self.r.delete(*doomed)
        return n

    async def close(self) -> None:
        await self.r.aclose()

    async def ping(self) -> bool:
        try:
            return bool(await self.r.ping())
        except Exception:  # noqa: BLE001 - down is an answer here
            return False


class NearStore(CacheStore):
    """Redis with a small in-process copy in front: an entry read or written here is kept for
    ``near`` seconds (at most its own TTL), so a hot answer is served without the round trip. Kept
    answers never change, so the copy is never wrong; a ``DELETE /admin/cache`` clears this worker's
    copy at once and the other workers' within ``near`` seconds."""

    def __init__(self, far: CacheStore, max_bytes: int, near: float = 10.0) -> None:
        self.far = far
        self.near = MemoryStore(max_bytes)
        self.seconds = near

    async def get(self, key: str) -> bytes | None:
        got = await self.near.get(key)
        if got is not None:
            return got
        got = await self.far.get(key)
        if got is not None:
            await self.near.put(key, got, self.seconds)
        return got

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        await self.far.put(key, value, ttl)
        await self.near.put(key, value, min(ttl, self.seconds))

    async def size(self) -> dict:
        return await self.far.size()

    async def clear(self, match: dict | None = None) -> int:
        await self.near.clear(match)
        return await self.far.clear(match)

    async def close(self) -> None:
        await self.far.close()

    async def ping(self) -> bool:
        return await self.far.ping()


def open_cache_store(s: CacheSettings) -> CacheStore:
    if s.backend == "redis":  # with a near copy of up to a sixteenth of max_mb in each worker
        return NearStore(RedisStore(s.url or "redis://127.0.0.1:6379/0"), int(s.max_mb * 1024 * 1024 / 16))
    return MemoryStore(int(s.max_mb * 1024 * 1024))
