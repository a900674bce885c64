"""The fake upstream's embeddings: OpenAI's ``POST /v1/embeddings`` and Gemini's
``models/{m}:embedContent`` / ``:batchEmbedContents``.

A text's vector is deterministic (``vector``: unit length, from a hash of the text, ``dims`` long,
8 unless the request asks ``dimensions`` / ``outputDimensionality``), so a test can compute what the
gateway must return. OpenAI's answer counts ``prompt_tokens`` as the chat wires do, ``ceil(chars / 4)``
per text; Gemini's, like Gemini's own, reports no usage.
"""

from __future__ import annotations

import hashlib
import math
import struct

import orjson

from .wires import BadRequest

DEFAULT_DIMS = 8


def vector(text: str, dims: int = DEFAULT_DIMS) -> list[float]:
    raw = b""
    i = 0
    while len(raw) < dims * 4:
        raw += hashlib.sha256(f"{i}:{text}".encode()).digest()
        i += 1
    v = [x / 2**31 for x in struct.unpack(f"<{dims}i", raw[: dims * 4])]
    n = math.sqrt(sum(x * x for x in v)) or 1.0
    return [float(struct.unpack("<f", struct.pack("<f", x / n))[0]) for x in v]  # float32, as a vendor sends


def tokens_of(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def read_openai(d: dict) -> tuple[str, list[str], int]:
    """``(model, texts, dims)`` of an OpenAI embeddings body; BadRequest for what OpenAI refuses."""
    model, inp, dims = d.get("model"), d.get("input"), d.get("dimensions") or DEFAULT_DIMS
    if type(model) is not str:
        raise BadRequest("you must provide a model parameter", "model")
    texts = [inp] if type(inp) is str else inp
    if type(texts) is not list or not texts:
        raise BadRequest("'input' is required", "input")
    return model, [t if type(t) is str else " ".join(map(str, t)) for t in texts], int(dims)


def openai_body(model: str, texts: list[str], dims: int) -> bytes:
    n = sum(map(tokens_of, texts))
    return orjson.dumps({"object": "list", "model": model, "usage": {"prompt_tokens": n, "total_tokens": n},
                         "data": [{"object": "embedding", "index": i, "embedding": vector(t, dims)}
                                  for i, t in enumerate(texts)]})


def read_gemini(d: dict, batch: bool) -> tuple[list[str], int]:
    reqs = d.get("requests") if batch else [d]
    if type(reqs) is not list or not reqs:
        raise BadRequest("requests must be a non-empty list", "requests")
    if len(reqs) > 100:  # Gemini's own answer to a bigger batch
        raise BadRequest("BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch", "requests")
    texts, dims = [], DEFAULT_DIMS
    for r in reqs:
        try:
            texts.append("".join(p["text"] for p in r["content"]["parts"]))
        except (KeyError, TypeError):
            raise BadRequest("content.parts[].text is required", "content") from None
        dims = int(r.get("outputDimensionality") or dims)
    return texts, dims


def gemini_body(texts: list[str], dims: int, batch: bool) -> bytes:
    if batch:
        return orjson.dumps({"embeddings": [{"values": vector(t, dims)} for t in texts]})
    return orjson.dumps({"embedding": {"values": vector(texts[0], dims)}})
