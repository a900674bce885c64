"""The current ``openai`` and ``anthropic`` SDKs, pointed at the gateway, against every upstream
wire API, streaming and not, with tools: every dialect × adapter pair, as a user would run it."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from conftest import PROVIDER_KEY, WIRE_MODELS

TOOLS_OA = [{
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}]
TOOLS_AN = [{
    "name": "search",
    "description": "Search the web",
    "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
}]
ARGS = {"query": "weather in Paris", "units": "metric", "limit": 3}  # what the fake's tool call carries
CLIENT_KEY = "sk-client-credential-must-not-leak"

WIRES = list(WIRE_MODELS)


_clients: list = []


def oa(stack) -> openai.AsyncOpenAI:
    c = openai.AsyncOpenAI(base_url=stack.openai_url, api_key=CLIENT_KEY, max_retries=0)
    _clients.append(c)
    return c


def an(stack) -> anthropic.AsyncAnthropic:
    c = anthropic.AsyncAnthropic(base_url=stack.base, api_key=CLIENT_KEY, max_retries=0)
    _clients.append(c)
    return c


@pytest.fixture(autouse=True)
async def _close_clients():
    yield
    while _clients:
        await _clients.pop().close()


def _upstream_saw_no_client_key(stack):
    assert stack.fake.requests, "the upstream was not called"
    for r in stack.fake.requests:
        blob = json.dumps(r.headers) + (r.body or b"").decode(errors="replace")
        assert CLIENT_KEY not in blob
        assert r.api_key == PROVIDER_KEY


# ---- OpenAI SDK -----------------------------------------------------------------------------------

@pytest.mark.parametrize("wire", WIRES)
async def test_openai_sdk_text(stack, wire):
    model = WIRE_MODELS[wire]
    raw = await oa(stack).chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "first question"},
                  {"role": "assistant", "content": "first answer"},
                  {"role": "user", "content": "what is the capital of France?"}],
        temperature=0.2, max_tokens=64, stop=["\n\n"],
    )
    r = raw.parse()
    assert r.choices[0].message.content == "echo: what is the capital of France?"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert raw.headers["x-switchman-model"] == model
    assert raw.headers["x-switchman-route"] == model
    assert raw.headers["x-switchman-attempts"] == "1"
    assert raw.headers["x-switchman-request-id"].startswith("req_")
    assert float(raw.headers["x-switchman-cost-usd"]) > 0
    sent = stack.fake.requests[-1]
    assert sent.wire in (wire, "azure") and sent.model == model
    text = json.dumps(sent.json)
    assert "Be brief." in text and "first answer" in text  # system prompt and history carried across
    _upstream_saw_no_client_key(stack)


@pytest.mark.parametrize("wire", WIRES)
async def test_openai_sdk_stream_text_with_usage(stack, wire):
    stream = await oa(stack).chat.completions.create(
        model=WIRE_MODELS[wire], messages=[{"role": "user", "content": "tell me a story"}],
        stream=True, stream_options={"include_usage": True},
    )
    text, finish, usage, pieces = "", None, None, 0
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for c in chunk.choices:
            if c.delta.content:
                text += c.delta.content
                pieces += 1
            finish = c.finish_reason or finish
    assert text == "echo: tell me a story"
    assert pieces > 1, "the answer should arrive in pieces, not buffered whole"
    assert finish == "stop"
    assert usage is not None and usage.prompt_tokens > 0 and usage.completion_tokens > 0


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("stream", [False, True])
async def test_openai_sdk_tool_call_and_result(stack, wire, stream):
    client = oa(stack)
    msgs = [{"role": "user", "content": "search the weather"}]
    if stream:
        s = await client.chat.completions.create(model=WIRE_MODELS[wire], messages=msgs, tools=TOOLS_OA, stream=True)
        calls: dict[int, dict] = {}
        finish = None
        async for chunk in s:
            for c in chunk.choices:
                finish = c.finish_reason or finish
                for tc in c.delta.tool_calls or []:
                    d = calls.setdefault(tc.index, {"id": None, "name": None, "args": ""})
                    d["id"] = tc.id or d["id"]
                    if tc.function and tc.function.name:
                        d["name"] = tc.function.name
                    if tc.function and tc.function.arguments:
                        d["args"] += tc.function.arguments
        assert list(calls) == [0]
        call = calls[0]
        assert finish == "tool_calls"
        call_id, name, args = call["id"], call["name"], call["args"]
    else:
        r = await client.chat.completions.create(model=WIRE_MODELS[wire], messages=msgs, tools=TOOLS_OA,
                                                 tool_choice="auto")
        assert r.choices[0].finish_reason == "tool_calls"
        tc = r.choices[0].message.tool_calls[0]
        call_id, name, args = tc.id, tc.function.name, tc.function.arguments
    assert name == "search" and call_id
    assert json.loads(args) == ARGS
    # The tool result goes back; the model answers in text.
    msgs += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}]},
        {"role": "tool", "tool_call_id": call_id, "content": "sunny, 21C"},
        {"role": "user", "content": "thanks"},
    ]
    r = await client.chat.completions.create(model=WIRE_MODELS[wire], messages=msgs, tools=TOOLS_OA,
                                             tool_choice="none")
    # (the fake echoes the last user turn's text; wires that merge tool results into it echo both)
    assert r.choices[0].message.content.endswith("thanks")
    assert "sunny, 21C" in json.dumps(stack.fake.requests[-1].json)


async def test_openai_sdk_image_and_json_mode_reach_upstream(stack):
    img = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    for wire in WIRES:
        r = await oa(stack).chat.completions.create(
            model=WIRE_MODELS[wire],
            messages=[{"role": "user", "content": [{"type": "text", "text": "describe"},
                                                   {"type": "image_url", "image_url": {"url": img}}]}],
            response_format={"type": "json_object"},
        )
        assert r.choices[0].message.content
        body = json.dumps(stack.fake.requests[-1].json)
        assert "iVBORw0KGgo" in body, f"image not carried to {wire}"


# ---- Anthropic SDK --------------------------------------------------------------------------------

@pytest.mark.parametrize("wire", WIRES)
async def test_anthropic_sdk_text(stack, wire):
    raw = await an(stack).messages.with_raw_response.create(
        model=WIRE_MODELS[wire], max_tokens=100, system="Be brief.",
        messages=[{"role": "user", "content": "hello there"}], stop_sequences=["END"],
    )
    m = await raw.parse()
    assert m.content[0].type == "text" and m.content[0].text == "echo: hello there"
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0
    assert raw.headers["x-switchman-model"] == WIRE_MODELS[wire]
    assert "Be brief." in json.dumps(stack.fake.requests[-1].json)
    _upstream_saw_no_client_key(stack)


@pytest.mark.parametrize("wire", WIRES)
async def test_anthropic_sdk_stream_tool_use(stack, wire):
    async with an(stack).messages.stream(
        model=WIRE_MODELS[wire], max_tokens=200, tools=TOOLS_AN,
        messages=[{"role": "user", "content": "search the weather"}],
    ) as s:
        m = await s.get_final_message()
    tool = [b for b in m.content if b.type == "tool_use"]
    assert len(tool) == 1 and tool[0].name == "search" and tool[0].input == ARGS
    assert m.stop_reason == "tool_use"
    assert m.usage.output_tokens > 0
    # and the result goes back as a tool_result block
    m2 = await an(stack).messages.create(
        model=WIRE_MODELS[wire], max_tokens=100, tools=TOOLS_AN, tool_choice={"type": "none"},
        messages=[{"role": "user", "content": "search the weather"},
                  {"role": "assistant", "content": [{"type": "tool_use", "id": tool[0].id, "name": "search", "input": ARGS}]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool[0].id, "content": "sunny"},
                                               {"type": "text", "text": "thanks"}]}],
    )
    assert m2.content[0].text.endswith("thanks")
    assert "sunny" in json.dumps(stack.fake.requests[-1].json)


@pytest.mark.parametrize("wire", WIRES)
async def test_anthropic_sdk_stream_text(stack, wire):
    async with an(stack).messages.stream(
        model=WIRE_MODELS[wire], max_tokens=100, messages=[{"role": "user", "content": "stream please"}],
    ) as s:
        pieces = [t async for t in s.text_stream]
        m = await s.get_final_message()
    assert "".join(pieces) == "echo: stream please" and len(pieces) > 1
    assert m.stop_reason == "end_turn" and m.usage.output_tokens > 0


async def test_cached_tokens_reported_in_each_dialect(stack):
    stack.fake.models["gpt-4o-mini"].cached_tokens = 3
    stack.fake.models["claude-haiku-4-5"].cached_tokens = 3
    long = "word " * 40
    r = await oa(stack).chat.completions.create(model="claude-haiku-4-5", messages=[{"role": "user", "content": long}])
    assert r.usage.prompt_tokens_details.cached_tokens == 3
    m = await an(stack).messages.create(model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": long}])
    assert m.usage.cache_read_input_tokens == 3
    # Anthropic counts cached tokens apart from input_tokens; OpenAI includes them.
    assert m.usage.input_tokens + 3 == r.usage.prompt_tokens
