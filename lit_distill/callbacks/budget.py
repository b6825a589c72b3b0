"""TokenBudget: stop a fit after a number of trained tokens, so that arms are compared at equal compute.

Arms that mix sources differently draw different numbers of tokens per optimiser step (a verbose source makes
longer sequences), so a budget in steps favours the mixture with the longest sequences. This callback counts
the supervised (response) tokens of every global batch and stops the fit at the first optimiser step at which
the count reaches ``max_tokens``; Lightning then runs the final validation (a stop through
``trainer.should_stop`` validates) and the checkpoint callbacks as at any other end of fit.

The count uses ``batch["global_tokens"]``, the response tokens of the whole global batch, which every rank
computes from the same sampler plan: ranks agree on the stopping step without communicating.
"""

from __future__ import annotations

import lightning.pytorch as pl

from lit_distill.callbacks.reporting import log_metrics


class TokenBudget(pl.Callback):
    """Stops training once ``max_tokens`` response tokens have been trained on (all ranks together).

    Args:
        max_tokens: Supervised (response) tokens of the whole run, summed over global batches. The fit stops at
            the end of the first optimiser step that reaches it. Keep ``trainer.max_steps`` as a cap above the
            expected step count: it also sets the learning-rate schedule's horizon.
        log_every_n_steps: Steps between ``train/tokens`` scalars (the x-axis of accuracy-vs-tokens curves);
            the final count is always logged.
    """

    def __init__(self, max_tokens: int, log_every_n_steps: int = 10) -> None:
        if max_tokens < 1:
            raise ValueError(f"budget.max_tokens must be >= 1, got {max_tokens}")
        if log_every_n_steps < 1:
            raise ValueError(f"budget.log_every_n_steps must be >= 1, got {log_every_n_steps}")
        self.max_tokens = max_tokens
        self.log_every_n_steps = log_every_n_steps
        self.tokens = 0  # trained tokens so far (state, saved in checkpoints)
        self._counted_step = -1
        self._pending = 0

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        # Every micro-batch of a step carries the same global count; remember it until the step completes.
        self._pending = int(batch["global_tokens"])
        if self._counted_step < 0:
            self._counted_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step == self._counted_step:
            return  # an accumulation micro-batch: the optimiser has not stepped yet
        self._counted_step = step
        self.tokens += self._pending
        done = self.tokens >= self.max_tokens
        if done:
            trainer.should_stop = True
        if done or step % self.log_every_n_steps == 0:
            log_metrics(trainer, {"train/tokens": float(self.tokens)})

    def state_dict(self) -> dict:
        return {"tokens": self.tokens, "max_tokens": self.max_tokens}

    def load_state_dict(self, state: dict) -> None:
        self.tokens = int(state["tokens"])
