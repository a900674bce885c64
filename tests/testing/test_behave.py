"""A fake model that behaves like one (the demo fleet's): the openai SDK's ``parse()`` gets a valid
instance of its pydantic model, and an agent loop over the SDKs ends with a text answer after the
tool's result, with arguments built from the tool's schema; through ``switchman serve``."""

from __future__ import annotations

import json

import anthropic
import openai
import pydantic

from switchman.testing.behave import instance
from switchman.testing.fake_upstream import FakeModel

from telemetry.serving import ADMIN, serve, stop


class Address(pydantic.BaseModel):
    street: str
    zip_code: int


class Person(pydantic.BaseModel):
    name: str
    age: int
    emails: list[str]
    home: Address
    nickname: str | None = None


def test_instances_satisfy_their_schemas():
    p = Person.model_validate(instance(Person.model_json_schema()))
    assert p.home.zip_code >= 1 and p.emails
    assert instance({"type": "integer", "minimum": 18}) == 18
    assert instance({"enum": ["red", "green"]}) == "red"
    assert instance({"type": "OBJECT", "properties": {"ok": {"type": "BOOLEAN"}}}) == {"ok": True}  # Gemini's spelling


async def test_parse_and_an_agent_loop_end_to_end(tmp_path):
    s = await serve(tmp_path, models={"echo": FakeModel(behave=True), "claude": FakeModel(behave=True)})
    try:
        oa = openai.AsyncOpenAI(base_url=s.base + "/v1", api_key=ADMIN, max_retries=0)
        done = await oa.chat.completions.parse(model="echo", response_format=Person,
                                               messages=[{"role": "user", "content": "Who lives at 1 Main St?"}])
        assert isinstance(done.choices[0].message.parsed, Person)
        # an agent loop: the model calls the tool with schema-shaped arguments, then answers
        tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
            "required": ["city", "days"]}}}]
        msgs: list = [{"role": "user", "content": "Weather in Oslo for 3 days?"}]
        for turn in range(5):
            r = await oa.chat.completions.create(model="echo", messages=msgs, tools=tools)
            m = r.choices[0].message
            if not m.tool_calls:
                break
            args = json.loads(m.tool_calls[0].function.arguments)
            assert isinstance(args["city"], str) and args["days"] >= 1
            msgs += [m.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": m.tool_calls[0].id, "content": "sunny"}]
        assert turn == 1 and r.choices[0].finish_reason == "stop" and m.content
        # the same loop in Anthropic's dialect, to an Anthropic-wire model
        ac = anthropic.AsyncAnthropic(base_url=s.base, api_key=ADMIN, max_retries=0)
        atools = [{"name": "get_weather", "input_schema": tools[0]["function"]["parameters"]}]
        am: list = [{"role": "user", "content": "Weather in Oslo?"}]
        r1 = await ac.messages.create(model="claude", max_tokens=200, messages=am, tools=atools)
        use = next(b for b in r1.content if b.type == "tool_use")
        assert r1.stop_reason == "tool_use" and use.input["days"] >= 1
        am += [{"role": "assistant", "content": [b.model_dump() for b in r1.content]},
               {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]}]
        r2 = await ac.messages.create(model="claude", max_tokens=200, messages=am, tools=atools)
        assert r2.stop_reason == "end_turn" and r2.content[0].type == "text"
        await oa.close()
        await ac.close()
    finally:
        await stop(s)
