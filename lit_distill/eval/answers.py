"""Final-answer extraction and normalisation for generated reasoning.

Used by generation-based evaluation and by quality checks on teacher trajectories: pull the final
answer out of free text (``\\boxed{}``, then ``####``, then the last number) and normalise it so that
``"$1,000.00"`` and ``"1000"`` compare equal. Stdlib only, so it is cheap to import anywhere.

Example::

    >>> answers_match("4 - 1 = 3\\n3 - 7 = -4\\n#### -4", "-4")
    True
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

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


def answers_match(prediction_text: str, reference: str) -> bool:
    """True when the answer extracted from ``prediction_text`` equals the reference after normalisation.

    ``reference`` is a bare answer string; if it still carries ``\\boxed{}`` or ``####`` (a full
    solution was passed), its answer is extracted first.
    """
    if "\\boxed" in reference or "\\fbox" in reference or "####" in reference:
        reference = extract_answer(reference) or ""
    predicted = normalize_answer(extract_answer(prediction_text))
    expected = normalize_answer(reference)
    return predicted is not None and predicted == expected
