"""Tests for answer extraction and normalisation (lit_distill/eval/answers.py)."""

import pytest

from lit_distill.eval.answers import (
    answers_match,
    extract_answer,
    extract_boxed,
    normalize_answer,
    strip_thinking,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think>2 + 2 = 5?</think>The answer is 4", "The answer is 4"),
        ("a<think>x</think>b<think>y\nz</think>c", "abc"),
        ("<think>never closed 7", "<think>never closed 7"),  # only complete blocks go
        ("reasoning 1 2 3</think>final 9", "final 9"),  # prompt already opened <think>
        ("no tags at all", "no tags at all"),
    ],
)
def test_strip_thinking(text, expected):
    assert strip_thinking(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{42}.", "42"),
        (r"\boxed{\frac{1}{2}} and later \boxed{3}", r"\frac{1}{2}"),  # first one, nested braces
        (r"\boxed{{a}{b{c}}}", "{a}{b{c}}"),
        (r"\fbox{-7}", "-7"),
        (r"\boxed {5}", "5"),
        (r"\boxed{ 12 }", "12"),
        (r"\boxed{unclosed {", None),
        ("no box here 5", None),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4 - 1 = 3\n3 - 7 = -4\n#### -4", "-4"),
        ("#### 18", "18"),
        ("#### 1,000 apples", "1,000"),
        ("#### $5.50", "5.50"),
        ("#### The answer is 12.", "12"),
        ("#### yes", "yes"),
        ("#### 3\nthen more 99", "3"),  # only the line after ####
        ("#### 1\nchanged my mind\n#### 2", "2"),  # the last ####
        ("####\nno answer on that line, last number 8", "8"),
        ("The answer is \\boxed{-3}. #### 5", "-3"),  # boxed beats ####
        ("We have 3 apples, 5 pears, and 12 plums.", "12"),
        ("it drops to -15 degrees", "-15"),
        ("7-4 is three", "4"),  # a hyphen after a digit is not a sign
        ("x = 0.25", "0.25"),
        ("about .5 of it", ".5"),
        ("half is 1/2", "1/2"),
        ("no digits here", None),
        ("", None),
        ("<think>I think 99</think>so 7", "7"),
        ("<think>\\boxed{1}</think>\\boxed{2}", "2"),
        ("<think>it is 5</think>", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("42", "42"),
        ("  42  ", "42"),
        ("$42$", "42"),
        ("42.", "42"),
        ("1,000", "1000"),
        ("1,234,567.5", "1234567.5"),
        ("+5", "5"),
        ("007", "7"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("3.0", "3"),
        ("3.50", "3.5"),
        (".5", "0.5"),
        ("-.5", "-0.5"),
        ("-4", "-4"),
        (r"10\!000", "10000"),
        (r"\text{Yes}", "yes"),
        (r"5\text{ apples}", "5apples"),
        (r"\frac{1}{2}", "1/2"),
        (r"\dfrac{3}{04}", "3/4"),
        (r"-\frac{1}{2}", "-1/2"),
        (r"\frac{x+1}{2}", "(x+1)/2"),
        ("2/4", "2/4"),  # fractions are not reduced
        ("1, 2", "1,2"),  # a list is not a thousands-separated number
        ("New York", "newyork"),
        ("", None),
        ("  $ ", None),
        (None, None),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("4 - 1 = 3\n3 - 7 = -4\n#### -4", "-4", True),
        ("4 - 1 = 3\n3 - 7 = -4\n#### -4", "4", False),
        ("The answer is \\boxed{1,000}.", "1000", True),
        ("The answer is \\boxed{\\frac{1}{2}}.", "0.5", False),  # no cross-form equivalence
        ("The answer is \\boxed{\\frac{1}{2}}.", "1/2", True),
        ("so the total is 3.50 dollars", "3.5", True),
        ("#### 12", "The total is 12.\n#### 12", True),  # a full solution as reference
        ("#### 12", "\\boxed{12}", True),
        ("I do not know", "5", False),
        ("", "", False),  # nothing extracted never matches
        ("<think>the answer is 5</think>#### 6", "5", False),
        ("<think>hmm</think>#### 6", "6", True),
        ("#### -0", "0", True),
    ],
)
def test_answers_match(prediction, reference, expected):
    assert answers_match(prediction, reference) is expected


def test_reference_is_not_extracted_from_without_markers():
    # A bare reference is taken whole: "3 apples" normalises to "3apples", not to its last number.
    assert not answers_match("#### 3", "3 apples")
    assert answers_match("#### 3 apples", "3")  # the prediction side does extract the number
