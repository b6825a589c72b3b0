"""Writing checkpoints crash-safely: ``AtomicCheckpointIO`` (the CLI's default ``trainer.plugins``).

Lightning's ``TorchCheckpointIO`` serialises the checkpoint into memory, writes it to a temporary file in the
*system* temporary directory (``$TMPDIR``) and moves it into place. That is atomic only when ``$TMPDIR`` and the
checkpoint directory share a filesystem. On a cluster where ``/tmp`` is node-local (or tmpfs) and checkpoints
go to shared storage, the move is a copy *into* ``last.ckpt``: the previous checkpoint is truncated first, and a
job killed during the copy (pre-emption, out-of-memory killer, time limit) leaves neither the old nor the new
one. The whole checkpoint is also held in memory, and in ``$TMPDIR``, while it is written.

This plugin streams ``torch.save`` into a temporary file *next to* the target, fsyncs it, renames it over the
target (``os.replace``, atomic on POSIX within a directory) and fsyncs the directory. A kill at any moment
leaves the previous checkpoint intact; the only debris is a hidden ``.NAME.PID.tmp`` file, which Lightning's
``ckpt_path="last"`` lookup ignores. Remote paths (``s3://``, ...) go through Lightning's own code.

Sharded (directory) checkpoints of FSDP and FSDP2 do not pass through a ``CheckpointIO``; see docs/multi-gpu.md.
Use it from YAML::

    trainer:
      plugins:
        class_path: lit_distill.checkpoint.AtomicCheckpointIO
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import fsspec
import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO


def atomic_torch_save(obj: Any, path: _PATH) -> None:
    """``torch.save`` to a temporary sibling of ``path``, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # os.open applies the umask to 0o666, so the file gets the permissions a plain open() would give it.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # and the rename itself survives a power loss
    finally:
        os.close(dir_fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic (temporary file in the same directory, fsync, rename)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        fs, local_path = fsspec.core.url_to_fs(str(path))
        if storage_options is not None or not isinstance(fs, LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, local_path)
