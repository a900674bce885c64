"""The cascade's local checks on answers a user would recognise."""

from __future__ import annotations

import pytest

from switchman.routing.checks import grade, json_valid, refusal
from switchman.types import ChatRequest, ChatResponse, FinishReason, Message, Role, TextPart


def _resp(text: str, finish=FinishReason.STOP) -> ChatResponse:
    return ChatResponse("r", "m", [TextPart(text)] if text else [], finish, None)


REQ = ChatRequest(model="auto", messages=[Message(Role.USER, [TextPart("hi")])])


@pytest.mark.parametrize("text", [
    "I'm sorry, but I can't help with that.", "I cannot assist with this request.",
    "I can't provide that information.", "Sorry, I can't do that.", "As an AI, I do not have opinions.",
    "I apologize, but I am unable to comply.", "  I won't help with that.", "Unfortunately, I can't answer.",
])
def test_refusals_are_caught(text):
    assert refusal(REQ, _resp(text)) == "refusal"


@pytest.mark.parametrize("text", [
    "I can help with that: first, preheat the oven.", "Sorry for the wait! Here is the plan.",
    "The answer is 42.", "I cannot stress enough how important sleep is.",
])
def test_answers_that_merely_sound_alike_pass(text):
    assert refusal(REQ, _resp(text)) is None


def test_empty_and_filtered_answers_fail():
    assert refusal(REQ, _resp("   ")) == "empty answer"
    assert refusal(REQ, _resp("partial", FinishReason.CONTENT_FILTER)) == "content filtered"


def test_json_mode_wants_an_object_that_parses():
    req = ChatRequest(model="auto", messages=REQ.messages, response_format={"type": "json_object"})
    assert json_valid(req, _resp("```json\n{}\n```")) == "answer is not JSON"
    assert json_valid(req, _resp('{"a": 1}')) is None
    assert json_valid(REQ, _resp("not json at all")) is None, "no JSON asked for: nothing to check"


def test_judge_grades_are_read_from_the_reply():
    assert grade(_resp("8")) == 8 and grade(_resp("Grade: 10/10")) == 10 and grade(_resp("7.5")) == 7.5
    assert grade(_resp("excellent")) is None
