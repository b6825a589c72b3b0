"""One raw row -> the lit-distill records it holds (one per candidate response), strictly typed.

Every error names the source, the file, the 1-based line (``where``) and the field. Nothing is coerced that
could hide a mistake: text fields must be strings (an integer ``content`` is an error), candidate ids
integers, correctness flags booleans (0/1 and CSV's true/false spellings accepted).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from lit_distill.data.readers import SourceError
from lit_distill.eval.answers import extract_answer

ROLES = ("system", "user", "assistant")
# ShareGPT and other common role spellings.
ROLE_ALIASES = {"human": "user", "gpt": "assistant", "bot": "assistant", "model": "assistant"}
_FLAG_WORDS = {"true": 1, "1": 1, "yes": 1, "false": 0, "0": 0, "no": 0}


def prompt_key(messages: list[dict[str, str]]) -> str:
    """Default problem id: a hash of the non-assistant turns (same question = same problem)."""
    text = json.dumps([t for t in messages if t["role"] != "assistant"], sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def question_hash(messages: list[dict[str, str]]) -> str:
    """Hash of the user turns only: what must agree between rows that share a problem id (teachers may
    use different system prompts for the same question)."""
    text = json.dumps([t["content"] for t in messages if t["role"] == "user"])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def text(value: Any, where: str, fld: str, optional: bool = False) -> str | None:
    """A string field; None is allowed only when ``optional``. Lone surrogates are rejected here, where
    the line is known, rather than by Arrow later with no location."""
    if value is None:
        if optional:
            return None
        raise SourceError(f"{where}: field '{fld}' is missing (null)")
    if not isinstance(value, str):
        raise SourceError(f"{where}: field '{fld}' must be a string, got {type(value).__name__} ({value!r:.40})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SourceError(
            f"{where}: field '{fld}' holds a lone surrogate (an invalid \\ud800-\\udfff escape)"
        ) from None
    return value


def answer_text(value: Any, where: str, fld: str) -> str:
    """A reference answer: a string, or a number written as the file wrote it (2 -> "2", never "2.0").
    A full solution (``####``/``\\boxed{}``) is reduced to its final answer."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SourceError(f"{where}: field '{fld}' must be a string or a number, got {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a float column (a parquet int column with gaps) holding an integer
    return reference_from(str(value)) if isinstance(value, str) else str(value)


def reference_from(solution: str) -> str:
    """The final answer of a worked solution when it marks one (``####`` or ``\\boxed{}``), else itself."""
    if "####" in solution or "\\boxed" in solution or "\\fbox" in solution:
        return extract_answer(solution) or ""
    return solution.strip()


def turns(raw: Any, where: str, fld: str) -> list[dict[str, str]]:
    """A list of turns as ``{role, content}`` or ShareGPT ``{from, value}``."""
    if raw is None:
        raise SourceError(f"{where}: field '{fld}' is missing (null or absent)")
    if not isinstance(raw, list) or not raw:
        raise SourceError(f"{where}: field '{fld}' must be a non-empty list of {{role, content}} turns")
    out = []
    for i, turn in enumerate(raw):
        keys = ("role", "content") if isinstance(turn, dict) and "role" in turn else ("from", "value")
        if not isinstance(turn, dict) or keys[0] not in turn or keys[1] not in turn:
            raise SourceError(
                f"{where}: field '{fld}[{i}]' must be an object with 'role' and 'content' (or ShareGPT's "
                f"'from' and 'value'), got {turn!r:.60}"
            )
        role = turn[keys[0]]
        role = ROLE_ALIASES.get(role, role) if isinstance(role, str) else role
        if role not in ROLES:
            raise SourceError(
                f"{where}: field '{fld}[{i}].{keys[0]}' is {turn[keys[0]]!r}, not one of {ROLES} "
                f"(or {sorted(ROLE_ALIASES)})"
            )
        out.append({"role": role, "content": text(turn[keys[1]], where, f"{fld}[{i}].{keys[1]}")})
    return out


def flag(value: Any, where: str, fld: str) -> int:
    """A correctness flag: 1, 0, or -1 when unknown (null or an empty CSV cell)."""
    if value is None or value == "":
        return -1
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip().lower() in _FLAG_WORDS:
        return _FLAG_WORDS[value.strip().lower()]
    raise SourceError(f"{where}: field '{fld}' must be true/false, got {value!r:.40}")


def check_conversation(msgs: list[dict[str, str]], where: str, fld: str, require_response: bool) -> None:
    """Single-turn only: [system], user, [assistant]. Say so plainly instead of failing later in the
    tokeniser with a span error."""
    roles = [t["role"] for t in msgs]
    body = roles[1:] if roles[0] == "system" else roles
    if "system" in body:
        raise SourceError(f"{where}: field '{fld}': a system turn may only come first")
    if not body or body[0] != "user":
        first = body[0] if body else "nothing"
        raise SourceError(f"{where}: field '{fld}': the conversation must start with a user turn, not {first}")
    if body.count("user") > 1 or body.count("assistant") > 1:
        raise SourceError(
            f"{where}: field '{fld}': multi-turn conversations are not supported ({body.count('user')} user "
            f"and {body.count('assistant')} assistant turns); split them into one row per final answer"
        )
    if require_response:
        if body[-1] != "assistant":
            raise SourceError(f"{where}: field '{fld}' does not end with an assistant turn")
        if not msgs[-1]["content"].strip():
            raise SourceError(f"{where}: field '{fld}': the assistant turn is empty")
