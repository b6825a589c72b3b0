"""Deprecated home of the scoring passes, kept for one release: use ``lit_distill.scorer``.

``callbacks/dmc.py`` and ``callbacks/lark.py`` still import from here; the functions are the scorer's own.
"""

from lit_distill.scorer import STAT_COLUMNS, ScoringError, answer_rows, score_rows

__all__ = ["STAT_COLUMNS", "ScoringError", "answer_rows", "score_rows"]
