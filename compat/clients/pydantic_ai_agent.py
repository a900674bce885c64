"""pydantic-ai: an ``Agent`` on each of its model classes that can take a base URL (``OpenAIChatModel``,
``OpenAIResponsesModel``, ``AnthropicModel``, ``GoogleModel``), pointed at the gateway."""

from __future__ import annotations

from pydantic_ai import Agent
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.models.google import GoogleModel
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.anthropic import AnthropicProvider
from pydantic_ai.providers.google import GoogleProvider
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.usage import UsageLimits

from _common import BASE, KEY, OPENAI_BASE, City, check, each, finish

ASK = "What is the capital of France?"

# A fresh model (so a fresh HTTP client) per cell: each cell runs its own event loop.
MODELS = {
    "pydantic-ai · OpenAIChatModel": lambda m: OpenAIChatModel(
        m, provider=OpenAIProvider(base_url=OPENAI_BASE, api_key=KEY)),
    "pydantic-ai · OpenAIResponsesModel": lambda m: OpenAIResponsesModel(
        m, provider=OpenAIProvider(base_url=OPENAI_BASE, api_key=KEY)),
    "pydantic-ai · AnthropicModel": lambda m: AnthropicModel(m, provider=AnthropicProvider(base_url=BASE, api_key=KEY)),
    "pydantic-ai · GoogleModel": lambda m: GoogleModel(m, provider=GoogleProvider(base_url=BASE, api_key=KEY)),
}


def scenarios(make):
    def plain(model):
        r = Agent(make(model)).run_sync(ASK)
        check(isinstance(r.output, str) and r.output, "empty output")
        check(r.usage().output_tokens > 0, "no usage")

    async def stream(model):
        async with Agent(make(model)).run_stream(ASK) as r:
            pieces = [t async for t in r.stream_text(delta=True, debounce_by=None)]
        check(len([p for p in pieces if p]) > 1, f"{len(pieces)} text deltas")

    def tools(model):
        calls = []
        agent = Agent(make(model))

        @agent.tool_plain
        def get_weather(city: str) -> str:
            """The current weather in a city.

            Args:
                city: the city's name
            """
            calls.append(city)
            return f"sunny, 21 C in {city}"

        try:
            r = agent.run_sync("What is the weather in Paris?", usage_limits=UsageLimits(request_limit=6))
        except UsageLimitExceeded:
            check(False, f"the loop never ended: 6 requests, the model called the tool {len(calls)} times")
        check(calls, "the agent never called the tool")
        check(isinstance(r.output, str) and r.output, "no final text")

    def structured(model):
        r = Agent(make(model), output_type=City).run_sync("Describe Paris.")
        check(isinstance(r.output, City), f"output is {type(r.output).__name__}, not City")

    async def async_(model):
        r = await Agent(make(model)).run(ASK)
        check(isinstance(r.output, str) and r.output, "empty output")

    return plain, stream, tools, structured, async_


for row, make in MODELS.items():
    for col, fn in zip(("plain", "stream", "tools", "structured", "async"), scenarios(make)):
        each(row, col, fn)
finish()
