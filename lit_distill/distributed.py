"""Everything about running on several processes, in one place: strategies, ranks, collectives, FSDP2.

* ``FSDP2Strategy``: Lightning's ``ModelParallelStrategy`` as pure FSDP2 (``configs/strategy/fsdp2.yaml``);
* ``attached_trainer`` / ``world``: rank and world size of a module or strategy, or (0, 1) without one;
* ``even_shard``, ``all_reduce_sum``, ``broadcast_object``: work every rank does together (evaluation shards,
  scoring reductions, rank-0 decisions). Reductions are float64 sums: means of means are never reduced;
* ``is_fsdp2``, ``data_parallel_mesh``, ``full_state_dict``: what the model and the HF export need to know
  about a sharded student. How the student is cut into FSDP2 units is the model's (``model/sharding.py``).

They take a Lightning ``Strategy`` (or nothing, for a single process) so the same code runs under no
strategy, DDP and FSDP. This module imports nothing else of the package: every layer may use it.
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import torch
from lightning.pytorch.strategies import ModelParallelStrategy


# ---- strategies ------------------------------------------------------------------------------------------
class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 over all ranks (works on GPUs with NCCL and on CPUs with gloo).

    ``ModelParallelStrategy``'s ``data_parallel_size="auto"`` means the number of *nodes*, which is not what a
    user asking for FSDP wants: here the data-parallel size is the world size and there is no tensor
    parallelism. ``DistillModule.configure_model`` applies ``fully_shard`` over the device mesh this builds.

    Args:
        save_distributed_checkpoint: Save sharded checkpoints (a directory per checkpoint, fast and memory-light);
            ``lit-distill export`` consolidates them. False gathers a single-file checkpoint on rank 0.
        process_group_backend: ``nccl``/``gloo``; chosen from the device when unset.
        timeout: Collective timeout.
    """

    def __init__(
        self,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta | None = timedelta(minutes=30),
    ) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )

    def setup_environment(self) -> None:
        # No public API: the world size is known only once the trainer has set num_nodes/num_processes, and
        # ModelParallelStrategy reads this private field when it builds the device mesh in setup_environment.
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()


def is_fsdp2(strategy) -> bool:
    """True under ``ModelParallelStrategy`` (our FSDP2 path), whatever the preset."""
    return isinstance(strategy, ModelParallelStrategy)


# ---- ranks -----------------------------------------------------------------------------------------------
def attached_trainer(module):
    """The module's Trainer, or None when it runs without one (export, offline tools, unit tests).

    ``LightningModule.trainer`` raises when no trainer is attached; asking it is the public way to find out.
    """
    try:
        return module.trainer
    except RuntimeError:
        return None


def world(strategy) -> tuple[int, int]:
    """(rank, world_size) of a Lightning strategy, or (0, 1) without one."""
    if strategy is None:
        return 0, 1
    return strategy.global_rank, strategy.world_size


def even_shard(n: int, rank: int, world_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank ``rank``'s share of ``n`` items: (indices, valid).

    Every rank gets the same count (sharded models need every rank in every forward pass); the shortfall is
    padded with item 0 marked invalid, so padded duplicates never enter a statistic.
    """
    per_rank = math.ceil(n / world_size) if n else 0
    idx = np.arange(rank, per_rank * world_size, world_size)
    valid = idx < n
    return np.where(valid, idx, 0), valid


# ---- collectives -----------------------------------------------------------------------------------------
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


# ---- sharded models --------------------------------------------------------------------------------------
def data_parallel_mesh(module) -> torch.distributed.DeviceMesh:
    """The data-parallel dimension of the module's device mesh (the whole mesh when it has one dimension)."""
    mesh = module.device_mesh
    return mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh


def full_state_dict(model: torch.nn.Module, strategy, is_global_zero: bool) -> dict | None:
    """The unsharded state dict of ``model`` on rank 0 (CPU under FSDP2), None on the other ranks.

    Under FSDP2 this is a collective: every rank must call it. Under DDP or one device rank 0 already holds
    every weight.
    """
    if is_fsdp2(strategy):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        weights = get_model_state_dict(model, options=options)
        return weights if is_global_zero else None
    return model.state_dict() if is_global_zero else None
