"""RunSummary: says where a finished run's logs and checkpoint are and what accuracy it reached."""

from __future__ import annotations

import json
import math
from pathlib import Path

import lightning.pytorch as pl

from lit_distill.callbacks.reporting import run_dir


class RunSummary(pl.Callback):
    """Prints (and writes ``summary.json`` beside the logs) at the end of ``fit``."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        log_dir = run_dir(trainer)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
        ckpt = trainer.checkpoint_callback
        last = getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "")
        summary = {
            "log_dir": log_dir,
            "checkpoint": last or None,
            "global_step": trainer.global_step,
            "metrics": metrics,
        }
        if log_dir:
            Path(log_dir).mkdir(parents=True, exist_ok=True)
            (Path(log_dir) / "summary.json").write_text(json.dumps(summary, indent=2))
        lines = [
            "",
            f"Finished {trainer.global_step} optimiser steps.",
            f"  TensorBoard logs:  {log_dir}   (tensorboard --logdir {log_dir})",
            f"  Final checkpoint:  {last or '(none saved)'}",
        ]
        acc = metrics.get("val/accuracy")
        if acc is not None and not math.isnan(acc):
            per_set = ", ".join(
                f"{k.removeprefix('val/accuracy/')} {v:.1%}"
                for k, v in sorted(metrics.items())
                if k.startswith("val/accuracy/")
            )
            lines.append(f"  Held-out accuracy: {acc:.1%}" + (f"  ({per_set})" if per_set else ""))
        print("\n".join(lines), flush=True)
