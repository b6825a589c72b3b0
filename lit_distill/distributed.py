"""Small helpers for work that every rank does together (evaluation shards, scoring reductions).

They take a Lightning ``Strategy`` (or nothing, for a single process) so the same code runs under no
strategy, DDP and FSDP. Reductions are float64 sums: means of means are never reduced across ranks.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def even_shard(n: int, rank: int, world_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank ``rank``'s share of ``n`` items: (indices, valid).

    Every rank gets the same count (sharded models need every rank in every forward pass); the shortfall is
    padded with item 0 marked invalid, so padded duplicates never enter a statistic.
    """
    per_rank = math.ceil(n / world_size) if n else 0
    idx = np.arange(rank, per_rank * world_size, world_size)
    valid = idx < n
    return np.where(valid, idx, 0), valid


def world(strategy) -> tuple[int, int]:
    """(rank, world_size) of a Lightning strategy, or (0, 1) without one."""
    if strategy is None:
        return 0, 1
    return strategy.global_rank, strategy.world_size


def all_reduce_sum(tensor: torch.Tensor, strategy) -> torch.Tensor:
    """Sum a float64 tensor over ranks (identity for a single process); returns a CPU tensor."""
    if strategy is None or strategy.world_size == 1:
        return tensor.detach().cpu()
    device = strategy.root_device
    # gloo has no float64 on some builds of all_reduce for CUDA tensors; NCCL handles float64 fine.
    out = strategy.reduce(tensor.detach().to(device, torch.float64), reduce_op="sum")
    return out.cpu()


def broadcast_object(obj, strategy):
    """Rank 0's ``obj`` on every rank."""
    if strategy is None or strategy.world_size == 1:
        return obj
    return strategy.broadcast(obj, src=0)
