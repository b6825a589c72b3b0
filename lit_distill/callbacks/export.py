"""HFExport: writes the trained student as a Hugging Face ``save_pretrained`` directory when ``fit`` ends.

The directory (``<run dir>/hf`` by default) is what ``lit-distill export`` would write from the final
checkpoint: the model (LoRA merged by default) or adapter, the tokenizer with its chat template, and
``lit_distill_export.json``. Works single-device, under DDP and under FSDP2 (where every rank takes part
in gathering the full state dict and rank 0 writes).
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl

from lit_distill.callbacks.reporting import run_dir
from lit_distill.distributed import full_state_dict
from lit_distill.export import write_student
from lit_distill.restore import module_from_hparams

log = logging.getLogger(__name__)


class HFExport(pl.Callback):
    """Save the student with ``save_pretrained`` at the end of training.

    Args:
        dirname: Output directory, relative to the run's log directory (or absolute).
        merge_lora: For a LoRA student, write the merged plain model (False: the adapter plus its base reference).
        dtype: Cast the weights before writing (``float32``, ``bfloat16``, ``float16``); None keeps them.
    """

    def __init__(self, dirname: str = "hf", merge_lora: bool = True, dtype: str | None = None) -> None:
        self.dirname = dirname
        self.merge_lora = merge_lora
        self.dtype = dtype
        self.output: Path | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A collective under FSDP2: every rank gathers, only rank 0 keeps the (CPU) result.
        weights = full_state_dict(pl_module.student, trainer.strategy, trainer.is_global_zero)
        error: Exception | None = None
        if trainer.is_global_zero:
            try:
                self.output = self._write(trainer, pl_module, weights)
            except Exception as err:
                error = err
        # Every rank learns rank 0's outcome, so a failed export stops all ranks together instead of leaving
        # the others waiting in the next collective.
        message = trainer.strategy.broadcast(None if error is None else f"{type(error).__name__}: {error}", src=0)
        if error is not None:
            raise error
        if message is not None:
            raise RuntimeError(f"HFExport failed on rank 0: {message}")

    def _write(self, trainer: pl.Trainer, pl_module: pl.LightningModule, weights) -> Path:
        directory = Path(self.dirname)
        if not directory.is_absolute():
            directory = Path(run_dir(trainer) or ".") / directory
        # A fresh, unsharded copy of the student on the CPU, built as for training (configure_model without a
        # trainer): the trained module may be sharded and is left untouched (merging LoRA is done in place).
        fresh = module_from_hparams(pl_module.hparams, cls=type(pl_module))
        fresh.configure_model()
        fresh.student.load_state_dict(weights, strict=True)
        info = {"source": "HFExport callback (end of fit)", "global_step": trainer.global_step}
        out = write_student(
            fresh.student,
            fresh.tokenizer,
            fresh.student_config,
            directory,
            merge_lora=self.merge_lora,
            dtype=self.dtype,
            info=info,
            overwrite=True,
        )
        log.info("Hugging Face export of the student: %s", out)
        return out
