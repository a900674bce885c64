"""OpenAI's embeddings API, ``POST /v1/embeddings``, as the ``openai`` SDK, LangChain's
``OpenAIEmbeddings`` and litellm speak it (``openai/types/embedding_create_params.py``,
``create_embedding_response.py``).

The request becomes a ``ChatRequest`` with ``embedding`` set (one user message holding the input
text, so routes, rules, budgets and the tokenizer see what is embedded); any route or model serves
it, through each wire's embeddings API (``adapters/embeddings.py``). ``input`` is a string, an
array of strings, or token ids (an array of integers, or of such arrays: OpenAI's own API takes
those; Gemini does not, and says so). ``encoding_format: base64`` (the SDK's default) returns each
vector as little-endian float32 in base64, exactly as OpenAI does. Embeddings never stream and are
not kept by the answer cache.
"""

from __future__ import annotations

import base64
import struct

import orjson

from ..errors import InvalidRequest, SwitchmanError
from ..types import ChatRequest, ChatResponse, Embedding, Message, Role, TextPart
from .base import Dialect, StreamEncoder
from .openai import _error_dict

MAX_INPUTS = 2048  # OpenAI's own limit on inputs per request


def _fail(param: str, msg: str) -> InvalidRequest:
    return InvalidRequest(f"'{param}' {msg}", param=param)


def _inputs(v: object) -> list:
    if type(v) is str:
        if not v:
            raise _fail("input", "must not be empty")
        return [v]
    if type(v) is not list or not v:
        raise _fail("input", "must be a string, an array of strings, or token ids")
    if len(v) > MAX_INPUTS:
        raise _fail("input", f"holds {len(v)} inputs; at most {MAX_INPUTS} per request")
    if all(type(x) is int for x in v):
        return [v]  # one input as token ids
    for i, x in enumerate(v):
        if type(x) is str:
            if not x:
                raise _fail(f"input[{i}]", "must not be empty")
        elif type(x) is list and x and all(type(t) is int for t in x):
            continue
        else:
            raise _fail(f"input[{i}]", "must be a non-empty string or an array of token ids")
    return v


def decode(body: object) -> ChatRequest:
    if type(body) is not dict:
        raise InvalidRequest("the request body must be a JSON object")
    model = body.get("model")
    if type(model) is not str or not model:
        raise _fail("model", "must be a non-empty string")
    inputs = _inputs(body.get("input"))
    fmt = body.get("encoding_format", "float")
    if fmt not in (None, "float", "base64"):
        raise _fail("encoding_format", "must be 'float' or 'base64'")
    dims = body.get("dimensions")
    if dims is not None and (type(dims) is not int or dims < 1):
        raise _fail("dimensions", "must be a positive integer")
    user = body.get("user")
    if user is not None and type(user) is not str:
        raise _fail("user", "must be a string")
    text = "\n".join(x if type(x) is str else " ".join(map(str, x)) for x in inputs)
    return ChatRequest(model=model, messages=[Message(Role.USER, [TextPart(text)])], max_tokens=1, user=user,
                       dialect="embeddings", raw=body, embedding=Embedding(inputs, dims, fmt == "base64"))


def _b64(v: list) -> str:
    return base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()


class EmbeddingsDialect(Dialect):
    kind = "embeddings"

    def decode(self, body: object) -> ChatRequest:
        return decode(body)

    def encode(self, resp: ChatResponse, req: ChatRequest) -> bytes:
        vectors = (resp.raw or {}).get("vectors") or []
        b64 = req.embedding is not None and req.embedding.base64
        data = [{"object": "embedding", "index": i, "embedding": _b64(v) if b64 else v} for i, v in enumerate(vectors)]
        n = resp.usage.input_tokens if resp.usage is not None else 0
        return orjson.dumps({"object": "list", "data": data, "model": resp.model or req.model,
                             "usage": {"prompt_tokens": n, "total_tokens": n}})

    def stream_encoder(self, req: ChatRequest) -> StreamEncoder:
        raise InvalidRequest("embeddings do not stream", param="stream")

    def encode_error(self, err: SwitchmanError) -> bytes:
        return orjson.dumps({"error": _error_dict(err)})
