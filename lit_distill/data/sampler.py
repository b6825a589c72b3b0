"""MixtureSampler: the data stream as a pure function of (seed, step, weights in force, pass state).

Each optimiser step draws one *global* batch of ``micro_batch_size x world_size x accumulate`` examples:

1. per-source counts from the source weights (multinomial, or systematic for lower variance);
2. within each source, the next examples of the source's current *pass*: a systematic sample in which
   each example is drawn in proportion to its example weight (floor or ceil of ``M * w_i / W`` times in a
   pass of ``M`` draws, weight 0 never), spread evenly over the pass (``data/systematic.py``); uniform
   weights draw every example once per pass. A spent pass starts the next one;
3. the global batch is shuffled (or grouped by length) and cut into micro-batches; rank r takes micro-batch
   ``a * world_size + r`` for accumulation slot ``a``.

Every rank runs the same draw from the same state, so ranks agree without communicating. The RNG of step s
is seeded by (seed, s) alone; a pass is regenerated from (seed, source, pass index) and the example weights,
so the only path-dependent state is each source's pass index and position (``state_dict``), never a
materialised pass. Changing a source's example weights starts a new pass of that source (the old pass was
built for the old weights). Weight changes apply to the next draw, i.e. the next optimiser step.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lit_distill.data.systematic import systematic_pass

log = logging.getLogger(__name__)
SOURCE_DRAWS = ("multinomial", "systematic")
_PASS_STREAM = 0x5A55  # tags the pass RNG, so it never coincides with a step's RNG


@dataclass(frozen=True)
class BatchPlan:
    """The global batch of one optimiser step (pool indices), already laid out in micro-batch order."""

    step: int
    indices: np.ndarray

    def micro_batch(self, micro: int, rank: int, world_size: int, micro_batch_size: int) -> np.ndarray:
        start = (micro * world_size + rank) * micro_batch_size
        return self.indices[start : start + micro_batch_size]


def _normalise(weights: np.ndarray, what: str) -> np.ndarray:
    weights = np.asarray(weights, dtype=np.float64)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ValueError(f"{what} must be finite, non-negative and not all zero; got {weights.tolist()}")
    return weights / weights.sum()


class MixtureSampler:
    """Source weights x within-source example weights, deterministic and resumable.

    Args:
        source_sizes: Number of examples of each source; pool indices are source-contiguous in this order.
        global_batch_size: Examples drawn per optimiser step (micro batch x world size x accumulation).
        seed: Seed of the stream; with the same weights the same seed gives the same batches.
        source_weights: Initial source weights (normalised here); uniform over sources if omitted.
        source_draw: ``multinomial`` (i.i.d. source per slot) or ``systematic`` (counts within one of
            ``weight * global_batch_size``).
        lengths: Per-example token lengths; with ``group_by_length`` micro-batches hold similar lengths.
        group_by_length: Sort each global batch by length before cutting micro-batches (less padding; the
            set of examples of the step, hence the mixture, is unchanged).
        micro_batch_size: Needed with ``group_by_length`` to cut length-sorted micro-batches.
    """

    def __init__(
        self,
        source_sizes: Sequence[int],
        global_batch_size: int,
        seed: int = 0,
        source_weights: Sequence[float] | None = None,
        source_draw: str = "multinomial",
        lengths: np.ndarray | None = None,
        group_by_length: bool = False,
        micro_batch_size: int = 1,
    ) -> None:
        if global_batch_size < 1:
            raise ValueError("global_batch_size must be >= 1")
        if source_draw not in SOURCE_DRAWS:
            raise ValueError(f"source_draw must be one of {SOURCE_DRAWS}, got {source_draw!r}")
        if group_by_length and lengths is None:
            raise ValueError("group_by_length needs per-example lengths")
        self.sizes = np.asarray(source_sizes, dtype=np.int64)
        if np.any(self.sizes < 1):
            raise ValueError(f"every source needs at least one example; sizes are {self.sizes.tolist()}")
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.global_batch_size = global_batch_size
        self.micro_batch_size = micro_batch_size
        self.seed = seed
        self.source_draw = source_draw
        self.lengths = lengths
        self.group_by_length = group_by_length
        self.step = 0
        n = len(self.sizes)
        self.source_weights = _normalise(source_weights if source_weights is not None else np.ones(n), "weights")
        self.example_weights = [np.ones(s, dtype=np.float64) for s in self.sizes]
        # Examples with positive weight per source, kept up to date by set_example_weights: drawable() runs
        # every step, and summing the whole pool there cost ~5 ms per step at 1e7 examples.
        self._positive = self.sizes.copy()
        self.passes = np.zeros(n, dtype=np.int64)  # index of each source's current pass
        self.position = np.zeros(n, dtype=np.int64)  # draws already taken from it
        self._pass: list[np.ndarray | None] = [None] * n  # cache, regenerated on demand
        self.history: list[tuple[int, list[float]]] = [(0, self.source_weights.tolist())]

    # ---- weights -------------------------------------------------------------------------------------
    def set_source_weights(self, weights: Sequence[float] | np.ndarray) -> None:
        """Replace the source weights from the next draw on; recorded in the history."""
        weights = _normalise(weights, "source weights")
        if len(weights) != len(self.sizes):
            raise ValueError(f"expected {len(self.sizes)} source weights, got {len(weights)}")
        self.source_weights = weights
        self.history.append((self.step, weights.tolist()))

    def set_example_weights(self, indices: np.ndarray, weights: np.ndarray | float) -> None:
        """Set the sampling weight of some examples (pool indices); from the next draw on.

        A source whose weights actually change starts a new pass at its next draw; repeated indices: the
        last write wins.
        """
        indices = np.asarray(indices, dtype=np.int64)
        weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), indices.shape)
        if np.any(weights < 0) or not np.all(np.isfinite(weights)):
            raise ValueError("example weights must be finite and non-negative")
        src = np.searchsorted(self.offsets, indices, side="right") - 1
        if np.any(src < 0) or np.any(indices >= self.offsets[-1]):
            raise IndexError("example index out of range")
        for s in np.unique(src):
            sel = src == s
            local = indices[sel] - self.offsets[s]
            current = self.example_weights[s]
            touched = np.unique(local)  # count each example once
            before = current[touched].copy()
            current[local] = weights[sel]
            if np.array_equal(before, current[touched]):
                continue  # nothing changed: keep the pass (LARK often re-selects the same candidates)
            self._positive[s] += np.count_nonzero(current[touched] > 0) - np.count_nonzero(before > 0)
            self._restart_pass(s)

    def _restart_pass(self, s: int) -> None:
        if self.position[s] > 0:
            self.passes[s] += 1
        self.position[s] = 0
        self._pass[s] = None

    # ---- drawing -------------------------------------------------------------------------------------
    def drawable(self) -> np.ndarray:
        """Sources that still have an example with positive weight (O(sources))."""
        return self._positive > 0

    def effective_source_weights(self) -> np.ndarray:
        """Source weights with sources that have nothing to draw (all example weights zero) set to zero."""
        w = self.source_weights * self.drawable()
        if w.sum() <= 0:
            raise RuntimeError(
                "no source with positive mixture weight has an example with positive weight: every "
                "selectable example was given weight 0"
            )
        return w / w.sum()

    def _source_counts(self, rng: np.random.Generator) -> np.ndarray:
        g, w = self.global_batch_size, self.effective_source_weights()
        if self.source_draw == "multinomial":
            return rng.multinomial(g, w)
        # Systematic sampling: one uniform offset, g evenly spaced points over the cumulative weights.
        points = (rng.random() + np.arange(g)) / g
        return np.bincount(np.searchsorted(np.cumsum(w), points, side="right").clip(max=len(w) - 1), minlength=len(w))

    def _current_pass(self, s: int) -> np.ndarray:
        order = self._pass[s]
        if order is None:
            rng = np.random.default_rng([self.seed, s, int(self.passes[s]), _PASS_STREAM])
            order = systematic_pass(self.example_weights[s], int(self._positive[s]), rng)
            self._pass[s] = order
        return order

    def _draw_source(self, s: int, k: int) -> np.ndarray:
        out = []
        while k > 0:
            # A pass has one draw per positive-weight example (the weights cannot have changed since it began).
            if self.position[s] >= self._positive[s]:  # spent: start the next one, never rebuild a spent one
                self.passes[s] += 1
                self.position[s] = 0
                self._pass[s] = None
            order = self._current_pass(s)
            start = int(self.position[s])
            got = order[start : start + k]
            self.position[s] += len(got)
            out.append(got.astype(np.int64))
            k -= len(got)
        return np.concatenate(out) + self.offsets[s]

    def draw(self) -> BatchPlan:
        """Draw the global batch of the current step and advance to the next step."""
        rng = np.random.default_rng([self.seed, self.step])
        counts = self._source_counts(rng)
        parts = [self._draw_source(s, int(c)) for s, c in enumerate(counts) if c > 0]
        indices = np.concatenate(parts)
        indices = indices[rng.permutation(len(indices))]
        if self.group_by_length:
            indices = indices[np.argsort(self.lengths[indices], kind="stable")]
            mb = self.micro_batch_size
            chunks = rng.permutation(len(indices) // mb)
            indices = indices.reshape(-1, mb)[chunks].reshape(-1)
        plan = BatchPlan(step=self.step, indices=indices)
        self.step += 1
        return plan

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything that decides future draws (tensors, so checkpoints load with ``weights_only``).

        Passes are not stored: each is regenerated from (seed, source, pass index) and the example weights,
        which cannot have changed since the pass began (a change starts a new pass).
        """
        return {
            "seed": self.seed,
            "step": self.step,
            "source_weights": torch.from_numpy(self.source_weights.copy()),
            "example_weights": [torch.from_numpy(w.copy()) for w in self.example_weights],
            "passes": torch.from_numpy(self.passes.copy()),
            "position": torch.from_numpy(self.position.copy()),
            "history": [(s, list(w)) for s, w in self.history],
            "sizes": self.sizes.tolist(),
        }

    def load_state_dict(self, state: Mapping) -> None:
        if list(state["sizes"]) != self.sizes.tolist():
            raise ValueError(
                f"checkpointed pool has source sizes {list(state['sizes'])}, this pool has "
                f"{self.sizes.tolist()}: the data changed since the checkpoint was written"
            )
        self.seed = int(state["seed"])
        self.step = int(state["step"])
        self.source_weights = state["source_weights"].numpy().astype(np.float64)
        self.example_weights = [w.numpy().astype(np.float64) for w in state["example_weights"]]
        self._positive = np.array([np.count_nonzero(w > 0) for w in self.example_weights], dtype=np.int64)
        self.passes = state["passes"].numpy().astype(np.int64)
        if "position" in state:
            self.position = state["position"].numpy().astype(np.int64)
        else:  # written by the earlier without-replacement sampler: its passes cannot be continued
            log.warning("the checkpoint's sampler state predates systematic passes; every source starts a new pass")
            self.passes = self.passes + 1
            self.position = np.zeros(len(self.sizes), dtype=np.int64)
        self.history = [(int(s), list(w)) for s, w in state["history"]]
        self._pass = [None] * len(self.sizes)

    def update_digest(self, digest) -> None:
        """Feed everything that decides the stream from the next step on into a ``hashlib`` object."""
        digest.update(np.int64(self.step).tobytes())
        digest.update(np.ascontiguousarray(self.source_weights).tobytes())
        digest.update(self.passes.tobytes())
        digest.update(self.position.tobytes())
        for weights in self.example_weights:
            digest.update(np.ascontiguousarray(weights).tobytes())
