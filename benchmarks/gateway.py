#!/usr/bin/env python3
"""The gateway's performance against the direct path and against LiteLLM's proxy, in one run.

Measures the figures of DESIGN.md "Performance targets" against one local fake upstream
(``python -m switchman.testing.fake_upstream``), one worker per proxy:

1. added latency at concurrency 1 (p50 / p99 of each path, sequential non-streaming requests in
   alternating blocks so drift hits every path alike; the added figure is proxy minus direct);
2. requests/s at concurrency 16 and 64 over a fixed window after a warm-up;
3. streaming time to first token (the first non-empty content delta), direct vs via each proxy;
4. resident memory (VmRSS of the process tree) idle after start and after all the load;
5. time from process start to the first 200 from the health endpoint.

Pinning (on a machine with 2+ CPUs): the proxies run on CPU 0; the fake upstreams, this script
and its load generator on CPU 1. The direct path's figures are therefore also the ceiling of the
load generator plus the fake: a proxy run puts the same work on CPU 1 per request, so a proxy
near the direct figure would be measuring the load generator, and the notes say so.

The load generator is asyncio + uvloop with kept-alive raw connections (an httptools parser, a
prebuilt request); every response is checked for status 200 and the expected content, and errors
are counted and reported.

    python benchmarks/gateway.py                 # full run, about 2 minutes
    python benchmarks/gateway.py --quick         # smoke run, under a minute
    python benchmarks/gateway.py --skip-litellm  # without LiteLLM
    python benchmarks/gateway.py --skip-servers  # without the same app on uvicorn and granian

Writes the table to stdout and to benchmarks/RESULTS.md, between ``<!-- gateway:begin -->`` and
``<!-- gateway:end -->`` (other sections of that file are kept).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import math
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httptools
import orjson
from results import write_section

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LITELLM_VERSION = "1.106.2"

PROXY_CPU, LOAD_CPU = 0, 1
SERVERS = ("uvicorn", "granian")  # the same App under well-kept servers (benchmarks/servers.py; the bench extra)
# switchman itself with metrics and the access log off: the same run shows what telemetry costs
OFF = "telemetry-off"
MODEL = "gpt-4o-mini"  # the upstream id on the fake, priced from switchman's catalog and LiteLLM's map
STREAM_MODEL = "gpt-4o-mini-stream"  # the proxies' name for the same model on the streaming fake
PROMPT = "hello from the switchman benchmark"
CLIENT_KEY = "sk-bench-client-0123456789abcdef0123456789abcdef"  # both proxies require a key
UPSTREAM_KEY = "sk-bench"
# The streaming fake: a short wait before the first token and between pieces, so the first token
# arrives well before the last (and a proxy that buffered the stream would show it).
STREAM_TTFT, STREAM_GAP, STREAM_CHUNKS = 0.001, 0.001, 8
REQUEST_TIMEOUT = 30.0

TARGETS = {
    "added_p50_ms": 0.5, "added_p99_ms": 2.0, "ratio": 40.0, "added_ttft_ms": 1.0,
    "idle_mib": 80.0, "load_mib": 120.0, "ready_s": 1.0,
}


@dataclass(frozen=True)
class Plan:
    """How much of everything to measure."""

    c1_rounds: int  # rounds of the interleaved concurrency-1 run
    c1_block: int  # requests per block for direct and switchman
    c1_block_litellm: int
    warmup_s: float
    window_s: float
    ttft_rounds: int
    ttft_block: int
    ttft_block_litellm: int
    ready_starts: int  # switchman is started this many times; the median start-to-ready is reported


FULL = Plan(c1_rounds=50, c1_block=50, c1_block_litellm=8, warmup_s=2.0, window_s=8.0,
            ttft_rounds=10, ttft_block=60, ttft_block_litellm=12, ready_starts=5)
QUICK = Plan(c1_rounds=10, c1_block=50, c1_block_litellm=5, warmup_s=0.5, window_s=2.5,
             ttft_rounds=5, ttft_block=30, ttft_block_litellm=6, ready_starts=1)


# ---- the load generator -------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One kept-alive client connection: send a prebuilt request, wait for the whole response."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.fut: asyncio.Future | None = None
        self.status = 0
        self.body: list[bytes] = []
        self.streaming = False
        self.sse = b""
        self.first_ns = 0
        self.keep = True
        self.lost = False

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.lost = True
        self._fail(ConnectionError(f"connection closed by the server ({exc!r})"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(e)
            self.transport.abort()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.streaming and not self.first_ns:
            now = time.perf_counter_ns()  # the arrival time; parsing below is not charged to the path
            self.sse += body
            if _has_content(self.sse):
                self.first_ns = now
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep = self.parser.should_keep_alive()
        f = self.fut
        if f is not None and not f.done():
            f.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        f = self.fut
        if f is not None and not f.done():
            f.set_exception(exc)

    def _timeout(self) -> None:
        self._fail(TimeoutError(f"no complete response in {REQUEST_TIMEOUT:g} s"))
        self.transport.abort()

    async def send(self, data: bytes, streaming: bool) -> int:
        """Send ``data``; return the send time (perf_counter_ns) once the response is complete."""
        self.status = 0
        self.body = []
        self.streaming = streaming
        self.sse = b""
        self.first_ns = 0
        f = self.fut = self.loop.create_future()
        timer = self.loop.call_later(REQUEST_TIMEOUT, self._timeout)
        t0 = time.perf_counter_ns()
        self.transport.write(data)
        try:
            await f
        finally:
            timer.cancel()
            self.fut = None
        return t0


def _events(buf: bytes):
    """The JSON payloads of the complete server-sent events in ``buf`` (``[DONE]`` as None)."""
    for ev in buf.replace(b"\r\n", b"\n").split(b"\n\n")[:-1]:
        for line in ev.split(b"\n"):
            if line.startswith(b"data:"):
                d = line[5:].strip()
                yield None if d == b"[DONE]" else d


def _delta(payload: bytes) -> str:
    try:
        choices = orjson.loads(payload).get("choices") or ()
        return (choices[0].get("delta") or {}).get("content") or "" if choices else ""
    except (orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
        return ""


def _has_content(buf: bytes) -> bool:
    return any(p is not None and _delta(p) for p in _events(buf))


@dataclass
class Target:
    """One path to the upstream: the direct fake, or a proxy in front of it."""

    name: str
    port: int  # for non-streaming requests
    stream_port: int
    model: str
    stream_model: str
    key: str | None
    slow: bool = False  # LiteLLM: fewer requests in the sequential phases
    errors: int = 0
    first_error: str = ""
    request: bytes = b""
    stream_request: bytes = b""

    def __post_init__(self) -> None:
        self.request = _request(self.port, self.model, self.key, stream=False)
        self.stream_request = _request(self.stream_port, self.stream_model, self.key, stream=True)

    def error(self, what: str) -> None:
        self.errors += 1
        if not self.first_error:
            self.first_error = what[:300]


def _request(port: int, model: str, key: str | None, stream: bool) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    if stream:
        body["stream"] = True
    raw = orjson.dumps(body)
    auth = f"authorization: Bearer {key}\r\n" if key else ""
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"content-type: application/json\r\naccept: application/json\r\n{auth}"
            f"content-length: {len(raw)}\r\n\r\n")
    return head.encode() + raw


class Client:
    """A connection to one target, reopened after an error; checks every response."""

    def __init__(self, target: Target, expected: str) -> None:
        self.t = target
        self.expected = expected
        # The exact content value as compact JSON writes it: finding it spares the load generator a
        # full parse of most bodies (a body without it is parsed, and its content compared).
        self.needle = b'"content":' + orjson.dumps(expected)
        self.conns: dict[int, _Conn] = {}

    async def _conn(self, port: int) -> _Conn:
        c = self.conns.get(port)
        if c is None or c.lost or not c.keep:
            if c is not None and c.transport is not None:
                c.transport.close()
            loop = asyncio.get_running_loop()
            _, c = await loop.create_connection(lambda: _Conn(loop), "127.0.0.1", port)
            self.conns[port] = c
        return c

    async def call(self, stream: bool = False) -> tuple[bool, int, int, int]:
        """One request: (ok, sent ns, complete ns, first-token ns or 0)."""
        t = self.t
        port = t.stream_port if stream else t.port
        try:
            c = await self._conn(port)
            t0 = await c.send(t.stream_request if stream else t.request, stream)
        except (OSError, TimeoutError, ConnectionError, httptools.HttpParserError) as e:
            t.error(f"{type(e).__name__}: {e}")
            self.conns.pop(port, None)
            await asyncio.sleep(0.001)  # a refused connection must not spin
            return False, 0, 0, 0
        t1 = time.perf_counter_ns()
        body = b"".join(c.body)
        if c.status != 200:
            t.error(f"status {c.status}: {body[:200]!r}")
            return False, t0, t1, 0
        if stream:
            got = self._streamed(body)
        else:
            got = self.expected if self.needle in body else self._content(body)
        if got != self.expected:
            t.error(f"unexpected content {got!r} (expected {self.expected!r}); body {body[:200]!r}")
            return False, t0, t1, 0
        if stream and not c.first_ns:
            t.error("a stream with no content delta")
            return False, t0, t1, 0
        return True, t0, t1, c.first_ns

    @staticmethod
    def _content(body: bytes) -> str | None:
        try:
            return orjson.loads(body)["choices"][0]["message"]["content"]
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
            return None

    @staticmethod
    def _streamed(body: bytes) -> str | None:
        out, done = [], False
        for p in _events(body + b"\n\n"):
            if p is None:
                done = True
            else:
                out.append(_delta(p))
        return "".join(out) if done else None  # a stream without [DONE] is an error

    def close(self) -> None:
        for c in self.conns.values():
            if c.transport is not None:
                c.transport.close()
        self.conns.clear()


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no samples."""
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]


async def quiesce(pids: list[int], limit: float = 3.0) -> None:
    """Wait until the processes stop using CPU (LiteLLM keeps working after its answers, on the
    core switchman shares with it), for at most ``limit`` seconds."""
    end = time.perf_counter() + limit
    before = [cpu_seconds(p) for p in pids]
    while time.perf_counter() < end:
        await asyncio.sleep(0.05)
        now = [cpu_seconds(p) for p in pids]
        if all(b - a <= 1.5 / _TICK for a, b in zip(before, now)):  # at most a tick in 50 ms
            return
        before = now


async def sequential(clients: dict[str, Client], rounds: int, block: dict[str, int], stream: bool,
                     quiet: list[int]) -> dict[str, list[float]]:
    """Alternating blocks of sequential requests per target; latencies (or TTFTs) in ms. After a
    block on a slow target, waits for the processes in ``quiet`` to go idle."""
    out: dict[str, list[float]] = {name: [] for name in clients}
    order = list(clients)
    for r in range(rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            c = clients[name]
            for _ in range(block[name]):
                ok, t0, t1, first = await c.call(stream)
                if ok:
                    out[name].append(((first if stream else t1) - t0) / 1e6)
            if c.t.slow:
                await quiesce(quiet)
    return out


@dataclass
class Load:
    """One fixed-window run at one concurrency."""

    rps: float
    latencies: list[float]  # ms, of the requests completed in the window
    cpu: dict[str, float]  # CPU seconds used in the window, per process role


async def throughput(target: Target, expected: str, conc: int, warmup: float, window: float,
                     pids: dict[str, int]) -> Load:
    """Requests/s completed (and checked) in ``window`` seconds after ``warmup``, with the CPU
    time each process in ``pids`` used over the same window."""
    clients = [Client(target, expected) for _ in range(conc)]
    for c in clients:
        await c._conn(target.port)
    start = time.perf_counter()
    m0, m1 = start + warmup, start + warmup + window
    done = 0
    lat: list[float] = []
    cpu: dict[str, float] = {}

    async def worker(c: Client) -> None:
        nonlocal done
        while time.perf_counter() < m1:
            ok, t0, t1, _ = await c.call()
            end = time.perf_counter()
            if ok and m0 <= end < m1:
                done += 1
                lat.append((t1 - t0) / 1e6)

    async def meter() -> None:
        await asyncio.sleep(m0 - time.perf_counter())
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        t = time.perf_counter()
        await asyncio.sleep(m1 - t)
        scale = window / (time.perf_counter() - t)  # the meter may wake a little late
        cpu.update({k: (cpu_seconds(p) - before[k]) * scale for k, p in pids.items()})

    await asyncio.gather(meter(), *(worker(c) for c in clients))
    for c in clients:
        c.close()
    return Load(done / window, lat, cpu)


# ---- processes -----------------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    port: int
    log: Path
    ready_s: float = math.nan
    starts: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(port: int, path: str) -> int | None:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n\r\n".encode())
            head = s.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def pinned(cmd: list[str], cpu: int, pin: bool) -> list[str]:
    return ["taskset", "-c", str(cpu), *cmd] if pin else cmd


def start_server(name: str, cmd: list[str], port: int, health: str, env: dict, log: Path, timeout: float) -> Proc:
    """Start ``cmd`` and time it to the first 200 from ``health``."""
    out = open(log, "ab")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=log.parent)
    out.close()
    proc = Proc(name, p, port, log)
    while True:
        if p.poll() is not None:
            raise RuntimeError(f"{name} exited with code {p.returncode} before it was ready; log: {log}\n"
                               + _tail(log))
        if http_status(port, health) == 200:
            proc.ready_s = time.perf_counter() - t0
            return proc
        if time.perf_counter() - t0 > timeout:
            stop(proc)
            raise RuntimeError(f"{name} not ready after {timeout:g} s; log: {log}\n" + _tail(log))
        time.sleep(0.002)


def start_fake(extra: list[str], env: dict, log: Path, pin: bool) -> Proc:
    cmd = pinned([sys.executable, "-m", "switchman.testing.fake_upstream", "--port", "0", *extra], LOAD_CPU, pin)
    err = open(log, "ab")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, start_new_session=True)
    err.close()
    line = p.stdout.readline().decode().strip()  # type: ignore[union-attr]
    if not line.startswith("ready "):
        p.kill()
        raise RuntimeError(f"the fake upstream did not start (said {line!r}); log: {log}\n" + _tail(log))
    return Proc("fake", p, int(line.split()[1]), log)


def stop(proc: Proc | None) -> None:
    if proc is None or proc.popen.poll() is not None:
        return
    try:
        os.killpg(proc.popen.pid, signal.SIGTERM)  # its own session: this process and its children
        proc.popen.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.popen.pid, signal.SIGKILL)
        proc.popen.wait()
    except ProcessLookupError:
        pass


def _tail(log: Path, n: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) and of its descendants so far (granian
    serves from a worker process of its own)."""
    return sum(_own_cpu(p) for p in _tree(pid))


def _tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path(f"/proc/{d}/stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def _own_cpu(pid: int) -> float:
    """User + system CPU time of ``pid`` (all its threads) so far."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return math.nan
    return (int(f[11]) + int(f[12])) / _TICK  # utime, stime: fields 14 and 15 of proc(5)


def tree_rss_mib(pid: int) -> float:
    """VmRSS summed over ``pid`` and its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(d))
    total_kib, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo.extend(children.get(p, ()))
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            pass
    return total_kib / 1024


# ---- set-up ----------------------------------------------------------------------------------------


def switchman_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("switchman")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("switchman")
    return [found] if found else [sys.executable, "-m", "switchman.cli"]


def ensure_litellm(venv: Path) -> tuple[Path, str]:
    """The ``litellm`` executable in ``venv`` (created with litellm[proxy] pinned when missing) and
    its installed version."""
    exe = venv / "bin" / "litellm"
    if not exe.exists():
        print(f"creating {venv} with litellm[proxy]=={LITELLM_VERSION} (once; a few minutes) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"litellm[proxy]=={LITELLM_VERSION}"], check=True)
    ver = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True).stdout.strip()
    if ver != LITELLM_VERSION:
        print(f"warning: {venv} has litellm {ver or '?'}, not {LITELLM_VERSION}", file=sys.stderr)
    return exe, ver


def write_configs(tmp: Path, port: int, stream_port: int) -> tuple[Path, Path]:
    sw = tmp / "switchman.yaml"
    sw.write_text(f"""\
providers:
  fake: {{kind: openai, base_url: "http://127.0.0.1:{port}/v1", api_key: "{UPSTREAM_KEY}"}}
  fake-stream: {{kind: openai, base_url: "http://127.0.0.1:{stream_port}/v1", api_key: "{UPSTREAM_KEY}"}}
models:
  - {{name: {MODEL}, provider: fake, model: {MODEL}}}
  - {{name: {STREAM_MODEL}, provider: fake-stream, model: {MODEL}}}
auth: {{admin_key: "{CLIENT_KEY}"}}
# The ledger is on, as it is by default: every request and attempt is written to SQLite.
ledger: {{url: "sqlite:///{tmp}/ledger.db"}}
""")
    off = tmp / "switchman-off.yaml"
    off.write_text(sw.read_text() + "metrics: {enabled: false}\nlog: {access: false}\n")
    ll = tmp / "litellm.yaml"
    # LiteLLM 1.106 refuses to start without a master key; both proxies check one, for parity.
    ll.write_text(f"""\
model_list:
  - model_name: {MODEL}
    litellm_params: {{model: openai/{MODEL}, api_base: "http://127.0.0.1:{port}/v1", api_key: "{UPSTREAM_KEY}"}}
  - model_name: {STREAM_MODEL}
    litellm_params: {{model: openai/{MODEL}, api_base: "http://127.0.0.1:{stream_port}/v1", api_key: "{UPSTREAM_KEY}"}}
general_settings: {{master_key: "{CLIENT_KEY}"}}
""")
    return sw, ll


def machine() -> dict[str, str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True).stdout.strip() or "?"
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": sys.version.split()[0], "rev": rev}


# ---- the run -------------------------------------------------------------------------------------


@dataclass
class Results:
    c1: dict[str, list[float]] = field(default_factory=dict)
    rps: dict[tuple[str, int], float] = field(default_factory=dict)
    rps_lat: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    cpu: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)
    ttft: dict[str, list[float]] = field(default_factory=dict)
    rss_idle: dict[str, float] = field(default_factory=dict)
    rss_load: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    ready_all: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    first_error: dict[str, str] = field(default_factory=dict)


async def measure(targets: list[Target], plan: Plan, res: Results, procs: dict[str, Proc], fake_pid: int) -> None:
    # What the fake answers, from the direct path: every path must return exactly this.
    direct = targets[0]
    probe = Client(direct, expected="")
    await probe._conn(direct.port)
    c = probe.conns[direct.port]
    await c.send(direct.request, False)
    expected = Client._content(b"".join(c.body))
    probe.close()
    if c.status != 200 or not expected:
        raise RuntimeError(f"the fake upstream's probe answer is unusable: {c.status} {b''.join(c.body)[:200]!r}")

    clients = {t.name: Client(t, expected) for t in targets}
    for t in targets:  # warm-up: connections, the proxies' upstream pools, any lazy imports
        for _ in range(10 if t.slow else 300):
            await clients[t.name].call()
        for _ in range(5 if t.slow else 50):
            await clients[t.name].call(stream=True)
    for t in targets:
        t.errors, t.first_error = 0, ""

    blocks = {t.name: plan.c1_block_litellm if t.slow else plan.c1_block for t in targets}
    print(f"  concurrency 1: {plan.c1_rounds} rounds of {blocks} sequential requests ...", flush=True)
    quiet = [p.popen.pid for p in procs.values()]
    await quiesce(quiet)
    res.c1 = await sequential(clients, plan.c1_rounds, blocks, False, quiet)

    for conc in (16, 64):
        for t in targets:
            print(f"  concurrency {conc}: {t.name}, {plan.warmup_s:g} s warm-up + {plan.window_s:g} s ...", flush=True)
            pids = {"loadgen": os.getpid(), "fake": fake_pid}
            if t.name in procs:
                pids["proxy"] = procs[t.name].popen.pid
            await quiesce(quiet)
            load = await throughput(t, expected, conc, plan.warmup_s, plan.window_s, pids)
            res.rps[(t.name, conc)] = load.rps
            res.rps_lat[(t.name, conc)] = load.latencies
            res.cpu[(t.name, conc)] = load.cpu

    blocks = {t.name: plan.ttft_block_litellm if t.slow else plan.ttft_block for t in targets}
    print(f"  streaming: {plan.ttft_rounds} rounds of {blocks} sequential streams ...", flush=True)
    await quiesce(quiet)
    res.ttft = await sequential(clients, plan.ttft_rounds, blocks, True, quiet)
    for cl in clients.values():
        cl.close()
    await asyncio.sleep(0.5)  # let the proxies settle before reading their memory
    for name, p in procs.items():
        res.rss_load[name] = tree_rss_mib(p.popen.pid)
    for t in targets:
        res.errors[t.name] = t.errors
        res.first_error[t.name] = t.first_error


def run(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2 and not args.no_pin
    if pin:
        os.sched_setaffinity(0, {LOAD_CPU})
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", NO_PROXY="127.0.0.1,localhost",
               no_proxy="127.0.0.1,localhost", PYTHONUNBUFFERED="1")
    src = REPO / "src"
    if (src / "switchman").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    ll_exe = ll_ver = None
    if not args.skip_litellm:
        ll_exe, ll_ver = ensure_litellm(Path(args.litellm_venv).resolve())

    tmp = Path(tempfile.mkdtemp(prefix="switchman-bench-"))
    procs: dict[str, Proc] = {}
    fakes: list[Proc] = []
    res = Results()
    t_run = time.perf_counter()
    ok = False
    try:
        fakes.append(start_fake([], env, tmp / "fake.log", pin))
        fakes.append(start_fake(["--ttft", f"{STREAM_TTFT:g}", "--inter-token", f"{STREAM_GAP:g}",
                                 "--chunks", str(STREAM_CHUNKS)], env, tmp / "fake-stream.log", pin))
        port, sport = fakes[0].port, fakes[1].port
        sw_cfg, ll_cfg = write_configs(tmp, port, sport)
        targets = [Target("direct", port, sport, MODEL, MODEL, UPSTREAM_KEY)]

        print(f"starting switchman ({plan.ready_starts}x, for start-to-ready) ...", flush=True)
        starts = []
        for i in range(plan.ready_starts):
            sw_port = free_port()
            cmd = pinned([*switchman_cmd(), "serve", "--config", str(sw_cfg), "--port", str(sw_port),
                          "--workers", "1"], PROXY_CPU, pin)
            p = start_server("switchman", cmd, sw_port, "/health/live", env, tmp / "switchman.log", 30)
            starts.append(p.ready_s)
            if i < plan.ready_starts - 1:
                stop(p)
        procs["switchman"] = p
        res.ready_all["switchman"] = starts
        res.ready["switchman"] = pct(starts, 50)
        time.sleep(0.5)
        res.rss_idle["switchman"] = tree_rss_mib(p.popen.pid)
        targets.append(Target("switchman", sw_port, sw_port, MODEL, STREAM_MODEL, CLIENT_KEY))

        print("starting switchman with metrics off ...", flush=True)
        off_port = free_port()
        cmd = pinned([*switchman_cmd(), "serve", "--config", str(tmp / "switchman-off.yaml"), "--port", str(off_port),
                      "--workers", "1"], PROXY_CPU, pin)
        p = start_server(OFF, cmd, off_port, "/health/live", env, tmp / "switchman-off.log", 30)
        procs[OFF] = p
        res.ready[OFF] = p.ready_s
        time.sleep(0.5)
        res.rss_idle[OFF] = tree_rss_mib(p.popen.pid)
        targets.append(Target(OFF, off_port, off_port, MODEL, STREAM_MODEL, CLIENT_KEY))

        for server in ([] if args.skip_servers else SERVERS):
            print(f"starting the same app under {server} ...", flush=True)
            s_port = free_port()
            cmd = pinned([sys.executable, str(Path(__file__).with_name("servers.py")), server, "--config", str(sw_cfg),
                          "--port", str(s_port)], PROXY_CPU, pin)
            p = start_server(server, cmd, s_port, "/health/live", env, tmp / f"{server}.log", 30)
            procs[server] = p
            res.ready[server] = p.ready_s
            time.sleep(0.5)
            res.rss_idle[server] = tree_rss_mib(p.popen.pid)
            targets.append(Target(server, s_port, s_port, MODEL, STREAM_MODEL, CLIENT_KEY))

        if ll_exe is not None:
            print("starting LiteLLM (takes a while) ...", flush=True)
            ll_port = free_port()
            cmd = pinned([str(ll_exe), "--config", str(ll_cfg), "--host", "127.0.0.1", "--port", str(ll_port),
                          "--num_workers", "1"], PROXY_CPU, pin)
            p = start_server("litellm", cmd, ll_port, "/health/liveliness", env, tmp / "litellm.log", 120)
            procs["litellm"] = p
            res.ready["litellm"] = p.ready_s
            res.ready_all["litellm"] = [p.ready_s]
            time.sleep(0.5)
            res.rss_idle["litellm"] = tree_rss_mib(p.popen.pid)
            targets.append(Target("litellm", ll_port, ll_port, MODEL, STREAM_MODEL, CLIENT_KEY, slow=True))

        try:
            import uvloop

            runner = uvloop.run
        except ImportError:
            runner = asyncio.run
        print("measuring ...", flush=True)
        runner(measure(targets, plan, res, procs, fakes[0].popen.pid))
        ok = True
    finally:
        for p in [*procs.values(), *fakes]:
            stop(p)
        if ok and not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"logs and configs kept in {tmp}", file=sys.stderr)

    info = machine()
    info.update(pin="yes" if pin else f"no ({len(cpus)} CPU{'s' if len(cpus) != 1 else ''} available)",
                litellm=ll_ver or "skipped", seconds=f"{time.perf_counter() - t_run:.0f}")
    text = report(res, plan, args, info, [t.name for t in targets])
    print()
    print(text)
    if not args.no_write:
        write_section(Path(args.results), "gateway", text)
        print(f"\nwritten to {args.results}")
    return 1 if any(res.errors.values()) else 0


# ---- the report ----------------------------------------------------------------------------------


def _f(x: float, nd: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{nd}f}"


def _met(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**not met**")


def report(res: Results, plan: Plan, args: argparse.Namespace, info: dict[str, str], names: list[str]) -> str:
    has_ll = "litellm" in names
    servers = [n for n in (OFF, *SERVERS) if n in names]
    cols = ["direct", "switchman", *servers] + (["litellm"] if has_ll else [])
    heads = {"direct": "direct", "switchman": "switchman", "litellm": "LiteLLM", OFF: "switchman, metrics off",
             "uvicorn": "same app on uvicorn", "granian": "same app on granian"}

    def c1(name, q):
        return pct(res.c1.get(name, []), q)

    def added(name, q, data):
        return pct(data.get(name, []), q) - pct(data.get("direct", []), q)

    rows: list[list[str]] = []

    def row(label, values: dict[str, str], target: str, met: str) -> None:
        rows.append([label, *(values.get(c, "—") for c in cols), target, met])

    for q in (50, 99):
        row(f"latency, concurrency 1, p{q} (ms)", {c: _f(c1(c, q), 3) for c in cols}, "", "")
    a50, a99 = added("switchman", 50, res.c1), added("switchman", 99, res.c1)
    row("added latency p50 (ms)", {"switchman": _f(a50, 3), **{x: _f(added(x, 50, res.c1), 3) for x in servers},
                                   **({"litellm": _f(added("litellm", 50, res.c1), 1)} if has_ll else {})},
        f"≤ {TARGETS['added_p50_ms']:g}", _met(a50 <= TARGETS["added_p50_ms"]))
    row("added latency p99 (ms)", {"switchman": _f(a99, 3), **{x: _f(added(x, 99, res.c1), 3) for x in servers},
                                   **({"litellm": _f(added("litellm", 99, res.c1), 1)} if has_ll else {})},
        f"≤ {TARGETS['added_p99_ms']:g}", _met(a99 <= TARGETS["added_p99_ms"]))
    if OFF in names:
        row("metrics on − off: added latency p50 (ms)", {"switchman": _f(a50 - added(OFF, 50, res.c1), 3)}, "", "")
    for conc in (16, 64):
        vals = {c: _f(res.rps.get((c, conc), math.nan), 0) for c in cols}
        if has_ll and res.rps.get(("litellm", conc)):
            ratio = res.rps[("switchman", conc)] / res.rps[("litellm", conc)]
            target, met = f"≥ {TARGETS['ratio']:g}× LiteLLM: {ratio:.0f}×", _met(ratio >= TARGETS["ratio"])
            for x in servers:  # the same bar for the well-kept servers, to decide between them
                if res.rps.get((x, conc)):
                    target += f"; on {x}: {res.rps[(x, conc)] / res.rps[('litellm', conc)]:.0f}×"
        else:
            target, met = f"≥ {TARGETS['ratio']:g}× LiteLLM", "—"
        row(f"requests/s, concurrency {conc}", vals, target, met)
    for conc in (16, 64):
        row(f"latency at concurrency {conc}, p50 / p99 (ms)",
            {c: f"{_f(pct(res.rps_lat.get((c, conc), []), 50), 1)} / {_f(pct(res.rps_lat.get((c, conc), []), 99), 1)}"
             for c in cols}, "", "")
    def cpu(c, conc, role="proxy"):
        return res.cpu.get((c, conc), {}).get(role, math.nan)

    def per_req_us(c, conc, role="proxy"):
        n = res.rps.get((c, conc), 0) * plan.window_s
        return cpu(c, conc, role) / n * 1e6 if n else math.nan

    proxies = [c for c in cols if c != "direct"]
    row("proxy CPU in the window, c16 / c64 (% of its core)",
        {c: f"{_f(cpu(c, 16) / plan.window_s * 100, 0)} / {_f(cpu(c, 64) / plan.window_s * 100, 0)}" for c in proxies},
        "", "")
    row("proxy CPU per request, c16 / c64 (µs)",
        {c: f"{_f(per_req_us(c, 16), 0)} / {_f(per_req_us(c, 64), 0)}" for c in proxies}, "", "")
    row("requests/s one full core would serve (1 / CPU per request, c64)",
        {c: _f(1e6 / per_req_us(c, 64), 0) for c in proxies}, "", "")
    row("time to first token, p50 (ms)", {c: _f(pct(res.ttft.get(c, []), 50), 3) for c in cols}, "", "")
    t50 = added("switchman", 50, res.ttft)
    row("added time to first token, p50 (ms)",
        {"switchman": _f(t50, 3), **({"litellm": _f(added("litellm", 50, res.ttft), 1)} if has_ll else {})},
        f"≤ {TARGETS['added_ttft_ms']:g}", _met(t50 <= TARGETS["added_ttft_ms"]))
    row("added time to first token, p99 (ms)",
        {"switchman": _f(added("switchman", 99, res.ttft), 3),
         **({"litellm": _f(added("litellm", 99, res.ttft), 1)} if has_ll else {})}, "", "")
    row("memory idle after start (MiB RSS)", {c: _f(res.rss_idle[c], 1) for c in cols if c in res.rss_idle},
        f"≤ {TARGETS['idle_mib']:g}", _met(res.rss_idle["switchman"] <= TARGETS["idle_mib"]))
    row("memory after the load (MiB RSS)", {c: _f(res.rss_load[c], 1) for c in cols if c in res.rss_load},
        f"≤ {TARGETS['load_mib']:g}", _met(res.rss_load["switchman"] <= TARGETS["load_mib"]))
    row("start to ready (s)", {c: _f(res.ready[c], 3) for c in cols if c in res.ready},
        f"≤ {TARGETS['ready_s']:g}", _met(res.ready["switchman"] <= TARGETS["ready_s"]))
    row("errors (non-200, wrong content, broken connection)", {c: str(res.errors.get(c, 0)) for c in cols},
        "0", _met(not any(res.errors.values())))

    header = ["figure", *(heads[c] for c in cols), "target (switchman)", "met"]
    table = [header, ["---"] * len(header), *rows]
    lines = ["| " + " | ".join(r) + " |" for r in table]

    cmd = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    n = {c: len(res.c1.get(c, [])) for c in cols}
    nt = {c: len(res.ttft.get(c, [])) for c in cols}
    out = [
        "## Gateway: switchman vs the direct path vs LiteLLM",
        "",
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC; run took {info['seconds']} s"
        + (" (**quick** smoke run: small samples)" if args.quick else ""),
        f"- command: `{cmd}`",
        f"- machine: {info['nproc']} CPUs (nproc), {info['cpu']}; Python {info['python']}; "
        f"switchman at {info['rev']}; LiteLLM {info['litellm']}",
        f"- pinning: {'switchman and LiteLLM on CPU 0 (one worker each); the fake upstreams and the load generator on CPU 1' if info['pin'] == 'yes' else info['pin']}",
        f"- upstream: `python -m switchman.testing.fake_upstream` (no delay for non-streaming; for streaming "
        f"a second one with `--ttft {STREAM_TTFT:g} --inter-token {STREAM_GAP:g} --chunks {STREAM_CHUNKS}`); "
        "both proxies require a client key",
        f"- request: `{{\"model\": \"{MODEL}\", \"messages\": [{{\"role\": \"user\", \"content\": \"{PROMPT}\"}}], "
        "\"max_tokens\": 16}` (plus `\"stream\": true` for time to first token); every response checked "
        "for status 200 and the fake's exact content",
        f"- samples: concurrency 1: {', '.join(f'{heads[c]} {n[c]:,}' for c in cols)} sequential requests in "
        f"{plan.c1_rounds} alternating rounds; requests/s: {plan.window_s:g} s window after {plan.warmup_s:g} s "
        f"warm-up; streams: {', '.join(f'{heads[c]} {nt[c]:,}' for c in cols)}; start to ready: "
        + (f"median of {len(res.ready_all['switchman'])} starts for switchman "
           f"({', '.join(f'{x:.3f}' for x in res.ready_all['switchman'])} s)" if len(res.ready_all.get('switchman', [])) > 1
           else "one start each"),
        "",
        *lines,
        "",
    ]
    notes = []
    # Who bounded each proxy's requests/s: its own core (the figure is its capacity), or CPU 1,
    # where the load generator and the fake share a core (the figure is then a lower bound).
    for conc in (16, 64):
        ld, fk = per_req_us("direct", conc, "loadgen"), per_req_us("direct", conc, "fake")
        parts = []
        for c in proxies:
            own = cpu(c, conc) / plan.window_s
            side = (cpu(c, conc, "loadgen") + cpu(c, conc, "fake")) / plan.window_s
            bound = ("both cores near saturation: about its capacity, perhaps a little under" if own >= 0.9 and side >= 0.9
                     else "its own core was the bound" if own >= 0.9
                     else "**CPU 1 was the bound: a lower bound**" if side >= 0.9 else "neither core was saturated")
            parts.append(f"{heads[c]} {_f(own * 100, 0)}% of CPU 0 with CPU 1 {_f(side * 100, 0)}% busy: {bound}")
        notes.append(f"concurrency {conc}: the direct path ({_f(res.rps.get(('direct', conc), math.nan), 0)} req/s) "
                     f"costs CPU 1 {_f(ld, 0)} µs (load generator) + {_f(fk, 0)} µs (fake) per request, "
                     "so a proxy costing CPU 0 about as much per request matches it; " + "; ".join(parts) + ".")
    if any(res.errors.values()):
        notes.append("**this run had errors**: " + "; ".join(
            f"{heads[c]}: {res.errors[c]} (first: {res.first_error[c]})" for c in cols if res.errors.get(c)))
    out += [f"- {x}" for x in notes]
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a ~1 minute smoke run with small samples")
    p.add_argument("--skip-litellm", action="store_true", help="measure only direct and switchman")
    p.add_argument("--skip-servers", action="store_true", help="do not run the same app under uvicorn and granian")
    p.add_argument("--litellm-venv", default=str(HERE / ".litellm-venv"),
                   help=f"virtual environment with litellm[proxy]=={LITELLM_VERSION} (created when missing)")
    p.add_argument("--results", default=str(HERE / "RESULTS.md"), help="the markdown file to update")
    p.add_argument("--no-write", action="store_true", help="print the table only")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' logs and configs")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
