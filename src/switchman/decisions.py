"""Decision events: every choice the gateway makes (answered, fallback, retry, skip, ejection,
degrade, escalation) recorded once, with its reason, under a fixed event name. Counters feed
metrics; the recent list feeds ``/admin/decisions`` and the dashboard, which show what was
decided and never re-derive it."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    at: float  # unix seconds
    event: str  # answered | attempt_failed | skipped | ejected | probe | readmitted | degraded | escalated | retry_budget_spent
    model: str
    reason: str
    request_id: str | None = None


class DecisionLog:
    def __init__(self, keep: int = 1000) -> None:
        self.recent: deque[Decision] = deque(maxlen=keep)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.listener: Callable[[str, str, str], None] | None = None  # (model, event, reason): metrics

    def record(self, event: str, model: str, reason: str, request_id: str | None = None) -> None:
        self.recent.append(Decision(time.time(), event, model, reason, request_id))
        self.counts[(event, model)] += 1
        if self.listener is not None:
            self.listener(model, event, reason)

    def snapshot(self, limit: int = 100) -> list[dict]:
        return [{"at": d.at, "event": d.event, "model": d.model, "reason": d.reason, "request_id": d.request_id}
                for d in list(self.recent)[-limit:]]
