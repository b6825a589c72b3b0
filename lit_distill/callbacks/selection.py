"""SelectionCallback: the one schedule that DMC, LARK and the stream-consistency check share.

A subclass implements ``run(trainer, pl_module, at_start)``; the base decides when it runs and owns what
every periodic selection needs around it:

* **when**: at the start of training (``at_start``; in ``on_train_start``, once a checkpoint is restored)
  and after every ``every_n_steps``-th optimiser step. The step boundary comes from Lightning itself: a
  run is due when ``trainer.global_step`` advanced during the micro-batch (so gradient accumulation,
  max_epochs, max_steps and max_time runs all behave alike, and nothing re-derives the boundary from
  ``accumulate_grad_batches``). A run never follows the last optimiser step (max_steps reached, the last
  batch of the last epoch, ``max_time`` spent, a requested stop), since nothing would train on its result;
* **timing**: seconds per run (``<metric_prefix>/seconds``), the total (``seconds``, checkpointed) and, at
  fit end, this fit's share of its wall time (``share``, and one log line);
* **errors**: any exception in a run becomes a ``ScoringError`` naming the callback and the step, so the
  run stops rather than training on stale weights;
* **rank 0 decides**: ``decide`` returns rank 0's value on every rank (the data streams must never split);
* **state**: ``state_dict`` holds the schedule (last step, runs, seconds) plus the subclass's
  ``selection_state()``; a resumed fit does not repeat the fit-start run.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Timer

from lit_distill.callbacks.reporting import log_metrics
from lit_distill.distributed import broadcast_object
from lit_distill.scorer import ScoringError

log = logging.getLogger(__name__)


__all__ = ["ScoringError", "SelectionCallback", "training_ends_after_this_step"]


def training_ends_after_this_step(trainer: pl.Trainer) -> bool:
    """Whether the optimiser step that just finished is the fit's last (best effort for ``max_time``)."""
    if trainer.should_stop:
        return True
    if trainer.max_steps is not None and trainer.max_steps >= 0 and trainer.global_step >= trainer.max_steps:
        return True
    max_epochs = trainer.max_epochs
    if max_epochs is not None and max_epochs >= 0 and trainer.is_last_batch and trainer.current_epoch + 1 >= max_epochs:
        return True
    # The Timer behind max_time checks after this hook on the same step; ask it the same question now.
    for cb in trainer.callbacks:
        if isinstance(cb, Timer):
            remaining = cb.time_remaining()
            if remaining is not None and remaining <= 0:
                return True
    return False


class SelectionCallback(pl.Callback):
    """Base of the periodic selection callbacks (see the module docstring).

    Args:
        every_n_steps: Optimiser steps between runs; 0 runs only at the start (if ``at_start``).
        at_start: Run once before the first training step (not again when a fit resumes).
    """

    #: Prefix of the logged metrics (``<prefix>/seconds``); None logs nothing.
    metric_prefix: str | None = "selection"
    #: What failed, in a ``ScoringError`` message ("<label> failed at step N: ..."); default the class name.
    label: str | None = None
    #: Run at the start of a resumed fit too (a check of restored state), not only of a fresh one.
    start_on_resume = False

    def __init__(self, every_n_steps: int, at_start: bool = True) -> None:
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps must be >= 0, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.at_start = at_start
        # Schedule state (saved in checkpoints).
        self.last_step = -1
        self.runs = 0
        self.seconds = 0.0
        self.share = float("nan")
        self._fit_started = 0.0
        self._fit_seconds = 0.0  # this fit's share of ``seconds`` (which a resumed fit restores)
        self._step_at_batch_start = -1

    # ---- for subclasses ------------------------------------------------------------------------------
    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, at_start: bool) -> None:
        """One selection run (every rank calls it; collectives are allowed)."""
        raise NotImplementedError

    def prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Called once per fit before any run, with the checkpoint restored (e.g. draw fixed probes)."""

    def selection_state(self) -> dict:
        """The subclass's checkpointed state (merged into ``state_dict``)."""
        return {}

    def load_selection_state(self, state: dict) -> None:
        """Restore what ``selection_state`` returned."""

    @staticmethod
    def decide(trainer: pl.Trainer, value: Any) -> Any:
        """Rank 0's ``value`` on every rank: selection decisions must be identical across ranks."""
        return broadcast_object(value, trainer.strategy)

    # ---- schedule ------------------------------------------------------------------------------------
    def _run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, at_start: bool) -> None:
        step = trainer.global_step
        started = time.perf_counter()
        try:
            self.run(trainer, pl_module, at_start)
        except ScoringError:
            raise
        except Exception as e:
            raise ScoringError(f"{self.label or type(self).__name__} failed at step {step}: {e}") from e
        elapsed = time.perf_counter() - started
        self.seconds += elapsed
        self._fit_seconds += elapsed
        self.runs += 1
        self.last_step = step
        if self.metric_prefix:
            log_metrics(trainer, {f"{self.metric_prefix}/seconds": elapsed})

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_started = time.perf_counter()
        self._fit_seconds = 0.0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not on_fit_start: there a resumed fit has not restored the loops (global_step reads 0) and, under
        # strategies that restore after setup (FSDP), not even this callback's state. Here both are restored
        # and no batch has been drawn yet, so a start-up selection shapes the first step.
        self.prepare(trainer, pl_module)
        if self.at_start and (self.runs == 0 or self.start_on_resume):  # resumed: the state holds the selection
            self._run(trainer, pl_module, at_start=True)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._step_at_batch_start:
            return  # an accumulation micro-batch: no optimiser step happened
        if not self.every_n_steps or step % self.every_n_steps or step == self.last_step:
            return
        # Every rank reaches this point on the same steps; rank 0 decides whether training goes on, since
        # a max_time decision read from each rank's clock could differ and leave one rank in a collective.
        if self.decide(trainer, training_ends_after_this_step(trainer)):
            return
        self._run(trainer, pl_module, at_start=False)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._fit_started or not self._fit_seconds:
            return
        self.share = self._fit_seconds / max(time.perf_counter() - self._fit_started, 1e-9)
        log.info(
            "%s: %.1f s in this fit (%.1f%% of its wall time), %d runs in all",
            type(self).__name__, self._fit_seconds, 100 * self.share, self.runs,
        )  # fmt: skip

    # ---- state ---------------------------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        # One instance per class (Lightning's default key; it refuses a second stateful instance of a class).
        return type(self).__qualname__

    def state_dict(self) -> dict:
        return {"last_step": self.last_step, "runs": self.runs, "seconds": self.seconds, **self.selection_state()}

    def load_state_dict(self, state: dict) -> None:
        self.last_step = int(state["last_step"])
        self.runs = int(state.get("runs", 1))
        self.seconds = float(state["seconds"])
        self.load_selection_state(state)
