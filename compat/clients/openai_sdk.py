"""The ``openai`` SDK: Chat Completions and the Responses API, sync and async."""

from __future__ import annotations

import json

import openai

from _common import KEY, OPENAI_BASE, OPENAI_TOOL, City, chat_tool_loop, check, each, finish, weather

TOOL_RESP = [{"type": "function", **OPENAI_TOOL["function"]}]  # the Responses API's flat form
ASK = "What is the capital of France?"


def client() -> openai.OpenAI:
    return openai.OpenAI(base_url=OPENAI_BASE, api_key=KEY, max_retries=0, timeout=20)


def aclient() -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=OPENAI_BASE, api_key=KEY, max_retries=0, timeout=20)


# ---- Chat Completions ------------------------------------------------------------------------------

def chat_plain(model):
    r = client().chat.completions.create(model=model, messages=[{"role": "user", "content": ASK}])
    check(r.choices[0].message.content, "empty answer")
    check(r.usage and r.usage.completion_tokens > 0, "no usage")


def chat_stream(model):
    s = client().chat.completions.create(model=model, messages=[{"role": "user", "content": ASK}], stream=True,
                                         stream_options={"include_usage": True})
    pieces, usage = [], None
    for chunk in s:
        usage = chunk.usage or usage
        pieces += [c.delta.content for c in chunk.choices if c.delta.content]
    check(len(pieces) > 1, f"{len(pieces)} text deltas")
    check(usage and usage.completion_tokens > 0, "no usage in the stream")


def chat_tools(model):
    c = client()
    chat_tool_loop(lambda msgs: c.chat.completions.create(model=model, messages=msgs, tools=[OPENAI_TOOL])
                   .choices[0].message)


def chat_structured(model):
    r = client().chat.completions.parse(model=model, messages=[{"role": "user", "content": "Describe Paris."}],
                                        response_format=City)
    check(isinstance(r.choices[0].message.parsed, City), "no parsed City")


async def chat_async(model):
    async with aclient() as c:
        r = await c.chat.completions.create(model=model, messages=[{"role": "user", "content": ASK}])
        check(r.choices[0].message.content, "empty answer")
        s = await c.chat.completions.create(model=model, messages=[{"role": "user", "content": ASK}], stream=True)
        check(len([ch async for ch in s if ch.choices and ch.choices[0].delta.content]) > 1, "async stream: no deltas")


# ---- Responses API ---------------------------------------------------------------------------------

def resp_plain(model):
    r = client().responses.create(model=model, input=ASK)
    check(r.output_text, "empty output_text")
    check(r.usage and r.usage.output_tokens > 0, "no usage")


def resp_stream(model):
    deltas, done = 0, None
    for ev in client().responses.create(model=model, input=ASK, stream=True):
        if ev.type == "response.output_text.delta":
            deltas += 1
        elif ev.type == "response.completed":
            done = ev.response
    check(deltas > 1, f"{deltas} text deltas")
    check(done is not None and done.output_text, "no response.completed with text")
    check(done.usage and done.usage.output_tokens > 0, "no usage")


def resp_tools(model):
    c = client()
    r = c.responses.create(model=model, input="What is the weather in Paris?", tools=TOOL_RESP)
    called = False
    for _ in range(4):
        calls = [o for o in r.output if o.type == "function_call"]
        if not calls:
            check(called, "answered without calling the tool")
            check(r.output_text, "no final text")
            return
        called = True
        out = [{"type": "function_call_output", "call_id": fc.call_id, "output": weather(**json.loads(fc.arguments))}
               for fc in calls]
        r = c.responses.create(model=model, previous_response_id=r.id, input=out, tools=TOOL_RESP)
    check(False, "no final answer after 4 turns")


def resp_structured(model):
    r = client().responses.parse(model=model, input="Describe Paris.", text_format=City)
    check(isinstance(r.output_parsed, City), "no parsed City")


async def resp_async(model):
    async with aclient() as c:
        r = await c.responses.create(model=model, input=ASK)
        check(r.output_text, "empty output_text")
        n = 0
        async for ev in await c.responses.create(model=model, input=ASK, stream=True):
            n += ev.type == "response.output_text.delta"
        check(n > 1, "async stream: no deltas")


for row, fns in (("openai · chat.completions", (chat_plain, chat_stream, chat_tools, chat_structured, chat_async)),
                 ("openai · responses", (resp_plain, resp_stream, resp_tools, resp_structured, resp_async))):
    for col, fn in zip(("plain", "stream", "tools", "structured", "async"), fns):
        each(row, col, fn)
finish()
