"""The hostile-input probe's scenarios (issue 11, ``../shared/research/HOSTILE_INPUT_PROBE.md``)
against a real ``switchman serve``: for each, the gateway's RSS before, at its peak and after the
peer left, ``/health/live`` latency from another connection while it ran, and what the attacker
got back.

The gateway runs with an admin key, a SQLite ledger, one worker; its upstreams are the fake
upstream (well-behaved) and a hostile OpenAI-wire upstream run by this script (the model id picks
the fault: ``firehose``, ``nolines``, ``bigerror``, ``bigbody``). Every loop is bounded.

    python benchmarks/abuse.py            # about 2-3 minutes
    python benchmarks/abuse.py --quick    # smaller sizes, about a minute
    python benchmarks/abuse.py --uvicorn  # also the server-side scenarios against uvicorn running
                                          # the same app (benchmarks/servers.py), for comparison

Writes the ``<!-- abuse:begin -->`` section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from gateway import Proc, free_port, start_fake, start_server, stop, switchman_cmd  # noqa: E402
from results import write_section  # noqa: E402

KEY = "sk-abuse-admin"
MiB = 1 << 20


# ---- measuring ------------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


@dataclass
class Row:
    scenario: str
    server: str
    rss_before: float
    rss_peak: float
    rss_after: float
    live_p50_ms: float
    live_max_ms: float
    live_failed: int
    got: str


@dataclass
class Watch:
    """Samples RSS every 50 ms and times ``GET /health/live`` on a fresh connection every 200 ms."""

    pid: int
    port: int
    peak: float = 0.0
    lat: list[float] = field(default_factory=list)
    failed: int = 0

    async def rss(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            await asyncio.sleep(0.05)

    async def live(self, stop: asyncio.Event) -> None:
        """In a thread of its own with blocking sockets, so the attack's own event loop being busy
        does not show up as the gateway's latency."""
        done = threading.Event()

        def probe() -> None:
            while not done.is_set():
                t0 = time.perf_counter()
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                        s.sendall(f"GET /health/live HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\n"
                                  "connection: close\r\n\r\n".encode())
                        data = b""
                        while chunk := s.recv(4096):
                            data += chunk
                    ok = data.startswith(b"HTTP/1.1 200")
                except OSError:
                    ok = False
                if ok:
                    self.lat.append((time.perf_counter() - t0) * 1000)
                else:
                    self.failed += 1
                done.wait(0.2)

        t = threading.Thread(target=probe, daemon=True)
        t.start()
        await stop.wait()
        done.set()
        await asyncio.to_thread(t.join, 12)


async def measure(name: str, server: str, pid: int, port: int, attack: Callable[[], Awaitable[str]]) -> Row:
    await asyncio.sleep(1.0)
    before = rss_mib(pid)
    w = Watch(pid, port, before)
    done = asyncio.Event()
    bg = [asyncio.create_task(w.rss(done)), asyncio.create_task(w.live(done))]
    try:
        got = await attack()
    except Exception as e:  # noqa: BLE001 - a scenario that breaks is a result too
        got = f"attack failed: {e!r}"[:120]
    await asyncio.sleep(2.0)  # the peer has left: let the gateway let go
    done.set()
    await asyncio.gather(*bg)
    after = rss_mib(pid)
    lat = w.lat or [float("nan")]
    return Row(name, server, before, max(w.peak, after), after, statistics.median(lat), max(lat), w.failed, got)


# ---- attacks ----------------------------------------------------------------------------------------


async def _connect(port: int, rcvbuf: int | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setblocking(False)
    await asyncio.get_running_loop().sock_connect(s, ("127.0.0.1", port))
    return await asyncio.open_connection(sock=s)


async def _status(r: asyncio.StreamReader, timeout: float) -> str:
    try:
        async with asyncio.timeout(timeout):
            line = await r.readline()
    except (TimeoutError, OSError):
        return "no answer"
    return line.decode("latin-1").strip()[9:] or "closed, no answer"


async def _send_until_closed(w: asyncio.StreamWriter, piece: bytes, total: int, seconds: float) -> int:
    """Send ``piece`` repeatedly up to ``total`` bytes or ``seconds``; the bytes the peer took."""
    sent, end = 0, time.perf_counter() + seconds
    try:
        while sent < total and time.perf_counter() < end:
            w.write(piece)
            async with asyncio.timeout(max(end - time.perf_counter(), 0.01)):
                await w.drain()
            sent += len(piece)
    except (OSError, TimeoutError):
        pass
    return sent


def big_header(port: int, size: int) -> Callable[[], Awaitable[str]]:
    async def attack() -> str:  # F1: no key, one header value of ``size`` bytes
        r, w = await _connect(port)
        w.write(b"GET /health/live HTTP/1.1\r\nhost: 127.0.0.1\r\nx-big: ")
        sending = asyncio.create_task(_send_until_closed(w, b"a" * 65536, size, 30))
        st = await _status(r, 30)
        sending.cancel()
        w.close()
        return f"{st}, refused on its head (the rest, if sent, was read and dropped for 2 s, then the connection closed)"
    return attack


def pipeline_noauth(port: int, n: int) -> Callable[[], Awaitable[str]]:
    async def attack() -> str:  # F2: n pipelined requests, no key, responses never read
        r, w = await _connect(port, rcvbuf=4096)
        req = f"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n\r\n".encode()
        sent = await _send_until_closed(w, req * 1000, len(req) * n, 10)
        st = await _status(r, 5)
        w.close()
        return f"{sent // len(req):,} of {n:,} requests accepted in 10 s; first answer {st}"
    return attack


def tiny_chunks(port: int, conns: int, size: int, key: str | None) -> Callable[[], Awaitable[str]]:
    async def one() -> int:
        r, w = await _connect(port)
        auth = f"authorization: Bearer {key}\r\n" if key else ""
        w.write(f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                f"{auth}transfer-encoding: chunked\r\n\r\n".encode())
        sent = await _send_until_closed(w, b"2\r\nab\r\n" * 32768, size * 7 // 2, 20)
        w.close()
        return sent

    async def attack() -> str:  # F3: 2-byte chunks, body never finished
        sent = await asyncio.gather(*(one() for _ in range(conns)))
        return f"{conns} connections sent {sum(sent) / MiB:.0f} MiB of 2-byte chunks ({'with' if key else 'no'} key)"
    return attack


def aborted_uploads(port: int, rounds: int, size: int) -> Callable[[], Awaitable[str]]:
    async def attack() -> str:  # F11: Content-Length 32 MiB, most of it sent, then RST
        took = 0
        for _ in range(rounds):
            r, w = await _connect(port)
            w.write(f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                    f"authorization: Bearer {KEY}\r\ncontent-length: {32 * MiB}\r\n\r\n".encode())
            took += await _send_until_closed(w, b"a" * (1 << 16), size, 10)
            sock = w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            w.transport.abort()
        return f"{rounds} uploads aborted after {took / rounds / MiB:.0f} MiB each"
    return attack


def slowloris(port: int, conns: int, seconds: float) -> Callable[[], Awaitable[str]]:
    async def attack() -> str:  # F6: heads sent at 1 byte/s
        rs, ws = [], []
        for _ in range(conns):
            try:
                r_, w_ = await _connect(port)
            except OSError:
                break
            rs.append(r_)
            ws.append(w_)
        head = b"GET /health/live HTTP/1.1\r\nhost: 127.0.0.1\r\nx-a: " + b"a" * 1000
        alive, t0 = len(ws), time.perf_counter()
        for i in range(int(seconds)):
            for w in ws:
                if not w.is_closing():
                    w.write(head[i:i + 1])
            await asyncio.sleep(1)
            alive = sum(not w.transport.is_closing() and not r_.at_eof() for r_, w in zip(rs, ws))
        for w in ws:
            w.close()
        return f"{len(ws)} slow connections opened; {alive} still open after {time.perf_counter() - t0:.0f} s"
    return attack


def conn_flood(port: int, conns: int) -> Callable[[], Awaitable[str]]:
    async def attack() -> str:  # F6: more idle connections than the cap; does a new client get an answer?
        ws = []
        for _ in range(conns):
            try:
                ws.append(await _connect(port))
            except OSError:
                break
        await asyncio.sleep(0.5)
        r, w = await _connect(port)
        w.write(f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                f"authorization: Bearer {KEY}\r\ncontent-length: 2\r\n\r\n{{}}".encode())
        st = await _status(r, 5)
        w.close()
        await asyncio.sleep(2)
        for _, cw in ws:
            cw.close()
        return f"{len(ws):,} idle connections; a new chat request got {st}"
    return attack


def upstream(port: int, model: str, stream: bool, seconds: float) -> Callable[[], Awaitable[str]]:
    async def attack() -> str:  # F4/F5/F7: a hostile upstream; a streaming client that never reads
        r, w = await _connect(port, rcvbuf=4096 if stream else None)
        body = (f'{{"model":"{model}","stream":{"true" if stream else "false"},'
                f'"messages":[{{"role":"user","content":"hi"}}]}}').encode()
        w.write(f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                f"authorization: Bearer {KEY}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
        t0 = time.perf_counter()
        if stream:
            await asyncio.sleep(seconds)  # reading nothing
            st = await _status(r, 1)
        else:
            st = await _status(r, seconds)
        took = time.perf_counter() - t0
        w.close()
        return f"{st} after {took:.1f} s; the upstream pushed {EVIL.sent[model] / MiB:,.0f} MiB"
    return attack


# ---- the hostile upstream -----------------------------------------------------------------------------


class Evil:
    """An OpenAI-wire upstream that misbehaves as the model id says. ``sent`` counts bytes written."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sent: dict[str, int] = {}

    async def handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            head = await r.readuntil(b"\r\n\r\n")
            n = next((int(x.split(b":")[1]) for x in head.lower().split(b"\r\n") if x.startswith(b"content-length:")), 0)
            body = await r.readexactly(n)
            model = next((m for m in ("firehose", "nolines", "bigerror", "bigbody") if m.encode() in body), "firehose")
            await getattr(self, model)(w)
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()

    async def _push(self, w: asyncio.StreamWriter, model: str, piece: bytes, total: int) -> None:
        self.sent.setdefault(model, 0)
        while self.sent[model] < total:
            w.write(piece)
            await w.drain()  # as fast as the gateway takes it
            self.sent[model] += len(piece)

    async def firehose(self, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n")
        ev = (b'data: {"id":"x","object":"chat.completion.chunk","created":0,"model":"firehose","choices":'
              b'[{"index":0,"delta":{"content":"' + b"x" * 900 + b'"},"finish_reason":null}]}\n\n')
        await self._push(w, "firehose", ev * 64, 4 << 30)

    async def nolines(self, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\ndata: ")
        await self._push(w, "nolines", b"a" * 65536, self.size)

    async def bigerror(self, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % self.size)
        await self._push(w, "bigerror", b"x" * 65536, self.size)

    async def bigbody(self, w: asyncio.StreamWriter) -> None:
        w.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % self.size)
        await self._push(w, "bigbody", b" " * 65536, self.size)


EVIL = Evil(0)


# ---- running -------------------------------------------------------------------------------------------


def write_config(tmp: Path, fake_port: int, evil_port: int, port: int) -> Path:
    cfg = tmp / "switchman.yaml"
    cfg.write_text(f"""\
server: {{host: 127.0.0.1, port: {port}}}
providers:
  fake: {{kind: openai, base_url: "http://127.0.0.1:{fake_port}/v1", api_key: "up"}}
  evil: {{kind: openai, base_url: "http://127.0.0.1:{evil_port}/v1", api_key: "up"}}
models:
  - {{name: echo, provider: fake, model: echo, price: {{input: 1, output: 2}}}}
  - {{name: firehose, provider: evil, model: firehose, price: {{input: 1, output: 2}}, timeout: {{total: 30}}}}
  - {{name: nolines, provider: evil, model: nolines, price: {{input: 1, output: 2}}, timeout: {{total: 30}}}}
  - {{name: bigerror, provider: evil, model: bigerror, price: {{input: 1, output: 2}}, timeout: {{total: 30}}}}
  - {{name: bigbody, provider: evil, model: bigbody, price: {{input: 1, output: 2}}, timeout: {{total: 30}}}}
auth: {{admin_key: "{KEY}"}}
ledger: {{url: "sqlite:///{tmp}/ledger.db"}}
""")
    return cfg


def scenarios(port: int, quick: bool, server_side_only: bool) -> list[tuple[str, Callable[[], Awaitable[str]]]]:
    k = 2 if quick else 1
    out = [
        ("F1 one 20 MiB header, no key", big_header(port, 20 * MiB // k)),
        ("F2 200k pipelined requests unread, no key", pipeline_noauth(port, 200_000 // k)),
        ("F3 2-byte chunks, 4 × 30 MiB, no key", tiny_chunks(port, 4, 30 * MiB // k, None)),
        ("F3 2-byte chunks, 4 × 30 MiB, with key", tiny_chunks(port, 4, 30 * MiB // k, KEY)),
        ("F11 20 aborted 30 MiB uploads, with key", aborted_uploads(port, 20 // k, 30 * MiB)),
        ("F6 300 slowloris heads, 1 byte/s", slowloris(port, 300, 40 // k)),
        ("F6 5,000 idle connections", conn_flood(port, 5000)),
    ]
    if not server_side_only:
        out += [
            ("F4/F7 SSE firehose, client never reads", upstream(port, "firehose", True, 15 // k)),
            ("F5 60 MiB SSE line with no end", upstream(port, "nolines", False, 60)),
            ("F4 100 MiB upstream error body", upstream(port, "bigerror", False, 60)),
            ("F4 100 MiB upstream body", upstream(port, "bigbody", False, 60)),
        ]
    return out


async def run_all(args: argparse.Namespace) -> list[Row]:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    EVIL.size = (60 if args.quick else 100) * MiB
    evil = await asyncio.start_server(EVIL.handle, "127.0.0.1", 0, limit=1 << 20)
    evil_port = evil.sockets[0].getsockname()[1]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="switchman-abuse-") as d:
        tmp = Path(d)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        fake = start_fake([], env, tmp / "fake.log", pin=False)
        servers: list[tuple[str, list[str], bool]] = [("switchman", [*switchman_cmd(), "serve"], False)]
        if args.uvicorn:
            servers.append(("uvicorn", [sys.executable, str(Path(__file__).with_name("servers.py")), "uvicorn"], True))
        try:
            for name, cmd, server_only in servers:
                port = free_port()
                cfg = write_config(tmp, fake.port, evil_port, port)
                proc: Proc = start_server(name, [*cmd, "--config", str(cfg), "--port", str(port)], port,
                                          "/health/live", env, tmp / f"{name}.log", 30)
                try:
                    for label, attack in scenarios(port, args.quick, server_only):
                        EVIL.sent.clear()
                        row = await measure(label, name, proc.popen.pid, port, attack)
                        rows.append(row)
                        print(_line(row), flush=True)
                        if proc.popen.poll() is not None:
                            print(f"{name} died during {label!r}", flush=True)
                            break
                    print(f"{name}: {fds(proc.popen.pid)} fds at the end", flush=True)
                finally:
                    stop(proc)
        finally:
            stop(fake)
            evil.close()
    return rows


def _line(r: Row) -> str:
    return (f"| {r.scenario} | {r.server} | {r.rss_before:.0f} / {r.rss_peak:.0f} / {r.rss_after:.0f} | "
            f"{r.live_p50_ms:.1f} / {r.live_max_ms:.1f} | {r.live_failed} | {r.got} |")


def report(rows: list[Row], args: argparse.Namespace, took: float) -> str:
    cmd = "python benchmarks/abuse.py" + (" --quick" if args.quick else "") + (" --uvicorn" if args.uvicorn else "")
    out = [
        "## Abuse: the hostile-input probe's scenarios against `switchman serve`",
        "",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; run took {took:.0f} s",
        f"- command: `{cmd}`",
        "- one worker, admin key, SQLite ledger; `/health/live` timed on a fresh connection every 0.2 s during "
        "each scenario (failed: no 200 within 10 s); RSS in MiB of the gateway process",
        "",
        "| scenario | server | RSS before / peak / after (MiB) | /health/live p50 / max (ms) | live failed | what the attacker got |",
        "| --- | --- | --- | --- | --- | --- |",
        *(_line(r) for r in rows),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--uvicorn", action="store_true", help="also run the server-side scenarios against uvicorn")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows = asyncio.run(run_all(args))
    text = report(rows, args, time.perf_counter() - t0)
    print(text)
    if not args.no_write:
        write_section(args.results, "abuse", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
