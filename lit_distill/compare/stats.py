"""Paired comparisons of arms over seeds: pure numpy, no Lightning.

Every arm runs with the same seeds, and seed s fixes both the student's initialisation and the data order, so
arm A's run at seed s and arm B's run at seed s form a pair. Differences within pairs remove the seed-to-seed
variance that unpaired means carry, which is what gives a handful of seeds any power.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PairedDifference:
    """``arm - baseline`` over the seeds both finished.

    Attributes:
        n: Number of pairs (seeds).
        mean: Mean paired difference.
        ci_low, ci_high: Percentile bootstrap confidence interval of the mean difference.
        sd: Standard deviation of the differences (ddof=1; NaN for one pair).
        effect_size: Mean / sd of the differences (Cohen's d_z; NaN when undefined).
        wins: Pairs in which the arm beat the baseline (ties count for neither).
        losses: Pairs in which the baseline beat the arm.
    """

    n: int
    mean: float
    ci_low: float
    ci_high: float
    sd: float
    effect_size: float
    wins: int
    losses: int

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def excludes_zero(self) -> bool:
        """The confidence interval lies entirely on one side of zero."""
        return self.ci_low > 0 or self.ci_high < 0


def bootstrap_mean_ci(
    values: np.ndarray, confidence: float = 0.95, resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; a degenerate (point) interval for fewer than two values."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or len(v) == 0:
        raise ValueError("need a non-empty 1-D array of values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if len(v) == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def paired_difference(
    arm: dict[int, float], baseline: dict[int, float], confidence: float = 0.95, seed: int = 0
) -> PairedDifference:
    """Paired difference of two arms keyed by seed; seeds missing from either arm are left out."""
    seeds = sorted(set(arm) & set(baseline))
    if not seeds:
        raise ValueError("the two arms share no finished seed")
    d = np.array([arm[s] - baseline[s] for s in seeds], dtype=np.float64)
    low, high = bootstrap_mean_ci(d, confidence=confidence, seed=seed)
    sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    effect = float(d.mean() / sd) if len(d) > 1 and sd > 0 else float("nan")
    return PairedDifference(
        n=len(d),
        mean=float(d.mean()),
        ci_low=low,
        ci_high=high,
        sd=sd,
        effect_size=effect,
        wins=int(np.sum(d > 0)),
        losses=int(np.sum(d < 0)),
    )


def mean_band(curves: list[np.ndarray], confidence: float = 0.95, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Mean and bootstrap band of several curves sampled on a shared x grid (rows = seeds, NaN = missing)."""
    y = np.vstack(curves).astype(np.float64)
    mean = np.nanmean(y, axis=0)
    low, high = np.empty_like(mean), np.empty_like(mean)
    for j in range(y.shape[1]):
        col = y[:, j][~np.isnan(y[:, j])]
        low[j], high[j] = bootstrap_mean_ci(col, confidence, resamples=2000, seed=seed) if len(col) else (np.nan,) * 2
    return mean, low, high
