"""The ``google-genai`` SDK: generate_content, streaming, automatic function calling (the SDK runs the Python
function and sends its result back), ``response_schema`` with a pydantic model, and ``client.aio``."""

from __future__ import annotations

from google import genai
from google.genai import types

from _common import BASE, KEY, City, check, each, finish

ASK = "What is the capital of France?"


def client() -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=BASE, timeout=20_000))


def plain(model):
    c = client()  # kept in a variable: a dropped Client closes its HTTP client when collected
    r = c.models.generate_content(model=model, contents=ASK)
    check(r.text, "empty answer")
    check(r.usage_metadata and r.usage_metadata.candidates_token_count, "no usage_metadata")


def stream(model):
    c = client()
    pieces = [ch.text for ch in c.models.generate_content_stream(model=model, contents=ASK) if ch.text]
    check(len(pieces) > 1, f"{len(pieces)} text chunks")


def tools(model):
    calls = []

    def get_weather(city: str) -> str:
        """The current weather in a city.

        Args:
            city: the city's name
        """
        calls.append(city)
        return f"sunny, 21 C in {city}"

    c = client()
    r = c.models.generate_content(model=model, contents="What is the weather in Paris?",
                                         config=types.GenerateContentConfig(tools=[get_weather]))
    check(calls, "the SDK never ran the function")
    check(r.text, "no final text after the function result")
    check(r.automatic_function_calling_history, "no function-calling history")


def structured(model):
    c = client()
    r = c.models.generate_content(model=model, contents="Describe Paris.", config=types.GenerateContentConfig(
        response_mime_type="application/json", response_schema=City))
    check(isinstance(r.parsed, City), f"no parsed City: {str(r.text)[:60]!r}")


async def async_(model):
    sync = client()
    c = sync.aio
    r = await c.models.generate_content(model=model, contents=ASK)
    check(r.text, "empty answer")
    pieces = [ch.text async for ch in await c.models.generate_content_stream(model=model, contents=ASK) if ch.text]
    check(len(pieces) > 1, "async stream: no chunks")


for col, fn in zip(("plain", "stream", "tools", "structured", "async"), (plain, stream, tools, structured, async_)):
    each("google-genai", col, fn)
finish()
