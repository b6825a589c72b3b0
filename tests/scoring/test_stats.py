"""Tests for lit_distill.scoring.stats: ranks, Spearman, bootstrap standard error."""

import math

import numpy as np
import pytest

from lit_distill.scoring.stats import rankdata, replicate_se, spearman


def test_rankdata_average_ties():
    np.testing.assert_array_equal(rankdata([10, 20, 20, 30]), [1.0, 2.5, 2.5, 4.0])
    # Unsorted input with a triple tie: positions 2,3,4 (1-based) share rank 3.
    np.testing.assert_array_equal(rankdata([5.0, 1.0, 5.0, 0.0, 5.0]), [4.0, 2.0, 4.0, 1.0, 4.0])
    np.testing.assert_array_equal(rankdata([3.0, 3.0]), [1.5, 1.5])
    assert rankdata([]).shape == (0,)


def test_rankdata_rejects_nan_and_2d():
    with pytest.raises(ValueError, match="non-finite"):
        rankdata([1.0, float("nan")])
    with pytest.raises(ValueError, match="1-D"):
        rankdata(np.zeros((2, 2)))


def test_spearman_hand_value():
    # Ranks x = [1,2,3,4,5], y = [2,1,4,3,5]: d^2 sum = 4, rho = 1 - 6*4/(5*24) = 0.8.
    assert spearman([1, 2, 3, 4, 5], [20, 10, 40, 30, 50]) == pytest.approx(0.8)
    # With ties (no closed d^2 form): Pearson of ranks [1,2.5,2.5,4] and [1,2,3,4].
    rx = np.array([1, 2.5, 2.5, 4]) - 2.5
    ry = np.array([1, 2, 3, 4]) - 2.5
    expected = (rx @ ry) / math.sqrt((rx @ rx) * (ry @ ry))
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(expected)
    assert expected == pytest.approx(0.9486832980505138)


def test_spearman_monotone_and_reversed():
    x = np.array([0.1, 0.5, 0.7, 2.0, 9.0])
    assert spearman(x, np.exp(x)) == pytest.approx(1.0)
    assert spearman(x, -(x**3)) == pytest.approx(-1.0)


def test_spearman_nan_cases():
    assert math.isnan(spearman([1.0], [2.0]))
    assert math.isnan(spearman([1.0, float("nan"), 3.0], [1.0, 2.0, float("nan")]))  # 1 finite pair
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))  # zero variance
    # Non-finite pairs are dropped, the rest still correlate.
    assert spearman([1, 2, float("nan"), 3], [3, 2, 100, 1]) == pytest.approx(-1.0)


def test_replicate_se_ignores_non_finite():
    assert replicate_se(np.array([1.0, 3.0, float("nan")])) == pytest.approx(math.sqrt(2.0))
    assert math.isnan(replicate_se(np.array([1.0, float("inf")])))
