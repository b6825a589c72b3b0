"""ODMCallback: EXP3 mixing from the module's per-source step losses, every step, checkpointed."""

from __future__ import annotations

import numpy as np

from lit_distill.callbacks.odm import ODMCallback
from lit_distill.scoring.odm import Exp3State, exp3_update

from helpers import fit_in_process, scalars


def test_odm_updates_the_mixture_every_step_from_the_step_losses(pool_dir, tokenizer_dir, tmp_path):
    seen = []

    class Spy(ODMCallback):
        def run(self, trainer, pl_module, at_start):
            if not at_start:
                seen.append((pl_module.step_source_loss(), trainer.datamodule.sampler.source_weights.copy()))
            super().run(trainer, pl_module, at_start)

    cb = Spy(every_n_steps=1, log_every_n_steps=1)
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb], max_steps=8)
    # One update per step except after the last (nothing would train on it), plus the uniform start.
    assert [s for s, _ in cb.state.history] == list(range(8))
    np.testing.assert_allclose(cb.state.history[0][1], 0.25)
    # Replaying the recorded losses through the pure EXP3 update gives exactly the weights the sampler got.
    replay = Exp3State.start(4)
    for losses, weights in seen:
        assert np.isfinite(losses).any() and np.all(losses[np.isfinite(losses)] > 0)
        expected = exp3_update(replay, losses, weights, cb.smoothing)
    np.testing.assert_allclose(dm.sampler.source_weights, expected)
    # EXP3's floor is the uniform mixture while eps_t = 1/J (t < 6 for J = 4); after that the losses move it.
    assert not np.allclose(dm.sampler.source_weights, 0.25)
    series = scalars(next((tmp_path / "runs").rglob("events.out.tfevents.*")).parent)
    assert {"mixture/concise", "odm/reward/hard"} <= set(series)


def test_odm_state_round_trips():
    cb = ODMCallback()
    cb.state = Exp3State(rewards=np.array([1.0, 2.0]), t=3, history=[(0, [0.5, 0.5])])
    other = ODMCallback()
    other.load_state_dict(cb.state_dict())
    np.testing.assert_array_equal(other.state.rewards, [1.0, 2.0])
    assert other.state.t == 3 and other.state.history == [(0, [0.5, 0.5])]
