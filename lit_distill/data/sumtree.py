"""A vectorised sum tree: weighted sampling without replacement in O(log n) per draw.

The mixture sampler keeps one tree per source over the example weights not yet drawn in the current pass.
Drawing k examples, zeroing them, and changing any subset of weights all cost O(k log n) numpy work, so
neither a draw nor a LARK weight update rebuilds anything proportional to the pool.

Internal nodes are recomputed as the sum of their children (never updated by adding deltas), so a subtree
whose leaves are all zero sums to exactly 0.0 and exhaustion is detected exactly.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    """Binary sum tree over ``n`` non-negative float64 leaf weights."""

    def __init__(self, weights: np.ndarray) -> None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.ndim != 1 or len(weights) == 0:
            raise ValueError("SumTree needs a non-empty 1-D weight array")
        if not np.all(np.isfinite(weights)) or np.any(weights < 0):
            raise ValueError("SumTree weights must be finite and non-negative")
        self.n = len(weights)
        self.capacity = 1 << int(np.ceil(np.log2(max(self.n, 1))))
        self.depth = int(np.log2(self.capacity))
        self.nodes = np.zeros(2 * self.capacity, dtype=np.float64)
        self.reset(weights)

    def reset(self, weights: np.ndarray) -> None:
        """Replace all leaves and rebuild the tree (O(n); the sampler does this once per pass)."""
        leaves = self.nodes[self.capacity : self.capacity + self.n]
        leaves[:] = weights
        level_start = self.capacity
        while level_start > 1:
            parent_start = level_start // 2
            children = self.nodes[level_start : 2 * level_start]
            self.nodes[parent_start:level_start] = children[0::2] + children[1::2]
            level_start = parent_start

    @property
    def total(self) -> float:
        return float(self.nodes[1])

    @property
    def leaves(self) -> np.ndarray:
        return self.nodes[self.capacity : self.capacity + self.n]

    def update(self, idx: np.ndarray, values: np.ndarray | float) -> None:
        """Set leaves ``idx`` to ``values`` and recompute their ancestors."""
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size == 0:
            return
        values = np.broadcast_to(np.asarray(values, dtype=np.float64), idx.shape)
        if np.any(values < 0) or not np.all(np.isfinite(values)):
            raise ValueError("SumTree weights must be finite and non-negative")
        node = idx + self.capacity
        self.nodes[node] = values
        for _ in range(self.depth):
            node = np.unique(node // 2)
            self.nodes[node] = self.nodes[2 * node] + self.nodes[2 * node + 1]

    def find(self, u: np.ndarray) -> np.ndarray:
        """Leaf index whose cumulative-weight interval holds each ``u`` in ``[0, total)``."""
        u = np.array(u, dtype=np.float64, copy=True)
        node = np.ones(u.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * node
            left_sum = self.nodes[left]
            go_right = u >= left_sum
            # Guard float round-off: never step into an empty right subtree.
            go_right &= self.nodes[left + 1] > 0
            u = np.where(go_right, u - left_sum, u)
            node = np.where(go_right, left + 1, left)
        return node - self.capacity

    def sample_without_replacement(self, k: int, rng: np.random.Generator) -> np.ndarray:
        """Draw up to ``k`` distinct leaves with probability proportional to weight; drawn leaves are zeroed.

        Successive weighted sampling: i.i.d. draws from the current weights, keeping first occurrences,
        is exactly sequential sampling without replacement; duplicates are redrawn after zeroing.
        Returns fewer than ``k`` indices only when the tree runs out of positive weight.
        """
        out: list[np.ndarray] = []
        need = k
        while need > 0 and self.total > 0:
            u = rng.random(need) * self.total
            drawn = self.find(u)
            _, first = np.unique(drawn, return_index=True)
            drawn = drawn[np.sort(first)]
            self.update(drawn, 0.0)
            out.append(drawn)
            need -= len(drawn)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
