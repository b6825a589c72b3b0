"""DistillDataModule: owns the sources, the pool, the mixture sampler and the held-out prompts.

The training DataLoader yields *tickets* (the global index of a micro-batch), not data. A ticket becomes a
batch in ``on_before_batch_transfer``, which Lightning calls in order, in the main process, when the batch
is consumed. That is what makes weight changes exact: Lightning and DataLoader workers prefetch ahead, but
the draw for optimiser step s happens only when step s starts, with the weights in force at that moment.
Tokenised data is memory-mapped, so collating in the main process costs microseconds per example.

Callbacks reshape the stream through ``set_source_weights``, ``set_sample_weights`` and
``set_loss_weights``; the state (sampler, consumed count, current plan, loss weights) is saved in every
checkpoint, so a resumed run continues on the exact stream.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Literal

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import PreTrainedTokenizerBase

from lit_distill.data.collate import collate_train, pad_left
from lit_distill.data.evalset import PromptCollator, PromptSet, ShardedPrompts
from lit_distill.data.formatting import tokenise_prompts, tokenise_source
from lit_distill.data.pool import Pool, with_quality
from lit_distill.data.readers import unit
from lit_distill.data.sampler import BatchPlan, MixtureSampler
from lit_distill.data.sources import SourceConfig, check_problem_questions, check_source_names, load_source
from lit_distill.distributed import even_shard
from lit_distill.errors import ConfigError
from lit_distill.scoring import policies
from lit_distill.tokenizer import load_tokenizer

log = logging.getLogger(__name__)


@dataclass
class MixtureConfig:
    """The initial source mixture (DMC may reshape it during training).

    Args:
        policy: ``uniform`` (every example equally likely: source weight ~ size), ``balanced`` (equal per
            source), ``static`` (``weights`` below), ``temperature`` (size^(1/temperature)).
        weights: Source name -> weight, for ``static``.
        temperature: For ``temperature``; 1 = uniform over examples, large = balanced.
        source_draw: ``multinomial`` (source of each slot drawn i.i.d.) or ``systematic`` (per-step counts
            within one of weight x batch; less variance).
    """

    policy: Literal["uniform", "balanced", "static", "temperature"] = "uniform"
    weights: dict[str, float] | None = None
    temperature: float = 2.0
    source_draw: Literal["multinomial", "systematic"] = "multinomial"

    def __post_init__(self) -> None:
        # Checked when the config is read, before any source is tokenised (setup would find these much later).
        if not (isinstance(self.temperature, int | float) and math.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"data.mixture.temperature must be a finite number > 0, got {self.temperature}")
        if self.policy != "static":
            if self.weights:
                raise ConfigError(
                    f"data.mixture.weights are only used by policy 'static' (policy is '{self.policy}'): "
                    "set data.mixture.policy static or remove the weights"
                )
            return
        if not self.weights:
            raise ConfigError("data.mixture.policy 'static' needs data.mixture.weights (source name -> weight)")
        bad = {n: w for n, w in self.weights.items() if not (math.isfinite(w) and w >= 0)}
        if bad:
            raise ConfigError(f"data.mixture.weights must be finite and >= 0; bad: {bad}")
        if not any(w > 0 for w in self.weights.values()):
            raise ConfigError(f"data.mixture.weights are all zero ({self.weights}); give some source a weight > 0")


def _check_positive(**values: int | None) -> None:
    for key, value in values.items():
        if value is not None and value < 1:
            raise ConfigError(f"data.{key} must be >= 1, got {value}")


@dataclass(frozen=True)
class Ticket:
    """The global index of a training micro-batch; turned into data when it is consumed."""

    index: int


class _Tickets(Dataset):
    def __getitem__(self, t: Ticket) -> Ticket:
        return t


class _EvalSetCollator:
    """``PromptCollator`` plus ``eval_sets`` (the evaluation set names, indexed by ``source``) in every batch.

    The module learns the set names from its batches, so ``model/`` never asks the DataModule for them.
    """

    def __init__(self, pad_id: int, names: Sequence[str]) -> None:
        self.collate = PromptCollator(pad_id)
        self.names = list(names)

    def __call__(self, items: Sequence[dict]) -> dict:
        return {**self.collate(items), "eval_sets": self.names}


def _identity(x):
    return x


class TicketSampler(Sampler):
    """Yields the rest of the current epoch's tickets, starting from what training has consumed."""

    def __init__(self, dm: DistillDataModule) -> None:
        self.dm = dm

    def __len__(self) -> int:
        return self.dm.micro_batches_per_epoch

    def __iter__(self):
        per_epoch = self.dm.micro_batches_per_epoch
        start = self.dm.consumed
        end = (start // per_epoch + 1) * per_epoch
        return (Ticket(i) for i in range(start, end))


class DistillDataModule(pl.LightningDataModule):
    """The multi-source pool and its curriculum sampler.

    Args:
        sources: Training sources (see ``SourceConfig``).
        eval_sources: Held-out prompt sets with reference answers for generation-based evaluation.
        tokenizer: The tokenizer, or its path or hub id. The CLI injects the model's own tokenizer (loaded once).
        micro_batch_size: Examples per rank per forward pass.
        eval_batch_size: Prompts per rank per generation batch.
        max_length: Maximum tokens per trajectory.
        overflow: What to do with longer trajectories: ``truncate`` (keep the prefix, as the LARK reference
            does), ``drop`` (skip the row) or ``error``. Counts are logged per source.
        mixture: Initial source mixture.
        steps_per_epoch: Optimiser steps per epoch; default one pass over the pool's examples.
        group_by_length: Sort each global batch by length before cutting micro-batches (less padding).
        packing: Pack each micro-batch's sequences into rows of ``pack_length`` tokens (no padding between
            them, attention kept within each sequence) instead of padding every sequence to the longest.
        pack_length: Row length for packing; default ``max_length``.
        pad_to_multiple_of: Pad sequence lengths to a multiple of this (tensor-core friendly on GPUs).
        seed: Seed of the data stream.
        num_workers: DataLoader workers (they only produce tickets; collation happens at consumption).
        num_proc: Processes for tokenising large sources with ``datasets.map``.
    """

    def __init__(
        self,
        sources: list[SourceConfig],
        eval_sources: list[SourceConfig] | None = None,
        tokenizer: str | Path | PreTrainedTokenizerBase | None = None,
        micro_batch_size: int = 8,
        eval_batch_size: int = 32,
        max_length: int = 2048,
        overflow: Literal["truncate", "drop", "error"] = "truncate",
        mixture: MixtureConfig | None = None,
        steps_per_epoch: int | None = None,
        group_by_length: bool = False,
        packing: bool = True,
        pack_length: int | None = None,
        pad_to_multiple_of: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        num_proc: int | None = None,
    ) -> None:
        super().__init__()
        if not sources:
            raise ValueError("the pool needs at least one source")
        _check_positive(
            micro_batch_size=micro_batch_size, eval_batch_size=eval_batch_size, max_length=max_length,
            steps_per_epoch=steps_per_epoch, pack_length=pack_length, pad_to_multiple_of=pad_to_multiple_of,
        )  # fmt: skip
        if num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {num_workers}")
        names = [c.name for c in sources]
        if len(set(names)) != len(names):
            raise ConfigError(f"data.sources: source names must be unique, got {names}")
        if mixture is not None and mixture.weights:  # before tokenising, not when setup first draws a batch
            check_source_names(list(mixture.weights), names, "data.mixture.weights")
        self.source_configs = list(sources)
        self.eval_configs = list(eval_sources or [])
        # Not os.PathLike: that ABC checks for __fspath__, which tokenizers answer through their __getattr__.
        is_path = isinstance(tokenizer, str | PurePath)
        self.tokenizer_path = str(tokenizer) if is_path else None
        self.micro_batch_size = micro_batch_size
        self.eval_batch_size = eval_batch_size
        self.max_length = max_length
        self.overflow = overflow
        self.mixture = mixture or MixtureConfig()
        self.steps_per_epoch = steps_per_epoch
        self.group_by_length = group_by_length
        self.packing = packing
        self.pack_length = pack_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.seed = seed
        self.num_workers = num_workers
        self.num_proc = num_proc
        self.tokenizer = None if is_path else tokenizer  # an object: injected by the CLI (the model's own)
        # Set by the CLI when a callback needs every source's reference answers (e.g. "DMC variant A"): checked
        # on the loaded records, before tokenising.
        self.answers_required: str | None = None
        self.pool: Pool | None = None
        self.prompts: PromptSet | None = None
        self.sampler: MixtureSampler | None = None
        self.loss_weights: np.ndarray | None = None
        self.consumed = 0  # training micro-batches consumed on this rank
        self._plan: BatchPlan | None = None
        self._pending_state: Mapping | None = None

    # ---- building ------------------------------------------------------------------------------------
    @property
    def source_names(self) -> list[str]:
        return [c.name for c in self.source_configs]

    def load_tokenizer(self):
        if self.tokenizer is None:
            if self.tokenizer_path is None:
                raise ValueError("DistillDataModule needs a tokenizer (the CLI links the model's)")
            self.tokenizer = load_tokenizer(self.tokenizer_path)
        return self.tokenizer

    def build_pool(self) -> Pool:
        """Load, validate and tokenise every source (cached by datasets after the first time)."""
        if self.pool is not None:
            return self.pool
        names = self.source_names
        if len(set(names)) != len(names):
            raise ValueError(f"source names must be unique, got {names}")
        tok = self.load_tokenizer()
        # Every source is loaded (and validated) before any is tokenised, so a missing answer column or two
        # questions under one shared problem id are reported in seconds, not after minutes of tokenising.
        loaded = [load_source(cfg, self.num_proc) for cfg in self.source_configs]
        # Sources sharing a problem_namespace share problem ids: the same id must ask the same question across
        # them too (each source checked its own rows already).
        check_problem_questions(loaded, "pool")
        if self.answers_required:
            for cfg, (ds, _) in zip(self.source_configs, loaded, strict=True):
                if not any(ds["answer"]):
                    raise ConfigError(
                        f"{self.answers_required} needs reference answers, but source '{cfg.name}' has no row "
                        "with an `answer` field"
                    )
        tables, counts = [], []
        for ds, files in loaded:
            ds, stats = tokenise_source(ds, tok, files, self.max_length, self.overflow, self.num_proc)
            tables.append(with_quality(ds))
            counts.append((stats.truncated, stats.dropped))
        self.pool = Pool(names, tables, counts)
        for s in self.pool.summary():
            log.info(
                "source %s: %d examples, %d problems, %d truncated, %d dropped (max_length=%d), "
                "%d with answers (%d correct), mean %.0f tokens",
                s.name, s.examples, s.problems, s.truncated, s.dropped, self.max_length,
                s.with_answer, s.correct, s.tokens_mean,
            )  # fmt: skip
        return self.pool

    def build_prompts(self) -> PromptSet | None:
        if self.prompts is not None or not self.eval_configs:
            return self.prompts
        tok = self.load_tokenizer()
        names, prompts, answers, source = [], [], [], []
        for s, cfg in enumerate(self.eval_configs):
            cfg.require_response = False
            ds, files = load_source(cfg)
            missing = [i for i, a in enumerate(ds["answer"]) if not a]
            if missing:
                first = files[ds["file"][missing[0]]]
                raise ValueError(
                    f"evaluation source '{cfg.name}': {first}, {unit(first)} {ds['line'][missing[0]]} has no "
                    f"reference answer ({len(missing)} rows without one)"
                )
            ds = tokenise_prompts(ds, tok, files, self.max_length)
            names.append(cfg.name)
            prompts += [np.asarray(x, dtype=np.int64) for x in ds["input_ids"]]
            answers += ds["answer"]
            source += [s] * len(ds)
        self.prompts = PromptSet(names, prompts, answers, np.asarray(source))
        return self.prompts

    def initial_source_weights(self) -> np.ndarray:
        m, sizes = self.mixture, self.pool.sizes
        if m.policy == "uniform":
            return policies.uniform_weights(sizes)
        if m.policy == "balanced":
            return policies.balanced_weights(sizes)
        if m.policy == "temperature":
            return policies.temperature_weights(sizes, m.temperature)
        if m.policy == "static":
            check_source_names(list(m.weights or {}), self.source_names, "mixture.weights")
            given = {n: (m.weights or {}).get(n, 0.0) for n in self.source_names}  # unnamed sources: 0
            return policies.static_weights(self.source_names, given)
        raise ValueError(f"unknown mixture policy {m.policy!r}")

    def prepare_data(self) -> None:
        # Runs once per node before setup: builds (and caches) the tokenised pool.
        self.build_pool()
        self.build_prompts()

    def _topology(self) -> tuple[int, int, int]:
        t = self.trainer
        if t is None:
            return 0, 1, 1
        return t.global_rank, t.world_size, t.accumulate_grad_batches

    def setup(self, stage: str | None = None) -> None:
        self.build_pool()
        self.build_prompts()
        if self.sampler is not None:
            return
        _, world_size, accum = self._topology()
        global_batch = self.micro_batch_size * world_size * accum
        self.sampler = MixtureSampler(
            self.pool.sizes,
            global_batch_size=global_batch,
            seed=self.seed,
            source_weights=self.initial_source_weights(),
            source_draw=self.mixture.source_draw,
            lengths=self.pool.length,
            group_by_length=self.group_by_length,
            micro_batch_size=self.micro_batch_size,
        )
        self.loss_weights = np.ones(len(self.pool), dtype=np.float64)
        if self._pending_state is not None:
            self._load(self._pending_state)
            self._pending_state = None

    @property
    def global_batch_size(self) -> int:
        _, world_size, accum = self._topology()
        return self.micro_batch_size * world_size * accum

    @property
    def micro_batches_per_epoch(self) -> int:
        _, _, accum = self._topology()
        steps = self.steps_per_epoch or math.ceil(len(self.pool) / self.global_batch_size)
        return steps * accum

    # ---- SelectionData (lit_distill/selection_data.py): what callbacks and the scorer may use ----------
    @property
    def pool_view(self) -> Pool:
        """The pool, read-only by convention (``PoolView``); callbacks change weights only through the setters."""
        return self.pool

    @property
    def source_weights(self) -> dict[str, float]:
        return dict(zip(self.source_names, self.sampler.source_weights.tolist(), strict=True))

    def current_source_weights(self) -> np.ndarray:
        """A copy of the source weights in force, in ``source_names`` order."""
        return self.sampler.source_weights.copy()

    def drawable_sources(self) -> np.ndarray:
        """Per source: does it still have an example with positive sampling weight."""
        return self.sampler.drawable()

    def stream_digest(self) -> bytes:
        """SHA-1 of everything that decides the data stream from the next step on (sampler, loss weights)."""
        h = hashlib.sha1()
        self.sampler.update_digest(h)
        h.update(np.ascontiguousarray(self.loss_weights).tobytes())
        return h.digest()

    def prompt_batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded prompt tokens (the response cut off) and attention mask of pool rows, for generation."""
        pool = self.pool
        prompts = [pool.tokens[int(r)][: pool.prompt_len[r]] for r in indices]
        return pad_left(prompts, self.tokenizer.pad_token_id)

    def set_source_weights(self, weights: Mapping[str, float] | Sequence[float] | np.ndarray) -> None:
        """New source weights, in force from the next optimiser step."""
        if isinstance(weights, Mapping):
            check_source_names(list(weights), self.source_names, "set_source_weights")
            weights = [float(weights.get(n, 0.0)) for n in self.source_names]
        self.sampler.set_source_weights(np.asarray(weights, dtype=np.float64))

    def set_sample_weights(self, indices: np.ndarray, weights: np.ndarray | float) -> None:
        """How likely each example is to be drawn within its source (0 = never), from the next step.

        Held-out rows (``hold_out``) keep weight 0 whatever is asked, so a selection cannot re-admit them.
        """
        indices = np.asarray(indices, dtype=np.int64)
        weights = np.where(self.pool.held_out[indices], 0.0, np.broadcast_to(weights, indices.shape))
        self.sampler.set_example_weights(indices, weights)

    def hold_out(self, rows: np.ndarray) -> None:
        """Never draw these rows again in this run (DMC probes); call before the first draw."""
        self.pool.hold_out(rows)
        self.sampler.set_example_weights(np.asarray(rows, dtype=np.int64), 0.0)

    def set_loss_weights(self, indices: np.ndarray, weights: np.ndarray | float) -> None:
        """Per-example loss weights carried in each batch (used by the module's ``weight_mode``)."""
        self.loss_weights[np.asarray(indices, dtype=np.int64)] = weights

    # ---- loaders -------------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        return DataLoader(
            _Tickets(),
            sampler=TicketSampler(self),
            batch_size=None,
            collate_fn=_identity,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _prompt_loader(self) -> DataLoader:
        rank, world_size, _ = self._topology()
        idx, valid = even_shard(len(self.prompts), rank, world_size)
        return DataLoader(
            ShardedPrompts(self.prompts, idx, valid),
            batch_size=self.eval_batch_size,
            shuffle=False,
            collate_fn=_EvalSetCollator(self.tokenizer.pad_token_id, self.prompts.names),
        )

    def val_dataloader(self):
        return self._prompt_loader() if self.prompts is not None else []

    def test_dataloader(self):
        return self.val_dataloader()

    def batch_for(self, indices: np.ndarray, global_tokens: int | None = None) -> dict[str, torch.Tensor]:
        """Collate pool examples into a training-format batch (also used by scoring callbacks)."""
        pool = self.pool
        n_tokens = int(pool.response_tokens(indices).sum()) if global_tokens is None else global_tokens
        return collate_train(
            [pool.tokens[int(i)] for i in indices],
            pool.prompt_len[indices],
            pad_id=self.tokenizer.pad_token_id,
            source=pool.source_of[indices],
            index=indices,
            loss_weight=self.loss_weights[indices],
            global_tokens=n_tokens,
            global_examples=len(indices),
            pad_to_multiple_of=self.pad_to_multiple_of,
            pack_length=(self.pack_length or self.max_length) if self.packing else None,
        )

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        if not isinstance(batch, Ticket):
            return batch
        if batch.index != self.consumed:
            raise RuntimeError(
                f"training micro-batch {batch.index} arrived while {self.consumed} was expected: the ticket "
                "stream is out of step with the sampler state"
            )
        rank, world_size, accum = self._topology()
        step, micro = divmod(batch.index, accum)
        if self._plan is None or self._plan.step != step:
            self._plan = self.sampler.draw()
            if self._plan.step != step:
                raise RuntimeError(f"sampler is at step {self._plan.step}, training at step {step}")
        idx = self._plan.micro_batch(micro, rank, world_size, self.micro_batch_size)
        self.consumed += 1
        return self.batch_for(idx, global_tokens=int(self.pool.response_tokens(self._plan.indices).sum()))

    # ---- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        if self.sampler is None:
            return {}
        return {
            "sampler": self.sampler.state_dict(),
            "consumed": self.consumed,
            "plan": None if self._plan is None else (self._plan.step, torch.from_numpy(self._plan.indices)),
            "loss_weights": torch.from_numpy(self.loss_weights.copy()),
            "global_batch_size": self.global_batch_size,
        }

    def load_state_dict(self, state: Mapping) -> None:
        if not state:
            return
        if self.sampler is None:  # restored before setup (e.g. a user calling it by hand)
            self._pending_state = state
            return
        self._load(state)

    def check_global_batch(self, state: Mapping, global_batch_size: int | None = None) -> None:
        """Refuse a checkpoint's data state written with another global batch (the CLI calls this before
        tokenising, with the trainer's topology; ``_load`` again when the state is restored)."""
        now = self.global_batch_size if global_batch_size is None else global_batch_size
        if state and int(state["global_batch_size"]) != now:
            raise ConfigError(
                f"the checkpoint was written with a global batch of {state['global_batch_size']} examples; "
                f"this run has {now} (data.micro_batch_size x devices x trainer.accumulate_grad_batches must "
                "match to resume the same data stream)"
            )

    def _load(self, state: Mapping) -> None:
        self.check_global_batch(state)
        self.sampler.load_state_dict(state["sampler"])
        self.consumed = int(state["consumed"])
        plan = state["plan"]
        self._plan = None if plan is None else BatchPlan(int(plan[0]), plan[1].numpy())
        self.loss_weights = state["loss_weights"].numpy().astype(np.float64)
