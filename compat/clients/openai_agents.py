"""The OpenAI Agents SDK: ``Agent`` + ``Runner`` in its default mode (the Responses API), and again with
``set_default_openai_api("chat_completions")``; pointed at the gateway with ``set_default_openai_client``."""

from __future__ import annotations

import openai
from agents import (Agent, Runner, function_tool, set_default_openai_api, set_default_openai_client,
                    set_tracing_disabled)
from openai.types.responses import ResponseTextDeltaEvent

from _common import KEY, OPENAI_BASE, City, check, each, finish

set_tracing_disabled(True)


ASK = "What is the capital of France?"


PATHS: list[str] = []  # the API paths the agent called: the default mode is the Responses API


async def _seen(request) -> None:
    PATHS.append(request.url.path)


def _setup(api: str | None) -> None:
    """Point the SDK at the gateway; ``api=None`` leaves its default API alone (this row runs first)."""
    http = openai.DefaultAsyncHttpxClient(event_hooks={"request": [_seen]})
    set_default_openai_client(openai.AsyncOpenAI(base_url=OPENAI_BASE, api_key=KEY, max_retries=0, timeout=20,
                                                 http_client=http), use_for_tracing=False)
    if api:
        set_default_openai_api(api)
    PATHS.clear()


def _used(api: str | None) -> None:
    want = "/v1/chat/completions" if api == "chat_completions" else "/v1/responses"
    check(PATHS and set(PATHS) == {want}, f"called {sorted(set(PATHS))}, not {want}")


def scenarios(api: str):
    def plain(model):
        _setup(api)
        r = Runner.run_sync(Agent(name="a", instructions="Be brief.", model=model), ASK)
        check(isinstance(r.final_output, str) and r.final_output, "empty final_output")
        check(r.context_wrapper.usage.output_tokens > 0, "no usage")
        _used(api)

    async def stream(model):
        _setup(api)
        r = Runner.run_streamed(Agent(name="a", model=model), ASK)
        deltas = 0
        async for ev in r.stream_events():
            deltas += ev.type == "raw_response_event" and isinstance(ev.data, ResponseTextDeltaEvent)
        check(deltas > 1, f"{deltas} text deltas")
        check(r.final_output, "empty final_output")

    def tools(model):
        _setup(api)
        calls = []

        @function_tool
        def get_weather(city: str) -> str:
            """The current weather in a city.

            Args:
                city: the city's name
            """
            calls.append(city)
            return f"sunny, 21 C in {city}"

        r = Runner.run_sync(Agent(name="a", model=model, tools=[get_weather]), "What is the weather in Paris?",
                            max_turns=4)
        check(calls, "the agent never called the tool")
        check(isinstance(r.final_output, str) and r.final_output, "no final text")
        _used(api)

    def structured(model):
        _setup(api)
        r = Runner.run_sync(Agent(name="a", model=model, output_type=City), "Describe Paris.")
        check(isinstance(r.final_output, City), f"final_output is {type(r.final_output).__name__}, not City")

    async def async_(model):
        _setup(api)
        r = await Runner.run(Agent(name="a", model=model), ASK)
        check(isinstance(r.final_output, str) and r.final_output, "empty final_output")

    return plain, stream, tools, structured, async_


for row, api in (("openai-agents · default (Responses API)", None),
                 ("openai-agents · chat_completions", "chat_completions")):
    for col, fn in zip(("plain", "stream", "tools", "structured", "async"), scenarios(api)):
        each(row, col, fn)
finish()
