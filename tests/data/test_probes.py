"""DMC probes are whole held-out problems: fixed by seed, never drawn, counted in the source summary."""

from __future__ import annotations

import numpy as np
import pytest

from lit_distill.data.datamodule import DistillDataModule, MixtureConfig
from lit_distill.data.sources import SourceConfig

NAMES = ("concise", "verbose", "noisy", "hard")


def _dm(pool_dir, tokenizer_dir):
    dm = DistillDataModule(
        steps_per_epoch=100,
        sources=[SourceConfig(name=n, path=str(pool_dir / f"{n}.jsonl")) for n in NAMES],
        tokenizer=tokenizer_dir,
        micro_batch_size=4,
        max_length=1024,
        mixture=MixtureConfig(policy="balanced"),
        seed=3,
    )
    dm.setup("fit")
    return dm


def test_probe_split_is_whole_problems_fixed_by_seed(pool_dir, tokenizer_dir):
    pool = _dm(pool_dir, tokenizer_dir).pool
    a = pool.probe_split(1, 7, 3, seed=0)
    b = pool.probe_split(1, 7, 3, seed=0)
    for x, y in ((a.trajectories, b.trajectories), (a.questions, b.questions), (a.held_out, b.held_out)):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.held_out, pool.probe_split(1, 7, 3, seed=1).held_out)
    assert len(a.trajectories) == 7 and np.all(pool.source_of[a.held_out] == 1)
    assert len(np.unique(pool.problem_of[a.questions])) == 3 == len(a.questions)
    # Every probe row and question is held out, with all candidates of its problem (K = 3 here).
    assert set(a.trajectories) <= set(a.held_out) and set(a.questions) <= set(a.held_out)
    assert np.array_equal(a.held_out, pool.problem_rows(np.unique(pool.problem_of[a.held_out])))
    assert len(a.held_out) == 9  # 7 trajectories need 3 problems, 3 questions the same 3


def test_hold_out_is_counted_and_cannot_empty_a_source(pool_dir, tokenizer_dir):
    dm = _dm(pool_dir, tokenizer_dir)
    split = dm.pool.probe_split(2, 4, 2, seed=0)
    dm.hold_out(split.held_out)
    held = {s.name: s.held_out for s in dm.pool.summary()}
    assert held == {"concise": 0, "verbose": 0, "noisy": 6, "hard": 0}
    everything = dm.pool.probe_split(0, 1000, 1000, seed=0)
    assert len(everything.held_out) == 36
    with pytest.raises(ValueError, match=r"source 'concise'.*all of its 36 rows"):
        dm.hold_out(everything.held_out)


def test_held_out_rows_are_never_drawn_even_after_sample_weights(pool_dir, tokenizer_dir):
    dm = _dm(pool_dir, tokenizer_dir)
    held = np.concatenate([dm.pool.probe_split(s, 6, 3, seed=0).held_out for s in range(len(NAMES))])
    dm.hold_out(held)
    tickets = iter(dm.train_dataloader())
    drawn = []
    for i in range(40):
        if i == 10:  # a selection (LARK) re-weights every row, probes included: they must stay out
            dm.set_sample_weights(np.arange(len(dm.pool)), 1.0)
        drawn.append(dm.on_before_batch_transfer(next(tickets), 0)["index"].numpy())
    drawn = np.concatenate(drawn)
    assert not np.isin(drawn, held).any()
    # Not vacuous: 160 draws went through (more than) every remaining row; 36 held rows were all avoided.
    assert set(drawn) == set(range(len(dm.pool))) - set(held)
