"""What the executor sees of each model right now, for policies that route on it: a decaying
estimate of its latency, and the calls in flight to it (this process).

Latency is an exponentially weighted moving average (``alpha`` per observation) of the whole call
for plain requests and, for streams, of the time to the first token plus the time per output token
after it (averaged the same way, from streams that ended whole) times the output tokens a stream
is expected to bring (the average over every model's streams, at most the request's
``max_tokens``): a model quick to start but slow to write is not taken for fast. Plain and streamed
calls are kept apart because they differ by the answer's length. Each estimate remembers when it
was last fed, so a policy can tell a fresh figure from an old one (a model not called for a while
is worth measuring again).
"""

from __future__ import annotations

import time

from collections import Counter

from ..clock import Clock, SystemClock


class _Ewma:
    __slots__ = ("value", "n", "at")

    def __init__(self) -> None:
        self.value = 0.0
        self.n = 0
        self.at = 0.0


class LiveStats:
    def __init__(self, clock: Clock | None = None, alpha: float = 0.3) -> None:
        self.clock = clock or SystemClock()
        self.alpha = alpha
        self.inflight: Counter[str] = Counter()
        self.remote: Counter[str] = Counter()  # other workers' calls in flight (routing/shared.py)
        self.peers = 0  # how many other live workers ``remote`` sums
        self.shared: bool | None = None  # None: not shared; False: the shared state is unreachable
        # calls and prompt tokens per model in the current minute (models with rpm/tpm limits), this
        # worker's and, with shared state, the others' (for prefer: headroom)
        self.minute = -1
        self.used: dict[str, list[int]] = {}
        self.remote_used: dict[str, list[int]] = {}
        self._lat: dict[tuple[str, bool], _Ewma] = {}
        self._per_token: dict[str, _Ewma] = {}  # streams: seconds per output token after the first
        self._tokens = _Ewma()  # streams: output tokens, over every model

    @staticmethod
    def _feed(e: _Ewma, x: float, alpha: float) -> None:
        e.value = x if e.n == 0 else e.value + alpha * (x - e.value)
        e.n += 1

    def observe(self, model: str, seconds: float, stream: bool) -> None:
        e = self._lat.get((model, stream))
        if e is None:
            e = self._lat[(model, stream)] = _Ewma()
        self._feed(e, seconds, self.alpha)
        e.at = self.clock.now()

    def observe_tail(self, model: str, seconds: float, tokens: int) -> None:
        """A stream of ``model`` that ended whole: ``seconds`` from its first token to its end,
        ``tokens`` output tokens in all."""
        if tokens < 2 or seconds < 0:
            return
        e = self._per_token.get(model)
        if e is None:
            e = self._per_token[model] = _Ewma()
        self._feed(e, seconds / (tokens - 1), self.alpha)
        self._feed(self._tokens, float(tokens), self.alpha)

    def latency(self, model: str, stream: bool, max_tokens: int | None = None) -> tuple[float, int, float] | None:
        """(estimate in seconds, observations, seconds since the last), or None if never measured.
        A stream's estimate is its time to first token plus, once known, its time per output token
        times the tokens a stream brings (at most ``max_tokens``)."""
        e = self._lat.get((model, stream))
        if e is None:
            return None
        value = e.value
        t = self._per_token.get(model) if stream else None
        if t is not None:
            n = self._tokens.value if max_tokens is None else min(self._tokens.value, max_tokens)
            value += t.value * max(n - 1.0, 0.0)
        return value, e.n, self.clock.now() - e.at

    def count(self, model: str, tokens: int) -> None:
        """One call of a rate-limited model, with its prompt's estimated tokens."""
        m = int(time.time() // 60)
        if m != self.minute:
            self.minute, self.used, self.remote_used = m, {}, {}
        u = self.used.setdefault(model, [0, 0])
        u[0] += 1
        u[1] += tokens

    def usage(self, model: str) -> tuple[int, int]:
        """Calls and prompt tokens of ``model`` in the current minute, across workers when shared."""
        if int(time.time() // 60) != self.minute:
            return 0, 0
        a = self.used.get(model, (0, 0))
        b = self.remote_used.get(model, (0, 0))
        return a[0] + b[0], a[1] + b[1]

    def calls(self, model: str, delta: int) -> None:
        self.inflight[model] += delta
