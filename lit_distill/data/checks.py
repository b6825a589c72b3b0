"""Checks on a source's records that no single row can reveal: duplicate candidates, problem ids shared by
different questions; and the row-set operations that follow them (candidate ids, the correctness filter,
``max_samples``). Every message names the file and the 1-based line of both rows involved."""

from __future__ import annotations

import logging

import datasets
import numpy as np

from lit_distill.data.readers import SourceError, unit

log = logging.getLogger("lit_distill.data.sources")


def col(ds: datasets.Dataset, name: str) -> list:
    """A column as a list, through Arrow (iterating ``ds[name]`` decodes row by row: ~50x slower)."""
    table = ds.flatten_indices().data if ds._indices is not None else ds.data
    return table.column(name).to_pylist()


def at(ds_files: list, ds_lines: list, files: list[str], i: int) -> str:
    f = files[ds_files[i]]
    return f"{f}, {unit(f)} {ds_lines[i]}"


def assign_candidate_ids(ds: datasets.Dataset) -> datasets.Dataset:
    """Rows without a candidate id get their order of appearance within their problem."""
    cids = col(ds, "candidate_id")
    if min(cids, default=0) >= 0:
        return ds
    seen: dict[str, int] = {}
    out = []
    for pid, cid in zip(col(ds, "problem_id"), cids, strict=True):
        n = seen.get(pid, 0)
        seen[pid] = n + 1
        out.append(n if cid < 0 else cid)
    return ds.remove_columns("candidate_id").add_column("candidate_id", out, feature=datasets.Value("int64"))


def check_unique_candidates(ds: datasets.Dataset, files: list[str], name: str) -> None:
    seen: dict[tuple[str, int], int] = {}
    for i, key in enumerate(zip(col(ds, "problem_id"), col(ds, "candidate_id"), strict=True)):
        j = seen.setdefault(key, i)
        if j != i:
            f, ln = col(ds, "file"), col(ds, "line")
            raise SourceError(
                f"source '{name}': {at(f, ln, files, j)} and {at(f, ln, files, i)} are both candidate "
                f"{key[1]} of problem '{key[0]}'; candidate ids must be unique within a problem (give every "
                "row of a problem a candidate_id, or none)"
            )


def check_problem_questions(parts: list[tuple[datasets.Dataset, list[str]]], what: str) -> None:
    """Rows that share a problem id must ask the same question (user turns); LARK would otherwise keep B
    candidates of what are really different problems. ``parts``: (records, files) of one or more sources."""
    first: dict[str, tuple[str, int, int]] = {}
    for p, (ds, files) in enumerate(parts):
        for i, (pid, q) in enumerate(zip(col(ds, "problem_id"), col(ds, "question"), strict=True)):
            q0, p0, i0 = first.setdefault(pid, (q, p, i))
            if q0 != q:
                a = at(col(parts[p0][0], "file"), col(parts[p0][0], "line"), parts[p0][1], i0)
                b = at(col(ds, "file"), col(ds, "line"), files, i)
                raise SourceError(
                    f"{what}: {a} and {b} share problem_id '{pid}' but ask different questions; give them "
                    "different problem ids (or leave problem_id out: the question then identifies the problem)"
                )


def drop_incorrect(ds: datasets.Dataset, name: str) -> datasets.Dataset:
    correct = np.asarray(col(ds, "correct"))
    bad = int((correct == 0).sum())
    if not bad:
        return ds
    if bad == len(ds):
        raise SourceError(f"source '{name}': every candidate is marked incorrect (correctness: filter)")
    log.info("source %s: dropped %d of %d candidates marked incorrect (correctness: filter)", name, bad, len(ds))
    return ds.select(np.flatnonzero(correct != 0)).flatten_indices()


def subsample_problems(ds: datasets.Dataset, max_rows: int, seed: int) -> datasets.Dataset:
    """Whole problems in a seeded random order until ``max_rows`` would be exceeded (LARK needs every
    candidate of a problem, so candidates are never split)."""
    keys, inverse = np.unique(np.asarray(col(ds, "problem_id"), dtype=object), return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(keys))
    order = np.random.default_rng(seed).permutation(len(keys))
    keep = order[np.cumsum(sizes[order]) <= max_rows]
    rows = np.flatnonzero(np.isin(inverse, keep))
    return ds.select(rows).flatten_indices()
