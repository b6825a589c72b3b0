"""Systematic passes: within-source draw counts proportional to example weights, spread over the pass.

A pass over one source is ``M`` draws (``M`` = the number of examples with positive weight, so uniform
weights draw every example exactly once per pass). It is built in two steps:

1. systematic sampling over a seeded random order of the examples: ``M`` points ``u, u + 1, ..., u + M - 1``
   over the cumulative weights scaled to ``M`` give example i ``floor`` or ``ceil`` of ``M * w_i / W``
   draws, and an example of weight 0 has an empty interval, so it is never drawn (the random order makes
   *which* examples round up random rather than a function of their index);
2. stratified placement: copy ``k`` of an example drawn ``c`` times gets the sort key ``(k + v) / c`` with
   one random phase ``v`` per example, and the pass is the copies sorted by key. The copies of a heavy
   example are evenly spaced over the pass (no bursts of repeats), single draws land at random places.

The keys are distinct with probability 1, so the sort order (hence the pass) does not depend on the sort
algorithm or the machine. The pass is a pure function of (weights, M, rng): a sampler stores only the pass
index and the position in it and regenerates the pass after a resume. Cost: one O(M log M) sort per pass.
"""

from __future__ import annotations

import numpy as np


def systematic_counts(weights: np.ndarray, m: int, u: float) -> np.ndarray:
    """Draws per example of one systematic sample of ``m`` points with offset ``u`` in ``[0, 1)``.

    ``counts[i]`` is ``floor`` or ``ceil`` of ``m * weights[i] / weights.sum()``, sums to ``m``, and is 0
    wherever the weight is 0.
    """
    cum = np.cumsum(weights, dtype=np.float64)
    total = cum[-1]
    if not total > 0:
        raise ValueError("a systematic pass needs at least one positive weight")
    cum *= m / total
    # Round-off may push a boundary past m (e.g. trailing zero weights after the last positive one): cap it,
    # so boundaries stay monotone and the last is exactly m.
    np.minimum(cum, m, out=cum)
    cum[-1] = m
    # Points u + j in [b_{i-1}, b_i): ceil(b_i - u) - ceil(b_{i-1} - u), with ceil(0 - u) = 0.
    cum -= u
    np.ceil(cum, out=cum)
    return np.diff(cum, prepend=0.0).astype(np.int64)


def systematic_pass(weights: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """The ``m`` draws of one pass (local example indices), in draw order; see the module docstring."""
    weights = np.asarray(weights, dtype=np.float64)
    index_type = np.int32 if len(weights) < 2**31 else np.int64  # halves the cached pass at 1e7 examples
    order = rng.permutation(len(weights)).astype(index_type)
    counts = systematic_counts(weights[order], m, float(rng.random()))
    drawn = counts > 0
    items, counts = order[drawn], counts[drawn]
    del order, drawn
    phase = rng.random(len(items))
    first = np.cumsum(counts) - counts  # where each example's copies start in the repeated arrays
    copy = np.arange(m, dtype=np.float64) - np.repeat(first, counts)
    key = (copy + np.repeat(phase, counts)) / np.repeat(counts, counts)
    del copy, first, phase
    return np.repeat(items, counts)[np.argsort(key)]
