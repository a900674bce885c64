"""The ``anthropic`` SDK: Messages (plain, stream, a hand-written tool loop, ``messages.parse``, async) and the
beta tool runner in its default mode (anthropic 2.16: the server keeps the thread; the gateway keeps it for
non-Anthropic upstreams)."""

from __future__ import annotations

import functools
import json

import anthropic
from anthropic import beta_async_tool, beta_tool

from _common import BASE, KEY, WEATHER_SCHEMA, City, check, each, finish, na, weather

TOOL = {"name": "weather", "description": "The current weather in a city.", "input_schema": WEATHER_SCHEMA}
ASK = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER_Q = [{"role": "user", "content": "What is the weather in Paris?"}]


def client() -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=20)


def aclient() -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=20)


def text_of(m) -> str:
    return "".join(b.text for b in m.content if b.type == "text")


def plain(model):
    m = client().messages.create(model=model, max_tokens=200, messages=ASK)
    check(text_of(m), "empty answer")
    check(m.usage.output_tokens > 0, "no usage")


def stream(model):
    with client().messages.stream(model=model, max_tokens=200, messages=ASK) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    check(len(pieces) > 1, f"{len(pieces)} text deltas")
    check(final.usage.output_tokens > 0 and final.stop_reason == "end_turn", "no usage/stop_reason in the stream")


def tools(model):
    c, msgs, called = client(), list(WEATHER_Q), False
    for _ in range(4):
        m = c.messages.create(model=model, max_tokens=300, messages=msgs, tools=[TOOL])
        uses = [b for b in m.content if b.type == "tool_use"]
        if not uses:
            check(called, "answered without calling the tool")
            check(text_of(m), "no final text")
            return
        called = True
        msgs += [{"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id,
                                               "content": weather(**u.input)}
                                              for u in uses]}]
    check(False, "no final answer after 4 turns")


def structured(model):
    m = client().messages.parse(model=model, max_tokens=300, messages=[{"role": "user", "content": "Describe Paris."}],
                                output_format=City)
    check(isinstance(m.parsed_output, City), "no parsed City")


async def async_(model):
    async with aclient() as c:
        m = await c.messages.create(model=model, max_tokens=200, messages=ASK)
        check(text_of(m), "empty answer")
        async with c.messages.stream(model=model, max_tokens=200, messages=ASK) as s:
            check(len([t async for t in s.text_stream]) > 1, "async stream: no deltas")


# ---- the beta tool runner, default mode (server-side threads) -------------------------------------

def _runner_check(calls, last):
    check(calls, "the runner never ran the tool")
    check(last is not None and last.stop_reason == "end_turn" and text_of(last), "the loop did not end with text")


def _get_weather(calls: list, is_async: bool = False):
    """The weather tool as the runner takes it, recording each call in ``calls``."""
    def get_weather(city: str) -> str:
        """The current weather in a city.

        Args:
            city: the city's name
        """
        calls.append(city)
        return weather(city)

    @functools.wraps(get_weather)
    async def get_weather_async(city: str) -> str:
        return get_weather(city)

    return beta_async_tool(get_weather_async) if is_async else beta_tool(get_weather)


def runner_tools(model):
    calls, threads = [], []  # default mode: the server keeps the conversation; each turn names its thread

    def seen(request):
        threads.append(json.loads(request.content).get("thread"))

    c = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=20,
                            http_client=anthropic.DefaultHttpxClient(event_hooks={"request": [seen]}))
    last = None
    for last in c.beta.messages.tool_runner(model=model, max_tokens=300, tools=[_get_weather(calls)],
                                            messages=WEATHER_Q, max_iterations=4):
        pass
    _runner_check(calls, last)
    check(threads[0] == {"type": "create"} and (threads[-1] or {}).get("type") == "continue",
          f"not in thread mode: {threads}")


def runner_stream(model):
    calls, last, deltas = [], None, 0
    for s in client().beta.messages.tool_runner(model=model, max_tokens=300, tools=[_get_weather(calls)], stream=True,
                                                messages=WEATHER_Q, max_iterations=4):
        for ev in s:
            deltas += ev.type == "content_block_delta"
        last = s.get_final_message()
    check(deltas > 0, "no deltas")
    _runner_check(calls, last)


async def runner_async(model):
    calls, last = [], None
    async with aclient() as c:
        async for last in c.beta.messages.tool_runner(model=model, max_tokens=300, tools=[_get_weather(calls, True)],
                                                      messages=WEATHER_Q, max_iterations=4):
            pass
    _runner_check(calls, last)


ROW, RUNNER = "anthropic · messages", "anthropic · beta tool_runner"
for col, fn in zip(("plain", "stream", "tools", "structured", "async"), (plain, stream, tools, structured, async_)):
    each(ROW, col, fn)
na(RUNNER, "plain", "the tool runner is a tool loop: plain and structured calls are the messages row")
each(RUNNER, "stream", runner_stream)
each(RUNNER, "tools", runner_tools)
na(RUNNER, "structured", "the tool runner is a tool loop: plain and structured calls are the messages row")
each(RUNNER, "async", runner_async)
finish()
