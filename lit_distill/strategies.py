"""Strategy presets, kept at this import path for configs (``lit_distill.strategies.FSDP2Strategy``).

The class lives with the other multi-process helpers in ``lit_distill/distributed.py``.
"""

from lit_distill.distributed import FSDP2Strategy

__all__ = ["FSDP2Strategy"]
