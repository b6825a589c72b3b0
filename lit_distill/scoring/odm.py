"""Online data mixing as a multi-armed bandit (ODM, Albalak et al. 2023): EXP3 over sources, loss as reward.

Each source is an arm. After every optimiser step the training loss each source had in that step is its
reward (a source the student still finds hard is worth more draws), the running reward estimate is updated
with an importance weight, and the next mixture is EXP3's exponential weights with an exploration floor::

    eps_t   = min(1/J, sqrt(ln J / (J t)))
    pi_t(j) = (1 - J eps_t) exp(eps_{t-1} R_j) / sum_k exp(eps_{t-1} R_k) + eps_t
    R_j    <- alpha R_j + (1 - alpha) r_j / pi(j)       for every source j drawn in the step

ODM draws one source per batch and divides its loss by that source's probability; our global batches mix
sources, so every drawn source reports its loss at each step, divided by its probability as in ODM. That keeps
ODM's reward scale (about J times the loss at a uniform mixture) and its bias toward rarely drawn sources, which
is what makes EXP3 explore; the floor eps_t keeps every source drawable. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


def exploration(t: int, n_sources: int) -> float:
    """EXP3's exploration rate eps_t (t >= 1); at most 1/J, so the floor never exceeds the uniform mixture."""
    if n_sources < 1:
        raise ValueError("need at least one source")
    if n_sources == 1:
        return 1.0
    return float(min(1.0 / n_sources, np.sqrt(np.log(n_sources) / (n_sources * max(t, 1)))))


def exp3_weights(rewards: np.ndarray, t: int) -> np.ndarray:
    """The mixture at step t from the reward estimates (uses eps_{t-1} as the learning rate, eps_t as floor)."""
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1 or not np.all(np.isfinite(r)):
        raise ValueError(f"rewards must be a finite 1-D array, got {r.tolist()}")
    j = len(r)
    eps, rate = exploration(t, j), exploration(max(t - 1, 1), j)
    z = rate * r
    soft = np.exp(z - z.max())
    return (1 - j * eps) * soft / soft.sum() + eps


@dataclass
class Exp3State:
    """Reward estimates and the step counter of the bandit (checkpointed by the callback)."""

    rewards: np.ndarray
    t: int = 0
    history: list[tuple[int, list[float]]] = field(default_factory=list)

    @classmethod
    def start(cls, n_sources: int) -> Exp3State:
        return cls(rewards=np.zeros(n_sources, dtype=np.float64))

    def state_dict(self) -> dict[str, Any]:
        return {"rewards": self.rewards.tolist(), "t": self.t, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rewards = np.asarray(state["rewards"], dtype=np.float64)
        self.t = int(state["t"])
        self.history = [(int(s), list(w)) for s, w in state["history"]]


def exp3_update(state: Exp3State, losses: np.ndarray, weights: np.ndarray, smoothing: float = 0.9) -> np.ndarray:
    """Fold one step's per-source losses (NaN = source not drawn) into the state; return the next mixture.

    Args:
        state: Updated in place (rewards, t).
        losses: Mean training loss per source in the step just taken; NaN for sources without a draw.
        weights: The mixture the step was drawn from (the importance weight divides by it).
        smoothing: alpha, the weight of the previous reward estimate (ODM uses 0.9).
    """
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must lie in [0, 1), got {smoothing}")
    losses = np.asarray(losses, dtype=np.float64)
    if losses.shape != state.rewards.shape:
        raise ValueError(f"expected {state.rewards.shape[0]} per-source losses, got {losses.shape}")
    seen = np.isfinite(losses)
    p = np.asarray(weights, dtype=np.float64)
    update = np.where(seen, losses / np.maximum(p, 1e-12), 0.0)
    state.rewards = np.where(seen, smoothing * state.rewards + (1 - smoothing) * update, state.rewards)
    state.t += 1
    return exp3_weights(state.rewards, state.t + 1)
