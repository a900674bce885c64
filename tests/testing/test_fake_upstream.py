"""The fake upstream against the vendors' own SDKs (OpenAI, Anthropic) and raw HTTP (Gemini): every
byte it sends must parse as the real thing would, and its failure switches must look to a client
like the real failures."""

import asyncio
import http.client
import json
import math
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import anthropic
import openai
import pytest

from switchman.testing import FakeModel, FakeUpstream, demo_models

TOOLS_OPENAI = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "other", "parameters": {"type": "object"}}}]
TOOLS_ANTHROPIC = [{"name": "get_weather", "input_schema": {"type": "object"}}]
TOOLS_GEMINI = [{"functionDeclarations": [{"name": "get_weather", "parameters": {"type": "object"}}]}]
ARGS = {"city": "Paris", "days": 3, "units": "metric", "note": "a longer value so it splits"}
SRC = str(Path(__file__).resolve().parents[2] / "src")


@asynccontextmanager
async def running(models=None, default=None, **kw):
    """A started fake; SDK clients made for it by ``oai``/``ant`` are closed with it."""
    fake = FakeUpstream(models, default, **kw)
    fake.test_clients = []
    await fake.start()
    try:
        yield fake
    finally:
        for c in fake.test_clients:
            await c.close()
        await fake.stop(grace=0.2)


def oai(fake, **kw):
    c = openai.AsyncOpenAI(base_url=fake.url("openai"), api_key=kw.pop("api_key", "sk-test"), max_retries=0, **kw)
    fake.test_clients.append(c)
    return c


def ant(fake, **kw):
    c = anthropic.AsyncAnthropic(base_url=fake.url("anthropic"), api_key=kw.pop("api_key", "ak-test"),
                                 max_retries=0, **kw)
    fake.test_clients.append(c)
    return c


def user(text):
    return [{"role": "user", "content": text}]


def _post_sync(port, path, body, headers):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("POST", path, body=json.dumps(body), headers={"content-type": "application/json", **headers})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


async def post(fake, path, body, headers=None):
    """Raw HTTP (for Gemini, which has no SDK here, and for exact wire checks)."""
    return await asyncio.to_thread(_post_sync, fake.port, path, body, headers or {})


def gemini_events(raw: bytes) -> list[dict]:
    assert raw.endswith(b"\r\n\r\n"), "Gemini frames its events with CRLF"
    return [json.loads(e.removeprefix(b"data: ")) for e in raw.split(b"\r\n\r\n") if e]


def tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


# ---- OpenAI wire --------------------------------------------------------------------------------


async def test_openai_plain_answer_with_usage_and_what_reached_the_upstream():
    async with running({"gpt-4o-mini": FakeModel(cached_tokens=3)}) as fake:
        prompt = "What is the capital of France?"
        msgs = [{"role": "system", "content": "Be brief."}, *user(prompt)]
        r = await oai(fake, api_key="sk-upstream").chat.completions.create(model="gpt-4o-mini", messages=msgs)
        assert r.choices[0].message.content == "echo: " + prompt
        assert r.choices[0].finish_reason == "stop"
        assert r.usage.prompt_tokens == tokens("Be brief." + prompt)
        assert r.usage.completion_tokens == tokens("echo: " + prompt)
        assert r.usage.prompt_tokens_details.cached_tokens == 3
        rec = fake.requests[-1]
        assert (rec.wire, rec.model, rec.stream, rec.api_key) == ("openai", "gpt-4o-mini", False, "sk-upstream")
        assert rec.headers["authorization"] == "Bearer sk-upstream" and rec.json["messages"] == msgs


async def test_openai_stream_accumulates_text_and_ends_with_a_usage_chunk():
    async with running(default=FakeModel(reply="The quick brown fox jumps over the lazy dog.", chunks=5,
                                         cached_tokens=2)) as fake:
        s = await oai(fake).chat.completions.create(model="m", messages=user("hi there, friend"), stream=True,
                                                    stream_options={"include_usage": True})
        text, pieces, finish, usage = "", 0, None, None
        async for c in s:
            if c.choices:
                pieces += bool(c.choices[0].delta.content)
                text += c.choices[0].delta.content or ""
                finish = c.choices[0].finish_reason or finish
            if c.usage:
                usage = c.usage
        assert text == "The quick brown fox jumps over the lazy dog." and pieces == 5 and finish == "stop"
        assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (tokens("hi there, friend"), 2)


async def test_openai_tool_call_streams_name_first_then_argument_fragments():
    async with running(default=FakeModel(tool_arguments=ARGS, chunks=4)) as fake:
        client = oai(fake)
        s = await client.chat.completions.create(model="m", messages=user("weather?"), tools=TOOLS_OPENAI, stream=True)
        deltas, finish = [], None
        async for c in s:
            deltas += c.choices[0].delta.tool_calls or []
            finish = c.choices[0].finish_reason or finish
        first, rest = deltas[0], deltas[1:]
        assert first.id and first.function.name == "get_weather" and first.function.arguments == ""
        assert len(rest) == 4 and all(d.id is None and d.index == 0 for d in rest)
        assert json.loads("".join(d.function.arguments for d in rest)) == ARGS and finish == "tool_calls"

        r = await client.chat.completions.create(model="m", messages=user("weather?"), tools=TOOLS_OPENAI,
                                                 tool_choice={"type": "function", "function": {"name": "other"}})
        call = r.choices[0].message.tool_calls[0]
        assert call.function.name == "other" and json.loads(call.function.arguments) == ARGS
        assert r.choices[0].message.content is None and r.choices[0].finish_reason == "tool_calls"
        r = await client.chat.completions.create(model="m", messages=user("hi"), tools=TOOLS_OPENAI, tool_choice="none")
        assert r.choices[0].message.content == "echo: hi"


async def test_azure_deployment_path_is_the_model_id():
    async with running({"my-deploy": FakeModel(require_key="az-key")}) as fake:
        client = openai.AsyncAzureOpenAI(azure_endpoint=fake.url("azure"), api_key="az-key",
                                         api_version="2024-10-21", max_retries=0)
        fake.test_clients.append(client)
        r = await client.chat.completions.create(model="my-deploy", messages=user("hello"))
        assert r.choices[0].message.content == "echo: hello"
        rec = fake.requests[-1]
        assert (rec.wire, rec.model, rec.api_key) == ("azure", "my-deploy", "az-key")
        assert "api-version=2024-10-21" in rec.query


async def test_max_tokens_truncates_with_a_length_finish():
    async with running(default=FakeModel(reply="x" * 400)) as fake:
        r = await oai(fake).chat.completions.create(model="m", messages=user("hi"), max_tokens=10)
        assert r.choices[0].message.content == "x" * 40 and r.choices[0].finish_reason == "length"
        assert r.usage.completion_tokens == 10


# ---- Anthropic wire -----------------------------------------------------------------------------


async def test_anthropic_plain_answer_reports_cache_reads_and_writes_apart():
    async with running({"claude-haiku-4-5": FakeModel(cached_tokens=5, cache_write_tokens=4)}) as fake:
        prompt = "Summarise the plot of Hamlet in one line, please."
        m = await ant(fake).messages.create(model="claude-haiku-4-5", max_tokens=200, system="Be brief.",
                                            messages=user(prompt))
        assert m.content[0].text == "echo: " + prompt and m.stop_reason == "end_turn"
        total = tokens("Be brief." + prompt)
        u = m.usage
        assert (u.cache_read_input_tokens, u.cache_creation_input_tokens) == (5, 4)
        assert u.input_tokens == total - 9, "Anthropic's input_tokens excludes cache reads and writes"
        # Anthropic SDKs since 2.x send the key as a bearer token (older ones: x-api-key).
        assert fake.requests[-1].api_key == "ak-test"


async def test_anthropic_stream_has_the_exact_event_sequence_and_the_sdk_joins_it():
    async with running(default=FakeModel(reply="One two three four five six seven eight nine ten.", chunks=10)) as fake:
        body = {"model": "m", "max_tokens": 100, "stream": True, "messages": user("count")}
        status, headers, raw = await post(fake, "/v1/messages", body, {"x-api-key": "k"})
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        names = [b.split(b"\n")[0].removeprefix(b"event: ").decode() for b in raw.split(b"\n\n") if b]
        assert names[:4] == ["message_start", "content_block_start", "ping", "content_block_delta"]
        assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
        assert names.count("content_block_delta") == 10 and names.count("ping") >= 2

        async with ant(fake).messages.stream(model="m", max_tokens=100, messages=user("count")) as s:
            final = await s.get_final_message()
        assert final.content[0].text == "One two three four five six seven eight nine ten."
        assert final.usage.output_tokens == tokens(final.content[0].text)


async def test_anthropic_streamed_tool_use_has_its_input_in_the_final_message():
    async with running(default=FakeModel(tool_arguments=ARGS, chunks=3)) as fake:
        async with ant(fake).messages.stream(model="m", max_tokens=100, messages=user("weather?"),
                                             tools=TOOLS_ANTHROPIC) as s:
            final = await s.get_final_message()
        block = final.content[0]
        assert (block.type, block.name, block.input) == ("tool_use", "get_weather", ARGS)
        assert final.stop_reason == "tool_use"


async def test_anthropic_requires_max_tokens_as_the_real_api_does():
    async with running(default=FakeModel()) as fake:
        status, _, raw = await post(fake, "/v1/messages", {"model": "m", "messages": user("hi")})
        err = json.loads(raw)
        assert status == 400 and err["type"] == "error" and err["error"]["type"] == "invalid_request_error"


# ---- Gemini wire --------------------------------------------------------------------------------


async def test_gemini_generate_content_and_sse_stream():
    async with running({"gemini-2.5-pro": FakeModel(cached_tokens=2, chunks=3)}) as fake:
        body = {"contents": [{"role": "user", "parts": [{"text": "Prove sqrt 2 is irrational."}]}],
                "systemInstruction": {"parts": [{"text": "Be rigorous."}]}}
        hdr = {"x-goog-api-key": "gk"}
        status, _, raw = await post(fake, "/v1beta/models/gemini-2.5-pro:generateContent", body, hdr)
        d = json.loads(raw)
        assert status == 200
        cand = d["candidates"][0]
        assert cand["content"] == {"parts": [{"text": "echo: Prove sqrt 2 is irrational."}], "role": "model"}
        assert cand["finishReason"] == "STOP"
        u = d["usageMetadata"]
        assert u["promptTokenCount"] == tokens("Be rigorous.Prove sqrt 2 is irrational.")
        assert u["cachedContentTokenCount"] == 2
        assert u["totalTokenCount"] == u["promptTokenCount"] + u["candidatesTokenCount"]
        assert fake.requests[-1].api_key == "gk" and fake.requests[-1].model == "gemini-2.5-pro"

        status, headers, raw = await post(fake, "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse", body, hdr)
        events = gemini_events(raw)
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        text = "".join(p.get("text", "") for e in events for p in e["candidates"][0]["content"]["parts"])
        assert text == "echo: Prove sqrt 2 is irrational." and len(events) == 4
        assert [e["candidates"][0].get("finishReason") for e in events] == [None, None, None, "STOP"]
        assert events[-1]["usageMetadata"]["candidatesTokenCount"] == tokens(text)


async def test_gemini_function_call_part_and_json_array_stream():
    async with running(default=FakeModel(tool_arguments=ARGS)) as fake:
        body = {"contents": [{"role": "user", "parts": [{"text": "weather?"}]}], "tools": TOOLS_GEMINI}
        _, _, raw = await post(fake, "/v1beta/models/g:generateContent", body)
        assert json.loads(raw)["candidates"][0]["content"]["parts"] == [{"functionCall": {"name": "get_weather", "args": ARGS}}]
        status, headers, raw = await post(fake, "/v1beta/models/g:streamGenerateContent", body)  # no alt=sse
        arr = json.loads(raw)
        assert status == 200 and headers["content-type"] == "application/json"
        assert arr[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["args"] == ARGS
        assert arr[-1]["candidates"][0]["finishReason"] == "STOP"


# ---- failures -----------------------------------------------------------------------------------


async def test_injected_rate_limit_in_each_vendor_shape():
    spec = FakeModel(error_status=429, retry_after=7)
    async with running(default=spec) as fake:
        with pytest.raises(openai.RateLimitError) as e:
            await oai(fake).chat.completions.create(model="m", messages=user("hi"))
        assert e.value.response.headers["retry-after"] == "7" and e.value.code == "rate_limit_exceeded"
        with pytest.raises(anthropic.RateLimitError) as e2:
            await ant(fake).messages.create(model="m", max_tokens=10, messages=user("hi"))
        assert e2.value.body["error"]["type"] == "rate_limit_error"
        status, headers, raw = await post(fake, "/v1beta/models/m:generateContent", {"contents": [{"parts": [{"text": "hi"}]}]})
        err = json.loads(raw)["error"]
        assert (status, err["code"], err["status"]) == (429, 429, "RESOURCE_EXHAUSTED")
        assert "retry-after" not in headers, "Gemini puts the delay in the body only"
        assert err["details"][0] == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
        assert fake.stats["m"].errors == 3


async def test_overloaded_and_error_codes_reach_the_sdks_as_their_own_errors():
    async with running({"ov": FakeModel(error_status=529),
                        "ctx": FakeModel(error_status=400, error_code="context_length_exceeded"),
                        "small": FakeModel(context_window=3)}) as fake:
        with pytest.raises(anthropic.OverloadedError):
            await ant(fake).messages.create(model="ov", max_tokens=10, messages=user("hi"))
        with pytest.raises(openai.BadRequestError) as e:
            await oai(fake).chat.completions.create(model="ctx", messages=user("hi"))
        assert e.value.code == "context_length_exceeded"
        with pytest.raises(openai.BadRequestError) as e:
            await oai(fake).chat.completions.create(model="small", messages=user("a long prompt, over three tokens"))
        assert e.value.code == "context_length_exceeded" and e.value.param == "messages"
        with pytest.raises(anthropic.BadRequestError) as e2:
            await ant(fake).messages.create(model="small", max_tokens=10, messages=user("a long prompt, over three tokens"))
        assert e2.value.body["error"]["message"].startswith("prompt is too long: 8 tokens > 3 maximum")
        await oai(fake).chat.completions.create(model="small", messages=user("short"))  # within the window


async def test_cut_after_leaves_the_stream_broken_without_its_end_marker():
    async with running(default=FakeModel(reply="abcdefghijklmnopqrstuvwxyz", chunks=6, cut_after=2)) as fake:
        got = ""
        with pytest.raises(openai.APIConnectionError):
            s = await oai(fake).chat.completions.create(model="m", messages=user("hi"), stream=True)
            async for c in s:
                got += c.choices[0].delta.content or ""
        assert got == "abcdefghij", "the two pieces (of 5, 5, 4, 4, 4, 4 letters) before the cut arrive"
        with pytest.raises(http.client.IncompleteRead) as e:
            await post(fake, "/v1beta/models/g:streamGenerateContent?alt=sse", {"contents": [{"parts": [{"text": "hi"}]}]})
        assert b"finishReason" not in e.value.partial and e.value.partial.count(b"data: ") == 2
        st = fake.stats["m"]
        assert (st.output_tokens, st.answers) == (0, 0), "a cut answer reports no usage and is not an answer"


async def test_error_after_sends_the_vendor_error_event_mid_stream():
    async with running(default=FakeModel(reply="abcdefghijkl", chunks=4, error_after=2, error_status=529)) as fake:
        seen = ""
        with pytest.raises(anthropic.APIStatusError) as e:
            async with ant(fake).messages.stream(model="m", max_tokens=10, messages=user("hi")) as s:
                async for text in s.text_stream:
                    seen += text
        assert seen == "abcdef" and e.value.body["error"]["type"] == "overloaded_error"
        with pytest.raises(openai.APIError, match="Overloaded"):
            async for _ in await oai(fake).chat.completions.create(model="m", messages=user("hi"), stream=True):
                pass
        # A non-streaming request fails before its headers, as usual.
        with pytest.raises(openai.APIStatusError) as e3:
            await oai(fake).chat.completions.create(model="m", messages=user("hi"))
        assert e3.value.status_code == 529
        # error_after alone asks for a failure too (503: Anthropic's overloaded_error).
        fake.default = FakeModel(error_after=0)
        with pytest.raises(anthropic.APIStatusError) as e4:
            async with ant(fake).messages.stream(model="m", max_tokens=10, messages=user("hi")) as s:
                await s.get_final_message()
        assert e4.value.body["error"]["type"] == "overloaded_error"


async def test_a_model_flipped_to_failing_fails_its_next_request_and_recovers():
    async with running({"m": FakeModel()}) as fake:
        client = oai(fake)
        await client.chat.completions.create(model="m", messages=user("hi"))
        fake.models["m"].error_status = 503
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="m", messages=user("hi"))
        fake.models["m"] = FakeModel(reply="back")
        r = await client.chat.completions.create(model="m", messages=user("hi"))
        assert r.choices[0].message.content == "back"
        assert (fake.stats["m"].requests, fake.stats["m"].errors) == (3, 1)


async def test_fail_rate_is_seeded_and_close_to_its_rate():
    async def outcomes(seed):
        async with running({"flaky": FakeModel(fail_rate=0.5)}, seed=seed) as fake:
            body = {"model": "flaky", "messages": user("hi")}
            return [(await post(fake, "/v1/chat/completions", body))[0] for _ in range(40)]

    a, b, c = await outcomes(1), await outcomes(1), await outcomes(2)
    assert a == b and a != c
    assert set(a) == {200, 503} and 10 <= a.count(503) <= 30


async def test_require_key_rejects_wrong_and_missing_keys_in_each_vendor_shape():
    async with running(default=FakeModel(require_key="right")) as fake:
        with pytest.raises(openai.AuthenticationError) as e:
            await oai(fake, api_key="wrong").chat.completions.create(model="m", messages=user("hi"))
        assert e.value.code == "invalid_api_key"
        assert fake.requests[-1].api_key == "wrong"
        with pytest.raises(anthropic.AuthenticationError):
            await ant(fake, api_key="wrong").messages.create(model="m", max_tokens=10, messages=user("hi"))
        await ant(fake, api_key="right").messages.create(model="m", max_tokens=10, messages=user("hi"))
        g = {"contents": [{"parts": [{"text": "hi"}]}]}
        status, _, raw = await post(fake, "/v1beta/models/g:generateContent", g, {"x-goog-api-key": "wrong"})
        err = json.loads(raw)["error"]
        assert status == 400 and err["details"][0]["reason"] == "API_KEY_INVALID"
        status, _, _ = await post(fake, "/v1beta/models/g:generateContent", g)
        assert status == 403
        status, _, _ = await post(fake, "/v1beta/models/g:generateContent?key=right", g)
        assert status == 200


async def test_unknown_model_is_404_without_a_default():
    async with running({"known": FakeModel()}) as fake:
        with pytest.raises(openai.NotFoundError) as e:
            await oai(fake).chat.completions.create(model="nope", messages=user("hi"))
        assert e.value.code == "model_not_found"
        with pytest.raises(anthropic.NotFoundError):
            await ant(fake).messages.create(model="nope", max_tokens=10, messages=user("hi"))
        status, _, raw = await post(fake, "/v1beta/models/nope:generateContent", {"contents": [{"parts": [{"text": "x"}]}]})
        assert status == 404 and json.loads(raw)["error"]["status"] == "NOT_FOUND"


async def test_hang_never_answers_and_stop_releases_it():
    async with running(default=FakeModel(hang=True)) as fake:
        with pytest.raises(openai.APITimeoutError):
            await oai(fake, timeout=0.2).chat.completions.create(model="m", messages=user("hi"))
        pending = asyncio.create_task(oai(fake).chat.completions.create(model="m", messages=user("hi")))
        await asyncio.sleep(0.05)
        t = time.perf_counter()
        await fake.stop(grace=0.2)
        with pytest.raises(openai.APIConnectionError):
            await pending
        assert time.perf_counter() - t < 0.5


async def test_latency_and_time_to_first_token():
    async with running(default=FakeModel(latency=0.05, ttft=0.05, inter_token=0.01, chunks=3)) as fake:
        client = oai(fake)
        t = time.perf_counter()
        s = await client.chat.completions.create(model="m", messages=user("hi"), stream=True)
        first = None
        async for c in s:
            if c.choices and c.choices[0].delta.content and first is None:
                first = time.perf_counter() - t
        assert 0.1 <= first < 0.5
        t = time.perf_counter()
        await client.chat.completions.create(model="m", messages=user("hi"))
        assert 0.12 <= time.perf_counter() - t < 0.6, "a whole answer waits for all its tokens"


# ---- records and counters -----------------------------------------------------------------------


async def test_stats_sum_exactly_the_usage_the_clients_saw():
    async with running(default=FakeModel(cached_tokens=1, cache_write_tokens=2)) as fake:
        seen = [0, 0, 0, 0]
        for i in range(3):
            r = await oai(fake).chat.completions.create(model="m", messages=user("q" * (10 + i)))
            seen[0] += r.usage.prompt_tokens
            seen[1] += r.usage.completion_tokens
            seen[2] += r.usage.prompt_tokens_details.cached_tokens
            m = await ant(fake).messages.create(model="m", max_tokens=100, messages=user("z" * (20 + i)))
            u = m.usage
            seen[0] += u.input_tokens + u.cache_read_input_tokens + u.cache_creation_input_tokens
            seen[1] += u.output_tokens
            seen[2] += u.cache_read_input_tokens
            seen[3] += u.cache_creation_input_tokens
        st = fake.stats["m"]
        assert [st.input_tokens, st.output_tokens, st.cache_read_tokens, st.cache_write_tokens] == seen
        assert st.requests == 6 and st.errors == 0 and st.answers == 6


async def test_records_are_bounded_to_the_last_requests():
    async with running(default=FakeModel(), record_limit=3) as fake:
        for i in range(5):
            await oai(fake).chat.completions.create(model=f"m{i}", messages=user("hi"))
        assert [r.model for r in fake.requests] == ["m2", "m3", "m4"]
        assert fake.stats["m0"].requests == 1
        fake.reset()
        assert len(fake.requests) == 0 and not fake.stats


def test_command_line_prints_ready_and_serves():
    cmd = [sys.executable, "-m", "switchman.testing.fake_upstream", "--port", "0", "--latency", "0.01"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={"PYTHONPATH": SRC}) as p:
        try:
            word, port = p.stdout.readline().decode().split()
            assert word == "ready"
            status, _, raw = _post_sync(int(port), "/v1/chat/completions", {"model": "any", "messages": user("ping")}, {})
            assert status == 200 and json.loads(raw)["choices"][0]["message"]["content"] == "echo: ping"
        finally:
            p.terminate()
        assert p.wait(5) == 0
        assert p.stderr.read() == b"", "no warnings or tracebacks on a clean run"


async def test_demo_fleet_names_the_answering_model_and_the_flaky_one_fails_half():
    models = demo_models()
    assert set(models) == {"gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-pro", "gpt-5.5-pro", "flaky-llama",
                           "text-embedding-3-small", "gemini-embedding-001"}
    for m in models.values():  # no waiting in this test
        m.latency = m.ttft = m.inter_token = 0
    async with running(models) as fake:
        r = await oai(fake).chat.completions.create(model="gpt-4o-mini", messages=user("Name three cats."))
        assert "gpt-4o-mini" in r.choices[0].message.content and "Name three cats." in r.choices[0].message.content
        m = await ant(fake).messages.create(model="claude-haiku-4-5", max_tokens=500, messages=user("hi"))
        assert "claude-haiku-4-5" in m.content[0].text
        statuses = [(await post(fake, "/v1/chat/completions", {"model": "flaky-llama", "messages": user("hi")}))[0]
                    for _ in range(30)]
        assert set(statuses) == {200, 503} and 7 <= statuses.count(503) <= 23
