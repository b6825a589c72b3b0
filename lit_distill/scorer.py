"""The one scoring pass: per-sequence statistics and greedy answers of many items, on every rank together.

Used by the DMC and LARK callbacks during training (through ``score_rows`` / ``answer_rows``, on pool rows of
the DataModule, seen only through ``SelectionData``) and by ``lit-distill score lark`` offline (through
``score_items``, on a tokenised file).

Each rank takes an even shard of the items (padded duplicates are marked invalid and never counted), runs the
same number of forward passes (FSDP needs every rank in every pass), writes its items' statistics into a
float64 array indexed by item, and one all-reduce SUM gives every rank the statistics of all items.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lit_distill.distributed import all_reduce_sum, attached_trainer, even_shard, world
from lit_distill.eval.answers import answers_match
from lit_distill.selection_data import SelectionData

STAT_COLUMNS = ("ce_sum", "n_tokens", "brier_sum")


class ScoringError(RuntimeError):
    """A scoring pass failed; training stops rather than continuing on stale weights."""


def score_items(
    lengths: np.ndarray,
    make_batch: Callable[[np.ndarray], dict[str, Any]],
    forward: Callable[[dict[str, Any]], Any],
    *,
    batch_size: int,
    rank: int = 0,
    world_size: int = 1,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """Float64 ``[n, 3]`` (ce_sum, n_tokens, brier_sum) of ``n`` items (brier_sum 0 when not computed).

    Args:
        lengths: Token length of each item; batches are cut from the items sorted by it (less padding). The
            shard is a fixed function of ``lengths``, so every rank agrees on it.
        make_batch: Item indices -> a training-format batch (``lit_distill.batch``).
        forward: Batch -> ``SequenceStats`` (eval mode, no gradients: the caller's ``score`` or student).
        batch_size: Items per forward pass.
        rank: This process's rank; it scores its even shard of the items.
        world_size: Number of ranks taking part (each runs the same number of forward passes).
        reduce: Sums a float64 tensor over ranks; None for a single process (the shard is then everything).
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    shard, valid = even_shard(len(order), rank, world_size)
    out = np.zeros((len(order), len(STAT_COLUMNS)), dtype=np.float64)
    for start in range(0, len(shard), batch_size):
        items = order[shard[start : start + batch_size]]
        keep = valid[start : start + batch_size]
        stats = forward(make_batch(items))
        brier = stats.brier_sum if stats.brier_sum is not None else torch.zeros_like(stats.ce_sum)
        values = torch.stack([stats.ce_sum, stats.n_tokens, brier], dim=1).detach().double().cpu().numpy()
        out[items[keep]] += values[keep]
    if reduce is None:
        return out
    return reduce(torch.from_numpy(out)).cpu().numpy().astype(np.float64)


def _strategy(module):
    trainer = attached_trainer(module)
    return trainer.strategy if trainer is not None else None


def score_rows(module, data: SelectionData, rows: np.ndarray, batch_size: int, top_k: int | None = 50) -> np.ndarray:
    """Per-row (ce_sum, n_tokens, brier_sum) of pool rows under the current student, on every rank."""
    strategy = _strategy(module)
    rank, world_size = world(strategy)
    return score_items(
        data.pool_view.length[rows],
        lambda items: data.batch_for(rows[items]),
        lambda batch: module.score(batch, top_k=top_k),
        batch_size=batch_size,
        rank=rank,
        world_size=world_size,
        reduce=lambda t: all_reduce_sum(t, strategy),
    )


def answer_rows(module, data: SelectionData, rows: np.ndarray, batch_size: int, max_new_tokens: int) -> np.ndarray:
    """1.0/0.0 per row: does the student's greedy answer to the row's prompt match its reference answer."""
    strategy = _strategy(module)
    rank, world_size = world(strategy)
    shard, valid = even_shard(len(rows), rank, world_size)
    out = np.zeros(len(rows), dtype=np.float64)
    for start in range(0, len(shard), batch_size):
        items = shard[start : start + batch_size]
        keep = valid[start : start + batch_size]
        ids, mask = data.prompt_batch(rows[items])
        texts = module.generate_text(ids, mask, max_new_tokens)
        answers = data.pool_view.answers
        correct = np.array([answers_match(t, answers[int(r)]) for t, r in zip(texts, rows[items], strict=True)])
        out[items[keep]] += correct[keep]
    return all_reduce_sum(torch.from_numpy(out), strategy).numpy()
