"""Resuming trains the model and the optimiser settings the config describes, and says what differs.

LightningCLI would load a checkpoint's hyper-parameters over the config (``lit_distill.cli`` turns that off):
a resume then silently trained the checkpoint's model while ``config.yaml`` recorded the config's. Here the
config wins, checked when the checkpoint is loaded (``DistillModule.on_load_checkpoint``, before the weights):

* a model of another shape is refused with one line naming a differing tensor and both shapes
  (``CheckpointMismatchError``), and the hyper-parameters that explain it;
* optimiser settings given on resume (``--model.optimizer.lr``) replace the checkpoint's in the restored
  optimiser and scheduler state (Lightning would restore the old learning rate from them), with a warning;
* any other hyper-parameter that differs is named in a warning.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


class CheckpointMismatchError(ValueError):
    """The checkpoint's weights do not fit the model the config describes."""


def _flatten(d: Any, prefix: str = "model") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}"))
    return out


def hparam_differences(saved: dict, current: dict) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (checkpoint value, config value)}`` for every hyper-parameter that differs."""
    a, b = _flatten(dict(saved)), _flatten(dict(current))
    norm = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731 (YAML lists vs dataclass tuples)
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if norm(a.get(k)) != norm(b.get(k))}


def _shape(t) -> list[int]:
    return list(t.shape)


def check_state_dict(saved: dict, model: dict, source: str, differences: dict) -> None:
    """Raise ``CheckpointMismatchError`` (one line) if the checkpoint's tensors do not fit the model's."""
    mismatched = [k for k in saved if k in model and _shape(saved[k]) != _shape(model[k])]
    missing = [k for k in model if k not in saved]
    unexpected = [k for k in saved if k not in model]
    if not (mismatched or missing or unexpected):
        return
    if mismatched:
        k = mismatched[0]
        what = f"{k} is {_shape(saved[k])} in the checkpoint and {_shape(model[k])} in the config's model"
    elif missing:
        what = f"the checkpoint lacks {missing[0]} (and {len(missing) - 1} more)"
    else:
        what = f"the checkpoint has {unexpected[0]} the config's model lacks (and {len(unexpected) - 1} more)"
    counts = f"{len(mismatched)} shapes differ, {len(missing)} missing, {len(unexpected)} unexpected"
    model_keys = [k for k in differences if k.startswith(("model.student", "model.lora"))]
    why = "; ".join(f"{k}: checkpoint {differences[k][0]!r}, config {differences[k][1]!r}" for k in model_keys)
    raise CheckpointMismatchError(
        f"{source} does not fit the configured model: {what} ({counts}"
        + (f"; {why}" if why else "")
        + "). A resume trains the config's model: make model.student/model.lora match the checkpoint, or start"
        " a new run from its weights with model.student.init_checkpoint"
    )


def apply_optimizer_config(checkpoint: dict, optimizer: dict, saved_optimizer: dict) -> None:
    """Make the restored AdamW/LambdaLR state use the config's ``model.optimizer`` values."""
    new_lr, old_lr = float(optimizer["lr"]), float(saved_optimizer.get("lr", optimizer["lr"]))
    for opt_state in checkpoint.get("optimizer_states", []):
        for i, group in enumerate(opt_state.get("param_groups", [])):
            group["betas"] = tuple(optimizer["betas"])
            group["eps"] = optimizer["eps"]
            if i == 0:  # param_groups(): matrices first (decayed), then biases and norms (never decayed)
                group["weight_decay"] = optimizer["weight_decay"]
            if new_lr != old_lr:
                group["lr"] = group["lr"] * new_lr / old_lr
                group["initial_lr"] = new_lr
    if new_lr != old_lr:
        for sched in checkpoint.get("lr_schedulers", []):
            if "base_lrs" in sched:
                sched["base_lrs"] = [new_lr for _ in sched["base_lrs"]]
            if "_last_lr" in sched:
                sched["_last_lr"] = [lr * new_lr / old_lr for lr in sched["_last_lr"]]


def reconcile(checkpoint: dict, hparams: dict, model_state: dict, source: str) -> None:
    """Check ``checkpoint`` against the configured model (``hparams``, ``model_state``) and adapt its optimiser
    state to the config; see the module docstring."""
    saved = checkpoint.get("hyper_parameters") or {}
    differences = hparam_differences(saved, hparams) if saved else {}
    if "state_dict" in checkpoint:  # absent for sharded (directory) checkpoints, which the strategy loads
        check_state_dict(checkpoint["state_dict"], model_state, source, differences)
    if not differences:
        return
    if any(k.startswith("model.optimizer.") for k in differences) and "optimizer" in saved:
        apply_optimizer_config(checkpoint, hparams["optimizer"], saved["optimizer"])
    listed = ", ".join(f"{k}={new!r} (checkpoint: {old!r})" for k, (old, new) in differences.items())
    log.warning("resuming from %s with the config's values where they differ from the checkpoint's: %s", source, listed)
