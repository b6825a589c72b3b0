"""Faults stop a run loudly or are handled as configured, never absorbed silently.

* A non-finite loss stops the run naming the optimiser step and the batch's sources (``model.nonfinite_loss:
  error``, the default), or, with ``skip``, drops the batch from the update and counts it in
  ``train/skipped_batches``. The NaN comes from a poisoned batch (its loss weights), through the CLI's own
  parser so the YAML key is what is tested.
* Gradients are checked before every optimiser step (``skip`` drops the step's update), parameters after it
  (non-finite ones always stop the run), and a checkpoint holding non-finite tensors is never written over
  the previous one. A run that skips ``model.max_consecutive_skips`` times without an update in between (a
  learning rate of 1e30) stops with an error instead of ending "successfully".
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


def _fit(pool_dir, tokenizer_dir, tmp_path, policy: str | None, poison: pl.Callback, *args: str, **over):
    """``lit-distill fit`` in this process (the CLI class and defaults), with ``poison`` added as a callback."""
    cfg = tiny_config(
        pool_dir, tokenizer_dir, tmp_path, **{"trainer.max_steps": 4, "trainer.limit_val_batches": 0, **over}
    )
    if policy is not None:
        cfg["model"]["nonfinite_loss"] = policy
    path = write_config(cfg, tmp_path / "fit.yaml")
    return _cli_class()(
        DistillModule,
        DistillDataModule,
        args=["fit", "--config", str(path), *args],
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


class PoisonGrad(pl.Callback):
    """Sets one gradient to NaN before the update of optimiser step ``at_step + 1`` (callbacks run before the
    module's ``on_before_optimizer_step``) and records whether that step changed the parameters."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step
        self.before: dict[str, torch.Tensor] | None = None
        self.changed: bool | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.at_step and self.before is None:
            next(p for p in pl_module.parameters() if p.grad is not None).grad.view(-1)[0] = float("nan")
            self.before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.before is not None and self.changed is None:
            now = dict(pl_module.named_parameters())
            self.changed = any(not torch.equal(now[n], p) for n, p in self.before.items())


def test_nonfinite_gradient_skip_drops_the_update(pool_dir, tokenizer_dir, tmp_path):
    poison = PoisonGrad(POISONED)
    cli = _fit(pool_dir, tokenizer_dir, tmp_path, "skip", poison, **{"trainer.gradient_clip_val": 1.0})
    assert poison.changed is False, "the step with a NaN gradient updated the parameters"
    assert cli.model.skipped_batches == 1 and cli.trainer.global_step == 4
    assert all(torch.isfinite(p).all() for p in cli.model.parameters())


def test_nonfinite_gradient_stops_the_run_by_default(pool_dir, tokenizer_dir, tmp_path):
    with pytest.raises(NonFiniteLossError, match=f"non-finite gradient at optimiser step {POISONED}"):
        _fit(pool_dir, tokenizer_dir, tmp_path, None, PoisonGrad(POISONED))


def test_unrecoverable_skipping_stops_with_an_error(pool_dir, tokenizer_dir, tmp_path):
    """lr 1e30: the first update blows the weights up, every later step is skipped; the run must not end as if
    it had trained (before, it did, exit 0)."""
    with pytest.raises(
        NonFiniteLossError, match=r"3 skips without an update in between \(model.max_consecutive_skips=3\)"
    ):
        _fit(
            pool_dir,
            tokenizer_dir,
            tmp_path,
            "skip",
            pl.Callback(),
            "--model.optimizer.lr",
            "1e30",
            "--model.max_consecutive_skips",
            "3",
            **{"trainer.max_steps": 12},
        )


class PoisonParam(pl.Callback):
    """Sets one parameter to ``value`` at optimiser step ``at_step``: ``where`` = ``update`` (before the update,
    so the step's result is non-finite) or ``save`` (after the update, just before ModelCheckpoint's save)."""

    def __init__(self, at_step: int, where: str, value: float = float("inf")) -> None:
        self.at_step, self.where, self.value = at_step, where, value

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.where == "update" and trainer.global_step == self.at_step:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = self.value

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.where == "save" and trainer.global_step == self.at_step:
            with torch.no_grad():
                next(pl_module.parameters()).view(-1)[0] = self.value


def test_nonfinite_parameters_stop_the_run_even_when_skipping(pool_dir, tokenizer_dir, tmp_path):
    with pytest.raises(
        NonFiniteLossError, match=f"1 parameter tensors became non-finite after optimiser step {POISONED + 1} "
    ):
        _fit(pool_dir, tokenizer_dir, tmp_path, "skip", PoisonParam(POISONED, "update"))


def test_a_nonfinite_checkpoint_never_replaces_a_finite_one(pool_dir, tokenizer_dir, tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    over = {"checkpoint.dirpath": str(ckpt_dir), "checkpoint.every_n_train_steps": 1}
    with pytest.raises(NonFiniteLossError, match="refusing to write a checkpoint at optimiser step 2: 1 of"):
        _fit(pool_dir, tokenizer_dir, tmp_path, "skip", PoisonParam(2, "save", float("nan")), **over)
    state = torch.load(ckpt_dir / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 1
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())
