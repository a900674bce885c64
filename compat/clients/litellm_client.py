"""litellm as a client (not its proxy): ``litellm.completion(model="openai/<name>", api_base=<gateway>/v1)``."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch of the price map at import

import litellm

from _common import KEY, OPENAI_BASE, OPENAI_TOOL, City, chat_tool_loop, check, each, finish

ASK = [{"role": "user", "content": "What is the capital of France?"}]


def kw(model):
    return {"model": f"openai/{model}", "api_base": OPENAI_BASE, "api_key": KEY, "timeout": 20, "num_retries": 0}


def plain(model):
    r = litellm.completion(messages=ASK, **kw(model))
    check(r.choices[0].message.content, "empty answer")
    check(r.usage and r.usage.completion_tokens > 0, "no usage")


def stream(model):
    chunks = list(litellm.completion(messages=ASK, stream=True, stream_options={"include_usage": True}, **kw(model)))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    check(len(pieces) > 1, f"{len(pieces)} text deltas")
    rebuilt = litellm.stream_chunk_builder(chunks, messages=ASK)
    check(rebuilt.usage and rebuilt.usage.completion_tokens > 0, "no usage in the stream")


def tools(model):
    chat_tool_loop(lambda msgs: litellm.completion(messages=msgs, tools=[OPENAI_TOOL], **kw(model)).choices[0].message)


def structured(model):
    r = litellm.completion(messages=[{"role": "user", "content": "Describe Paris."}], response_format=City, **kw(model))
    City.model_validate_json(r.choices[0].message.content)


async def async_(model):
    r = await litellm.acompletion(messages=ASK, **kw(model))
    check(r.choices[0].message.content, "empty answer")
    s = await litellm.acompletion(messages=ASK, stream=True, **kw(model))
    check(len([c async for c in s if c.choices and c.choices[0].delta.content]) > 1, "async stream: no deltas")


for col, fn in zip(("plain", "stream", "tools", "structured", "async"), (plain, stream, tools, structured, async_)):
    each("litellm (client) · completion", col, fn)
finish()
