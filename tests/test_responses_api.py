"""The OpenAI Responses API (``POST /v1/responses``, ``GET``/``DELETE /v1/responses/{id}``) through
the gateway with the real ``openai`` SDK, to every upstream wire: plain, streamed, tools with
``previous_response_id``, structured output, ``store``, and bad bodies answered in OpenAI's shape."""

from __future__ import annotations

import json

import aiohttp
import openai
import pydantic
import pytest

from conftest import WIRE_MODELS, start_stack, stop_stack
from switchman.testing.fake_upstream import FakeModel

WIRES = list(WIRE_MODELS)
TOOLS = [{"type": "function", "name": "get_weather", "description": "The weather in a city",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture
async def stack():
    s = await start_stack({m: FakeModel(chunks=5, behave=True) for m in WIRE_MODELS.values()})
    s.client = openai.AsyncOpenAI(base_url=s.openai_url, api_key="k", max_retries=0)
    try:
        yield s
    finally:
        await s.client.close()
        await stop_stack(s)


def _sent(stack) -> dict:
    return json.loads(stack.fake.requests[-1].body)


@pytest.mark.parametrize("wire", WIRES)
async def test_a_response_from_every_upstream_wire(stack, wire):
    model = WIRE_MODELS[wire]
    raw = await stack.client.responses.with_raw_response.create(
        model=model, instructions="Be brief.", input="what is the capital of France?", max_output_tokens=64)
    r = raw.parse()
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.output_text == "echo: what is the capital of France?"
    assert r.output[0].type == "message" and r.output[0].role == "assistant"
    st = stack.fake.stats[model]
    assert (r.usage.input_tokens, r.usage.output_tokens) == (st.input_tokens, st.output_tokens)
    assert r.usage.total_tokens == st.input_tokens + st.output_tokens
    assert raw.headers["x-switchman-model"] == model and raw.headers["x-switchman-reason"]
    assert r.instructions == "Be brief." and r.max_output_tokens == 64  # the request's settings, echoed
    sent = json.dumps(_sent(stack))
    assert "Be brief." in sent and "capital of France" in sent  # instructions became the system prompt


@pytest.mark.parametrize("wire", WIRES)
async def test_a_stream_has_the_typed_events_in_order_and_ends_with_the_whole_response(stack, wire):
    events = [ev async for ev in await stack.client.responses.create(
        model=WIRE_MODELS[wire], input="stream this answer please", stream=True)]
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1, "streamed in pieces, not whole"
    done = events[-1].response
    assert "".join(deltas) == done.output_text == "echo: stream this answer please"
    assert done.usage.output_tokens > 0 and done.id == events[0].response.id
    got = await stack.client.responses.retrieve(done.id)  # kept before the last event was sent
    assert got.output_text == done.output_text


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_round_trip_chained_by_previous_response_id(stack, wire, stream):
    model = WIRE_MODELS[wire]
    first = await stack.client.responses.create(model=model, input="What is the weather in Paris?", tools=TOOLS)
    calls = [o for o in first.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert isinstance(json.loads(calls[0].arguments)["city"], str)  # built from the tool's schema
    follow = dict(model=model, previous_response_id=first.id, tools=TOOLS,
                  input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny, 21C"}])
    if stream:
        events = [e async for e in await stack.client.responses.create(**follow, stream=True)]
        final = events[-1].response
    else:
        final = await stack.client.responses.create(**follow)
    assert final.status == "completed" and final.output_text, "a final answer, not another call"
    assert not [o for o in final.output if o.type == "function_call"]
    assert final.previous_response_id == first.id
    sent = json.dumps(_sent(stack))
    # The upstream got the whole conversation: the question, the call, and its result.
    assert "weather in Paris" in sent and "sunny, 21C" in sent and "get_weather" in sent
    assert wire == "gemini" or calls[0].call_id in sent  # Gemini's wire has no call ids


class Capital(pydantic.BaseModel):
    country: str
    city: str
    population: int


@pytest.mark.parametrize("wire", WIRES)
async def test_structured_output_with_parse(stack, wire):
    r = await stack.client.responses.parse(model=WIRE_MODELS[wire], input="the capital of France", text_format=Capital)
    assert isinstance(r.output_parsed, Capital)


async def test_reasoning_effort_reaches_each_upstream_in_its_own_words(stack):
    await stack.client.responses.create(model=WIRE_MODELS["openai"], input="think", reasoning={"effort": "high"})
    assert _sent(stack)["reasoning_effort"] == "high"
    await stack.client.responses.create(model=WIRE_MODELS["anthropic"], input="think", reasoning={"effort": "low"})
    assert _sent(stack)["output_config"]["effort"] == "low"
    await stack.client.responses.create(model=WIRE_MODELS["gemini"], input="think", reasoning={"effort": "low"})
    assert _sent(stack)["generationConfig"]["thinkingConfig"] == {"thinkingBudget": 1024}


async def test_store_false_keeps_nothing_and_an_unknown_id_is_a_404(stack):
    r = await stack.client.responses.create(model="gpt-4o-mini", input="hi", store=False)
    assert r.store is False
    with pytest.raises(openai.NotFoundError) as e:
        await stack.client.responses.retrieve(r.id)
    assert r.id in e.value.body["message"]
    with pytest.raises(openai.NotFoundError) as e:
        await stack.client.responses.create(model="gpt-4o-mini", input="more", previous_response_id=r.id)
    assert e.value.body["param"] == "previous_response_id"


async def test_get_input_items_and_delete(stack):
    r = await stack.client.responses.create(model="gpt-4o-mini", input=[
        {"role": "user", "content": [{"type": "input_text", "text": "first"}]}])
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{stack.openai_url}/responses/{r.id}/input_items") as resp:
            items = await resp.json()
    assert resp.status == 200 and items["data"][0]["content"][0]["text"] == "first"
    await stack.client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        await stack.client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        await stack.client.responses.delete(r.id)


async def test_a_built_in_tool_toward_another_vendor_is_a_400_naming_it(stack):
    with pytest.raises(openai.BadRequestError) as e:
        await stack.client.responses.create(model="claude-haiku-4-5", input="news today?",
                                            tools=[{"type": "web_search"}])
    assert "web_search" in e.value.body["message"] and "web_search" in e.value.body["param"]
    assert not stack.fake.requests, "nothing was sent upstream"


@pytest.mark.parametrize("body,param", [
    ({"model": "gpt-4o-mini"}, "input"),
    ({"model": "gpt-4o-mini", "input": 3}, "input"),
    ({"model": "gpt-4o-mini", "input": [{"type": "telepathy"}]}, "input[0].type"),
    ({"model": "gpt-4o-mini", "input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ({"model": "gpt-4o-mini", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ({"model": "gpt-4o-mini", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
     "input[0].content[0].image_url"),
    ({"model": "gpt-4o-mini", "input": "x", "background": True}, "background"),
    ({"model": "gpt-4o-mini", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"model": "gpt-4o-mini", "input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
    ({"model": "gpt-4o-mini", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ({"model": "gpt-4o-mini", "input": "x", "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name"),
    ({"model": "gpt-4o-mini", "input": "x", "previous_response_id": 7}, "previous_response_id"),
])
async def test_bad_bodies_are_400s_naming_the_field(stack, body, param):
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{stack.openai_url}/responses", json=body) as r:
            got = await r.json()
    assert r.status == 400, got
    assert got["error"]["param"] == param and got["error"]["type"] == "invalid_request_error"
    async with aiohttp.ClientSession() as s:  # and the server goes on serving
        async with s.post(f"{stack.openai_url}/responses", json={"model": "gpt-4o-mini", "input": "ok"}) as r:
            assert r.status == 200


async def test_a_stored_response_belongs_to_the_key_that_made_it(tmp_path):
    from switchman import configfile
    from switchman.app import App
    from switchman.gateway import Gateway
    from switchman.http.server import HttpServer
    from switchman.metering import Metering
    from switchman.testing.fake_upstream import FakeUpstream

    fake = FakeUpstream({"gpt-4o-mini": FakeModel()})
    await fake.start()
    cfg = configfile.loads(f"""
providers: {{oa: {{kind: openai, base_url: "{fake.url('openai')}", api_key: "k"}}}}
models: [{{name: gpt-4o-mini, provider: oa}}]
auth: {{admin_key: admin-secret, keys_required: true}}
ledger: {{url: "sqlite:///{tmp_path}/ledger.db", flush_interval: 0.01}}
""", env={})
    gw = Gateway(cfg)
    meter = Metering.from_config(gw)
    await meter.start()
    server = HttpServer(App(gw, meter))
    base = f"http://127.0.0.1:{await server.start('127.0.0.1', 0)}"
    try:
        keys = []
        async with aiohttp.ClientSession(headers={"authorization": "Bearer admin-secret"}) as s:
            for name in ("a", "b"):
                async with s.post(base + "/admin/keys", json={"name": name}) as r:
                    keys.append((await r.json())["key"])
        a, b = (openai.AsyncOpenAI(base_url=base + "/v1", api_key=k, max_retries=0) for k in keys)
        r = await a.responses.create(model="gpt-4o-mini", input="mine")
        assert (await a.responses.retrieve(r.id)).output_text == r.output_text
        with pytest.raises(openai.NotFoundError):
            await b.responses.retrieve(r.id)
        with pytest.raises(openai.NotFoundError):
            await b.responses.create(model="gpt-4o-mini", input="yours?", previous_response_id=r.id)
        with pytest.raises(openai.NotFoundError):
            await b.responses.delete(r.id)
        assert (await a.responses.create(model="gpt-4o-mini", input="go on", previous_response_id=r.id)).output_text
        await a.close()
        await b.close()
    finally:
        await server.stop(grace=0.5)
        await meter.close()
        await gw.close()
        await fake.stop()
