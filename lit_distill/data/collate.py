"""Collation: token sequences -> tensors for training (padded or packed) and generation (left padding).

Packing puts several sequences in one row (first-fit decreasing) with position ids that restart at 0 for
each sequence and no attention mask; transformers then attends only within each sequence (block-diagonal
causal mask; varlen kernels with flash-attention). ``sequence_index`` maps every token back to its example,
so per-example losses, weights and source accounting stay exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from lit_distill.batch import STUDENT_INPUTS, student_inputs  # the layout's home; re-exported here

__all__ = ["STUDENT_INPUTS", "collate_train", "pack", "pad_left", "pad_right", "student_inputs"]


def _padded_length(lengths: Sequence[int], multiple_of: int | None) -> int:
    n = max(lengths)
    if multiple_of:
        n = -(-n // multiple_of) * multiple_of
    return n


def pad_right(
    seqs: Sequence[np.ndarray], pad_id: int, multiple_of: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), right-padded; position ids then default to 0..T-1 for real tokens."""
    lengths = [len(s) for s in seqs]
    ids = np.full((len(seqs), _padded_length(lengths, multiple_of)), pad_id, dtype=np.int64)
    mask = np.zeros(ids.shape, dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
        mask[i, : len(s)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def pad_left(seqs: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), left-padded for batched generation (HF derives positions from the
    mask)."""
    lengths = [len(s) for s in seqs]
    ids = np.full((len(seqs), max(lengths)), pad_id, dtype=np.int64)
    mask = np.zeros(ids.shape, dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, ids.shape[1] - len(s) :] = s
        mask[i, ids.shape[1] - len(s) :] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def response_mask(prompt_len: np.ndarray, length: np.ndarray, width: int) -> torch.Tensor:
    """Boolean [B, width]: True at the label positions [P, T) of each row (the scored response tokens)."""
    pos = np.arange(width)[None, :]
    return torch.from_numpy((pos >= prompt_len[:, None]) & (pos < length[:, None]))


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of item indices, each bin's total length <= capacity (items longer than it get their own bin)."""
    bins: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: -lengths[j]):
        for b, room in enumerate(free):
            if lengths[i] <= room:
                bins[b].append(i)
                free[b] -= lengths[i]
                break
        else:
            bins.append([i])
            free.append(capacity - lengths[i])
    return bins


def pack(
    seqs: Sequence[np.ndarray],
    prompt_len: np.ndarray,
    pad_id: int,
    capacity: int,
    multiple_of: int | None = None,
) -> dict[str, torch.Tensor | int]:
    """Packed rows: input_ids, position_ids, response_mask and sequence_index (all [R, W])."""
    lengths = [len(s) for s in seqs]
    bins = first_fit_decreasing(lengths, max(capacity, max(lengths)))
    width = _padded_length([sum(lengths[i] for i in b) for b in bins], multiple_of)
    ids = np.full((len(bins), width), pad_id, dtype=np.int64)
    pos = np.zeros(ids.shape, dtype=np.int64)
    resp = np.zeros(ids.shape, dtype=bool)
    seq = np.zeros(ids.shape, dtype=np.int64)
    for r, b in enumerate(bins):
        off = 0
        for i in b:
            n = lengths[i]
            ids[r, off : off + n] = seqs[i]
            pos[r, off : off + n] = np.arange(n)
            resp[r, off + prompt_len[i] : off + n] = True
            seq[r, off : off + n] = i
            off += n
        pos[r, off:] = np.arange(width - off)  # the padding tail is a block of its own
    return {
        "input_ids": torch.from_numpy(ids),
        "position_ids": torch.from_numpy(pos),
        "response_mask": torch.from_numpy(resp),
        "sequence_index": torch.from_numpy(seq),
        "num_sequences": len(seqs),
    }


def collate_train(
    seqs: Sequence[np.ndarray],
    prompt_len: np.ndarray,
    *,
    pad_id: int,
    source: np.ndarray,
    index: np.ndarray,
    loss_weight: np.ndarray,
    global_tokens: int,
    global_examples: int,
    pad_to_multiple_of: int | None = None,
    pack_length: int | None = None,
) -> dict[str, torch.Tensor]:
    """One training micro-batch, padded (default) or packed into rows of ``pack_length`` tokens.

    ``global_tokens`` / ``global_examples`` are the response tokens / examples of the whole global batch
    (all ranks and accumulation slots), so losses can be normalised once per optimiser step (docs/methods.md 4).
    """
    prompt_len = np.asarray(prompt_len)
    lengths = np.array([len(s) for s in seqs])
    if pack_length:
        out: dict = pack(seqs, prompt_len, pad_id, pack_length, pad_to_multiple_of)
    else:
        ids, mask = pad_right(seqs, pad_id, pad_to_multiple_of)
        out = {
            "input_ids": ids,
            "attention_mask": mask,
            "response_mask": response_mask(prompt_len, lengths, ids.shape[1]),
        }
    return {
        **out,
        "input_tokens": torch.tensor(int(lengths.sum())),
        "loss_weight": torch.as_tensor(loss_weight, dtype=torch.float32),
        "source": torch.as_tensor(source, dtype=torch.long),
        "index": torch.as_tensor(index, dtype=torch.long),
        "global_tokens": torch.tensor(float(global_tokens)),
        "global_examples": torch.tensor(float(global_examples)),
    }
