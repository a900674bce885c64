"""A replay upstream: the fake upstream answering each (prompt, model) with what that model really
answered in outcome data, at what it really cost.

``switchman eval`` replays outcome data through the policy code in-process; this puts the same
data behind the real gateway, so a policy can be measured through ``switchman serve`` (HTTP, the
dialect, the route, the executor, the ledger) and compared with the offline figure.

    table = load_table(["outcomes.jsonl.gz"])
    cost, _, _ = resolve_costs(table)
    up = ReplayUpstream(table, cost, rows=table.split_indices("test"))
    await up.start()
    up.models_yaml("replay")   # the config's models, each priced so the ledger bills the recorded cost

How the recorded cost reaches the ledger: every model is configured at output $0 and input
``usd_per_token`` × 10⁶ per million tokens (one shared, tiny unit: 10⁻⁹ USD a token unless the data's
dearest call needs a coarser one), and each answer reports ``round(cost ÷ usd_per_token)`` input
tokens (at least 1). The ledger's exact (Decimal) price then bills the recorded cost to within half
a unit (5·10⁻¹⁰ USD a call at the default, a few parts per million of the cheapest call in the
public sets). Per-model prices alone cannot do it: the same model's cost differs per prompt. Input,
not output: the ledger refuses an output count past twice the call's output cap (it would count
the answer locally instead), while input is checked against the model's context window, which
:meth:`models_yaml` sets above any count reported.

A policy that prices requests from the configured prices (``cheapest``, ``learned`` with ``costs:
prices``) sees every model at the same shared unit. ``output_price`` gives it list prices to rank
by: each model's output price (USD per 1M tokens) is set as given, and every answer then reports 0
output tokens, so the bill stays the recorded cost while the estimate before the call
(``output_tokens`` of answer at that price) follows the model's price. :func:`list_prices` makes
them from the data: each model's mean recorded cost, spread over a nominal answer.

A prompt is found by its text (the last user message) and the model id asked for. A text the data
does not hold for that model, or one whose copies in ``rows`` were answered differently (the same
question asked twice with different results), gets a 400 in the wire's error shape saying so.
Only the OpenAI wire's chat completions are meant here; the other wires work too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from ..outcomes import OutcomeTable
from .fake_upstream import FakeModel, FakeUpstream
from .wires import Answer, BadRequest, Call

MAX_TOKENS = 10**8  # the most input tokens an answer reports (adapters reject counts near 10⁹)
NO_RESPONSE = "(the data kept no response for this answer)"


def _unit(dearest: float) -> float:
    """USD per input token: 10⁻⁹, or the power of ten that keeps ``dearest`` under MAX_TOKENS."""
    if dearest <= 0 or not math.isfinite(dearest):
        return 1e-9
    return max(1e-9, 10.0 ** math.ceil(math.log10(dearest / MAX_TOKENS)))


class ReplayUpstream(FakeUpstream):
    """Serves the recorded answers of ``table`` (prompts ``rows``, default all) at ``cost``
    (prompts × models USD, as :func:`~switchman.outcomes.resolve_costs` gives it)."""

    def __init__(self, table: OutcomeTable, cost: np.ndarray, rows: Sequence[int] | None = None, *,
                 usd_per_token: float | None = None, output_price: Mapping[str, float] | None = None, **kw) -> None:
        super().__init__({m: FakeModel() for m in table.models}, default=None, **kw)
        self.output_price = dict(output_price or {})
        idx = range(len(table)) if rows is None else rows
        used = np.asarray(cost)[list(idx)] if len(idx) else np.zeros((0, len(table.models)))
        self.usd_per_token = usd_per_token or _unit(float(np.nanmax(used)) if used.size else 0.0)
        self.table = table
        self._book: dict[tuple[str, str], tuple[str, int, int]] = {}  # (text, model) -> (reply, tokens, prompt)
        self._ambiguous: set[tuple[str, str]] = set()
        for i in idx:
            text = table.prompts[i].text
            for j, m in enumerate(table.models):
                c = float(cost[i, j])
                resp = table.responses[i][j] if table.responses is not None else None
                got = (resp if resp is not None else NO_RESPONSE, max(1, round(c / self.usd_per_token)), int(i))
                seen = self._book.get((text, m))
                if seen is not None and seen[:2] != got[:2]:
                    self._ambiguous.add((text, m))
                self._book.setdefault((text, m), got)

    def price(self) -> dict[str, float]:
        """The price every model is configured at, USD per 1M tokens."""
        return {"input": round(self.usd_per_token * 1e6, 12), "output": 0.0}

    def billed(self, recorded: float) -> float:
        """What the ledger bills for an answer recorded at ``recorded`` USD."""
        return max(1, round(recorded / self.usd_per_token)) * self.usd_per_token

    def models_yaml(self, provider: str, indent: str = "  ") -> str:
        """The config's ``models:`` entries (YAML flow lines): every model of the data, reached
        through ``provider`` under its own name, at :meth:`price`, with a context window above
        any input count an answer reports."""
        p = self.price()
        return "".join(f'{indent}- {{name: "{m}", provider: {provider}, model: "{m}", '
                       f'price: {{input: {p["input"]!r}, output: {self._out(m)}}}, '
                       f'context_window: {MAX_TOKENS}}}\n'
                       for m in self.table.models)

    def _out(self, model: str) -> str:
        got = self.output_price.get(model)
        return repr(got) if got is not None else f"{self.price()['output']:g}"

    def prompt_of(self, text: str, model: str) -> int | None:
        """The data's row of the prompt that text asks (for ``model``), if it holds one."""
        got = self._book.get((text, model))
        return got[2] if got is not None else None

    async def _serve(self, req, wire, call: Call, rec):
        key = (call.last_user, call.model)
        if call.model in self.models and (key not in self._book or key in self._ambiguous):
            st = self.stats[call.model]
            st.requests += 1
            why = ("answered differently in two of the data's prompts with this text" if key in self._ambiguous
                   else "is not in the replayed outcome data")
            return self._error(wire.bad_request(BadRequest(
                f"replay upstream: the prompt ({call.last_user[:60]!r}…) for model '{call.model}' {why}", "messages")), st)
        return await super()._serve(req, wire, call, rec)

    def _answer(self, call: Call, spec: FakeModel, prompt: int, wire, use=None, body=None) -> Answer:
        reply, tokens, _ = self._book[(call.last_user, call.model)]
        a = super()._answer(call, replace(spec, reply=reply), prompt, wire, use, None)
        out = 0 if self.output_price else a.output_tokens  # with list prices: output would be billed
        return replace(a, input_tokens=tokens, output_tokens=out, cache_read=0, cache_write=0, cache_write_1h=0)


def list_prices(table: OutcomeTable, cost: np.ndarray, rows: Sequence[int],
                answer_tokens: int = 256) -> dict[str, float]:
    """Per model, USD per 1M output tokens such that ``answer_tokens`` of answer cost the model's mean
    recorded cost over ``rows``: prices ranking the models as the data's costs do (``output_price``)."""
    c = np.asarray(cost)[list(rows)]
    return {m: float(np.nanmean(c[:, j])) / answer_tokens * 1e6 for j, m in enumerate(table.models)}
