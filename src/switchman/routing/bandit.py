"""``bandit``: Thompson sampling over a route's models, learning from live traffic.

Each model (arm) keeps a Beta posterior of its quality in [0, 1]: a feedback score ``s``
(``POST /v1/feedback``, metric ``quality``) adds ``s`` to α and ``1 − s`` to β; a failed call
counts as quality 0. It also keeps the mean cost of its answers. A request draws a quality from
every arm's posterior and goes to the arm with the highest ``draw − tradeoff × mean cost (USD)``;
the rest of the plan follows by posterior mean reward, so a failure falls back to the next best.

* Priors: ``quality: {model: 0.8}`` (with the weight of ``prior`` observations) so a new route
  starts from what is known; otherwise 0.5 with the weight of 2.
* ``explore``: the least share of requests drawn uniformly, so no arm is starved of feedback.
* ``context_tag: task``: a posterior per value of that request tag, so a route learns per kind of
  request (a value it has not seen starts from the priors).
* ``context: cluster`` (with a ``router:`` trained with ``switchman train --clusters K``): a posterior
  per prompt cluster, the nearest of the router's k-means centroids to the prompt's features, for
  traffic that names no task. The request gets the tag ``cluster`` (in the ledger, the request log
  and feedback), so what is learned about an answer goes to its prompt's cluster.

* ``router: router.npz`` (a file from ``switchman train``): the bandit starts as the learned
  router and learns a correction on top of it. A request's score for a model is the router's
  predicted quality *for this prompt* plus a residual, less ``tradeoff`` × the router's cost
  estimate for this prompt (USD); so with no feedback yet it decides as the ``learned`` policy at
  the same price of cost. The residual, per model and context, is what feedback says the model
  scores beyond what the router predicted for the requests it answered. It is a spike and a slab:
  the router is right (residual 0), or off by a normal offset of variance σ² ÷ ``prior``
  (σ² = p̄(1 − p̄), p̄ the mean prediction; ``prior`` is how many observations the router's word is
  worth). While the feedback's Bayes factor for "off" stays below 1 ÷ ``ALPHA`` (0.05), the
  residual is 0 and nothing is drawn: the decision is the router's, exactly. Once it passes, the
  residual's posterior is a normal around (Σ scores − n × p̄) ÷ (n + ``prior``), of spread
  0.05 ÷ √(n + ``prior``), and Thompson draws from it. A Bayes factor is a test martingale, so
  under a calibrated router the chance it *ever* passes is at most 5% per (context, model), however
  long the stream (Ville's inequality; the normal is an approximation for 0/1 scores). (Mean
  prediction over every request the model answered in the context, feedback being a random share
  of them: feedback names no prompt, only the request's model and tags.) The router's names must
  be the models'.

  Why the gate: the residual used to move with every score. On data whose stream is like the
  router's training data (``switchman eval``'s three sets), the per-task offsets it chased were
  the noise of a few scores per (task, model) (routellm: about 4 per cell per fold, against a
  sampling noise of the true offsets of 0.11 rms, equal to their size), and by Jensen's inequality
  a noisy margin costs more calls to the dear model at the same λ: 46.3% of gpt-4's cost at 95%
  of its quality against the router's 45.9%, and across eight stream orders on routerbench
  anywhere from 25% to 49% against its 33.3%. With the gate none of the three sets ever passes it,
  and the bandit is the router there; a model that degrades in production (a provider's silent
  swap, a prompt change) does pass it, and traffic moves (``tests/routing/test_bandit.py``).

Posteriors live in this process, or, with ``state: {backend: redis}``, in Redis: every worker
adds what it learns to shared totals and reads them back (``routing/shared.py``), off the request path.
Feedback is validated before it gets here (a score in [0, 1], once per id), so a posterior cannot
be pushed outside its range.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ..types import ChatRequest
from .base import Plan, Policy, RouteContext, prompt_text, request_task

# With a router: the spread of the residual's draws is SPREAD ÷ √(n + prior), a tempered posterior
# (a 0/1 score's own spread is 0.5): the router's prediction already ranks the models per prompt, and
# full-width draws sent many prompts to models it rightly ranked lower (routerbench-3task: the warm
# bandit never reached 95% of gpt-4's quality at 0.5; at 0.05 it did, below the router's cost).
SPREAD = 0.05
# With a router: a residual counts only once the feedback is significant evidence against the router,
# at this false-alarm rate per (context, model) (see the module's doc); and the variance of a score
# is taken as at least that of a 99%-right one, so one miss of a model predicted all but certain is
# not proof.
ALPHA = 0.05
VAR_FLOOR = 0.01

@dataclass(slots=True)
class Arm:
    alpha: float
    beta: float
    cost_sum: float = 0.0
    cost_n: int = 0
    pred_sum: float = 0.0  # with a router: its predicted quality, summed over the requests answered
    pred_n: int = 0

    @property
    def mean(self) -> float:
        n = self.alpha + self.beta
        return self.alpha / n if n > 0 else 0.5

    @property
    def cost(self) -> float:
        return self.cost_sum / self.cost_n if self.cost_n else 0.0


def residual(arm: Arm, prior: float) -> tuple[float | None, float]:
    """With a router: the posterior mean of what feedback says ``arm`` scores beyond the router's
    prediction, and how many scores it has; None while that is not significant (the module's doc)."""
    n = arm.alpha + arm.beta
    if n <= 0 or not arm.pred_n:
        return None, n
    p = arm.pred_sum / arm.pred_n
    dev = arm.alpha - n * p  # Σ scores − n × mean prediction
    var = max(p * (1.0 - p), VAR_FLOOR)
    # log Bayes factor of "the router is off by a normal offset of variance var / prior" against
    # "it is right"; Ville's inequality makes "once it passes log(1 / ALPHA)" a test at level ALPHA
    # however often it is looked at
    log_bf = dev * dev / (2.0 * var * (n + prior)) - 0.5 * math.log((n + prior) / prior)
    if log_bf < math.log(1.0 / ALPHA):
        return None, n
    return dev / (n + prior), n


class Bandit(Policy):
    def __init__(self, models: tuple[str, ...], quality: dict[str, float], tradeoff: float = 0.0,
                 explore: float = 0.05, prior: float = 10.0, context_tag: str | None = None,
                 rng: random.Random | None = None, router=None, clusters: bool = False) -> None:
        self.models = tuple(models)
        self.quality = quality
        self.tradeoff = tradeoff
        self.explore = explore
        self.prior = prior
        self.context_tag = context_tag
        self.rng = rng or random.Random()
        self._arms: dict[str | None, dict[str, Arm]] = {}
        self.pacer = None  # a route's budget pacing (routing/pacing.py) sets the tradeoff when present
        # With shared state (routing/shared.py): what was learned here since the last exchange,
        # per (context, model): [alpha, beta, cost_sum, cost_n]; and whether the exchange works.
        self.pending: dict[tuple[str | None, str], list[float]] | None = None
        self.shared: bool | None = None
        # priors per context value (the evaluator's warm start from a train split), over ``quality``
        self.context_quality: dict[str | None, dict[str, float]] = {}
        self.router = router  # a learned Router: per-prompt priors (see the module's doc)
        self.clusters = clusters  # learn per prompt cluster of the router (context: cluster)
        if clusters:
            if router is None or not router.clusters:
                raise ValueError("bandit: context: cluster needs a router trained with --clusters")
            self.context_tag = "cluster"
        if router is not None:
            missing = [m for m in self.models if m not in router.models]
            if missing:
                raise ValueError(f"bandit: the router knows no model {', '.join(missing)}")
            self._cols = [router.models.index(m) for m in self.models]

    def _context(self, tags: dict[str, str] | None) -> str | None:
        return (tags or {}).get(self.context_tag) if self.context_tag else None

    def arms(self, context: str | None = None) -> dict[str, Arm]:
        got = self._arms.get(context)
        if got is None:
            got = self._arms[context] = {m: self._prior(m, context) for m in self.models}
        return got

    def _prior(self, model: str, context: str | None = None) -> Arm:
        if self.router is not None:  # feedback only: the router is the prior
            return Arm(0.0, 0.0)
        q = (self.context_quality.get(context) or {}).get(model, self.quality.get(model))
        if q is None:
            return Arm(1.0, 1.0)
        n = self.prior
        return Arm(max(q * n, 1e-3), max((1 - q) * n, 1e-3))

    def plan(self, req: ChatRequest, ctx: RouteContext) -> Plan:
        if self.router is not None:
            if not self.clusters:
                q, c = self.router.estimate(prompt_text(req), request_task(req, self.context_tag or "task"))
                return self.choose(q[self._cols], c[self._cols], req.tags)
            q, c, k = self.router.estimate_cluster(prompt_text(req), request_task(req, "task"))
            tag = (("cluster", str(k)),)
            p = self.choose(q[self._cols], c[self._cols], {**(req.tags or {}), "cluster": str(k)})
            return Plan(p.models, p.reason, tags=tag)
        ctxv = self._context(req.tags)
        arms = self.arms(ctxv)
        lam = self.pacer.tradeoff() if self.pacer is not None else self.tradeoff
        by_mean = sorted(self.models, key=lambda m: -(arms[m].mean - lam * arms[m].cost))
        if self.rng.random() < self.explore:
            pick = self.rng.choice(self.models)
            why = "exploring"
        else:
            draws = {m: self.rng.betavariate(arms[m].alpha, arms[m].beta) - lam * arms[m].cost for m in self.models}
            pick = max(self.models, key=draws.__getitem__)
            why = f"drew {draws[pick]:.2f}"
        means = ", ".join(f"{m} {arms[m].mean:.2f}" for m in by_mean[:4])
        where = f" [{self.context_tag}={ctxv}]" if ctxv is not None else ""
        pace = f"; {self.pacer.reason()}" if self.pacer is not None else ""
        if self.shared is False:
            pace += "; shared posteriors unreachable: this worker's own"
        return Plan((pick, *(m for m in by_mean if m != pick)), f"bandit{where}: {pick} ({why}; means: {means}){pace}")

    def choose(self, q, cost, tags: dict[str, str] | None) -> Plan:
        """With a router: the plan, given its predicted quality and cost of each model (in
        ``models`` order) for this prompt. Shared by :meth:`plan` and the offline evaluator."""
        ctxv = self._context(tags)
        arms = self.arms(ctxv)
        lam = self.pacer.tradeoff() if self.pacer is not None else self.tradeoff
        q, cost = q.tolist(), cost.tolist()  # Python floats: the same doubles, without numpy's per-item cost
        score, mean, opened = [], [], []
        for k, m in enumerate(self.models):
            resid, n = residual(arms[m], self.prior)
            mean.append(q[k] + (resid or 0.0) - lam * cost[k])
            if resid is None:  # the router's word stands: no residual, nothing to draw
                score.append(mean[-1])
            else:
                opened.append(f"{m} n={n:g}")
                score.append(mean[-1] + self.rng.gauss(0.0, SPREAD / math.sqrt(n + self.prior)))
        if self.explore and self.rng.random() < self.explore:
            pick, why = self.rng.randrange(len(self.models)), "exploring"
        else:
            pick = max(range(len(self.models)), key=score.__getitem__)
            why = f"{'drew' if opened else 'scored'} {score[pick]:.2f}"
        a = arms[self.models[pick]]
        a.pred_sum += q[pick]
        a.pred_n += 1
        order = sorted(range(len(self.models)), key=lambda k: -mean[k])
        means = ", ".join(f"{self.models[k]} {q[k]:.2f}{mean[k] - q[k] + lam * cost[k]:+.2f}" for k in order[:4])
        where = f" [{self.context_tag}={ctxv}]" if ctxv is not None else ""
        learnt = f"residual significant for {', '.join(opened)}" if opened else "no residual significant"
        pace = f"; {self.pacer.reason()}" if self.pacer is not None else ""
        return Plan((self.models[pick], *(self.models[k] for k in order if k != pick)),
                    f"bandit+router{where}: {self.models[pick]} ({why}; predicted+learned: {means}; {learnt}){pace}")

    # -- learning ----------------------------------------------------------------------------------
    def learn(self, model: str, score: float, tags: dict[str, str] | None = None) -> None:
        """A quality observation in [0, 1] for ``model`` (feedback, or 0 for a failed call)."""
        if model not in self.models or not 0.0 <= score <= 1.0:
            return
        ctx = self._context(tags)
        arm = self.arms(ctx)[model]
        arm.alpha += score
        arm.beta += 1.0 - score
        self._pend(ctx, model, score, 1.0 - score, 0.0, 0)

    def cost(self, model: str, usd: float, tags: dict[str, str] | None = None) -> None:
        if model in self.models and usd >= 0:
            ctx = self._context(tags)
            arm = self.arms(ctx)[model]
            arm.cost_sum += usd
            arm.cost_n += 1
            self._pend(ctx, model, 0.0, 0.0, usd, 1)

    def _pend(self, ctx: str | None, model: str, a: float, b: float, c: float, n: int) -> None:
        if self.pending is not None:
            w = self.pending.setdefault((ctx, model), [0.0, 0.0, 0.0, 0.0])
            w[0] += a
            w[1] += b
            w[2] += c
            w[3] += n

    def apply_shared(self, totals: dict[tuple[str | None, str], list[float]]) -> None:
        """Every worker's totals (from the shared state): each posterior is its prior plus them,
        plus what this worker learned since they were read."""
        for (ctx, model), (a, b, c, n) in totals.items():
            if model not in self.models:
                continue
            p = self._prior(model, ctx)
            w = (self.pending or {}).get((ctx, model), (0.0, 0.0, 0.0, 0.0))
            arm = self.arms(ctx)[model]
            arm.alpha, arm.beta = p.alpha + a + w[0], p.beta + b + w[1]
            arm.cost_sum, arm.cost_n = c + w[2], int(round(n + w[3]))
