"""A quiet console for ``lit-distill fit``: warning filters and a progress bar counting optimiser steps.

Everything here is presentation: it changes what is printed, never what is trained.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

from lit_distill.callbacks.reporting import DashboardLayout

# Lightning's advertising of its hosted services ("Tip: ... litlogger", "... litmodels").
_TIP_PREFIX = "💡 Tip:"

# (message regex, why it is safe to hide)
_IGNORED_WARNINGS = (
    # A resume is exact: DistillDataModule.state_dict records the sampler's position and weights, and the
    # DataLoader only yields tickets that the DataModule turns into batches (docs/architecture.md, step 5).
    # Lightning checks the DataLoader object alone, which has nothing to restore.
    r"(?s).*your dataloader is\s+not resumable",
    # Lightning 2.6's own pytree helper on torch >= 2.9 (lightning/pytorch/utilities/_pytree.py); not our call.
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_TIP_PREFIX)


def quiet() -> None:
    """Install the warning and log filters (idempotent); call before the Trainer is built."""
    for pattern in _IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropTips) for f in logger.filters):
            logger.addFilter(_DropTips())


def total_steps(trainer) -> int | None:
    """The optimiser steps this fit ends at (``max_steps``, else Lightning's estimate); None when unbounded."""
    if trainer.max_steps and trainer.max_steps > 0:
        return int(trainer.max_steps)
    try:
        total = trainer.estimated_stepping_batches
    except Exception:  # no dataloader length yet (iterable): an open-ended bar
        return None
    return int(total) if total != float("inf") else None


def _drop_version(items: dict[str, Any]) -> dict[str, Any]:
    # The logger version (v_num) names the run directory, printed once by RunSummary; as a metric it is noise.
    items.pop("v_num", None)
    return items


class StepRichProgressBar(RichProgressBar):
    """Rich progress bar over optimiser steps of the whole fit (``step 120/600``), continuing after a resume.

    Lightning's bar counts micro-batches of an epoch (``Epoch 1/-2`` with ``max_steps``, ``12/4`` after a
    resume); our epochs are a bookkeeping artefact of the sampler, steps are what ``max_steps`` counts.
    """

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{'Training':{len(self.validation_description)}}"

    def _sync_train_bar(self, trainer) -> None:
        if self.progress is None or self.train_progress_bar_id is None:
            return
        self.progress.update(self.train_progress_bar_id, total=total_steps(trainer), completed=trainer.global_step)

    def _initialize_train_progress_bar_id(self) -> None:
        super()._initialize_train_progress_bar_id()
        self._sync_train_bar(self.trainer)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # RichProgressBar's own version, without the per-epoch reset to 0/<batches> (it would show for a frame).
        if self.is_disabled:
            return
        if self.train_progress_bar_id is not None and self._leave:
            self._stop_progress()
            self._init_progress(trainer)
        if self.progress is not None and self.train_progress_bar_id is None:
            description = self._get_train_description(0)
            if self.theme.description:
                description = f"[{self.theme.description}]{description}"
            # Created at the step reached, so no frame shows 0/<max_steps> after a resume.
            self.train_progress_bar_id = self.progress.add_task(
                description, total=total_steps(trainer), completed=trainer.global_step
            )
        self._sync_train_bar(trainer)
        self.refresh()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self.is_disabled and self.train_progress_bar_id is None:
            self._initialize_train_progress_bar_id()
        self._sync_train_bar(trainer)
        self._update_metrics(trainer, pl_module)
        self.refresh()

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        return _drop_version(super().get_metrics(trainer, pl_module))


class StepTQDMProgressBar(TQDMProgressBar):
    """The same over tqdm, when ``rich`` is not installed."""

    def on_train_epoch_start(self, trainer, *_: Any) -> None:
        super().on_train_epoch_start(trainer)
        bar = self.train_progress_bar
        bar.reset(total=total_steps(trainer))
        bar.initial = 0
        bar.n = trainer.global_step
        bar.set_description("Training")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        bar = self.train_progress_bar
        if trainer.global_step != bar.n:
            bar.n = trainer.global_step
            bar.refresh()
        bar.set_postfix(self.get_metrics(trainer, pl_module))

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        return _drop_version(super().get_metrics(trainer, pl_module))


def default_callbacks(trainer_config: dict, callbacks: list) -> list:
    """The TensorBoard layout, and our step progress bar unless the config disables the bar or brings its own."""
    configured = [*(trainer_config.get("callbacks") or []), *callbacks]
    extra: list = [] if any(isinstance(c, DashboardLayout) for c in configured) else [DashboardLayout()]
    if trainer_config.get("enable_progress_bar") is not False and not any(
        isinstance(c, ProgressBar) for c in configured
    ):
        extra.append(StepRichProgressBar() if _RICH_AVAILABLE else StepTQDMProgressBar())
    return extra


class QuietTensorBoardLogger(TensorBoardLogger):
    """TensorBoardLogger without the ``hp_metric`` placeholder and without Lightning's ``epoch`` scalar.

    ``epoch`` counts passes over a pool-sized index, not anything a reader of the curves can act on, and it
    adds a chart to every run. Every other argument is TensorBoardLogger's.
    """

    def __init__(self, *args: Any, default_hp_metric: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, default_hp_metric=default_hp_metric, **kwargs)

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        metrics = {k: v for k, v in metrics.items() if k != "epoch"}
        if metrics:
            super().log_metrics(metrics, step)


def quiet_loggers(trainer):
    """Give configs that name Lightning's own TensorBoardLogger the quiet behaviour; returns ``trainer``."""
    for logger in trainer.loggers:
        if type(logger) is TensorBoardLogger:
            # The subclass adds no state, only two overrides, so the built logger can change class in place
            # (rebuilding it would lose the version directory it may already have resolved).
            logger.__class__ = QuietTensorBoardLogger
            logger._default_hp_metric = False
    return trainer
