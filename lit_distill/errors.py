"""One-line errors for the ``lit-distill`` command: known exceptions become ``lit-distill: error: ...``.

A person who mistyped a key, pointed at a missing file or asked for a GPU the machine lacks needs one line
that names the key, file or setting, not a usage dump or a 100-line traceback. ``cli.main`` runs every
sub-command through ``run_reported``; the traceback is kept behind ``--debug`` or ``LIT_DISTILL_DEBUG=1``
(exceptions are then re-raised unchanged).
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable, Iterable

DEBUG_FLAG = "--debug"
DEBUG_ENV = "LIT_DISTILL_DEBUG"
ERROR_EXIT_CODE = 1
HINT = f"(run with {DEBUG_FLAG} or {DEBUG_ENV}=1 for the traceback)"


class ConfigError(ValueError):
    """A configuration value that cannot work, found before any data is tokenised; the message names the key."""


class MissingModelFolderError(FileNotFoundError):
    """A local model or tokenizer folder that does not exist (reported as such, not as a failed hub download)."""


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """(traceback wanted, argv without ``--debug``)."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
    return env or DEBUG_FLAG in argv, [a for a in argv if a != DEBUG_FLAG]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def load_local_or_hub(load: Callable, path, **kwargs):
    """``load(path, **kwargs)`` (a ``from_pretrained``); a failure for a path that is not on disk is reported as
    the missing local folder it most likely is, not as the hub download ``from_pretrained`` then attempted."""
    try:
        return load(path, **kwargs)
    except Exception as exc:
        if not isinstance(path, str) or os.path.exists(path):
            raise
        # Lead with what a person can act on: the folder is not there. The hub attempt is mentioned only when the
        # path could be a hub id (org/name) and the hub was reachable in principle (not HF_HUB_OFFLINE).
        hint = ""
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false")
        if re.fullmatch(r"[\w.-]+/[\w.-]+", path) and not offline:
            cause = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
            hint = f"; as a hub id it failed too: {cause[:200]}"
        raise MissingModelFolderError(
            f"model folder {path!r} does not exist (working directory {os.getcwd()}){hint}"
        ) from exc


def _unknown_key_hint(message: str, parser) -> str:
    patterns = (r"unrecognized arguments: --([\w.]+)", r"[Kk]ey '([\w.]+)'", r"does not accept option '([\w.]+)'")
    match = next((m for m in (re.search(p, message) for p in patterns) if m), None)
    if not match or parser is None:
        return ""
    keys = [d.lstrip("-") for a in getattr(parser, "_actions", []) for d in a.option_strings]
    for sub in (getattr(parser, "_subcommands_action", None) and parser._subcommands_action.choices.values()) or []:
        keys += [d.lstrip("-") for a in sub._actions for d in a.option_strings]
    return did_you_mean(match.group(1), keys)


# jsonargparse's nested explanation lines that say nothing about what is wrong.
_NOISE = ("Does not validate against", "Subtypes:", "Errors:", "Given value", "Expected a ", "Problem with given")


def _jsonargparse_line(text: str, parser) -> str:
    lines = [ln.strip().removeprefix("- ").strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return "invalid configuration"
    key = re.match(r'Parser key "([^"]+)"', lines[0])
    specific = [ln for ln in lines[1:] if not ln.startswith(_NOISE)]
    msg = f"{key.group(1)}: {specific[0]}" if key and specific else lines[0]
    return msg.rstrip(".:") + (_unknown_key_hint(text, parser) or _init_arg_hint(text))


def _init_arg_hint(text: str) -> str:
    """ "did you mean" for an unknown ``init_args`` option of a ``class_path`` (its constructor's parameters)."""
    import importlib
    import inspect

    cls, option = re.search(r"class_path '([\w.]+)'", text), re.search(r"Option '(\w+)' is not accepted", text)
    if not (cls and option):
        return ""
    module, _, name = cls.group(1).rpartition(".")
    try:
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        return ""
    return did_you_mean(option.group(1), params)


def one_line(exc: BaseException, parser=None) -> str:
    """The message a person reads for ``exc``: its first meaningful line, prefixed where the type says more."""
    name = type(exc).__name__
    text = str(exc).strip()
    gpu = re.search(r"\b(cuda|gpu|mps)\b", text, re.I) and re.search(r"not available|no supported", text, re.I)
    if name == "MisconfigurationException" and gpu:
        return (
            "trainer.accelerator asks for a GPU but none is available on this machine "
            "(use --trainer.accelerator cpu or auto)"
        )
    if name in ("ArgumentError", "NSKeyError") or "jsonargparse" in type(exc).__module__:
        return "config: " + _jsonargparse_line(text, parser)
    if text.startswith("Does not validate against any of the Union subtypes"):
        # jsonargparse: a constructor (or __post_init__) refused an optional value; its message is a "- " line
        # beside "Expected a <class 'NoneType'>" (the other member of the Optional).
        causes = [ln.strip()[2:] for ln in text.splitlines() if ln.strip().startswith("- ")]
        text = next((c for c in causes if not c.startswith("Expected a ")), text)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if isinstance(exc, FileNotFoundError | MissingModelFolderError | ValueError | KeyError | OSError) and first:
        return first
    return f"{name}: {first}" if first else name


def run_reported(func: Callable[[list[str]], object], argv: list[str], parser_of=None) -> object:
    """Run ``func(argv)``; an exception (not SystemExit/KeyboardInterrupt) becomes one line on stderr and exit 1.

    ``parser_of`` (optional) returns the parser that was in use, for "did you mean" on unknown keys.
    """
    debug, argv = debug_requested(argv)
    try:
        return func(argv)
    except Exception as exc:
        if debug:
            raise
        parser = parser_of() if parser_of else None
        print(f"lit-distill: error: {one_line(exc, parser)}", file=sys.stderr)
        print(HINT, file=sys.stderr)
        raise SystemExit(ERROR_EXIT_CODE) from None
