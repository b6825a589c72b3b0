"""The seam between the selection callbacks (DMC, LARK, ODM, consistency), the scorer and the data.

``SelectionData`` is everything a callback may ask of the DataModule: a read-only view of the pool, batch
building for scoring, the current mixture, the weight setters and a digest of the stream state. Callbacks and
``lit_distill.scorer`` are typed against it, never against ``DistillDataModule``'s sampler or pool, so the
data layer can change its internals in one place. ``DistillDataModule`` implements it (structurally: these are
``typing.Protocol`` classes, checked by ``isinstance`` at runtime through ``runtime_checkable``).

A neutral module: it imports nothing of the package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


class ProbeRows(Protocol):
    """One source's DMC probe: forward-pass trajectories, questions to answer, and every row to hold out."""

    @property
    def trajectories(self) -> np.ndarray: ...
    @property
    def questions(self) -> np.ndarray: ...
    @property
    def held_out(self) -> np.ndarray: ...


class SourceCounts(Protocol):
    """Per-source counts of the pool summary that callbacks report."""

    @property
    def name(self) -> str: ...
    @property
    def held_out(self) -> int: ...


class PoolView(Protocol):
    """Read-only view of the training pool: rows are global indices over all sources."""

    @property
    def names(self) -> list[str]: ...
    @property
    def sizes(self) -> np.ndarray: ...
    @property
    def source_of(self) -> np.ndarray: ...
    @property
    def problem_of(self) -> np.ndarray: ...
    @property
    def candidate_id(self) -> np.ndarray: ...
    @property
    def length(self) -> np.ndarray: ...
    @property
    def quality(self) -> np.ndarray: ...
    @property
    def teachers(self) -> Sequence[str | None]: ...
    @property
    def answers(self) -> Sequence[str | None]: ...
    @property
    def held_out(self) -> np.ndarray: ...

    def __len__(self) -> int: ...
    def source_index(self, name: str) -> int: ...
    def rows(self, source: int) -> np.ndarray: ...
    def response_tokens(self, idx: np.ndarray) -> np.ndarray: ...
    def problem_rows(self, problems: np.ndarray) -> np.ndarray: ...
    def problems_of_sources(self, sources: list[int]) -> np.ndarray: ...
    def probe_split(self, source: int, n_trajectories: int, n_questions: int, seed: int) -> ProbeRows: ...
    def summary(self) -> Sequence[SourceCounts]: ...


@runtime_checkable
class SelectionData(Protocol):
    """What selection callbacks and the scorer may use of the DataModule (``DistillDataModule`` implements it)."""

    @property
    def source_names(self) -> list[str]: ...
    @property
    def pool_view(self) -> PoolView: ...

    def batch_for(self, indices: np.ndarray) -> dict[str, Any]:
        """Training-format batch of pool rows (``lit_distill.batch``), with their current loss weights."""
        ...

    def prompt_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prompt tokens and attention mask of pool rows, for greedy generation."""
        ...

    def current_source_weights(self) -> np.ndarray:
        """A copy of the source weights in force, in ``source_names`` order."""
        ...

    def drawable_sources(self) -> np.ndarray:
        """Per source: does it still have an example with positive weight."""
        ...

    def set_source_weights(self, weights: Mapping[str, float] | Sequence[float] | np.ndarray) -> None: ...
    def set_sample_weights(self, indices: np.ndarray, weights: np.ndarray | float) -> None: ...
    def set_loss_weights(self, indices: np.ndarray, weights: np.ndarray | float) -> None: ...
    def hold_out(self, rows: np.ndarray) -> None: ...

    def stream_digest(self) -> bytes:
        """Hash of everything that decides the data stream from the next step on (equal on every rank)."""
        ...


def selection_data(datamodule: object, who: str) -> SelectionData:
    """``datamodule`` as ``SelectionData``, or a clear error naming the callback that needs it."""
    if not isinstance(datamodule, SelectionData):
        raise TypeError(
            f"{who} needs a DataModule implementing lit_distill.selection_data.SelectionData "
            f"(e.g. DistillDataModule), got {type(datamodule).__name__}"
        )
    return datamodule
