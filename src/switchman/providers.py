"""Provider kinds: which wire API each speaks, its default base URL and auth style.

OpenAI-compatible vendors differ only by these data, never by code paths (STYLE.md rule 4).
``base_url`` follows each vendor SDK's own convention: OpenAI's includes ``/v1``; Anthropic's and
Gemini's do not.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Kind:
    wire: str  # the adapter: openai | anthropic | gemini
    base_url: str | None  # None: the user must give one
    auth: str  # bearer | x-api-key | api-key | x-goog-api-key | none
    env_key: str | None = None  # where `switchman serve` with no config looks for a key


KINDS: dict[str, Kind] = {
    "openai": Kind("openai", "https://api.openai.com/v1", "bearer", "OPENAI_API_KEY"),
    # Azure OpenAI: `api-key` header, deployment in the path, `api-version` query
    # (learn.microsoft.com/azure/ai-services/openai/reference).
    "azure": Kind("openai", None, "api-key"),
    # Anthropic documents `x-api-key`; its current SDK sends `Authorization: Bearer`, also accepted.
    "anthropic": Kind("anthropic", "https://api.anthropic.com", "x-api-key", "ANTHROPIC_API_KEY"),
    "gemini": Kind("gemini", "https://generativelanguage.googleapis.com", "x-goog-api-key", "GEMINI_API_KEY"),
    "groq": Kind("openai", "https://api.groq.com/openai/v1", "bearer"),
    "together": Kind("openai", "https://api.together.xyz/v1", "bearer"),
    "fireworks": Kind("openai", "https://api.fireworks.ai/inference/v1", "bearer"),
    "deepseek": Kind("openai", "https://api.deepseek.com/v1", "bearer"),
    "mistral": Kind("openai", "https://api.mistral.ai/v1", "bearer"),
    "openrouter": Kind("openai", "https://openrouter.ai/api/v1", "bearer"),
    "ollama": Kind("openai", "http://127.0.0.1:11434/v1", "none"),
    "vllm": Kind("openai", "http://127.0.0.1:8000/v1", "none"),
    "tgi": Kind("openai", "http://127.0.0.1:8080/v1", "none"),
}

AUTH_STYLES = ("bearer", "x-api-key", "api-key", "x-goog-api-key", "none")

# Models `switchman serve` offers when it runs with no config file, per key found.
ENV_DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4.1", "gpt-4o"),
    "anthropic": ("claude-haiku-4-5", "claude-sonnet-4-5"),
    "gemini": ("gemini-2.5-flash", "gemini-2.5-pro"),
}


def auth_headers(auth: str, key: str | None) -> dict[str, str]:
    """The credential header for an upstream call (none when there is no key)."""
    if not key or auth == "none":
        return {}
    if auth == "bearer":
        return {"authorization": f"Bearer {key}"}
    return {auth: key}
