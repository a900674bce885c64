"""Anthropic threads through the gateway: the SDK's tool runner in its default mode (the server
keeps the conversation) works toward every upstream, because the gateway keeps each thread
itself and sends a non-Anthropic upstream the whole history; Anthropic still holds its own."""

from __future__ import annotations

import anthropic
import pytest
from anthropic import beta_async_tool

from conftest import start_stack, stop_stack
from switchman.testing.fake_upstream import FakeModel


@pytest.fixture
async def stack():
    s = await start_stack({m: FakeModel(chunks=5, behave=True)
                           for m in ("gpt-4o-mini", "gemini-2.5-flash", "claude-haiku-4-5")})
    try:
        yield s
    finally:
        await stop_stack(s)


def _weather_tool(calls: list):
    @beta_async_tool
    async def get_weather(city: str) -> str:
        """The current weather in a city.

        Args:
            city: the city's name
        """
        calls.append(city)
        return f"sunny, 21 C in {city}"

    return get_weather


@pytest.mark.parametrize("model", ["gpt-4o-mini", "gemini-2.5-flash", "claude-haiku-4-5"])
@pytest.mark.parametrize("stream", [False, True])
async def test_the_tool_runner_in_its_default_mode_reaches_every_upstream(stack, model, stream):
    c = anthropic.AsyncAnthropic(base_url=stack.base, api_key="k", max_retries=0)
    calls: list = []
    runner = c.beta.messages.tool_runner(model=model, max_tokens=300, tools=[_weather_tool(calls)], stream=stream, max_iterations=4,
                                         system="You answer about the weather.",
                                         messages=[{"role": "user", "content": "What is the weather in Paris?"}])
    if stream:
        replies = []
        async for s in runner:
            replies.append(await s.get_final_message())
    else:
        replies = [m async for m in runner]
    assert calls, "the model called the tool and the runner ran it"
    assert replies[-1].stop_reason == "end_turn" and replies[-1].content[-1].type == "text"
    sent = [r.json for r in stack.fake.requests if r.model == model]
    assert len(sent) == 2
    if model.startswith("claude"):  # Anthropic holds the thread: only the new turn went
        assert sent[0]["thread"] == {"type": "create"} and sent[1]["thread"]["type"] == "continue"
        assert len(sent[1]["messages"]) == 1
    else:  # the gateway kept it: the second call carried the whole conversation and the system prompt
        text = str(sent[1])
        assert "What is the weather in Paris?" in text and "sunny, 21 C in" in text
        assert "You answer about the weather." in text and "get_weather" in text
        assert "thread" not in sent[0] and "thread" not in sent[1]
    await c.close()


async def test_a_kept_thread_moves_between_upstreams(stack):
    """A thread the gateway keeps may continue on another provider: the history goes along."""
    c = anthropic.AsyncAnthropic(base_url=stack.base, api_key="k", max_retries=0)
    first = await c.messages.create(model="gpt-4o-mini", max_tokens=100, extra_body={"thread": {"type": "create"}},
                                    messages=[{"role": "user", "content": "Remember the word PELICAN."}])
    nxt = await c.messages.create(model="gemini-2.5-flash", max_tokens=100,
                                  extra_body={"thread": {"type": "continue", "previous_message_id": first.id}},
                                  messages=[{"role": "user", "content": "Which word?"}])
    assert nxt.content[0].text
    sent = [r.json for r in stack.fake.requests if r.model == "gemini-2.5-flash"][-1]
    assert "PELICAN" in str(sent) and "Which word?" in str(sent)
    await c.close()


async def test_an_unknown_thread_is_thread_not_found_and_the_runner_replays(stack):
    """A continuation of a message the gateway does not hold is Anthropic's own 404 with
    ``error_code: thread_not_found``; another key cannot continue a thread it did not make."""
    c = anthropic.AsyncAnthropic(base_url=stack.base, api_key="k", max_retries=0)
    with pytest.raises(anthropic.NotFoundError) as e:
        await c.messages.create(model="gpt-4o-mini", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
                                extra_body={"thread": {"type": "continue", "previous_message_id": "msg_nope"}})
    assert e.value.body["error"]["details"]["error_code"] == "thread_not_found"
    assert "msg_nope" in str(e.value)
    for bad, field in (({"type": "resume"}, "thread"), ({"type": "continue"}, "thread.previous_message_id")):
        with pytest.raises(anthropic.BadRequestError) as e:
            await c.messages.create(model="gpt-4o-mini", max_tokens=50, extra_body={"thread": bad},
                                    messages=[{"role": "user", "content": "hi"}])
        assert field in str(e.value)
    assert not any(r.model == "gpt-4o-mini" for r in stack.fake.requests)
    await c.close()
