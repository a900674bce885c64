"""Every error a client can meet, over real HTTP, in each dialect's own shape and status; no
traceback, no provider key, and the server keeps serving afterwards."""

from __future__ import annotations

import json

import aiohttp
import anthropic
import openai
import pytest

from conftest import PROVIDER_KEY, start_stack, stop_stack
from switchman.testing.fake_upstream import FakeModel

OA_PATH = "/v1/chat/completions"
AN_PATH = "/v1/messages"


class Reply:
    def __init__(self, status: int, headers, text: str) -> None:
        self.status_code, self.headers, self.text = status, headers, text

    def json(self):
        return json.loads(self.text)


async def _call(method, url, body=None, headers=None) -> Reply:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as c:
        async with c.request(method, url, data=body, headers=headers) as r:
            return Reply(r.status, r.headers, await r.text())


async def post(stack, path, body, headers=None):
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return await _call("POST", stack.base + path, content, {"content-type": "application/json", **(headers or {})})


def assert_openai_error(r, status, param=None, contains=None):
    assert r.status_code == status, r.text
    e = r.json()["error"]
    assert set(e) >= {"message", "type", "code"}
    if param:
        assert e["param"] == param, e
    if contains:
        assert contains in e["message"], e
    assert "Traceback" not in r.text and PROVIDER_KEY not in r.text
    assert r.headers["x-switchman-request-id"].startswith("req_")


def assert_anthropic_error(r, status, contains=None):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"].endswith("error") or body["error"]["type"] == "request_too_large"
    if contains:
        assert contains in body["error"]["message"], body
    assert "Traceback" not in r.text and PROVIDER_KEY not in r.text


async def assert_still_serving(stack, model="gpt-4o-mini"):
    r = await post(stack, OA_PATH, {"model": model, "messages": [{"role": "user", "content": "ok?"}]})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo: ok?"


async def test_unknown_model_is_404_listing_what_exists(stack):
    r = await post(stack, OA_PATH, {"model": "gpt-9", "messages": [{"role": "user", "content": "x"}]})
    assert_openai_error(r, 404, param="model", contains="gpt-4o-mini")
    assert "auto" in r.json()["error"]["message"]
    r = await post(stack, AN_PATH, {"model": "gpt-9", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert_anthropic_error(r, 404, contains="claude-haiku-4-5")
    with pytest.raises(openai.NotFoundError):
        async with openai.AsyncOpenAI(base_url=stack.openai_url, api_key="k", max_retries=0) as c:
            await c.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "x"}])
    await assert_still_serving(stack)


@pytest.mark.parametrize("body,param", [
    (b"{not json", None),
    (b"[1,2]", None),
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "gpt-4o-mini"}, "messages"),
    ({"model": "gpt-4o-mini", "messages": "hi"}, "messages"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
])
async def test_bad_openai_requests_are_400_naming_the_field(stack, body, param):
    r = await post(stack, OA_PATH, body)
    assert_openai_error(r, 400, param=param)
    await assert_still_serving(stack)


@pytest.mark.parametrize("body,field", [
    (b"{oops", "JSON"),
    ({"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages.0.content.0.text"),  # Anthropic's own path style
])
async def test_bad_anthropic_requests_are_400_naming_the_field(stack, body, field):
    r = await post(stack, AN_PATH, body)
    assert_anthropic_error(r, 400, contains=field)
    await assert_still_serving(stack)


async def test_body_over_the_limit_is_413_in_each_dialect(stack):
    big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * (2 << 20)}]}
    assert_openai_error(await post(stack, OA_PATH, big), 413)
    big["max_tokens"] = 5
    assert_anthropic_error(await post(stack, AN_PATH, big), 413)
    await assert_still_serving(stack)


async def test_upstream_connect_failure_is_502(stack):
    r = await post(stack, OA_PATH, {"model": "unreachable", "messages": [{"role": "user", "content": "x"}]})
    assert_openai_error(r, 502, contains="connect")
    r = await post(stack, AN_PATH, {"model": "unreachable", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})
    assert_anthropic_error(r, 502)


async def test_upstream_timeout_is_504(stack):
    r = await post(stack, OA_PATH, {"model": "slow", "messages": [{"role": "user", "content": "x"}]})
    assert_openai_error(r, 504)
    r = await post(stack, OA_PATH, {"model": "slow", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert_openai_error(r, 504, contains="first token")
    await assert_still_serving(stack)


@pytest.mark.parametrize("wire_model", ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"])
@pytest.mark.parametrize("status,expect", [(429, 429), (500, 502), (503, 503), (400, 400), (401, 502)])
async def test_upstream_statuses_keep_their_class(wire_model, status, expect):
    s = await start_stack({wire_model: FakeModel(error_status=status, retry_after=7 if status == 429 else None)})
    try:
        r = await post(s, OA_PATH, {"model": wire_model, "messages": [{"role": "user", "content": "x"}]})
        assert_openai_error(r, expect)
        if status == 429:
            assert r.headers["retry-after"] == "7"
        r = await post(s, AN_PATH, {"model": wire_model, "max_tokens": 9, "messages": [{"role": "user", "content": "x"}]})
        assert_anthropic_error(r, expect)
    finally:
        await stop_stack(s)


async def test_sdk_sees_rate_limit_as_its_own_exception():
    s = await start_stack({"gpt-4o-mini": FakeModel(error_status=429, retry_after=2)})
    try:
        async with openai.AsyncOpenAI(base_url=s.openai_url, api_key="k", max_retries=0) as c:
            with pytest.raises(openai.RateLimitError):
                await c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        async with anthropic.AsyncAnthropic(base_url=s.base, api_key="k", max_retries=0) as c:
            with pytest.raises(anthropic.RateLimitError):
                await c.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    finally:
        await stop_stack(s)


async def test_fallback_when_first_model_fails_and_reason_says_why(stack):
    r = await post(stack, OA_PATH, {"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200
    # broken (provider oa) failed: the route's fallback on another provider goes before gpt-4o-mini (oa)
    assert r.headers["x-switchman-model"] == "claude-haiku-4-5"
    assert r.headers["x-switchman-route"] == "auto"
    assert r.headers["x-switchman-attempts"] == "3"  # broken, its one retry, then claude-haiku-4-5
    assert "broken:server_error(500)" in r.headers["x-switchman-reason"]
    # a streaming request falls back just as transparently (nothing was sent before the failure)
    r = await post(stack, OA_PATH, {"model": "auto", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200 and r.headers["x-switchman-model"] == "claude-haiku-4-5"
    assert "data: [DONE]" in r.text


async def test_all_candidates_failing_is_503_with_the_chain():
    s = await start_stack({"gpt-4o-mini": FakeModel(error_status=503), "claude-haiku-4-5": FakeModel(error_status=529)})
    try:
        r = await post(s, OA_PATH, {"model": "auto", "messages": [{"role": "user", "content": "x"}]})
        assert_openai_error(r, 503, contains="all 6 attempts failed")  # three models, each retried once
        msg = r.json()["error"]["message"]
        assert "broken" in msg and "gpt-4o-mini" in msg and "claude-haiku-4-5" in msg
    finally:
        await stop_stack(s)


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"])
async def test_stream_cut_after_first_byte_ends_with_an_error_event(model):
    s = await start_stack({model: FakeModel(chunks=6, cut_after=2)})
    try:
        async with openai.AsyncOpenAI(base_url=s.openai_url, api_key="k", max_retries=0) as c:
            got = ""
            with pytest.raises(openai.APIError):
                stream = await c.chat.completions.create(model=model, stream=True,
                                                         messages=[{"role": "user", "content": "a long answer"}])
                async for chunk in stream:
                    for ch in chunk.choices:
                        got += ch.delta.content or ""
            assert got and not got.endswith("answer")  # some text came, then the error
        async with anthropic.AsyncAnthropic(base_url=s.base, api_key="k", max_retries=0) as c:
            with pytest.raises(anthropic.APIError):
                async with c.messages.stream(model=model, max_tokens=50,
                                             messages=[{"role": "user", "content": "a long answer"}]) as st:
                    await st.get_final_message()
        await assert_still_serving(s, "claude-haiku-4-5" if model == "gpt-4o-mini" else "gpt-4o-mini")
    finally:
        await stop_stack(s)


async def test_admin_key_required_when_configured():
    s = await start_stack(auth='auth: {admin_key: "gw-secret"}')
    try:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}
        assert_openai_error(await post(s, OA_PATH, body), 401)
        assert_openai_error(await post(s, OA_PATH, body, {"authorization": "Bearer wrong"}), 401)
        r = await post(s, OA_PATH, body, {"authorization": "Bearer gw-secret"})
        assert r.status_code == 200
        an_body = {**body, "max_tokens": 5}
        assert_anthropic_error(await post(s, AN_PATH, an_body), 401)
        assert (await post(s, AN_PATH, an_body, {"x-api-key": "gw-secret"})).status_code == 200
        async with anthropic.AsyncAnthropic(base_url=s.base, api_key="gw-secret", max_retries=0) as c:
            m = await c.messages.create(model="gpt-4o-mini", max_tokens=5, messages=[{"role": "user", "content": "x"}])
            assert m.content[0].text == "echo: x"
        # the gateway's key is never forwarded to a provider
        assert all("gw-secret" not in json.dumps(r.headers) for r in s.fake.requests)
    finally:
        await stop_stack(s)


async def test_models_and_health(stack):
    async with openai.AsyncOpenAI(base_url=stack.openai_url, api_key="k") as c:
        ids = {m.id async for m in c.models.list()}
    assert {"gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "auto"} <= ids
    assert (await _call("GET", stack.base + "/health/live")).status_code == 200
    assert (await _call("GET", stack.base + "/health/ready")).json()["status"] == "ready"
    r = await _call("GET", stack.base + "/nope")
    assert r.status_code == 404 and "error" in r.json()


async def test_anthropic_only_content_is_refused_for_other_apis_not_dropped(stack):
    doc = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "the contract"}}
    body = {"model": "gpt-4o-mini", "max_tokens": 20,
            "messages": [{"role": "user", "content": [doc, {"type": "text", "text": "summarise"}]}]}
    r = await post(stack, AN_PATH, body)
    assert_anthropic_error(r, 400, contains="messages.0.content.0")
    # to an Anthropic upstream it passes through untouched
    body["model"] = "claude-haiku-4-5"
    r = await post(stack, AN_PATH, body)
    assert r.status_code == 200
    assert stack.fake.requests[-1].json["messages"][0]["content"][0] == doc


async def test_images_to_a_text_only_model_are_a_clear_400():
    s = await start_stack(extra_models="  - {name: text-only, provider: oa, model: gpt-4o-mini, vision: false}")
    try:
        img = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
        body = {"model": "text-only", "messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, img]}]}
        r = await post(s, OA_PATH, body)
        assert_openai_error(r, 400, contains="image")
        assert not s.fake.requests, "nothing was sent upstream"
    finally:
        await stop_stack(s)
