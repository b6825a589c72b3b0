"""``lit-distill select lark``: keep the top-B trajectories of every problem by LARK score, with weights.

Examples::

    lit-distill select lark --scores scores.jsonl --data pool.jsonl --budget 3 --output selected.jsonl
    lit-distill select lark --scores s.jsonl --config configs/demo.yaml --source concise --budget 1 --output o.jsonl
    lit-distill select lark --scores s.jsonl --data pool.jsonl --budget 2 --rule softmax --temperature 0.01 ...

Scores (from ``lit-distill score lark``) are joined to the pool's rows by (problem_id, candidate_id); a
score without a row, or a row without a score, is an error naming the key. The pool is read with the
training loader, so ids (and candidate ids the loader assigns) are the scorer's.

Every output line is the pool record exactly as it is in the file, plus ``weight`` (the rule's weight,
summing to 1 per problem) and ``lark_score`` (its ĝ). Problems come in input order, candidates by
descending score, ties by lower candidate id: exactly B lines per problem (docs/methods.md 1.5). As in the
reference, a problem with fewer than B scored candidates fails the run ("Selection incomplete") unless
``--allow-incomplete``, which keeps what it has (and drops problems with no scored candidate).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from lit_distill.data.sources import SourceError, _load_file  # the loader's own reader: row indices agree
from lit_distill.scoring.lark import RULES, select_pool
from lit_distill.tools.score_lark import LarkPool, add_pool_arguments, load_pool, source_config


def read_scores(path: str) -> dict[tuple[str, int], float]:
    """(problem_id, candidate_id) -> ĝ from a scores file; null ĝ (unscored) reads as NaN."""
    scores: dict[tuple[str, int], float] = {}
    lines: dict[tuple[str, int], int] = {}
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                key = (str(obj["problem_id"]), int(obj["candidate_id"]))
                g_hat = obj["g_hat"]
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise SourceError(
                    f"{path} line {lineno}: expected a JSON object with problem_id, candidate_id and g_hat ({e})"
                ) from None
            if key in scores:
                raise SourceError(
                    f"{path}: (problem_id={key[0]!r}, candidate_id={key[1]}) is scored twice "
                    f"(lines {lines[key]} and {lineno})"
                )
            scores[key] = np.nan if g_hat is None else float(g_hat)
            lines[key] = lineno
    return scores


def join_scores(pool: LarkPool, scores: dict[tuple[str, int], float], scores_path: str) -> np.ndarray:
    """ĝ of every pool row, in pool order; raise on a key that only one side has."""
    keys = list(zip(pool.problem_ids, pool.candidate_ids.tolist(), strict=True))
    missing = [k for k in keys if k not in scores]
    if missing:
        pid, cid = missing[0]
        raise SourceError(
            f"pool row (problem_id={pid!r}, candidate_id={cid}) has no score in {scores_path} "
            f"({len(missing)} row(s) unscored; score the same pool with `lit-distill score lark`)"
        )
    extra = set(scores) - set(keys)
    if extra:
        pid, cid = next(k for k in scores if k in extra)  # the first in file order
        raise SourceError(
            f"score (problem_id={pid!r}, candidate_id={cid}) in {scores_path} has no row in the pool "
            f"'{pool.source.path}' ({len(extra)} score(s) without a row)"
        )
    return np.array([scores[k] for k in keys], dtype=np.float64)


def _raw_rows(pool: LarkPool, file_index: int) -> list[dict]:
    """The records of one pool file as the loader reads them (row i is the loader's ``row`` i).

    The loader's own reader keeps values as written (no nulls filled in, no types unified) and repeats a row
    with a list of generations once per generation, holding that generation: so ``(file, row)`` names one
    candidate, and the selected record carries the chosen generation only.
    """
    file = pool.files[file_index]
    if Path(file).is_file():
        return list(_load_file(pool.source, file))
    import datasets

    return list(datasets.load_dataset(file, split=pool.source.split))  # a hub source


def raw_records(pool: LarkPool, rows: np.ndarray) -> list[dict]:
    """The original records of the given pool rows, through the loader's (file, row) provenance."""
    files, file_rows = list(pool.records["file"]), list(pool.records["row"])
    cache: dict[int, list[dict]] = {}
    out = []
    for i in rows.tolist():
        f, r = files[i], file_rows[i]
        if f not in cache:
            cache[f] = _raw_rows(pool, f)
        if r >= len(cache[f]):
            raise SourceError(f"{pool.files[f]}: row {r} is beyond the file's {len(cache[f])} records")
        out.append(cache[f][r])
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit-distill select lark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scores", required=True, help="scores file written by `lit-distill score lark`")
    add_pool_arguments(parser)
    parser.add_argument("--budget", type=int, required=True, help="B: trajectories kept per problem")
    parser.add_argument("--output", required=True, help="selected records to write (JSONL)")
    parser.add_argument("--rule", choices=sorted(RULES), default="chi2", help="weighting rule (chi2 = LARK)")
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (--rule softmax)")
    parser.add_argument(
        "--allow-incomplete", action="store_true", help="keep problems with fewer than B scored candidates"
    )
    return parser


def _mean_entropy(weights: np.ndarray, problem_index: np.ndarray) -> float:
    """Mean over problems of the weights' entropy H(q) = −Σ q log q (nats); 0 when there is nothing."""
    if len(weights) == 0:
        return 0.0
    terms = np.where(weights > 0, -weights * np.log(np.where(weights > 0, weights, 1.0)), 0.0)
    per_problem = np.bincount(problem_index, terms)
    return float(per_problem[np.unique(problem_index)].mean())


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    start = time.perf_counter()
    try:
        if args.budget < 1:
            raise ValueError(f"--budget must be >= 1, got {args.budget}")
        pool = load_pool(source_config(args))
        g_hat = join_scores(pool, read_scores(args.scores), args.scores)
        sel = select_pool(
            pool.problem_ids,
            pool.candidate_ids,
            g_hat,
            args.budget,
            rule=args.rule,
            temperature=args.temperature,
            strict=not args.allow_incomplete,
        )
        records = raw_records(pool, sel.rows)
    except (SourceError, ValueError, OSError) as e:
        hint = " (--allow-incomplete keeps fewer)" if str(e).startswith("Selection incomplete") else ""
        print(f"error: {e}{hint}", file=sys.stderr)
        return 1
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8") as fh:
        for record, row, weight in zip(records, sel.rows.tolist(), sel.weights.tolist(), strict=True):
            out = {**record, "weight": weight, "lark_score": float(g_hat[row])}
            fh.write(json.dumps(out, ensure_ascii=False, allow_nan=False) + "\n")
    n_problems = len(set(pool.problem_ids))
    kept_problems = len(np.unique(sel.problem_index))
    print(
        f"selected {len(sel.rows)} of {len(g_hat)} rows: {kept_problems} of {n_problems} problems, budget "
        f"{args.budget}, rule {args.rule}; mean weight entropy {_mean_entropy(sel.weights, sel.problem_index):.3f} "
        f"nats (uniform over B: {np.log(args.budget):.3f}); {time.perf_counter() - start:.2f} s"
    )
    print(f"wrote {args.output}")
    return 0
