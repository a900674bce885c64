"""A fake LLM upstream on loopback that speaks the OpenAI, Anthropic and Gemini wire APIs on one port.

One ``FakeUpstream`` can stand in for any provider: the path picks the wire, the model id picks the
behaviour (a ``FakeModel``). Behaviour can be changed while it runs (tests flip a model to failing
mid-test by assigning ``fake.models[id]`` or a field of it), and every request is recorded, so tests
can check what reached the "provider" (which model id, and that no client credential leaked).

Endpoints (``url(kind)`` gives each SDK's base URL):

- ``POST /v1/chat/completions``; Azure style ``/openai/deployments/{dep}/chat/completions`` (the
  deployment is the model id, the key may come in ``api-key``)
- ``POST /v1/messages``
- ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent`` (``?alt=sse``:
  server-sent events; without it a streamed JSON array)

Timing: ``latency`` passes before the headers; a stream then sends its opening events, waits
``ttft`` before the first token and ``inter_token`` between pieces. A non-streaming answer comes
whole after ``latency + ttft + inter_token * (pieces - 1)``, like a real model's.

Tokens are counted deterministically: input is ``ceil(chars / 4)`` of the text of the system prompt
and messages (tool results included; images, tool definitions and tool-call arguments not), output
``ceil(chars / 4)`` of the reply (for a call: its name and JSON arguments). ``stats`` sums the usage
each *completed* answer reported, in the canonical convention (input counts cached tokens too), so
a ledger test can compare totals exactly; a cut stream and an OpenAI stream without
``include_usage`` report none.

Prompt caching: a model reports its fixed ``cached_tokens`` / ``cache_write_tokens``, or, with
``prompt_caching``, what the wire's vendor would under its own caching rules (``prompt_cache``:
Anthropic's breakpoints, OpenAI's and Gemini's automatic prefix caches), timed by ``clock``.

A refused connection needs no switch: point the client at a port where no fake is running (e.g. one
that was started and stopped).

Benchmarks run it as ``python -m switchman.testing.fake_upstream --port P [--latency S]``, which
prints ``ready <port>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time
import zlib
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

import orjson

from ..http.server import HttpServer, Request, Response, StreamingResponse
from . import behave, embed_wire
from .prompt_cache import CacheUse, PromptCaches
from .responses_wire import ResponsesWire
from .wires import CONTEXT_LENGTH, Answer, AnthropicWire, BadRequest, Call, GeminiWire, OpenAIWire, Wire

_ECHO_LIMIT = 200  # characters of the prompt the default reply echoes
_FAIL_STATUS = 503  # when a failure is asked for without a status


def _default_tool_arguments() -> dict:
    return {"query": "weather in Paris", "units": "metric", "limit": 3}


@dataclass(slots=True)
class FakeModel:
    """How one upstream model id behaves. Fields may be changed while the fake runs."""

    reply: str | Callable[[str], str] | None = None
    """The answer's text, or a function of the last user text; default ``"echo: <last user text>"``."""
    tool_call: bool = True
    """When the request offers tools (and does not forbid a call), answer with a call of the first
    tool (or the one ``tool_choice`` names) with ``tool_arguments``."""
    tool_arguments: dict = field(default_factory=_default_tool_arguments)
    latency: float = 0.0
    """Seconds before the response headers."""
    ttft: float = 0.0
    """Seconds from the headers to the first token."""
    inter_token: float = 0.0
    """Seconds between streamed pieces."""
    chunks: int = 4
    """Pieces the text (or a call's arguments) is split into when streamed."""
    error_status: int | None = None
    """Fail with this status (in the vendor's error shape): every request, or a ``fail_rate`` share.
    Setting only ``fail_rate`` or ``error_after`` fails with 503."""
    error_code: str | None = None
    """The vendor's error code: OpenAI ``error.code``, Anthropic ``error.type``, Gemini ``error.status``.
    ``"context_length_exceeded"`` gives each vendor's own context-window error."""
    error_message: str | None = None
    retry_after: float | None = None
    """Sent with an error: ``retry-after`` (and ``retry-after-ms``) headers on OpenAI and Anthropic,
    a ``google.rpc.RetryInfo`` detail on Gemini, as each vendor does."""
    fail_rate: float | None = None
    """Share (0..1) of requests that fail, drawn from a seeded RNG per model id. ``None``: every
    request fails if ``error_status`` or ``error_after`` is set, else none."""
    error_after: int | None = None
    """Where a failing *stream* fails: after this many content events, with the vendor's in-stream
    error event after a 200, instead of before the headers. Non-streaming requests still fail
    before the headers."""
    cut_after: int | None = None
    """Streams: drop the connection after this many content events, with no end marker. Non-streaming
    answers: drop it after half the body."""
    hang: bool = False
    """Never answer (until the fake stops, or the client gives up)."""
    cached_tokens: int = 0
    """Input tokens reported as read from cache (at most all of them)."""
    cache_write_tokens: int = 0
    """Input tokens reported as written to cache (Anthropic's ``cache_creation_input_tokens``)."""
    cache_write_1h_tokens: int = 0
    """Of those, the ones reported as written to the 1-hour cache (``cache_creation.ephemeral_1h_input_tokens``)."""
    prompt_caching: bool = False
    """Report what the wire's vendor would read from and write to its prompt cache for each request
    (``prompt_cache``), instead of the three fixed figures above."""
    min_cache_tokens: int = 1024
    """With ``prompt_caching``: the shortest prefix cached on the Anthropic and Gemini wires (OpenAI's
    is always 1,024)."""
    context_window: int | None = None
    """A prompt of more tokens than this gets the vendor's context-window error."""
    require_key: str | None = None
    """The API key the request must carry; a wrong or missing one gets the vendor's auth error."""
    usage: dict | None = None
    """Fields laid over the usage the wire reports, in that wire's own names (OpenAI
    ``completion_tokens``, Anthropic ``output_tokens``, Gemini ``candidatesTokenCount``), with any
    value a broken upstream might send (negative, huge, fractional, a string); ``None`` as a value
    removes the field. ``stats`` still counts the true usage."""
    behave: bool = False
    """Behave like a model for clients that depend on it (``behave.py``): a JSON instance of the
    requested schema in JSON mode, tool arguments built from the tool's schema, and a final text
    answer once the last turn is a tool's result. The demo fleet's models do."""
    logprob: float | None = None
    """The answer's mean token logprob: OpenAI's ``logprobs.content`` when the request asks for
    logprobs, Gemini's ``avgLogprobs`` always (as Gemini does); Anthropic has none."""


@dataclass(slots=True)
class RecordedRequest:
    """One request as the fake received it."""

    wire: str  # "openai", "azure", "anthropic", "gemini"
    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-case
    body: bytes | None
    json: dict | None  # the parsed body
    model: str | None = None  # the model id it asked for
    stream: bool = False
    api_key: str | None = None  # the credential found where this wire carries it


@dataclass(slots=True)
class ModelStats:
    """Per model id: requests received, error answers, and the answers completed with the usage
    they reported."""

    requests: int = 0
    errors: int = 0
    answers: int = 0  # answers sent whole (a cut or abandoned one is not)
    input_tokens: int = 0  # every prompt token, cached or not
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0  # every cache write ...
    cache_write_1h_tokens: int = 0  # ... of which 1-hour writes

    def add(self, a: Answer) -> None:
        self.answers += 1
        self.input_tokens += a.input_tokens
        self.output_tokens += a.output_tokens
        self.cache_read_tokens += a.cache_read
        self.cache_write_tokens += a.cache_write
        self.cache_write_1h_tokens += a.cache_write_1h


_OPENAI = OpenAIWire()
_AZURE = OpenAIWire(azure=True)
_ANTHROPIC = AnthropicWire()
_GEMINI = GeminiWire()
_RESPONSES = ResponsesWire()
_EXACT = {"/v1/chat/completions": _OPENAI, "/v1/messages": _ANTHROPIC, "/v1/responses": _RESPONSES}
_JSON = "application/json"


def _ceil4(n: int) -> int:
    return max(1, (n + 3) // 4)


def _split(s: str, n: int) -> list[str]:
    n = max(1, min(n, len(s)))
    q, r = divmod(len(s), n)
    out = []
    i = 0
    for k in range(n):
        j = i + q + (k < r)
        out.append(s[i:j])
        i = j
    return out


class FakeUpstream:
    """A fake provider serving ``models`` (upstream model id -> behaviour) on one loopback port.

    Unknown ids use ``default``, or get the vendor's 404 if it is ``None``. ``requests`` (a deque)
    keeps the last ``record_limit`` requests, newest last; ``stats`` counts per model id (an id never
    asked for reads as zeros). ``seed`` seeds the ``fail_rate`` draws. ``clock`` times prompt-cache
    entries and ``machines`` is how many cache machines OpenAI's prompts spread over (for models
    with ``prompt_caching``).
    """

    def __init__(self, models: dict[str, FakeModel] | None = None, default: FakeModel | None = None, *,
                 seed: int = 0, record_limit: int = 1000, clock: Callable[[], float] = time.monotonic,
                 machines: int = 4) -> None:
        self.models: dict[str, FakeModel] = dict(models or {})
        self.default = default
        self.seed = seed
        self.requests: deque[RecordedRequest] = deque(maxlen=record_limit)
        self.stats: defaultdict[str, ModelStats] = defaultdict(ModelStats)
        self.inflight: Counter[str] = Counter()  # requests being answered now, per model id (until the headers)
        self.prompt_caches = PromptCaches(clock, machines)
        self.host = "127.0.0.1"
        self.port = 0
        self._rngs: dict[str, random.Random] = {}
        self._seq = 0
        self._http = HttpServer(self._handle)
        self._stopping: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Listen on ``host:port`` (0: any free port); returns the port."""
        self._stopping = asyncio.Event()
        self.port = await self._http.start(host, port)
        self.host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return self.port

    async def stop(self, grace: float = 1.0) -> None:
        """Stop listening; hung requests are dropped, streams get ``grace`` seconds to finish."""
        if self._stopping is not None:
            self._stopping.set()
        await self._http.stop(grace=grace)
        for _ in range(3):  # let the cancelled handlers of closed connections unwind
            await asyncio.sleep(0)

    def url(self, kind: str) -> str:
        """The base URL in each SDK's convention: ``openai`` ends in ``/v1``; ``anthropic``,
        ``gemini`` and ``azure`` (an Azure endpoint) do not."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        base = f"http://{host}:{self.port}"
        if kind == "openai":
            return base + "/v1"
        if kind in ("anthropic", "gemini", "azure"):
            return base
        raise ValueError(f"unknown wire kind {kind!r}: expected openai, anthropic, gemini or azure")

    def reset(self) -> None:
        """Forget recorded requests, counters, random draws and prompt caches."""
        self.requests.clear()
        self.stats.clear()
        self._rngs.clear()
        self.prompt_caches.clear()

    # -- serving -----------------------------------------------------------------------------------
    def _route(self, path: str) -> tuple[Wire, str | None, bool] | None:
        w = _EXACT.get(path)
        if w is not None:
            return w, None, False
        if path.startswith(("/v1beta/models/", "/v1/models/")):
            model, _, method = path.partition("/models/")[2].partition(":")
            if method == "generateContent":
                return _GEMINI, model, False
            if method == "streamGenerateContent":
                return _GEMINI, model, True
            return None
        if path.startswith("/openai/deployments/") and path.endswith("/chat/completions"):
            return _AZURE, path[20:-17], False
        return None

    def _count(self, req: Request) -> Response:
        """Anthropic's ``count_tokens``, OpenAI's ``responses/input_tokens`` and Gemini's ``countTokens``: the input tokens the same
        request would be billed (the fake's own count), recorded like any request."""
        gemini = req.path.endswith(":countTokens")
        wire = _GEMINI if gemini else _RESPONSES if req.path.startswith("/v1/responses") else _ANTHROPIC
        rec = RecordedRequest(wire.name, req.method, req.path, req.query, req.headers, req.body, None,
                              api_key=wire.credential(req.headers, req.query))
        self.requests.append(rec)
        try:
            d = orjson.loads(req.body or b"")
            if gemini:
                model = req.path.partition("/models/")[2].partition(":")[0]
                call = wire.read(d["generateContentRequest"], model, False, req.query)
            elif wire is _RESPONSES:
                call = wire.read(d, None, False, req.query)
            else:
                call = wire.read({**d, "max_tokens": 1}, None, False, req.query)
        except (orjson.JSONDecodeError, KeyError, TypeError) as e:
            return self._error(wire.bad_request(BadRequest(f"bad count request: {e}")))
        except BadRequest as e:
            return self._error(wire.bad_request(e))
        n = _ceil4(call.prompt_chars)
        if wire is _RESPONSES:
            return Response(200, orjson.dumps({"object": "response.input_tokens", "input_tokens": n}),
                            {"content-type": _JSON})
        return Response(200, orjson.dumps({"totalTokens": n} if gemini else {"input_tokens": n}),
                        {"content-type": _JSON})

    def _embed(self, req: Request) -> Response:
        """Embeddings on the OpenAI and Gemini wires (``embed_wire``), failing as the model is set to."""
        gemini = not req.path.endswith("/embeddings")
        batch = req.path.endswith(":batchEmbedContents")
        wire = _GEMINI if gemini else _OPENAI
        rec = RecordedRequest(wire.name, req.method, req.path, req.query, req.headers, req.body, None,
                              api_key=wire.credential(req.headers, req.query))
        self.requests.append(rec)
        try:
            d = orjson.loads(req.body or b"")
            rec.json = d
            if gemini:
                model = req.path.partition("/models/")[2].partition(":")[0]
                texts, dims = embed_wire.read_gemini(d, batch)
            else:
                model, texts, dims = embed_wire.read_openai(d)
        except (orjson.JSONDecodeError, AttributeError):
            return self._error(wire.bad_request(BadRequest("We could not parse the JSON body of your request.")))
        except BadRequest as e:
            return self._error(wire.bad_request(e))
        rec.model = model
        st = self.stats[model]
        st.requests += 1
        spec = self.models.get(model) or self.default
        if spec is None:
            return self._error(wire.not_found(model), st)
        if self._fails(model, spec):
            return self._error(wire.error(spec.error_status or _FAIL_STATUS, spec.error_code, spec.error_message,
                                          spec.retry_after), st, wire, spec.retry_after)
        st.answers += 1
        if not gemini:
            st.input_tokens += sum(map(embed_wire.tokens_of, texts))
        body = embed_wire.gemini_body(texts, dims, batch) if gemini else embed_wire.openai_body(model, texts, dims)
        return Response(200, body, {"content-type": _JSON, **self._ids(wire)})

    async def _handle(self, req: Request) -> Response | StreamingResponse:
        if req.method == "POST" and (req.path in ("/v1/messages/count_tokens", "/v1/responses/input_tokens")
                                     or req.path.endswith(":countTokens")):
            return self._count(req)
        if req.method == "POST" and (req.path == "/v1/embeddings" or req.path.endswith(
                (":embedContent", ":batchEmbedContents"))):
            return self._embed(req)
        route = self._route(req.path)
        if route is None or req.method != "POST":
            msg = f"Unknown request URL: {req.method} {req.path}."  # OpenAI's words for it
            err = {"error": {"message": msg, "type": "invalid_request_error", "param": None, "code": "unknown_url"}}
            return Response(404, orjson.dumps(err), {"content-type": _JSON})
        wire, path_model, path_stream = route
        rec = RecordedRequest(wire.name, req.method, req.path, req.query, req.headers, req.body, None,
                              api_key=wire.credential(req.headers, req.query))
        self.requests.append(rec)
        if req.body is None:
            return self._error(wire.error(413, None, "Request body too large."))
        try:
            d = orjson.loads(req.body)
            if type(d) is not dict:
                raise BadRequest("The request body must be a JSON object.")
            rec.json = d
            call = wire.read(d, path_model, path_stream, req.query)
        except orjson.JSONDecodeError:
            return self._error(wire.bad_request(BadRequest("We could not parse the JSON body of your request.")))
        except BadRequest as e:
            return self._error(wire.bad_request(e))
        rec.model = call.model
        rec.stream = call.stream
        self.inflight[call.model] += 1
        try:
            return await self._serve(req, wire, call, rec)
        finally:
            self.inflight[call.model] -= 1

    async def _serve(self, req: Request, wire: Wire, call: Call, rec: RecordedRequest) -> Response | StreamingResponse:
        st = self.stats[call.model]
        st.requests += 1
        spec = self.models.get(call.model)
        if spec is None:
            spec = self.default
        if spec is None:
            return self._error(wire.not_found(call.model), st)
        if spec.require_key is not None and rec.api_key != spec.require_key:
            return self._error(wire.unauthorized(rec.api_key is not None), st)
        if spec.hang:
            await self._hang(req)
        if spec.latency > 0:
            await asyncio.sleep(spec.latency)

        prompt = _ceil4(call.prompt_chars)
        failing = self._fails(call.model, spec)
        if failing and not (call.stream and spec.error_after is not None):
            if spec.error_code == CONTEXT_LENGTH:
                return self._error(wire.too_long(prompt, spec.context_window or max(1, prompt - 1)), st)
            return self._error(wire.error(spec.error_status or _FAIL_STATUS, spec.error_code, spec.error_message,
                                          spec.retry_after), st, wire, spec.retry_after)
        if spec.context_window is not None and prompt > spec.context_window:
            return self._error(wire.too_long(prompt, spec.context_window), st)
        use = None
        if spec.prompt_caching:
            try:
                use = self.prompt_caches.use(wire.name, call.model, rec.json or {}, spec.min_cache_tokens)
            except BadRequest as e:
                return self._error(wire.bad_request(e), st)

        a = self._answer(call, spec, prompt, wire, use, rec.json if spec.behave else None)
        if call.stream:
            ctype = wire.stream_type if call.sse else _JSON
            return StreamingResponse(200, self._stream(req, wire, a, spec, st, failing),
                                     {"content-type": ctype, **self._ids(wire)})
        delay = spec.ttft + spec.inter_token * (len(a.pieces) - 1)
        if delay > 0:
            await asyncio.sleep(delay)
        body = wire.body(a)
        headers = {"content-type": _JSON, **self._ids(wire)}
        if spec.cut_after is not None:
            return StreamingResponse(200, self._cut_body(req, body), headers)
        st.add(a)
        return Response(200, body, headers)

    def _ids(self, wire: Wire) -> dict[str, str]:
        # The request-id header each vendor sends; SDKs surface it on errors.
        return {"request-id": "req_fake"} if wire is _ANTHROPIC else {"x-request-id": "req_fake"}

    def _error(self, err: tuple[int, bytes], st: ModelStats | None = None, wire: Wire | None = None,
               retry_after: float | None = None) -> Response:
        status, body = err
        headers = {"content-type": _JSON}
        if retry_after is not None and wire is not _GEMINI:
            headers["retry-after"] = f"{retry_after:g}"
            headers["retry-after-ms"] = str(int(retry_after * 1000))
        if st is not None:
            st.errors += 1
        return Response(status, body, headers)

    def _fails(self, model: str, spec: FakeModel) -> bool:
        if spec.fail_rate is not None:
            rate = spec.fail_rate
        else:
            rate = 1.0 if spec.error_status is not None or spec.error_after is not None else 0.0
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        rng = self._rngs.get(model)
        if rng is None:  # seeded per model id, so one model's draws do not depend on another's traffic
            rng = self._rngs[model] = random.Random(self.seed ^ zlib.crc32(model.encode()))
        return rng.random() < rate

    def _answer(self, call: Call, spec: FakeModel, prompt: int, wire: Wire, use: CacheUse | None = None,
                body: dict | None = None) -> Answer:
        self._seq += 1
        n = self._seq
        args_for = spec.tool_arguments
        if body is not None:  # FakeModel.behave
            if call.tool is not None and behave.after_tool_result(body, wire.name) and not behave.forced(body, wire.name):
                call = replace(call, tool=None)
            elif call.tool is not None:
                schema = behave.tool_schema(body, wire.name, call.tool)
                if isinstance(schema, dict):
                    args_for = behave.instance(schema)
        if use is None:
            cached = min(spec.cached_tokens, prompt)
            written = min(spec.cache_write_tokens, prompt - cached) if wire is _ANTHROPIC else 0
            use = CacheUse(cached, written, min(spec.cache_write_1h_tokens, written))
        if call.tool is not None and spec.tool_call:
            args = orjson.dumps(args_for).decode()
            pieces = _split(args, max(2, spec.chunks))
            tool: str | None = call.tool
            out = _ceil4(len(call.tool) + len(args))
            finish = "tool"
        else:
            r = spec.reply
            if r is None:
                text = "echo: " + call.last_user[:_ECHO_LIMIT]
            else:
                text = r if type(r) is str else r(call.last_user)
            if body is not None:
                wants_json, schema = behave.answer_schema(body, wire.name)
                if wants_json:
                    text = orjson.dumps(behave.instance(schema) if isinstance(schema, dict) else {"answer": text}).decode()
            finish = "stop"
            if call.max_tokens is not None and _ceil4(len(text)) > call.max_tokens:
                text = text[:max(0, call.max_tokens) * 4]
                finish = "length"
            pieces = _split(text, spec.chunks)
            tool = None
            out = _ceil4(len(text))
        prefix = {"anthropic": "msg_fake", "gemini": "fake-"}.get(wire.name, "chatcmpl-fake")
        call_prefix = "toolu_fake" if wire is _ANTHROPIC else "call_fake"
        return Answer(
            id=f"{prefix}{n:016x}", call_id=f"{call_prefix}{n:016x}", model=call.model, created=int(time.time()),
            pieces=pieces, tool=tool, arguments=args_for if tool else None, finish=finish,
            input_tokens=prompt, output_tokens=out, cache_read=use.read, cache_write=use.write,
            cache_write_1h=use.write_1h,
            include_usage=call.include_usage, sse=call.sse,
            logprob=spec.logprob if call.logprobs and not tool else None, usage_override=spec.usage,
            searches=call.searches,
        )

    async def _stream(self, req: Request, wire: Wire, a: Answer, spec: FakeModel, st: ModelStats,
                      failing: bool) -> AsyncIterator[bytes]:
        head, content, tail = wire.frames(a)
        if head:
            yield b"".join(head)
        if spec.ttft > 0:
            await asyncio.sleep(spec.ttft)
        cut = spec.cut_after
        err_at = spec.error_after if failing else None
        gap = spec.inter_token
        for i, frame in enumerate(content):
            if i == cut:
                await self._drop(req)
            if i == err_at:
                st.errors += 1
                yield wire.stream_error(spec.error_status or _FAIL_STATUS, spec.error_code, spec.error_message)
                return
            if i and gap > 0:
                await asyncio.sleep(gap)
            yield frame
        if cut is not None:
            await self._drop(req)
        if err_at is not None:
            st.errors += 1
            yield wire.stream_error(spec.error_status or _FAIL_STATUS, spec.error_code, spec.error_message)
            return
        yield b"".join(tail)
        st.add(a)

    async def _cut_body(self, req: Request, body: bytes) -> AsyncIterator[bytes]:
        yield body[: len(body) // 2]
        await self._drop(req)

    async def _hang(self, req: Request) -> None:
        assert self._stopping is not None
        await self._stopping.wait()
        await self._drop(req)

    async def _drop(self, req: Request) -> None:
        """Close the request's connection mid-answer, and never return.

        The server has no public way to abort a response (a failing stream generator leaves the
        connection open), so the fake finds its connection by peer address and closes the
        transport: what was written is flushed, then the client sees the connection end without
        the chunked terminator, and the server cancels this handler (connection_lost)."""
        for conn in list(self._http.conns):
            if conn.peer == req.client and conn.transport is not None:
                conn.transport.close()
                break
        await asyncio.get_running_loop().create_future()


# ---- command line --------------------------------------------------------------------------------


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m switchman.testing.fake_upstream",
                                description="A fake OpenAI/Anthropic/Gemini upstream for tests and benchmarks.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before the headers")
    p.add_argument("--ttft", type=float, default=0.0, help="seconds to the first token")
    p.add_argument("--inter-token", type=float, default=0.0, help="seconds between streamed pieces")
    p.add_argument("--chunks", type=int, default=4, help="pieces a streamed answer is split into")
    p.add_argument("--demo", action="store_true", help="serve the demo fleet's models too")
    return p.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    models = None
    if args.demo:
        from .fleet import demo_models

        models = demo_models()
    default = FakeModel(latency=args.latency, ttft=args.ttft, inter_token=args.inter_token, chunks=args.chunks)
    fake = FakeUpstream(models, default=default)
    port = await fake.start(args.host, args.port)
    print(f"ready {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await fake.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        import uvloop  # the benchmark must not be limited by the fake: uvloop serves more per core

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:  # pragma: no cover - uvloop is a core dependency on Linux
        pass
    asyncio.run(_serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
