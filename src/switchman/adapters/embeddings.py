"""Upstream codecs for embeddings: OpenAI's (and every OpenAI-compatible server's) ``POST
/embeddings``, Gemini's ``models/{m}:embedContent`` and ``:batchEmbedContents``; Anthropic has none.

An embeddings request is a ``ChatRequest`` carrying ``embedding`` (``types.Embedding``), so the
route, the plan, retries and fallbacks, budgets and the ledger treat it as they treat chat. The
answer is a ``ChatResponse`` with no parts: its ``raw`` holds ``{"vectors": [[float, ...], ...]}``
in input order, and its usage the input tokens (the upstream's count; Gemini reports none, so its
are counted by the ledger with the shipped tokenizer and marked estimated). Errors are the wire's own,
classified by that wire's chat adapter.

Shapes: ``openai/types/embedding_create_params.py`` and ``create_embedding_response.py`` (the
installed SDK); ai.google.dev/api/embeddings (``EmbedContentRequest``: ``content``,
``outputDimensionality``; ``BatchEmbedContentsRequest``: ``requests``; answers ``embedding.values``
and ``embeddings[].values``).
"""

from __future__ import annotations

import base64
import secrets
import struct
import time
from typing import TYPE_CHECKING

import orjson

from ..errors import Unsupported, UpstreamError, UpstreamStatus
from ..providers import auth_headers
from ..types import ChatRequest, ChatResponse, FinishReason, Usage
from .base import Adapter, StreamDecoder, UpstreamCall
from .gemini import DEFAULT_BASE_URL, GeminiAdapter
from .openai import OpenAIAdapter, _headers, _url

if TYPE_CHECKING:
    from ..config import ModelSpec


def _answer(model: ModelSpec, vectors: list, used: int | None) -> ChatResponse:
    """``used`` None (no count from the upstream): the ledger counts the input with the shipped
    tokenizer and marks it estimated, as it does for any answer without usage."""
    return ChatResponse(id="emb-" + secrets.token_hex(12), model=model.upstream, parts=[],
                        finish_reason=FinishReason.STOP, usage=Usage(input_tokens=used) if used is not None else None,
                        created=int(time.time()), dialect="embeddings", raw={"vectors": vectors})


def _bad(model: ModelSpec, why: str) -> UpstreamStatus:
    return UpstreamStatus(f"{model.name} sent an embeddings answer that {why}", model=model.name, upstream_status=200)


class OpenAIEmbeddings(Adapter):
    kind = "openai"
    _errors = OpenAIAdapter()

    def build(self, req: ChatRequest, model: ModelSpec) -> UpstreamCall:
        e = req.embedding
        body: dict = {"model": model.upstream, "input": e.inputs, "encoding_format": "float"}  # type: ignore[union-attr]
        if e.dimensions is not None:  # type: ignore[union-attr]
            body["dimensions"] = e.dimensions  # type: ignore[union-attr]
        if req.user:
            body["user"] = req.user
        url = _url(model).replace("/chat/completions", "/embeddings")
        return UpstreamCall("POST", url, _headers(req, model), orjson.dumps(body))

    def parse(self, body: bytes, model: ModelSpec) -> ChatResponse:
        try:
            d = orjson.loads(body)
            data = sorted(d["data"], key=lambda x: x.get("index", 0))
            vectors = [_vector(x["embedding"]) for x in data]
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError, struct.error):
            raise _bad(model, "holds no 'data' of embeddings") from None
        u = d.get("usage") if type(d.get("usage")) is dict else {}
        n = u.get("prompt_tokens")
        return _answer(model, vectors, n if type(n) is int and n >= 0 else None)

    def stream_decoder(self, model: ModelSpec, keep_raw: bool = False) -> StreamDecoder:
        raise Unsupported("embeddings do not stream", param="stream")

    def error(self, status: int, headers: dict[str, str], body: bytes, model: ModelSpec) -> UpstreamError:
        return self._errors.error(status, headers, body, model)


def _vector(v: object) -> list[float]:
    if type(v) is list:
        return v
    if type(v) is str:  # a server that answers base64 whatever was asked
        raw = base64.b64decode(v)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    raise ValueError("not a vector")


GEMINI_BATCH = 100  # batchEmbedContents refuses more: "at most 100 requests can be in one batch"


class GeminiEmbeddings(Adapter):
    kind = "gemini"
    _errors = GeminiAdapter()

    def build(self, req: ChatRequest, model: ModelSpec) -> UpstreamCall:
        e = req.embedding
        texts = e.inputs  # type: ignore[union-attr]
        if any(type(t) is not str for t in texts):
            raise Unsupported(f"token-id input cannot be embedded by {model.name} (Gemini takes text)", param="input")
        p = model.provider
        name = "models/" + model.upstream.removeprefix("models/")

        def one(text: str) -> dict:
            r: dict = {"content": {"parts": [{"text": text}]}}
            if e.dimensions is not None:  # type: ignore[union-attr]
                r["outputDimensionality"] = e.dimensions  # type: ignore[union-attr]
            return r

        base = f"{(p.base_url or DEFAULT_BASE_URL).rstrip('/')}/v1beta/{name}"
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        headers.update(auth_headers(p.auth, p.api_key))
        for k, v in p.headers:
            headers[k] = v
        if len(texts) == 1:
            return UpstreamCall("POST", base + ":embedContent", headers, orjson.dumps(one(texts[0])))
        calls = [UpstreamCall("POST", base + ":batchEmbedContents", headers,
                              orjson.dumps({"requests": [{"model": name, **one(t)} for t in texts[i:i + GEMINI_BATCH]]}))
                 for i in range(0, len(texts), GEMINI_BATCH)]
        first = calls[0]
        first.more = tuple(calls[1:])
        return first

    def join(self, parts: list[ChatResponse], model: ModelSpec) -> ChatResponse:
        vectors = [v for r in parts for v in r.raw["vectors"]]  # type: ignore[index]
        counts = [r.usage.input_tokens for r in parts if r.usage is not None]
        return _answer(model, vectors, sum(counts) if len(counts) == len(parts) else None)

    def parse(self, body: bytes, model: ModelSpec) -> ChatResponse:
        try:
            d = orjson.loads(body)
            items = d["embeddings"] if "embeddings" in d else [d["embedding"]]
            vectors = [list(x["values"]) for x in items]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise _bad(model, "holds no embedding values") from None
        meta = d.get("usageMetadata") if type(d.get("usageMetadata")) is dict else {}
        n = meta.get("promptTokenCount")
        return _answer(model, vectors, n if type(n) is int and n >= 0 else None)

    def stream_decoder(self, model: ModelSpec, keep_raw: bool = False) -> StreamDecoder:
        raise Unsupported("embeddings do not stream", param="stream")

    def error(self, status: int, headers: dict[str, str], body: bytes, model: ModelSpec) -> UpstreamError:
        return self._errors.error(status, headers, body, model)


class NoEmbeddings(Adapter):
    """Anthropic's API has no embeddings endpoint: a clear refusal, and the plan moves on."""

    kind = "anthropic"

    def build(self, req: ChatRequest, model: ModelSpec) -> UpstreamCall:
        raise Unsupported(f"'{model.name}' is served through Anthropic's API, which has no embeddings", param="model")

    def parse(self, body: bytes, model: ModelSpec) -> ChatResponse:
        raise AssertionError("never called: build refuses")

    def stream_decoder(self, model: ModelSpec, keep_raw: bool = False) -> StreamDecoder:
        raise AssertionError("never called: build refuses")

    def error(self, status: int, headers: dict[str, str], body: bytes, model: ModelSpec) -> UpstreamError:
        raise AssertionError("never called: build refuses")
