"""Tests for answer extraction and normalisation (lit_distill/eval/answers.py)."""

import threading

import pytest

from lit_distill.eval import answers
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
        ("The answer is \\boxed{\\frac{1}{2}}.", "0.5", True),  # equivalent forms match (math-verify)
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


# ---- equivalence the field accepts (math-verify), and what it must still reject ------------------------
@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        (r"\boxed{\frac{1}{2}}", "0.5"),
        (r"\boxed{0.5}", r"\frac{1}{2}"),
        (r"\boxed{2\sqrt{2}}", r"\sqrt{8}"),
        (r"\boxed{x=3}", "3"),
        (r"\boxed{50\%}", "50"),
        (r"\boxed{10^{\circ}}", "10"),
        (r"\boxed{\dfrac{3}{4}}", "0.75"),
        (r"\boxed{(x+1)^2}", "x^2+2x+1"),
        (r"\boxed{\{1, 2\}}", r"\{2, 1\}"),
        ("#### 2/4", "0.5"),  # plain numbers: the exact rational path
        ("#### 2.0", "2"),
    ],
)
def test_field_equivalences_match(prediction, reference):
    assert answers_match(prediction, reference)


@pytest.mark.parametrize(
    ("prediction", "reference"),
    [
        (r"\boxed{\frac{1}{3}}", "0.33"),  # no rounding on plain numbers
        (r"\boxed{x=3}", "4"),
        (r"\boxed{\pi}", "3.14159"),
        (r"\boxed{(1, 2)}", "(2, 1)"),
        (r"\boxed{2\sqrt{3}}", r"\sqrt{8}"),
        (r"\boxed{yes}", "sey"),  # words are compared as text, never as products of symbols
        (r"\boxed{New York}", "York New"),
        ("#### 3", "3 apples"),
        (r"\boxed{2^{10000000000}}", "3"),  # too costly for sympy: not attempted (would hang)
    ],
)
def test_non_equivalent_answers_do_not_match(prediction, reference):
    assert not answers_match(prediction, reference)


def test_costly_inputs_are_never_given_to_sympy():
    assert not answers._math_verify_eligible("2^{10000000000}")
    assert not answers._math_verify_eligible("100000!")
    assert not answers._math_verify_eligible("x" * 500)
    assert answers._math_verify_eligible(r"2\sqrt{2}")


def test_math_verify_off_the_main_thread():
    # math-verify's signal-based timeout raises ValueError off the main thread; we must disable it there.
    answers._parse.cache_clear()
    out = []
    t = threading.Thread(target=lambda: out.append(answers_match(r"\boxed{2\sqrt{2}}", r"\sqrt{8}")))
    t.start()
    t.join()
    assert out == [True]


def _match_pair(pair):
    return answers_match(*pair)


def test_math_verify_in_a_dataloader_worker():
    torch = pytest.importorskip("torch")
    pairs = [(r"\boxed{2\sqrt{2}}", r"\sqrt{8}"), (r"\boxed{x=3}", "4")]
    loader = torch.utils.data.DataLoader(pairs, batch_size=None, num_workers=1, collate_fn=_match_pair)
    assert list(loader) == [True, False]


def test_errors_inside_math_verify_mean_no_match(monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("sympy blew up")

    monkeypatch.setattr(answers, "_parse", boom)
    assert not answers_match(r"\boxed{2\sqrt{2}}", r"\sqrt{8}")
    assert answers_match("#### 1/2", "0.5")  # the exact path does not need math-verify
