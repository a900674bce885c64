"""The Anthropic adapter: the calls it builds, the answers and streams it reads, the errors it
classifies, checked against Anthropic's documented shapes and the installed SDK's types."""

from __future__ import annotations

import random
from decimal import Decimal

import orjson
import pytest
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming, MessageCreateParamsStreaming
from pydantic import TypeAdapter

from switchman.adapters.anthropic import API_VERSION, STABLE_API_VERSION, AnthropicAdapter
from switchman.config import ModelSpec, Price, ProviderSpec
from switchman.dialects.anthropic import AnthropicDialect
from switchman.errors import Unsupported, UpstreamError, UpstreamKind
from switchman.sse import SSEDecoder
from switchman.types import (
    ChatRequest,
    FinishReason,
    ImagePart,
    Message,
    ResponseBuilder,
    Role,
    TextPart,
    Tool,
    ToolCallPart,
    ToolCallStart,
    ToolChoice,
    ToolResultPart,
    UsageEvent,
)

A = AnthropicAdapter()
KEY = "sk-ant-api03-SECRET"


def model(auth="x-api-key", headers=(), vision=True, max_output=None, key=KEY) -> ModelSpec:
    p = ProviderSpec("anthropic", "anthropic", "anthropic", "https://api.anthropic.com/", key, auth, headers=headers)
    return ModelSpec("claude", p, "claude-sonnet-4-5", Price(Decimal(3), Decimal(15)), vision=vision, max_output=max_output)


def sent(call) -> dict:
    return orjson.loads(call.body)


def check_params(body: dict) -> None:
    """Validate a built body with the SDK's request types (consuming their lazy iterables)."""
    ta = TypeAdapter(MessageCreateParamsStreaming if body.get("stream") else MessageCreateParamsNonStreaming)

    def walk(v):
        if hasattr(v, "__next__"):  # pydantic validates Iterable fields lazily
            v = list(v)
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(ta.validate_python(body))


def canonical(**kw) -> ChatRequest:
    """A request as an OpenAI client's would arrive: canonical only, no Anthropic raw."""
    base = dict(model="auto", messages=[Message(Role.USER, [TextPart("hi")])], dialect="openai")
    base.update(kw)
    return ChatRequest(**base)


# ---- build ----------------------------------------------------------------------------------


def test_build_canonical_request():
    cc = {"type": "ephemeral"}
    req = canonical(
        system=[TextPart("Be brief.", cc), TextPart("")],
        messages=[
            Message(Role.USER, [TextPart("Weather in Paris and Rome?"), ImagePart(url="data:image/png;base64,iVBORw0KG")]),
            Message(Role.ASSISTANT, [TextPart(""), ToolCallPart("call_a", "weather", '{"city":"Paris"}')]),
            Message(Role.ASSISTANT, [ToolCallPart("call_b", "weather", '{"city":"Rome"}')]),
            Message(Role.USER, [ToolResultPart("call_a", [TextPart("18C")])]),
            Message(Role.USER, [ToolResultPart("call_b", [TextPart("boom")], is_error=True)]),
            Message(Role.USER, [TextPart("And tomorrow?", cc), ImagePart(url="https://example.com/map.png")]),
        ],
        tools=[Tool("weather", "Weather by city", {"type": "object", "properties": {"city": {"type": "string"}}}, strict=True), Tool("now", None, {})],
        tool_choice=ToolChoice("required", parallel=False),
        stop=["END"],
        temperature=1.6,
        top_p=0.5,
        user="u-1",
        stream=True,
    )
    call = A.build(req, model())
    assert (call.method, call.url) == ("POST", "https://api.anthropic.com/v1/messages")
    assert call.headers["x-api-key"] == KEY and "authorization" not in call.headers
    assert call.headers["anthropic-version"] == API_VERSION
    assert call.headers["content-type"] == "application/json"
    assert call.headers["accept-encoding"] == "identity"
    b = sent(call)
    check_params(b)
    assert b["model"] == "claude-sonnet-4-5" and b["stream"] is True
    assert b["system"] == [{"type": "text", "text": "Be brief.", "cache_control": cc}]
    assert [m["role"] for m in b["messages"]] == ["user", "assistant", "user"]
    u1, a, u2 = (m["content"] for m in b["messages"])
    assert u1[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KG"}}
    # consecutive assistant turns merged, the empty text left out
    assert [(x["type"], x["id"], x["input"]) for x in a] == [("tool_use", "call_a", {"city": "Paris"}), ("tool_use", "call_b", {"city": "Rome"})]
    # the user turn after the calls: tool results first, then the text and image
    assert [x["type"] for x in u2] == ["tool_result", "tool_result", "text", "image"]
    assert u2[0] == {"type": "tool_result", "tool_use_id": "call_a", "content": [{"type": "text", "text": "18C"}]}
    assert u2[1]["is_error"] is True
    assert u2[2]["cache_control"] == cc
    assert u2[3]["source"] == {"type": "url", "url": "https://example.com/map.png"}
    assert b["tools"][0] == {"name": "weather", "description": "Weather by city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": True}
    assert b["tools"][1] == {"name": "now", "input_schema": {"type": "object", "properties": {}}}
    assert b["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert b["stop_sequences"] == ["END"]
    assert b["metadata"] == {"user_id": "u-1"}
    assert b["max_tokens"] == 4096
    # The current API version has no sampling parameters.
    assert "temperature" not in b and "top_p" not in b


def test_build_sends_sampling_only_under_an_older_pinned_version():
    m = model(headers=(("Anthropic-Version", STABLE_API_VERSION),))
    b = sent(A.build(canonical(temperature=1.6, top_p=0.5), m))
    assert b["temperature"] == 1.0  # OpenAI's 0..2 clamped to Anthropic's 0..1
    assert b["top_p"] == 0.5


@pytest.mark.parametrize(
    "max_tokens, cap, expected",
    # the cap budgets reserve for: the request's, at most the model's limit; else the model's limit;
    # else the configured default (4096)
    [(None, None, 4096), (None, 4096, 4096), (None, 64000, 64000), (1000, 64000, 1000), (100000, 64000, 64000)],
)
def test_build_max_tokens(max_tokens, cap, expected):
    assert sent(A.build(canonical(max_tokens=max_tokens), model(max_output=cap)))["max_tokens"] == expected


def test_build_structured_outputs_and_json_mode():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    b = sent(A.build(canonical(response_format=rf), model()))
    check_params(b)
    assert b["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    b = sent(A.build(canonical(response_format={"type": "json_object"}), model()))
    assert "JSON object" in b["system"][-1]["text"] and "output_config" not in b


@pytest.mark.parametrize(
    "mode, expected",
    [
        (ToolChoice("auto"), {"type": "auto"}),
        (ToolChoice("none"), {"type": "none"}),
        (ToolChoice("tool", "f", parallel=True), {"type": "tool", "name": "f"}),
        (ToolChoice("auto", parallel=False), {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_build_tool_choice(mode, expected):
    b = sent(A.build(canonical(tools=[Tool("f", None, {"type": "object"})], tool_choice=mode), model()))
    assert b["tool_choice"] == expected


@pytest.mark.parametrize(
    "auth, header, value",
    [("x-api-key", "x-api-key", KEY), ("bearer", "authorization", "Bearer " + KEY)],
)
def test_build_auth(auth, header, value):
    h = A.build(canonical(), model(auth=auth)).headers
    assert h[header] == value


def test_build_without_auth():
    h = A.build(canonical(), model(auth="none")).headers
    assert "x-api-key" not in h and "authorization" not in h


def test_build_refuses_images_for_text_only_models():
    req = canonical(messages=[Message(Role.USER, [ToolResultPart("t", [ImagePart(data="iVBOR", media_type="image/png")])])])
    with pytest.raises(Unsupported):
        A.build(req, model(vision=False))


def test_build_same_kind_passes_the_client_body_through():
    client_body = {
        "model": "auto",
        "max_tokens": 2048,
        "messages": [{"role": "user", "content": [{"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "doc"}}]}],
        "thinking": {"type": "adaptive"},
        "top_k": 5,
        "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        "unknown_future_field": [1, 2],
    }
    req = AnthropicDialect().decode(client_body)
    req.passthrough_headers = {"anthropic-beta": "context-1m-2025-08-07", "x-api-key": "client-key"}
    m = model(headers=(("anthropic-beta", "ops-beta"),))
    call = A.build(req, m)
    b = sent(call)
    assert b == {**client_body, "model": "claude-sonnet-4-5"}
    assert client_body["model"] == "auto"  # the client's dict is not mutated
    assert call.headers["anthropic-beta"] == "ops-beta,context-1m-2025-08-07"
    assert call.headers["x-api-key"] == KEY  # a client never overrides our credentials
    # The client named no version: its body may carry fields later versions refuse.
    assert call.headers["anthropic-version"] == STABLE_API_VERSION
    req.passthrough_headers = {"anthropic-version": "2026-10-21"}
    assert A.build(req, m).headers["anthropic-version"] == "2026-10-21"


def test_build_same_kind_follows_the_stream_flag():
    req = AnthropicDialect().decode({"model": "a", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "x"}]})
    req.stream = False  # e.g. the executor chose a whole answer
    assert "stream" not in sent(A.build(req, model()))


def test_canonical_round_trip_of_a_tool_conversation():
    original = {
        "model": "claude-x",
        "max_tokens": 300,
        "system": [{"type": "text", "text": "Use tools.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Checking."}, {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "18C"}], "is_error": True}]},
        ],
        "tools": [{"name": "weather", "description": "Weather", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u"},
    }
    req = AnthropicDialect().decode(original)
    req.raw = None  # force the canonical encoding
    b = sent(A.build(req, model()))
    check_params(b)
    assert {k: v for k, v in b.items() if k != "model"} == {k: v for k, v in original.items() if k != "model"}


# ---- parse ----------------------------------------------------------------------------------

MESSAGE = {
    "id": "msg_01",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "thinking", "thinking": "Let me see", "signature": "sig"},
        {"type": "text", "text": "I'll check."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 20,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "output_tokens": 50,
        "output_tokens_details": {"thinking_tokens": 12},
        "service_tier": "standard",
    },
}


def test_parse_message():
    r = A.parse(orjson.dumps(MESSAGE), model())
    assert (r.id, r.model, r.dialect, r.raw) == ("msg_01", "claude-sonnet-4-5-20250929", "anthropic", MESSAGE)
    assert r.text() == "I'll check."
    (call,) = r.tool_calls()
    assert (call.id, call.name, orjson.loads(call.arguments)) == ("toolu_1", "weather", {"city": "Paris"})
    assert r.finish_reason is FinishReason.TOOL_CALLS
    u = r.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens, u.reasoning_tokens) == (1120, 1000, 100, 50, 12)


def test_usage_survives_the_trip_to_an_anthropic_client_and_back():
    r = A.parse(orjson.dumps(MESSAGE), model())
    r.raw = None  # as if it came from another kind of upstream
    out = orjson.loads(AnthropicDialect().encode(r, canonical()))
    assert {k: out["usage"][k] for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")} == {
        "input_tokens": 20,
        "cache_creation_input_tokens": 100,
        "cache_read_input_tokens": 1000,
        "output_tokens": 50,
    }


@pytest.mark.parametrize(
    "stop_reason, finish",
    [
        ("end_turn", FinishReason.STOP),
        ("stop_sequence", FinishReason.STOP_SEQUENCE),
        ("max_tokens", FinishReason.LENGTH),
        ("tool_use", FinishReason.TOOL_CALLS),
        ("refusal", FinishReason.CONTENT_FILTER),
        ("model_context_window_exceeded", FinishReason.CONTEXT_WINDOW),
        ("pause_turn", FinishReason.OTHER),
    ],
)
def test_parse_finish_reasons(stop_reason, finish):
    assert A.parse(orjson.dumps({**MESSAGE, "stop_reason": stop_reason}), model()).finish_reason is finish


def test_parse_rejects_garbage_as_a_retryable_upstream_failure():
    with pytest.raises(UpstreamError) as ei:
        A.parse(b"<html>", model())
    assert ei.value.retryable


# ---- stream ---------------------------------------------------------------------------------

# Shaped like the docs' streaming examples (platform.claude.com/docs/en/build-with-claude/streaming):
# thinking, then text, then two tool calls, pings, usage cumulative in message_delta.
TRANSCRIPT = [
    {"type": "message_start", "message": {"id": "msg_014p7gG3wDgGV9EUtLvnow3U", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 472, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 2000, "output_tokens": 2}}},
    {"type": "ping"},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Two cities."}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "content_block_start", "index": 1, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Okay, let's check"}},
    {"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": " the weather."}},
    {"type": "content_block_stop", "index": 1},
    {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "name": "get_weather", "input": {}}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ""}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"location":'}},
    {"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": ' "San Francisco, CA"}'}},
    {"type": "content_block_stop", "index": 2},
    {"type": "content_block_start", "index": 3, "content_block": {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}},
    {"type": "ping"},
    {"type": "content_block_delta", "index": 3, "delta": {"type": "input_json_delta", "partial_json": '{"tz": "PST"}'}},
    {"type": "content_block_stop", "index": 3},
    {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"input_tokens": 472, "cache_creation_input_tokens": 10, "cache_read_input_tokens": 2000, "output_tokens": 89}},
    {"type": "message_stop"},
]


def wire(events: list[dict]) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)


def decode_wire(data: bytes, keep_raw=False, seed=0):
    """Feed ``data`` through SSE parsing and the decoder in random-sized chunks."""
    rng = random.Random(seed)
    sse, dec = SSEDecoder(), A.stream_decoder(model(), keep_raw)
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, 40)
        for name, payload in sse.feed(data[i : i + n]):
            out.extend(dec.feed(name, payload))
        i += n
    return dec, out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stream_decoder_assembles_text_and_tool_calls(seed):
    dec, events = decode_wire(wire(TRANSCRIPT), seed=seed)
    assert dec.done
    rb = ResponseBuilder()
    for ev in events:
        rb.add(ev)
    r = rb.build()
    assert (r.id, r.model) == ("msg_014p7gG3wDgGV9EUtLvnow3U", "claude-sonnet-4-5")
    assert r.text() == "Okay, let's check the weather."
    calls = r.tool_calls()
    assert [(c.id, c.name, orjson.loads(c.arguments)) for c in calls] == [
        ("toolu_01T1x1fJ34qAmk2tNTrN7Up6", "get_weather", {"location": "San Francisco, CA"}),
        ("toolu_02", "get_time", {"tz": "PST"}),
    ]
    assert r.finish_reason is FinishReason.TOOL_CALLS
    u = r.usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.output_tokens) == (2482, 2000, 10, 89)


def test_stream_decoder_numbers_tool_calls_not_content_blocks():
    _, events = decode_wire(wire(TRANSCRIPT))
    starts = [(ev.index, ev.name) for ev in events if type(ev) is ToolCallStart]
    assert starts == [(0, "get_weather"), (1, "get_time")]


def test_stream_decoder_keeps_input_counts_when_message_delta_omits_them():
    t = [dict(e) for e in TRANSCRIPT]
    t[-2] = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 15}}
    _, events = decode_wire(wire(t))
    last = [ev for ev in events if type(ev) is UsageEvent][-1].usage
    assert (last.input_tokens, last.output_tokens) == (2482, 15)


# Anthropic's usage with both cache lifetimes (anthropic/types/usage.py, cache_creation.py):
# cache_creation_input_tokens is every write, cache_creation splits it by TTL.
MIXED_TTL = {"input_tokens": 50, "cache_creation_input_tokens": 3000, "cache_read_input_tokens": 2000,
             "cache_creation": {"ephemeral_5m_input_tokens": 2000, "ephemeral_1h_input_tokens": 1000},
             "output_tokens": 500}


def test_one_hour_cache_writes_are_read_apart():
    u = A.parse(orjson.dumps({**MESSAGE, "usage": MIXED_TTL}), model()).usage
    assert (u.input_tokens, u.cache_read_tokens, u.cache_write_tokens, u.cache_write_1h_tokens) == (5050, 2000, 3000, 1000)
    t = [dict(e) for e in TRANSCRIPT]
    t[0] = {"type": "message_start", "message": {**t[0]["message"], "usage": {**MIXED_TTL, "output_tokens": 1}}}
    t[-2] = {**t[-2], "usage": {k: MIXED_TTL[k] for k in ("input_tokens", "cache_creation_input_tokens",
                                                          "cache_read_input_tokens", "output_tokens")}}
    _, events = decode_wire(wire(t))
    last = [ev for ev in events if type(ev) is UsageEvent][-1].usage
    assert (last.cache_write_tokens, last.cache_write_1h_tokens, last.output_tokens) == (3000, 1000, 500)


def test_one_hour_cache_writes_reach_an_anthropic_client_from_any_upstream():
    r = A.parse(orjson.dumps({**MESSAGE, "usage": MIXED_TTL}), model())
    r.raw = None  # as if it came from another kind of upstream
    out = orjson.loads(AnthropicDialect().encode(r, canonical()))
    assert out["usage"]["cache_creation"] == MIXED_TTL["cache_creation"]


def test_stream_without_message_stop_is_not_done():
    dec, _ = decode_wire(wire(TRANSCRIPT[:-1]))
    assert not dec.done


def test_stream_round_trip_to_an_anthropic_client_is_verbatim():
    """keep_raw: every upstream event, thinking and pings included, reaches the client as sent."""
    dec, events = decode_wire(wire(TRANSCRIPT), keep_raw=True)
    enc = AnthropicDialect().stream_encoder(canonical())
    out = b"".join(enc.encode(ev) for ev in events) + enc.close()
    got = [(name, orjson.loads(d)) for name, d in SSEDecoder().feed(out)]
    assert got == [(e["type"], e) for e in TRANSCRIPT]


def test_stream_error_event_raises_the_mapped_error():
    data = wire(TRANSCRIPT[:3]) + b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'
    with pytest.raises(UpstreamError) as ei:
        decode_wire(data)
    e = ei.value
    assert e.upstream_kind is UpstreamKind.OVERLOADED and e.retryable and e.model == "claude"


# ---- errors ---------------------------------------------------------------------------------


def err_body(etype: str, message: str = "x", **extra) -> bytes:
    return orjson.dumps({"type": "error", "error": {"type": etype, "message": message, **extra}, "request_id": "req_1"})


@pytest.mark.parametrize(
    "status, body, kind, retryable",
    [
        (529, err_body("overloaded_error", "Overloaded"), UpstreamKind.OVERLOADED, True),
        (529, b"", UpstreamKind.OVERLOADED, True),
        (500, err_body("api_error"), UpstreamKind.SERVER_ERROR, True),
        (504, err_body("timeout_error"), UpstreamKind.TIMEOUT, True),
        (401, err_body("authentication_error", "invalid x-api-key"), UpstreamKind.AUTH, False),
        (403, err_body("permission_error"), UpstreamKind.AUTH, False),
        (402, err_body("billing_error"), UpstreamKind.AUTH, False),
        (404, err_body("not_found_error", "model: claude-9"), UpstreamKind.NOT_FOUND, False),
        (413, err_body("request_too_large"), UpstreamKind.CONTEXT_WINDOW, False),
        (400, err_body("invalid_request_error", "prompt is too long: 208327 tokens > 200000 maximum"), UpstreamKind.CONTEXT_WINDOW, False),
        (400, err_body("invalid_request_error", "messages.0.content: Field required"), UpstreamKind.BAD_REQUEST, False),
        (502, b"<html>Bad Gateway</html>", UpstreamKind.SERVER_ERROR, True),
    ],
)
def test_error_classification(status, body, kind, retryable):
    e = A.error(status, {}, body, model())
    assert e.upstream_kind is kind
    assert e.retryable is retryable
    assert e.upstream_status == status and e.model == "claude"


def test_rate_limit_keeps_retry_after():
    e = A.error(429, {"retry-after": "7"}, err_body("rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"), model())
    assert e.upstream_kind is UpstreamKind.RATE_LIMITED and e.retryable
    assert e.retry_after == 7.0 and e.status == 429


def test_spend_cap_is_not_retried():
    body = err_body("rate_limit_error", "spend limit", details={"error_code": "enforced_spend_limit_reached"})
    e = A.error(429, {}, body, model())
    assert not e.retryable and e.code == "enforced_spend_limit_reached"


def test_errors_never_carry_the_key():
    e = A.error(401, {}, b"bad key " + KEY.encode(), model())
    assert KEY not in e.message and KEY not in str(e)
    e = A.error(401, {}, err_body("authentication_error", f"invalid key {KEY}"), model())
    assert KEY not in e.message
