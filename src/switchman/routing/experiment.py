"""Experiments: A/B splits and canary rollouts between arms (each a route or a model).

    routes:
      - name: chat
        policy:
          kind: experiment
          arms: {control: chat-v1, candidate: claude-sonnet-4-5}   # a route or a model each
          split: {control: 50, candidate: 50}     # percent; default: equal shares
          by: user                # who is kept on one arm: episode | user | key (default: the first present)
          ramp: [1, 5, 25, 50, 100]   # canary: the candidate's share, step by step (two arms only)
          min_requests: 200       # candidate requests at a step before it may move on
          alpha: 0.05             # the false-alarm rate of the whole rollout's regression test
          tolerance: 0.1          # cost and latency may be this share worse before it counts

**Assignment** is sticky: HMAC-SHA256 (keyed by the route's name, or ``secret``) of the subject
(the ``x-switchman-episode``, the user, or the key, as ``by`` says; a request with none is assigned
on its own id) gives a bucket of 10,000; arms own consecutive ranges by their split. The same
subject always lands on the same arm, on every worker and replica, across restarts, and a ramp
only ever moves subjects from control to candidate (bucket below the candidate's share).

**The canary** starts at the ramp's first step. Each settled request counts for its arm (the
arm is also a tag on the request, ``exp.<route>=<arm>``, so spend, the request log and feedback
see it). The candidate is compared with control on four figures, each by a one-sided test for
"candidate worse" on all of the candidate's requests since the experiment started (never reset
per step); ``alpha``, the false-alarm rate of the whole rollout, is shared out over them (80% to
errors, a fifteenth to each of the others), so a candidate no worse than control is rolled back
with probability at most ``alpha`` (union bound):

- **error rate**: a sequential probability ratio test against control's observed rate, looked at
  on every settled candidate request (``routing/sequential.py``, where its bound and guarantees
  are stated): a flat SPRT line whose bound is computed exactly for the rollout's
  ``len(ramp) × min_requests`` candidate requests, and a steep one bounded by Ville's inequality
  for ever after. Its false-alarm rate is ``alpha`` × 80% for any number of looks, exact for a
  known control rate (control's is estimated from control's own, far more numerous, requests);
- **p95 latency** (the share of candidate requests slower than control's p95, against
  5% × (1 + tolerance)), **cost per request** (means, against control's × (1 + tolerance)) and
  **feedback** (means): z-tests at the end of each step, one look per step, each at its share of
  ``alpha`` split evenly over the steps (Bonferroni), so their false-alarm rates are stated too.

How fast a regression can be caught is bounded by the data, not only by the test: for a candidate at
6% errors against control's 2%, one look at 499 candidate requests with control's rate known exactly
and the whole 5% on errors still misses 0.16% of such candidates (exact binomial, in
``benchmarks/adaptive.py``); the sequential test, looking at every request with 4% on errors, misses
0.32% (same computation), so of 200 such rollouts all are caught with probability about 53%. A
significant regression rolls back at once (candidate share 0, the reason recorded); no regression
takes the next step; no regression at 100% ends the rollout. Every decision is kept in ``history``
(``GET /admin/experiments``). The rollout state is this process's: with several workers and ``state:
{backend: redis}`` the rollout is one for all (``routing/shared.py``): every worker adds its arms'
figures to shared totals and runs the error test on them at every exchange (a look every tick rather
than every request: fewer looks, the same bound), the first to see ``min_requests`` new candidate
requests reviews all four figures (the p95 test on its own latency samples, the rest on everyone's)
and records its decision only if no other worker moved the rollout first; every worker adopts the
step, rollback and history on its next exchange. Without Redis each worker ramps on the traffic it
sees (the assignment itself is the same everywhere).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from statistics import NormalDist

from ..types import ChatRequest
from . import sequential
from .base import Plan, Policy, RouteContext

BUCKETS = 10_000
SUBJECTS = ("episode", "user", "key")
# The false-alarm rate, shared out among the figures (errors are what a canary must catch first).
_SPEND = {"errors": 0.8, "latency": 0.2 / 3, "cost": 0.2 / 3, "feedback": 0.2 / 3}


@dataclass(frozen=True, slots=True)
class ExperimentSpec:
    arms: tuple[tuple[str, str], ...]  # (arm, route or model name), control first
    split: tuple[float, ...]  # percent per arm, in arms' order
    ramp: tuple[float, ...] = ()  # the candidate's percent, step by step (two arms)
    by: str | None = None  # episode | user | key; None: the first the request has
    min_requests: int = 200
    alpha: float = 0.05
    tolerance: float = 0.1
    secret: str | None = None


def parse(po, path: str, error) -> ExperimentSpec:
    """The ``experiment`` policy's keys (``po``: the config file's mapping reader)."""
    arms = po.get("arms", dict, {})
    if len(arms) < 2:
        raise error(f"{path}.arms", "an experiment needs at least two arms (name: route or model)")
    for a, target in arms.items():
        if not isinstance(target, str) or not target:
            raise error(f"{path}.arms.{a}", "must name a route or a model")
    names = tuple(arms)
    split_raw = po.get("split", dict, None)
    ramp = tuple(float(x) for x in po.get("ramp", list, []) or ())
    if split_raw is not None:
        for a in split_raw:
            if a not in arms:
                raise error(f"{path}.split.{a}", f"unknown arm '{a}' (arms: {', '.join(names)})")
        split = tuple(float(split_raw.get(a, 0)) for a in names)
        if any(x < 0 for x in split) or abs(sum(split) - 100) > 1e-9:
            raise error(f"{path}.split", f"must give each arm a percent, summing to 100 (not {sum(split):g})")
    else:
        split = tuple(100 / len(names) for _ in names)
    if ramp:
        if len(names) != 2:
            raise error(f"{path}.ramp", "a ramp moves traffic between two arms: control (first) and candidate")
        if split_raw is not None:
            raise error(f"{path}.split", "give a split or a ramp, not both (the ramp sets the split)")
        if any(not 0 < x <= 100 for x in ramp) or list(ramp) != sorted(ramp) or ramp[-1] != 100:
            raise error(f"{path}.ramp", "must be increasing percents above 0, ending at 100")
    by = po.get("by", str)
    if by is not None and by not in SUBJECTS:
        raise error(f"{path}.by", f"must be one of {', '.join(SUBJECTS)}, not '{by}'")
    alpha = po.get("alpha", float, 0.05)
    if not 0 < alpha < 0.5:
        raise error(f"{path}.alpha", "must be a false-alarm rate above 0 and below 0.5")
    tol = po.get("tolerance", float, 0.1)
    if tol < 0:
        raise error(f"{path}.tolerance", "must be 0 or more")
    return ExperimentSpec(tuple((a, arms[a]) for a in names), split, ramp, by,
                          po.positive("min_requests", int, 200), alpha, tol, po.get("secret", str))


def bucket(secret: bytes, subject: str) -> int:
    return int.from_bytes(hmac.new(secret, subject.encode(), hashlib.sha256).digest()[:8], "big") % BUCKETS


@dataclass(slots=True)
class ArmStats:
    requests: int = 0
    errors: int = 0
    cost: float = 0.0
    cost2: float = 0.0
    latencies: deque = field(default_factory=lambda: deque(maxlen=20_000))
    feedback_n: int = 0
    feedback_sum: float = 0.0
    feedback_sum2: float = 0.0

    def add(self, error: bool, latency_ms: float, cost: float) -> None:
        self.requests += 1
        self.errors += error
        self.cost += cost
        self.cost2 += cost * cost
        self.latencies.append(latency_ms)

    def report(self) -> dict:
        n = self.requests
        lat = sorted(self.latencies)
        lo, hi = _wilson(self.errors, n)
        return {"requests": n, "errors": self.errors, "error_rate": self.errors / n if n else None,
                "error_rate_interval": [lo, hi] if n else None,
                "cost_usd": round(self.cost, 9), "cost_per_request": self.cost / n if n else None,
                "cost_per_request_interval": _mean_interval(self.cost, self.cost2, n),
                "latency_p50_ms": lat[len(lat) // 2] if lat else None,
                "latency_p95_ms": lat[min(len(lat) - 1, int(len(lat) * 0.95))] if lat else None,
                "feedback": self.feedback_n, "feedback_mean": self.feedback_sum / self.feedback_n if self.feedback_n else None,
                "feedback_interval": _mean_interval(self.feedback_sum, self.feedback_sum2, self.feedback_n)}


def _wilson(k: float, n: float, z: float = 1.96) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = p + z * z / (2 * n)
    r = z * math.sqrt(max(0.0, p * (1 - p) / n + z * z / (4 * n * n)))
    return max(0.0, (c - r) / d), min(1.0, (c + r) / d)


def _mean_interval(s: float, s2: float, n: int, z: float = 1.96) -> list[float] | None:
    if n < 2:
        return None
    m = s / n
    sd = math.sqrt(max(0.0, (s2 - n * m * m) / (n - 1)))
    return [m - z * sd / math.sqrt(n), m + z * sd / math.sqrt(n)]


class Experiment(Policy):
    """The ``experiment`` policy. ``route_plan(name, req)``: another route's plan, for route arms."""

    def __init__(self, name: str, spec: ExperimentSpec, route_plan, routes: frozenset[str], clock=time.time) -> None:
        self.name = name
        self.spec = spec
        self.route_plan = route_plan
        self.routes = routes
        self.clock = clock
        self.secret = (spec.secret or f"switchman:experiment:{name}").encode()
        self.arms = [a for a, _ in spec.arms]
        self.target = dict(spec.arms)
        self.stats = {a: ArmStats() for a in self.arms}
        self.step = 0  # index into the ramp
        self.rolled_back: str | None = None
        self.at_step = 0  # candidate requests at this step
        self.history: list[dict] = []
        self.finished = False  # the last step was reviewed: the rollout is over
        # With shared state (routing/shared.py): per arm, what settled here since the last tick
        # [requests, errors, cost, cost², feedback n, sum, sum²]; None: this worker's figures alone.
        self.pending: dict[str, list[float]] | None = None
        if spec.ramp:
            self._record("start", f"ramp starts at {spec.ramp[0]:g}%")

    @property
    def tag(self) -> str:
        return f"exp.{self.name}"

    def shares(self) -> list[float]:
        """Each arm's percent now."""
        if not self.spec.ramp:
            return list(self.spec.split)
        cand = 0.0 if self.rolled_back else self.spec.ramp[self.step]
        return [100 - cand, cand]

    def subject(self, req: ChatRequest) -> tuple[str, str] | None:
        who = {"episode": req.episode, "user": req.end_user or req.user,
               "key": req.key_id}
        order = (self.spec.by,) if self.spec.by else SUBJECTS
        for k in order:
            if who.get(k):
                return k, str(who[k])
        return None

    def assign(self, req: ChatRequest) -> tuple[str, str]:
        """The arm for this request, and why."""
        subj = self.subject(req)
        if subj is None:
            b = random.randrange(BUCKETS)
            how = "no subject: drawn"
        else:
            b = bucket(self.secret, subj[1])
            how = f"by {subj[0]}"
        edge = 0.0
        shares = self.shares()
        if self.spec.ramp:  # the candidate owns the lowest buckets: growing it only moves control's
            arm = self.arms[1] if b < shares[1] * BUCKETS / 100 else self.arms[0]
        else:
            arm = self.arms[-1]
            for a, s in zip(self.arms, shares):
                edge += s * BUCKETS / 100
                if b < edge:
                    arm = a
                    break
        return arm, f"bucket {b} {how}"

    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan:
        arm, why = self.assign(req)
        target = self.target[arm]
        stage = ""
        if self.spec.ramp:
            stage = (f"; rolled back: {self.rolled_back}" if self.rolled_back
                     else f"; ramp step {self.step + 1}/{len(self.spec.ramp)} at {self.spec.ramp[self.step]:g}%")
        head = f"experiment {self.name}: arm {arm} ({why}{stage})"
        if target in self.routes:
            p, fallbacks = self.route_plan(target, req)
            models = p.models + tuple(m for m in fallbacks if m not in p.models)
            return Plan(models, f"{head}; {p.reason}", p.checks, arm=arm, tags=p.tags)
        return Plan((target,), head, arm=arm)

    # -- what the arms did -----------------------------------------------------------------------
    def settled(self, arm: str, error: bool, latency_ms: float, cost: float) -> None:
        st = self.stats.get(arm)
        if st is None:
            return
        if self.pending is not None:  # shared: counted here, added to every worker's totals on the next tick
            st.latencies.append(latency_ms)
            d = self.pending.setdefault(arm, [0.0] * 7)
            d[0] += 1
            d[1] += error
            d[2] += cost
            d[3] += cost * cost
            return
        st.add(error, latency_ms, cost)
        if self.spec.ramp and not self.rolled_back and not self.finished and arm == self.arms[1]:
            self.at_step += 1
            if self.at_step % self.spec.min_requests == 0:
                self.review()
            else:  # the error test looks at every candidate request
                self.watch()

    def watch(self) -> str | None:
        """The error-rate test on everything so far; rolls back when it crosses its bound."""
        worse = self.error_regression()
        return self.apply("rollback", worse) if worse else None

    def feedback(self, arm: str, score: float) -> None:
        st = self.stats.get(arm)
        if st is not None and self.pending is not None:
            d = self.pending.setdefault(arm, [0.0] * 7)
            d[4] += 1
            d[5] += score
            d[6] += score * score
        elif st is not None:
            st.feedback_n += 1
            st.feedback_sum += score
            st.feedback_sum2 += score * score

    def review(self) -> str | None:
        """Compare the candidate with control; roll back or step up. Returns what was done."""
        action, why = self.verdict()
        return self.apply(action, why)

    def verdict(self) -> tuple[str, str]:
        """What a review of the figures so far decides: (rollback | step | done, why)."""
        spec = self.spec
        worse = self.regressions({f: NormalDist().inv_cdf(1 - spec.alpha * w / len(spec.ramp))
                                  for f, w in _SPEND.items() if f != "errors"})
        if worse:
            return "rollback", "; ".join(worse)
        if self.step + 1 < len(spec.ramp):
            return "step", f"no regression after {spec.min_requests} candidate requests: {spec.ramp[self.step + 1]:g}%"
        return "done", f"no regression at 100% after {spec.min_requests} candidate requests: the rollout is over"

    def apply(self, action: str, why: str) -> str | None:
        if action == "rollback":
            self.rolled_back = why
            self._record("rollback", why)
            return "rollback"
        if action == "step":
            self.step += 1
            self.at_step = 0
            self._record("step", why)
            return "step"
        self.finished = True
        self._record("done", why)
        return None

    def regressions(self, z: dict[str, float]) -> list[str]:
        """The figures on which the candidate is significantly worse than control (``z``: each
        figure's critical value)."""
        c, k = self.stats[self.arms[0]], self.stats[self.arms[1]]
        tol = self.spec.tolerance
        out = []
        worse = self.error_regression()
        if worse:
            out.append(worse)
        if len(c.latencies) >= 20 and len(k.latencies) >= 20:
            p95 = sorted(c.latencies)[int(len(c.latencies) * 0.95)]
            slow = sum(1 for x in k.latencies if x > p95)
            p0 = 0.05 * (1 + tol)
            zs = (slow - p0 * len(k.latencies)) / math.sqrt(p0 * (1 - p0) * len(k.latencies))
            if zs > z["latency"]:
                out.append(f"p95 latency: {slow / len(k.latencies):.1%} of candidate requests slower than "
                           f"control's p95 ({p95:.0f} ms) (z={zs:.1f})")
        zc = _worse_mean(k.cost, k.cost2, k.requests, c.cost, c.cost2, c.requests, 1 + tol)
        if zc is not None and zc > z["cost"]:
            out.append(f"cost per request ${k.cost / k.requests:.6f} against ${c.cost / c.requests:.6f} (z={zc:.1f})")
        zf = _worse_mean(c.feedback_sum, c.feedback_sum2, c.feedback_n, k.feedback_sum, k.feedback_sum2,
                         k.feedback_n, 1.0)
        if zf is not None and zf > z["feedback"]:
            out.append(f"feedback {k.feedback_sum / k.feedback_n:.2f} against {c.feedback_sum / c.feedback_n:.2f} "
                       f"(z={zf:.1f})")
        return out

    @property
    def horizon(self) -> int:
        """The candidate requests of a whole rollout (one look per step at ``min_requests`` each)."""
        return len(self.spec.ramp) * self.spec.min_requests

    def error_regression(self) -> str | None:
        """Why the candidate's error rate is significantly above control's, or None
        (``routing/sequential.py``: every candidate request since the start, at ``alpha`` × 80%)."""
        c, k = self.stats[self.arms[0]], self.stats[self.arms[1]]
        p0 = sequential.rate(c.errors, c.requests)
        worse, how = sequential.regressed(k.requests, k.errors, p0, self.spec.alpha * _SPEND["errors"],
                                          self.horizon)
        if not worse:
            return None
        return (f"error rate {k.errors / k.requests:.1%} ({k.errors} of {k.requests} candidate requests) against "
                f"control's {c.errors / max(c.requests, 1):.1%} ({c.errors} of {c.requests}): {how}")

    def _record(self, action: str, why: str) -> None:
        self.history.append({"time": self.clock(), "action": action, "step": self.step,
                             "candidate_share": self.shares()[-1], "why": why})

    def report(self) -> dict:
        return {"route": self.name, "arms": {a: {"target": self.target[a], "share": s, **self.stats[a].report()}
                                             for a, s in zip(self.arms, self.shares())},
                "ramp": list(self.spec.ramp) or None, "step": self.step + 1 if self.spec.ramp else None,
                "rolled_back": self.rolled_back, "history": list(self.history), "alpha": self.spec.alpha}


def _worse_mean(s1: float, q1: float, n1: int, s2: float, q2: float, n2: int, factor: float) -> float | None:
    """z for "mean 1 is above ``factor`` × mean 2" (Welch), or None with too few observations."""
    if n1 < 20 or n2 < 20:
        return None
    m1, m2 = s1 / n1, s2 / n2
    v1 = max(0.0, (q1 - n1 * m1 * m1) / (n1 - 1))
    v2 = max(0.0, (q2 - n2 * m2 * m2) / (n2 - 1))
    se = math.sqrt(v1 / n1 + factor * factor * v2 / n2)
    if se == 0:
        return math.inf if m1 > factor * m2 else None
    return (m1 - factor * m2) / se
