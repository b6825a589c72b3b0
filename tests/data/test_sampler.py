"""MixtureSampler and its systematic passes: determinism, weight semantics, rank slicing and resumability."""

from __future__ import annotations

import numpy as np
import pytest

from lit_distill.data.sampler import MixtureSampler
from lit_distill.data.systematic import systematic_counts, systematic_pass


def test_systematic_counts_follow_weights_up_to_rounding():
    rng = np.random.default_rng(0)
    for _ in range(50):
        w = rng.exponential(size=rng.integers(1, 300)) * (rng.random() < 0.5 or 1e-9)
        w[rng.random(len(w)) < 0.3] = 0.0
        if w.sum() == 0:
            w[0] = 1.0
        m = int(rng.integers(1, 1000))
        counts = systematic_counts(w, m, float(rng.random()))
        assert counts.sum() == m and np.all(counts >= 0)
        assert np.all(np.abs(counts - m * w / w.sum()) < 1.0)  # floor or ceil of the exact share
        assert np.all(counts[w == 0] == 0)


def test_a_pass_spreads_the_copies_of_a_heavy_example():
    n = 2000
    w = np.ones(n)
    w[0] = 500.0  # ~20% of the mass: ~400 of the 2000 draws
    order = systematic_pass(w, n, np.random.default_rng(3))
    pos = np.flatnonzero(order == 0)
    gaps = np.diff(pos)
    assert len(pos) == pytest.approx(n * 500 / 2499, abs=1)
    # Evenly spaced (mean gap ~5): a random order would put ~80 copies next to each other.
    assert np.count_nonzero(gaps == 1) <= 10 and gaps.max() <= 4 * n / len(pos)
    others = np.bincount(order, minlength=n)[1:]
    assert set(others.tolist()) == {0, 1} and others.sum() == n - len(pos)  # 0.8 expected draws each


def _sampler(**kw):
    args = dict(source_sizes=[50, 30, 20], global_batch_size=12, seed=7, source_weights=[0.5, 0.3, 0.2])
    args.update(kw)
    return MixtureSampler(**args)


def test_same_seed_same_stream_different_seed_different():
    a, b, c = _sampler(), _sampler(), _sampler(seed=8)
    for _ in range(20):
        pa, pb, pc = a.draw(), b.draw(), c.draw()
        assert np.array_equal(pa.indices, pb.indices)
    assert not np.array_equal(pa.indices, pc.indices)


def test_ranks_take_disjoint_slices_of_one_global_batch():
    s = _sampler(global_batch_size=2 * 3 * 4)  # micro 2, world 3, accumulation 4
    plan = s.draw()
    slices = [plan.micro_batch(m, r, 3, 2) for m in range(4) for r in range(3)]
    assert all(len(x) == 2 for x in slices)
    assert sorted(np.concatenate(slices).tolist()) == sorted(plan.indices.tolist())


def test_without_replacement_within_a_source_pass():
    s = _sampler(source_sizes=[10], source_weights=[1.0], global_batch_size=5)
    first_pass = np.concatenate([s.draw().indices, s.draw().indices])
    assert sorted(first_pass.tolist()) == list(range(10))  # every example once before any repeats
    assert s.passes.tolist() == [0]
    s.draw()
    assert s.passes.tolist() == [1]


def test_source_weights_shape_the_mixture_and_take_effect_next_draw():
    s = _sampler(global_batch_size=400, source_sizes=[1000, 1000, 1000])
    plan = s.draw()
    share = np.bincount(plan.indices // 1000, minlength=3) / 400
    assert np.allclose(share, [0.5, 0.3, 0.2], atol=0.08)
    s.set_source_weights([0.0, 0.0, 1.0])
    assert np.all(s.draw().indices // 1000 == 2)
    assert s.history[-1] == (1, [0.0, 0.0, 1.0])  # in force from step 1, the next draw


def test_example_weights_zero_never_drawn():
    s = _sampler(source_sizes=[4], source_weights=[1.0], global_batch_size=1)
    s.set_example_weights(np.array([1, 3]), 0.0)
    drawn = [int(s.draw().indices[0]) for _ in range(40)]
    assert set(drawn) == {0, 2}


def test_draw_counts_over_a_pass_follow_the_example_weights():
    """Weights 0.9 / 1e-7 / 0.1 per problem: draws 9:0:1 (the old without-replacement passes gave 1:1:1)."""
    s = _sampler(source_sizes=[3000], source_weights=[1.0], global_batch_size=30)
    w = np.tile([0.9, 1e-7, 0.1], 1000)
    s.set_example_weights(np.arange(3000), w)
    counts = np.zeros(3000)
    for _ in range(100):  # exactly one pass: M = 3000 positive-weight examples
        np.add.at(counts, s.draw().indices, 1)
    assert s.passes.tolist() == [0] and s.position.tolist() == [3000]
    assert np.all(np.abs(counts - 3000 * w / w.sum()) < 1.0)
    per_kind = counts.reshape(-1, 3).sum(0)
    assert abs(per_kind[0] - 2700) <= 30 and per_kind[1] <= 1 and abs(per_kind[2] - 300) <= 30
    s.set_example_weights(np.arange(1, 3000, 3), 0.0)  # weight 0 is never drawn, over many passes
    drawn = np.concatenate([s.draw().indices for _ in range(300)])
    assert not np.any(drawn % 3 == 1)


def test_a_weight_change_starts_a_new_pass_and_an_unchanged_one_does_not():
    s = _sampler(source_sizes=[20, 20], source_weights=[0.5, 0.5], global_batch_size=8)
    s.draw()
    passes = s.passes.copy()
    s.set_example_weights(np.array([0, 1]), 1.0)  # already 1.0: the pass goes on
    assert np.array_equal(s.passes, passes) and s.position[0] > 0
    s.set_example_weights(np.array([0, 1]), 2.0)
    assert s.passes[0] == passes[0] + 1 and s.position[0] == 0 and s.passes[1] == passes[1]


def test_systematic_source_draw_gives_counts_within_one_of_the_weights():
    s = _sampler(source_sizes=[100, 100, 100], global_batch_size=10, source_draw="systematic")
    m = _sampler(source_sizes=[100, 100, 100], global_batch_size=10)
    spread = []
    for _ in range(50):
        sys_counts = np.bincount(s.draw().indices // 100, minlength=3)
        assert np.all(np.abs(sys_counts - 10 * np.array([0.5, 0.3, 0.2])) < 1.0)
        spread.append(np.abs(np.bincount(m.draw().indices // 100, minlength=3) - [5, 3, 2]).max())
    assert max(spread) >= 2  # the multinomial draw does vary more: the test tells the two apart


def test_state_dict_resumes_the_exact_stream():
    a = _sampler()
    for _ in range(7):
        a.draw()
    a.set_example_weights(np.array([3, 60, 99]), np.array([0.0, 5.0, 2.0]))
    a.set_source_weights([0.2, 0.2, 0.6])
    state = a.state_dict()
    expected = [a.draw().indices for _ in range(10)]
    b = _sampler(seed=123)
    b.load_state_dict(state)
    assert all(np.array_equal(x, b.draw().indices) for x in expected)


def test_resume_mid_pass_with_uneven_weights_and_a_small_state():
    a = _sampler(source_draw="systematic")
    a.set_example_weights(np.arange(100), np.random.default_rng(1).exponential(size=100))
    for _ in range(3):
        a.draw()
    assert np.all((a.position > 0) & (a.position < a._positive))  # every source is mid-pass
    state = a.state_dict()
    assert set(state) == {"seed", "step", "source_weights", "example_weights", "passes", "position", "history", "sizes"}
    expected = [a.draw().indices for _ in range(25)]  # crosses pass boundaries
    b = _sampler(seed=5, source_draw="systematic")  # the seed comes from the state
    b.load_state_dict(state)
    assert all(np.array_equal(x, b.draw().indices) for x in expected)


def test_load_rejects_a_different_pool():
    with pytest.raises(ValueError, match="source sizes"):
        _sampler(source_sizes=[50, 30, 21]).load_state_dict(_sampler().state_dict())


def test_group_by_length_keeps_the_step_and_sorts_micro_batches():
    lengths = np.random.default_rng(0).integers(10, 500, size=100)
    plain = _sampler(global_batch_size=16)
    grouped = _sampler(global_batch_size=16, lengths=lengths, group_by_length=True, micro_batch_size=4)
    p, g = plain.draw(), grouped.draw()
    assert sorted(p.indices.tolist()) == sorted(g.indices.tolist())
    spans = [np.ptp(lengths[g.indices[i : i + 4]]) for i in range(0, 16, 4)]
    assert sum(spans) <= np.ptp(lengths[g.indices]) + 1  # micro-batches cover disjoint length ranges


def test_bad_weights_rejected():
    with pytest.raises(ValueError):
        _sampler(source_weights=[0, 0, 0])
    s = _sampler()
    with pytest.raises(ValueError):
        s.set_source_weights([1.0, -1.0, 1.0])
    s.set_example_weights(np.arange(30) + 50, 0.0)
    s.set_source_weights([0, 1, 0])
    with pytest.raises(RuntimeError, match="every selectable example was given weight 0"):
        s.draw()


def test_a_source_with_nothing_to_draw_is_skipped():
    s = _sampler(global_batch_size=30)
    s.set_example_weights(np.arange(30) + 50, 0.0)  # source 1 has no drawable example left
    assert np.allclose(s.effective_source_weights(), [0.5 / 0.7, 0.0, 0.2 / 0.7])
    drawn = s.draw().indices
    assert not np.any((drawn >= 50) & (drawn < 80))


def test_drawable_tracks_updates_without_scanning_the_pool():
    """The per-source positive counts behind drawable() agree with a full scan after any sequence of updates."""
    rng = np.random.default_rng(0)
    s = _sampler(global_batch_size=8)
    n = int(s.offsets[-1])

    def scan() -> np.ndarray:
        return np.array([w.sum() > 0 for w in s.example_weights])

    for _ in range(200):
        idx = rng.integers(0, n, size=rng.integers(1, 40))  # repeated indices included
        w = rng.choice([0.0, 0.0, 0.5, 2.0], size=len(idx))
        s.set_example_weights(idx, w)
        assert np.array_equal(s._positive, [np.count_nonzero(x > 0) for x in s.example_weights])
        assert np.array_equal(s.drawable(), scan())
    s.set_example_weights(np.arange(int(s.offsets[1]), int(s.offsets[2])), 0.0)
    assert not s.drawable()[1]
    restored = _sampler(global_batch_size=8)
    restored.load_state_dict(s.state_dict())
    assert np.array_equal(restored.drawable(), scan()) and np.array_equal(restored._positive, s._positive)
