"""``lit-distill score {lark,dmc}``: score data with a student, without training."""

from __future__ import annotations

import importlib

COMMANDS = {
    "lark": "lit_distill.tools.score_lark",  # per-trajectory learnability (rho, g-hat) of a LARK pool
    "dmc": "lit_distill.tools.score_dmc",  # static DMC of every source of a training config
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print("usage: lit-distill score {lark,dmc} ...   (lit-distill score lark --help)")
        return 2
    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
