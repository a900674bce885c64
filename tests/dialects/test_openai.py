"""The OpenAI dialect: what clients of OpenAI's SDKs send (validated, decoded) and what they get
back (bodies, streams, errors), checked against the installed ``openai`` SDK's types."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from switchman.adapters.openai import OpenAIAdapter
from switchman.config import ModelSpec, Price, ProviderSpec
from switchman.dialects.openai import OpenAIDialect
from switchman.errors import (
    AllAttemptsFailed,
    BodyTooLarge,
    Forbidden,
    InvalidRequest,
    SwitchmanError,
    Unauthorized,
    UnknownModel,
    Unsupported,
    UpstreamKind,
    UpstreamStatus,
)
from switchman.sse import SSEDecoder
from switchman.types import (
    ChatResponse,
    Finish,
    FinishReason,
    ImagePart,
    ResponseBuilder,
    Role,
    Start,
    TextDelta,
    TextPart,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    Usage,
    UsageEvent,
    events_of,
)

D = OpenAIDialect()
A = OpenAIAdapter()
USER = {"role": "user", "content": "hi"}
WEATHER = {
    "type": "function",
    "function": {"name": "weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def body(**kw) -> dict:
    b = {"model": "auto", "messages": [USER]}
    b.update(kw)
    return b


def frames(data: bytes) -> list:
    """The SSE payloads of an encoded stream: dicts, and the string "[DONE]"."""
    out = []
    for _, d in SSEDecoder().feed(data):
        out.append("[DONE]" if d == b"[DONE]" else orjson.loads(d))
    return out


# ---- decode: validation names the field ----------------------------------------------------------

INVALID = [
    ([1, 2], None),
    ({"messages": [USER]}, "model"),
    (body(model=""), "model"),
    (body(model=4), "model"),
    ({"model": "m"}, "messages"),
    (body(messages=[]), "messages"),
    (body(messages={"role": "user"}), "messages"),
    (body(messages=[USER, "hi"]), "messages[1]"),
    (body(messages=[USER, {"role": "bot", "content": "x"}]), "messages[1].role"),
    (body(messages=[{"role": "user", "content": 5}]), "messages[0].content"),
    (body(messages=[{"role": "user", "content": []}]), "messages[0].content"),
    (body(messages=[{"role": "user", "content": [{"type": "text", "text": 1}]}]), "messages[0].content[0].text"),
    (body(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "video"}]}]), "messages[0].content[1].type"),
    (body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": "http://x"}]}]), "messages[0].content[0].image_url"),
    (
        body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]}]),
        "messages[0].content[0].image_url.url",
    ),
    (body(messages=[USER, {"role": "assistant"}]), "messages[1].content"),
    (body(messages=[USER, {"role": "assistant", "content": None, "tool_calls": [{"id": 1}]}]), "messages[1].tool_calls[0].id"),
    (
        body(messages=[USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]}]),
        "messages[1].tool_calls[0].function.arguments",
    ),
    (body(messages=[USER, {"role": "tool", "content": "x"}]), "messages[1].tool_call_id"),
    (body(messages=[USER, {"role": "tool", "tool_call_id": "c", "content": [{"type": "image_url"}]}]), "messages[1].content[0].type"),
    (body(messages=[{"role": "system", "content": 3}, USER]), "messages[0].content"),
    (body(tools={"a": 1}), "tools"),
    (body(tools=[{"type": "retrieval"}]), "tools[0].type"),
    (body(tools=[{"type": "function", "function": {"description": "x"}}]), "tools[0].function.name"),
    (body(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]), "tools[0].function.parameters"),
    (body(tool_choice="always", tools=[WEATHER]), "tool_choice"),
    (body(tool_choice="required"), "tool_choice"),
    (body(tool_choice={"type": "function", "function": {"name": "other"}}, tools=[WEATHER]), "tool_choice.function.name"),
    (body(tool_choice={"type": "function"}, tools=[WEATHER]), "tool_choice.function.name"),
    (body(parallel_tool_calls="yes", tools=[WEATHER]), "parallel_tool_calls"),
    (body(temperature="hot"), "temperature"),
    (body(temperature=True), "temperature"),
    (body(temperature=3), "temperature"),
    (body(top_p=1.5), "top_p"),
    (body(max_tokens=-1), "max_tokens"),
    (body(max_completion_tokens=1.5), "max_completion_tokens"),
    (body(stop=["a", 1]), "stop"),
    (body(response_format={"type": "yaml"}), "response_format.type"),
    (body(response_format={"type": "json_schema"}), "response_format.json_schema"),
    (body(stream="yes"), "stream"),
    (body(stream=True, stream_options={"include_usage": "yes"}), "stream_options.include_usage"),
    (body(user=5), "user"),
]


@pytest.mark.parametrize("b,param", INVALID, ids=[p or "body" for _, p in INVALID])
def test_invalid_requests_name_the_field(b, param):
    with pytest.raises(InvalidRequest) as e:
        D.decode(b)
    assert type(e.value) is InvalidRequest
    assert e.value.param == param and e.value.status == 400


UNSUPPORTED = [
    (body(messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "x", "format": "wav"}}]}]), "messages[0].content[0].type"),
    (body(messages=[{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]), "messages[0].content[0].type"),
    (body(messages=[USER, {"role": "function", "name": "f", "content": "x"}]), "messages[1].role"),
    (body(tools=[{"type": "custom", "custom": {"name": "g"}}]), "tools[0].type"),
    (body(tools=[WEATHER], tool_choice={"type": "allowed_tools", "allowed_tools": {"mode": "auto", "tools": []}}), "tool_choice.type"),
    (body(n=2), "n"),
    (body(functions=[{"name": "f"}]), "functions"),
]


@pytest.mark.parametrize("b,param", UNSUPPORTED, ids=[p for _, p in UNSUPPORTED])
def test_unsupported_features_are_refused_by_name(b, param):
    with pytest.raises(Unsupported) as e:
        D.decode(b)
    assert e.value.param == param and e.value.status == 400


# ---- decode: meaning --------------------------------------------------------------------------


def test_decode_conversation():
    b = body(
        messages=[
            {"role": "developer", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}},
                    {"id": "call_2", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Rome"}'}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "sun"}]},
            {"role": "system", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Thanks"},
        ],
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "weather"}},
        parallel_tool_calls=False,
        max_tokens=50,
        max_completion_tokens=100,
        stop="END",
        temperature=0,
        top_p=1,
        response_format={"type": "json_object"},
        stream=True,
        stream_options={"include_usage": True},
        user="u-1",
        seed=3,
    )
    r = D.decode(b)
    # system and developer messages are hoisted, in order, wherever they were
    assert r.system == [TextPart("Be brief."), TextPart("Answer in French.")]
    assert [m.role for m in r.messages] == [Role.USER, Role.ASSISTANT, Role.USER, Role.USER]
    assert r.messages[0].parts == [
        TextPart("What is this?"),
        ImagePart(data="/9j/4AAQ", media_type="image/jpeg", detail="low"),
        ImagePart(url="https://example.com/cat.png"),
    ]
    assert r.messages[1].parts == [ToolCallPart("call_1", "weather", '{"city":"Oslo"}'), ToolCallPart("call_2", "weather", '{"city":"Rome"}')]
    # consecutive tool messages are one user message of results
    assert r.messages[2].parts == [ToolResultPart("call_1", [TextPart("rain")]), ToolResultPart("call_2", [TextPart("sun")])]
    assert r.messages[3].parts == [TextPart("Thanks")]
    assert r.tools == [Tool("weather", "Weather", WEATHER["function"]["parameters"])]
    assert r.tool_choice == ToolChoice("tool", "weather", False)
    assert r.max_tokens == 100  # max_completion_tokens wins over the deprecated max_tokens
    assert r.stop == ["END"] and r.temperature == 0 and r.top_p == 1
    assert r.response_format == {"type": "json_object"}
    assert r.stream and r.include_usage and r.user == "u-1"
    assert r.dialect == "openai" and r.raw is b and r.has_images()


def test_decode_defaults():
    r = D.decode(body(stream_options={"include_usage": True}))
    assert r.messages[0].parts == [TextPart("hi")]
    assert not r.stream and not r.include_usage  # usage chunks exist only in streams
    assert r.tools is None and r.tool_choice is None and r.max_tokens is None and r.stop is None
    r = D.decode(body(tools=[{"type": "function", "function": {"name": "now"}}], parallel_tool_calls=True, response_format={"type": "text"}))
    assert r.tools[0].parameters == {"type": "object", "properties": {}}
    assert r.tool_choice == ToolChoice("auto", None, True)
    assert r.response_format is None


# ---- encode -----------------------------------------------------------------------------------


def test_passthrough_response_keeps_vendor_fields():
    raw = {
        "id": "chatcmpl-9",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_44709d6fcb",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hi", "refusal": None, "annotations": []},
                "logprobs": {"content": [{"token": "Hi", "logprob": -0.1, "bytes": [72, 105], "top_logprobs": []}], "refusal": None},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "x_vendor": {"a": 1}},
    }
    resp = A.parse(orjson.dumps(raw), _model())
    out = D.encode(resp, D.decode(body()))
    assert orjson.loads(out) == raw


def test_encode_canonical_response_with_tool_calls():
    resp = ChatResponse(
        id="msg_01",
        model="claude-sonnet-4-5",
        parts=[ToolCallPart("toolu_1", "weather", '{"city":"Oslo"}')],
        finish_reason=FinishReason.TOOL_CALLS,
        usage=Usage(input_tokens=100, output_tokens=20, cache_read_tokens=80, cache_write_tokens=10, reasoning_tokens=5),
        created=1700000000,
    )
    out = orjson.loads(D.encode(resp, D.decode(body())))
    cc = ChatCompletion.model_validate(out)
    msg = cc.choices[0].message
    assert msg.content is None and msg.role == "assistant"
    assert msg.tool_calls[0].id == "toolu_1" and msg.tool_calls[0].function.arguments == '{"city":"Oslo"}'
    assert cc.choices[0].finish_reason == "tool_calls"
    assert (cc.usage.prompt_tokens, cc.usage.completion_tokens, cc.usage.total_tokens) == (100, 20, 120)
    assert cc.usage.prompt_tokens_details.cached_tokens == 80
    assert cc.usage.completion_tokens_details.reasoning_tokens == 5
    assert cc.id == "msg_01" and cc.model == "claude-sonnet-4-5" and cc.created == 1700000000


@pytest.mark.parametrize(
    "reason,expected",
    [
        (FinishReason.STOP, "stop"),
        (FinishReason.STOP_SEQUENCE, "stop"),
        (FinishReason.LENGTH, "length"),
        (FinishReason.CONTENT_FILTER, "content_filter"),
        (FinishReason.CONTEXT_WINDOW, "length"),
        (None, "stop"),
    ],
)
def test_encode_text_response_finish_reasons(reason, expected):
    resp = ChatResponse(id="", model="", parts=[TextPart("Hello")], finish_reason=reason, usage=None)
    cc = ChatCompletion.model_validate(orjson.loads(D.encode(resp, D.decode(body(model="auto")))))
    assert cc.choices[0].message.content == "Hello" and cc.choices[0].finish_reason == expected
    assert cc.id.startswith("chatcmpl-") and cc.model == "auto" and cc.created > 0


# ---- stream encoding ---------------------------------------------------------------------------


def stream_events():
    return [
        Start("msg_1", "claude-haiku-4-5", 1700000000),
        TextDelta("Let me "),
        TextDelta("check."),
        ToolCallStart(0, "toolu_1", "weather"),
        ToolCallDelta(0, '{"city":'),
        ToolCallDelta(0, '"Oslo"}'),
        UsageEvent(Usage(10, 1)),
        Finish(FinishReason.TOOL_CALLS),
        UsageEvent(Usage(10, 7, cache_read_tokens=4)),  # after Finish; the last one wins
    ]


def encode_all(enc, evs) -> bytes:
    return b"".join(enc.encode(e) for e in evs) + enc.close()


def assemble(chunks: list) -> tuple[str, dict, str | None]:
    """What an OpenAI client would make of the chunks: text, tool calls by index, finish reason."""
    text, calls, finish = "", {}, None
    for c in chunks:
        for ch in c.choices:
            text += ch.delta.content or ""
            for t in ch.delta.tool_calls or []:
                call = calls.setdefault(t.index, {"id": None, "name": None, "arguments": ""})
                if t.id:
                    call["id"], call["name"] = t.id, t.function.name
                call["arguments"] += t.function.arguments or ""
            finish = ch.finish_reason or finish
    return text, calls, finish


def test_stream_encoding_with_usage():
    enc = D.stream_encoder(D.decode(body(stream=True, stream_options={"include_usage": True})))
    fs = frames(encode_all(enc, stream_events()))
    assert fs[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(f) for f in fs[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.id for c in chunks} == {"msg_1"} and {c.model for c in chunks} == {"claude-haiku-4-5"}
    text, calls, finish = assemble(chunks)
    assert text == "Let me check." and finish == "tool_calls"
    assert calls == {0: {"id": "toolu_1", "name": "weather", "arguments": '{"city":"Oslo"}'}}
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert usage_chunks == [chunks[-1]] and chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 7 and chunks[-1].usage.prompt_tokens_details.cached_tokens == 4


def test_stream_encoding_without_usage_when_not_asked():
    enc = D.stream_encoder(D.decode(body(stream=True)))
    fs = frames(encode_all(enc, stream_events()))
    assert fs[-1] == "[DONE]" and all("usage" not in f for f in fs[:-1])


def test_whole_response_served_as_stream():
    resp = ChatResponse("id1", "m", [TextPart("Hi"), ToolCallPart("c", "f", "{}")], FinishReason.TOOL_CALLS, Usage(1, 2))
    enc = D.stream_encoder(D.decode(body(stream=True, stream_options={"include_usage": True})))
    fs = frames(encode_all(enc, events_of(resp)))
    text, calls, finish = assemble([ChatCompletionChunk.model_validate(f) for f in fs[:-1]])
    assert text == "Hi" and calls[0] == {"id": "c", "name": "f", "arguments": "{}"} and finish == "tool_calls"


def _model() -> ModelSpec:
    p = ProviderSpec("openai", "openai", "openai", "https://api.openai.com/v1", "sk-x")
    return ModelSpec("mini", p, "gpt-4o-mini", Price(Decimal("0.15"), Decimal("0.6")))


UPSTREAM_STREAM = [
    {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18", "service_tier": "default",
     "system_fingerprint": "fp_1", "usage": None, "obfuscation": "q1",
     "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None}, "logprobs": None, "finish_reason": None}]},
    {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18", "service_tier": "default",
     "system_fingerprint": "fp_1", "usage": None, "obfuscation": "q2",
     "choices": [{"index": 0, "delta": {"content": "Hi"}, "logprobs": {"content": [{"token": "Hi", "logprob": -0.5, "bytes": None, "top_logprobs": []}], "refusal": None}, "finish_reason": None}]},
    {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18", "service_tier": "default",
     "system_fingerprint": "fp_1", "usage": None, "obfuscation": "q3",
     "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]},
    {"id": "chatcmpl-7", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini-2024-07-18", "service_tier": "default",
     "system_fingerprint": "fp_1", "choices": [], "obfuscation": "q4",
     "usage": {"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9, "prompt_tokens_details": {"cached_tokens": 0}}},
]


def passthrough(include_usage: bool) -> tuple[list, list]:
    dec = A.stream_decoder(_model(), keep_raw=True)
    evs = [e for c in UPSTREAM_STREAM for e in dec.feed(None, orjson.dumps(c))]
    dec.feed(None, b"[DONE]")
    so = {"stream_options": {"include_usage": True}} if include_usage else {}
    enc = D.stream_encoder(D.decode(body(stream=True, **so)))
    return frames(encode_all(enc, evs)), evs


def test_stream_passthrough_keeps_vendor_fields_and_usage_when_asked():
    fs, evs = passthrough(include_usage=True)
    assert fs == UPSTREAM_STREAM + ["[DONE]"]  # each upstream chunk exactly once, untouched
    b = ResponseBuilder()
    for e in evs:
        b.add(e)
    assert b.build().usage.input_tokens == 8  # the gateway accounts usage either way


def test_stream_passthrough_drops_usage_chunk_client_did_not_ask_for():
    fs, evs = passthrough(include_usage=False)
    assert fs == UPSTREAM_STREAM[:3] + ["[DONE]"]
    assert any(type(e) is UsageEvent for e in evs)


def test_stream_passthrough_usage_on_a_content_chunk_is_not_repeated():
    last = dict(UPSTREAM_STREAM[2], usage={"prompt_tokens": 8, "completion_tokens": 1, "total_tokens": 9})
    dec = A.stream_decoder(_model(), keep_raw=True)
    evs = [e for c in (*UPSTREAM_STREAM[:2], last) for e in dec.feed(None, orjson.dumps(c))]
    enc = D.stream_encoder(D.decode(body(stream=True, stream_options={"include_usage": True})))
    fs = frames(encode_all(enc, evs))
    assert fs == [*UPSTREAM_STREAM[:2], last, "[DONE]"]


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "err,status,etype",
    [
        (InvalidRequest("bad", param="messages[0].content"), 400, "invalid_request_error"),
        (Unsupported("no audio"), 400, "invalid_request_error"),
        (Unauthorized("no key"), 401, "authentication_error"),
        (Forbidden("no"), 403, "permission_error"),
        (UnknownModel("unknown model 'x'", param="model"), 404, "invalid_request_error"),
        (BodyTooLarge("too big"), 413, "invalid_request_error"),
        (UpstreamStatus("slow down", upstream_kind=UpstreamKind.RATE_LIMITED, upstream_status=429), 429, "rate_limit_error"),
        (UpstreamStatus("boom", upstream_kind=UpstreamKind.SERVER_ERROR, upstream_status=500), 502, "server_error"),
        (AllAttemptsFailed([UpstreamStatus("x", upstream_kind=UpstreamKind.OVERLOADED)]), 503, "server_error"),
        (SwitchmanError("internal error"), 500, "server_error"),
    ],
)
def test_error_shape(err, status, etype):
    assert err.status == status
    out = orjson.loads(D.encode_error(err))
    assert out == {"error": {"message": err.message, "type": etype, "param": err.param, "code": err.kind}}


def test_error_never_carries_a_traceback():
    try:
        raise ValueError("deep inside")
    except ValueError:
        err = SwitchmanError("internal error")
    out = D.encode_error(err)
    assert b"Traceback" not in out and b"deep inside" not in out


def test_stream_error_is_an_error_event_then_done():
    enc = D.stream_encoder(D.decode(body(stream=True)))
    enc.encode(Start("a", "m"))
    out = enc.error(UpstreamStatus("cut", upstream_kind=UpstreamKind.SERVER_ERROR))
    fs = frames(out)
    assert fs[0]["error"]["type"] == "server_error" and fs[0]["error"]["message"] == "cut" and fs[1] == "[DONE]"
    assert enc.close() == b""  # the stream already ended


# ---- round trips through the adapter ---------------------------------------------------------------


def test_round_trip_canonical_request_matches_client_body():
    """A client's body decoded, then re-encoded from canonical (as for an upstream of another
    kind would see it, but in OpenAI's wire) says the same thing."""
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR", "detail": "high"}}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
        {"role": "user", "content": "thanks"},
    ]
    b = body(messages=msgs, tools=[WEATHER], tool_choice="required", max_tokens=9, stop=["x"], temperature=0.5)
    req = D.decode(b)
    req.raw, req.dialect = None, "anthropic"  # force the canonical encoding
    out = orjson.loads(A.build(req, _model()).body)
    assert out["messages"] == msgs
    assert out["tools"] == [WEATHER] and out["tool_choice"] == "required"
    assert out["max_completion_tokens"] == 9 and out["stop"] == ["x"] and out["temperature"] == 0.5


# ---- what the real SDK makes of it --------------------------------------------------------------


def sdk_client(status: int, content: bytes, content_type: str):
    import httpx2 as httpx  # the HTTP client the installed openai SDK is built on
    import openai

    def handler(request):
        return httpx.Response(status, content=content, headers={"content-type": content_type})

    return openai.OpenAI(api_key="k", base_url="http://gw/v1", max_retries=0, http_client=httpx.Client(transport=httpx.MockTransport(handler)))


def test_sdk_reads_encoded_stream_and_mid_stream_error():
    import openai

    req = D.decode(body(stream=True, stream_options={"include_usage": True}))
    enc = D.stream_encoder(req)
    ok = encode_all(enc, stream_events())
    client = sdk_client(200, ok, "text/event-stream")
    chunks = list(client.chat.completions.create(model="auto", messages=[USER], stream=True))
    text, calls, finish = assemble(chunks)
    assert text == "Let me check." and calls[0]["arguments"] == '{"city":"Oslo"}' and chunks[-1].usage.total_tokens == 17

    enc = D.stream_encoder(req)
    cut = enc.encode(Start("a", "m")) + enc.encode(TextDelta("Hel")) + enc.error(UpstreamStatus("upstream stream cut", upstream_kind=UpstreamKind.STREAM_CUT))
    client = sdk_client(200, cut, "text/event-stream")
    with pytest.raises(openai.APIError) as e:
        list(client.chat.completions.create(model="auto", messages=[USER], stream=True))
    assert "upstream stream cut" in str(e.value)


def test_sdk_reads_encoded_response_and_errors():
    import openai

    resp = ChatResponse("id1", "m", [TextPart("Paris.")], FinishReason.STOP, Usage(20, 2))
    client = sdk_client(200, D.encode(resp, D.decode(body())), "application/json")
    cc = client.chat.completions.create(model="auto", messages=[USER])
    assert cc.choices[0].message.content == "Paris." and cc.usage.total_tokens == 22

    err = UpstreamStatus("mini: upstream 429 rate_limit_exceeded: slow down", upstream_kind=UpstreamKind.RATE_LIMITED, upstream_status=429)
    client = sdk_client(err.status, D.encode_error(err), "application/json")
    with pytest.raises(openai.RateLimitError) as e:
        client.chat.completions.create(model="auto", messages=[USER])
    assert e.value.code == "rate_limited" and "slow down" in e.value.message
