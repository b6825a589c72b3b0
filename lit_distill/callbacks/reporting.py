"""Reporting for callbacks: metrics on Lightning's step axis, and figures for TensorBoard and the run dir."""

from __future__ import annotations

from collections.abc import Sequence

import lightning.pytorch as pl
import numpy as np


def mixture_figure(steps: Sequence[int], weights: np.ndarray, names: Sequence[str], end_step: int, title: str):
    """Stacked area of the source weights in force over optimiser steps (a step function per update)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [*steps, max(end_step, steps[-1] + 1)]
    weights = np.vstack([weights, weights[-1:]])
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.stackplot(steps, weights.T, labels=names, step="post", alpha=0.85)
    ax.set_xlim(steps[0], steps[-1])
    ax.set_ylim(0, 1)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("source weight")
    ax.set_title(title)
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    fig.tight_layout()
    return fig


def run_dir(trainer) -> str | None:
    """The run's log directory without a collective (``trainer.log_dir`` broadcasts, so calling it from
    rank 0 alone deadlocks a multi-process run)."""
    for logger in trainer.loggers:
        path = getattr(logger, "log_dir", None)
        if path:
            return str(path)
    return trainer.default_root_dir


def logger_step(trainer) -> int:
    """The x-axis value Lightning itself uses for metrics logged now (steps already taken before this one),
    so callback metrics line up with ``train/*`` and ``val/*``."""
    # No public API: this is the counter LightningModule.log itself writes with; global_step can differ from
    # it (see DistillModule.on_train_batch_start).
    return int(getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step))


def log_metrics(trainer, metrics: dict[str, float]) -> None:
    """Write metrics to every logger from rank 0 (also outside hooks where ``self.log`` is not allowed)."""
    if not trainer.is_global_zero:
        return
    step = logger_step(trainer)
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=step)


def add_figure(trainer, tag: str, fig, filename: str | None = None) -> None:
    """Write a matplotlib figure to TensorBoard (and as a PNG in the run directory), from rank 0."""
    from pathlib import Path

    if not trainer.is_global_zero:
        return
    directory = run_dir(trainer)
    if filename and directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(directory) / filename)
    for logger in trainer.loggers:
        writer = getattr(logger, "experiment", None)
        if hasattr(writer, "add_figure"):
            writer.add_figure(tag, fig, global_step=logger_step(trainer), close=False)
    import matplotlib.pyplot as plt

    plt.close(fig)  # one figure per DMC update: open figures would pile up (and matplotlib warns at 20)


def dashboard_layout() -> dict:
    """TensorBoard custom-scalar layout: the per-source curves overlaid in one chart each.

    ``{category: {chart title: ["Multiline", [tag regexes]]}}``, as ``SummaryWriter.add_custom_scalars`` takes.
    """
    # Regexes over tag names, so one layout fits any set of sources.
    return {
        "training": {
            "loss per source": ["Multiline", [r"^train/loss/"]],
            "loss": ["Multiline", [r"^train/loss$"]],
        },
        "mixture": {
            "source weights": ["Multiline", [r"^mixture/[^/]+$"]],
            "DMC value per source": ["Multiline", [r"^dmc/(?!seconds$)[^/]+$"]],
            "capability per source": ["Multiline", [r"^dmc/capability/"]],
            "difficulty per source": ["Multiline", [r"^dmc/difficulty/"]],
        },
        "selection": {
            "LARK: loss of selected vs unselected": ["Multiline", [r"^lark/loss_(un)?selected$"]],
            "LARK: selected share per source": ["Multiline", [r"^lark/selected_share/"]],
            "seconds per selection run": ["Multiline", [r"^[a-z]+/seconds$"]],
        },
        "validation": {
            "accuracy per held-out set": ["Multiline", [r"^val/accuracy"]],
        },
    }


class DashboardLayout(pl.Callback):
    """Writes :func:`dashboard_layout` to TensorBoard once per fit, at fit start, from rank 0."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            writer = getattr(logger, "experiment", None)
            if hasattr(writer, "add_custom_scalars"):
                writer.add_custom_scalars(dashboard_layout())
