"""Upstream adapters, one per wire API, found by the provider's ``wire`` (a registry, not a
ladder of ``if kind == ...``)."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from .base import Adapter

_REGISTRY = {
    "openai": ("switchman.adapters.openai", "OpenAIAdapter"),
    "anthropic": ("switchman.adapters.anthropic", "AnthropicAdapter"),
    "gemini": ("switchman.adapters.gemini", "GeminiAdapter"),
}
WIRES = tuple(_REGISTRY)


@cache
def adapter_for(wire: str) -> Adapter:
    """The (stateless, shared) adapter for a wire API."""
    module, name = _REGISTRY[wire]
    return getattr(import_module(module), name)()
