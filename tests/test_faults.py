"""Faults stop a run loudly or are handled as configured, never absorbed silently.

* A non-finite loss stops the run naming the optimiser step and the batch's sources (``model.nonfinite_loss:
  error``, the default), or, with ``skip``, drops the batch from the update and counts it in
  ``train/skipped_batches``. The NaN comes from a poisoned batch (its loss weights), through the CLI's own
  parser so the YAML key is what is tested.
* A LARK scoring pass that fails stops the run with ``ScoringError`` naming the step, rather than training on
  with the previous selection (the DMC counterpart is in tests/callbacks/test_dmc_callback.py).
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

from lit_distill.callbacks import lark as lark_module
from lit_distill.callbacks.lark import LARKCallback
from lit_distill.cli import TRAINER_DEFAULTS, _cli_class
from lit_distill.data.datamodule import DistillDataModule
from lit_distill.model.module import DistillModule, NonFiniteLossError
from lit_distill.scorer import ScoringError

from helpers import fit_in_process, scalars, tiny_config, write_config

POISONED = 1  # the batch of optimiser step POISONED + 1 (global_step == POISONED when it starts)


class PoisonBatch(pl.Callback):
    """Sets the loss weights of one batch to NaN and records what the step did to the parameters."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step
        self.sources: list[int] | None = None
        self.before: dict[str, torch.Tensor] | None = None
        self.changed: bool | None = None
        self.consumed_after = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.at_step and self.sources is None:
            self.sources = sorted(set(batch["source"].tolist()))
            batch["loss_weight"].fill_(float("nan"))  # the same dict reaches training_step
            self.before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.before is not None and self.changed is None:
            now = dict(pl_module.named_parameters())
            self.changed = any(not torch.equal(now[n], p) for n, p in self.before.items())


def _fit(pool_dir, tokenizer_dir, tmp_path, policy: str | None, poison: PoisonBatch):
    """``lit-distill fit`` in this process (the CLI class and defaults), with ``poison`` added as a callback."""
    cfg = tiny_config(pool_dir, tokenizer_dir, tmp_path, **{"trainer.max_steps": 4, "trainer.limit_val_batches": 0})
    if policy is not None:
        cfg["model"]["nonfinite_loss"] = policy
    path = write_config(cfg, tmp_path / "fit.yaml")
    return _cli_class()(
        DistillModule,
        DistillDataModule,
        args=["fit", "--config", str(path)],
        trainer_defaults={**TRAINER_DEFAULTS, "callbacks": [poison]},
        save_config_kwargs={"overwrite": True},
    )


def test_nonfinite_loss_stops_the_run_naming_step_and_sources(pool_dir, tokenizer_dir, tmp_path):
    poison = PoisonBatch(POISONED)
    with pytest.raises(NonFiniteLossError) as err:
        _fit(pool_dir, tokenizer_dir, tmp_path, None, poison)  # the default policy
    names = ("concise", "verbose", "noisy", "hard")
    expected = ", ".join(sorted(names[i] for i in poison.sources))
    message = str(err.value)
    assert f"non-finite loss at optimiser step {POISONED} (batch sources: {expected})" in message, message
    assert "nonfinite_loss=skip" in message
    assert poison.changed is None, "the step went on after the non-finite loss"


def test_nonfinite_loss_skip_drops_the_batch_and_counts_it(pool_dir, tokenizer_dir, tmp_path):
    poison = PoisonBatch(POISONED)
    cli = _fit(pool_dir, tokenizer_dir, tmp_path, "skip", poison)
    module, trainer = cli.model, cli.trainer
    assert poison.changed is False, "the skipped batch changed the parameters"
    assert module.skipped_batches == 1
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert trainer.global_step == 4 and trainer.datamodule.consumed == 4  # the skipped batch is not redrawn
    series = scalars(trainer.logger.log_dir)
    # The skipped step logs NaN (not the previous step's loss, which Lightning would repeat) and every step from
    # it on carries the running count.
    losses = dict(series["train/loss"])
    assert sorted(losses) == list(range(trainer.global_step))
    assert np.isnan(losses.pop(POISONED)) and np.isfinite(list(losses.values())).all()
    assert np.isnan(dict(series["train/loss/concise"])[POISONED])
    assert series["train/skipped_batches"] == [(s, 1.0) for s in range(POISONED, trainer.global_step)]


def test_lark_scoring_failure_stops_the_run(pool_dir, tokenizer_dir, tmp_path, monkeypatch):
    real = lark_module.score_rows

    def flaky(module, *args, **kwargs):
        if module.trainer.global_step == 2:
            raise RuntimeError("scorer out of memory")
        return real(module, *args, **kwargs)

    monkeypatch.setattr(lark_module, "score_rows", flaky)
    cb = LARKCallback(budget=1, every_n_steps=2, problems_per_refresh=4, batch_size=8)
    with pytest.raises(ScoringError, match=r"LARK scoring failed at step 2: scorer out of memory"):
        fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb], max_steps=4)
    assert [h["step"] for h in cb.history] == [0], "a refresh was recorded after the failed one"
