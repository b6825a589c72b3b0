"""The one owner of lit-distill's training checkpoint format: reading it and writing it.

* ``read``: ``read_checkpoint`` (non-weight part), ``load_student_weights`` / ``load_trained_student`` (single
  file or FSDP2 shards, on one process), ``torch_load`` (weights-only with an allow-list);
* ``io``: ``AtomicCheckpointIO`` / ``atomic_torch_save`` (temporary sibling, fsync, rename).

Rebuilding a whole ``DistillModule`` from a checkpoint is ``lit_distill.restore``; writing Hugging Face
directories is ``lit_distill.export``.
"""

from lit_distill.checkpoint.io import AtomicCheckpointIO, atomic_torch_save
from lit_distill.checkpoint.read import (
    META_FILE,
    is_sharded_checkpoint,
    load_student_weights,
    load_trained_student,
    read_checkpoint,
    torch_load,
)

__all__ = [
    "META_FILE",
    "AtomicCheckpointIO",
    "atomic_torch_save",
    "is_sharded_checkpoint",
    "load_student_weights",
    "load_trained_student",
    "read_checkpoint",
    "torch_load",
]
