"""Endpoints SDKs call besides chat: ``models.retrieve``, Anthropic's ``count_tokens``; and the
Anthropic dialect refusing a forced tool it was not offered, as the OpenAI dialect does."""

from __future__ import annotations

import anthropic
import openai
import pytest

from telemetry.serving import ADMIN, serve, stop


@pytest.fixture
async def gw(tmp_path):
    s = await serve(tmp_path)
    yield s
    await stop(s)


async def test_models_retrieve(gw):
    c = openai.AsyncOpenAI(base_url=gw.base + "/v1", api_key=ADMIN, max_retries=0)
    m = await c.models.retrieve("echo")
    assert m.id == "echo" and m.object == "model"
    assert (await c.models.retrieve("auto")).owned_by == "switchman"
    with pytest.raises(openai.NotFoundError) as e:
        await c.models.retrieve("no-such-model")
    assert "no-such-model" in str(e.value)
    bad = openai.AsyncOpenAI(base_url=gw.base + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.models.retrieve("echo")
    await c.close()
    await bad.close()


async def test_count_tokens(gw):
    c = anthropic.AsyncAnthropic(base_url=gw.base, api_key=ADMIN, max_retries=0)
    short = await c.messages.count_tokens(model="claude", messages=[{"role": "user", "content": "hi"}])
    long = await c.messages.count_tokens(model="claude", system="You are terse. " * 50,
                                         messages=[{"role": "user", "content": "hello there " * 100}])
    assert 0 < short.input_tokens < 10 and long.input_tokens > 200
    with pytest.raises(anthropic.NotFoundError):
        await c.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(anthropic.BadRequestError) as e:
        await c.messages.count_tokens(model="claude", messages="not a list")
    assert "messages" in str(e.value)
    await c.close()


async def test_anthropic_forced_tool_must_be_offered(gw):
    c = anthropic.AsyncAnthropic(base_url=gw.base, api_key=ADMIN, max_retries=0)
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]
    with pytest.raises(anthropic.BadRequestError) as e:
        await c.messages.create(model="echo", max_tokens=50, tools=tools, tool_choice={"type": "tool", "name": "other"},
                                messages=[{"role": "user", "content": "hi"}])
    assert "tool_choice" in str(e.value) and "other" in str(e.value)
    with pytest.raises(anthropic.BadRequestError):
        await c.messages.create(model="echo", max_tokens=50, tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "hi"}])
    ok = await c.messages.create(model="echo", max_tokens=50, tools=tools,
                                 tool_choice={"type": "tool", "name": "get_weather"},
                                 messages=[{"role": "user", "content": "weather?"}])
    assert ok.content
    await c.close()


async def test_anthropic_only_fields_are_never_dropped_on_the_way_to_another_api(gw):
    """A top-level field only Anthropic knows goes to an Anthropic upstream as it is; toward an
    OpenAI-wire model it is a 400 naming it, not a silent drop (threads: test_anthropic_threads)."""
    c = anthropic.AsyncAnthropic(base_url=gw.base, api_key=ADMIN, max_retries=0)
    msgs = [{"role": "user", "content": "and the next step?"}]
    with pytest.raises(anthropic.BadRequestError) as e:
        await c.messages.create(model="echo", max_tokens=50, messages=msgs, extra_body={"mcp_servers": []})
    assert "mcp_servers" in str(e.value)
    r = await c.messages.create(model="claude", max_tokens=50, messages=msgs,
                                extra_body={"thread": {"type": "create"}})
    assert r.content[0].text
    sent = [x.json for x in gw.fake.requests if x.model == "claude"][-1]
    assert sent["thread"] == {"type": "create"}  # passed through to Anthropic itself
    await c.close()


async def test_legacy_completions_through_any_upstream(gw):
    """POST /v1/completions with the openai SDK: the prompt goes to a chat upstream (OpenAI-wire
    and Anthropic-wire alike) and comes back as text_completion, streamed or not, with usage;
    what a chat model cannot do is a 400 naming the field."""
    c = openai.AsyncOpenAI(base_url=gw.base + "/v1", api_key=ADMIN, max_retries=0)
    for model in ("echo", "claude"):
        r = await c.completions.create(model=model, prompt="Say hello", max_tokens=50)
        assert r.object == "text_completion" and "Say hello" in r.choices[0].text
        assert r.choices[0].finish_reason == "stop" and r.usage.prompt_tokens > 0
    parts, usage = [], None
    async for ch in await c.completions.create(model="echo", prompt="Stream me", max_tokens=50, stream=True,
                                               stream_options={"include_usage": True}):
        if ch.choices:
            parts.append(ch.choices[0].text)
        if ch.usage:
            usage = ch.usage
    assert "Stream me" in "".join(parts) and usage is not None and usage.completion_tokens > 0
    for kw, field in (({"n": 2}, "n"), ({"echo": True}, "echo"), ({"logprobs": 2}, "logprobs")):
        with pytest.raises(openai.BadRequestError) as e:
            await c.completions.create(model="echo", prompt="x", **kw)
        assert field in str(e.value)
    with pytest.raises(openai.BadRequestError) as e:
        await c.completions.create(model="echo", prompt=["one", "two"])
    assert "prompt" in str(e.value)
    await c.close()


async def test_a_thread_continues_on_the_model_that_holds_it(tmp_path):
    """Anthropic's thread: a continuation goes to the model that answered the message it names,
    whatever the route would pick, streamed or not, and fails rather than lose the history."""
    from switchman.testing.fake_upstream import FakeModel

    extra = "  - {name: claude-b, provider: fake-an, model: claude-b, price: {input: 3, output: 15}}\n"
    routes = "  - {name: chat, policy: {kind: first, models: [claude-b, claude]}}\n"
    s = await serve(tmp_path, extra_models=extra, routes=routes,
                    models={"claude": FakeModel(chunks=3), "claude-b": FakeModel(chunks=3)})
    try:
        c = anthropic.AsyncAnthropic(base_url=s.base, api_key=ADMIN, max_retries=0)
        first = await c.messages.with_raw_response.create(
            model="claude", max_tokens=50, messages=[{"role": "user", "content": "start"}],
            extra_body={"thread": {"type": "create"}})
        msg = await first.parse()
        cont = {"thread": {"type": "continue", "previous_message_id": msg.id}}
        nxt = await c.messages.with_raw_response.create(model="chat", max_tokens=50, extra_body=cont,
                                                       messages=[{"role": "user", "content": "next"}])
        assert nxt.headers["x-switchman-model"] == "claude" and "holds the conversation" in nxt.headers["x-switchman-reason"]
        # streamed, the thread's next message is remembered too
        async with c.messages.stream(model="chat", max_tokens=50, extra_body={
                "thread": {"type": "continue", "previous_message_id": (await nxt.parse()).id}},
                messages=[{"role": "user", "content": "and then"}]) as st:
            last = await st.get_final_message()
        assert st.response.headers["x-switchman-model"] == "claude"
        # the holder fails: an error, not the other model without the history
        s.fake.models["claude"].error_status = 503
        with pytest.raises(anthropic.APIStatusError):
            await c.messages.create(model="chat", max_tokens=50, messages=[{"role": "user", "content": "more"}],
                                    extra_body={"thread": {"type": "continue", "previous_message_id": last.id}})
        assert s.fake.stats["claude-b"].requests == 0
        await c.close()
    finally:
        await stop(s)


@pytest.mark.parametrize("model", ["claude-haiku-4-5", "gemini-2.5-flash"])
async def test_count_tokens_is_the_vendors_own_count_where_it_has_one(model):
    import aiohttp

    from conftest import start_stack, stop_stack

    s = await start_stack()
    try:
        c = anthropic.AsyncAnthropic(base_url=s.base, api_key="k", max_retries=0)
        msgs = [{"role": "user", "content": "how many tokens is this question, exactly? " * 7}]
        raw = await c.messages.with_raw_response.count_tokens(model=model, system="Be terse.", messages=msgs)
        counted = (await raw.parse()).input_tokens
        assert raw.headers["x-switchman-token-count"] == "exact"
        assert s.fake.requests[-1].path.endswith(("/count_tokens", ":countTokens"))
        billed = await c.messages.create(model=model, max_tokens=20, system="Be terse.", messages=msgs)
        assert counted == billed.usage.input_tokens, "the count is what the same request is billed"
        async with aiohttp.ClientSession() as h:  # a route (no model chosen yet) and an OpenAI model: estimated
            for name in ("auto", "gpt-4o-mini"):
                async with h.post(s.base + "/v1/messages/count_tokens", json={"model": name, "messages": msgs}) as r:
                    assert r.status == 200 and r.headers["x-switchman-token-count"] == "estimate"
                    assert (await r.json())["input_tokens"] > 50
        await c.close()
    finally:
        await stop_stack(s)
