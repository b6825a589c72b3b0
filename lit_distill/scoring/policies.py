"""Dataset-mixture policies: source weights π over J sources, static and DMC-driven (methods.md 3.4).

Pure numpy. Static baselines (uniform over examples, balanced, given, temperature) fix π once; the DMC
callback turns per-source DMC ± se into π every evaluation with either a floored power of the DMC
(shrunk by its standard error) smoothed by an EMA, or a hard switch with hysteresis and a minimum
dwell (``next_mixture`` chains them). Every function returns float64 weights that sum to 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def _normalise(w: np.ndarray, what: str) -> np.ndarray:
    total = w.sum()
    if not total > 0:
        raise ValueError(f"{what}: weights sum to {total}, need a positive total")
    return w / total


def _sizes(sizes: Sequence[int]) -> np.ndarray:
    n = np.asarray(sizes, dtype=np.float64)
    if n.ndim != 1 or n.size == 0:
        raise ValueError(f"sizes must be a non-empty 1-D sequence, got {sizes!r}")
    if not np.all(np.isfinite(n)) or np.any(n < 0):
        raise ValueError(f"sizes must be finite and non-negative, got {sizes!r}")
    if not n.sum() > 0:
        raise ValueError("all sources are empty (sizes sum to 0)")
    return n


def uniform_weights(sizes: Sequence[int]) -> np.ndarray:
    """Weights proportional to source size, i.e. uniform over examples (the concatenation baseline)."""
    return _normalise(_sizes(sizes), "uniform_weights")


def balanced_weights(sizes: Sequence[int]) -> np.ndarray:
    """1/J for every non-empty source; empty sources get 0 (they cannot be sampled)."""
    return _normalise((_sizes(sizes) > 0).astype(np.float64), "balanced_weights")


def static_weights(names: Sequence[str], given: Mapping[str, float]) -> np.ndarray:
    """Weights given by name in the config, normalised, in the order of ``names``.

    Raises:
        ValueError: a source in ``given`` that is not in ``names`` (or the reverse), negative or
            non-finite weights, or all weights zero.
    """
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate source names: {list(names)}")
    unknown = sorted(set(given) - set(names))
    missing = [n for n in names if n not in given]
    if unknown:
        raise ValueError(f"static weights name unknown sources {unknown}; sources are {list(names)}")
    if missing:
        raise ValueError(f"static weights missing for sources {missing}")
    w = np.array([float(given[n]) for n in names], dtype=np.float64)
    bad = [n for n, v in zip(names, w, strict=True) if not (np.isfinite(v) and v >= 0)]
    if bad:
        raise ValueError(f"static weights must be finite and >= 0; bad for {bad}")
    return _normalise(w, "static_weights (all zero)")


def temperature_weights(sizes: Sequence[int], temperature: float) -> np.ndarray:
    """Size-tempered weights n_j^(1/T) normalised: T=1 is uniform over examples, T→∞ balanced."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    n = _sizes(sizes)
    # In log space: n^(1/T) overflows for small T and large sizes; log(0) = -inf gives weight 0.
    with np.errstate(divide="ignore"):
        logw = np.log(n) / temperature
    return _normalise(np.exp(logw - logw.max()), "temperature_weights")


def _clean_scores(scores: np.ndarray) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D array, got shape {s.shape}")
    if np.any(np.isinf(s)):
        raise ValueError(f"scores must not be infinite, got {s}")
    return s


def shrink_to_mean(scores: np.ndarray, se: np.ndarray) -> np.ndarray:
    """Empirical-Bayes (James–Stein) shrinkage of each score toward the mean by its standard error.

    The spread of the true scores is estimated as τ² = max(0, var(s) − mean(se²)) (ddof=1), and each
    score moves to m + τ²/(τ² + se_j²)·(s_j − m). Differences within the noise (τ² ≈ 0) collapse to
    the mean, so they cannot concentrate the mixture; gaps far above the noise are left almost as they
    are. Multiplying scores and se by c > 0 multiplies the result by c (the mixture stays scale-free).

    Args:
        scores: finite scores, one per source.
        se: standard errors (same shape); NaN counts as 0 (that score is trusted as is).
    """
    s = np.asarray(scores, dtype=np.float64)
    err = np.nan_to_num(np.asarray(se, dtype=np.float64), nan=0.0)
    if err.shape != s.shape:
        raise ValueError(f"se shape {err.shape} does not match scores shape {s.shape}")
    if np.any(err < 0) or np.any(np.isinf(err)):
        raise ValueError(f"se must be finite and >= 0, got {err}")
    if s.size < 2:
        return s.copy()
    mean = s.mean()
    tau2 = max(0.0, float(s.var(ddof=1)) - float(np.mean(err**2)))
    # A score with se = 0 is exact and kept as is (also avoids 0/0 when τ² = 0).
    keep = np.where(err > 0, tau2 / np.maximum(tau2 + err**2, 1e-300), 1.0)
    return mean + keep * (s - mean)


def power_mixture(
    scores: np.ndarray,
    se: np.ndarray | None = None,
    temperature: float = 0.5,
    floor: float = 0.05,
    shrink: bool = True,
) -> np.ndarray:
    """Soft DMC mixture (methods.md 3.4): π = (1 − ε)·normalise(DMC^(1/T)) + ε/J.

    A power of the DMC itself, not a softmax of z-scores: multiplying every DMC by a constant changes
    nothing (scale-free), yet the weights follow the *ratios* of the DMC values, so a 1e-4 relative gap
    moves the weights by about 1e-4/T (magnitude-aware). A z-scored softmax turned such a gap into a
    96/4 split (methods.md 3.6). With ``shrink`` the scores are first pulled toward their mean by their
    bootstrap se (``shrink_to_mean``), so sources whose DMC differ by less than the noise get near-equal
    weights.

    DMC is non-negative by construction; a negative score (a custom variant) counts as 0, a NaN score
    (a source that could not be scored) as the lowest finite score, and if nothing is positive the
    mixture is uniform.

    Args:
        scores: DMC per source.
        se: bootstrap standard error per source, for ``shrink``; None means no shrinkage.
        temperature: T_mix > 0; lower is greedier (T = 0.5 squares the DMC ratios).
        floor: coverage floor ε in [0, 1]; every source keeps at least ε/J.
        shrink: shrink toward equal scores by the standard errors first.
    """
    s = _clean_scores(scores)
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor}")
    j = s.size
    finite = np.isfinite(s)
    if j == 1:
        return np.ones(1)
    if not finite.any():
        return np.full(j, 1.0 / j)
    s = np.clip(np.where(finite, s, s[finite].min()), 0.0, None)
    if shrink and se is not None:
        err = np.where(finite, np.asarray(se, dtype=np.float64), 0.0)
        s = shrink_to_mean(s, err)
    top = s.max()
    if not top > 0:
        return np.full(j, 1.0 / j)
    # Divide by the largest score first: s^(1/T) would overflow or underflow for extreme DMC or small T.
    p = (s / top) ** (1.0 / temperature)
    return _normalise((1.0 - floor) * p / p.sum() + floor / j, "power_mixture")


def ema(previous: np.ndarray, new: np.ndarray, beta: float) -> np.ndarray:
    """Smoothed mixture (1 − β)·previous + β·new, renormalised (β = 1 takes ``new`` as is)."""
    prev = np.asarray(previous, dtype=np.float64)
    cur = np.asarray(new, dtype=np.float64)
    if prev.shape != cur.shape or prev.ndim != 1:
        raise ValueError(f"ema needs two 1-D weight vectors of equal length, got {prev.shape}, {cur.shape}")
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"ema beta must be in [0, 1], got {beta}")
    if np.any(~np.isfinite(prev) | (prev < 0)) or np.any(~np.isfinite(cur) | (cur < 0)):
        raise ValueError("ema weights must be finite and non-negative")
    return _normalise((1.0 - beta) * prev + beta * cur, "ema")


@dataclass
class HardSwitchState:
    """Resumable state of ``hard_switch``.

    Attributes:
        incumbent: sorted indices of the currently selected top-m sources; None before the first call.
        stages_since_switch: completed stages the incumbent has been held since it was adopted.
    """

    incumbent: tuple[int, ...] | None = None
    stages_since_switch: int = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "incumbent": None if self.incumbent is None else list(self.incumbent),
            "stages_since_switch": self.stages_since_switch,
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        inc = d["incumbent"]
        self.incumbent = None if inc is None else tuple(int(i) for i in inc)
        self.stages_since_switch = int(d["stages_since_switch"])


def _rank_order(s: np.ndarray) -> np.ndarray:
    # Best first; NaN counts as -inf; ties go to the lower index (stable sort of -s).
    return np.argsort(-np.where(np.isnan(s), -np.inf, s), kind="stable")


def hard_switch(
    scores: np.ndarray,
    se: np.ndarray,
    state: HardSwitchState,
    top_m: int = 1,
    min_dwell: int = 1,
    floor: float = 0.0,
) -> tuple[np.ndarray, HardSwitchState]:
    """Hard DMC selection (methods.md 3.4): one-hot, or uniform over the top m, with hysteresis.

    The first call adopts the top m by DMC. Later calls keep the incumbent unless a challenger beats
    an incumbent member by more than max(se_challenger, se_incumbent), so noise in DMC cannot flip
    the mixture back and forth, and only once the incumbent has been held for ``min_dwell`` stages.
    With m > 1 the weakest member is swapped for the strongest outsider while that margin holds.
    NaN scores count as -inf; NaN se as 0. Ties go to the lower index.

    Args:
        scores: DMC per source.
        se: bootstrap standard error per source (same shape).
        state: state after the previous call (not mutated).
        top_m: number of sources selected, 1 <= m <= J.
        min_dwell: stages an incumbent must be held before it can be replaced.
        floor: coverage floor ε in [0, 1]; weights become (1 − ε)·selection + ε/J.

    Returns:
        (weights, new_state).
    """
    s = _clean_scores(scores)
    err = np.asarray(se, dtype=np.float64)
    if err.shape != s.shape:
        raise ValueError(f"se shape {err.shape} does not match scores shape {s.shape}")
    if np.any(err < 0) or np.any(np.isinf(err)):
        raise ValueError(f"se must be finite and >= 0, got {err}")
    err = np.nan_to_num(err, nan=0.0)
    j = s.size
    if not 1 <= top_m <= j:
        raise ValueError(f"top_m must be in [1, {j}], got {top_m}")
    if min_dwell < 0:
        raise ValueError(f"min_dwell must be >= 0, got {min_dwell}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor}")

    if state.incumbent is None:
        chosen = {int(i) for i in _rank_order(s)[:top_m]}
        new_state = HardSwitchState(tuple(sorted(chosen)), 0)
    else:
        chosen = set(state.incumbent)
        if len(chosen) != top_m or not all(0 <= i < j for i in chosen):
            raise ValueError(f"incumbent {state.incumbent} does not fit top_m={top_m} over {j} sources")
        held = state.stages_since_switch + 1  # the stage that just ended ran on the incumbent
        switched = False
        if held >= min_dwell:
            key = np.where(np.isnan(s), -np.inf, s)
            while True:
                order = [int(i) for i in _rank_order(s)]
                worst = next(i for i in reversed(order) if i in chosen)
                best = next((i for i in order if i not in chosen), None)
                if best is None or not key[best] - key[worst] > max(err[best], err[worst]):
                    break
                chosen = (chosen - {worst}) | {best}
                switched = True
        new_state = HardSwitchState(tuple(sorted(chosen)), 0 if switched else held)

    w = np.zeros(j)
    w[list(new_state.incumbent)] = 1.0 / top_m
    return _normalise((1.0 - floor) * w + floor / j, "hard_switch"), new_state


@dataclass(frozen=True)
class MixturePolicyConfig:
    """How the DMC callback turns DMC into source weights (methods.md 3.4).

    Attributes:
        mode: "power" (weights ∝ DMC^(1/T) after shrinking by the bootstrap se, with a coverage floor,
            EMA-smoothed) or "hard" (one-hot / top-m switching with se hysteresis).
        temperature: T_mix of the power form; lower is greedier (0.5 squares the DMC ratios).
        floor: coverage floor ε; every source keeps at least ε/J.
        ema_beta: EMA weight β of the new power mixture (hard mode always uses β = 1).
        shrink: in power mode, pull the DMC values toward their mean by their bootstrap se first, so
            differences within the noise give near-equal weights.
        top_m: sources selected in hard mode.
        min_dwell: stages an incumbent is held at least, in hard mode.
    """

    mode: str = "power"
    temperature: float = 0.5
    floor: float = 0.05
    ema_beta: float = 0.5
    shrink: bool = True
    top_m: int = 1
    min_dwell: int = 1

    def __post_init__(self) -> None:
        if self.mode == "softmax":
            raise ValueError(
                "mixture mode 'softmax' (a softmax of z-scored DMC) was removed: it ignored the size of DMC "
                "differences and turned noise into near one-hot mixtures; use mode 'power' (methods.md 3.4)"
            )
        if self.mode not in ("power", "hard"):
            raise ValueError(f"mixture mode must be 'power' or 'hard', got {self.mode!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.floor <= 1.0:
            raise ValueError(f"floor must be in [0, 1], got {self.floor}")
        if not 0.0 <= self.ema_beta <= 1.0:
            raise ValueError(f"ema_beta must be in [0, 1], got {self.ema_beta}")
        if self.top_m < 1 or self.min_dwell < 0:
            raise ValueError(f"need top_m >= 1 and min_dwell >= 0, got {self.top_m}, {self.min_dwell}")


def next_mixture(
    config: MixturePolicyConfig,
    previous: np.ndarray,
    scores: np.ndarray,
    se: np.ndarray,
    state: HardSwitchState,
) -> tuple[np.ndarray, HardSwitchState]:
    """One evaluation of the DMC schedule: new weights from the previous ones and DMC ± se.

    Power mode smooths with the EMA and leaves ``state`` as is; hard mode replaces the weights
    outright (β = 1, methods.md 3.4) and advances the switching state.
    """
    if config.mode == "hard":
        return hard_switch(scores, se, state, config.top_m, config.min_dwell, config.floor)
    target = power_mixture(scores, se, config.temperature, config.floor, config.shrink)
    return ema(previous, target, config.ema_beta), state
