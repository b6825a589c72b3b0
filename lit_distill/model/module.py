"""DistillModule: the LightningModule that fine-tunes the student on the pool's stream.

* ``configure_model`` builds the student (pretrained or from a config), adds LoRA, and shards it under FSDP2;
* ``training_step`` computes per-sequence statistics through ``Student.forward`` and reduces them with the
  batch's per-example loss weights (``weight_mode``, docs/methods.md 1.6);
* validation generates greedy answers for the held-out prompts and counts exact answer matches per set;
* ``score`` is the no-grad, eval-mode statistics pass that DMC and LARK callbacks call on every rank.

Metrics are logged once per optimiser step (not per micro-batch): ``train/loss``, ``train/loss/<source>``,
``train/tokens_per_sec``, ``train/lr``; and ``val/accuracy``, ``val/accuracy/<set>`` per evaluation.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch

from lit_distill.batch import student_inputs
from lit_distill.checkpoint.read import load_trained_student
from lit_distill.distributed import attached_trainer, data_parallel_mesh, is_fsdp2
from lit_distill.eval.answers import answers_match
from lit_distill.eval.metrics import AccuracyBySource
from lit_distill.model.generation import GenerationConfig
from lit_distill.model.losses import SequenceStats, reduce_loss
from lit_distill.model.optim import OptimizerConfig, SchedulerConfig, build_optimizer
from lit_distill.model.resume import reconcile
from lit_distill.model.sharding import ShardingConfig, shard_fsdp2
from lit_distill.model.student import (
    LoraConfig,
    Student,
    StudentConfig,
    apply_lora,
    build_causal_lm,
    eval_mode,
)
from lit_distill.paths import resolve_path
from lit_distill.tokenizer import load_tokenizer

__all__ = ["DistillModule", "GenerationConfig", "NonFiniteLossError"]  # GenerationConfig: its old home

log = logging.getLogger(__name__)


def _coerce(cls, value):
    """Accept a dataclass instance or the dict a checkpoint stores for it."""
    return value if isinstance(value, cls) else cls(**value)


class NonFiniteLossError(RuntimeError):
    """The loss, the gradients or the parameters became NaN or infinite."""


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t  # a DTensor shard under FSDP2


def _count_nonfinite(tensors) -> torch.Tensor:
    """How many of ``tensors`` (floating point) hold a NaN or an infinity, as one tensor (a single sync)."""
    flags = [~torch.isfinite(_local(t)).all() for t in tensors if t.is_floating_point()]
    return torch.stack(flags).sum() if flags else torch.zeros((), dtype=torch.long)


class DistillModule(pl.LightningModule):
    """Fine-tunes a causal-LM student on the distillation pool.

    Args:
        student: Which model to train and how to load it.
        lora: LoRA adapters (None = full fine-tuning).
        optimizer: AdamW settings.
        scheduler: Warm-up and decay.
        weight_mode: How per-example loss weights are normalised: ``reference`` (within each micro-batch, as
            the LARK reference code; weights cancel at micro-batch 1) or ``paper`` (importance weights over
            the global batch). With all weights 1, ``paper`` is the exact global-batch mean. See
            docs/methods.md 1.6.
        loss_reduction: ``token`` (mean over response tokens) or ``sequence`` (mean of per-sequence means).
        chunk_size: Response tokens per LM-head chunk (bounds the logits memory).
        generation: Decoding settings for evaluation.
        sharding: FSDP2 settings (used only under ``ModelParallelStrategy``).
        nonfinite_loss: ``error`` stops with the step and the batch's sources; ``skip`` drops the micro-batch
            from the update (all ranks agree) and counts it in ``train/skipped_batches``. Gradients are checked
            the same way before every optimiser step (``skip`` drops the whole step's update); parameters are
            checked after it and non-finite ones always stop the run (no update can be undone). A checkpoint
            with non-finite tensors is never written: the save fails and the previous file stays.
        max_consecutive_skips: With ``skip``, stop with ``NonFiniteLossError`` after this many skips (micro-batches
            with a non-finite loss, steps with non-finite gradients) without an update in between: a run that
            cannot recover (weights poisoned by a too-high learning rate) would otherwise skip every batch to
            the end and report success.
    """

    def __init__(
        self,
        student: StudentConfig,
        lora: LoraConfig | None = None,
        optimizer: OptimizerConfig | None = None,
        scheduler: SchedulerConfig | None = None,
        weight_mode: Literal["reference", "paper"] = "reference",
        loss_reduction: Literal["token", "sequence"] = "token",
        chunk_size: int = 1024,
        generation: GenerationConfig | None = None,
        sharding: ShardingConfig | None = None,
        nonfinite_loss: Literal["error", "skip"] = "error",
        max_consecutive_skips: int = 16,
    ) -> None:
        super().__init__()
        student = _coerce(StudentConfig, student)
        lora = _coerce(LoraConfig, lora) if lora is not None else None
        self.student_config = student
        self.lora_config = lora
        self.optimizer_config = _coerce(OptimizerConfig, optimizer or OptimizerConfig())
        self.scheduler_config = _coerce(SchedulerConfig, scheduler or SchedulerConfig())
        self.weight_mode = weight_mode
        self.loss_reduction = loss_reduction
        self.chunk_size = chunk_size
        self.generation = _coerce(GenerationConfig, generation or GenerationConfig())
        self.sharding = _coerce(ShardingConfig, sharding or ShardingConfig())
        # Plain dicts, so checkpoints load with torch.load(weights_only=True) and without this package's classes.
        self.save_hyperparameters(
            {
                "student": asdict(student),
                "lora": asdict(lora) if lora is not None else None,
                "optimizer": asdict(self.optimizer_config),
                "scheduler": asdict(self.scheduler_config),
                "weight_mode": weight_mode,
                "loss_reduction": loss_reduction,
                "chunk_size": chunk_size,
                "generation": asdict(self.generation),
                "sharding": asdict(self.sharding),
                "nonfinite_loss": nonfinite_loss,
                "max_consecutive_skips": max_consecutive_skips,
            }
        )
        if max_consecutive_skips < 1:
            raise ValueError(f"model.max_consecutive_skips must be >= 1, got {max_consecutive_skips}")
        self.nonfinite_loss = nonfinite_loss
        self.max_consecutive_skips = max_consecutive_skips
        self._consecutive_skips = 0  # skipped micro-batches since the last optimiser step that updated
        self._step_updates = False
        self._logger_step_aligned = True  # see on_train_batch_start
        self.tokenizer = load_tokenizer(student.tokenizer_path)
        self.student: Student | None = None
        self.val_accuracy: AccuracyBySource | None = None
        self.eval_sets: list[str] = []  # evaluation set names, learnt from the first validation batch
        self.skipped_batches = 0
        self._reset_step_stats()

    # ---- model ---------------------------------------------------------------------------------------
    def configure_model(self) -> None:
        if self.student is not None:
            return  # configure_model runs for every fit/validate/test call
        lm = build_causal_lm(self.student_config, vocab_size=len(self.tokenizer))
        if self.student_config.gradient_checkpointing:
            lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        if self.lora_config is not None:
            lm = apply_lora(lm, self.lora_config)
            if self.student_config.gradient_checkpointing:
                lm.enable_input_require_grads()
        self.student = Student(lm)
        if self.student_config.init_checkpoint:
            step = load_trained_student(self, resolve_path(self.student_config.init_checkpoint))
            log.info("student initialised from %s (step %d)", self.student_config.init_checkpoint, step)
        trainer = attached_trainer(self)
        if trainer is not None and is_fsdp2(trainer.strategy):
            shard_fsdp2(self.student, data_parallel_mesh(self), self.sharding)

    @property
    def num_sources(self) -> int:
        return len(self.trainer.datamodule.source_names)

    def _micro_batches_per_step(self) -> int:
        return self.trainer.world_size * self.trainer.accumulate_grad_batches

    # ---- training ------------------------------------------------------------------------------------
    def _reset_step_stats(self) -> None:
        self._step_loss = 0.0
        self._step_tokens = 0
        self._step_source_ce: torch.Tensor | None = None
        self._step_source_tokens: torch.Tensor | None = None
        self._step_started = time.perf_counter()

    def _check_finite(self, loss: torch.Tensor, batch: dict) -> bool:
        """True if the step may use this micro-batch; all ranks agree before anyone skips a backward."""
        bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=loss.device)
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        if bad.item() == 0:
            return True
        names = self.trainer.datamodule.source_names
        sources = sorted({names[i] for i in batch["source"].tolist()})
        msg = f"non-finite loss at optimiser step {self.global_step} (batch sources: {', '.join(sources)})"
        self._skip(msg)
        return False

    def _skip(self, msg: str) -> None:
        """Count a skipped micro-batch (or step), or stop: under ``error`` and after too many in a row."""
        if self.nonfinite_loss == "error":
            raise NonFiniteLossError(msg + "; set model.nonfinite_loss=skip to skip such batches")
        self.skipped_batches += 1
        self._consecutive_skips += 1
        if self._consecutive_skips >= self.max_consecutive_skips:
            raise NonFiniteLossError(
                f"{msg}: {self._consecutive_skips} skips without an update in between (model.max_consecutive_skips="
                f"{self.max_consecutive_skips}); the run cannot recover (a learning rate too high?). Stopping; "
                "checkpoints already written are kept"
            )
        log.warning("%s: skipped (%d so far)", msg, self.skipped_batches)

    def _any_rank(self, count: torch.Tensor) -> bool:
        """True if ``count`` is non-zero on any rank (every rank must call it: one reduce)."""
        if attached_trainer(self) is not None and self.trainer.world_size > 1:
            count = self.trainer.strategy.reduce(count.to(self.device, torch.float32), reduce_op="sum")
        return bool(count.item() > 0)

    def on_before_optimizer_step(self, optimizer) -> None:
        # Before gradient clipping (which would spread a NaN into every gradient) and before the update.
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        self._step_updates = bool(grads)  # False when every micro-batch of the step was skipped
        if not self._any_rank(_count_nonfinite(grads)):
            return
        self._step_updates = False
        self._skip(f"non-finite gradient at optimiser step {self.global_step}")
        optimizer.zero_grad(set_to_none=True)  # parameters without a gradient are left alone by the step

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer, optimizer_closure=None) -> None:
        optimizer.step(closure=optimizer_closure)
        if self._step_updates:
            self._consecutive_skips = 0
        params = [p for group in optimizer.param_groups for p in group["params"]]
        bad = _count_nonfinite(params)
        if self._any_rank(bad):
            lr = optimizer.param_groups[0]["lr"]
            raise NonFiniteLossError(
                # global_step counts this step only once optimizer_step has returned.
                f"{int(bad.item())} parameter tensors became non-finite after optimiser step {self.global_step + 1} "
                f"(learning rate {lr:.3g}); stopping before a checkpoint of them is written"
            )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The guard in the save path: whoever saves (ModelCheckpoint, preemption, a user), a checkpoint with NaN
        # or infinite weights never replaces a finite one.
        tensors = [t for t in checkpoint.get("state_dict", {}).values() if torch.is_tensor(t)]
        bad = _count_nonfinite(tensors)
        if self._any_rank(bad):
            raise NonFiniteLossError(
                f"refusing to write a checkpoint at optimiser step {self.global_step}: {int(bad.item())} of "
                f"{len(tensors)} tensors are non-finite (the previous checkpoint is kept)"
            )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Before the weights load: the config's model and optimiser settings win (model/resume.py).
        if self.student is None:
            return  # not configured (load_from_checkpoint): nothing to compare with
        source = f"--ckpt_path {self.trainer.ckpt_path}" if attached_trainer(self) is not None else "the checkpoint"
        reconcile(checkpoint, dict(self.hparams), self.state_dict(), source)

    def on_train_start(self) -> None:
        self._logger_step_aligned = False

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        if not self._logger_step_aligned:
            # Lightning's logger step (_batches_that_stepped) is restored one too high when the checkpoint was
            # written at the end of a fit (its resume heuristics assume a mid-epoch save), which would shift
            # every curve of a run extended with --ckpt_path last by one step. At the first batch after
            # (re)start it must equal the optimiser step: set it (Lightning has no public setter for it).
            self.trainer.fit_loop.epoch_loop._batches_that_stepped = self.trainer.global_step
            self._logger_step_aligned = True

    def batch_loss(self, batch: dict, micro_batches_per_step: int = 1) -> tuple[torch.Tensor, SequenceStats]:
        """The training loss of one micro-batch (and the per-sequence statistics it is reduced from)."""
        stats = self.student(**student_inputs(batch), chunk_size=self.chunk_size)
        loss = reduce_loss(
            stats,
            batch["loss_weight"],
            mode=self.weight_mode,
            reduction=self.loss_reduction,
            global_tokens=batch["global_tokens"],
            global_examples=batch["global_examples"],
            micro_batches_per_step=micro_batches_per_step,
        )
        return loss, stats

    def training_step(self, batch: dict, batch_idx: int):
        loss, stats = self.batch_loss(batch, self._micro_batches_per_step())
        if not self._check_finite(loss, batch):
            return None
        self._accumulate(batch, stats, loss)
        return loss

    def _accumulate(self, batch: dict, stats: SequenceStats, loss: torch.Tensor) -> None:
        s = self.num_sources
        src = batch["source"]
        ce = torch.zeros(s, dtype=torch.float64, device=src.device).index_add(0, src, stats.ce_sum.detach())
        tok = torch.zeros(s, dtype=torch.float64, device=src.device).index_add(0, src, stats.n_tokens)
        self._step_source_ce = ce if self._step_source_ce is None else self._step_source_ce + ce
        self._step_source_tokens = tok if self._step_source_tokens is None else self._step_source_tokens + tok
        # The logged loss is the step's objective: the mean over micro-batches (and ranks, below).
        self._step_loss += loss.detach().double() / self.trainer.accumulate_grad_batches
        self._step_tokens += int(batch["input_tokens"])

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if (batch_idx + 1) % self.trainer.accumulate_grad_batches != 0:
            return  # not an optimiser-step boundary yet
        if self._step_source_ce is not None and self._should_log():
            elapsed = max(time.perf_counter() - self._step_started, 1e-9)
            packet = torch.cat(
                [
                    torch.as_tensor([self._step_loss, float(self._step_tokens)], dtype=torch.float64),
                    self._step_source_ce.cpu(),
                    self._step_source_tokens.cpu(),
                ]
            )
            if self.trainer.world_size > 1:
                packet = self.trainer.strategy.reduce(packet.to(self.device), reduce_op="sum").cpu()
                packet[0] /= self.trainer.world_size
            s = self.num_sources
            names = self.trainer.datamodule.source_names
            metrics = {
                "train/loss": packet[0].item(),
                "train/tokens_per_sec": packet[1].item() / elapsed,
                "train/lr": self.lr_schedulers().get_last_lr()[0],
            }
            for i, name in enumerate(names):
                if packet[2 + s + i] > 0:
                    metrics[f"train/loss/{name}"] = (packet[2 + i] / packet[2 + s + i]).item()
            if self.skipped_batches:
                metrics["train/skipped_batches"] = float(self.skipped_batches)
            self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1, rank_zero_only=True)
            self.log("loss", metrics["train/loss"], prog_bar=True, logger=False, batch_size=1)
        elif self.skipped_batches and self._should_log():
            # Every micro-batch of the step was skipped (ranks agree). Lightning would re-log the previous step's
            # values at this step, so the curve would show a loss that never happened: log NaN and the count.
            nan = float("nan")
            metrics = {"train/loss": nan, "train/skipped_batches": float(self.skipped_batches)}
            metrics.update({f"train/loss/{name}": nan for name in self.trainer.datamodule.source_names})
            self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1, rank_zero_only=True)
        self._reset_step_stats()

    def step_source_loss(self) -> np.ndarray | None:
        """Mean training loss per source over the optimiser step being finished (all micro-batches, all ranks).

        For callbacks that adapt the mixture every step (ODM): call it from ``on_train_batch_end`` at a step
        boundary, which Lightning runs before this module's own hook resets the step's sums. NaN for sources
        the step did not draw; None when every micro-batch was skipped. A collective: every rank must call it.
        """
        if self._step_source_ce is None:
            return None
        packet = torch.cat([self._step_source_ce, self._step_source_tokens])
        if self.trainer.world_size > 1:
            packet = self.trainer.strategy.reduce(packet.to(self.device), reduce_op="sum")
        ce, tokens = packet.double().cpu().numpy().reshape(2, -1)
        return np.where(tokens > 0, ce / np.maximum(tokens, 1e-12), np.nan)

    def _should_log(self) -> bool:
        every = self.trainer.log_every_n_steps
        return self.global_step % every == 0 or self.global_step == 1

    def configure_optimizers(self):
        total = int(self.trainer.estimated_stepping_batches)
        return build_optimizer(self.student, self.optimizer_config, self.scheduler_config, total)

    # ---- scoring (for callbacks) ---------------------------------------------------------------------
    def score(self, batch: dict, top_k: int | None = 50) -> SequenceStats:
        """Per-sequence CE/Brier sums in eval mode without gradients; every rank must call it together."""
        batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        with eval_mode(self.student):
            return self.student(**student_inputs(batch), top_k=top_k, chunk_size=self.chunk_size)

    @torch.no_grad()
    def generate_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int) -> list[str]:
        """Greedy completions (decoded, special tokens removed) for left-padded prompts."""
        with eval_mode(self.student):
            out = self.student.generate(
                input_ids.to(self.device),
                attention_mask.to(self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
                synced_gpus=(attached_trainer(self) is not None and self.trainer.world_size > 1),
            )
        return self.tokenizer.batch_decode(out[:, input_ids.shape[1] :], skip_special_tokens=True)

    # ---- evaluation ----------------------------------------------------------------------------------
    def validation_step(self, batch: dict, batch_idx: int) -> None:
        # The evaluation set names travel in the batch (``eval_sets``), so the module needs no DataModule API.
        if self.val_accuracy is None:
            if "eval_sets" not in batch:
                raise ValueError(
                    "validation batches must carry 'eval_sets' (the evaluation set names, indexed by 'source'), "
                    "as DistillDataModule's prompt loader does"
                )
            self.eval_sets = list(batch["eval_sets"])
            self.val_accuracy = AccuracyBySource(len(self.eval_sets)).to(self.device)
        texts = self.generate_text(batch["input_ids"], batch["attention_mask"], self.generation.max_new_tokens)
        correct = torch.tensor([answers_match(t, a) for t, a in zip(texts, batch["answers"], strict=True)])
        self.val_accuracy.update(correct.to(self.device), batch["source"], batch["valid"])
        if batch_idx == 0 and self.global_rank == 0 and self.generation.samples_to_log:
            self._log_samples(batch, texts)

    def _log_samples(self, batch: dict, texts: list[str]) -> None:
        writer = getattr(self.logger, "experiment", None)
        if writer is None or not hasattr(writer, "add_text"):
            return
        n = self.generation.samples_to_log
        # Keep the template's role markers (some are special tokens) but not the left padding.
        prompts = [
            self.tokenizer.decode(ids[mask.bool()], skip_special_tokens=False)
            for ids, mask in zip(batch["input_ids"][:n], batch["attention_mask"][:n], strict=True)
        ]
        rows = [format_sample(p, t, a) for p, t, a in zip(prompts, texts[:n], batch["answers"][:n], strict=False)]
        writer.add_text("val/samples", "\n\n---\n\n".join(rows), self.global_step)

    def on_validation_epoch_end(self) -> None:
        if self.val_accuracy is None:
            return
        result = self.val_accuracy.compute()
        names = self.eval_sets
        metrics = {"val/accuracy": result["overall"].item()}
        # torchmetrics squeezes a one-element result to a 0-d tensor: reshape keeps one value per set.
        for name, acc in zip(names, result["per_source"].reshape(-1).tolist(), strict=True):
            metrics[f"val/accuracy/{name}"] = acc
        # The metric is already reduced over ranks; sync_dist only averages identical values (and keeps
        # Lightning from warning about unsynced epoch-level metrics).
        self.log_dict(metrics, batch_size=1, sync_dist=True)
        self.log("val_acc", metrics["val/accuracy"], prog_bar=True, logger=False, batch_size=1, sync_dist=True)
        self.val_accuracy.reset()

    test_step = validation_step
    on_test_epoch_end = on_validation_epoch_end


_CHATML_TURN = re.compile(r"<\|im_start\|>(\w+)\n(.*?)(?:<\|im_end\|>|$)", re.DOTALL)


def format_sample(prompt: str, output: str, reference: str | None) -> str:
    """One validation sample as TensorBoard markdown: each turn under its role, then the student's answer.

    ChatML prompts are split into their turns; other templates are shown whole. Texts go in code blocks:
    TensorBoard renders markdown, so a student's ``####`` or ``<...>`` would otherwise become headings or HTML.
    """
    turns = [(role, text.strip()) for role, text in _CHATML_TURN.findall(prompt) if text.strip()]
    turns = (turns or [("prompt", prompt.strip())]) + [("assistant (student)", output.strip())]
    blocks = [f"**{role}**\n```\n{text}\n```" for role, text in turns]
    return "\n".join([*blocks, f"**reference answer**: {reference}"])
