"""Final-answer extraction and normalisation for generated reasoning.

Used by generation-based evaluation and by quality checks on teacher trajectories: pull the final
answer out of free text (``\\boxed{}``, then ``####``, then the last number) and decide whether it equals the
reference the way the field does. Equality is checked in three steps, cheapest first:

1. the normalised strings are equal (``"$1,000.00"`` and ``"1000"``);
2. both are plain numbers or ``a/b`` fractions: exact rational comparison (``1/2`` and ``0.5``), no sympy;
3. otherwise `math-verify <https://github.com/huggingface/Math-Verify>`_ (symbolic: ``2\\sqrt{2}`` and
   ``\\sqrt{8}``, ``x=3`` and ``3``, ``50\\%`` and ``50``, ``10^{\\circ}`` and ``10``). Word answers ("New
   York") never reach it (it would read them as products of symbols), nor do expressions whose evaluation
   could hang (huge powers or factorials).

math-verify bounds its work with ``signal.alarm``, which only works on the main thread; off it (a
validation thread, a thread pool) the alarm is disabled and only the size guard protects us. Any error
inside math-verify counts as "no match". math-verify is imported on first use, so importing this module
stays cheap.

Example::

    >>> answers_match("4 - 1 = 3\\n3 - 7 = -4\\n#### -4", "-4")
    True
"""

from __future__ import annotations

import logging
import re
import threading
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
_BOXED_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
# A number: optional sign, thousands-separated or plain digits, optional decimals, optional "/denominator".
# The sign only counts when it does not follow a word or a closing bracket, so "7-4" reads as 7 and 4,
# not 7 and -4; digits never start in the middle of another number.
_NUMBER = re.compile(
    r"(?:(?<![\w.)\]}])[-+](?=\.?\d)|(?<![\d.]))"
    r"(?:\d{1,3}(?:,\d{3})+(?!\d|,\d)(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:/\d+)?"
)
_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+)(?!\d|,\d)")
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textrm|mathrm|mbox)\s*\{([^{}]*)\}")
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")


def strip_thinking(text: str) -> str:
    """Remove complete ``<think>...</think>`` blocks.

    An unterminated ``<think>`` is left alone (the answer may be inside it). A ``</think>`` with no
    opening tag is what R1/Qwen3-style templates produce when the prompt already ends in ``<think>``;
    everything up to the last such closing tag is then reasoning and is dropped too.
    """
    text = _THINK_BLOCK.sub("", text)
    if "</think>" in text and "<think>" not in text:
        text = text.rsplit("</think>", 1)[1]
    return text


def extract_boxed(text: str) -> str | None:
    """Return the content of the first ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces included.

    Returns None when there is none or its braces never close (a truncated generation).
    """
    match = _BOXED_OPEN.search(text)
    if match is None:
        return None
    depth = 1
    for i in range(match.end(), len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[match.end() : i].strip()
    return None


def extract_answer(text: str) -> str | None:
    """Extract the final answer from a generated response.

    Order: thinking removed; the first ``\\boxed{}``; else the first number (or, failing that, the first
    token) on the line after the last ``####``; else the last number anywhere; else None.
    """
    text = strip_thinking(text)
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    if "####" in text:
        line = text.rsplit("####", 1)[1].strip().split("\n", 1)[0].strip()
        if line:
            number = _NUMBER.search(line)
            return number.group(0) if number else line.split()[0]
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _canonical_number(token: str) -> str | None:
    """Canonical text of a plain decimal (``'3.50'`` -> ``'3.5'``), or None if ``token`` is not one."""
    if not _PLAIN_NUMBER.fullmatch(token):
        return None
    try:
        value = Decimal(token)
    except InvalidOperation:  # pragma: no cover - the regex only lets valid decimals through
        return None
    if value == value.to_integral_value():
        return str(int(value))  # also turns -0 into 0 and drops leading zeros
    return format(value.normalize(), "f")


def _frac_to_slash(match: re.Match[str]) -> str:
    """``\\frac{a}{b}`` -> ``a/b``; a compound part keeps parentheses so ``\\frac{x+1}{2}`` stays exact."""
    parts = [p.strip() for p in match.groups()]
    parts = [p if re.fullmatch(r"[-+]?[\w.]+", p) else f"({p})" for p in parts]
    return f"{parts[0]}/{parts[1]}"


def normalize_answer(answer: str | None) -> str | None:
    """Normalise an answer string for comparison; None (or nothing left) gives None.

    Lower-cases; drops whitespace, ``$``, ``\\!``, ``\\,``, a trailing ``.``, thousands separators and a
    unary ``+``; unwraps ``\\text{}``; writes ``\\frac{a}{b}`` as ``a/b``; and writes numbers canonically
    (``'3.0'`` -> ``'3'``, ``'.5'`` -> ``'0.5'``, ``'007'`` -> ``'7'``, ``'-0'`` -> ``'0'``).
    """
    if answer is None:
        return None
    s = answer
    for _ in range(4):  # a few rounds unwrap nesting such as \text{\frac{1}{2}}
        s = _TEXT_WRAPPER.sub(r"\1", s)
        s = _FRAC.sub(_frac_to_slash, s)
    s = s.replace("\\!", "").replace("\\,", "").replace("\\ ", "").replace("$", "")
    s = s.replace("\\left", "").replace("\\right", "")
    s = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), s)
    s = "".join(s.split()).lower().rstrip(".")
    if "/" in s and s.count("/") == 1:
        num, den = s.split("/")
        num_c, den_c = _canonical_number(num), _canonical_number(den)
        if num_c is not None and den_c is not None:
            return f"{num_c}/{den_c}"
    canonical = _canonical_number(s)
    if canonical is not None:
        return canonical
    return s or None


_MV_TIMEOUT_S = 3  # per parse / comparison, on the main thread only (signal-based)
_MV_MAX_CHARS = 200
# Inputs sympy may never finish with: big exponents, towers of powers, big factorials.
_COSTLY = re.compile(r"\^\s*\{?\s*[-+]?\d{4,}|\d{4,}\s*!|\\binom|\\prod|\\sum|\\int")
_LATEX_COMMAND = re.compile(r"\\[a-zA-Z]+")
_WORD = re.compile(r"[a-zA-Z]{2,}")


class _DropTimeoutWarning(logging.Filter):
    """math-verify warns once per process when its alarm is disabled; we do that on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


def _rational(s: str) -> Fraction | None:
    """A normalised plain number or ``a/b`` as an exact fraction, else None."""
    num, _, den = s.partition("/")
    if _canonical_number(num) is None or (den and _canonical_number(den) is None):
        return None
    try:
        return Fraction(Decimal(num)) / (Fraction(Decimal(den)) if den else 1)
    except ZeroDivisionError:
        return None


def _math_verify_eligible(raw: str) -> bool:
    """Only short, symbolic-looking answers go to math-verify (words and costly expressions do not)."""
    if len(raw) > _MV_MAX_CHARS or _COSTLY.search(raw):
        return False
    return _WORD.search(_LATEX_COMMAND.sub(" ", raw)) is None


@lru_cache(maxsize=1)
def _math_verify():
    import math_verify

    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_DropTimeoutWarning())
    return math_verify


def _timeout() -> int | None:
    return _MV_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=8192)
def _parse(raw: str, timeout: int | None) -> tuple:
    return tuple(_math_verify().parse(f"${raw}$", parsing_timeout=timeout))


def symbolic_equal(predicted: str, reference: str) -> bool:
    """math-verify's equivalence of two bare answers; False on any error, timeout or ineligible input."""
    if not (_math_verify_eligible(predicted) and _math_verify_eligible(reference)):
        return False
    timeout = _timeout()
    try:
        gold, pred = _parse(reference, timeout), _parse(predicted, timeout)
        if not gold or not pred:
            return False
        return bool(_math_verify().verify(list(gold), list(pred), timeout_seconds=timeout))
    except Exception:  # sympy can raise anything on odd input; that is "not equal"
        return False


def answers_match(prediction_text: str, reference: str) -> bool:
    """True when the answer extracted from ``prediction_text`` is equivalent to the reference.

    ``reference`` is a bare answer string; if it still carries ``\\boxed{}`` or ``####`` (a full
    solution was passed), its answer is extracted first. See the module docstring for the three steps.
    """
    if "\\boxed" in reference or "\\fbox" in reference or "####" in reference:
        reference = extract_answer(reference) or ""
    raw_predicted = extract_answer(prediction_text)
    predicted = normalize_answer(raw_predicted)
    expected = normalize_answer(reference)
    if predicted is None or expected is None:
        return False
    if predicted == expected:
        return True
    a, b = _rational(predicted), _rational(expected)
    if a is not None and b is not None:
        return a == b  # plain numbers: decided exactly, without sympy
    return symbolic_equal(raw_predicted.strip(), reference.strip())
