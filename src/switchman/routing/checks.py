"""A cascade's acceptance checks: is this answer good enough to send, or should a better model
be asked? Each check returns ``None`` to accept or a few words saying why not (they become part
of ``x-switchman-reason``). All but the judge are local and take microseconds.

- ``refusal``: an empty answer, a content filter, or a reply that opens by declining;
- ``json``: the request asked for JSON, and the answer does not parse (or, for a JSON schema,
  does not meet it);
- ``tools``: a tool call names a tool that was not offered, or its arguments are not a JSON
  object meeting the tool's parameter schema;
- ``arithmetic``: a calculation the answer states (``3 * 20 = 60``, ``<<3*20=60>>``) has a
  wrong result (:mod:`.answers`; off unless asked for);
- ``agree``: fewer than ``agree`` of the answers already bought in this request settle on the
  same answer (:func:`.answers.final_choice`: the marked final number, the option letter, else
  the words). Independent models agreeing is the cheapest sign an answer is right; the first
  stage, with nothing to agree with, always escalates, so ``agree: 1`` over ``[a, b, c]`` asks
  ``a`` and ``b`` and pays for ``c`` only when they differ;
- ``logprob``: the answer's mean token probability (the geometric mean, ``exp`` of the mean
  logprob) is below the bar; skipped where the upstream returns no logprobs (Anthropic);
- ``scorer``: a trained answer scorer (FrugalGPT's idea) gives the answer less than ``min``
  probability of being right; it also sees whether the answer agrees with cheaper answers
  already rejected in this request;
- ``judge``: another configured model, asked to grade the answer 0–10, gives less than ``min``.
  A judge that cannot answer counts as a failed check: the cascade escalates rather than send
  an answer nobody vouched for.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache

import orjson

from ..config import ChecksSpec
from ..types import ChatRequest, ChatResponse, FinishReason, Message, Role, TextPart
from .answers import final_choice, wrong_calculation
from .base import prompt_text

# Openings of a declined request, as the major models phrase them.
_REFUSAL = re.compile(
    r"^\W*(?:i'?m sorry|i am sorry|sorry, (?:but )?i|i apologi[sz]e|unfortunately,? i (?:can|am|'m)|"
    r"i (?:can ?not|can't|cannot|won't|will not|am unable to|'m unable to|am not able to|'m not able to) "
    r"(?:help|assist|comply|provide|do|answer|fulfil|fulfill|complete|support)|as an ai\b)",
    re.IGNORECASE,
)
_GRADE = re.compile(r"\b(10|[0-9])(?:\.\d+)?\b")
JUDGE_PROMPT = (
    "You grade answers. Read the conversation and the answer to its last turn, then reply with "
    "only a number from 0 (wrong, unhelpful or refusing) to 10 (correct and complete)."
)

Judge = Callable[[ChatRequest], Awaitable[ChatResponse]]


def refusal(req: ChatRequest, resp: ChatResponse) -> str | None:
    if resp.finish_reason is FinishReason.CONTENT_FILTER:
        return "content filtered"
    text = resp.text().strip()
    if not text and not resp.tool_calls():
        return "empty answer"
    if text and _REFUSAL.match(text[:120]):
        return "refusal"
    return None


def json_valid(req: ChatRequest, resp: ChatResponse) -> str | None:
    rf = req.response_format
    if rf is None or rf.get("type") not in ("json_object", "json_schema") or resp.tool_calls():
        return None
    try:
        doc = orjson.loads(resp.text())
    except orjson.JSONDecodeError:
        return "answer is not JSON"
    schema = (rf.get("json_schema") or {}).get("schema") if rf.get("type") == "json_schema" else None
    if schema is not None:
        bad = _violation(schema, doc)
        if bad:
            return f"JSON does not meet the schema: {bad}"
    elif not isinstance(doc, dict):
        return "JSON answer is not an object"
    return None


def tools_valid(req: ChatRequest, resp: ChatResponse) -> str | None:
    offered = {t.name: t for t in req.tools or ()}
    for call in resp.tool_calls():
        tool = offered.get(call.name)
        if tool is None:
            return f"called unknown tool {call.name[:40]}"
        try:
            args = orjson.loads(call.arguments or "{}")
        except orjson.JSONDecodeError:
            return f"{call.name[:40]} arguments are not JSON"
        if not isinstance(args, dict):
            return f"{call.name[:40]} arguments are not an object"
        bad = _violation(tool.parameters, args) if tool.parameters else None
        if bad:
            return f"{call.name[:40]} arguments: {bad}"
    return None


def arithmetic(req: ChatRequest, resp: ChatResponse) -> str | None:
    bad = wrong_calculation(resp.text())
    return f"wrong calculation {bad}" if bad else None


def agreement(resp: ChatResponse, earlier: Sequence[str], least: int) -> str | None:
    if not earlier:
        return "no earlier answer to agree with"
    mine = final_choice(resp.text())
    k = sum(1 for e in earlier if mine and final_choice(e) == mine)
    return None if k >= least else f"agreed by {k} of {len(earlier)} earlier answers"


def confidence(resp: ChatResponse, least: float) -> str | None:
    if resp.logprob is None:
        return None  # this upstream gives no logprobs: no evidence either way
    p = math.exp(resp.logprob)
    return f"confidence {p:.2f}<{least:g}" if p < least else None


def _violation(schema: dict, doc: object) -> str | None:
    """The first way ``doc`` breaks ``schema`` (JSON Schema), in a few words, or None."""
    try:
        err = next(_validator(orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)).iter_errors(doc), None)
    except Exception:  # noqa: BLE001 - a schema the validator cannot use: not the answer's fault
        return None
    if err is None:
        return None
    where = "/".join(map(str, err.absolute_path))
    return f"{where + ': ' if where else ''}{err.message[:80]}"


@lru_cache(maxsize=256)
def _validator(schema: bytes):
    import jsonschema  # imported on first use: most gateways never validate a schema

    s = orjson.loads(schema)
    return jsonschema.validators.validator_for(s)(s)


def judge_request(req: ChatRequest, resp: ChatResponse, model: str) -> ChatRequest:
    answer = resp.text() or orjson.dumps([{"tool": c.name, "arguments": c.arguments}
                                          for c in resp.tool_calls()]).decode()
    body = f"Conversation:\n{prompt_text(req)[-6000:]}\n\nAnswer:\n{answer[:4000]}\n\nGrade (0-10):"
    return ChatRequest(model=model, messages=[Message(Role.USER, [TextPart(body)])],
                       system=[TextPart(JUDGE_PROMPT)], max_tokens=5, temperature=0.0)


def grade(resp: ChatResponse) -> float | None:
    m = _GRADE.search(resp.text())
    return float(m.group(0)) if m else None


class Checks:
    """The checks a cascade route configured, ready to run. ``scorer``: a loaded answer scorer."""

    def __init__(self, spec: ChecksSpec, scorer=None) -> None:
        self.spec = spec
        self.scorer = scorer
        self.local: list[Callable[[ChatRequest, ChatResponse], str | None]] = [
            f for on, f in ((spec.refusal, refusal), (spec.json, json_valid), (spec.tools, tools_valid),
                            (spec.arithmetic, arithmetic)) if on
        ]

    @property
    def wants_logprobs(self) -> bool:
        return self.spec.logprob is not None

    async def verdict(self, req: ChatRequest, resp: ChatResponse, earlier: Sequence[str],
                      judge: Judge | None = None, model: str | None = None) -> str | None:
        """``None``: send this answer. Otherwise why not. ``earlier``: the answers already
        rejected in this request, cheapest first. ``judge``: asks the judge model. ``model``:
        who answered (the scorer has one model per name it was trained on, and a shared one)."""
        for check in self.local:
            why = check(req, resp)
            if why:
                return why
        if self.spec.agree:
            why = agreement(resp, earlier, self.spec.agree)
            if why:
                return why
        if self.spec.logprob is not None:
            why = confidence(resp, self.spec.logprob)
            if why:
                return why
        if self.scorer is not None and not resp.tool_calls():
            s = self.scorer.score(prompt_text(req), resp.text(), earlier, model=model)
            if s < self.spec.scorer_min:
                return f"scorer {s:.2f}<{self.spec.scorer_min:g}"
        if self.spec.judge is not None and judge is not None:
            try:
                g = grade(await judge(judge_request(req, resp, self.spec.judge)))
            except Exception as e:  # noqa: BLE001 - any failure of the judge: no one vouched
                return f"judge failed ({getattr(e, 'kind', type(e).__name__)})"
            if g is None:
                return "judge gave no grade"
            if g < self.spec.judge_min:
                return f"judge {g:g}<{self.spec.judge_min:g}"
        return None
