"""DMCCallback in tiny fits: it changes the mixture, logs everything, resumes exactly, fails clearly."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_distill.callbacks.dmc import DMCCallback
from lit_distill.callbacks.selection import ScoringError
from lit_distill.data.sources import SourceConfig
from lit_distill.scoring.dmc import DMCConfig

from helpers import StopAt, fit_in_process, scalars, write_jsonl

NAMES = ("concise", "verbose", "noisy", "hard")


def _dmc(**kw):
    args = dict(every_n_steps=2, probe_size=6, probe_questions=3, batch_size=8, max_new_tokens=8)
    args.update(kw)
    return DMCCallback(**args)


def test_callback_reshapes_mixture_and_logs(pool_dir, tokenizer_dir, tmp_path):
    cb = _dmc()
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb], max_steps=5)
    assert [h["step"] for h in cb.history] == [0, 2, 4]
    # The weights in force are the last update's, they sum to 1, and low-quality 'noisy' lost weight.
    weights = dm.sampler.source_weights
    assert np.allclose(weights, cb.history[-1]["weights"]) and weights.sum() == pytest.approx(1.0)
    assert weights[NAMES.index("noisy")] < 0.25
    # Initial weights, then each update: in force from the next step (0-based index = steps completed).
    assert [s for s, _ in dm.sampler.history] == [0, 0, 2, 4]
    run = tmp_path / "runs" / "t" / "version_0"
    series = scalars(run)
    for n in NAMES:
        for key in (f"dmc/{n}", f"dmc/quality/{n}", f"dmc/difficulty/{n}", f"dmc/capability/{n}", f"mixture/{n}"):
            assert len(series[key]) == 3, key
    assert "dmc/seconds" in series
    assert (run / "mixture.png").stat().st_size > 1000
    q = {n: v for n, v in zip(NAMES, cb.history[0]["quality"], strict=True)}
    assert q["concise"] == 1.0 and 0.2 < q["noisy"] < 0.8


def test_capability_measured_on_its_own_cadence(pool_dir, tokenizer_dir, tmp_path):
    calls = []

    class Spy(DMCCallback):
        def _measure(self, trainer, pl_module):
            before = self.capability_step
            items = super()._measure(trainer, pl_module)
            if self.capability_step != before:
                calls.append(trainer.global_step)
            return items

    spy = Spy(every_n_steps=1, capability_every_n_steps=3, probe_size=4, probe_questions=2, max_new_tokens=4)
    fit_in_process(pool_dir, tokenizer_dir, tmp_path, [spy], max_steps=5)
    assert calls == [0, 3]
    assert [h["step"] for h in spy.history] == [0, 1, 2, 3, 4]


def test_monitor_only_leaves_the_mixture(pool_dir, tokenizer_dir, tmp_path):
    cb = _dmc(apply=False)
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb], max_steps=3)
    assert np.allclose(dm.sampler.source_weights, 0.25) and len(cb.history) == 2


def test_resume_restores_state_and_next_weights_match(pool_dir, tokenizer_dir, tmp_path):
    full = _dmc()
    fit_in_process(pool_dir, tokenizer_dir, tmp_path / "a", [full], max_steps=6)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=3, save_top_k=-1)
    first = _dmc()  # the same run (same schedule), stopped after step 3
    fit_in_process(
        pool_dir, tokenizer_dir, tmp_path / "b", [first, ckpt, StopAt(3)], max_steps=6, enable_checkpointing=True
    )
    resumed = _dmc()
    path = str(tmp_path / "ck" / "epoch=0-step=3.ckpt")
    fit_in_process(pool_dir, tokenizer_dir, tmp_path / "c", [resumed], max_steps=6, ckpt_path=path)
    assert [h["step"] for h in resumed.history] == [0, 2, 4]
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["step"] == b["step"]
        assert np.allclose(a["weights"], b["weights"], rtol=0, atol=1e-12)
        assert np.allclose(a["dmc"], b["dmc"], rtol=1e-6)


def test_source_without_answers(pool_dir, tokenizer_dir, tmp_path):
    rows = [{"prompt": f"Say {i}.", "response": f"{i} {i} {i}"} for i in range(8)]
    chat = write_jsonl(tmp_path / "chat.jsonl", rows)
    data = {
        "sources": [
            SourceConfig(name="concise", path=str(pool_dir / "concise.jsonl")),
            SourceConfig(name="chat", path=str(chat)),
        ]
    }
    with pytest.raises(ValueError, match="'chat' has no reference answers"):
        fit_in_process(pool_dir, tokenizer_dir, tmp_path / "a", [_dmc()], max_steps=1, data=data)
    cb = _dmc(dmc=DMCConfig(variant="C"))
    fit_in_process(pool_dir, tokenizer_dir, tmp_path / "b", [cb], max_steps=2, data=data)
    assert cb.history[0]["quality"] == [1.0, 1.0]  # no answers: the default quality
    assert all(np.isfinite(cb.history[-1]["dmc"]))


def test_scoring_failure_stops_the_run(pool_dir, tokenizer_dir, tmp_path):
    class Broken(DMCCallback):
        def _measure(self, trainer, pl_module):
            if trainer.global_step == 2:
                raise RuntimeError("probe exploded")
            return super()._measure(trainer, pl_module)

    with pytest.raises(ScoringError, match=r"step 2.*probe exploded"):
        fit_in_process(pool_dir, tokenizer_dir, tmp_path, [Broken(every_n_steps=2, probe_size=4, probe_questions=2)])


def test_refreshes_in_a_max_epochs_run(pool_dir, tokenizer_dir, tmp_path):
    # max_steps = -1 here: a due-check on `step < max_steps` never fired, so DMC silently stayed at step 0.
    cb = _dmc(every_n_steps=2, max_new_tokens=4)
    trainer, _, dm = fit_in_process(
        pool_dir, tokenizer_dir, tmp_path, [cb], max_steps=-1, max_epochs=2, data={"steps_per_epoch": 3}
    )
    assert trainer.global_step == 6
    # Every second step across the epoch boundary, but not after the last step (nothing would use it).
    assert [h["step"] for h in cb.history] == [0, 2, 4]
    assert [s for s, _ in dm.sampler.history][-1] == 4


def test_due_only_at_optimiser_step_ends_under_accumulation(pool_dir, tokenizer_dir, tmp_path):
    cb = _dmc(every_n_steps=1, probe_size=2, probe_questions=1, max_new_tokens=2)
    fit_in_process(
        pool_dir, tokenizer_dir, tmp_path, [cb], max_steps=-1, max_epochs=1, accumulate_grad_batches=2,
        data={"steps_per_epoch": 3},
    )  # fmt: skip
    assert [h["step"] for h in cb.history] == [0, 1, 2]  # once per optimiser step, none after the last


def test_probes_are_never_trained_on(pool_dir, tokenizer_dir, tmp_path):
    drawn = []

    class Record(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            drawn.append(batch["index"].cpu().numpy())
            if trainer.global_step == 2:  # a selection re-admitting every row (as LARK's refresh does)
                trainer.datamodule.set_sample_weights(np.arange(len(trainer.datamodule.pool)), 1.0)

    cb = _dmc(every_n_steps=4, probe_size=6, probe_questions=3, max_new_tokens=2)
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb, Record()], max_steps=12)
    held = cb.probe.held_out
    for n in NAMES:  # the scored trajectories and the answered questions are all held out
        assert np.isin(cb.probe.rows[n], held).all() and np.isin(cb.probe.questions[n], held).all()
    assert len(held) == 4 * 9  # 6 trajectories = 2 problems, 3 questions = 3 problems: 3 problems x K=3
    assert not np.isin(np.concatenate(drawn), held).any()
    assert {s.name: s.held_out for s in dm.pool.summary()} == dict.fromkeys(NAMES, 9)


def test_hard_switch_through_the_callback_keeps_incumbent_on_small_gap(pool_dir, tokenizer_dir, tmp_path, monkeypatch):
    """``policy.mode: hard``: the callback carries the switching state between evaluations, so a challenger
    within the se keeps the incumbent and one far ahead takes over; the one-hot weights reach the sampler."""
    from lit_distill.callbacks import dmc as dmc_module
    from lit_distill.scoring.dmc import DMCResult
    from lit_distill.scoring.policies import MixturePolicyConfig

    # DMC per evaluation (steps 0, 2, 4), se 0.1 everywhere: 'concise' leads, then 'verbose' leads by 0.05
    # (inside the se: hold), then by 0.6 (outside: switch).
    script = [[0.9, 0.5, 0.4, 0.3], [0.60, 0.65, 0.4, 0.3], [0.3, 0.9, 0.4, 0.2]]

    def scripted(items, quality, config):
        values = script.pop(0)
        return {n: DMCResult(v, 0.1, 1.0, float("nan"), 1.0, 0.0) for n, v in zip(NAMES, values, strict=True)}

    monkeypatch.setattr(dmc_module, "compute_dmc", scripted)
    policy = MixturePolicyConfig(mode="hard", floor=0.2)
    cb = _dmc(dmc=DMCConfig(variant="C"), policy=policy)
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb], max_steps=5)
    assert not script  # all three evaluations ran
    leader = [int(np.argmax(h["weights"])) for h in cb.history]
    assert leader == [0, 0, 1]
    one_hot = np.full(4, 0.05)
    one_hot[1] = 0.85
    np.testing.assert_allclose(dm.sampler.source_weights, one_hot)
    assert cb.hard_state.incumbent == (1,) and cb.hard_state.stages_since_switch == 0
    # Each decision is in force from the next step: initial, then steps 0, 2 (held: same weights) and 4.
    history = dm.sampler.history
    assert [s for s, _ in history] == [0, 0, 2, 4]
    np.testing.assert_allclose(history[2][1], history[1][1])
