"""The pieces of the semantic cache that decide, without a server: the guard that refuses
look-alike prompts with another meaning, and the threshold learned against ``max_error``."""

from __future__ import annotations

import pytest

from switchman.cache.calibration import Calibrator, load_prior, wilson_upper
from switchman.cache.guard import conflict


@pytest.mark.parametrize("a,b,why", [
    ("How do I enable 2FA on my account?", "How do I disable 2FA on my account?", "opposite"),
    ("Is the $40 plan enough for five people?", "Is the $400 plan enough for five people?", "numbers"),
    ("Book two tickets to Rome", "Book three tickets to Rome", "numbers"),
    ("Why is the build not passing?", "Why is the build passing?", "negated"),
    ("How do I lock my screen?", "How do I unlock my screen?", "opposite"),
    ("Tell me about France, please.", "Tell me about Germany, please.", "name"),
    ("Should I increase the timeout?", "Should I decrease the timeout?", "opposite"),
])
def test_look_alikes_with_another_meaning_conflict(a, b, why):
    assert why in (conflict(a, b) or "")


@pytest.mark.parametrize("a,b", [
    ("How do I reset my password?", "How can I reset my password"),
    ("What is the capital of France?", "Which city is France's capital?"),
    ("How do I turn on dark mode", "How can I switch on dark mode"),
    ("Book two tickets to Rome", "Please book 2 tickets to Rome"),
    ("Why isn't my build passing?", "Why does my build not pass?"),
])
def test_paraphrases_pass_the_guard(a, b):
    assert conflict(a, b) is None


def test_no_evidence_no_hits_and_evidence_lowers_the_threshold():
    c = Calibrator(0.05, None)
    assert c.threshold() > 1  # prior: none, nothing observed
    for _ in range(40):
        c.observe(0.97, False)
    t1 = c.threshold()
    assert t1 <= 0.97
    for _ in range(200):
        c.observe(0.91, False)
    assert c.threshold() <= 0.91 < t1


def test_wrong_answers_raise_it_and_the_bound_is_an_upper_one():
    c = Calibrator(0.05, None)
    for _ in range(300):
        c.observe(0.96, False)
    for _ in range(30):  # 30 of 90 wrong at 0.90: the 0.90 bin must not be admitted
        c.observe(0.90, True)
    for _ in range(60):
        c.observe(0.90, False)
    assert 0.90 < c.threshold() <= 0.96
    assert wilson_upper(0, 30) > 0.05  # 30 clean observations do not prove 5% at 84%...
    assert wilson_upper(0, 30, z=1.0) < 0.05 < wilson_upper(0, 30, z=2.0)  # ...the margin is the confidence's


def test_the_prior_starts_the_route_and_its_own_evidence_replaces_it():
    c = Calibrator(0.02, load_prior("minilm"))
    assert 0.95 <= c.threshold() <= 0.995  # measured on STS-B and MRPC training pairs
    for _ in range(60):  # the route's own traffic is wrong half the time up there
        c.observe(0.995, False)
        c.observe(0.995, True)
    assert c.threshold() > 1  # no hits until its evidence bounds the error again
