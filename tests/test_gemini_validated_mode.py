"""Found by the real-client conformance suite (compat/): pydantic-ai's ``GoogleModel`` sends every tool
request with ``functionCallingConfig.mode: VALIDATED`` ("function calls or natural language", constrained to
the declared schemas). Toward a non-Gemini upstream the gateway read it as ``ANY`` (a call required), so after
the tool result the model had to call again and the agent's loop never ended; it is ``AUTO`` now."""

from __future__ import annotations

import pytest
from google import genai
from google.genai import types

from conftest import WIRE_MODELS, start_stack, stop_stack
from switchman.testing.fake_upstream import FakeModel


@pytest.fixture
async def stack():
    s = await start_stack({m: FakeModel(chunks=5, behave=True) for m in WIRE_MODELS.values()})
    try:
        yield s
    finally:
        await stop_stack(s)


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
async def test_validated_mode_lets_the_model_answer_after_the_tool_result(stack, wire):
    client = genai.Client(api_key="k", http_options={"base_url": stack.base})
    call = types.Part(function_call=types.FunctionCall(id="call_1", name="get_weather", args={"city": "Paris"}))
    result = types.Part(function_response=types.FunctionResponse(id="call_1", name="get_weather",
                                                                 response={"return_value": "sunny in Paris"}))
    r = await client.aio.models.generate_content(
        model=WIRE_MODELS[wire],
        contents=[types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")]),
                  types.Content(role="model", parts=[call]), types.Content(role="user", parts=[result])],
        config=types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
                name="get_weather", description="The weather in a city.",
                parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}},
                                        "required": ["city"]})])],
            tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(mode="VALIDATED")),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True)))
    assert not r.function_calls, "VALIDATED does not force another call: the model may answer"
    assert r.text
