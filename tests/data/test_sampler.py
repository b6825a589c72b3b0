"""MixtureSampler and SumTree: determinism, exact weight semantics, rank slicing and resumability."""

from __future__ import annotations

import numpy as np
import pytest

from lit_distill.data.sampler import MixtureSampler
from lit_distill.data.sumtree import SumTree


def test_sumtree_find_and_update():
    tree = SumTree(np.array([1.0, 0.0, 2.0, 3.0, 0.5]))
    assert tree.total == pytest.approx(6.5)
    assert tree.find(np.array([0.0, 0.99, 1.0, 2.99, 3.0, 5.99, 6.0])).tolist() == [0, 0, 2, 2, 3, 3, 4]
    tree.update(np.array([3, 0]), np.array([0.0, 4.0]))
    assert tree.total == pytest.approx(6.5) and tree.find(np.array([4.5])).tolist() == [2]


def test_sumtree_without_replacement_exhausts_exactly():
    rng = np.random.default_rng(0)
    tree = SumTree(np.array([1.0, 0.0, 5.0, 1e-9, 2.0]))
    got = tree.sample_without_replacement(10, rng)
    assert sorted(got.tolist()) == [0, 2, 3, 4]  # zero-weight leaf never drawn, each other leaf once
    assert tree.total == 0.0


def test_sumtree_draw_frequencies_follow_weights():
    rng = np.random.default_rng(1)
    w = np.array([1.0, 2.0, 3.0, 4.0])
    first = np.bincount([SumTree(w).sample_without_replacement(1, rng)[0] for _ in range(20000)], minlength=4)
    assert np.allclose(first / first.sum(), w / w.sum(), atol=0.015)


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


def test_example_weights_zero_never_drawn_and_proportional():
    s = _sampler(source_sizes=[4], source_weights=[1.0], global_batch_size=1)
    s.set_example_weights(np.array([1, 3]), 0.0)
    drawn = [int(s.draw().indices[0]) for _ in range(40)]
    assert set(drawn) == {0, 2}
    s2 = _sampler(source_sizes=[3], source_weights=[1.0], global_batch_size=1, seed=3)
    s2.set_example_weights(np.array([0, 1, 2]), np.array([8.0, 1.0, 1.0]))
    firsts = []
    for _ in range(3000):  # the first draw of each pass follows the weights
        plan = s2.draw()
        if s2.drawn[0].sum() == 1:
            firsts.append(int(plan.indices[0]))
    freq = np.bincount(firsts, minlength=3) / len(firsts)
    assert np.allclose(freq, [0.8, 0.1, 0.1], atol=0.05)


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
