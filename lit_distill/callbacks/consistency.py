"""StreamConsistency: checks that every rank holds the same data-stream state (mixture, example weights).

Ranks never exchange the data stream; they agree because they apply identical updates. This callback makes
that an enforced invariant: every ``every_n_steps`` optimiser steps each rank hashes its sampler state
(step, source weights, sampling and loss weights) and the hashes are all-gathered; a mismatch stops the
run naming the step. Rank 0 appends the hashes to ``stream_hashes.jsonl`` in the run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import lightning.pytorch as pl
import torch

from lit_distill.callbacks.reporting import run_dir
from lit_distill.callbacks.selection import SelectionCallback
from lit_distill.selection_data import selection_data


class StreamConsistency(SelectionCallback):
    """All-gathers a hash of each rank's data-stream state and fails on any difference.

    Checks at the start of every fit (a resumed one included: the restored state is checked) and after every
    ``every_n_steps``-th optimiser step, on ``SelectionCallback``'s schedule.

    Args:
        every_n_steps: Optimiser steps between checks (hashing is O(pool size)).
        record: Append every check's hashes to ``stream_hashes.jsonl`` in the run directory.
    """

    metric_prefix = None  # a check per step would flood the loggers
    start_on_resume = True

    def __init__(self, every_n_steps: int = 50, record: bool = True) -> None:
        super().__init__(every_n_steps=every_n_steps, at_start=True)
        self.record = record

    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, at_start: bool) -> None:
        step, where = trainer.global_step, "fit_start" if at_start else "step"
        data = selection_data(trainer.datamodule, "StreamConsistency")
        digest = torch.frombuffer(bytearray(data.stream_digest()), dtype=torch.uint8)
        gathered = trainer.strategy.all_gather(digest.to(trainer.strategy.root_device))
        gathered = gathered.reshape(-1, digest.numel()).cpu()
        hashes = [bytes(row.tolist()).hex() for row in gathered]
        if trainer.is_global_zero and self.record:
            directory = run_dir(trainer)
            if directory:
                Path(directory).mkdir(parents=True, exist_ok=True)
                with open(Path(directory) / "stream_hashes.jsonl", "a") as fh:
                    fh.write(json.dumps({"step": step, "where": where, "hashes": hashes}) + "\n")
        if len(set(hashes)) != 1:
            raise RuntimeError(
                f"ranks disagree on the data stream at step {step} ({where}): "
                f"state hashes {hashes}; the mixture or example weights diverged"
            )
