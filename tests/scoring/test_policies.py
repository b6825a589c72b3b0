"""Tests for lit_distill.scoring.policies: static mixtures, DMC power mixture + EMA, hard switching."""

import numpy as np
import pytest

from lit_distill.scoring.policies import (
    HardSwitchState,
    MixturePolicyConfig,
    balanced_weights,
    ema,
    hard_switch,
    next_mixture,
    power_mixture,
    shrink_to_mean,
    static_weights,
    temperature_weights,
    uniform_weights,
)


def assert_simplex(w: np.ndarray) -> None:
    assert w.dtype == np.float64
    assert np.all(w >= 0)
    assert w.sum() == pytest.approx(1.0)


# --- static policies --------------------------------------------------------------------------


def test_uniform_and_balanced():
    np.testing.assert_allclose(uniform_weights([10, 30, 60]), [0.1, 0.3, 0.6])
    np.testing.assert_allclose(uniform_weights([10, 0, 30]), [0.25, 0.0, 0.75])
    np.testing.assert_allclose(balanced_weights([10, 30, 60]), [1 / 3] * 3)
    np.testing.assert_allclose(balanced_weights([10, 0, 30]), [0.5, 0.0, 0.5])
    for bad in ([], [0, 0], [-1, 3], [float("nan"), 1]):
        with pytest.raises(ValueError):
            uniform_weights(bad)


def test_static_weights():
    w = static_weights(["a", "b", "c"], {"c": 2.0, "a": 1.0, "b": 1.0})
    np.testing.assert_allclose(w, [0.25, 0.25, 0.5])
    assert_simplex(w)
    with pytest.raises(ValueError, match=r"unknown sources \['z'\]"):
        static_weights(["a"], {"a": 1.0, "z": 1.0})
    with pytest.raises(ValueError, match=r"missing for sources \['b'\]"):
        static_weights(["a", "b"], {"a": 1.0})
    with pytest.raises(ValueError, match=r"bad for \['b'\]"):
        static_weights(["a", "b"], {"a": 1.0, "b": -0.5})
    with pytest.raises(ValueError, match="all zero"):
        static_weights(["a", "b"], {"a": 0.0, "b": 0.0})


def test_temperature_weights():
    np.testing.assert_allclose(temperature_weights([1, 4], 2.0), [1 / 3, 2 / 3])
    np.testing.assert_allclose(temperature_weights([10, 30, 60], 1.0), uniform_weights([10, 30, 60]))
    np.testing.assert_allclose(temperature_weights([10, 30, 60], 1e6), [1 / 3] * 3, atol=1e-5)
    np.testing.assert_allclose(temperature_weights([0, 5], 0.5), [0.0, 1.0])
    w = temperature_weights([10**6, 2 * 10**6], 0.01)  # 2^100 ratio: no overflow
    assert_simplex(w)
    assert w[1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="temperature"):
        temperature_weights([1, 2], 0.0)


# --- power mixture + EMA ------------------------------------------------------------------------


def test_power_mixture_hand_value():
    # T = 0.5 squares the DMC: [1, 4] / 5; floor 0.1 over J = 2 adds 0.05 each.
    w = power_mixture(np.array([1.0, 2.0]), temperature=0.5, floor=0.1)
    np.testing.assert_allclose(w, [0.9 * 0.2 + 0.05, 0.9 * 0.8 + 0.05], rtol=1e-12)


def test_power_mixture_floor_and_ordering():
    s = np.array([0.01, 5.0, 0.3, 0.2, 100.0])
    floor = 0.05
    w = power_mixture(s, temperature=1.0, floor=floor)
    assert_simplex(w)
    assert w.min() >= floor / s.size - 1e-15
    assert list(np.argsort(w)) == list(np.argsort(s))
    greedy = power_mixture(s, temperature=0.1, floor=floor)
    assert greedy[4] > 0.94 and greedy.min() >= floor / s.size - 1e-15


def test_power_mixture_is_scale_free():
    s = np.array([0.02, 0.05, 0.011, 0.04])
    se = np.array([0.001, 0.004, 0.002, 0.003])
    w = power_mixture(s, se)
    for c in (7.0, 1e-4, 1e6):
        np.testing.assert_allclose(power_mixture(c * s, c * se), w, rtol=1e-10)
    assert w.max() - w.min() > 0.1  # not trivially uniform


def test_power_mixture_is_magnitude_aware():
    # The z-scored softmax gave the same 0.035/0.920/0.017/0.028 for gaps shrunk 1e4-fold, and 96/4 for
    # a 1e-4 gap between two sources. Tiny relative gaps must now move almost no weight.
    base = np.array([0.50, 0.62, 0.47, 0.49])
    tiny = 0.5 + (base - 0.5) * 1e-4
    np.testing.assert_allclose(power_mixture(tiny), 0.25, atol=1e-3)
    two = power_mixture(np.array([1.0, 1.0 + 1e-4]))
    assert np.abs(two - 0.5).max() <= 0.01
    # ...while real gaps still matter, in proportion to the DMC ratio.
    w = power_mixture(base, floor=0.0)
    np.testing.assert_allclose(w / w[0], (base / base[0]) ** 2)


def test_power_mixture_shrinks_differences_within_se():
    s, se = np.array([1.0, 0.9, 0.95, 1.05]), np.full(4, 0.1)
    np.testing.assert_allclose(power_mixture(s, se), 0.25, atol=1e-12)  # spread below the noise: equal
    assert power_mixture(s, se, shrink=False).max() > 0.28  # without shrinkage it is not
    # Gaps far above the se are kept nearly as they are.
    far = np.array([1.0, 3.0])
    np.testing.assert_allclose(power_mixture(far, np.full(2, 0.01)), power_mixture(far), atol=1e-3)
    # A noisy source is pulled toward the mean more than a precise one.
    shrunk = shrink_to_mean(np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.0, 0.0, 0.0, 1.5]))
    assert shrunk[:3].tolist() == [1.0, 2.0, 3.0] and 2.5 < shrunk[3] < 4.0


def test_power_mixture_edges():
    np.testing.assert_array_equal(power_mixture(np.array([0.3])), [1.0])
    np.testing.assert_allclose(power_mixture(np.array([np.nan, np.nan])), [0.5, 0.5])
    w = power_mixture(np.array([0.1, np.nan, 0.5, 0.3]))
    assert w[1] == pytest.approx(w[0])  # NaN counts as the lowest finite score
    np.testing.assert_allclose(power_mixture(np.array([0.2, 0.2, 0.2])), [1 / 3] * 3)
    np.testing.assert_allclose(power_mixture(np.zeros(3)), [1 / 3] * 3)  # nothing positive: uniform
    w = power_mixture(np.array([-0.5, 0.0, 1.0]), floor=0.1)  # negative counts as zero
    np.testing.assert_allclose(w, [0.1 / 3, 0.1 / 3, 0.9 + 0.1 / 3])
    assert_simplex(power_mixture(np.array([1e-300, 1e300]), temperature=0.01))  # no overflow
    for kwargs in ({"temperature": 0.0}, {"floor": 1.5}):
        with pytest.raises(ValueError):
            power_mixture(np.array([0.1, 0.2]), **kwargs)
    with pytest.raises(ValueError, match="infinite"):
        power_mixture(np.array([0.1, np.inf]))
    with pytest.raises(ValueError, match="se"):
        power_mixture(np.array([0.1, 0.2]), np.array([0.1, -1.0]))


def test_ema():
    np.testing.assert_allclose(ema(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.25), [0.75, 0.25])
    np.testing.assert_allclose(ema(np.array([0.5, 0.5]), np.array([0.2, 0.8]), 1.0), [0.2, 0.8])
    np.testing.assert_allclose(ema(np.array([2.0, 2.0]), np.array([0.0, 4.0]), 0.5), [0.25, 0.75])
    with pytest.raises(ValueError, match="beta"):
        ema(np.array([1.0]), np.array([1.0]), 1.5)
    with pytest.raises(ValueError, match="equal length"):
        ema(np.array([1.0]), np.array([0.5, 0.5]), 0.5)


# --- hard switching ---------------------------------------------------------------------------


def test_hard_switch_first_call_adopts_argmax():
    state = HardSwitchState()
    w, new = hard_switch(np.array([0.1, 0.5, 0.3]), np.zeros(3), state)
    np.testing.assert_array_equal(w, [0.0, 1.0, 0.0])
    assert new.incumbent == (1,) and new.stages_since_switch == 0
    assert state.incumbent is None  # input state not mutated
    _, tie = hard_switch(np.array([0.5, 0.2, 0.5]), np.zeros(3), HardSwitchState())
    assert tie.incumbent == (0,)


def test_hard_switch_hysteresis():
    _, st = hard_switch(np.array([0.1, 0.5, 0.3]), np.full(3, 0.1), HardSwitchState())
    # Challenger 2 beats incumbent 1 by 0.05 < se 0.1: keep.
    w, kept = hard_switch(np.array([0.1, 0.5, 0.55]), np.full(3, 0.1), st)
    np.testing.assert_array_equal(w, [0.0, 1.0, 0.0])
    assert kept.incumbent == (1,) and kept.stages_since_switch == 1
    # By 0.2 > 0.1: switch, and the dwell counter restarts.
    w, switched = hard_switch(np.array([0.1, 0.5, 0.7]), np.full(3, 0.1), kept)
    np.testing.assert_array_equal(w, [0.0, 0.0, 1.0])
    assert switched.incumbent == (2,) and switched.stages_since_switch == 0
    # The margin uses the larger of the two se: 0.2 < challenger se 0.3, keep.
    _, kept2 = hard_switch(np.array([0.1, 0.5, 0.7]), np.array([0.0, 0.01, 0.3]), kept)
    assert kept2.incumbent == (1,)


def test_hard_switch_min_dwell_blocks_early_switch():
    scores_then = np.array([1.0, 0.0])
    scores_now = np.array([0.0, 1.0])  # challenger far ahead, se 0
    _, st = hard_switch(scores_then, np.zeros(2), HardSwitchState(), min_dwell=3)
    incumbents = []
    for _ in range(3):
        _, st = hard_switch(scores_now, np.zeros(2), st, min_dwell=3)
        incumbents.append(st.incumbent)
    # Held 1 and 2 stages: blocked; held 3: switched.
    assert incumbents == [(0,), (0,), (1,)]


def test_hard_switch_top_m_and_floor():
    s = np.array([0.9, 0.1, 0.8, 0.2])
    w, st = hard_switch(s, np.zeros(4), HardSwitchState(), top_m=2, floor=0.2)
    np.testing.assert_allclose(w, [0.8 * 0.5 + 0.05, 0.05, 0.8 * 0.5 + 0.05, 0.05])
    assert st.incumbent == (0, 2)
    # Source 3 rises past member 2 by more than se: only the weakest member is swapped out.
    w, st2 = hard_switch(np.array([0.9, 0.1, 0.8, 1.0]), np.full(4, 0.05), st, top_m=2)
    np.testing.assert_allclose(w, [0.5, 0.0, 0.0, 0.5])
    assert st2.incumbent == (0, 3)
    # Both outsiders far ahead: both members swapped.
    _, st3 = hard_switch(np.array([0.0, 2.0, 0.0, 3.0]), np.zeros(4), st, top_m=2)
    assert st3.incumbent == (1, 3)


def test_hard_switch_nan_incumbent_is_replaced_and_state_checked():
    _, st = hard_switch(np.array([0.5, 0.1]), np.full(2, 0.1), HardSwitchState())
    _, st = hard_switch(np.array([np.nan, 0.1]), np.array([np.nan, 0.1]), st)
    assert st.incumbent == (1,)
    with pytest.raises(ValueError, match="incumbent"):
        hard_switch(np.array([0.5, 0.1]), np.zeros(2), HardSwitchState((0,), 0), top_m=2)
    with pytest.raises(ValueError, match="se shape"):
        hard_switch(np.array([0.5, 0.1]), np.zeros(3), HardSwitchState())


def test_hard_switch_state_dict_round_trip():
    st = HardSwitchState(incumbent=(0, 3), stages_since_switch=4)
    d = st.state_dict()
    assert d == {"incumbent": [0, 3], "stages_since_switch": 4}
    restored = HardSwitchState()
    restored.load_state_dict(d)
    assert restored == st
    empty = HardSwitchState()
    empty.load_state_dict(HardSwitchState().state_dict())
    assert empty == HardSwitchState()


# --- config and one schedule step -------------------------------------------------------------


def test_next_mixture_modes():
    prev = np.array([0.5, 0.5])
    scores, se = np.array([0.1, 0.9]), np.zeros(2)
    cfg = MixturePolicyConfig(ema_beta=0.5)
    assert cfg.mode == "power"
    w, st = next_mixture(cfg, prev, scores, se, HardSwitchState())
    np.testing.assert_allclose(w, 0.5 * prev + 0.5 * power_mixture(scores, se, cfg.temperature, cfg.floor))
    assert st == HardSwitchState()
    w, st = next_mixture(MixturePolicyConfig(mode="hard", floor=0.0), prev, scores, se, HardSwitchState())
    np.testing.assert_array_equal(w, [0.0, 1.0])
    assert st.incumbent == (1,)
    with pytest.raises(ValueError, match="mode"):
        MixturePolicyConfig(mode="greedy")
    with pytest.raises(ValueError, match=r"removed.*power"):
        MixturePolicyConfig(mode="softmax")
