"""Sharding the student under Lightning strategies.

* FSDP2 (``ModelParallelStrategy``): ``fully_shard`` each decoder layer, then the ``Student`` wrapper as the
  root, so a call to ``Student.forward`` or ``Student.generate`` (registered as an FSDP forward method)
  unshards the root parameters (embeddings, final norm, LM head) for its duration.
* DDP and single-device runs need nothing here.

Only how the student is cut lives here; strategies, ranks, collectives and the questions about a sharded
model (``is_fsdp2``, ``data_parallel_mesh``, gathering a full state dict) are ``lit_distill/distributed.py``.

Decoder layers are found through transformers' ``_no_split_modules``, the same list HF uses for FSDP.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import nn

from lit_distill.distributed import data_parallel_mesh, is_fsdp2  # re-exported: their old home
from lit_distill.model.student import DTYPES, Student

__all__ = ["ShardingConfig", "data_parallel_mesh", "decoder_layer_classes", "is_fsdp2", "shard_fsdp2"]


@dataclass
class ShardingConfig:
    """FSDP2 settings, used when the trainer runs ``ModelParallelStrategy``.

    Args:
        param_dtype: Dtype parameters are gathered in for compute (mixed precision), or None to keep theirs.
        reduce_dtype: Dtype of the gradient reduce-scatter, or None for ``param_dtype``.
        reshard_after_forward: Free gathered parameters after each layer's forward (ZeRO-3 style); False keeps
            them until the backward (ZeRO-2 style, more memory, less communication).
    """

    param_dtype: Literal["float32", "bfloat16", "float16"] | None = None
    reduce_dtype: Literal["float32", "bfloat16", "float16"] | None = None
    reshard_after_forward: bool = True


def decoder_layer_classes(model: nn.Module) -> set[type]:
    names = set(getattr(model, "_no_split_modules", None) or [])
    classes = {type(m) for m in model.modules() if type(m).__name__ in names}
    if not classes:
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__} (no _no_split_modules)")
    return classes


def shard_fsdp2(student: Student, mesh, cfg: ShardingConfig) -> None:
    """Apply FSDP2 in place: decoder layers first, then the wrapper as root."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    mp = MixedPrecisionPolicy(
        param_dtype=DTYPES[cfg.param_dtype] if cfg.param_dtype else None,
        reduce_dtype=DTYPES[cfg.reduce_dtype] if cfg.reduce_dtype else None,
    )
    layers = decoder_layer_classes(student.base)
    for module in student.modules():
        if type(module) in layers:
            fully_shard(module, mesh=mesh, mp_policy=mp, reshard_after_forward=cfg.reshard_after_forward)
    fully_shard(student, mesh=mesh, mp_policy=mp, reshard_after_forward=cfg.reshard_after_forward)
    register_fsdp_forward_method(student, "generate")
