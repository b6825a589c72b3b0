"""Tests for the embedded demo pool (lit_distill/demo/generator.py)."""

import random
import subprocess
import sys

import pytest

from lit_distill.demo.generator import (
    EASY_CAPACITY,
    SOURCES,
    TEACHERS,
    DemoSpec,
    Problem,
    build_eval,
    build_pool,
    lecture,
    sample_problem,
    sloppy,
    stepwise,
)
from lit_distill.eval.answers import answers_match, extract_answer, normalize_answer

SPEC = DemoSpec(problems_per_source=300, eval_per_set=50, seed=3)
CORRECT_TEACHERS = sorted(set(TEACHERS) - {"sloppy", "sloppy60", "sloppy40", "sloppy30"})
RECORD_KEYS = {"source", "problem_id", "candidate_id", "teacher", "messages", "answer"}


@pytest.fixture(scope="module")
def pool():
    return build_pool(SPEC)


@pytest.fixture(scope="module")
def evals():
    return build_eval(SPEC)


def _expr(record: dict) -> str:
    return record["messages"][0]["content"].removeprefix("What is ").removesuffix("?")


def _mean_len(records: list[dict]) -> float:
    return sum(len(r["messages"][1]["content"]) for r in records) / len(records)


def _wrong_share(records: list[dict]) -> float:
    return sum(not answers_match(r["messages"][1]["content"], r["answer"]) for r in records) / len(records)


def test_deterministic_across_calls(pool, evals):
    assert build_pool(SPEC) == pool
    assert build_eval(SPEC) == evals
    assert build_pool(DemoSpec(problems_per_source=300, eval_per_set=50, seed=4)) != pool


def test_deterministic_across_processes(pool):
    # A fresh interpreter has a different string-hash salt; the pool must not depend on it.
    code = (
        "from lit_distill.demo.generator import DemoSpec, build_pool;"
        "p = build_pool(DemoSpec(problems_per_source=300, eval_per_set=50, seed=3));"
        "print(repr(p['noisy'][-1]), repr(p['verbose'][7]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"{pool['noisy'][-1]!r} {pool['verbose'][7]!r}"


def test_smaller_spec_is_a_prefix(pool):
    small = build_pool(DemoSpec(problems_per_source=40, eval_per_set=50, seed=3))
    for name, records in small.items():
        assert records == pool[name][: len(records)]


def test_schema(pool, evals):
    assert set(pool) == {"concise", "verbose", "noisy", "hard"}
    assert set(evals) == {"easy", "hard"}
    for name, records in pool.items():
        assert len(records) == 3 * SPEC.problems_per_source
        for r in records:
            assert set(r) == RECORD_KEYS
            assert r["source"] == name and r["teacher"] in TEACHERS
            assert isinstance(r["candidate_id"], int) and isinstance(r["answer"], str)
            assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
            assert r["messages"][0]["content"].startswith("What is ")
            assert int(r["answer"]) == eval(_expr(r))  # the reference is the true value
    for name, records in evals.items():
        assert len(records) == SPEC.eval_per_set
        for r in records:
            assert set(r) == RECORD_KEYS
            assert r["candidate_id"] == 0 and r["teacher"] == ""
            assert [m["role"] for m in r["messages"]] == ["user"]
            assert int(r["answer"]) == eval(_expr(r))
            assert r["source"] == f"eval_{name}"


def test_problem_ids_unique_across_pool_and_eval(pool, evals):
    problems = [(r["problem_id"], r["candidate_id"]) for rs in [*pool.values(), *evals.values()] for r in rs]
    assert len(problems) == len(set(problems))
    # A problem id never spans two sources, and within a source never spans two expressions.
    owner: dict[str, tuple[str, str]] = {}
    for rs in [*pool.values(), *evals.values()]:
        for r in rs:
            assert owner.setdefault(r["problem_id"], (r["source"], _expr(r))) == (r["source"], _expr(r))


def test_k3_distinct_teachers_problem_major(pool):
    for name, records in pool.items():
        for i in range(0, len(records), 3):
            group = records[i : i + 3]
            assert [r["candidate_id"] for r in group] == [0, 1, 2]
            assert len({r["problem_id"] for r in group}) == 1
            assert [r["teacher"] for r in group] == list(SOURCES[name][1])
            assert len({r["teacher"] for r in group}) == 3
        expressions = [_expr(r) for r in records[::3]]
        assert len(expressions) == len(set(expressions))  # no repeated problem within a source


def test_eval_disjoint_from_training(pool, evals):
    train = {_expr(r) for rs in pool.values() for r in rs}
    for records in evals.values():
        held_out = [_expr(r) for r in records]
        assert len(held_out) == len(set(held_out))
        assert not train & set(held_out)


def test_difficulty(pool, evals):
    for records in [pool["concise"], pool["verbose"], pool["noisy"], evals["easy"]]:
        for r in records:
            terms = [int(t) for t in _expr(r).split()[::2]]
            assert 2 <= len(terms) <= 3 and all(0 <= t <= 9 for t in terms)
    for records in [pool["hard"], evals["hard"]]:
        for r in records:
            terms = [int(t) for t in _expr(r).split()[::2]]
            # Longer chains of the same one-digit terms (two-digit terms left a ~1M student near 0%).
            assert 4 <= len(terms) <= 5 and all(0 <= t <= 9 for t in terms)


@pytest.mark.parametrize("teacher", CORRECT_TEACHERS)
def test_correct_teachers_end_with_true_value(teacher):
    rng = random.Random(11)
    for difficulty in ("easy", "hard"):
        for _ in range(200):
            problem = sample_problem(rng, difficulty)
            text = TEACHERS[teacher](problem, rng)
            assert normalize_answer(extract_answer(text)) == str(problem.value), text
            last = text.splitlines()[-1]
            assert last.startswith("#### ") or last.startswith("The answer is \\boxed{"), last


@pytest.mark.parametrize("name", ["concise", "verbose", "hard"])
def test_clean_sources_are_correct(pool, name):
    assert _wrong_share(pool[name]) == 0.0


def test_noisy_wrong_share(pool):
    share = _wrong_share(pool["noisy"])
    assert 0.3 <= share <= 0.6
    per_teacher = {t: _wrong_share([r for r in pool["noisy"] if r["teacher"] == t]) for t in SOURCES["noisy"][1]}
    assert per_teacher["sloppy60"] > per_teacher["sloppy30"]


def test_sloppy_errors_propagate():
    rng = random.Random(5)
    problem = Problem((4, 1, 7), ("-", "-"))
    assert sloppy(problem, rng, error_rate=0.0) == stepwise(problem, rng)
    for _ in range(50):
        text = sloppy(problem, rng, error_rate=1.0)
        answer = int(extract_answer(text))
        assert answer != problem.value and abs(answer - problem.value) <= 3
        # Exactly one step is off, by exactly the final error; later steps are right from the wrong total.
        errors = []
        for line in text.splitlines()[:-1]:
            a, op, b, _, c = line.split()
            errors.append(int(c) - (int(a) + int(b) if op == "+" else int(a) - int(b)))
        assert sorted(errors, key=abs)[:-1] == [0] * (len(errors) - 1)
        assert sum(errors) == answer - problem.value


def test_lengths(pool):
    assert _mean_len(pool["verbose"]) >= 3 * _mean_len(pool["concise"])
    rng = random.Random(2)
    for difficulty in ("easy", "hard"):
        for _ in range(100):
            problem = sample_problem(rng, difficulty)
            assert len(lecture(problem, rng)) >= 3 * len(stepwise(problem, rng))


def test_examples_from_the_spec():
    problem = Problem((4, 1, 7), ("-", "-"))
    rng = random.Random(0)
    assert problem.question == "What is 4 - 1 - 7?" and problem.value == -4
    assert TEACHERS["stepwise"](problem, rng) == "4 - 1 = 3\n3 - 7 = -4\n#### -4"
    assert TEACHERS["grouped"](problem, rng) == "plus: 4\nminus: 1 + 7 = 8\n4 - 8 = -4\n#### -4"
    assert TEACHERS["terse"](problem, rng) == "#### -4"
    assert TEACHERS["grouped"](Problem((2, 3), ("+",)), rng) == "plus: 2 + 3 = 5\nminus: none\ntotal: 5\n#### 5"


def test_too_many_easy_problems_rejected():
    with pytest.raises(ValueError, match="distinct easy problems"):
        build_pool(DemoSpec(problems_per_source=EASY_CAPACITY, eval_per_set=1))


def test_every_trajectory_fits_the_demo_generation_budget(demo_assets):
    """A student that imitates any teacher must not be cut off before its final answer line."""
    import json
    from pathlib import Path

    import yaml
    from transformers import AutoTokenizer

    config = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "demo.yaml").read_text())
    budgets = [config["model"]["generation"]["max_new_tokens"], config["dmc"]["init_args"]["max_new_tokens"]]
    root = demo_assets  # as ensure_demo_assets builds them (shared with the benchmark smoke tests)
    tok = AutoTokenizer.from_pretrained(root / "tokenizer")
    longest = max(
        len(tok(json.loads(line)["messages"][1]["content"] + "<|im_end|>")["input_ids"])
        for path in (root / "pool").glob("*.jsonl")
        for line in path.read_text().splitlines()
    )
    assert longest <= min(budgets), (longest, budgets)
