"""``switchman demo``: the gateway over a simulated fleet on loopback, no keys needed.

Five fake chat models speak the four wire APIs (a cheap fast one on OpenAI's Chat Completions, a
mid one on Anthropic's, a frontier one on Gemini's, a Responses-only one on OpenAI's Responses API,
and a flaky one that fails half the time), priced from the built-in catalog. The demo sends a few
sample requests through the gateway, prints which model answered, why, and at what cost, then
keeps serving so a newcomer can point the ``openai`` or ``anthropic`` SDK at it. A ledger in a temp
directory (removed on exit) backs the request log, ``/metrics`` and the dashboard.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import signal
import sys
import tempfile
from dataclasses import replace
from decimal import Decimal

from . import catalog
from .accounting.settings import AccountingSettings, LedgerSettings
from .app import App
from .config import (AuthSpec, ChecksSpec, Config, ModelSpec, PolicySpec, Price, ProviderSpec, RouteSpec, RuleSpec,
                     ServerSpec)
from .gateway import Gateway
from .http.server import HttpServer
from .metering import Metering
from .serve import _install_loop, check_exposure, log_off_loop
from .testing.fake_upstream import FakeUpstream
from .testing.fleet import demo_models

# (gateway model name, upstream id on the fake, provider kind)
_FLEET = (
    ("gpt-4o-mini", "gpt-4o-mini", "openai"),
    ("claude-haiku-4-5", "claude-haiku-4-5", "anthropic"),
    ("gemini-2.5-pro", "gemini-2.5-pro", "gemini"),
    ("gpt-5.5-pro", "gpt-5.5-pro", "openai"),  # through the Responses API, as the catalog marks it
    ("flaky-llama", "flaky-llama", "openai"),
    ("text-embedding-3-small", "text-embedding-3-small", "openai"),  # POST /v1/embeddings
    ("gemini-embedding-001", "gemini-embedding-001", "gemini"),
)
_FLAKY_PRICE = Price(Decimal("0.05"), Decimal("0.08"))  # a small self-hosted-class model
_TIERS = ("gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-pro")


def demo_config(fake: FakeUpstream, port: int, host: str = "127.0.0.1") -> Config:
    providers = {
        kind: ProviderSpec(name=f"sim-{kind}", kind=kind, wire=kind, base_url=fake.url(kind),
                           api_key="sim-key", auth={"openai": "bearer", "anthropic": "x-api-key",
                                                    "gemini": "x-goog-api-key"}[kind])
        for kind in ("openai", "anthropic", "gemini")
    }
    models = {}
    for name, upstream, kind in _FLEET:
        e = catalog.lookup(upstream)
        models[name] = ModelSpec(
            name=name, provider=providers[kind], upstream=upstream,
            price=e.price if e else _FLAKY_PRICE, context_window=e.context_window if e else 32_000,
            max_output=e.max_output if e else 4096, priced_by="catalog" if e else "config",
            api=e.api if e else "chat",
        )
    routes = {
        # Cheapest first: the flaky self-hosted model, then the cheap API model, then up.
        "auto": RouteSpec("auto", "first", ("flaky-llama", "gpt-4o-mini"), fallbacks=("claude-haiku-4-5", "gemini-2.5-pro")),
        "best": RouteSpec("best", "first", ("gemini-2.5-pro",), fallbacks=("claude-haiku-4-5",)),
        "split": RouteSpec("split", "weighted", ("gpt-4o-mini", "claude-haiku-4-5"), weights=(3.0, 1.0)),
        # Rules first (proofs go straight to the frontier model), then a cascade that asks the
        # cheap model and escalates when its answer fails the checks (here: a refusal).
        "smart": RouteSpec("smart", "rules", (), spec=PolicySpec(
            "rules", rules=(RuleSpec((("keywords", re.compile(r"\b(?:prove|proof)\b", re.IGNORECASE)),),
                                     "gemini-2.5-pro", label="proofs"),),
            default=RuleSpec((), "cascade", route=True, label="default"))),
        "cascade": RouteSpec("cascade", "cascade", _TIERS, spec=PolicySpec("cascade", _TIERS, checks=ChecksSpec())),
    }
    return Config(server=ServerSpec(host=host, port=port), providers=providers, models=models, routes=routes,
                  auth=AuthSpec(), source="<demo>")


_SAMPLES = (
    ("auto", "What is the capital of France?"),
    ("auto", "Summarise the plot of Hamlet in one line."),
    ("auto", "Give me three names for a cat."),
    ("best", "Prove that the square root of 2 is irrational."),
    ("split", "Translate 'good morning' into Spanish."),
    ("claude-haiku-4-5", "Write a haiku about routers."),
    ("smart", "Prove that there are infinitely many primes."),
    ("smart", "Suggest a name for a goldfish."),
    ("smart", "What is a safe dose of ibuprofen for an adult?"),
)


async def _samples(meter: Metering) -> None:
    print(f"\n{'asked':<18} {'answered by':<18} {'tries':>5} {'cost USD':>11}  why")
    for model, prompt in _SAMPLES:
        try:
            r = await meter.chat(model=model, messages=[{"role": "user", "content": prompt}])
        except Exception as e:  # noqa: BLE001 - a demo shows the failure and goes on
            print(f"{model:<18} {'(failed)':<18} {'':>5} {'':>11}  {e}")
            continue
        cost = r.cost()
        print(f"{model:<18} {r.outcome.model.name:<18} {len(r.outcome.attempts):>5} {cost or 0:>11.8f}  {r.reason}")


async def _run(port: int, exit_after: bool, host: str) -> int:
    fake = FakeUpstream(demo_models())
    await fake.start()
    ledger_dir = tempfile.mkdtemp(prefix="switchman-demo-")
    config = replace(demo_config(fake, port, host), accounting=AccountingSettings(
        ledger=LedgerSettings(url=f"sqlite:///{ledger_dir}/ledger.db", flush_interval=0.05)))
    check_exposure(config, host, allow_public=False)
    gw = Gateway(config)
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter), limits=config.server.limits)
    actual = await server.start(host, port)
    base = f"http://{host}:{actual}"
    print(f"switchman demo: gateway on {base} over 7 simulated models "
          f"(gpt-4o-mini via OpenAI wire, claude-haiku-4-5 via Anthropic, gemini-2.5-pro via Gemini, "
          f"gpt-5.5-pro via OpenAI's Responses API, "
          f"flaky-llama failing half the time; text-embedding-3-small and gemini-embedding-001 for embeddings); "
          f"routes: auto, best, split, smart (rules, then a cascade)")
    await _samples(meter)
    if not exit_after:
        print(f"""
Try it (any key works: the demo has none configured):

  python - <<'EOF'
  from openai import OpenAI
  c = OpenAI(base_url="{base}/v1", api_key="demo")
  r = c.chat.completions.with_raw_response.create(model="auto", messages=[{{"role": "user", "content": "hi"}}])
  print(r.headers["x-switchman-model"], r.headers["x-switchman-reason"], r.parse().choices[0].message.content)
  EOF

Dashboard: {base}/dashboard   Metrics: {base}/metrics   Request log: {base}/admin/requests

Ctrl-C to stop.""", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    await server.stop(grace=2.0)
    await meter.close()
    await gw.close()
    await fake.stop()
    shutil.rmtree(ledger_dir, ignore_errors=True)
    return 0


def main_demo(port: int = 4000, exit_after: bool = False, host: str = "127.0.0.1", log_level: str = "WARNING") -> int:
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log_off_loop()
    _install_loop()
    return asyncio.run(_run(port, exit_after, host))
