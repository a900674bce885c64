"""The Responses API adapter on bytes: the calls it builds (checked against the installed ``openai``
SDK's request types), the answers and event streams it reads, including what a server may do
differently (text or arguments only on the finished item), and the failures it classifies."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming
from pydantic import TypeAdapter

from switchman.adapters.responses import ResponsesAdapter
from switchman.config import ModelSpec, Price, ProviderSpec
from switchman.errors import Unsupported, UpstreamError, UpstreamKind
from switchman.types import (ChatRequest, Finish, FinishReason, ImagePart, Message, Role, Start, TextDelta, TextPart,
                             Tool, ToolCallDelta, ToolCallPart, ToolCallStart, ToolChoice, ToolResultPart, UsageEvent)

A = ResponsesAdapter()
PROVIDER = ProviderSpec("oa", "openai", "openai", "https://api.openai.com/v1", api_key="sk-test")
MODEL = ModelSpec("m", PROVIDER, "gpt-5.5", Price(Decimal(1), Decimal(2)), max_output=1000, api="responses")
AZURE = ModelSpec("az", ProviderSpec("az", "azure", "openai", "https://x.openai.azure.com", api_key="k",
                                     auth="api-key", api_version="2025-04-01-preview"),
                  "my-deployment", Price(Decimal(1), Decimal(2)), api="responses")


def _body(req: ChatRequest, model: ModelSpec = MODEL) -> dict:
    return orjson.loads(A.build(req, model).body)


def test_a_canonical_conversation_is_sent_as_input_items_the_sdk_accepts():
    req = ChatRequest(
        model="m", system=[TextPart("Be brief.")],
        messages=[Message(Role.USER, [TextPart("look"), ImagePart(data="AAAA", media_type="image/jpeg")]),
                  Message(Role.ASSISTANT, [TextPart("calling"), ToolCallPart("c1", "f", '{"a":1}')]),
                  Message(Role.USER, [ToolResultPart("c1", [TextPart("42")]), TextPart("and?")])],
        tools=[Tool("f", "a function", {"type": "object", "properties": {"a": {"type": "integer"}}})],
        tool_choice=ToolChoice("tool", "f", parallel=False), temperature=0.2, user="u1", reasoning_effort="max",
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"},
                                                                "strict": True}})
    b = _body(req)
    TypeAdapter(ResponseCreateParamsNonStreaming).validate_python(b)  # the SDK's own request type
    assert b["instructions"] == "Be brief." and b["store"] is False and b["max_output_tokens"] == 1000
    assert b["input"] == [
        {"role": "user", "content": [{"type": "input_text", "text": "look"},
                                     {"type": "input_image", "image_url": "data:image/jpeg;base64,AAAA",
                                      "detail": "auto"}]},
        {"role": "assistant", "content": "calling"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
        {"type": "function_call_output", "call_id": "c1", "output": "42"},
        {"role": "user", "content": "and?"}]
    assert b["tools"][0]["strict"] is False  # the API's default is strict; chat's, which the tool came from, is not
    assert b["tool_choice"] == {"type": "function", "name": "f"} and b["parallel_tool_calls"] is False
    assert b["text"] == {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}, "strict": True}}
    assert b["reasoning"] == {"effort": "xhigh"} and b["include"] == ["reasoning.encrypted_content"]
    assert b["safety_identifier"] == "u1" and "stream" not in b


def test_azure_takes_the_deployment_in_the_body_and_the_version_in_the_query():
    call = A.build(ChatRequest(model="az", messages=[Message(Role.USER, [TextPart("hi")])]), AZURE)
    assert call.url == "https://x.openai.azure.com/openai/responses?api-version=2025-04-01-preview"
    assert call.headers["api-key"] == "k" and orjson.loads(call.body)["model"] == "my-deployment"


def test_what_the_api_cannot_take_is_refused_not_dropped():
    with pytest.raises(Unsupported) as e:
        A.build(ChatRequest(model="m", messages=[Message(Role.USER, [TextPart("hi")])], stop=["\n"]), MODEL)
    assert e.value.param == "stop"
    text_only = ModelSpec("t", PROVIDER, "gpt-5.5", MODEL.price, vision=False, api="responses")
    with pytest.raises(Unsupported):
        A.build(ChatRequest(model="t", messages=[Message(Role.USER, [ImagePart(url="https://x/y.png")])]), text_only)


def _resp(output: list, status: str = "completed", **extra) -> bytes:
    return orjson.dumps({"id": "resp_1", "object": "response", "created_at": 1700000000, "status": status,
                         "model": "gpt-5.5", "output": output,
                         "usage": {"input_tokens": 100, "input_tokens_details": {"cached_tokens": 40},
                                   "output_tokens": 30, "output_tokens_details": {"reasoning_tokens": 20},
                                   "total_tokens": 130}, **extra})


def test_an_answer_gives_text_calls_usage_and_the_finish_reason():
    r = A.parse(_resp([{"type": "reasoning", "id": "rs_1", "summary": []},
                       {"type": "message", "id": "m1", "role": "assistant", "status": "completed",
                        "content": [{"type": "output_text", "text": "Hi", "annotations": [],
                                     "logprobs": [{"token": "Hi", "logprob": -0.5, "bytes": [], "top_logprobs": []}]}]},
                       {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f",
                        "arguments": "{}", "status": "completed"}]), MODEL)
    assert r.text() == "Hi" and r.parts[1] == ToolCallPart("call_1", "f", "{}")
    assert r.finish_reason is FinishReason.TOOL_CALLS and r.logprob == -0.5 and r.dialect == "responses"
    u = r.usage
    assert (u.input_tokens, u.cache_read_tokens, u.output_tokens, u.reasoning_tokens) == (100, 40, 30, 20)
    cut = A.parse(_resp([{"type": "message", "content": [{"type": "refusal", "refusal": "No."}]}], "incomplete",
                        incomplete_details={"reason": "max_output_tokens"}), MODEL)
    assert cut.finish_reason is FinishReason.LENGTH and cut.text() == "No."


def test_a_failed_response_and_a_bad_body_are_upstream_errors():
    with pytest.raises(UpstreamError) as e:
        A.parse(_resp([], "failed", error={"code": "rate_limit_exceeded", "message": "slow down"}), MODEL)
    assert e.value.upstream_kind is UpstreamKind.RATE_LIMITED
    with pytest.raises(UpstreamError) as e:
        A.parse(b'{"object": "response", "status": "in_progress", "output": []}', MODEL)
    assert e.value.upstream_kind is UpstreamKind.SERVER_ERROR and "in_progress" in str(e.value)
    err = A.error(429, {"retry-after": "3"}, b'{"error": {"message": "x", "type": "requests", "code": null}}', MODEL)
    assert err.upstream_kind is UpstreamKind.RATE_LIMITED and err.retry_after == 3


def _feed(events: list[dict], keep_raw: bool = False):
    d = A.stream_decoder(MODEL, keep_raw)
    out = []
    for e in events:
        out += d.feed(e["type"], orjson.dumps(e))
    return d, out


def test_a_stream_of_text_and_a_call_whose_arguments_come_only_with_the_finished_item():
    events = [{"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5.5", "created_at": 5}},
              {"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": "m1"}},
              {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0, "delta": "He"},
              {"type": "response.output_text.delta", "item_id": "m1", "output_index": 0, "delta": "llo"},
              {"type": "response.output_item.done", "output_index": 0,
               "item": {"type": "message", "id": "m1", "content": [{"type": "output_text", "text": "Hello"}]}},
              {"type": "response.output_item.added", "output_index": 1,
               "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": ""}},
              {"type": "response.output_item.done", "output_index": 1,
               "item": {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{}"}},
              {"type": "response.completed", "response": {"status": "completed", "usage": {
                  "input_tokens": 3, "output_tokens": 4, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens_details": {"reasoning_tokens": 0}}}}]
    d, out = _feed(events)
    assert d.done
    assert out[0] == Start("resp_1", "gpt-5.5", 5)
    assert [e.text for e in out if type(e) is TextDelta] == ["He", "llo"]  # not again from the finished item
    assert [e for e in out if type(e) in (ToolCallStart, ToolCallDelta)] == [ToolCallStart(0, "call_1", "f"),
                                                                             ToolCallDelta(0, "{}")]
    assert [e.reason for e in out if type(e) is Finish] == [FinishReason.TOOL_CALLS]
    assert [(e.usage.input_tokens, e.usage.output_tokens) for e in out if type(e) is UsageEvent] == [(3, 4)]


def test_with_raw_every_event_reaches_a_responses_client_and_failures_raise():
    events = [{"type": "response.created", "response": {"id": "r"}},
              {"type": "response.web_search_call.searching", "item_id": "ws_1", "output_index": 0}]
    d, out = _feed(events, keep_raw=True)
    assert [e.raw["type"] for e in out] == ["response.created", "response.web_search_call.searching"]
    assert not d.done  # no response.completed: a cut stream
    with pytest.raises(UpstreamError) as e:
        _feed([{"type": "error", "code": "server_error", "message": "boom"}])
    assert e.value.upstream_kind is UpstreamKind.SERVER_ERROR and "boom" in str(e.value)
    with pytest.raises(UpstreamError) as e:
        _feed([{"type": "response.failed", "response": {"error": {"code": "rate_limit_exceeded", "message": "x"}}}])
    assert e.value.upstream_kind is UpstreamKind.RATE_LIMITED
    with pytest.raises(UpstreamError):
        A.stream_decoder(MODEL).feed(None, b"{not json")
