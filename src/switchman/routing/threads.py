"""Anthropic server-held threads, kept where they live.

With ``thread: {"type": "create"}`` Anthropic keeps the conversation under the response's id, and a
later ``{"type": "continue", "previous_message_id": ID}`` sends only the new turn. That state is at
one model of one provider: a continuation sent anywhere else would be answered without its
history. So the gateway remembers which model answered each thread message (the last ``MAX`` of
them, in this process, answered by Anthropic itself), and a continuation of one it knows goes to
that model alone, no fallbacks, with the reason saying so. If that model fails, the request
fails: it cannot be answered elsewhere. Every other continuation is rebuilt from the turns the
gateway keeps and may go anywhere (``dialects/anthropic_threads.py``).
"""

from __future__ import annotations

from collections import OrderedDict

MAX = 100_000


def continued(raw: dict | None) -> str | None:
    """The ``previous_message_id`` a thread continuation names, if this request is one."""
    t = raw.get("thread") if raw else None
    if isinstance(t, dict) and t.get("type") == "continue" and isinstance(t.get("previous_message_id"), str):
        return t["previous_message_id"]
    return None


def threaded(raw: dict | None) -> bool:
    return bool(raw) and isinstance(raw.get("thread"), dict)


class Threads:
    def __init__(self) -> None:
        self._at: OrderedDict[str, str] = OrderedDict()

    def answered(self, message_id: str, model: str) -> None:
        self._at[message_id] = model
        self._at.move_to_end(message_id)
        while len(self._at) > MAX:
            self._at.popitem(last=False)

    def holder(self, message_id: str) -> str | None:
        return self._at.get(message_id)
