"""Reading an answer's own calculations: a wrong step is caught, a right, rounded, percent or
chained one is not, and nothing that is not arithmetic is evaluated."""

from __future__ import annotations

import pytest

from switchman.routing.answers import calculations, evaluate, final_choice, has_final_answer, wrong_calculation


@pytest.mark.parametrize("text", [
    "So 3 * 20 = 60 cups, and 15 + 25 = 40.",
    "He runs 3 x 60 = <<3*60=180>>180 meters.",
    "Each gets 10 / 3 = 3.33 dollars.",  # rounded to the digits shown
    "That is (4/20)*100% = 20% of the time.",  # a share written as a percentage
    "In total 8 * 12 + 4 = <<8*12+4=96+4=100>>100 inches.",  # a chained note
    "The total is $120 + $20 + (5 x $5) = $120 + $20 + $25 = $165.",  # a chain of equal sums
    "the temperature was -6 + 3 = -3 degrees",
    "16 \\* 1/2 = 8 bales",  # markdown-escaped *
    "1,350 + 6 * 350 = 1,350 + 2,100 = $3,450",
])
def test_right_calculations_pass(text):
    checked, wrong = calculations(text)
    assert checked >= 1 and wrong == 0, wrong_calculation(text)


@pytest.mark.parametrize("text, why", [
    ("So 3 * 20 = 70 cups.", "3 * 20=70"),
    ("15 + 25 = <<15+25=45>>45 cups", "15 + 25=45"),
    ("Altogether 3150 + 1300 + 48 + 2 = 4490 pounds.", "3150 + 1300 + 48 + 2=4490"),
])
def test_a_wrong_step_is_named(text, why):
    assert wrong_calculation(text) == why
    assert calculations(text)[1] == 1


@pytest.mark.parametrize("text", [
    "x * 4 + 8 = 40, so x = 8",  # algebra, not a stated calculation
    "Meet on 2024-10-21 = Monday",
    "import os; os.system('rm -rf /') = 1",
    "Let a = 5 and b = 7.",
    "Option (2) = 3 apples",
])
def test_what_is_not_arithmetic_is_not_judged(text):
    assert wrong_calculation(text) is None


def test_evaluate_takes_arithmetic_only():
    assert evaluate("2 x (3 + 4)") == 14
    assert evaluate("50%") == 0.5
    assert evaluate("__import__('os')") is None
    assert evaluate("2 ** 99999") is None  # no powers: nothing can blow up
    assert evaluate("1 / 0") is None


def test_final_answer_markers():
    assert has_final_answer("so it is 540.\n#### 540")
    assert has_final_answer("The answer is 12.")
    assert has_final_answer("\\boxed{12}")
    assert not has_final_answer("Wendi gives her chickens 15 cups in the morning and 25 cups")


@pytest.mark.parametrize("a, b", [
    ("B", "(B) because the passage says so"),
    ("b\n\nExplanation: ...", "Answer: B"),
    ("['D\\n']", "D."),  # routerbench keeps answers as the text of a Python list
    ("#### 1,540", "So the answer is 1540."),
    ("The final answer is $18.00", "#### 18"),
    ("Apples are red.", "apples are RED"),
])
def test_answers_that_settle_on_the_same_thing_agree(a, b):
    assert final_choice(a) == final_choice(b)


@pytest.mark.parametrize("a, b", [
    ("B", "C"),
    ("I think it depends", "I"),  # a sentence opening with "I" is not option I
    ("A big dog", "A"),
    ("#### 154", "#### 1540"),
    ("I'm not sure", "I"),
])
def test_answers_that_differ_do_not_agree(a, b):
    assert final_choice(a) != final_choice(b)
