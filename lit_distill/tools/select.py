"""``lit-distill select lark``: pick the top-B trajectories of every problem from LARK scores."""

from __future__ import annotations

import importlib

COMMANDS = {"lark": "lit_distill.tools.select_lark"}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print("usage: lit-distill select lark ...   (lit-distill select lark --help)")
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
