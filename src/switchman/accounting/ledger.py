"""The ledger: every request and attempt written to the database off the request path.

``await ledger.write(request, attempts)`` appends to a bounded in-memory buffer and returns at
once; a writer task flushes the buffer in batches (``batch`` entries, or whatever is there every
``flush_interval`` seconds), each batch in one transaction.

When the buffer is full (``buffer`` entries) the database is not keeping up:

* while the database is healthy but slow, ``write`` waits up to ``block`` seconds for room —
  back-pressure that slows the requests finishing rather than growing memory without bound;
* if there is still no room, or the database is failing, the entry goes to a **spill file**
  (JSON Lines beside the database, one per process) instead. Nothing is dropped. Spill files are
  replayed into the database the next time a ledger starts; writes are idempotent on
  ``request_id``, so replaying twice is harmless.

A batch that fails to write stays at the head of the buffer and is retried with backoff (up to
``max_backoff`` seconds). ``drain()`` writes everything buffered now; ``close()`` drains and, if
the database cannot take the rest, spills it — so a graceful shutdown loses no entry.

Spill files are also replayed while the process runs: as soon as the buffer is empty again after a
successful write, this process's own spill file goes back into the database in batches, so spend
reports catch up within seconds of the database keeping up (``pending`` counts what waits).

One bad entry never jams the writer: when the database refuses a batch for its data (a value out
of range; ``Store.data_errors``) rather than being unreachable, the batch is written entry by
entry and each entry it still refuses goes to a **quarantine file** (``….quarantine.jsonl``,
counted in ``stats.quarantined``, shown by ``/health/ready`` and ``/admin/spend``) for a person to
look at. The same holds for replaying spill files, so a poisoned entry cannot stop a restart.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from pathlib import Path

import orjson

from .records import AttemptRecord, RequestRecord, Role
from .store import Entry, SpendRow, Store, open_store
from .sqlite import path_of

log = logging.getLogger("switchman.accounting")


@dataclass(slots=True)
class LedgerStats:
    """Counters for metrics and tests."""

    written: int = 0  # entries committed to the database
    spilled: int = 0  # entries written to a spill file instead
    replayed: int = 0  # spilled entries brought back into the database
    quarantined: int = 0  # entries the database refused for their data, set aside in a file
    failures: int = 0  # failed batch writes (each retried)
    waited: int = 0  # writes that had to wait for room


class Ledger:
    def __init__(self, store: Store, *, batch: int = 500, flush_interval: float = 0.2, buffer: int = 10_000,
                 block: float = 1.0, spill: str | None = None, max_backoff: float = 5.0) -> None:
        self.store = store
        self.batch = batch
        self.flush_interval = flush_interval
        self.capacity = buffer
        self.block = block
        self.spill_prefix = spill or default_spill_prefix(store.url)
        self.max_backoff = max_backoff
        self.stats = LedgerStats()
        self._buf: deque[Entry] = deque()
        self._room = asyncio.Event()  # set whenever the buffer has room
        self._wake = asyncio.Event()  # the writer should look now
        self._progress = asyncio.Event()  # set (and replaced) each time entries leave the buffer
        self._queued = 0  # entries ever put in the buffer ...
        self._done = 0  # ... and ever taken out of it (written or spilled)
        self._healthy = True
        self._closing = False
        self._spill_logged = -1e18
        self._unreplayed = 0  # entries this process spilled that are not back in the database yet
        self._task: asyncio.Task | None = None

    @classmethod
    def from_url(cls, url: str, **kw) -> Ledger:
        return cls(open_store(url), **kw)

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.store.open()
        await self._replay_spills()
        self._room.set()
        self._task = asyncio.create_task(self._writer(), name="switchman-ledger")

    async def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything buffered so far is in the database (or spilled); False if
        ``timeout`` seconds passed first (the database is down or far behind)."""
        try:
            await asyncio.wait_for(self._drain(), timeout)
        except (TimeoutError, asyncio.TimeoutError):
            return False
        return True

    async def _drain(self) -> None:
        target = self._queued
        while self._done < target and self._task is not None and not self._task.done():
            progress = self._progress
            self._wake.set()
            await progress.wait()

    async def close(self) -> None:
        """Drain, stop the writer, close the database. Whatever cannot be written is spilled."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._task, timeout=30.0)
        except (TimeoutError, asyncio.TimeoutError):
            self._task.cancel()
        self._task = None
        if self._buf:
            self._spill(list(self._buf), sync=True)
            self._buf.clear()
        await self.store.close()

    @property
    def pending(self) -> int:
        """Entries not in the database yet: buffered, or spilled by this process and not replayed."""
        return len(self._buf) + self._unreplayed

    # -- the request path ----------------------------------------------------------------------------
    async def write(self, request: RequestRecord, attempts: Sequence[AttemptRecord] = ()) -> None:
        """Queue one request and its attempts. Returns at once unless the buffer is full."""
        entry = (request, tuple(attempts))
        if len(self._buf) >= self.capacity and not self._closing:
            self.stats.waited += 1
            deadline = asyncio.get_running_loop().time() + self.block
            while len(self._buf) >= self.capacity and self._healthy and not self._closing:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                self._room.clear()
                try:
                    await asyncio.wait_for(self._room.wait(), left)
                except (TimeoutError, asyncio.TimeoutError):
                    break
            if len(self._buf) >= self.capacity and not self._closing:
                self._spill([entry])
                return
        if self._task is None or self._task.done():  # not started, or closed: keep it on disk
            self._spill([entry])
            return
        self._buf.append(entry)
        self._queued += 1
        if len(self._buf) >= self.batch:
            self._wake.set()

    # -- reports -------------------------------------------------------------------------------------
    async def spend(self, by: str = "model", since: float | None = None, until: float | None = None,
                    fresh: bool = True) -> list[SpendRow]:
        """Spend grouped ``by`` model, key, user, tag, route, day or provider; ``fresh`` writes
        what is buffered first so the report includes this process's latest requests."""
        if fresh:
            await self.drain(timeout=5.0)
        return await self.store.spend(by, since, until)

    async def scope_spend(self, scope: str, value: str | None, since: float) -> Decimal:
        return await self.store.scope_spend(scope, value, since)

    # -- the writer ----------------------------------------------------------------------------------
    async def _writer(self) -> None:
        backoff = 0.05
        while True:
            if len(self._buf) < self.batch and not self._closing and not self._wake.is_set():
                # Wait for a full batch, a drain, or the flush interval, whichever comes first.
                try:
                    await asyncio.wait_for(self._wake.wait(), self.flush_interval)
                except (TimeoutError, asyncio.TimeoutError):
                    pass
            self._wake.clear()
            if not self._buf:
                if self._closing:
                    return
                continue
            n = min(self.batch, len(self._buf))
            chunk = [self._buf[i] for i in range(n)]
            try:
                await self._write_or_quarantine(chunk)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.stats.failures += 1
                self._healthy = False
                if self._closing:  # shutting down: no time to wait for the database
                    log.error("ledger write failed during shutdown (%s); spilling %d entries", e, len(self._buf))
                    self._spill(list(self._buf), sync=True)
                    self._taken(len(self._buf))
                    continue
                log.warning("ledger write failed (%s); retrying in %.2fs", e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                self._wake.set()  # retry at once after the pause
                continue
            backoff = 0.05
            self._healthy = True
            self._taken(n)
            if not self._buf and self._unreplayed and not self._closing:
                try:  # the database keeps up again: bring back what this process spilled
                    await self._replay_spills(own_only=True)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # noqa: BLE001 - the file stays; the next quiet moment retries
                    log.warning("ledger: replaying spilled entries failed (%s); will retry", e)

    async def _write_or_quarantine(self, entries: list[Entry]) -> None:
        """Write ``entries`` in one transaction; if the database refuses them for their data, write
        them one by one and quarantine each it still refuses. Raises when it is unreachable."""
        refused = getattr(self.store, "data_errors", Store.data_errors)
        try:
            await self.store.write(entries)
            self.stats.written += len(entries)
            return
        except refused as e:
            log.warning("ledger: the database refused a batch of %d (%s); finding the bad entries", len(entries), e)
        bad = []
        for entry in entries:
            try:
                await self.store.write([entry])
                self.stats.written += 1
            except refused as e:
                bad.append((entry, e))
        self._quarantine(bad)

    def _taken(self, n: int) -> None:
        """``n`` entries left the head of the buffer: wake whoever waits for room or progress."""
        for _ in range(n):
            self._buf.popleft()
        self._done += n
        self._room.set()
        self._progress.set()
        self._progress = asyncio.Event()

    # -- spilling ------------------------------------------------------------------------------------
    def _spill(self, entries: Sequence[Entry], *, sync: bool = False) -> None:
        """Append to this process's spill file. Written through to the OS at once (a crash of
        this process loses nothing); fsync'd only when ``sync`` (at close), as an fsync per
        request would stall the event loop exactly when the database is already in trouble."""
        path = f"{self.spill_prefix}.spill-{os.getpid()}.jsonl"
        with open(path, "ab") as f:
            f.write(b"".join(encode_entry(e) + b"\n" for e in entries))
            f.flush()
            if sync:
                os.fsync(f.fileno())
        self.stats.spilled += len(entries)
        self._unreplayed += len(entries)
        now = time.monotonic()
        if now - self._spill_logged >= 10.0:  # a failing database must not flood the log too
            self._spill_logged = now
            log.error("ledger: %d entries written to %s so far (the database is not keeping up or is down); "
                      "they are replayed into it once it keeps up again", self.stats.spilled, path)

    def _quarantine(self, bad: Sequence[tuple[Entry | bytes, BaseException]]) -> None:
        """Set aside entries the database refuses for their data: one JSON line each, with why."""
        if not bad:
            return
        path = f"{self.spill_prefix}.quarantine.jsonl"
        with open(path, "ab") as f:
            for entry, why in bad:
                raw = entry if isinstance(entry, bytes) else encode_entry(entry)
                f.write(orjson.dumps({"error": repr(why)[:300], "entry": raw.decode("utf-8", "replace")}) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self.stats.quarantined += len(bad)
        log.error("ledger: %d entries the database refused were set aside in %s (%d so far): %r",
                  len(bad), path, self.stats.quarantined, bad[0][1])

    async def _replay_spills(self, own_only: bool = False) -> None:
        """Bring back entries spilled by processes that have ended (a live one may still be
        appending to its file; it will be replayed after that process stops), or with
        ``own_only``, this process's own (new spills then go to a fresh file)."""
        for path in sorted(glob.glob(glob.escape(self.spill_prefix) + ".spill-*.jsonl*")):
            owner = _owner(path)
            if owner is None or (owner != os.getpid() and (own_only or _alive(owner))):
                continue
            claimed = f"{path.split('.jsonl')[0]}.jsonl.replaying-{os.getpid()}"
            try:
                os.rename(path, claimed)  # atomic: one process replays each file
            except OSError:
                continue
            entries, bad = [], []
            for line in Path(claimed).read_bytes().splitlines():
                if line.strip():
                    try:
                        entries.append(decode_entry(line))
                    except Exception as e:  # noqa: BLE001 - a torn or foreign line: set aside, go on
                        bad.append((line, e))
            self._quarantine(bad)
            for i in range(0, len(entries), self.batch):
                await self._write_or_quarantine(entries[i:i + self.batch])
            os.unlink(claimed)
            self.stats.replayed += len(entries)
            if owner == os.getpid():
                self._unreplayed = max(self._unreplayed - len(entries) - len(bad), 0)
            log.warning("ledger: replayed %d spilled entries from %s", len(entries), path)


def _owner(path: str) -> int | None:
    """The pid that wrote (``.spill-PID.jsonl``) or was replaying (``...replaying-PID``) a file."""
    tail = path.rsplit(".replaying-", 1)[1] if ".replaying-" in path else path.rsplit(".spill-", 1)[1].split(".")[0]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def default_spill_prefix(url: str) -> str:
    """Beside a SQLite file; in the working directory for PostgreSQL."""
    if url.startswith("sqlite:"):
        p = path_of(url)
        return "switchman-ledger" if p == ":memory:" else p
    return "switchman-ledger"


# -- spill encoding ------------------------------------------------------------------------------------
def _default(o):
    if isinstance(o, Decimal):
        return str(o)
    raise TypeError


def encode_entry(e: Entry) -> bytes:
    r, atts = e
    return orjson.dumps({"request": asdict(r), "attempts": [asdict(a) for a in atts]}, default=_default)


def decode_entry(line: bytes) -> Entry:
    d = orjson.loads(line)
    r = d["request"]
    r["cost"] = Decimal(r["cost"])
    if r.get("baseline_cost") is not None:
        r["baseline_cost"] = Decimal(r["baseline_cost"])
    r["cache_saved"] = Decimal(r.get("cache_saved") or 0)
    if r.get("bodies") is not None:
        r["bodies"] = tuple(r["bodies"])
    atts = []
    for a in d["attempts"]:
        a["cost"] = Decimal(a["cost"])
        if a.get("uncached") is not None:
            a["uncached"] = Decimal(a["uncached"])
        a["role"] = Role(a["role"])
        atts.append(AttemptRecord(**a))
    return RequestRecord(**r), tuple(atts)
