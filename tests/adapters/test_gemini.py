"""The Gemini adapter, on bytes: what goes up the wire and what comes back."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from switchman.adapters.gemini import GeminiAdapter
from switchman.config import ModelSpec, Price, ProviderSpec
from switchman.errors import InvalidRequest, Unsupported, UpstreamError, UpstreamKind
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
    ToolChoice,
    ToolResultPart,
)

KEY = "AIzaSy-test-secret-key-0123456789"
A = GeminiAdapter()


def spec(auth: str = "x-goog-api-key", key: str | None = KEY, vision: bool = True, headers=()) -> ModelSpec:
    provider = ProviderSpec(
        name="google",
        kind="gemini",
        wire="gemini",
        base_url="https://generativelanguage.googleapis.com/",
        api_key=key,
        auth=auth,
        headers=headers,
    )
    return ModelSpec(
        name="flash",
        provider=provider,
        upstream="gemini-3-flash",
        price=Price(Decimal("0.3"), Decimal("2.5")),
        vision=vision,
    )


M = spec()


def user(*parts) -> Message:
    return Message(Role.USER, [TextPart(p) if isinstance(p, str) else p for p in parts])


def assistant(*parts) -> Message:
    return Message(Role.ASSISTANT, [TextPart(p) if isinstance(p, str) else p for p in parts])


def body_of(req: ChatRequest, model: ModelSpec = M) -> dict:
    return orjson.loads(A.build(req, model).body)


WEATHER = Tool("get_weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})


# ---- request encoding -----------------------------------------------------------------------


def test_url_and_auth_header_and_key_never_in_url():
    call = A.build(ChatRequest("flash", [user("hi")]), M)
    assert call.method == "POST"
    assert call.url == "https://generativelanguage.googleapis.com/v1beta/models/gemini-3-flash:generateContent"
    assert call.headers["x-goog-api-key"] == KEY
    assert call.headers["content-type"] == "application/json"
    assert call.headers["accept-encoding"] == "identity"
    assert KEY not in call.url

    stream = A.build(ChatRequest("flash", [user("hi")], stream=True), M)
    assert stream.url.endswith("/v1beta/models/gemini-3-flash:streamGenerateContent?alt=sse")
    assert KEY not in stream.url


def test_bearer_none_and_extra_headers():
    bearer = A.build(ChatRequest("flash", [user("hi")]), spec(auth="bearer", headers=(("x-team", "a"),)))
    assert bearer.headers["authorization"] == f"Bearer {KEY}"
    assert "x-goog-api-key" not in bearer.headers
    assert bearer.headers["x-team"] == "a"
    for m in (spec(auth="none"), spec(key=None)):
        h = A.build(ChatRequest("flash", [user("hi")]), m).headers
        assert "authorization" not in h and "x-goog-api-key" not in h


def test_system_and_multi_turn_with_same_role_turns_merged():
    req = ChatRequest(
        "flash",
        [user("one"), user("two"), assistant("three"), user("", "four")],
        system=[TextPart("be brief"), TextPart("be kind")],
    )
    b = body_of(req)
    assert b["systemInstruction"] == {"parts": [{"text": "be brief"}, {"text": "be kind"}]}
    assert b["contents"] == [
        {"role": "user", "parts": [{"text": "one"}, {"text": "two"}]},
        {"role": "model", "parts": [{"text": "three"}]},
        {"role": "user", "parts": [{"text": "four"}]},  # the empty text part is dropped
    ]
    assert "tools" not in b and b["generationConfig"] == {"maxOutputTokens": 4096}  # always capped


def test_generation_config():
    req = ChatRequest("flash", [user("hi")], temperature=0.2, top_p=0.9, max_tokens=50, stop=["END"])
    assert body_of(req)["generationConfig"] == {
        "temperature": 0.2,
        "topP": 0.9,
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
    }


def test_json_mode_and_json_schema():
    b = body_of(ChatRequest("flash", [user("hi")], response_format={"type": "json_object"}))
    assert b["generationConfig"] == {"responseMimeType": "application/json", "maxOutputTokens": 4096}

    schema = {"type": "object", "properties": {"a": {"type": ["string", "null"]}}, "additionalProperties": False}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    b = body_of(ChatRequest("flash", [user("hi")], response_format=rf))
    assert b["generationConfig"] == {"responseMimeType": "application/json", "responseJsonSchema": schema,
                                     "maxOutputTokens": 4096}


def test_tools_are_declared_with_full_json_schema():
    b = body_of(ChatRequest("flash", [user("hi")], tools=[WEATHER, Tool("now", None, {})]))
    assert b["tools"] == [
        {
            "functionDeclarations": [
                {"name": "get_weather", "description": "Weather for a city", "parametersJsonSchema": WEATHER.parameters},
                {"name": "now"},
            ]
        }
    ]
    assert "toolConfig" not in b


@pytest.mark.parametrize(
    "choice, config",
    [
        (ToolChoice("auto"), {"mode": "AUTO"}),
        (ToolChoice("none"), {"mode": "NONE"}),
        (ToolChoice("required"), {"mode": "ANY"}),
        (ToolChoice("tool", "get_weather"), {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}),
    ],
)
def test_tool_choice(choice, config):
    b = body_of(ChatRequest("flash", [user("hi")], tools=[WEATHER], tool_choice=choice))
    assert b["toolConfig"] == {"functionCallingConfig": config}


def test_tool_calls_and_results_with_the_name_looked_up():
    req = ChatRequest(
        "flash",
        [
            user("weather in Paris and Rome?"),
            assistant(
                ToolCallPart("call_a", "get_weather", '{"city": "Paris"}'),
                ToolCallPart("call_b", "get_weather", '{"city": "Rome"}'),
            ),
            Message(Role.USER, [ToolResultPart("call_a", [TextPart("18C")])]),
            Message(Role.USER, [ToolResultPart("call_b", [TextPart("no such city")], is_error=True)]),
        ],
        tools=[WEATHER],
    )
    model_turn, results = body_of(req)["contents"][1:]
    assert model_turn["role"] == "model"
    assert [p["functionCall"] for p in model_turn["parts"]] == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_a"},
        {"name": "get_weather", "args": {"city": "Rome"}, "id": "call_b"},
    ]
    # History written by another model has no thought signature: the documented escape hatch
    # goes on the turn's first call so Gemini 3 does not reject the request.
    assert model_turn["parts"][0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert "thoughtSignature" not in model_turn["parts"][1]
    assert results == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": "18C"}, "id": "call_a"}},
            {"functionResponse": {"name": "get_weather", "response": {"error": "no such city"}, "id": "call_b"}},
        ],
    }


def test_a_tool_result_for_no_known_call_is_refused():
    req = ChatRequest("flash", [user("x"), Message(Role.USER, [ToolResultPart("call_zz", [TextPart("1")])])])
    with pytest.raises(InvalidRequest):
        A.build(req, M)


def test_a_tool_result_keeps_its_own_name():
    req = ChatRequest("flash", [Message(Role.USER, [ToolResultPart("x1", [TextPart("1")], name="calc")])])
    part = body_of(req)["contents"][0]["parts"][0]
    assert part["functionResponse"]["name"] == "calc"


@pytest.mark.parametrize("args", ["not json", "[1, 2]"])
def test_tool_call_arguments_that_are_not_a_json_object_are_refused(args):
    req = ChatRequest("flash", [user("x"), assistant(ToolCallPart("c", "f", args))])
    with pytest.raises(InvalidRequest):
        A.build(req, M)


def test_empty_tool_call_arguments_are_an_empty_object():
    req = ChatRequest("flash", [user("x"), assistant(ToolCallPart("c", "now", ""))])
    assert body_of(req)["contents"][1]["parts"][0]["functionCall"]["args"] == {}


def test_images():
    req = ChatRequest(
        "flash",
        [
            user(
                "what is this?",
                ImagePart(data="iVBORw0KGgo=", media_type="image/png"),
                ImagePart(data="/9j/4AAQ"),
                ImagePart(url="data:image/webp;base64,UklGRh4A"),
                ImagePart(url="https://example.com/cat.JPG?size=big"),
                ImagePart(url="https://example.com/render"),
            )
        ],
    )
    parts = body_of(req)["contents"][0]["parts"]
    assert parts[1:] == [
        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
        {"inlineData": {"mimeType": "image/webp", "data": "UklGRh4A"}},
        {"fileData": {"fileUri": "https://example.com/cat.JPG?size=big", "mimeType": "image/jpeg"}},
        {"fileData": {"fileUri": "https://example.com/render"}},
    ]


def test_images_a_tool_returned_go_beside_its_response():
    req = ChatRequest(
        "flash",
        [
            user("shot"),
            assistant(ToolCallPart("c1", "screenshot", "{}")),
            Message(Role.USER, [ToolResultPart("c1", [TextPart("done"), ImagePart(data="iVBOR", media_type="image/png")])]),
        ],
    )
    parts = body_of(req)["contents"][2]["parts"]
    assert parts[0]["functionResponse"]["response"] == {"output": "done"}
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": "iVBOR"}}


def test_images_to_a_text_only_model_or_of_unknown_kind_are_unsupported():
    req = ChatRequest("flash", [user("x", ImagePart(url="https://example.com/a.png"))])
    with pytest.raises(Unsupported):
        A.build(req, spec(vision=False))
    with pytest.raises(Unsupported):
        A.build(ChatRequest("flash", [user("x", ImagePart(url="ftp://example.com/a.png"))]), M)


# ---- response parsing -----------------------------------------------------------------------


def response(parts, finish="STOP", **extra) -> bytes:
    d = {"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish}], **extra}
    return orjson.dumps(d)


def test_parse_text_skips_thoughts_and_reads_usage():
    body = response(
        [{"text": "let me think", "thought": True}, {"text": "Hello "}, {"text": "world"}],
        usageMetadata={
            "promptTokenCount": 120,
            "candidatesTokenCount": 7,
            "thoughtsTokenCount": 30,
            "cachedContentTokenCount": 100,
            "totalTokenCount": 157,
        },
        responseId="resp-1",
        modelVersion="gemini-3-flash-001",
    )
    r = A.parse(body, M)
    assert r.text() == "Hello world"
    assert r.finish_reason is FinishReason.STOP
    assert (r.id, r.model, r.dialect) == ("resp-1", "gemini-3-flash-001", "gemini")
    u = r.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens) == (120, 37, 100, 30)
    assert r.raw["responseId"] == "resp-1"


def test_parse_without_id_or_model_version():
    r = A.parse(response([{"text": "hi"}]), M)
    assert r.id and r.model == "gemini-3-flash"
    assert r.usage is None


def test_parse_function_calls():
    body = response(
        [
            {"text": "Checking."},
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"id": "fc-7", "name": "get_weather", "args": {"city": "Rome"}}},
        ]
    )
    r = A.parse(body, M)
    assert r.finish_reason is FinishReason.TOOL_CALLS
    assert r.text() == "Checking."
    first, second = r.tool_calls()
    assert (first.name, orjson.loads(first.arguments)) == ("get_weather", {"city": "Paris"})
    assert second.id == "fc-7"
    assert first.id and first.id != second.id
    # Made-up ids differ between responses, so a client keying results by id never mixes turns.
    assert A.parse(body, M).tool_calls()[0].id != first.id


@pytest.mark.parametrize(
    "reason, expected",
    [
        ("STOP", FinishReason.STOP),
        ("MAX_TOKENS", FinishReason.LENGTH),
        ("SAFETY", FinishReason.CONTENT_FILTER),
        ("RECITATION", FinishReason.CONTENT_FILTER),
        ("BLOCKLIST", FinishReason.CONTENT_FILTER),
        ("PROHIBITED_CONTENT", FinishReason.CONTENT_FILTER),
        ("SPII", FinishReason.CONTENT_FILTER),
        ("IMAGE_SAFETY", FinishReason.CONTENT_FILTER),
        ("MALFORMED_FUNCTION_CALL", FinishReason.OTHER),
        ("LANGUAGE", FinishReason.OTHER),
    ],
)
def test_finish_reasons(reason, expected):
    assert A.parse(response([{"text": "x"}], finish=reason), M).finish_reason is expected


def test_a_blocked_prompt_is_a_content_filter_answer():
    body = orjson.dumps({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 9}})
    r = A.parse(body, M)
    assert r.finish_reason is FinishReason.CONTENT_FILTER
    assert r.parts == []
    assert r.usage.input_tokens == 9


def test_thought_signature_round_trips_through_the_tool_call_id():
    sig = "CiQBjz1rX+0ab/cd=="
    body = response([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}, "thoughtSignature": sig}])
    call = A.parse(body, M).tool_calls()[0]
    assert set(call.id) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

    req = ChatRequest(
        "flash",
        [user("weather?"), assistant(call), Message(Role.USER, [ToolResultPart(call.id, [TextPart("18C")])])],
    )
    model_turn, results = body_of(req)["contents"][1:]
    part = model_turn["parts"][0]
    # Sent back in the URL-safe base64 alphabet, which protobuf's JSON mapping accepts.
    assert part["thoughtSignature"] == "CiQBjz1rX-0ab_cd"
    # Gemini issued no id, so none goes back up: the made-up one would mean nothing to it.
    assert part["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert results["parts"][0]["functionResponse"] == {"name": "get_weather", "response": {"output": "18C"}}


# ---- streaming ------------------------------------------------------------------------------


def sse(*chunks: dict) -> bytes:
    return b"".join(b"data: " + orjson.dumps(c) + b"\r\n\r\n" for c in chunks)


def run_stream(wire: bytes, step: int = 7, keep_raw: bool = False):
    """Feeds ``wire`` in ``step``-byte pieces, as a socket might deliver it."""
    dec = A.stream_decoder(M, keep_raw=keep_raw)
    sse_dec = SSEDecoder()
    events = []
    for i in range(0, len(wire), step):
        for event, data in sse_dec.feed(wire[i : i + step]):
            events.extend(dec.feed(event, data))
    return dec, events


def cand(parts, finish=None) -> dict:
    c: dict = {"content": {"role": "model", "parts": parts}}
    if finish:
        c["finishReason"] = finish
    return c


def test_stream_text_assembles():
    wire = sse(
        {"candidates": [cand([{"text": "Hel"}])], "usageMetadata": {"promptTokenCount": 5}, "responseId": "r9",
         "modelVersion": "gemini-3-flash-001"},
        {"candidates": [cand([{"text": "hmm", "thought": True}, {"text": "lo"}])]},
        {
            "candidates": [cand([{"text": " there"}], "STOP")],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 3, "thoughtsTokenCount": 2},
        },
    )
    dec, events = run_stream(wire)
    b = ResponseBuilder()
    for ev in events:
        b.add(ev)
    r = b.build()
    assert dec.done
    assert (r.id, r.model, r.text(), r.finish_reason) == ("r9", "gemini-3-flash-001", "Hello there", FinishReason.STOP)
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.reasoning_tokens) == (5, 5, 2)


def test_stream_tool_calls_assemble_with_indexes_across_chunks():
    wire = sse(
        {"candidates": [cand([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}])]},
        {"candidates": [cand([{"functionCall": {"id": "x2", "name": "get_weather", "args": {"city": "Rome"}}}], "STOP")]},
    )
    dec, events = run_stream(wire, step=11)
    b = ResponseBuilder()
    for ev in events:
        b.add(ev)
    r = b.build()
    assert dec.done
    assert r.finish_reason is FinishReason.TOOL_CALLS
    calls = r.tool_calls()
    assert [orjson.loads(c.arguments)["city"] for c in calls] == ["Paris", "Rome"]
    assert calls[1].id == "x2" and calls[0].id != calls[1].id


def test_a_stream_without_finish_reason_was_cut():
    dec, events = run_stream(sse({"candidates": [cand([{"text": "partial"}])]}))
    assert not dec.done
    assert any(getattr(e, "text", None) == "partial" for e in events)


def test_a_blocked_prompt_ends_the_stream_as_filtered():
    dec, events = run_stream(sse({"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}}))
    b = ResponseBuilder()
    for ev in events:
        b.add(ev)
    assert dec.done and b.build().finish_reason is FinishReason.CONTENT_FILTER


def test_an_error_event_in_the_stream_raises_the_mapped_error():
    wire = sse(
        {"candidates": [cand([{"text": "a"}])]},
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}},
    )
    with pytest.raises(UpstreamError) as e:
        run_stream(wire)
    assert e.value.upstream_kind is UpstreamKind.OVERLOADED and e.value.retryable


def test_keep_raw_attaches_each_chunk_to_its_events():
    first = {"candidates": [cand([{"text": "a"}])]}
    last = {"candidates": [cand([{"text": "b"}], "STOP")]}
    _, events = run_stream(sse(first, last), keep_raw=True)
    assert [e.raw for e in events] == [first, first, last, last]
    _, events = run_stream(sse(first, last))
    assert all(e.raw is None for e in events)


# ---- errors ---------------------------------------------------------------------------------


def google_error(code: int, status: str, message: str = "boom", details=None) -> bytes:
    err = {"code": code, "message": message, "status": status}
    if details:
        err["details"] = details
    return orjson.dumps({"error": err})


@pytest.mark.parametrize(
    "code, status, kind",
    [
        (429, "RESOURCE_EXHAUSTED", UpstreamKind.RATE_LIMITED),
        (503, "UNAVAILABLE", UpstreamKind.OVERLOADED),
        (500, "INTERNAL", UpstreamKind.SERVER_ERROR),
        (504, "DEADLINE_EXCEEDED", UpstreamKind.TIMEOUT),
        (401, "UNAUTHENTICATED", UpstreamKind.AUTH),
        (403, "PERMISSION_DENIED", UpstreamKind.AUTH),
        (404, "NOT_FOUND", UpstreamKind.NOT_FOUND),
        (400, "INVALID_ARGUMENT", UpstreamKind.BAD_REQUEST),
        (400, "FAILED_PRECONDITION", UpstreamKind.BAD_REQUEST),
    ],
)
def test_error_mapping(code, status, kind):
    e = A.error(code, {}, google_error(code, status), M)
    assert e.upstream_kind is kind
    assert (e.upstream_status, e.code, e.model) == (code, status, "flash")


def test_rate_limit_retry_delay_from_details_and_header():
    details = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"},
    ]
    body = google_error(429, "RESOURCE_EXHAUSTED", "quota", details)
    assert A.error(429, {}, body, M).retry_after == 7.0
    assert A.error(429, {"retry-after": "3"}, body, M).retry_after == 3.0
    half = google_error(429, "RESOURCE_EXHAUSTED", "quota", [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.5s"}])
    assert A.error(429, {}, half, M).retry_after == 0.5
    assert A.error(429, {}, google_error(429, "RESOURCE_EXHAUSTED"), M).retry_after is None


def test_an_over_long_prompt_is_a_context_window_error():
    msg = "The input token count (1196265) exceeds the maximum number of tokens allowed (1048576)."
    e = A.error(400, {}, google_error(400, "INVALID_ARGUMENT", msg), M)
    assert e.upstream_kind is UpstreamKind.CONTEXT_WINDOW
    assert not e.retryable


def test_an_invalid_key_is_an_auth_error_though_gemini_says_400():
    details = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]
    e = A.error(400, {}, google_error(400, "INVALID_ARGUMENT", "API key not valid.", details), M)
    assert e.upstream_kind is UpstreamKind.AUTH
    assert e.status == 502  # our credentials, not the client's fault


def test_the_key_never_appears_in_error_text():
    body = google_error(400, "INVALID_ARGUMENT", f"bad request with key={KEY}")
    e = A.error(400, {}, body, M)
    assert KEY not in e.message and KEY not in str(e)
    raw = f"<html>upstream proxy saw {KEY}</html>".encode()
    e = A.error(502, {}, raw, M)
    assert KEY not in e.message
    assert e.upstream_kind is UpstreamKind.SERVER_ERROR


def test_a_non_json_error_body_maps_by_status():
    e = A.error(503, {"retry-after": "12"}, b"Service Unavailable", M)
    assert e.upstream_kind is UpstreamKind.OVERLOADED
    assert e.retry_after == 12.0
    assert "Service Unavailable" in e.message


def test_a_long_error_body_is_cut_without_leaving_part_of_the_key():
    raw = b"x" * 495 + KEY.encode() + b"y" * 3000
    e = A.error(502, {}, raw, M)
    assert KEY[:5] not in e.message and len(e.message) < 600
