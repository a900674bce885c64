"""Client-facing dialects, by kind."""

from __future__ import annotations

from functools import cache
from importlib import import_module

from .base import Dialect

_REGISTRY = {
    "openai": ("switchman.dialects.openai", "OpenAIDialect"),
    "anthropic": ("switchman.dialects.anthropic", "AnthropicDialect"),
    "completions": ("switchman.dialects.completions", "CompletionsDialect"),
    "responses": ("switchman.dialects.responses", "ResponsesDialect"),
    "gemini": ("switchman.dialects.gemini", "GeminiDialect"),
    "embeddings": ("switchman.dialects.embeddings", "EmbeddingsDialect"),
}


@cache
def dialect_for(kind: str) -> Dialect:
    module, name = _REGISTRY[kind]
    return getattr(import_module(module), name)()
