"""EXP3 mixing (ODM): exploration floor, reward direction, importance weights, unobserved sources."""

from __future__ import annotations

import numpy as np
import pytest

from lit_distill.scoring.odm import Exp3State, exp3_update, exp3_weights, exploration


def test_weights_are_a_distribution_with_the_exploration_floor():
    w = exp3_weights(np.array([100.0, 0.0, 0.0, 0.0]), t=50)
    assert w.sum() == pytest.approx(1.0)
    assert w.min() >= exploration(50, 4) and w.min() == pytest.approx(exploration(50, 4), rel=0.01)
    assert w.argmax() == 0
    assert exploration(1, 4) == pytest.approx(0.25)  # at the start the floor is the uniform mixture
    np.testing.assert_allclose(exp3_weights(np.array([5.0, 1.0]), t=1), [0.5, 0.5])


def test_a_source_with_persistently_higher_loss_gains_weight():
    state, w = Exp3State.start(3), np.full(3, 1 / 3)
    for _ in range(200):
        w = exp3_update(state, np.array([2.0, 1.0, 1.0]), w)
    # The importance weight makes the bandit self-limiting (a source drawn more reports loss / larger pi), so
    # the gain is moderate but systematic.
    assert w[0] > w[1] + 0.02 and w[1] == pytest.approx(w[2])
    assert state.t == 200


def test_unobserved_source_keeps_its_estimate_and_rewards_are_importance_weighted():
    state = Exp3State(rewards=np.array([1.0, 1.0, 1.0]))
    exp3_update(state, np.array([np.nan, 1.0, 1.0]), np.array([0.5, 0.4, 0.1]), smoothing=0.5)
    assert state.rewards[0] == 1.0  # not drawn: unchanged
    assert state.rewards[1] == pytest.approx(0.5 * 1.0 + 0.5 * 1.0 / 0.4)
    assert state.rewards[2] == pytest.approx(0.5 * 1.0 + 0.5 * 1.0 / 0.1)  # same loss, rarer: larger reward


def test_state_round_trips_and_bad_input_is_refused():
    state = Exp3State.start(2)
    exp3_update(state, np.array([1.0, 2.0]), np.array([0.5, 0.5]))
    copy = Exp3State.start(2)
    copy.load_state_dict(state.state_dict())
    np.testing.assert_array_equal(copy.rewards, state.rewards)
    assert copy.t == state.t
    with pytest.raises(ValueError, match="per-source losses"):
        exp3_update(state, np.array([1.0]), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match="smoothing"):
        exp3_update(state, np.array([1.0, 1.0]), np.array([0.5, 0.5]), smoothing=1.0)
