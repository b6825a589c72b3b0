"""Pool: the union of all tokenised sources behind one global index.

Examples are source-contiguous (source 0's rows first), which is the layout ``MixtureSampler`` expects.
Token ids stay in the Arrow tables that ``datasets`` memory-maps; the pool keeps zero-copy numpy views of
them, so a pool of millions of trajectories costs little more than its metadata arrays:

    source_of, problem_of, candidate_id, length, prompt_len, quality (1 correct / 0 wrong / -1 unknown)

It also owns the fixed probe subsets (drawn once from a seed) that DMC scores at every evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import pyarrow as pa

from lit_distill.eval.answers import answers_match


def _chunks(ds: datasets.Dataset, column: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(offsets, values) numpy views of an Arrow list column, one pair per chunk, zero-copy where possible."""
    ds = ds.flatten_indices() if ds._indices is not None else ds
    col: pa.ChunkedArray = ds.data.column(column)
    out = []
    for chunk in col.chunks:
        offsets = chunk.offsets.to_numpy()
        values = chunk.values.to_numpy(zero_copy_only=False)
        out.append((offsets, values))
    return out


class TokenStore:
    """Random access to variable-length token sequences kept in Arrow chunks."""

    def __init__(self, chunks: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self._offsets = [o for o, _ in chunks]
        self._values = [v for _, v in chunks]
        self._starts = np.concatenate([[0], np.cumsum([len(o) - 1 for o in self._offsets])])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, i: int) -> np.ndarray:
        c = int(np.searchsorted(self._starts, i, side="right") - 1)
        j = i - self._starts[c]
        o = self._offsets[c]
        return self._values[c][o[j] : o[j + 1]]

    @staticmethod
    def concat(stores: Sequence[TokenStore]) -> TokenStore:
        chunks = [(o, v) for s in stores for o, v in zip(s._offsets, s._values, strict=True)]
        return TokenStore(chunks)


def _quality_column(batch: dict) -> dict:
    out = []
    for msgs, ref in zip(batch["messages"], batch["answer"], strict=True):
        out.append(-1 if not ref else int(answers_match(msgs[-1]["content"], ref)))
    return {"quality": out}


def with_quality(ds: datasets.Dataset) -> datasets.Dataset:
    """Add ``quality``: does the trajectory's final answer match the reference (-1 when there is none)."""
    return ds.map(
        _quality_column,
        batched=True,
        input_columns=None,
        new_fingerprint=f"{ds._fingerprint}-quality1",
        desc="check answers",
    )


@dataclass(frozen=True)
class SourceSummary:
    """Per-source counts the ``data`` command and the logs report."""

    name: str
    examples: int
    problems: int
    truncated: int
    dropped: int
    with_answer: int
    correct: int
    tokens_mean: float
    tokens_p50: float
    tokens_p95: float
    tokens_max: int
    response_tokens_mean: float


class Pool:
    """All training examples of all sources, indexed globally.

    Args:
        names: Source names, in pool order.
        tables: One tokenised dataset per source (columns from ``formatting.tokenise_source`` plus
            ``quality`` from :func:`with_quality`).
        format_counts: Per source, (truncated, dropped) counts from the length policy.
    """

    def __init__(
        self,
        names: Sequence[str],
        tables: Sequence[datasets.Dataset],
        format_counts: Sequence[tuple[int, int]] | None = None,
    ) -> None:
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {list(names)}")
        for name, t in zip(names, tables, strict=True):
            if len(t) == 0:
                raise ValueError(f"source '{name}' has no example left after the length policy")
        self.names = list(names)
        self.tables = list(tables)
        self.sizes = np.array([len(t) for t in tables], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.format_counts = list(format_counts or [(0, 0)] * len(names))
        self.source_of = np.repeat(np.arange(len(names), dtype=np.int32), self.sizes)
        cols = {c: np.concatenate([np.asarray(t[c]) for t in tables]) for c in ("length", "prompt_len")}
        self.length = cols["length"].astype(np.int32)
        self.prompt_len = cols["prompt_len"].astype(np.int32)
        self.candidate_id = np.concatenate([np.asarray(t["candidate_id"]) for t in tables]).astype(np.int32)
        self.quality = np.concatenate([np.asarray(t["quality"]) for t in tables]).astype(np.int8)
        keys = [k for t in tables for k in t["problem_id"]]
        self.problem_keys, self.problem_of = np.unique(np.asarray(keys, dtype=object), return_inverse=True)
        self.problem_of = self.problem_of.astype(np.int64)
        self.teachers = [x for t in tables for x in t["teacher"]]
        self.answers = [x for t in tables for x in t["answer"]]
        self.tokens = TokenStore.concat([TokenStore(_chunks(t, "input_ids")) for t in tables])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def source_index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"source '{name}' is not in the pool {self.names}") from None

    def rows(self, source: int) -> np.ndarray:
        return np.arange(self.offsets[source], self.offsets[source + 1])

    def response_tokens(self, idx: np.ndarray) -> np.ndarray:
        return self.length[idx] - self.prompt_len[idx]

    def problem_rows(self, problems: np.ndarray) -> np.ndarray:
        """All rows (candidates, in any source) of the given problem codes, sorted."""
        if not hasattr(self, "_by_problem"):
            self._by_problem = np.argsort(self.problem_of, kind="stable")
            self._problem_start = np.searchsorted(
                self.problem_of[self._by_problem], np.arange(len(self.problem_keys) + 1)
            )
        parts = [self._by_problem[self._problem_start[p] : self._problem_start[p + 1]] for p in np.asarray(problems)]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    def problems_of_sources(self, sources: list[int]) -> np.ndarray:
        """Codes of the problems that have at least one candidate in the given sources."""
        return np.unique(self.problem_of[np.isin(self.source_of, sources)])

    def probe_rows(self, source: int, n: int, seed: int) -> np.ndarray:
        """A fixed random subset of ``n`` trajectories of a source (all of them if it is smaller)."""
        rows = self.rows(source)
        rng = np.random.default_rng([seed, source, 0xD1C])
        return np.sort(rng.choice(rows, size=min(n, len(rows)), replace=False))

    def probe_questions(self, source: int, n: int, seed: int) -> np.ndarray:
        """One row per problem for ``n`` random problems of a source that carry a reference answer."""
        rows = self.rows(source)
        rows = rows[np.array([bool(self.answers[i]) for i in rows], dtype=bool)]
        if len(rows) == 0:
            return rows
        _, first = np.unique(self.problem_of[rows], return_index=True)
        reps = rows[np.sort(first)]
        rng = np.random.default_rng([seed, source, 0xCA9])
        return np.sort(rng.choice(reps, size=min(n, len(reps)), replace=False))

    def summary(self) -> list[SourceSummary]:
        out = []
        for s, name in enumerate(self.names):
            rows = self.rows(s)
            lens = self.length[rows]
            q = self.quality[rows]
            truncated, dropped = self.format_counts[s]
            out.append(
                SourceSummary(
                    name=name,
                    examples=len(rows),
                    problems=len(np.unique(self.problem_of[rows])),
                    truncated=truncated,
                    dropped=dropped,
                    with_answer=int((q >= 0).sum()),
                    correct=int((q == 1).sum()),
                    tokens_mean=float(lens.mean()),
                    tokens_p50=float(np.percentile(lens, 50)),
                    tokens_p95=float(np.percentile(lens, 95)),
                    tokens_max=int(lens.max()),
                    response_tokens_mean=float(self.response_tokens(rows).mean()),
                )
            )
        return out
