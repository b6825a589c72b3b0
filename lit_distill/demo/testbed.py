"""The validation testbed: eight training sources whose differences are known by construction.

The demo pool (``generator.py``) has four sources, too few to correlate anything. The testbed, used by the
studies of ``docs/experiments/protocol.md``, varies one property at a time against the ``easy`` reference:

==================  ==========  ==========================================  ===========  ========
source              difficulty  teachers (candidates 0..3)                  wrong final  problems
==================  ==========  ==========================================  ===========  ========
``easy``            easy        stepwise, grouped, terse, rewrite           0 %          800
``easy_wrong20``    easy        sloppy, one step off with p = 0.20          ~20 %        600
``easy_wrong45``    easy        sloppy, one step off with p = 0.45          ~45 %        600
``easy_verbose``    easy        lecture, ramble, lecture2, lecture          0 %          500
``easy_filler``     easy        as ``easy``, after a fixed filler paragraph 0 %          400
``medium``          medium      stepwise, grouped, terse, rewrite           0 %          1000
``medium_style2``   medium      rewrite, grouped, lecture2, ramble          0 %          500
``hard``            hard        stepwise, grouped, terse, rewrite           0 %          1200
==================  ==========  ==========================================  ===========  ========

Difficulty is the number of one-digit terms: easy 2-3, medium 4, hard 5-6 (two-digit terms leave a student
this small near 0 %, see ``generator.sample_problem``). Sizes differ on purpose, so the uniform (per-row),
balanced (per-source) and temperature mixtures differ. Every problem has K = 4 candidates (LARK selects
within a problem). Held-out ``easy``, ``medium`` and ``hard`` sets of 300 problems each share no expression
with the pool. The tokenizer is the demo's (the same alphabet and teacher phrases).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lit_distill.demo.generator import TEACHERS, Problem, eval_records, pool_records, sloppy, stepwise

TERMS = {"easy": (2, 3), "medium": (4, 4), "hard": (5, 6)}
FILLER = (
    "Before solving, a note on method: arithmetic is easiest when each step is written down and checked "
    "against the previous running total before moving on to the next term."
)


def rewrite(problem: Problem, rng: random.Random) -> str:
    """A second teacher style: rewrite the expression, folding the first two terms each time."""
    parts = [problem.expression]
    for i, (_, _, _, after) in enumerate(problem.steps()):
        rest = problem.tail[i + 1 :]
        parts.append(" ".join([str(after)] + [f"{op} {t}" for op, t in rest]))
    return " = ".join(parts) + f"\n#### {problem.value}"


def filler(problem: Problem, rng: random.Random) -> str:
    """``stepwise`` after a fixed paragraph that carries no information about the problem."""
    return FILLER + "\n" + stepwise(problem, rng)


def _sloppy(rate: float):
    return lambda problem, rng: sloppy(problem, rng, rate)


TESTBED_TEACHERS = {
    **TEACHERS,
    "rewrite": rewrite,
    "filler": filler,
    "sloppy20": _sloppy(0.2),
    "sloppy45": _sloppy(0.45),
}
CONCISE = ("stepwise", "grouped", "terse", "rewrite")

# name -> (difficulty, teachers of candidates 0..3, problems). Order fixed: it sets the stream ids.
TESTBED_SOURCES: dict[str, tuple[str, tuple[str, ...], int]] = {
    "easy": ("easy", CONCISE, 800),
    "easy_wrong20": ("easy", ("sloppy20",) * 4, 600),
    "easy_wrong45": ("easy", ("sloppy45",) * 4, 600),
    "easy_verbose": ("easy", ("lecture", "ramble", "lecture2", "lecture"), 500),
    "easy_filler": ("easy", ("filler", "grouped", "terse", "rewrite"), 400),
    "medium": ("medium", CONCISE, 1000),
    "medium_style2": ("medium", ("rewrite", "grouped", "lecture2", "ramble"), 500),
    "hard": ("hard", CONCISE, 1200),
}
TESTBED_EVAL = ("easy", "medium", "hard")


@dataclass(frozen=True)
class TestbedSpec:
    """Size and seed of the testbed.

    Args:
        scale: Multiplies every source's problem count (tests use a small fraction).
        eval_per_set: Problems per held-out set.
        seed: Root seed; every source and set has its own stream derived from it.
    """

    __test__ = False  # not a pytest class
    scale: float = 1.0
    eval_per_set: int = 300
    seed: int = 0


def _rng(seed: int, stream: int) -> random.Random:
    return random.Random(seed * 1_000_003 + 7_000 + stream)


def _problem(rng: random.Random, difficulty: str) -> Problem:
    lo, hi = TERMS[difficulty]
    terms = [rng.randint(0, 9) for _ in range(rng.randint(lo, hi))]
    return Problem(tuple(terms), tuple(rng.choice("+-") for _ in terms[1:]))


def _unique(rng: random.Random, difficulty: str, count: int, exclude: set[str]) -> list[Problem]:
    seen, out = set(exclude), []
    for _ in range(count * 200):  # easy has ~4200 distinct chains; refuse rather than loop forever
        if len(out) == count:
            return out
        p = _problem(rng, difficulty)
        if p.expression not in seen:
            seen.add(p.expression)
            out.append(p)
    raise ValueError(f"could not draw {count} distinct {difficulty} problems outside {len(exclude)} excluded")


def _eval_problems(spec: TestbedSpec) -> dict[str, list[Problem]]:
    return {name: _unique(_rng(spec.seed, i), name, spec.eval_per_set, set()) for i, name in enumerate(TESTBED_EVAL)}


def build_testbed_eval(spec: TestbedSpec) -> dict[str, list[dict]]:
    """Held-out problems per difficulty, user turn and reference answer only."""
    return eval_records(_eval_problems(spec))


def build_testbed_pool(spec: TestbedSpec) -> dict[str, list[dict]]:
    """The eight training sources: name -> records, problem-major (the K = 4 candidates of a problem together)."""
    held_out = {name: {p.expression for p in ps} for name, ps in _eval_problems(spec).items()}
    pool: dict[str, list[dict]] = {}
    for s, (name, (difficulty, teachers, size)) in enumerate(TESTBED_SOURCES.items()):
        count = max(1, round(size * spec.scale))
        problems = _unique(_rng(spec.seed, 100 + s), difficulty, count, held_out[difficulty])
        pool[name] = pool_records(name, problems, teachers, _rng(spec.seed, 200 + s), TESTBED_TEACHERS)
    return pool
