"""The OpenAI adapter: the calls it builds, the answers and streams it reads (from OpenAI and from
compatible servers with their own habits), the errors it classifies; checked against the
installed ``openai`` SDK's types."""

from __future__ import annotations

import json
from itertools import zip_longest
from decimal import Decimal

import orjson
import pytest
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from pydantic import TypeAdapter

from switchman.adapters.openai import OpenAIAdapter
from switchman.config import ModelSpec, Price, ProviderSpec
from switchman.dialects.openai import OpenAIDialect
from switchman.errors import Unsupported, UpstreamError, UpstreamKind
from switchman.sse import SSEDecoder
from switchman.types import (
    ChatRequest,
    Finish,
    FinishReason,
    ImagePart,
    Message,
    ResponseBuilder,
    Role,
    Start,
    TextDelta,
    TextPart,
    Tool,
    ToolCallPart,
    ToolChoice,
    ToolResultPart,
    UsageEvent,
)

A = OpenAIAdapter()
D = OpenAIDialect()
KEY = "sk-proj-ABCDEF0123456789SECRET"


def model(
    kind="openai",
    base="https://api.openai.com/v1",
    auth="bearer",
    key=KEY,
    api_version=None,
    headers=(),
    vision=True,
    upstream="gpt-4o-mini",
) -> ModelSpec:
    p = ProviderSpec("prov", kind, "openai", base, key, auth, api_version, headers)
    return ModelSpec("mini", p, upstream, Price(Decimal("0.15"), Decimal("0.6")), vision=vision)


M = model()


def sent(call) -> dict:
    return orjson.loads(call.body)


def check_params(body: dict) -> None:
    """Validate a built body with the SDK's request types (consuming their lazy iterables)."""
    ta = TypeAdapter(CompletionCreateParamsStreaming if body.get("stream") else CompletionCreateParamsNonStreaming)

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


def decode_stream(sse: bytes, m: ModelSpec = M, keep_raw=False, split=7):
    """Feed SSE bytes in small pieces, as a network would; returns (events, decoder)."""
    dec = A.stream_decoder(m, keep_raw)
    sd = SSEDecoder()
    evs = []
    for i in range(0, len(sse), split):
        for name, data in sd.feed(sse[i : i + split]):
            evs.extend(dec.feed(name, data))
    return evs, dec


def sse_of(*chunks) -> bytes:
    out = b""
    for c in chunks:
        out += b"data: " + (c if isinstance(c, bytes) else orjson.dumps(c)) + b"\n\n"
    return out


def chunk(delta=None, finish=None, **extra) -> dict:
    c = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1700000000, "model": "gpt-4o-mini"}
    c["choices"] = [] if delta is None and finish is None else [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    c.update(extra)
    return c


def built(evs):
    b = ResponseBuilder()
    for e in evs:
        b.add(e)
    return b.build()


# ---- build ------------------------------------------------------------------------------------


def test_passthrough_keeps_client_fields_replaces_model_and_forces_usage():
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi", "name": "ann"}],
        "stream": True,
        "stream_options": {"include_obfuscation": False},
        "logprobs": True,
        "seed": 7,
        "reasoning_effort": "low",
    }
    req = D.decode(body)
    call = A.build(req, M)
    out = sent(call)
    assert out["model"] == "gpt-4o-mini"
    assert out["stream_options"] == {"include_obfuscation": False, "include_usage": True}
    assert out["logprobs"] is True and out["seed"] == 7 and out["reasoning_effort"] == "low"
    assert out["messages"] == body["messages"]
    # the client's own body is untouched (it is the request's raw, used again for fallbacks)
    assert body["model"] == "auto" and body["stream_options"] == {"include_obfuscation": False}
    check_params(out)


def test_passthrough_non_streaming_drops_stream_options():
    req = D.decode({"model": "m", "messages": [{"role": "user", "content": "x"}], "stream_options": {"include_usage": True}})
    out = sent(A.build(req, M))
    assert "stream" not in out and "stream_options" not in out


def anthropic_style_request(stream=False) -> ChatRequest:
    """What a client of another dialect (Anthropic) decodes to: tool results and text together."""
    return ChatRequest(
        model="auto",
        system=[TextPart("Be brief."), TextPart("Use tools.")],
        messages=[
            Message(Role.USER, [TextPart("What is in this picture, and the weather?"), ImagePart(data="iVBORw0KGgo=", media_type="image/png")]),
            Message(Role.ASSISTANT, [TextPart("Checking."), ToolCallPart("toolu_1", "weather", '{"city":"Oslo"}')]),
            Message(
                Role.USER,
                [
                    ToolResultPart("toolu_1", [TextPart("rain, "), TextPart("4C")]),
                    TextPart("And tomorrow?"),
                ],
            ),
        ],
        tools=[Tool("weather", "Weather for a city", {"type": "object", "properties": {"city": {"type": "string"}}})],
        tool_choice=ToolChoice("tool", "weather", parallel=False),
        max_tokens=300,
        temperature=0.2,
        stop=["END"],
        stream=stream,
        dialect="anthropic",
    )


def test_canonical_request_encodes_to_openai_messages():
    out = sent(A.build(anthropic_style_request(stream=True), M))
    check_params(out)
    msgs = out["messages"]
    assert msgs[0] == {"role": "system", "content": "Be brief.\n\nUse tools."}
    assert msgs[1]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert msgs[2] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [{"id": "toolu_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}],
    }
    # the tool result must directly follow the call; the user's text comes after it
    assert msgs[3] == {"role": "tool", "tool_call_id": "toolu_1", "content": "rain, 4C"}
    assert msgs[4] == {"role": "user", "content": "And tomorrow?"}
    assert out["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert out["parallel_tool_calls"] is False
    assert out["stop"] == ["END"] and out["temperature"] == 0.2
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}


def test_max_tokens_name_depends_on_the_server():
    req = anthropic_style_request()
    assert sent(A.build(req, M))["max_completion_tokens"] == 300
    local = model(kind="vllm", base="http://127.0.0.1:8000/v1", auth="none", key=None)
    out = sent(A.build(req, local))
    assert out["max_tokens"] == 300 and "max_completion_tokens" not in out


def test_images_in_tool_results_follow_in_a_user_message():
    req = ChatRequest(
        model="m",
        messages=[
            Message(Role.ASSISTANT, [ToolCallPart("c1", "screenshot", "{}")]),
            Message(Role.USER, [ToolResultPart("c1", [TextPart("here"), ImagePart(url="https://x/y.png")])]),
        ],
    )
    msgs = sent(A.build(req, M))["messages"]
    assert msgs[1] == {"role": "tool", "tool_call_id": "c1", "content": "here"}
    assert msgs[2] == {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}


def test_images_to_text_only_model_are_refused():
    with pytest.raises(Unsupported) as e:
        A.build(anthropic_style_request(), model(vision=False))
    assert e.value.param == "messages" and "mini" in e.value.message


def test_openai_url_and_bearer_auth():
    call = A.build(anthropic_style_request(), model(base="https://api.openai.com/v1/", headers=(("OpenAI-Project", "p1"),)))
    assert call.method == "POST" and call.url == "https://api.openai.com/v1/chat/completions"
    assert call.headers["authorization"] == "Bearer " + KEY
    assert call.headers["content-type"] == "application/json"
    assert call.headers["accept-encoding"] == "identity"
    assert call.headers["openai-project"] == "p1"
    assert "api-key" not in call.headers


def test_azure_deployment_url_and_api_key_header():
    m = model(kind="azure", base="https://res.openai.azure.com", auth="api-key", api_version="2024-10-21", upstream="my-gpt4o")
    call = A.build(anthropic_style_request(), m)
    assert call.url == "https://res.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
    assert call.headers["api-key"] == KEY and "authorization" not in call.headers
    assert "max_completion_tokens" in sent(call)


def test_azure_v1_api_uses_the_plain_path():
    m = model(kind="azure", base="https://res.openai.azure.com/openai/v1/", auth="api-key", upstream="my-gpt4o")
    call = A.build(anthropic_style_request(), m)
    assert call.url == "https://res.openai.azure.com/openai/v1/chat/completions"
    assert call.headers["api-key"] == KEY and sent(call)["model"] == "my-gpt4o"


@pytest.mark.parametrize("auth,key", [("none", KEY), ("bearer", None)])
def test_no_credentials_sent_when_none_configured(auth, key):
    call = A.build(anthropic_style_request(), model(auth=auth, key=key))
    assert "authorization" not in call.headers and "api-key" not in call.headers


# ---- parse ------------------------------------------------------------------------------------

COMPLETION = {
    "id": "chatcmpl-9",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "gpt-4o-mini-2024-07-18",
    "system_fingerprint": "fp_1",
    "service_tier": "default",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 120,
        "completion_tokens": 30,
        "total_tokens": 150,
        "prompt_tokens_details": {"cached_tokens": 64, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 12},
    },
}


def test_parse_tool_call_completion():
    r = A.parse(orjson.dumps(COMPLETION), M)
    assert r.tool_calls() == [ToolCallPart("call_a", "weather", '{"city":"Oslo"}')]
    assert r.text() == ""
    assert r.finish_reason is FinishReason.TOOL_CALLS
    u = r.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_tokens, u.reasoning_tokens) == (120, 30, 64, 12)
    assert r.dialect == "openai" and r.raw == COMPLETION and r.model == "gpt-4o-mini-2024-07-18"


@pytest.mark.parametrize(
    "fr,expected",
    [("stop", FinishReason.STOP), ("length", FinishReason.LENGTH), ("content_filter", FinishReason.CONTENT_FILTER), ("abort", FinishReason.OTHER)],
)
def test_parse_finish_reasons(fr, expected):
    body = {"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": fr}]}
    r = A.parse(orjson.dumps(body), M)
    assert r.text() == "hi" and r.finish_reason is expected and r.usage is None


def test_parse_vllm_stop_string_is_a_stop_sequence():
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "a"}, "finish_reason": "stop", "stop_reason": "END"}]}
    r = A.parse(orjson.dumps(body), M)
    assert r.finish_reason is FinishReason.STOP_SEQUENCE and r.stop_sequence == "END"


def test_parse_refusal_reads_as_text():
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": None, "refusal": "I can't help."}, "finish_reason": "stop"}]}
    assert A.parse(orjson.dumps(body), M).text() == "I can't help."


@pytest.mark.parametrize("body", [b"<html>502</html>", b"[]", b'{"choices": []}', b'{"choices": [{"index": 0}]}'])
def test_malformed_body_is_a_server_error(body):
    with pytest.raises(UpstreamError) as e:
        A.parse(body, M)
    assert e.value.upstream_kind is UpstreamKind.SERVER_ERROR and e.value.retryable and e.value.model == "mini"


# ---- stream -----------------------------------------------------------------------------------


def test_openai_stream_text_and_usage():
    sse = sse_of(
        chunk({"role": "assistant", "content": "", "refusal": None}, usage=None),
        chunk({"content": "Hel"}, usage=None),
        chunk({"content": "lo"}, usage=None),
        chunk({}, "stop", usage=None),
        chunk(usage={"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11, "prompt_tokens_details": {"cached_tokens": 0}}),
        b"[DONE]",
    )
    evs, dec = decode_stream(sse)
    assert dec.done
    assert type(evs[0]) is Start and evs[0].id == "chatcmpl-1" and evs[0].model == "gpt-4o-mini"
    r = built(evs)
    assert r.text() == "Hello" and r.finish_reason is FinishReason.STOP
    assert (r.usage.input_tokens, r.usage.output_tokens) == (9, 2)


def test_stream_without_done_marker_is_not_done():
    evs, dec = decode_stream(sse_of(chunk({"content": "Hel"})))
    assert not dec.done


def test_stream_complete_once_finish_and_usage_arrived_without_done():
    # A few servers close the stream without [DONE]; nothing is missing once both are in.
    u = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    evs, dec = decode_stream(sse_of(chunk({"content": "a"}), chunk({}, "stop", usage=u)))
    assert dec.done


def tc(index=None, id=None, name=None, args=None, type_="function"):
    d: dict = {}
    if index is not None:
        d["index"] = index
    if id is not None:
        d["id"] = id
        d["type"] = type_
    fn = {}
    if name is not None:
        fn["name"] = name
    if args is not None:
        fn["arguments"] = args
    if fn:
        d["function"] = fn
    return d


ARGS_A = '{"city": "Oslo", "units": "metric"}'
ARGS_B = '{"q": "news \\"today\\""}'


def frag(s: str, n: int) -> list[str]:
    return [s[i : i + n] for i in range(0, len(s), n)]


# Each shape: a list of tool_calls delta lists, one per chunk. All must give calls A then B.
SHAPES = {
    "openai: id+name, then fragments": [[tc(0, "call_a", "weather", "")]]
    + [[tc(0, args=f)] for f in frag(ARGS_A, 5)]
    + [[tc(1, "call_b", "search", "")]]
    + [[tc(1, args=f)] for f in frag(ARGS_B, 3)],
    "name and first arguments together": [[tc(0, "call_a", "weather", ARGS_A[:10])], [tc(0, args=ARGS_A[10:])], [tc(1, "call_b", "search", ARGS_B)]],
    "whole calls, one per chunk": [[tc(0, "call_a", "weather", ARGS_A)], [tc(1, "call_b", "search", ARGS_B)]],
    "both calls in one chunk": [[tc(0, "call_a", "weather", ARGS_A), tc(1, "call_b", "search", ARGS_B)]],
    "no index, ids tell calls apart": [[tc(None, "call_a", "weather", ARGS_A)], [tc(None, "call_b", "search", ARGS_B)]],
    "no index, id only on first fragment": [[tc(None, "call_a", "weather", "")]]
    + [[tc(None, args=f)] for f in frag(ARGS_A, 4)]
    + [[tc(None, "call_b", "search", "")]]
    + [[tc(None, args=f)] for f in frag(ARGS_B, 4)],
    "id repeated on every fragment": [[tc(0, "call_a", "weather" if i == 0 else None, f)] for i, f in enumerate(frag(ARGS_A, 6))]
    + [[tc(1, "call_b", "search" if i == 0 else None, f)] for i, f in enumerate(frag(ARGS_B, 6))],
    "indexes starting at 1": [[tc(1, "call_a", "weather", "")], [tc(1, args=ARGS_A)], [tc(2, "call_b", "search", ARGS_B)]],
    "interleaved parallel calls": [[tc(0, "call_a", "weather", ""), tc(1, "call_b", "search", "")]]
    + [[tc(0, args=a), tc(1, args=b)] for a, b in zip_longest(frag(ARGS_A, 7), frag(ARGS_B, 5), fillvalue="")],
    "arguments before the name": [[tc(0, args=ARGS_A[:4])], [tc(0, "call_a", "weather", ARGS_A[4:])], [tc(1, "call_b", "search", ARGS_B)]],
    "arguments as an object": [[tc(0, "call_a", "weather", json.loads(ARGS_A))], [tc(1, "call_b", "search", json.loads(ARGS_B))]],
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_stream_tool_call_assembly(shape):
    chunks = [chunk({"role": "assistant", "content": None})]
    chunks += [chunk({"tool_calls": d}) for d in SHAPES[shape]]
    chunks += [chunk({}, "tool_calls"), b"[DONE]"]
    evs, dec = decode_stream(sse_of(*chunks))
    r = built(evs)
    calls = r.tool_calls()
    assert [(c.id, c.name) for c in calls] == [("call_a", "weather"), ("call_b", "search")]
    assert json.loads(calls[0].arguments) == json.loads(ARGS_A)
    assert json.loads(calls[1].arguments) == json.loads(ARGS_B)
    assert r.finish_reason is FinishReason.TOOL_CALLS and dec.done


def test_stream_tool_call_without_id_gets_one():
    evs, _ = decode_stream(sse_of(chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}), b"[DONE]"))
    call = built(evs).tool_calls()[0]
    assert call.id.startswith("call_") and call.name == "f" and call.arguments == "{}"


def test_stream_vllm_usage_on_last_chunk():
    u = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    evs, _ = decode_stream(sse_of(chunk({"content": "abc"}), chunk({}, "length", usage=u), b"[DONE]"))
    r = built(evs)
    assert r.finish_reason is FinishReason.LENGTH and r.usage.output_tokens == 3


def test_stream_groq_usage_under_x_groq():
    u = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    evs, _ = decode_stream(sse_of(chunk({"content": "abc"}), chunk({}, "stop", x_groq={"id": "req_1", "usage": u}), b"[DONE]"))
    assert built(evs).usage.input_tokens == 5


def test_mid_stream_error_chunk_raises_mapped_error():
    dec = A.stream_decoder(M)
    dec.feed(None, orjson.dumps(chunk({"content": "a"})))
    with pytest.raises(UpstreamError) as e:
        dec.feed(None, b'{"error": {"message": "The server had an error while processing your request.", "type": "server_error", "param": null, "code": null}}')
    assert e.value.upstream_kind is UpstreamKind.SERVER_ERROR and "server had an error" in e.value.message


def test_keep_raw_attaches_each_chunk_to_all_its_events():
    c1 = chunk({"role": "assistant", "content": "Hi"}, system_fingerprint="fp_9", obfuscation="xyz")
    c2 = chunk({}, "stop", usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2})
    dec = A.stream_decoder(M, keep_raw=True)
    e1 = dec.feed(None, orjson.dumps(c1))
    e2 = dec.feed(None, orjson.dumps(c2))
    assert [type(e) for e in e1] == [Start, TextDelta] and e1[0].raw is e1[1].raw and e1[0].raw == c1
    assert [type(e) for e in e2] == [Finish, UsageEvent] and e2[0].raw is e2[1].raw and e2[0].raw == c2
    assert all(e.raw is None for e in A.stream_decoder(M).feed(None, orjson.dumps(c1)))


def test_keep_raw_carries_chunks_without_canonical_meaning():
    # Azure sends content-filter annotations in chunks with no delta text.
    dec = A.stream_decoder(M, keep_raw=True)
    dec.feed(None, orjson.dumps(chunk({"content": "a"})))
    annot = chunk({}, content_filter_results={"hate": {"filtered": False}})
    evs = dec.feed(None, orjson.dumps(annot))
    assert len(evs) == 1 and evs[0].raw == annot
    assert built(evs).text() == ""
    assert A.stream_decoder(M).feed(None, orjson.dumps(chunk({"content": "a"}))) != []


# ---- errors -----------------------------------------------------------------------------------


def err_body(code, type_="invalid_request_error", message="bad", param=None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


def test_rate_limit_is_retryable_with_retry_after():
    e = A.error(429, {"retry-after-ms": "494", "retry-after": "1"}, err_body("rate_limit_exceeded", "tokens", "Rate limit reached"), M)
    assert e.upstream_kind is UpstreamKind.RATE_LIMITED and e.retryable
    assert e.retry_after == pytest.approx(0.494) and e.upstream_status == 429 and e.status == 429
    assert e.code == "rate_limit_exceeded" and "Rate limit reached" in e.message and e.model == "mini"


def test_insufficient_quota_is_not_a_transient_rate_limit():
    msg = "You exceeded your current quota, please check your plan and billing details."
    e = A.error(429, {}, err_body("insufficient_quota", "insufficient_quota", msg), M)
    assert e.upstream_kind is UpstreamKind.AUTH and not e.retryable and e.code == "insufficient_quota"


@pytest.mark.parametrize(
    "status,body,kind",
    [
        (400, err_body("context_length_exceeded", param="messages"), UpstreamKind.CONTEXT_WINDOW),
        (
            400,
            orjson.dumps({"error": {"message": "filtered", "type": None, "param": "prompt", "code": "content_filter", "status": 400, "innererror": {"code": "ResponsibleAIPolicyViolation"}}}),
            UpstreamKind.CONTENT_FILTER,
        ),
        (400, err_body("content_policy_violation"), UpstreamKind.CONTENT_FILTER),
        (400, err_body(None), UpstreamKind.BAD_REQUEST),
        (401, err_body("invalid_api_key"), UpstreamKind.AUTH),
        (404, err_body("model_not_found"), UpstreamKind.NOT_FOUND),
        (500, err_body(None, "server_error", "The server had an error"), UpstreamKind.SERVER_ERROR),
        (503, err_body(None, "server_error", "overloaded"), UpstreamKind.OVERLOADED),
        # older vLLM: the object at top level, the status as an int code
        (400, orjson.dumps({"object": "error", "message": "bad", "type": "BadRequestError", "param": None, "code": 400}), UpstreamKind.BAD_REQUEST),
        (502, b"<html>Bad Gateway</html>", UpstreamKind.SERVER_ERROR),
    ],
)
def test_error_kinds(status, body, kind):
    e = A.error(status, {}, body, M)
    assert e.upstream_kind is kind and e.upstream_status == status and e.model == "mini"


def test_api_key_never_in_error_text():
    full = f"Incorrect API key provided: {KEY}. You can find your API key at https://platform.openai.com."
    masked = "Incorrect API key provided: sk-proj-****************************************************ECRET."
    for msg in (full, masked):
        e = A.error(401, {}, err_body("invalid_api_key", message=msg), M)
        assert KEY not in e.message and "sk-proj-" not in e.message and "Incorrect API key" in e.message
    e = A.error(401, {}, f"bad key {KEY}".encode(), M)  # not even JSON
    assert KEY not in e.message


def test_long_vendor_message_is_truncated():
    e = A.error(400, {}, err_body(None, message="x" * 5000), M)
    assert 300 <= len(e.message) < 400
