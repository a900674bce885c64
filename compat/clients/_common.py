"""What every client scenario shares (the standard library and pydantic only: each client runs in its own venv).

A scenario script is run as ``python compat/clients/<name>.py BASE_URL``; it calls :func:`cell` once
per (row, column, provider) and :func:`finish` at the end, which prints one JSON line the runner reads.
Each cell runs on a daemon thread with its own timeout, so one hang costs one cell, not the client.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
import threading
import traceback
from collections.abc import Callable

from pydantic import BaseModel  # every client library here depends on pydantic

# The demo fleet's four chat models, one per upstream wire API (switchman/demo.py).
PROVIDERS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "gemini": "gemini-2.5-pro",
             "responses": "gpt-5.5-pro"}
COLUMNS = ("plain", "stream", "tools", "structured", "async")
KEY = "compat-key"  # the demo gateway has no keys configured: any key goes
CELL_TIMEOUT = float(os.environ.get("COMPAT_CELL_TIMEOUT", "30"))

BASE = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:4000"
OPENAI_BASE = BASE + "/v1"
_results: list[dict] = []
# One event loop for every async cell, as in an application: some clients cache an async HTTP client
# process-wide (langchain-openai does), and it belongs to the loop that made it.
_LOOP = asyncio.new_event_loop()
threading.Thread(target=_LOOP.run_forever, daemon=True).start()

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
# The weather tool as an OpenAI Chat Completions tool.
OPENAI_TOOL = {"type": "function", "function": {"name": "weather", "description": "The current weather in a city.",
                                                "parameters": WEATHER_SCHEMA}}


class City(BaseModel):
    """What the structured-output cells ask for."""
    name: str
    country: str
    population: int


def weather(city: str) -> str:
    """The current weather in a city."""
    return f"sunny, 21 C in {city}"


class Fail(AssertionError):
    pass


def check(cond: object, what: str) -> None:
    """Assert something a user would notice; ``what`` is the short reason shown in the matrix."""
    if not cond:
        raise Fail(what)


def chat_tool_loop(create: Callable[[list], object], turns: int = 4) -> None:
    """A Chat Completions tool round trip: ``create(messages)`` returns the assistant message; run the weather
    tool for each call it makes, until it answers in text."""
    msgs: list = [{"role": "user", "content": "What is the weather in Paris?"}]
    called = False
    for _ in range(turns):
        m = create(msgs)
        if not m.tool_calls:
            check(called, "answered without calling the tool")
            check(m.content, "no final text")
            return
        msgs.append(m.model_dump(exclude_none=True))
        for tc in m.tool_calls:
            called = True
            check(tc.function.name == "weather", f"called {tc.function.name}")
            out = weather(**json.loads(tc.function.arguments))
            msgs.append({"role": "tool", "tool_call_id": tc.id, "content": out})
    check(False, f"no final answer after {turns} turns")


def _short(e: BaseException) -> str:
    if isinstance(e, Fail):
        return str(e)
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}"[:160]


def cell(row: str, col: str, provider: str, fn: Callable[[str], object], timeout: float = CELL_TIMEOUT) -> None:
    """Run ``fn(model)`` (sync or async) for one cell and record pass/fail."""
    box: dict = {}

    def target() -> None:
        try:
            out = fn(PROVIDERS[provider])
            if inspect.iscoroutine(out):
                asyncio.run_coroutine_threadsafe(out, _LOOP).result()
            box["ok"] = True
        except BaseException as e:  # noqa: BLE001 - every failure is a cell's result
            box["err"] = _short(e)
            box["tb"] = traceback.format_exc()

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        box = {"err": f"timed out after {timeout:.0f}s"}
    r = {"row": row, "col": col, "provider": provider, "ok": bool(box.get("ok")), "why": box.get("err", "")}
    if box.get("tb") and os.environ.get("COMPAT_VERBOSE"):
        print(f"--- {row} / {col} / {provider}\n{box['tb']}", file=sys.stderr)
    _results.append(r)


def each(row: str, col: str, fn: Callable[[str], object], providers=tuple(PROVIDERS)) -> None:
    for p in providers:
        cell(row, col, p, fn)


def na(row: str, col: str, reason: str) -> None:
    """A cell the client genuinely cannot do: shown as a dash with ``reason`` in a footnote."""
    _results.append({"row": row, "col": col, "provider": "*", "ok": None, "why": reason})


def finish() -> None:
    sys.stdout.write("COMPAT-RESULTS " + json.dumps(_results) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # daemon threads of timed-out cells must not keep the process alive
