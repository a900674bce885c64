"""Upstream adapters, one per wire API, found by the provider's ``wire`` (a registry, not a
ladder of ``if kind == ...``)."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from typing import TYPE_CHECKING

from .base import Adapter

if TYPE_CHECKING:
    from ..config import ModelSpec
    from ..types import ChatRequest

_REGISTRY = {
    "openai": ("switchman.adapters.openai", "OpenAIAdapter"),
    "anthropic": ("switchman.adapters.anthropic", "AnthropicAdapter"),
    "gemini": ("switchman.adapters.gemini", "GeminiAdapter"),
}
WIRES = tuple(_REGISTRY)
_REGISTRY["responses"] = ("switchman.adapters.responses", "ResponsesAdapter")  # a model's ``api: responses``
_REGISTRY.update({  # the embeddings API of each wire
    "embed-openai": ("switchman.adapters.embeddings", "OpenAIEmbeddings"),
    "embed-anthropic": ("switchman.adapters.embeddings", "NoEmbeddings"),
    "embed-gemini": ("switchman.adapters.embeddings", "GeminiEmbeddings"),
})


@cache
def adapter_for(wire: str) -> Adapter:
    """The (stateless, shared) adapter for a wire API."""
    module, name = _REGISTRY[wire]
    return getattr(import_module(module), name)()


def adapter_of(req: ChatRequest, model: ModelSpec) -> Adapter:
    """The codec for ``req`` at ``model``: its own API (``ModelSpec.wire``), or its provider's
    embeddings API."""
    return adapter_for(model.wire if req.embedding is None else "embed-" + model.provider.wire)
