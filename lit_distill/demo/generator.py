"""The embedded demo pool: synthetic teacher trajectories for +/- chain arithmetic.

Every problem is a chain such as ``4 - 1 - 7`` (question ``What is 4 - 1 - 7?``, answer ``-4``).
Several made-up "teachers" write the reasoning in different styles, and four training sources mix them
so that the sources differ in exactly the ways DMC and LARK measure:

- ``concise``: easy problems, short correct trajectories (stepwise, grouped, terse). The clean source
  a small student fits quickly.
- ``verbose``: easy problems, correct but long prose (lecture, lecture2, ramble). Same answers, far
  more tokens to fit; the student should find it less compatible early on.
- ``noisy``: easy problems, stepwise-looking work where a step is often wrong and the error carries
  to the final answer (about 43% of final answers are wrong). The low-quality source.
- ``hard``: 4-5 term chains of one-digit numbers, correct (stepwise, grouped, lecture2). Longer chains
  and running totals easy chains never reach: harder than the student can manage at first, useful
  later in training, and learnable within the demo's budget, so held-out accuracy can tell mixtures apart.

Every trajectory stays under ~120 tokens of the demo tokenizer, so the demo's generation budget (128)
never cuts off a student that imitates any teacher.

Each problem has K = 3 candidate trajectories from three different teachers (LARK selects within a
problem). The held-out ``easy`` and ``hard`` evaluation sets are drawn first and their expressions are
excluded from training, so evaluation never sees a training problem.

Why not reasoning-gym: generating our own gives full control of difficulty and teacher style, needs no
heavy dependency and runs offline; the problem family is the same as reasoning-gym's ``chain_sum``.

Everything is built from ``random.Random`` seeded with integers derived from ``DemoSpec.seed`` (never
``hash()`` of a string), so the pool is identical across calls and processes. Each source and set has
its own stream, so a smaller ``problems_per_source`` gives a prefix of a larger one.

Example::

    pool = build_pool(DemoSpec(problems_per_source=200))
    print(pool["concise"][0]["messages"][1]["content"])
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

EASY, HARD = "easy", "hard"
EASY_CAPACITY = 10 * 10 * 2 + 10**3 * 4  # distinct 2- and 3-term single-digit chains


@dataclass(frozen=True)
class DemoSpec:
    """Size and seed of the demo data.

    Args:
        problems_per_source: Problems in each training source (each gives K = 3 records).
        eval_per_set: Problems in each held-out evaluation set.
        seed: Root seed; every stream is derived from it.
    """

    problems_per_source: int = 1000
    eval_per_set: int = 100
    seed: int = 0


@dataclass(frozen=True)
class Problem:
    """A chain ``terms[0] ops[0] terms[1] ...``; ``ops`` has one fewer entry than ``terms``."""

    terms: tuple[int, ...]
    ops: tuple[str, ...]

    @property
    def expression(self) -> str:
        return " ".join([str(self.terms[0])] + [f"{op} {t}" for op, t in self.tail])

    @property
    def question(self) -> str:
        return f"What is {self.expression}?"

    @property
    def value(self) -> int:
        return self.terms[0] + sum(t if op == "+" else -t for op, t in self.tail)

    @property
    def tail(self) -> list[tuple[str, int]]:
        """``(op, term)`` for every term after the first."""
        return list(zip(self.ops, self.terms[1:], strict=True))

    def steps(self) -> list[tuple[int, str, int, int]]:
        """Running-total steps ``(before, op, term, after)``, one per operation."""
        out, total = [], self.terms[0]
        for op, term in self.tail:
            after = total + term if op == "+" else total - term
            out.append((total, op, term, after))
            total = after
        return out


def sample_problem(rng: random.Random, difficulty: str) -> Problem:
    """Draw one problem: easy = 2-3 terms of 0-9; hard = 4-5 terms of 0-9.

    Hard chains need the same one-digit step as easy ones, but more of them and with running totals up
    to +/-45 that easy chains never reach: hard enough that a small student needs most of the run for
    them, learnable enough that held-out accuracy can separate mixtures (with two-digit terms a ~1M
    student stayed near 1%, so no arm could differ there).
    """
    n = rng.randint(2, 3) if difficulty == EASY else rng.randint(4, 5)
    terms = [rng.randint(0, 9) for _ in range(n)]
    return Problem(tuple(terms), tuple(rng.choice("+-") for _ in terms[1:]))


# ---------------------------------------------------------------------------------------------------
# Teachers: (problem, rng) -> assistant text. The rng only varies wording and errors, never correctness
# (except for the sloppy teachers, whose whole point is wrong answers).


def _hashes(answer: int) -> str:
    return f"#### {answer}"


def _boxed(answer: int) -> str:
    # Always on its own last line, like "####", so every teacher ends with a final-answer line.
    return f"The answer is \\boxed{{{answer}}}."


def stepwise(problem: Problem, rng: random.Random) -> str:
    """One line per operation with the running total, then ``#### answer``."""
    lines = [f"{a} {op} {b} = {c}" for a, op, b, c in problem.steps()]
    return "\n".join([*lines, _hashes(problem.value)])


def grouped(problem: Problem, rng: random.Random) -> str:
    """Sum the added and the subtracted terms separately, then combine."""
    plus = [problem.terms[0]] + [t for op, t in problem.tail if op == "+"]
    minus = [t for op, t in problem.tail if op == "-"]

    def total_line(name: str, terms: list[int]) -> str:
        if not terms:
            return f"{name}: none"
        if len(terms) == 1:
            return f"{name}: {terms[0]}"
        return f"{name}: {' + '.join(map(str, terms))} = {sum(terms)}"

    combine = f"{sum(plus)} - {sum(minus)} = {problem.value}" if minus else f"total: {sum(plus)}"
    return "\n".join([total_line("plus", plus), total_line("minus", minus), combine, _hashes(problem.value)])


def terse(problem: Problem, rng: random.Random) -> str:
    """Only the final answer line."""
    return _hashes(problem.value)


def lecture(problem: Problem, rng: random.Random) -> str:
    """Long, careful prose; correct; ends with ``\\boxed{}``."""
    out = [
        "Let us work through this carefully, one step at a time.",
        f"We begin with the first number, {problem.terms[0]}.",
    ]
    for i, (a, op, b, c) in enumerate(problem.steps()):
        lead = "Next" if i == 0 else rng.choice(["Then", "After that", "Now"])
        if op == "+":
            out.append(f"{lead} we add {b} to {a}, which {rng.choice(['gives', 'makes'])} {c}.")
        else:
            out.append(f"{lead} we subtract {b} from {a}, which {rng.choice(['leaves', 'gives'])} {c}.")
    out.append(f"So the result of {problem.expression} is {problem.value}.")
    return " ".join(out) + "\n" + _boxed(problem.value)


def lecture2(problem: Problem, rng: random.Random) -> str:
    """A second lecturer: the same care, different phrasing."""
    out = [
        "To solve this, I will read the expression from left to right and keep a running total.",
        f"The running total starts at {problem.terms[0]}.",
    ]
    for a, op, b, c in problem.steps():
        verb = "Adding" if op == "+" else "Subtracting"
        out.append(f"{verb} {b} changes the running total from {a} to {c}.")
    out += [
        f"No terms remain, so the final value of the expression is {problem.value}.",
    ]
    return " ".join(out) + "\n" + _boxed(problem.value)


_OPENERS = [
    "Okay, so the question is what {e} is.",
    "Alright, we need to work out {e}.",
    "Hmm, {e}. Let me see.",
]
_FILLERS = ["Okay.", "Alright.", "Good, moving on.", "Hmm, fine.", "So far so good."]


def ramble(problem: Problem, rng: random.Random) -> str:
    """Correct running totals buried in filler and self-checks."""
    out = [rng.choice(_OPENERS).format(e=problem.expression)]
    for a, op, b, c in problem.steps():
        check = f"{c} + {b} = {a}" if op == "-" else f"{c} - {b} = {a}"
        out += [f"{a} {op} {b} = {c}.", f"Let me double-check that: {check}, yes.", rng.choice(_FILLERS)]
    out.append(f"So the whole thing comes to {problem.value}.")
    return " ".join(out) + "\n" + _boxed(problem.value)


def sloppy(problem: Problem, rng: random.Random, error_rate: float = 0.5) -> str:
    """Stepwise, but with probability ``error_rate`` one step is off by 1-3 and the error propagates."""
    steps = problem.steps()
    bad_step = rng.randrange(len(steps)) if rng.random() < error_rate else -1
    delta = rng.choice([-3, -2, -1, 1, 2, 3]) if bad_step >= 0 else 0
    lines, total = [], problem.terms[0]
    for i, (_, op, b, _) in enumerate(steps):
        after = (total + b if op == "+" else total - b) + (delta if i == bad_step else 0)
        lines.append(f"{total} {op} {b} = {after}")
        total = after
    return "\n".join([*lines, _hashes(total)])


def _sloppy_at(error_rate: float) -> Callable[[Problem, random.Random], str]:
    def teacher(problem: Problem, rng: random.Random) -> str:
        return sloppy(problem, rng, error_rate)

    teacher.__doc__ = f"``sloppy`` with error_rate={error_rate}."
    return teacher


TEACHERS: dict[str, Callable[[Problem, random.Random], str]] = {
    "stepwise": stepwise,
    "grouped": grouped,
    "terse": terse,
    "lecture": lecture,
    "lecture2": lecture2,
    "ramble": ramble,
    "sloppy": sloppy,
    "sloppy60": _sloppy_at(0.6),
    "sloppy40": _sloppy_at(0.4),
    "sloppy30": _sloppy_at(0.3),
}

# source -> (difficulty, teachers of candidates 0..K-1). The order is fixed so stream ids stay stable.
SOURCES: dict[str, tuple[str, tuple[str, ...]]] = {
    "concise": (EASY, ("stepwise", "grouped", "terse")),
    "verbose": (EASY, ("lecture", "ramble", "lecture2")),
    "noisy": (EASY, ("sloppy60", "sloppy40", "sloppy30")),
    "hard": (HARD, ("stepwise", "grouped", "lecture2")),
}
EVAL_SETS = (EASY, HARD)


def _rng(seed: int, stream: int) -> random.Random:
    # Integer seeds only: string seeding would also be stable, but integers make the derivation obvious.
    return random.Random(seed * 1_000_003 + stream)


def _unique_problems(rng: random.Random, difficulty: str, count: int, exclude: set[str]) -> list[Problem]:
    """``count`` problems with distinct expressions, none of them in ``exclude``."""
    if difficulty == EASY and count > EASY_CAPACITY - len(exclude):
        raise ValueError(f"asked for {count} distinct easy problems; at most {EASY_CAPACITY - len(exclude)} exist")
    seen, out = set(exclude), []
    while len(out) < count:
        problem = sample_problem(rng, difficulty)
        if problem.expression not in seen:
            seen.add(problem.expression)
            out.append(problem)
    return out


def _eval_problems(spec: DemoSpec) -> dict[str, list[Problem]]:
    return {
        name: _unique_problems(_rng(spec.seed, 1 + i), name, spec.eval_per_set, set())
        for i, name in enumerate(EVAL_SETS)
    }


def eval_records(sets: dict[str, list[Problem]]) -> dict[str, list[dict]]:
    """Held-out problems as records with only the user turn and the reference answer (shared with the testbed)."""
    return {
        name: [
            {
                "source": f"eval_{name}",
                "problem_id": f"eval_{name}-{i:05d}",
                "candidate_id": 0,
                "teacher": "",
                "messages": [{"role": "user", "content": p.question}],
                "answer": str(p.value),
            }
            for i, p in enumerate(problems)
        ]
        for name, problems in sets.items()
    }


def pool_records(name: str, problems: list[Problem], teachers, rng: random.Random, registry=None) -> list[dict]:
    """One source's records, problem-major: every problem's K candidates (one per teacher) together."""
    registry = registry or TEACHERS
    return [
        {
            "source": name,
            "problem_id": f"{name}-{i:05d}",
            "candidate_id": k,
            "teacher": teacher,
            "messages": [
                {"role": "user", "content": problem.question},
                {"role": "assistant", "content": registry[teacher](problem, rng)},
            ],
            "answer": str(problem.value),
        }
        for i, problem in enumerate(problems)
        for k, teacher in enumerate(teachers)
    ]


def build_eval(spec: DemoSpec) -> dict[str, list[dict]]:
    """Held-out ``easy`` and ``hard`` problems as records with only the user turn."""
    return eval_records(_eval_problems(spec))


def build_pool(spec: DemoSpec) -> dict[str, list[dict]]:
    """The training sources: name -> records, problem-major (all K candidates of a problem together)."""
    held_out = {name: {p.expression for p in problems} for name, problems in _eval_problems(spec).items()}
    pool: dict[str, list[dict]] = {}
    for s, (name, (difficulty, teachers)) in enumerate(SOURCES.items()):
        problems = _unique_problems(
            _rng(spec.seed, 100 + s), difficulty, spec.problems_per_source, held_out[difficulty]
        )
        pool[name] = pool_records(name, problems, teachers, _rng(spec.seed, 200 + s))
    return pool
