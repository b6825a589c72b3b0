"""CUDA runs of the shipped strategy configs: FSDP1 (configs/strategy/fsdp.yaml) and FSDP2 (fsdp2.yaml), bf16.

Each fits the tiny Llama for a few steps through the real CLI on two GPUs (one if that is all there is), then
checks the loss is finite and decreasing, the checkpoint exists, and ``lit-distill export`` reads it. Skipped
where CUDA (or bf16 support) is missing, as on this project's CI machine, so these paths have not been run there.

    pytest -m cuda tests/test_gpu.py
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from helpers import REPO, run_cli, run_distributed, scalars, selection_callbacks, tiny_config, write_config

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(
        torch.cuda.is_available() and not torch.cuda.is_bf16_supported(), reason="needs a GPU with bf16"
    ),
]
STEPS = 12


def _devices() -> int:
    return min(torch.cuda.device_count(), 2)


def _fit(pool_dir, tokenizer_dir, tmp_path, strategy: str, *extra: str, selection: bool = False) -> Path:
    cfg = tiny_config(
        pool_dir, tokenizer_dir, tmp_path, **{"trainer.max_steps": STEPS, "trainer.val_check_interval": STEPS}
    )
    if selection:  # the data-selection callbacks score through the sharded model on every rank
        cfg.update(selection_callbacks(dmc_every=4, lark_every=6, probe_size=8, probe_questions=4, max_new_tokens=8))
    args = ["fit", "--config", str(write_config(cfg, tmp_path / "gpu.yaml")), "--config", str(REPO / strategy)]
    args += ["--trainer.accelerator", "gpu", "--trainer.devices", str(_devices()), *extra]
    out = run_distributed(args, timeout=600)
    assert out.returncode == 0, out.stderr[-4000:]
    run = tmp_path / "runs" / "tiny" / "version_0"
    losses = [v for _, v in scalars(run)["train/loss"]]
    assert len(losses) == STEPS and all(math.isfinite(v) for v in losses), losses
    assert sum(losses[-3:]) < sum(losses[:3]), f"the loss did not decrease: {losses}"
    assert "val/accuracy" in scalars(run)  # generation ran through the sharded model
    return run / "checkpoints" / "last.ckpt"


def _export(ckpt: Path, tmp_path) -> None:
    out = run_cli(["export", "--ckpt", str(ckpt), "--output", str(tmp_path / "hf")])
    assert out.returncode == 0, out.stderr[-3000:]
    assert (tmp_path / "hf" / "config.json").is_file()


def test_fsdp1_bf16_fit_writes_a_full_checkpoint(pool_dir, tokenizer_dir, tmp_path):
    ckpt = _fit(pool_dir, tokenizer_dir, tmp_path, "configs/strategy/fsdp.yaml")
    assert ckpt.is_file(), "state_dict_type: full should write one file"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == STEPS
    # Full state dicts carry the plain module names (no FSDP or activation-checkpointing wrapper prefixes).
    assert any(k.startswith("student.lm.model.layers.0.") for k in state["state_dict"]), list(state["state_dict"])[:5]
    _export(ckpt, tmp_path)


def test_fsdp2_bf16_fit_with_selection_writes_a_sharded_checkpoint(pool_dir, tokenizer_dir, tmp_path):
    bf16 = ["--model.sharding.param_dtype", "bfloat16", "--model.sharding.reduce_dtype", "float32"]
    ckpt = _fit(pool_dir, tokenizer_dir, tmp_path, "configs/strategy/fsdp2.yaml", *bf16, selection=True)
    assert ckpt.is_dir(), "FSDP2 writes sharded (directory) checkpoints"
    _export(ckpt, tmp_path)
