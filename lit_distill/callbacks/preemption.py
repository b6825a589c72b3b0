"""Preemption: on SIGTERM (or SLURM's requeue signal) finish the optimiser step, write ``last.ckpt``, exit 143.

Schedulers preempt with SIGTERM and kill a little later. Lightning's own handler only sets
``trainer.received_sigterm``; its loops then raise ``SIGTERMException`` after the current *micro*-batch (in the
middle of a gradient-accumulation step), nothing is saved, and the exception is a ``SystemExit`` without a
code, so the process exits 0 and the scheduler sees success. ``Preemption`` replaces that:

* the signal handler only records the signal (and forwards SIGTERM to the rank processes Lightning launched);
* at the next optimiser-step boundary every rank agrees (one all-reduce of a flag) that a signal arrived, the
  step's callbacks have run (Lightning orders ``Checkpoint`` callbacks last), and ``last.ckpt`` is written
  through the trainer's checkpoint IO (atomic with ``AtomicCheckpointIO``): the same state a periodic
  ``ModelCheckpoint`` save of that step holds, so ``--ckpt_path last`` continues exactly;
* under SLURM with ``SLURMEnvironment(auto_requeue=True)`` (Lightning's default there), its requeue signal
  (``SIGUSR1`` unless configured) is handled the same way and rank 0 then runs ``scontrol requeue``. Lightning's
  own requeue handler would save ``hpc_ckpt_N.ckpt`` from inside the signal handler, mid-step;
* the run then stops with ``SystemExit(PREEMPTED_EXIT_CODE)``: status 143 (128 + SIGTERM).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what a shell reports for a process ended by SIGTERM


class Preemption(Checkpoint):
    """Save ``last.ckpt`` at the end of the current optimiser step on SIGTERM (and SLURM's requeue signal).

    Args:
        requeue: Under SLURM with auto-requeue, also handle the requeue signal (``#SBATCH --signal=SIGUSR1@90``):
            save, ``scontrol requeue`` the job and exit. The requeued job re-runs the same command line, so give
            it ``--ckpt_path last``.
    """

    def __init__(self, requeue: bool = True) -> None:
        self.requeue = requeue
        self._received: set[int] = set()
        self._requeue_signal: int | None = None
        self._launcher = None

    # ---- signals ---------------------------------------------------------------------------------------
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning registered its handlers just before the stage started; replace them (its teardown restores
        # the handlers that were there before it). Signal handlers can only be set from the main thread.
        self._received = set()
        self._launcher = getattr(trainer.strategy, "launcher", None)
        connector = getattr(trainer, "_signal_connector", None)
        if trainer.received_sigterm and connector is not None:
            # A SIGTERM between Lightning's registration and now (e.g. during the sanity check): take it over, or
            # Lightning's loop would stop after the first micro-batch, mid-step and without a checkpoint.
            self._received.add(int(signal.SIGTERM))
            connector.received_sigterm = False
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_signal)
        env = _slurm_environment(trainer)
        if self.requeue and env is not None and env.auto_requeue:
            self._requeue_signal = int(env.requeue_signal or signal.SIGUSR1)
            signal.signal(self._requeue_signal, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        first = not self._received
        self._received.add(int(signum))
        log.warning("received %s: stopping after the current optimiser step", signal.Signals(signum).name)
        if first and signum == signal.SIGTERM and self._launcher is not None:
            self._launcher.kill(signum)  # rank processes Lightning started itself do not see the scheduler's signal

    # ---- the stop --------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int):
        if (batch_idx + 1) % trainer.accumulate_grad_batches != 0:
            return  # inside a gradient-accumulation step: finish it first
        flags = torch.tensor(
            [float(bool(self._received)), float(self._requeue_signal in self._received)], device=pl_module.device
        )
        if trainer.world_size > 1:
            flags = trainer.strategy.reduce(flags, reduce_op="sum")  # every rank stops at the same step
        if flags[0].item() == 0:
            return
        path = self._save_last(trainer)
        log.warning(
            "preempted: wrote %s at optimiser step %d; exiting with status %d",
            path,
            trainer.global_step,
            PREEMPTED_EXIT_CODE,
        )
        if flags[1].item() > 0 and trainer.is_global_zero:
            requeue_slurm_job()
        raise SIGTERMException(PREEMPTED_EXIT_CODE)

    @staticmethod
    def _save_last(trainer: pl.Trainer) -> str:
        """Write ``last.ckpt`` where ``ModelCheckpoint`` keeps it (what ``--ckpt_path last`` finds)."""
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint) and cb.dirpath is not None:
                path = os.path.join(cb.dirpath, cb.CHECKPOINT_NAME_LAST + cb.FILE_EXTENSION)
                # Recorded before the save so the checkpoint carries it: the resumed ModelCheckpoint then owns the
                # file and keeps writing last.ckpt (for a file it does not know it would start last-v1.ckpt).
                cb.last_model_path = path
                break
        else:
            path = os.path.join(trainer.default_root_dir, "checkpoints", "last.ckpt")
        trainer.save_checkpoint(path)
        return path


def _slurm_environment(trainer: pl.Trainer) -> SLURMEnvironment | None:
    env = getattr(trainer.strategy, "cluster_environment", None)
    if env is None:  # single-device strategies do not expose it
        env = getattr(getattr(trainer, "_accelerator_connector", None), "cluster_environment", None)
    return env if isinstance(env, SLURMEnvironment) else None


def requeue_slurm_job() -> None:
    """``scontrol requeue`` this job (array task included), as Lightning's own requeue handler does."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]
    if not re.fullmatch(r"[0-9_]+", job):
        raise ValueError(f"unexpected SLURM job id {job!r}")
    result = subprocess.run(["scontrol", "requeue", job], check=False)
    if result.returncode == 0:
        log.warning("requeued SLURM job %s", job)
    else:
        log.error("scontrol requeue %s failed with status %d", job, result.returncode)
