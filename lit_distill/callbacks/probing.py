"""Scoring passes that every rank runs together, for the DMC and LARK callbacks.

Each rank takes an even shard of the items (padded duplicates are marked invalid and never counted), runs
the same number of forward passes (FSDP needs every rank in every pass), writes its items' statistics into
a float64 array indexed by item, and one all-reduce SUM gives every rank the statistics of all items.
"""

from __future__ import annotations

import numpy as np
import torch

from lit_distill.data.collate import pad_left
from lit_distill.distributed import all_reduce_sum, even_shard, world
from lit_distill.eval.answers import answers_match

STAT_COLUMNS = ("ce_sum", "n_tokens", "brier_sum")


class ScoringError(RuntimeError):
    """A scoring pass failed; training stops rather than continuing on stale weights."""


def score_rows(module, datamodule, rows: np.ndarray, batch_size: int, top_k: int | None = 50) -> np.ndarray:
    """Per-row (ce_sum, n_tokens, brier_sum) of pool rows under the current student, on every rank."""
    strategy = module.trainer.strategy if module._trainer is not None else None
    rank, world_size = world(strategy)
    # Sorting by length keeps batches homogeneous; the shard is a fixed function of the rows.
    order = np.argsort(datamodule.pool.length[rows], kind="stable")
    shard, valid = even_shard(len(rows), rank, world_size)
    out = np.zeros((len(rows), len(STAT_COLUMNS)), dtype=np.float64)
    for start in range(0, len(shard), batch_size):
        items = order[shard[start : start + batch_size]]
        keep = valid[start : start + batch_size]
        stats = module.score(datamodule.batch_for(rows[items]), top_k=top_k)
        brier = stats.brier_sum if stats.brier_sum is not None else torch.zeros_like(stats.ce_sum)
        values = torch.stack([stats.ce_sum, stats.n_tokens, brier], dim=1).detach().cpu().numpy()
        out[items[keep]] += values[keep]
    return all_reduce_sum(torch.from_numpy(out), strategy).numpy()


def answer_rows(module, datamodule, rows: np.ndarray, batch_size: int, max_new_tokens: int) -> np.ndarray:
    """1.0/0.0 per row: does the student's greedy answer to the row's prompt match its reference answer."""
    strategy = module.trainer.strategy if module._trainer is not None else None
    rank, world_size = world(strategy)
    pool = datamodule.pool
    shard, valid = even_shard(len(rows), rank, world_size)
    out = np.zeros(len(rows), dtype=np.float64)
    pad = datamodule.tokenizer.pad_token_id
    for start in range(0, len(shard), batch_size):
        items = shard[start : start + batch_size]
        keep = valid[start : start + batch_size]
        prompts = [pool.tokens[int(r)][: pool.prompt_len[r]] for r in rows[items]]
        ids, mask = pad_left(prompts, pad)
        texts = module.generate_text(ids, mask, max_new_tokens)
        correct = np.array([answers_match(t, pool.answers[int(r)]) for t, r in zip(texts, rows[items], strict=True)])
        out[items[keep]] += correct[keep]
    return all_reduce_sum(torch.from_numpy(out), strategy).numpy()
