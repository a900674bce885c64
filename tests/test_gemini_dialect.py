"""The Gemini-compatible endpoint (``/v1beta/models/{model}:generateContent`` and
``:streamGenerateContent``) with the real ``google-genai`` SDK, to every upstream wire: plain,
streamed, function calling, JSON schema output, auth, and bad bodies answered in Google's shape."""

from __future__ import annotations

import json

import aiohttp
import pydantic
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from conftest import WIRE_MODELS, start_stack, stop_stack
from switchman.testing.fake_upstream import FakeModel

WIRES = list(WIRE_MODELS)


@pytest.fixture
async def stack():
    s = await start_stack({m: FakeModel(chunks=5, behave=True) for m in WIRE_MODELS.values()},
                          auth='auth: {admin_key: "gk"}')
    s.client = genai.Client(api_key="gk", http_options={"base_url": s.base})
    try:
        yield s
    finally:
        await stop_stack(s)


@pytest.mark.parametrize("wire", WIRES)
async def test_generate_content_from_every_upstream_wire(stack, wire):
    model = WIRE_MODELS[wire]
    r = await stack.client.aio.models.generate_content(
        model=model, contents="what is the capital of France?",
        config=types.GenerateContentConfig(system_instruction="Be brief.", max_output_tokens=50, temperature=0.2))
    assert r.text == "echo: what is the capital of France?"
    assert r.candidates[0].finish_reason == types.FinishReason.STOP
    st = stack.fake.stats[model]
    assert r.usage_metadata.prompt_token_count == st.input_tokens
    assert r.usage_metadata.candidates_token_count == st.output_tokens
    sent = json.dumps(json.loads(stack.fake.requests[-1].body))
    assert "Be brief." in sent and "capital of France" in sent


@pytest.mark.parametrize("wire", WIRES)
async def test_top_p_reaches_every_upstream(stack, wire):  # it was a 500: passed under Gemini's own name
    r = await stack.client.aio.models.generate_content(
        model=WIRE_MODELS[wire], contents="hi", config=types.GenerateContentConfig(top_p=0.3, temperature=0.5))
    assert r.text == "echo: hi"
    sent = json.loads(stack.fake.requests[-1].body)
    top_p = sent.get("top_p", sent.get("generationConfig", {}).get("topP"))
    # Anthropic's current API version takes no sampling parameters (adapters/anthropic.py API_VERSION)
    assert top_p is None if wire == "anthropic" else top_p == pytest.approx(0.3)


@pytest.mark.parametrize("wire", WIRES)
async def test_a_stream_comes_in_pieces_with_usage_last(stack, wire):
    chunks = [c async for c in await stack.client.aio.models.generate_content_stream(
        model=WIRE_MODELS[wire], contents="stream this answer")]
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 1 and "".join(texts) == "echo: stream this answer"
    assert chunks[-1].usage_metadata.candidates_token_count > 0
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.mark.parametrize("wire", WIRES)
async def test_function_calling_round_trip(stack, wire):
    chat = stack.client.aio.chats.create(model=WIRE_MODELS[wire],
                                         config=types.GenerateContentConfig(tools=[get_weather]))
    r = await chat.send_message("What is the weather in Paris?")
    assert r.text and not r.function_calls, "a final answer after the function's result"
    history = chat.get_history()
    assert [c.role for c in history] == ["user", "model", "user", "model"]
    call = history[1].parts[0].function_call
    assert call.name == "get_weather" and isinstance(call.args["city"], str)
    sent = json.dumps(json.loads(stack.fake.requests[-1].body))
    assert "sunny in" in sent, "the upstream was given the function's result"


class City(pydantic.BaseModel):
    name: str
    population: int


@pytest.mark.parametrize("wire", WIRES)
async def test_json_schema_output(stack, wire):
    r = await stack.client.aio.models.generate_content(
        model=WIRE_MODELS[wire], contents="Paris",
        config=types.GenerateContentConfig(response_mime_type="application/json", response_schema=City))
    assert isinstance(r.parsed, City)


async def _post(stack, path: str, body, headers=None):
    async with aiohttp.ClientSession() as s:
        async with s.post(stack.base + path, json=body, headers=headers or {}) as r:
            return r.status, await r.json(content_type=None)


async def test_keys_in_the_header_or_the_url_and_errors_in_googles_shape(stack):
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    path = "/v1beta/models/gpt-4o-mini:generateContent"
    assert (await _post(stack, path, body, {"x-goog-api-key": "gk"}))[0] == 200
    assert (await _post(stack, path + "?key=gk", body))[0] == 200
    status, err = await _post(stack, path, body, {"x-goog-api-key": "wrong"})
    assert status == 401 and err["error"]["status"] == "UNAUTHENTICATED" and err["error"]["code"] == 401
    status, err = await _post(stack, "/v1beta/models/no-such-model:generateContent", body, {"x-goog-api-key": "gk"})
    assert status == 404 and err["error"]["status"] == "NOT_FOUND"
    with pytest.raises(genai_errors.ClientError) as e:
        await stack.client.aio.models.generate_content(model="no-such-model", contents="hi")
    assert e.value.code == 404


@pytest.mark.parametrize("body,field", [
    ({}, "contents"),
    ({"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}, "contents[0].role"),
    ({"contents": [{"role": "user", "parts": [{"text": 3}]}]}, "contents[0].parts[0].text"),
    ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"topP": "high"}}, "generationConfig.topP"),
    ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 2}},
     "generationConfig.candidateCount"),
    ({"contents": [{"parts": [{"functionResponse": {"name": "f", "response": {}}}]}]},
     "contents[0].parts[0].functionResponse"),
])
async def test_bad_bodies_are_400s_naming_the_field(stack, body, field):
    status, err = await _post(stack, "/v1beta/models/gpt-4o-mini:generateContent", body, {"x-goog-api-key": "gk"})
    assert status == 400 and err["error"]["status"] == "INVALID_ARGUMENT", err
    assert field in err["error"]["message"]


async def test_a_gemini_only_tool_toward_another_vendor_is_a_400_naming_it(stack):
    body = {"contents": [{"parts": [{"text": "news?"}]}], "tools": [{"googleSearch": {}}]}
    status, err = await _post(stack, "/v1beta/models/claude-haiku-4-5:generateContent", body, {"x-goog-api-key": "gk"})
    assert status == 400 and "googleSearch" in err["error"]["message"]
    status, _ = await _post(stack, "/v1beta/models/gemini-2.5-flash:generateContent", body, {"x-goog-api-key": "gk"})
    assert status == 200
    assert json.loads(stack.fake.requests[-1].body)["tools"] == [{"googleSearch": {}}], "passed through to Gemini"
