"""Running the gateway as a server: one process, or N worker processes sharing one socket."""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import logging
import logging.handlers
import os
import queue
import shutil
import signal
import socket
import sys
from dataclasses import replace

from .app import App
from .config import Config
from .errors import ConfigError
from .gateway import Gateway
from .http.server import HttpServer
from .metering import Metering
from .telemetry.hub import Telemetry
from .telemetry.metrics import fresh_dir, worker_stopped
from .telemetry.settings import TelemetrySettings

log = logging.getLogger("switchman")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: Config, host: str, allow_public: bool) -> None:
    """Refuse to serve beyond loopback with no key: anyone who can reach it would spend the
    provider keys behind it."""
    if is_loopback(host) or config.auth.admin_key or allow_public or config.server.allow_public_without_key:
        return
    raise ConfigError(
        f"refusing to listen on {host} with no key configured: set auth.admin_key (or SWITCHMAN_ADMIN_KEY), "
        "or pass --allow-public if this network is trusted"
    )


def _install_loop() -> None:
    try:
        import uvloop  # measured: ~30% more requests/s than the default loop here

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux
        pass


async def serve_on(config: Config, sock: socket.socket, ready=None, metrics_dir: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain in-flight requests."""
    log_off_loop()  # per process: a worker does not inherit its parent's logging thread
    gateway = Gateway(config)
    gateway.start()
    metering = Metering.from_config(gateway)  # per worker, after the fork: its own connections
    if metering is not None:
        await metering.start()
    telemetry = Telemetry(config, metrics_dir=metrics_dir)
    app = App(gateway, metering, telemetry)
    server = HttpServer(app, limits=config.server.limits)
    await server.start(sock=sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready()
    await stop.wait()
    await server.stop(grace=10.0)
    if metering is not None:
        await metering.close()
    telemetry.close()
    await gateway.close()


async def _migrate(config: Config) -> None:
    from .accounting.facade import Accountant

    acc = Accountant(config.accounting)
    await acc.start()
    await acc.close()


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def run(config: Config, host: str, port: int, workers: int) -> int:
    sock = bind(host, port)
    actual = sock.getsockname()[1]
    banner = f"switchman: serving {len(config.models)} models, {len(config.routes)} routes on http://{host}:{actual} ({workers} worker{'s' if workers > 1 else ''}), config {config.source}"

    def ready() -> None:
        print(banner, flush=True)

    if workers <= 1:
        _install_loop()
        asyncio.run(serve_on(config, sock, ready))
        return 0
    if config.accounting is not None:
        # Migrate the ledger's schema once, here, before the workers race to do it.
        asyncio.run(_migrate(config))
    tele = config.telemetry or TelemetrySettings()
    # Every worker's metrics meet in one directory, fresh for this start (never another instance's).
    mdir = fresh_dir(tele.metrics.dir) if tele.metrics.enabled else None
    try:
        return _fork(config, sock, workers, ready, mdir)
    finally:
        if mdir is not None and tele.metrics.dir is None:
            shutil.rmtree(mdir, ignore_errors=True)


def _fork(config: Config, sock: socket.socket, workers: int, ready, mdir: str | None) -> int:
    pids = []
    for _ in range(workers):
        pid = os.fork()
        if pid == 0:  # a worker: its own event loop on the shared listening socket
            code = 1
            try:
                _install_loop()
                asyncio.run(serve_on(config, sock, metrics_dir=mdir))
                code = 0
            except BaseException as e:  # noqa: BLE001 - one clear line, then the exit code says it
                log.critical("worker %d stopped: %s: %s", os.getpid(), type(e).__name__, e)
            finally:
                os._exit(code)
        pids.append(pid)
    ready()

    def forward(sig, _frame):
        for p in pids:
            try:
                os.kill(p, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    for p in pids:
        while True:
            try:
                _, status = os.waitpid(p, 0)
                break
            except InterruptedError:
                continue
        if os.waitstatus_to_exitcode(status) not in (0, -signal.SIGTERM):
            code = 1
        if mdir is not None:
            worker_stopped(p, mdir)  # its live gauges leave the sums; its counters stay
    return code


def main_serve(config: Config, host: str | None, port: int | None, workers: int | None, allow_public: bool,
               log_level: str = "WARNING") -> int:
    host = host or config.server.host
    port = config.server.port if port is None else port
    workers = workers or config.server.workers
    check_exposure(config, host, allow_public)
    if allow_public and not config.server.allow_public_without_key:  # the app then serves any Host
        config = replace(config, server=replace(config.server, allow_public_without_key=True))
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(config, host, port, workers)


def log_off_loop() -> None:
    """The root logger's handlers run on a thread of their own (``QueueHandler``): an access line
    per request must not wait on a slow stderr. Started in each process that serves."""
    root = logging.getLogger()
    handlers = [h for h in root.handlers if not isinstance(h, logging.handlers.QueueHandler)]
    if not handlers:
        return
    q: queue.SimpleQueue = queue.SimpleQueue()
    for h in handlers:
        root.removeHandler(h)
    root.addHandler(logging.handlers.QueueHandler(q))
    listener = logging.handlers.QueueListener(q, *handlers, respect_handler_level=True)
    listener.start()
    atexit.register(listener.stop)
