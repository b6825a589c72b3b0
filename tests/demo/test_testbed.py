"""The validation testbed (lit_distill/demo/testbed.py): its designed differences hold by construction."""

import random

import numpy as np
import pytest

from lit_distill.demo.generator import Problem
from lit_distill.demo.testbed import (
    FILLER,
    TERMS,
    TESTBED_SOURCES,
    TestbedSpec,
    build_testbed_eval,
    build_testbed_pool,
    rewrite,
)
from lit_distill.eval.answers import answers_match, extract_answer

SPEC = TestbedSpec(scale=0.25, eval_per_set=100, seed=5)


@pytest.fixture(scope="module")
def pool():
    return build_testbed_pool(SPEC)


def _wrong_rate(records) -> float:
    return float(
        np.mean([not answers_match(extract_answer(r["messages"][1]["content"]), r["answer"]) for r in records])
    )


def test_eight_sources_with_unequal_sizes_and_four_candidates_per_problem(pool):
    assert list(pool) == list(TESTBED_SOURCES)
    sizes = {n: len(r) for n, r in pool.items()}
    assert len(set(sizes.values())) > 3, sizes  # unequal: uniform, balanced and temperature mixtures differ
    for name, records in pool.items():
        assert sizes[name] == 4 * round(TESTBED_SOURCES[name][2] * SPEC.scale)
        by_problem: dict[str, list[int]] = {}
        for r in records:
            by_problem.setdefault(r["problem_id"], []).append(r["candidate_id"])
        assert all(sorted(c) == [0, 1, 2, 3] for c in by_problem.values()), name


def test_quality_ladder_and_clean_sources(pool):
    assert 0.15 < _wrong_rate(pool["easy_wrong20"]) < 0.25
    assert 0.38 < _wrong_rate(pool["easy_wrong45"]) < 0.52
    for name in ("easy", "easy_verbose", "easy_filler", "medium", "medium_style2", "hard"):
        assert _wrong_rate(pool[name]) == 0.0, name


def test_difficulty_ladder_counts_terms(pool):
    for name, records in pool.items():
        lo, hi = TERMS[TESTBED_SOURCES[name][0]]
        terms = {len(r["messages"][0]["content"].split()) // 2 for r in records}  # "What is a - b?": 2 words/term
        assert min(terms) >= lo and max(terms) <= hi, (name, terms)


def test_verbosity_ladder(pool):
    def mean_len(name):
        return np.mean([len(r["messages"][1]["content"]) for r in pool[name]])

    assert mean_len("easy_verbose") > 3 * mean_len("easy")
    assert mean_len("easy") < mean_len("easy_filler")
    assert all(r["messages"][1]["content"].startswith(FILLER) for r in pool["easy_filler"] if r["candidate_id"] == 0)


def test_eval_sets_are_disjoint_from_the_pool_and_sized(pool):
    evals = build_testbed_eval(SPEC)
    assert {n: len(v) for n, v in evals.items()} == {"easy": 100, "medium": 100, "hard": 100}
    seen = {r["messages"][0]["content"] for records in pool.values() for r in records}
    for records in evals.values():
        assert not seen & {r["messages"][0]["content"] for r in records}


def test_rewrite_teacher_is_correct_and_build_is_deterministic(pool):
    rng = random.Random(0)
    for _ in range(200):
        terms = tuple(rng.randint(0, 9) for _ in range(rng.randint(2, 6)))
        p = Problem(terms, tuple(rng.choice("+-") for _ in terms[1:]))
        text = rewrite(p, rng)
        assert extract_answer(text) == str(p.value)
        assert text.split("\n")[0].split(" = ")[-1] == str(p.value)
    assert build_testbed_pool(SPEC)["hard"][:8] == pool["hard"][:8]
