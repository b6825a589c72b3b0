"""Hugging Face export: a training checkpoint's student as a ``save_pretrained`` directory.

A leaf that only writes: the checkpoint (single file or FSDP2 shards) is read by ``lit_distill.checkpoint``
and the student rebuilt by ``lit_distill.restore`` (through ``DistillModule.configure_model``, the code that
built it for training); this module writes the student with the tokenizer (so the chat template travels)
and a ``lit_distill_export.json`` record. LoRA students are written either as the peft adapter plus a
reference to its base model, or merged into a plain model. The same writer serves the ``HFExport``
callback at the end of a fit::

    from lit_distill.export import export_checkpoint
    export_checkpoint("runs/lit-distill/version_0/checkpoints/last.ckpt", "hf/", merge_lora=True)

or ``lit-distill export --ckpt ... --output ...`` (lit_distill/tools/export.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lit_distill.checkpoint.read import is_sharded_checkpoint
from lit_distill.model.student import DTYPES, StudentConfig
from lit_distill.paths import resolve_path
from lit_distill.restore import restore_module

log = logging.getLogger(__name__)

INFO_FILE = "lit_distill_export.json"
BASE_DIR = "base"  # where an unmerged adapter's base model goes when no pretrained directory holds it


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
    readable_by_others(output)
    return output


def readable_by_others(directory: Path) -> None:
    """Give every file under ``directory`` the mode a plain ``open()`` would (0666 minus the umask).

    safetensors writes ``model.safetensors`` with mode 0600 (a private temporary file renamed into place), so
    an export meant to be shared or served would be unreadable to everyone but its writer.
    """
    umask = os.umask(0)
    os.umask(umask)  # reading the umask means setting it: put it straight back
    mode = 0o666 & ~umask
    for path in directory.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)


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
