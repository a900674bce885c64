"""The Anthropic dialect as Anthropic's own SDK sees it: requests it sends decode, and what we
send back parses with the SDK's types and client."""

from __future__ import annotations

import anthropic
import httpx2
import orjson
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.shared.error_response import ErrorResponse
from pydantic import TypeAdapter

from switchman.dialects.anthropic import AnthropicDialect
from switchman.errors import InvalidRequest, UnknownModel, UpstreamKind, UpstreamStatus
from switchman.sse import SSEDecoder
from switchman.types import (
    ChatResponse,
    Finish,
    FinishReason,
    ImagePart,
    Role,
    Start,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
    UsageEvent,
    events_of,
)

D = AnthropicDialect()
STREAM_EVENT = TypeAdapter(RawMessageStreamEvent)


def body(**kw) -> dict:
    b = {"model": "claude-x", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    b.update(kw)
    return b


def sse_events(data: bytes) -> list[tuple[str | None, dict]]:
    return [(ev, orjson.loads(d)) for ev, d in SSEDecoder().feed(data)]


def sdk_client(status: int, content: bytes, content_type: str = "application/json") -> anthropic.Anthropic:
    """The real SDK, answered by ``content`` over a mock transport."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"content-type": content_type}, content=content)

    return anthropic.Anthropic(
        api_key="k", base_url="http://gateway", max_retries=0, http_client=httpx2.Client(transport=httpx2.MockTransport(handler))
    )


# ---- decode ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, param",
    [
        ({"model": 5}, "model"),
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": "100"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"max_tokens": -1}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": ["user"], "content": "x"}]}, "messages.0.role"),
        ({"tool_choice": {"type": {"any": 1}}}, "tool_choice.type"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text"}]}]}, "messages.0.content.1.text"),
        ({"messages": [{"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png"}}]}]}, "messages.0.content.0.source.data"),
        ({"messages": [{"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": [1]}]}]}, "messages.0.content.0.input"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]}, "messages.0.content.0.tool_use_id"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "is_error": "yes"}]}]}, "messages.0.content.0.is_error"),
        ({"messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages.0.content.0.type"),
        ({"system": [{"type": "image"}]}, "system.0"),
        ({"system": 5}, "system"),
        ({"tools": [{"name": "f"}]}, "tools.0.input_schema"),
        ({"tools": [{"input_schema": {"type": "object"}}]}, "tools.0.name"),
        ({"tool_choice": {"type": "required"}}, "tool_choice.type"),
        ({"tool_choice": {"type": "tool"}}, "tool_choice.name"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": "0.5"}, "top_p"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"stream": "yes"}, "stream"),
        ({"metadata": {"user_id": 5}}, "metadata.user_id"),
        ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format"),
    ],
)
def test_decode_rejects_invalid_requests_naming_the_field(bad, param):
    with pytest.raises(InvalidRequest) as ei:
        D.decode(body(**bad))
    assert ei.value.param == param
    assert ei.value.status == 400
    assert param in ei.value.message


def test_decode_requires_an_object_and_max_tokens():
    with pytest.raises(InvalidRequest):
        D.decode([1, 2])
    b = body()
    del b["max_tokens"]
    with pytest.raises(InvalidRequest) as ei:
        D.decode(b)
    assert ei.value.param == "max_tokens"


def test_decode_full_request():
    cc = {"type": "ephemeral"}
    b = {
        "model": "claude-x",
        "max_tokens": 512,
        "system": [{"type": "text", "text": "Be brief.", "cache_control": cc}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:", "cache_control": cc},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0"}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
                    {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris", "days": 2}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "is_error": True,
                        "content": [
                            {"type": "text", "text": "timeout"},
                            {"type": "image", "source": {"type": "base64", "media_type": "image/gif", "data": "R0lG"}},
                        ],
                    },
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "22C"},
                ],
            },
        ],
        "tools": [
            {"name": "weather", "description": "Weather by city", "input_schema": {"type": "object"}, "strict": True},
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 2},
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "temperature": 0.3,
        "top_p": 0.9,
        "top_k": 5,
        "stream": True,
        "metadata": {"user_id": "u-42"},
        "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}, "effort": "low"},
    }
    req = D.decode(b)
    assert req.dialect == "anthropic" and req.raw is b
    assert req.model == "claude-x" and req.max_tokens == 512 and req.stream
    assert req.system == [TextPart("Be brief.", cc)]
    user, asst, results = req.messages
    assert user.role is Role.USER
    # The document has no canonical form: it reaches Anthropic upstreams through ``raw`` only.
    assert user.parts == [
        TextPart("Look:", cc),
        ImagePart(data="iVBORw0", media_type="image/png"),
        ImagePart(url="https://example.com/a.jpg"),
    ]
    assert asst.role is Role.ASSISTANT
    assert asst.parts[0] == TextPart("Checking.")
    call = asst.parts[1]
    assert type(call) is ToolCallPart and (call.id, call.name) == ("toolu_1", "weather")
    assert orjson.loads(call.arguments) == {"city": "Paris", "days": 2}
    assert results.parts == [
        ToolResultPart("toolu_1", [TextPart("timeout"), ImagePart(data="R0lG", media_type="image/gif")], True),
        ToolResultPart("toolu_2", [TextPart("22C")], False),
    ]
    assert [t.name for t in req.tools] == ["weather"]  # the server tool stays raw-only
    assert req.tools[0].strict is True and req.tools[0].parameters == {"type": "object"}
    assert (req.tool_choice.mode, req.tool_choice.parallel) == ("required", False)
    assert req.stop == ["END"] and req.temperature == 0.3 and req.top_p == 0.9
    assert req.user == "u-42"
    assert req.response_format == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": {"type": "object"}, "strict": True},
    }
    assert req.has_images()


def test_decode_string_system_and_content():
    req = D.decode(body(system="You are terse.", tool_choice={"type": "tool", "name": "f"},
                        tools=[{"name": "f", "input_schema": {"type": "object"}}]))
    assert req.system == [TextPart("You are terse.")]
    assert req.messages[0].parts == [TextPart("hi")]
    assert (req.tool_choice.mode, req.tool_choice.name, req.tool_choice.parallel) == ("tool", "f", None)


def test_decode_accepts_deprecated_output_format():
    req = D.decode(body(output_format={"type": "json_schema", "schema": {"type": "object", "properties": {}}}))
    assert req.response_format["json_schema"]["schema"] == {"type": "object", "properties": {}}


# ---- encode ---------------------------------------------------------------------------------


def test_encode_canonical_response_is_a_valid_message():
    req = D.decode(body())
    resp = ChatResponse(
        id="chatcmpl-123",
        model="gpt-4o",
        parts=[TextPart("Let me check."), ToolCallPart("call_1", "weather", '{"city":"Paris"}')],
        finish_reason=FinishReason.TOOL_CALLS,
        usage=Usage(input_tokens=1000, output_tokens=20, cache_read_tokens=600, cache_write_tokens=100),
    )
    m = Message.model_validate(orjson.loads(D.encode(resp, req)))
    assert m.id == "msg_chatcmpl-123"
    assert m.model == "gpt-4o" and m.role == "assistant"
    assert m.content[0].text == "Let me check."
    assert (m.content[1].id, m.content[1].name, m.content[1].input) == ("call_1", "weather", {"city": "Paris"})
    assert m.stop_reason == "tool_use"
    # Anthropic counts cached input apart from input_tokens.
    assert m.usage.input_tokens == 300
    assert m.usage.cache_read_input_tokens == 600
    assert m.usage.cache_creation_input_tokens == 100
    assert m.usage.output_tokens == 20


def test_encode_keeps_anthropic_ids_and_survives_unparseable_arguments():
    req = D.decode(body())
    resp = ChatResponse(
        id="msg_01ABC",
        model="m",
        parts=[ToolCallPart("call_1", "f", '{"city": "Par')],
        finish_reason=FinishReason.LENGTH,
        usage=None,
    )
    m = Message.model_validate(orjson.loads(D.encode(resp, req)))
    assert m.id == "msg_01ABC"
    assert m.content[0].input == {}
    assert m.stop_reason == "max_tokens"


@pytest.mark.parametrize(
    "reason, stop_reason",
    [
        (FinishReason.STOP, "end_turn"),
        (FinishReason.STOP_SEQUENCE, "stop_sequence"),
        (FinishReason.LENGTH, "max_tokens"),
        (FinishReason.TOOL_CALLS, "tool_use"),
        (FinishReason.CONTENT_FILTER, "refusal"),
        (FinishReason.CONTEXT_WINDOW, "model_context_window_exceeded"),
        (FinishReason.OTHER, "end_turn"),
    ],
)
def test_encode_maps_finish_reasons(reason, stop_reason):
    resp = ChatResponse(id="x", model="m", parts=[TextPart("a")], finish_reason=reason, usage=None, stop_sequence=None)
    m = Message.model_validate(orjson.loads(D.encode(resp, D.decode(body()))))
    assert m.stop_reason == stop_reason


def test_encode_passes_anthropic_answers_through_untouched():
    raw = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "thinking", "thinking": "…", "signature": "s"}, {"type": "text", "text": "hi"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 3, "output_tokens": 1, "service_tier": "standard"},
        "future_field": {"x": 1},
    }
    resp = ChatResponse(id="msg_1", model="claude-x", parts=[TextPart("hi")], finish_reason=FinishReason.STOP, usage=None, dialect="anthropic", raw=raw)
    assert orjson.loads(D.encode(resp, D.decode(body()))) == raw


# ---- stream ---------------------------------------------------------------------------------


def openai_like_stream():
    """What an OpenAI upstream's decoder yields: usage only after the finish."""
    return [
        Start("chatcmpl-9", "gpt-4o"),
        TextDelta("Checking "),
        TextDelta("both."),
        ToolCallStart(0, "call_a", "weather"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(0, '"Paris"}'),
        ToolCallStart(1, "call_b", "weather"),
        ToolCallDelta(1, '{"city":"Rome"}'),
        Finish(FinishReason.TOOL_CALLS),
        UsageEvent(Usage(input_tokens=50, output_tokens=30, cache_read_tokens=40)),
    ]


def encode_stream(events, close=True) -> bytes:
    enc = D.stream_encoder(D.decode(body(stream=True)))
    out = b"".join(enc.encode(ev) for ev in events)
    return out + enc.close() if close else out


def test_stream_encoder_emits_anthropics_event_sequence():
    events = sse_events(encode_stream(openai_like_stream()))
    for name, data in events:
        assert name == data["type"]
        STREAM_EVENT.validate_python(data)
    seq = [(d["type"], d.get("index")) for _, d in events]
    assert seq == [
        ("message_start", None),
        ("content_block_start", 0),
        ("content_block_delta", 0),
        ("content_block_delta", 0),
        ("content_block_stop", 0),
        ("content_block_start", 1),
        ("content_block_delta", 1),
        ("content_block_delta", 1),
        ("content_block_stop", 1),
        ("content_block_start", 2),
        ("content_block_delta", 2),
        ("content_block_stop", 2),
        ("message_delta", None),
        ("message_stop", None),
    ]
    snap, bufs = None, {}
    for _, d in events:
        snap = accumulate_event(event=d, current_snapshot=snap, json_bufs=bufs)  # type: ignore[arg-type]
    assert [b.type for b in snap.content] == ["text", "tool_use", "tool_use"]
    assert snap.content[1].input == {"city": "Paris"}
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    # The final usage arrived after the finish and still made it into message_delta.
    assert delta["usage"] == {
        "input_tokens": 10,
        "output_tokens": 30,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 40,
    }


def test_stream_encoder_output_reads_in_the_real_sdk():
    client = sdk_client(200, encode_stream(openai_like_stream()), "text/event-stream")
    with client.messages.stream(model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as s:
        m = s.get_final_message()
    assert m.id == "msg_chatcmpl-9"
    assert m.content[0].text == "Checking both."
    assert [(b.id, b.input) for b in m.content[1:]] == [("call_a", {"city": "Paris"}), ("call_b", {"city": "Rome"})]
    assert m.stop_reason == "tool_use"
    assert (m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.output_tokens) == (10, 40, 30)


def test_stream_encoder_puts_known_input_counts_in_message_start():
    events = [
        Start("msg_1", "claude-x"),
        UsageEvent(Usage(input_tokens=120, output_tokens=1, cache_write_tokens=100)),
        TextDelta("ok"),
        Finish(FinishReason.STOP_SEQUENCE, "END"),
        UsageEvent(Usage(input_tokens=120, output_tokens=7, cache_write_tokens=100)),
    ]
    out = sse_events(encode_stream(events))
    start = out[0][1]["message"]
    assert start["id"] == "msg_1"
    assert start["usage"]["input_tokens"] == 20 and start["usage"]["cache_creation_input_tokens"] == 100
    delta = out[-2][1]
    assert delta["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "END"}
    assert delta["usage"]["output_tokens"] == 7


def test_stream_encoder_replays_a_whole_response():
    resp = ChatResponse(id="r1", model="m", parts=[TextPart("hello")], finish_reason=FinishReason.STOP, usage=Usage(5, 2))
    client = sdk_client(200, encode_stream(events_of(resp)), "text/event-stream")
    with client.messages.stream(model="m", max_tokens=10, messages=[{"role": "user", "content": "x"}]) as s:
        m = s.get_final_message()
    assert m.content[0].text == "hello" and m.stop_reason == "end_turn"
    assert (m.usage.input_tokens, m.usage.output_tokens) == (5, 2)


def test_stream_encoder_passes_raw_events_through_once():
    start = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}}
    ping = {"type": "ping"}
    think = {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}}
    stop = {"type": "message_stop"}
    events = [
        Start("msg_1", "c", raw=start),
        UsageEvent(Usage(3, 1), raw=start),
        UsageEvent(Usage(3, 1), raw=ping),
        UsageEvent(Usage(3, 1), raw=think),
        TextDelta("no raw: already said by the upstream's own events"),
        UsageEvent(Usage(3, 1), raw=stop),
    ]
    out = sse_events(encode_stream(events))
    assert out == [("message_start", start), ("ping", ping), ("content_block_start", think), ("message_stop", stop)]


def test_stream_error_event_has_anthropics_shape():
    enc = D.stream_encoder(D.decode(body(stream=True)))
    enc.encode(Start("x", "m"))
    enc.encode(TextDelta("partial"))
    err = UpstreamStatus("overloaded", model="m", upstream_kind=UpstreamKind.OVERLOADED, upstream_status=529)
    ((name, data),) = sse_events(enc.error(err))
    assert name == "error"
    parsed = ErrorResponse.model_validate(data)
    assert parsed.error.type == "overloaded_error"


# ---- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "err, etype",
    [
        (InvalidRequest("messages: bad", param="messages"), "invalid_request_error"),
        (UnknownModel("no model 'x'"), "not_found_error"),
        (UpstreamStatus("slow down", upstream_kind=UpstreamKind.RATE_LIMITED), "rate_limit_error"),
        (UpstreamStatus("busy", upstream_kind=UpstreamKind.OVERLOADED), "overloaded_error"),
        (UpstreamStatus("down", upstream_kind=UpstreamKind.SERVER_ERROR), "api_error"),
        (UpstreamStatus("late", upstream_kind=UpstreamKind.TIMEOUT), "timeout_error"),
    ],
)
def test_encode_error_uses_anthropics_types(err, etype):
    data = orjson.loads(D.encode_error(err))
    parsed = ErrorResponse.model_validate(data)
    assert parsed.type == "error" and parsed.error.type == etype
    assert parsed.error.message == err.message


def test_sdk_raises_its_own_exception_for_our_errors():
    err = UpstreamStatus("overloaded", upstream_kind=UpstreamKind.OVERLOADED)
    client = sdk_client(529, D.encode_error(err))
    with pytest.raises(anthropic.InternalServerError) as ei:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ei.value.type == "overloaded_error"
    client = sdk_client(400, D.encode_error(InvalidRequest("max_tokens: required", param="max_tokens")))
    with pytest.raises(anthropic.BadRequestError) as ei2:
        client.messages.create(model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ei2.value.api_message == "max_tokens: required"
