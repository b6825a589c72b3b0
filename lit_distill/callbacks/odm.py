"""ODMCallback: an online bandit mixer (ODM, Albalak et al. 2023) as a baseline for DMC.

After every ``every_n_steps``-th optimiser step it takes the per-source training loss of that step from the
module (``DistillModule.step_source_loss()``, reduced over ranks and micro-batches), folds it into
EXP3's reward estimates (``scoring/odm.py``) and sets the next mixture. No probes, no generation: the cost is
one small all-reduce per step, which is why ODM is the cheap adaptive baseline a DMC result must beat.
"""

from __future__ import annotations

import logging

import lightning.pytorch as pl
import numpy as np

from lit_distill.callbacks.reporting import log_metrics
from lit_distill.callbacks.selection import SelectionCallback
from lit_distill.scoring.odm import Exp3State, exp3_update, exp3_weights
from lit_distill.selection_data import selection_data

log = logging.getLogger(__name__)


class ODMCallback(SelectionCallback):
    """EXP3 over sources with the training loss as reward (select with the ``odm:`` key).

    Args:
        every_n_steps: Optimiser steps between mixture updates (ODM updates after every step: 1).
        smoothing: alpha, weight of the previous reward estimate in its moving average (ODM: 0.9).
        log_every_n_steps: Steps between ``odm/*`` and ``mixture/*`` scalars.
    """

    metric_prefix = None  # runs every step: per-run timing scalars would flood the logs
    label = "ODM mixing"

    def __init__(self, every_n_steps: int = 1, smoothing: float = 0.9, log_every_n_steps: int = 10) -> None:
        if every_n_steps < 1:
            raise ValueError(f"odm.every_n_steps must be >= 1, got {every_n_steps}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"odm.smoothing must lie in [0, 1), got {smoothing}")
        super().__init__(every_n_steps, at_start=True)
        self.smoothing = smoothing
        self.log_every_n_steps = max(1, log_every_n_steps)
        self.state: Exp3State | None = None

    def prepare(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.state is None:
            self.state = Exp3State.start(len(selection_data(trainer.datamodule, self.label).source_names))

    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, at_start: bool) -> None:
        dm = selection_data(trainer.datamodule, self.label)
        if at_start:
            weights = exp3_weights(self.state.rewards, 1)  # uniform: no reward seen yet
        else:
            losses = pl_module.step_source_loss()
            if losses is None:
                return  # every micro-batch of the step was skipped (non-finite): no reward to learn from
            previous = dm.current_source_weights()
            weights = exp3_update(self.state, np.asarray(losses, dtype=np.float64), previous, self.smoothing)
        weights = self.decide(trainer, weights)
        dm.set_source_weights(weights)
        step = trainer.global_step
        self.state.history.append((step, [float(w) for w in weights]))
        if at_start or step % self.log_every_n_steps == 0:
            metrics = {f"mixture/{n}": float(w) for n, w in zip(dm.source_names, weights, strict=True)}
            metrics.update(
                {f"odm/reward/{n}": float(r) for n, r in zip(dm.source_names, self.state.rewards, strict=True)}
            )
            log_metrics(trainer, metrics)

    def selection_state(self) -> dict:
        return {"exp3": self.state.state_dict() if self.state else None}

    def load_selection_state(self, state: dict) -> None:
        if state.get("exp3") is not None:
            self.state = Exp3State.start(len(state["exp3"]["rewards"]))
            self.state.load_state_dict(state["exp3"])
