"""Active health checks: every ``health.interval`` seconds, each ejected model gets one cheap probe
(a one-token completion); a model that answers is re-admitted at once, without waiting for its
cooldown to end or for user traffic to risk a probe."""

from __future__ import annotations

import asyncio
import logging

from .adapters import adapter_for
from .clock import Clock
from .config import ModelSpec
from .types import ChatRequest, Message, Role, TextPart

log = logging.getLogger("switchman.health")

_PROBE_TIMEOUT = 10.0


def probe_request(model: ModelSpec) -> ChatRequest:
    return ChatRequest(model=model.name, messages=[Message(Role.USER, [TextPart("ping")])], max_tokens=1)


class HealthChecker:
    def __init__(self, executor, models: dict[str, ModelSpec], clock: Clock, interval: float | None) -> None:
        self.executor = executor
        self.models = models
        self.clock = clock
        self.interval = interval
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self.interval and self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            await self.clock.sleep(self.interval)  # type: ignore[arg-type]
            await self.check_once()

    async def check_once(self) -> list[str]:
        """Probe every ejected model; return those re-admitted."""
        unhealthy = set(self.executor.outliers.unhealthy())
        ejected = [m for m in self.models.values() if m.name in unhealthy]
        results = await asyncio.gather(*(self.probe(m) for m in ejected), return_exceptions=True)
        back = []
        for m, ok in zip(ejected, results):
            if ok is True:
                self.executor.outliers.readmit(m.name)
                back.append(m.name)
        return back

    async def probe(self, model: ModelSpec) -> bool:
        adapter = adapter_for(model.wire)
        call = adapter.build(probe_request(model), model)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(_PROBE_TIMEOUT, model.timeout.total)
        try:
            resp = await self.executor.client.request(call.method, call.url, call.headers, call.body, deadline)
            await resp.read(deadline)
        except Exception as e:  # noqa: BLE001 - a failed probe is the answer "still unhealthy"
            log.info("health probe of %s failed: %s", model.name, e)
            return False
        return resp.status < 400
