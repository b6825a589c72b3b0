"""Optimiser and learning-rate schedule: AdamW with linear warm-up and cosine (or linear/constant) decay."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn


@dataclass
class OptimizerConfig:
    """AdamW.

    Args:
        lr: Peak learning rate.
        weight_decay: Decoupled weight decay, applied to matrices only (not to biases and norm weights).
        betas: Adam betas.
        eps: Adam epsilon.
    """

    lr: float = 2e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8


@dataclass
class SchedulerConfig:
    """Learning-rate schedule over the run's optimiser steps (``trainer.max_steps``).

    Args:
        warmup_steps: Linear warm-up steps; if unset, ``warmup_ratio`` of the run.
        warmup_ratio: Warm-up as a share of all steps when ``warmup_steps`` is unset.
        decay: ``cosine``, ``linear`` or ``constant`` after the warm-up.
        min_lr_ratio: The learning rate decays to this fraction of the peak.
    """

    warmup_steps: int | None = None
    warmup_ratio: float = 0.03
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = 0.1


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def lr_lambda(cfg: SchedulerConfig, total_steps: int):
    """Multiplier of the peak learning rate at each step."""
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else int(cfg.warmup_ratio * total_steps)

    def fn(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.decay == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        shape = 0.5 * (1 + math.cos(math.pi * progress)) if cfg.decay == "cosine" else 1 - progress
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * shape

    return fn


def build_optimizer(model: nn.Module, opt: OptimizerConfig, sched: SchedulerConfig, total_steps: int) -> dict:
    """The ``configure_optimizers`` return value (per-step scheduler)."""
    optimizer = torch.optim.AdamW(param_groups(model, opt.weight_decay), lr=opt.lr, betas=tuple(opt.betas), eps=opt.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(sched, total_steps))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
