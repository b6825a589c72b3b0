"""LARK tools on an OpenR1-style pool (a list of generations per row): every candidate is scored as
itself, and ``select lark`` writes the chosen generation, not the whole row."""

from __future__ import annotations

import json

import pytest

from lit_distill.tools import score_lark, select_lark

from helpers import write_jsonl

ROWS = [
    {
        "problem": f"What is {a} + {b}?",
        "answer": str(a + b),
        "generations": [f"{a} + {b} = {a + b}. #### {a + b}", "Hmm. " * 5 + f"#### {a + b + 1}", f"Add: {a + b}"],
        "correctness_math_verify": [True, False, True],
    }
    for a, b in ((1, 2), (3, 4), (5, 6))
]


@pytest.fixture
def scored(tmp_path, model_dir, capsys):
    pool = write_jsonl(tmp_path / "r1.jsonl", ROWS)
    scores = tmp_path / "scores.jsonl"
    args = ["--model", model_dir, "--data", str(pool), "--output", str(scores), "--accelerator", "cpu"]
    assert score_lark.main(args) == 0, capsys.readouterr().err[-2000:]
    return pool, scores


def test_score_lark_scores_every_kept_generation_once(scored):
    _, scores = scored
    lines = [json.loads(x) for x in scores.read_text().splitlines()]
    assert len({(r["problem_id"], r["candidate_id"]) for r in lines}) == len(lines) == 6  # 3 x 2 kept
    assert all(r["status"] == "ok" for r in lines)
    # Each candidate scored on its own tokens (keyed by (file, row), which must identify a candidate).
    assert [r["n_tokens"] for r in lines[:2]] == [19, 8]


def test_select_lark_writes_the_selected_generation(scored, tmp_path, capsys):
    pool, scores = scored
    out = tmp_path / "selected.jsonl"
    rc = select_lark.main(["--scores", str(scores), "--data", str(pool), "--output", str(out), "--budget", "1"])
    assert rc == 0, capsys.readouterr().err[-2000:]
    selected = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(selected) == 3
    for row in selected:  # one generation per written row, the one that was scored
        assert isinstance(row["generations"], str) and row["correctness_math_verify"] is True
