"""Deprecated import path, kept so configs saved by earlier runs (``trainer.plugins``) still resolve.

Use ``lit_distill.checkpoint.AtomicCheckpointIO``.
"""

from lit_distill.checkpoint.io import AtomicCheckpointIO, atomic_torch_save

__all__ = ["AtomicCheckpointIO", "atomic_torch_save"]
