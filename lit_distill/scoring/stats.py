"""Small statistics helpers for scoring: ranks, Spearman correlation, bootstrap standard errors.

numpy only (no scipy dependency). Used by the DMC maths (bootstrap SE for hysteresis, methods.md 3.3)
and by the validation scripts (Spearman correlation of DMC with post-SFT accuracy, methods.md 3.5).
"""

from __future__ import annotations

import numpy as np


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of a 1-D array, ties getting the average of the ranks they span.

    Args:
        x: 1-D array of finite values.

    Returns:
        float64 ranks, e.g. ``[10, 20, 20, 30] -> [1, 2.5, 2.5, 4]``.

    Raises:
        ValueError: if ``x`` is not 1-D or holds NaN/inf (filter them first; their rank is undefined).
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"rankdata expects a 1-D array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("rankdata got non-finite values; filter them before ranking")
    n = x.size
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    # Group boundaries of equal values in sorted order; every member of a group of tied values
    # covering 0-based positions [start, end) gets the mean rank (start + 1 + end) / 2.
    new_group = np.empty(n, dtype=bool)
    new_group[:1] = True
    new_group[1:] = sorted_x[1:] != sorted_x[:-1]
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], n)
    mean_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation over the pairs where both values are finite.

    Args:
        x: 1-D array.
        y: 1-D array of the same length.

    Returns:
        The Pearson correlation of the average ranks; NaN with fewer than 2 finite pairs or when
        either side has zero variance (all ranks tied).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"spearman expects two 1-D arrays of equal length, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2:
        return float("nan")
    rx = rankdata(x[keep])
    ry = rankdata(y[keep])
    rx -= rx.mean()
    ry -= ry.mean()
    denom = np.sqrt(np.sum(rx * rx) * np.sum(ry * ry))
    if denom == 0.0:
        return float("nan")
    # Clip: rounding can push a perfect correlation a hair past +-1.
    return float(np.clip(np.sum(rx * ry) / denom, -1.0, 1.0))


def replicate_se(values: np.ndarray) -> float:
    """Standard error from bootstrap replicate values: their std (ddof=1) over the finite ones.

    Returns exactly 0.0 when all finite replicates are equal (so identical items give se = 0, not
    rounding noise), and NaN with fewer than 2 finite replicates.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size < 2:
        return float("nan")
    if np.all(values == values[0]):
        return 0.0
    return float(np.std(values, ddof=1))
