"""Write the SmolLM2 example's pool: reasoning-gym ``gsm_symbolic`` problems in several teacher styles.

    python scripts/data/smollm2_pool.py --out data/smollm2 --problems 2000 --eval 200 --seed 0

Offline and seeded (reasoning-gym generates the problems procedurally). Every problem is answered by each
teacher style, in one JSONL file per style, under one problem id (``gsm-00042``) so that LARK chooses among
the styles' answers to the same problem (the config maps the sources onto one ``problem_namespace``):

* ``worked``: reasoning-gym's ``answer_cot``, a GSM8K-style worked solution ending in ``#### N``;
* ``terse``: the answer only (``#### N``): cheap to learn, teaches no reasoning;
* ``equations``: only the worked solution's calculation lines (those with ``=``), then ``#### N``;
* ``restated``: restates the question being asked, then the worked solution with a closing sentence.

Held-out problems (a disjoint seed) go to ``eval.jsonl`` with their reference answer and no response.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
from pathlib import Path

STYLES = ("worked", "terse", "equations", "restated")
FINAL = re.compile(r"\n?####\s*(.+?)\s*$")
# reasoning-gym appends this instruction to every question; the styles restate the question without it.
INSTRUCTION = re.compile(r"\s*Give the result as your final answer\.( Do not include units\.)?\s*$")


def body_and_answer(cot: str, answer: str) -> str:
    """The worked solution without its ``#### N`` line (checked to agree with the reference answer)."""
    m = FINAL.search(cot)
    if m is None or not _same_number(m.group(1), answer):
        raise ValueError(f"answer_cot does not end in '#### {answer}': {cot[-80:]!r}")
    return cot[: m.start()].rstrip()


def _same_number(a: str, b: str) -> bool:
    """``8.0`` and ``8`` agree (some templates print floats); non-numbers compare as text."""
    try:
        return float(a.replace(",", "")) == float(b.replace(",", ""))
    except ValueError:
        return a.strip() == b.strip()


def responses(question: str, cot: str, answer: str) -> dict[str, str]:
    body = body_and_answer(cot, answer)
    ask = INSTRUCTION.sub("", question).strip()
    asked = re.split(r"(?<=[.!])\s+", ask)[-1]  # the question's last sentence: what is asked
    equations = [ln.strip() for ln in body.splitlines() if "=" in ln]
    return {
        "worked": f"{body}\n#### {answer}",
        "terse": f"#### {answer}",
        "equations": "\n".join(equations or [body]) + f"\n#### {answer}",
        "restated": f"We are asked: {asked}\n\n{body}\n\nSo the answer is {answer}.\n#### {answer}",
    }


def generate(out: Path, problems: int, eval_size: int, seed: int) -> dict[str, int]:
    import reasoning_gym

    out.mkdir(parents=True, exist_ok=True)
    counts = dict.fromkeys(STYLES, 0)
    with contextlib.ExitStack() as stack:
        files = {s: stack.enter_context(open(out / f"{s}.jsonl", "w", encoding="utf-8")) for s in STYLES}
        for i, item in enumerate(reasoning_gym.create_dataset("gsm_symbolic", size=problems, seed=seed)):
            question, answer = item["question"], str(item["answer"])
            for cid, (style, text) in enumerate(responses(question, item["metadata"]["answer_cot"], answer).items()):
                row = {
                    "problem_id": f"gsm-{i:05d}",
                    "candidate_id": cid,
                    "teacher": style,
                    "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": text}],
                    "answer": answer,
                }
                files[style].write(json.dumps(row) + "\n")
                counts[style] += 1
    # A different seed gives different problems; drop any question that also appears in the pool.
    with open(out / "worked.jsonl", encoding="utf-8") as fh:
        seen = {json.loads(line)["messages"][0]["content"] for line in fh}
    held = reasoning_gym.create_dataset("gsm_symbolic", size=eval_size, seed=seed + 1_000_003)
    with open(out / "eval.jsonl", "w", encoding="utf-8") as fh:
        for i, item in enumerate(held):
            if item["question"] in seen:
                continue
            row = {"problem_id": f"gsm-eval-{i:05d}", "messages": [{"role": "user", "content": item["question"]}]}
            fh.write(json.dumps({**row, "answer": str(item["answer"])}) + "\n")
            counts["eval"] = counts.get("eval", 0) + 1
    return counts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("data/smollm2"), help="output directory")
    ap.add_argument("--problems", type=int, default=2000, help="pool problems (each answered in every style)")
    ap.add_argument("--eval", type=int, default=200, help="held-out problems")
    ap.add_argument("--seed", type=int, default=0, help="reasoning-gym seed of the pool")
    args = ap.parse_args(argv)
    counts = generate(args.out, args.problems, args.eval, args.seed)
    print(" ".join(f"{k}={v}" for k, v in counts.items()), "->", args.out)


if __name__ == "__main__":
    main()
