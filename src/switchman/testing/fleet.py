"""The simulated fleet ``switchman demo`` runs on: five chat models on one fake upstream.

A cheap fast model (served on the OpenAI wire), a mid one (Anthropic wire), a frontier one (Gemini
wire), one served by OpenAI's Responses API only, and a flaky self-hosted one (OpenAI wire) that
fails half its requests with 503. Their
latencies are in the proportions of the real ones, and each reply says which model wrote it, so a
newcomer watching the demo sees routing and fallback at work. Which wire a model is reached by is
the gateway's config (``demo.py``); the fake serves every model on every wire.
"""

from __future__ import annotations

from collections.abc import Callable

from .fake_upstream import FakeModel

_QUOTE = 80  # characters of the question a reply quotes


def _quote(prompt: str) -> str:
    q = " ".join(prompt.split())
    return q if len(q) <= _QUOTE else q[: _QUOTE - 1] + "…"


def _reply(intro: str, body: str) -> Callable[[str], str]:
    def reply(prompt: str) -> str:
        return f"{intro} You asked: “{_quote(prompt)}”. {body}"

    return reply


def _declines(word: str, refusal: str, otherwise: Callable[[str], str]) -> Callable[[str], str]:
    return lambda prompt: refusal if word in prompt.lower() else otherwise(prompt)


_SIMULATED = "(This fleet is simulated: the words are canned, but the routing, retries and costs are real.)"


def demo_models() -> dict[str, FakeModel]:
    """A fresh set of the four demo models, by upstream model id."""
    return {
        # ~50 ms: headers at 30 ms, first token 10 ms later, six pieces 2 ms apart.
        # It declines questions about medicine, so the demo's cascade has something to catch.
        "gpt-4o-mini": FakeModel(
            reply=_declines("dose", "I'm sorry, but I can't give medical advice.", _reply(
                "gpt-4o-mini here, the cheap and fast model.",
                f"Short answer: a quick, inexpensive reply is often all a question like this needs. {_SIMULATED}")),
            latency=0.030, ttft=0.010, inter_token=0.002, chunks=6, behave=True,
        ),
        # ~150 ms.
        "claude-haiku-4-5": FakeModel(
            reply=_reply("claude-haiku-4-5 here, the mid-tier model.",
                         f"A careful, well-organised answer would go here, with a little more depth than the "
                         f"cheap model's. {_SIMULATED}"),
            latency=0.080, ttft=0.040, inter_token=0.006, chunks=6, behave=True,
        ),
        # ~400 ms.
        "gemini-2.5-pro": FakeModel(
            reply=_reply("gemini-2.5-pro here, the frontier model.",
                         f"A thorough, step-by-step answer would go here: the kind worth paying more for on "
                         f"hard questions. {_SIMULATED}"),
            latency=0.200, ttft=0.120, inter_token=0.016, chunks=6, behave=True,
        ),
        # ~400 ms, served on OpenAI's Responses API only (the catalog says so: demo.py reaches it there).
        "gpt-5.5-pro": FakeModel(
            reply=_reply("gpt-5.5-pro here, the Responses-API-only model.",
                         f"A deliberate answer would go here; built-in tools such as web search reach this model "
                         f"when a Responses client offers them. {_SIMULATED}"),
            latency=0.200, ttft=0.120, inter_token=0.016, chunks=6, behave=True,
        ),
        # Fails half its requests with 503 (deterministically, from the fake's seeded RNG).
        "flaky-llama": FakeModel(
            reply=_reply("flaky-llama here, the self-hosted model that fails half the time; it got through.",
                         f"The cheapest answer, when it comes. {_SIMULATED}"),
            latency=0.030, ttft=0.010, inter_token=0.002, chunks=6, behave=True,
            error_status=503, fail_rate=0.5,
            error_message="The server is overloaded or not ready yet. (simulated)",
        ),
        # Embedding models (POST /v1/embeddings): deterministic vectors (testing/embed_wire.py).
        "text-embedding-3-small": FakeModel(latency=0.010),
        "gemini-embedding-001": FakeModel(latency=0.015),
    }
