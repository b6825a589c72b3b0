"""Rebuilding a ``DistillModule`` from a training checkpoint (for the HF export and offline tools).

Sits above ``model/`` and ``checkpoint/``: the module is built from the checkpoint's ``hyper_parameters``
through ``DistillModule.configure_model`` (the code that built it for training), then its ``student.*``
weights are loaded strictly by ``lit_distill.checkpoint``.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lit_distill.checkpoint.read import load_student_weights, read_checkpoint
from lit_distill.model.module import DistillModule
from lit_distill.model.student import StudentConfig
from lit_distill.paths import resolve_path, scheme_of

log = logging.getLogger(__name__)


def _check_student_paths(student: StudentConfig) -> None:
    """Fail clearly when a local path the student was built from has gone (moved run, cleaned cache)."""
    for key, value in (("tokenizer", student.tokenizer_path), ("path", student.path)):
        if value is None or scheme_of(value):
            continue  # demo:// (and other registered) assets are rebuilt or fetched on demand
        resolved = Path(resolve_path(value))
        if (resolved.is_absolute() or value.startswith((".", "~"))) and not resolved.exists():
            what = "tokenizer" if key == "tokenizer" else "pretrained model (architecture and base weights)"
            raise FileNotFoundError(
                f"the checkpoint's student {what} was loaded from {value!r} (model.student.{key}), which no longer "
                "exists; the export rebuilds the student from it. Restore that directory (or a copy of it) there."
            )


def module_from_hparams(hparams: Mapping[str, Any], cls: type[DistillModule] | None = None) -> DistillModule:
    """A ``DistillModule`` (or subclass ``cls``) built from saved hyperparameters, student not yet configured.

    Accepts what Lightning stored: plain dicts (current), config dataclasses (older checkpoints) and the
    LightningCLI bookkeeping keys (``_instantiator``, ``_class_path``), which are dropped. The student's
    ``init_checkpoint`` is cleared: callers load the trained weights next.
    """
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


def restore_module(ckpt: str | Path) -> tuple[DistillModule, dict[str, Any]]:
    """``(module, checkpoint)``: a ``DistillModule`` with the checkpoint's student, plus its non-weight part."""
    checkpoint = read_checkpoint(ckpt)
    module = module_from_hparams(checkpoint.get("hyper_parameters") or {})
    module.configure_model()  # no trainer attached: builds the plain (unsharded) student
    load_student_weights(module, ckpt, checkpoint)
    return module, checkpoint
