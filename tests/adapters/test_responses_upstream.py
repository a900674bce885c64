"""Models reached through OpenAI's Responses API (``api: responses``; the catalog's Responses-only
models by default), end to end: the real ``openai`` and ``anthropic`` SDKs against the gateway, the
fake upstream speaking the Responses wire on loopback.

What a user notices: any client reaches such a model, plain, streamed, with tools and structured
output; a Responses client's built-in tools (web search) reach OpenAI and their items come back;
usage is accounted; the conversation stays the gateway's (the upstream is sent ``store: false``
and no id it could not resolve); failures are OpenAI's, classified, and fall back."""

from __future__ import annotations

import json

import anthropic
import openai
import pydantic
import pytest

from conftest import start_stack, stop_stack
from switchman import configfile
from switchman.errors import ConfigError
from switchman.testing.fake_upstream import FakeModel

EXTRA = """\
  - {name: resp, provider: oa, model: gpt-5.5, api: responses}
  - {name: gpt-5.5-pro, provider: oa}
  - {name: resp-broken, provider: oa, model: resp-broken-model, api: responses, price: {input: 1, output: 2}}
"""
ROUTES = """\
  - name: resp-first
    policy: {kind: first, models: [resp-broken, resp]}
    stream: {on_cut: resume}
  - name: stop-falls-back
    policy: {kind: first, models: [resp, gpt-4o-mini]}
"""
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                          "required": ["city"]}}}]


@pytest.fixture
async def stack():
    s = await start_stack({"gpt-5.5": FakeModel(chunks=4, behave=True), "gpt-5.5-pro": FakeModel(chunks=3),
                           "resp-broken-model": FakeModel(error_status=503)}, extra_models=EXTRA, routes=ROUTES)
    s.client = openai.AsyncOpenAI(base_url=s.openai_url, api_key="k", max_retries=0)
    try:
        yield s
    finally:
        await s.client.close()
        await stop_stack(s)


def _last(stack):
    rec = stack.fake.requests[-1]
    return rec.path, json.loads(rec.body)


def test_the_catalog_sends_responses_only_models_to_the_responses_api_and_config_checks_api():
    base = """
providers:
  oa: {kind: openai, api_key: k}
  local: {kind: openai, base_url: "http://127.0.0.1:9/v1"}
  an: {kind: anthropic, api_key: k}
models:
"""
    cfg = configfile.loads(base + """\
  - {name: pro, provider: oa, model: gpt-5.5-pro}
  - {name: plain, provider: oa, model: gpt-5.5}
  - {name: chosen, provider: oa, model: gpt-5.5, api: responses}
  - {name: forced-chat, provider: oa, model: gpt-5.5-pro, api: chat}
""", file="c.yaml", env={})
    assert {n: m.api for n, m in cfg.models.items()} == {"pro": "responses", "plain": "chat", "chosen": "responses",
                                                          "forced-chat": "chat"}
    with pytest.raises(ConfigError) as e:
        configfile.loads(base + "  - {name: x, provider: an, model: claude-haiku-4-5, api: responses}\n",
                         file="c.yaml", env={})
    assert "models[0].api" in str(e.value) and "anthropic" in str(e.value)
    with pytest.raises(ConfigError) as e:
        configfile.loads(base + "  - {name: x, provider: oa, model: gpt-5.5, api: completions}\n", file="c.yaml", env={})
    assert "must be chat or responses" in str(e.value)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_chat_completions_client_reaches_a_responses_model(stack, stream):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "what is the capital of France?"}]
    if stream:
        chunks = [c async for c in await stack.client.chat.completions.create(
            model="resp", messages=msgs, stream=True, stream_options={"include_usage": True})]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = chunks[-1].usage
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    else:
        r = await stack.client.chat.completions.create(model="resp", messages=msgs)
        text, usage = r.choices[0].message.content, r.usage
        assert r.choices[0].finish_reason == "stop"
    assert text == "echo: what is the capital of France?"
    path, sent = _last(stack)
    assert path == "/v1/responses" and sent["model"] == "gpt-5.5"
    assert sent["instructions"] == "Be brief." and sent["input"] == [{"role": "user", "content": msgs[1]["content"]}]
    assert sent["store"] is False and sent["max_output_tokens"] > 0
    st = stack.fake.stats["gpt-5.5"]
    assert (usage.prompt_tokens, usage.completion_tokens) == (st.input_tokens, st.output_tokens)


async def test_the_catalogs_responses_only_model_is_reached_without_any_setting(stack):
    r = await stack.client.chat.completions.with_raw_response.create(
        model="gpt-5.5-pro", messages=[{"role": "user", "content": "hello"}])
    assert r.parse().choices[0].message.content == "echo: hello"
    assert r.headers["x-switchman-model"] == "gpt-5.5-pro"
    assert _last(stack)[0] == "/v1/responses"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_round_trip_from_a_chat_client(stack, stream):
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await stack.client.chat.completions.create(model="resp", messages=msgs, tools=TOOLS)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    _, sent = _last(stack)
    assert sent["tools"] == [{"type": "function", "name": "get_weather", "description": "The weather in a city",
                              "parameters": TOOLS[0]["function"]["parameters"], "strict": False}]
    msgs += [first.choices[0].message.model_dump(exclude_none=True),
             {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"}]
    if stream:
        chunks = [c async for c in await stack.client.chat.completions.create(
            model="resp", messages=msgs, tools=TOOLS, stream=True)]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        text = (await stack.client.chat.completions.create(model="resp", messages=msgs, tools=TOOLS)
                ).choices[0].message.content
    assert text, "a final answer after the tool's result"
    _, sent = _last(stack)
    assert sent["input"][1:] == [
        {"type": "function_call", "call_id": call.id, "name": "get_weather", "arguments": call.function.arguments},
        {"type": "function_call_output", "call_id": call.id, "output": "sunny, 21C"}]


async def test_a_tool_call_streams_to_an_anthropic_client(stack):
    a = anthropic.AsyncAnthropic(base_url=stack.base, api_key="k", max_retries=0)
    tools = [{"name": "get_weather", "input_schema": TOOLS[0]["function"]["parameters"]}]
    async with a.messages.stream(model="resp", max_tokens=200, tools=tools,
                                 messages=[{"role": "user", "content": "weather in Oslo?"}]) as s:
        m = await s.get_final_message()
    assert m.stop_reason == "tool_use" and m.content[-1].name == "get_weather"
    assert isinstance(m.content[-1].input["city"], str)
    assert m.usage.output_tokens == stack.fake.stats["gpt-5.5"].output_tokens
    assert _last(stack)[1]["max_output_tokens"] == 200  # the cap budgets reserved for


async def test_structured_output_parses(stack):
    class City(pydantic.BaseModel):
        name: str
        population: int

    r = await stack.client.chat.completions.parse(model="resp", messages=[{"role": "user", "content": "a city"}],
                                                  response_format=City)
    assert isinstance(r.choices[0].message.parsed, City)
    fmt = _last(stack)[1]["text"]["format"]
    assert fmt["type"] == "json_schema" and fmt["name"] == "City" and fmt["strict"] is True
    assert fmt["schema"]["properties"].keys() == {"name", "population"}


async def test_a_responses_clients_built_in_tool_reaches_openai_and_its_items_come_back(stack):
    c = stack.client
    r = await c.responses.create(model="resp", input="news about Paris", tools=[{"type": "web_search"}],
                                 include=["web_search_call.action.sources"])
    assert [o.type for o in r.output] == ["web_search_call", "message"]
    assert r.output_text == "echo: news about Paris"
    _, sent = _last(stack)
    assert sent["tools"] == [{"type": "web_search"}] and sent["include"] == ["web_search_call.action.sources"]
    assert sent["store"] is False
    # chained by the gateway: the upstream gets the whole conversation, never an id it does not hold
    events = [e async for e in await c.responses.create(model="resp", previous_response_id=r.id, stream=True,
                                                         input="and in Rome?", tools=[{"type": "web_search"}])]
    kinds = [e.type for e in events]
    assert "response.web_search_call.searching" in kinds and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    final = events[-1].response
    assert final.id.startswith("resp_") and final.id != r.id and final.previous_response_id == r.id
    _, sent = _last(stack)
    assert "previous_response_id" not in sent and sent["store"] is False
    assert [i.get("type", "message") for i in sent["input"]] == ["message", "web_search_call", "message", "message"]
    assert (await c.responses.retrieve(final.id)).output_text == final.output_text  # kept by the gateway


async def test_a_built_in_tool_toward_another_api_is_a_400_naming_it(stack):
    with pytest.raises(openai.BadRequestError) as e:
        await stack.client.responses.create(model="claude-haiku-4-5", input="hi", tools=[{"type": "web_search"}])
    assert "web_search" in e.value.message and "responses API" in e.value.message


async def test_reasoning_items_without_their_content_stay_behind_and_encrypted_ones_are_asked_for(stack):
    r = await stack.client.responses.create(
        model="resp", reasoning={"effort": "low"},
        input=[{"role": "user", "content": "hi"},
               {"type": "reasoning", "id": "rs_1", "summary": []},
               {"type": "reasoning", "id": "rs_2", "summary": [], "encrypted_content": "gAAA"},
               {"role": "assistant", "content": "hello"}, {"role": "user", "content": "again"}])
    assert r.status == "completed"
    _, sent = _last(stack)
    assert [i.get("id") for i in sent["input"] if i.get("type") == "reasoning"] == ["rs_2"]
    assert sent["include"] == ["reasoning.encrypted_content"] and sent["reasoning"] == {"effort": "low"}


async def test_an_upstream_failure_falls_back_and_is_reported_in_openais_shape(stack):
    r = await stack.client.chat.completions.with_raw_response.create(
        model="resp-first", messages=[{"role": "user", "content": "hello"}])
    assert r.parse().choices[0].message.content == "echo: hello"
    assert r.headers["x-switchman-model"] == "resp"
    with pytest.raises(openai.InternalServerError) as e:
        await stack.client.chat.completions.create(model="resp-broken", messages=[{"role": "user", "content": "x"}])
    assert "resp-broken" in e.value.message


async def test_a_failure_mid_stream_is_resumed_by_the_next_model(stack):
    stack.fake.models["resp-broken-model"] = FakeModel(chunks=4, error_status=500, error_after=2)
    chunks = [c async for c in await stack.client.chat.completions.create(
        model="resp-first", messages=[{"role": "user", "content": "count to three"}], stream=True)]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("echo: coun") and "previous answer was cut off" in text  # the cut answer, then the rest
    assert stack.fake.stats["resp-broken-model"].errors == 1 and stack.fake.stats["gpt-5.5"].requests == 1
    assert "cut off" in _last(stack)[1]["input"][-1]["content"]  # the second model was asked to continue


async def test_stop_sequences_which_the_api_lacks_go_to_a_model_that_takes_them(stack):
    r = await stack.client.chat.completions.with_raw_response.create(
        model="stop-falls-back", messages=[{"role": "user", "content": "hello"}], stop=["\n"])
    assert r.headers["x-switchman-model"] == "gpt-4o-mini"
    assert "skipped resp:invalid_request" in r.headers["x-switchman-reason"]  # passed over, and said so
    with pytest.raises(openai.BadRequestError) as e:
        await stack.client.chat.completions.create(model="resp", messages=[{"role": "user", "content": "x"}], stop=["."])
    assert e.value.body["param"] == "stop"


async def test_a_cap_below_the_apis_least_is_sent_as_16(stack):
    r = await stack.client.chat.completions.create(model="resp", messages=[{"role": "user", "content": "hi"}],
                                                   max_completion_tokens=5)
    assert r.choices[0].message.content
    assert _last(stack)[1]["max_output_tokens"] == 16


async def test_count_tokens_asks_openais_own_count(stack):
    a = anthropic.AsyncAnthropic(base_url=stack.base, api_key="k", max_retries=0)
    raw = await a.messages.with_raw_response.count_tokens(
        model="resp", messages=[{"role": "user", "content": "how many tokens is this sentence exactly?"}])
    path, sent = _last(stack)
    assert path == "/v1/responses/input_tokens" and "max_output_tokens" not in sent and "stream" not in sent
    assert (await raw.parse()).input_tokens == (len("how many tokens is this sentence exactly?") + 3) // 4
    assert raw.headers["x-switchman-token-count"] == "exact"
