"""instructor: ``instructor.from_openai`` and ``instructor.from_anthropic`` in their default modes (a forced tool
call carries the object), with a pydantic response model; partial streaming; async clients."""

from __future__ import annotations

import anthropic
import instructor
import openai

from _common import BASE, KEY, OPENAI_BASE, City, check, each, finish, na

ASK = [{"role": "user", "content": "Describe Paris."}]
ONLY_OBJECTS = "instructor returns validated objects only: its plain-text and tool-loop calls are the SDK's own rows"


def oa():
    return instructor.from_openai(openai.OpenAI(base_url=OPENAI_BASE, api_key=KEY, max_retries=0, timeout=20))


def an():
    return instructor.from_anthropic(anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=20))


def scenarios(make, amake, extra):
    def structured(model):
        c = make().chat.completions.create(model=model, response_model=City, messages=ASK, max_retries=0, **extra)
        check(isinstance(c, City), f"got {type(c).__name__}, not City")

    def stream(model):
        parts = list(make().chat.completions.create_partial(model=model, response_model=City, messages=ASK, **extra))
        # A Gemini upstream sends a function call's arguments whole, so toward it one partial may be all there is.
        check(parts, "no partial objects")
        City.model_validate(parts[-1].model_dump())

    async def async_(model):
        c = await amake().chat.completions.create(model=model, response_model=City, messages=ASK, max_retries=0,
                                                  **extra)
        check(isinstance(c, City), f"got {type(c).__name__}, not City")

    return stream, structured, async_


ROWS = {
    "instructor · from_openai": (oa, lambda: instructor.from_openai(
        openai.AsyncOpenAI(base_url=OPENAI_BASE, api_key=KEY, max_retries=0, timeout=20)), {}),
    "instructor · from_anthropic": (an, lambda: instructor.from_anthropic(
        anthropic.AsyncAnthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=20)), {"max_tokens": 400}),
}
for row, (make, amake, extra) in ROWS.items():
    stream, structured, async_ = scenarios(make, amake, extra)
    na(row, "plain", ONLY_OBJECTS)
    each(row, "stream", stream)
    na(row, "tools", ONLY_OBJECTS)
    each(row, "structured", structured)
    each(row, "async", async_)
finish()
