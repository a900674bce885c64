"""Error-bounded semantic hits: the user states the share of wrong hits they accept (``max_error``),
and the similarity a hit needs is learned from verification, never set by hand.

Each would-be hit the cache checks (a ``verify`` share of hits sent upstream as well, and every
near miss above ``explore``, which goes upstream anyway) yields an observation: the similarity of
the nearest entry and whether the fresh answer matched the kept one. Observations are kept in
similarity bins; a verified hit weighs ``1 / verify`` in the wrong share (it stands for the hits
that were not checked), a near miss weighs 1, and the interval's n is the plain count. The
threshold is the lowest similarity ``t`` such that, among observations at ``t`` or above, the upper
end of a one-sided Wilson interval (``confidence``, 0.84 by default) of the wrong share is at most
``max_error``, with at least
``min_n`` behind it; until such a ``t`` exists there are no hits.

A route starts from the shipped prior: the same rule applied to similarities measured on the
training pairs of STS-B and MRPC (hard sets: sentences that differ in one detail are labelled
different), after the guard, by the measured wrong share itself rather than its upper bound (5,591
pairs stand behind it, but from other text than the route's: a starting point, not evidence).
Once the route's own observations bound the error at some similarity, its own evidence alone
decides, up or down; once it has ``min_n`` observations at the prior's threshold or above and
they do not bound the error there, there are no hits until they do. ``prior: none`` starts with no hits.

On top of the route's threshold each entry keeps its own floor: a similarity at which it was found
wrong, above which it alone needs to be matched again (vCache's per-entry bound, in its simplest form).
"""

from __future__ import annotations

import json
import math
from statistics import NormalDist
from pathlib import Path

LOW, HIGH, BINS = 0.5, 1.0, 100
_Z = 1.96  # one-sided 97.5%
PRIOR = Path(__file__).parent / "data" / "semantic-prior.json"


def _bin(s: float) -> int:
    return min(BINS - 1, max(0, int((s - LOW) / (HIGH - LOW) * BINS)))


def edge(b: int) -> float:
    return LOW + (HIGH - LOW) * b / BINS


def wilson_upper(wrong: float, n: float, z: float = _Z) -> float:
    if n <= 0:
        return 1.0
    p = wrong / n
    d = 1 + z * z / n
    c = p + z * z / (2 * n)
    r = z * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n)))
    return min(1.0, (c + r) / d)


class Calibrator:
    def __init__(self, max_error: float, prior: dict | None = None, min_n: int = 30,
                 confidence: float = 0.84) -> None:
        self.max_error = max_error
        self.z = NormalDist().inv_cdf(confidence)
        self.min_n = min_n
        self.right = [0.0] * BINS  # the route's own observations, weighted
        self.wrong = [0.0] * BINS
        self.count = [0] * BINS  # and how many there were (the Wilson interval's n)
        self.observed = 0
        self.would_hit = 0  # hits decided, for sampling the ones verified
        counts = [int(r + w) for r, w in zip(prior["right"], prior["wrong"])] if prior else []
        self.prior = _threshold(prior["right"], prior["wrong"], counts, max_error, min_n, z=0.0) if prior else 1.01
        self._t: float | None = None

    def observe(self, sim: float, wrong: bool, weight: float = 1.0) -> None:
        b = _bin(sim)
        (self.wrong if wrong else self.right)[b] += weight
        self.count[b] += 1
        self.observed += 1
        self._t = None

    def threshold(self) -> float:
        """The similarity a hit needs now (above 1: no hits): the route's own, once its own
        observations bound the error somewhere; none, once they are enough to judge the prior's
        threshold and fail to bound it there; the prior's until then."""
        if self._t is None:
            own = _threshold(self.right, self.wrong, self.count, self.max_error, self.min_n, self.z)
            if own <= 1 or self.prior > 1:
                self._t = own
            else:
                self._t = 1.01 if sum(self.count[_bin(self.prior):]) >= self.min_n else self.prior
        return self._t


def _threshold(right, wrong, count, max_error: float, min_n: int, z: float = _Z) -> float:
    """The lowest bin edge above which the wrong share's upper bound is at most ``max_error``:
    only a bin with observations in it, never the empty similarities below the evidence."""
    r = w = 0.0
    n = 0
    best = 1.01
    for b in range(BINS - 1, -1, -1):
        r += right[b]
        w += wrong[b]
        n += count[b]
        if count[b] and n >= min_n and wilson_upper(w / (r + w) * n, n, z) <= max_error:
            best = edge(b)
    return best


def load_prior(embedder: str) -> dict | None:
    try:
        return json.loads(PRIOR.read_text())[embedder]
    except (OSError, KeyError, ValueError):
        return None


def histogram(pairs: list[tuple[float, bool]]) -> dict:
    """Bins of (similarity, wrong) pairs, in the shipped prior's form."""
    right, wrong = [0] * BINS, [0] * BINS
    for s, bad in pairs:
        (wrong if bad else right)[_bin(s)] += 1
    return {"right": right, "wrong": wrong}
