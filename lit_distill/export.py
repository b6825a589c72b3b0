"""Hugging Face export: a training checkpoint's student as a ``save_pretrained`` directory.

Reads the checkpoint kinds our strategies write:

* a Lightning single-file checkpoint (``last.ckpt`` of a single-device, DDP or FSDP2 run with
  ``save_distributed_checkpoint=False``);
* an FSDP2 sharded checkpoint: a directory of ``torch.distributed.checkpoint`` shards plus Lightning's
  ``meta.pt``. The shards are read on one process, without a process group, straight into the rebuilt
  student's tensors (no consolidated copy in memory).

The student is rebuilt from the checkpoint's ``hyper_parameters`` through ``DistillModule.configure_model``
(the code that built it for training), its ``student.*`` weights are loaded strictly, and the result is
written with the tokenizer (so the chat template travels) and a ``lit_distill_export.json`` record. LoRA
students are written either as the peft adapter plus a reference to its base model, or merged into a plain
model. The same writer serves the ``HFExport`` callback at the end of a fit::

    from lit_distill.export import export_checkpoint
    export_checkpoint("runs/lit-distill/version_0/checkpoints/last.ckpt", "hf/", merge_lora=True)

or ``lit-distill export --ckpt ... --output ...`` (lit_distill/tools/export.py).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import pickle
import shutil
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lit_distill.demo.assets import SCHEME, resolve_path
from lit_distill.model.student import DTYPES, StudentConfig

log = logging.getLogger(__name__)

INFO_FILE = "lit_distill_export.json"
META_FILE = "meta.pt"  # Lightning's non-tensor part of a sharded checkpoint (lightning.fabric.utilities.load)
BASE_DIR = "base"  # where an unmerged adapter's base model goes when no pretrained directory holds it


# ---- reading checkpoints ---------------------------------------------------------------------------------
def _config_classes() -> list[type]:
    from lit_distill.model.module import GenerationConfig
    from lit_distill.model.optim import OptimizerConfig, SchedulerConfig
    from lit_distill.model.sharding import ShardingConfig
    from lit_distill.model.student import LoraConfig

    return [StudentConfig, LoraConfig, OptimizerConfig, SchedulerConfig, GenerationConfig, ShardingConfig]


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


def _check_student_paths(student: StudentConfig) -> None:
    """Fail clearly when a local path the student was built from has gone (moved run, cleaned cache)."""
    for key, value in (("tokenizer", student.tokenizer_path), ("path", student.path)):
        if value is None or value.startswith(SCHEME):
            continue  # demo:// assets are rebuilt on demand
        resolved = Path(resolve_path(value))
        if (resolved.is_absolute() or value.startswith((".", "~"))) and not resolved.exists():
            what = "tokenizer" if key == "tokenizer" else "pretrained model (architecture and base weights)"
            raise FileNotFoundError(
                f"the checkpoint's student {what} was loaded from {value!r} (model.student.{key}), which no longer "
                "exists; the export rebuilds the student from it. Restore that directory (or a copy of it) there."
            )


def module_from_hparams(hparams: Mapping[str, Any], cls: type | None = None):
    """A ``DistillModule`` (or subclass ``cls``) built from saved hyperparameters, student not yet configured.

    Accepts what Lightning stored: plain dicts (current), config dataclasses (older checkpoints) and the
    LightningCLI bookkeeping keys (``_instantiator``, ``_class_path``), which are dropped. The student's
    ``init_checkpoint`` is cleared: callers load the trained weights next.
    """
    from lit_distill.model.module import DistillModule

    cls = cls or DistillModule
    params = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in hparams.items() if k in params and k != "self"}
    dropped = sorted(set(hparams) - set(kwargs) - {"_instantiator", "_class_path"})
    if dropped:
        log.warning("ignoring saved hyperparameters that %s does not take: %s", cls.__name__, ", ".join(dropped))
    if "student" not in kwargs:
        raise ValueError("the checkpoint has no model.student hyperparameters; cannot rebuild the student")
    student = kwargs["student"]
    student = student if isinstance(student, StudentConfig) else StudentConfig(**student)
    if getattr(student, "init_checkpoint", None):
        # The caller loads trained weights that supersede the run's starting point; reading that (possibly
        # moved) checkpoint again would only cost time or fail.
        student = dataclasses.replace(student, init_checkpoint=None)
    _check_student_paths(student)
    return cls(**{**kwargs, "student": student})


def load_student_weights(module, ckpt: str | Path, checkpoint: Mapping[str, Any] | None = None) -> None:
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


def load_trained_student(module, ckpt: str | Path) -> int:
    """Load a checkpoint's (file or sharded) student weights into a configured module; returns its global step."""
    checkpoint = read_checkpoint(ckpt)
    load_student_weights(module, ckpt, checkpoint)
    return int(checkpoint.get("global_step") or 0)


def restore_module(ckpt: str | Path):
    """``(module, checkpoint)``: a ``DistillModule`` with the checkpoint's student, plus its non-weight part."""
    checkpoint = read_checkpoint(ckpt)
    module = module_from_hparams(checkpoint.get("hyper_parameters") or {})
    module.configure_model()  # no trainer attached: builds the plain (unsharded) student
    load_student_weights(module, ckpt, checkpoint)
    return module, checkpoint


# ---- writing ---------------------------------------------------------------------------------------------
def _prepare_output(output: Path, overwrite: bool) -> None:
    if output.exists() and any(output.iterdir()):
        # Stale files would mix two exports (transformers loads a directory with adapter_config.json as peft).
        if not overwrite:
            raise FileExistsError(f"{output} is not empty; choose a new directory or overwrite a previous export")
        if not (output / INFO_FILE).is_file():
            raise FileExistsError(f"{output} is not empty and holds no previous export ({INFO_FILE}); not deleting it")
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)


def _align_special_tokens(model: torch.nn.Module, tokenizer, from_config: bool) -> None:
    """Make the saved config/generation config decode like ``DistillModule.generate_text``.

    A student built from a config carries the model class's default ids (Llama: bos 1, eos 2), which mean
    nothing for our tokenizer: replace them. A pretrained student keeps its generation config; we only add
    the tokenizer's EOS (what training and evaluation stop on) and a pad id when it has none.
    """
    gen = getattr(model, "generation_config", None)
    targets = [c for c in (model.config, gen) if c is not None]
    if from_config:
        for c in targets:
            c.bos_token_id, c.eos_token_id, c.pad_token_id = (
                tokenizer.bos_token_id,
                tokenizer.eos_token_id,
                tokenizer.pad_token_id,
            )
        return
    if gen is not None:
        eos = gen.eos_token_id
        ids = [] if eos is None else list(eos) if isinstance(eos, list | tuple) else [eos]
        if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
            gen.eos_token_id = [tokenizer.eos_token_id, *ids] if ids else tokenizer.eos_token_id
        if gen.pad_token_id is None:
            gen.pad_token_id = tokenizer.pad_token_id


def write_student(
    student,
    tokenizer,
    student_config: StudentConfig,
    output: str | Path,
    merge_lora: bool = False,
    dtype: str | None = None,
    info: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a (plain, unsharded) ``Student`` as a ``save_pretrained`` directory; consumes ``student``.

    Args:
        student: The ``Student`` to write. Merging or unloading LoRA changes it in place: pass a throwaway.
        tokenizer: Saved beside the model (chat template included).
        student_config: How the student was built (for the base model reference and token ids).
        output: Directory to create.
        merge_lora: For a LoRA student, write the merged plain model instead of the adapter.
        dtype: Cast the weights before writing (``float32``, ``bfloat16``, ``float16``); None keeps them.
        info: Extra fields for ``lit_distill_export.json``.
        overwrite: Replace ``output`` if it holds a previous export.
    """
    output = Path(output)
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    _prepare_output(output, overwrite)
    lm = student.lm
    is_lora = hasattr(lm, "peft_config")
    if is_lora and merge_lora:
        lm = lm.merge_and_unload()  # merged in the training dtype, cast afterwards
    if dtype is not None:
        lm = lm.to(DTYPES[dtype])
    base = lm.get_base_model() if is_lora and not merge_lora else lm
    _align_special_tokens(base, tokenizer, from_config=student_config.path is None)
    record: dict[str, Any] = {**(info or {}), "merge_lora": bool(is_lora and merge_lora), "lora": is_lora}
    record["dtype"] = str(next(lm.parameters()).dtype).removeprefix("torch.")
    if is_lora and not merge_lora:
        # The adapter alone is useless without its base: point at the pretrained directory (or hub id), or
        # write the base here when the student was built from a config and exists nowhere else.
        reference = resolve_path(student_config.path) if student_config.path else str((output / BASE_DIR).resolve())
        for cfg in lm.peft_config.values():
            cfg.base_model_name_or_path = reference
        lm.save_pretrained(output)
        if student_config.path is None:
            lm.unload().save_pretrained(output / BASE_DIR)
        record["adapter"] = True
        record["base_model"] = reference
    else:
        lm.save_pretrained(output)
        record["adapter"] = False
    tokenizer.save_pretrained(output)
    (output / INFO_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return output


def export_checkpoint(
    ckpt: str | Path,
    output: str | Path,
    merge_lora: bool = False,
    dtype: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the student of a Lightning checkpoint (file or sharded directory) as a ``save_pretrained`` directory.

    Args:
        ckpt: ``last.ckpt`` file, or an FSDP2 sharded checkpoint directory.
        output: Directory to create (model or adapter, tokenizer, ``lit_distill_export.json``).
        merge_lora: For a LoRA run, write a plain merged model instead of the adapter plus base reference.
        dtype: Cast the weights (``float32``/``bfloat16``/``float16``); None keeps the training dtype.
        overwrite: Replace ``output`` if it holds a previous export.

    Returns:
        The output directory.
    """
    module, checkpoint = restore_module(ckpt)
    info = {
        "source_checkpoint": str(Path(ckpt).resolve()),
        "checkpoint_format": "sharded" if is_sharded_checkpoint(ckpt) else "file",
        "global_step": checkpoint.get("global_step"),
        "epoch": checkpoint.get("epoch"),
    }
    return write_student(
        module.student, module.tokenizer, module.student_config, output, merge_lora, dtype, info, overwrite
    )
