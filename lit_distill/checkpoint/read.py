"""Reading lit-distill training checkpoints: the non-weight part and the student's weights.

Reads the checkpoint kinds our strategies write:

* a Lightning single-file checkpoint (``last.ckpt`` of a single-device, DDP or FSDP2 run with
  ``save_distributed_checkpoint=False``);
* an FSDP2 sharded checkpoint: a directory of ``torch.distributed.checkpoint`` shards plus Lightning's
  ``meta.pt``. The shards are read on one process, without a process group, straight into the student's own
  tensors (no consolidated copy in memory).

Used by ``model.student.init_checkpoint`` (warm start), ``lit-distill score dmc`` and the HF export. This
module knows the student only as an ``nn.Module`` holding ``student.*`` weights, so the model layer can use it
without an import cycle; rebuilding a whole ``DistillModule`` from a checkpoint is ``lit_distill.restore``.
"""

from __future__ import annotations

import logging
import pickle
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lit_distill.model.generation import GenerationConfig
from lit_distill.model.optim import OptimizerConfig, SchedulerConfig
from lit_distill.model.sharding import ShardingConfig
from lit_distill.model.student import LoraConfig, StudentConfig

log = logging.getLogger(__name__)

META_FILE = "meta.pt"  # Lightning's non-tensor part of a sharded checkpoint (lightning.fabric.utilities.load)


def _config_classes() -> list:
    # Checkpoints written before the hyperparameters became plain dicts pickled these dataclasses, some under
    # the module that defined them then (GenerationConfig lived in model/module.py).
    return [
        StudentConfig,
        LoraConfig,
        OptimizerConfig,
        SchedulerConfig,
        ShardingConfig,
        GenerationConfig,
        (GenerationConfig, "lit_distill.model.module.GenerationConfig"),
    ]


def torch_load(path: str | Path) -> dict[str, Any]:
    """``torch.load`` a Lightning checkpoint file (or a sharded checkpoint's ``meta.pt``) on the CPU.

    Our module stores its hyperparameters as plain dicts, so current checkpoints load with
    ``weights_only=True``. Checkpoints written before that pickled the config dataclasses (StudentConfig,
    ...): those are allow-listed. Anything else (a user's subclass storing other objects) falls back to
    ``weights_only=False`` with a warning: acceptable because the file is the user's own training output,
    which they already trust enough to run; never point this at a checkpoint from someone else.
    """
    try:
        with torch.serialization.safe_globals(_config_classes()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        log.warning(
            "%s holds objects outside the weights-only allowlist; loading it with full unpickling (%s)",
            path,
            str(err).splitlines()[0],
        )
        return torch.load(path, map_location="cpu", weights_only=False, mmap=True)


def is_sharded_checkpoint(path: str | Path) -> bool:
    """A directory written by ``torch.distributed.checkpoint`` with Lightning's metadata file."""
    path = Path(path)
    return path.is_dir() and (path / META_FILE).is_file() and (path / ".metadata").is_file()


def read_checkpoint(ckpt: str | Path) -> dict[str, Any]:
    """The checkpoint's non-weight part (``hyper_parameters``, ``global_step``, ...).

    For a single file this is the whole (memory-mapped) checkpoint, ``state_dict`` included; a sharded
    checkpoint's weights stay on disk until ``load_student_weights``.
    """
    path = Path(ckpt)
    if is_sharded_checkpoint(path):
        return torch_load(path / META_FILE)
    if path.is_dir():
        raise ValueError(f"{path} is a directory but not a sharded checkpoint (no {META_FILE} and .metadata)")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return torch_load(path)


def load_student_weights(
    module: torch.nn.Module, ckpt: str | Path, checkpoint: Mapping[str, Any] | None = None
) -> None:
    """Load the ``student.*`` weights of ``ckpt`` strictly into ``module.student`` (configured, unsharded).

    Args:
        module: A ``DistillModule`` after ``configure_model()``.
        ckpt: A single-file or sharded checkpoint.
        checkpoint: ``read_checkpoint(ckpt)`` if already read (a single file's ``state_dict`` is taken from it).
    """
    path = Path(ckpt)
    if is_sharded_checkpoint(path):
        _load_sharded(module.student, path)
        return
    state = (checkpoint if checkpoint is not None else read_checkpoint(path)).get("state_dict") or {}
    weights = {k.removeprefix("student."): v for k, v in state.items() if k.startswith("student.")}
    if not weights:
        raise ValueError(f"{path}: no student.* weights in the checkpoint's state_dict")
    module.student.load_state_dict(weights, strict=True)


def _load_sharded(student: torch.nn.Module, path: Path) -> None:
    """Read a DCP checkpoint's student tensors into ``student``'s own tensors on this single process."""
    import torch.distributed.checkpoint as dcp

    reader = dcp.FileSystemReader(str(path))
    saved = reader.read_metadata().state_dict_metadata
    # ModelParallelStrategy stores the module under "state_dict", FSDPStrategy (FSDP1) under "model".
    root = next((r for r in ("state_dict", "model") if any(k.startswith(f"{r}.student.") for k in saved)), None)
    if root is None:
        raise ValueError(f"{path}: no student weights among the sharded checkpoint's {len(saved)} entries")
    prefix = f"{root}.student."
    saved_keys = {k.removeprefix(prefix) for k in saved if k.startswith(prefix)}
    target = student.state_dict()
    missing, unexpected = sorted(target.keys() - saved_keys), sorted(saved_keys - target.keys())
    if missing or unexpected:
        raise ValueError(
            f"{path}: the sharded checkpoint does not match the rebuilt student "
            f"(missing {len(missing)}, e.g. {missing[:3]}; unexpected {len(unexpected)}, e.g. {unexpected[:3]})"
        )
    # DCP flattens nested dicts with dots, so this names exactly the saved "state_dict.student.*" entries, and
    # copies into the tensors we pass: the student's own parameters and buffers. no_dist: one process, no group
    # (DCP warns about that even when asked for it explicitly).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        dcp.load({root: {f"student.{k}": v for k, v in target.items()}}, storage_reader=reader, no_dist=True)


def load_trained_student(module: torch.nn.Module, ckpt: str | Path) -> int:
    """Load a checkpoint's (file or sharded) student weights into a configured module; returns its global step."""
    checkpoint = read_checkpoint(ckpt)
    load_student_weights(module, ckpt, checkpoint)
    return int(checkpoint.get("global_step") or 0)
