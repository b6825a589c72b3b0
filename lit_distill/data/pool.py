"""Pool: the union of all tokenised sources behind one global index.

Examples are source-contiguous (source 0's rows first), which is the layout ``MixtureSampler`` expects.
Token ids stay in the Arrow tables that ``datasets`` memory-maps; the pool keeps zero-copy numpy views of
them, so a pool of millions of trajectories costs little more than its metadata arrays:

    source_of, problem_of, candidate_id, length, prompt_len, quality (1 correct / 0 wrong / -1 unknown)

It also owns the fixed probe subsets (drawn once from a seed) that DMC scores at every evaluation, and the
``held_out`` mask: every row of a probe problem is held out of sampling for the whole run, so DMC measures
the student on data it never trained on (methods.md 3.6).
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
    flags = batch.get("correct") or [-1] * len(batch["messages"])
    for msgs, ref, flag in zip(batch["messages"], batch["answer"], flags, strict=True):
        if flag is not None and flag >= 0:
            out.append(int(flag))  # the data's own per-candidate correctness (``correctness: quality``) wins
        else:
            out.append(-1 if not ref else int(answers_match(msgs[-1]["content"], ref)))
    return {"quality": out}


def with_quality(ds: datasets.Dataset) -> datasets.Dataset:
    """Add ``quality``: does the trajectory's final answer match the reference (-1 when there is none)."""
    return ds.map(
        _quality_column,
        batched=True,
        input_columns=None,
        new_fingerprint=f"{ds._fingerprint}-quality2",
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
    held_out: int = 0


@dataclass(frozen=True, eq=False)
class ProbeSplit:
    """One source's fixed DMC probe, drawn by ``Pool.probe_split``.

    Attributes:
        trajectories: rows scored by the forward pass (difficulty, learnability).
        questions: one row per probe problem with a reference answer; the student answers its prompt.
        held_out: every row of every probe problem: never drawn for training.
    """

    trajectories: np.ndarray
    questions: np.ndarray
    held_out: np.ndarray


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
        self.held_out = np.zeros(len(self.source_of), dtype=bool)  # rows never drawn (see ``hold_out``)

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

    def probe_split(self, source: int, n_trajectories: int, n_questions: int, seed: int) -> ProbeSplit:
        """A fixed (seeded) probe of a source, made of whole problems so it can be held out of training.

        The source's problems are shuffled once by ``seed``; the trajectories are the rows of the first
        problems in that order (``n_trajectories`` of them, or all), the questions one row of each of the
        first ``n_questions`` problems with a reference answer (or all). Every row of every problem used
        for either is in ``held_out``: holding out only the probe rows would leave their problems' other
        candidates in training, and capability would partly measure memorised answers.
        """
        if n_trajectories < 0 or n_questions < 0:
            raise ValueError(f"probe sizes must be >= 0, got {n_trajectories} trajectories, {n_questions} questions")
        rows = self.rows(source)
        local = self.problem_of[rows]
        by_problem = np.argsort(local, kind="stable")
        problems, starts = np.unique(local[by_problem], return_index=True)
        ends = np.append(starts[1:], len(rows))
        order = np.random.default_rng([seed, source, 0xD1C]).permutation(len(problems))
        members = [rows[by_problem[starts[p] : ends[p]]] for p in order]
        answered = [next((int(r) for r in m if self.answers[int(r)]), -1) for m in members]
        # How many problems (in shuffled order) each quota needs; the probe is the longer prefix.
        take_traj = int(np.searchsorted(np.cumsum([len(m) for m in members]), n_trajectories)) + 1
        take_traj = min(take_traj, len(members)) if n_trajectories > 0 else 0
        with_answer = np.flatnonzero(np.array(answered) >= 0)
        n_q = min(n_questions, len(with_answer))
        take_q = int(with_answer[n_q - 1]) + 1 if n_q else 0
        prefix = members[: max(take_traj, take_q)]
        trajectories = np.concatenate(members[:take_traj] or [np.zeros(0, np.int64)])[:n_trajectories]
        questions = np.array([a for a in answered[:take_q] if a >= 0], dtype=np.int64)
        held = np.concatenate(prefix or [np.zeros(0, np.int64)])
        return ProbeSplit(np.sort(trajectories), np.sort(questions), np.sort(held).astype(np.int64))

    def probe_rows(self, source: int, n: int, seed: int) -> np.ndarray:
        """The probe trajectories of ``probe_split`` (``n`` rows of a source, all of them if it is smaller)."""
        return self.probe_split(source, n, 0, seed).trajectories

    def probe_questions(self, source: int, n: int, seed: int) -> np.ndarray:
        """The probe questions of ``probe_split``: one row per problem for ``n`` problems with an answer."""
        return self.probe_split(source, 0, n, seed).questions

    def hold_out(self, rows: np.ndarray) -> None:
        """Mark rows as held out of training (the DMC probes); the data module stops drawing them.

        Raises:
            ValueError: holding them out would leave a source with no training row (the message names it).
        """
        mask = self.held_out.copy()
        mask[np.asarray(rows, dtype=np.int64)] = True
        for s, name in enumerate(self.names):
            if mask[self.rows(s)].all():
                raise ValueError(
                    f"source '{name}': the DMC probes would hold out all of its {self.sizes[s]} rows and leave "
                    "nothing to train on; lower dmc probe_size / probe_questions or add data"
                )
        self.held_out = mask

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
                    held_out=int(self.held_out[rows].sum()),
                )
            )
        return out
