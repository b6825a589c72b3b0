"""End to end through the real console entry point: fit a tiny config, resume it, validate data.

The fit and its resume are the session's shared run (``conftest.cli_run``): 4 steps with DMC and the HFExport
callback, then ``--ckpt_path last`` to step 6.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lit_distill import cli

from helpers import run_cli, scalars, tiny_config, write_config, write_jsonl


def test_fit_writes_checkpoint_config_and_scalars(cli_run):
    run, out = cli_run.run, cli_run.first
    assert (run / "config.yaml").exists() and (run / "summary.json").exists()
    ckpt = cli_run.last_ckpt
    assert "Held-out accuracy" in out.stdout and str(ckpt) in out.stdout
    series = cli_run.first_scalars
    for key in ("train/loss", "train/tokens_per_sec", "train/lr", "val/accuracy", "val/accuracy/easy"):
        assert key in series, sorted(series)
    assert {f"train/loss/{n}" for n in ("concise", "verbose", "noisy", "hard")} <= set(series)
    # Lightning's x-axis: a metric logged after optimiser step k sits at k - 1.
    assert [s for s, _ in series["train/loss"]] == [0, 1, 2, 3]
    state = torch.load(cli_run.first_ckpt, weights_only=True, map_location="cpu")
    assert state["global_step"] == 4
    assert state["DistillDataModule"]["sampler"]["step"] == 4
    assert any(k.startswith("student.lm.model.layers.0") for k in state["state_dict"])

    # `--ckpt_path last` with the default (per-version) checkpoint directory continues this run in place.
    assert not (run.parent / "version_1").exists()
    state = torch.load(ckpt, weights_only=True, map_location="cpu")
    assert state["global_step"] == 6 and state["DistillDataModule"]["sampler"]["step"] == 6
    assert [s for s, _ in scalars(run)["train/loss"]] == [0, 1, 2, 3, 4, 5]


# Opt-in: tools/test_export.py::test_lora_export_merged_and_adapter fits the same from-pretrained LoRA student
# through the CLI (under DDP) and checks its checkpoint's lora_A/lora_B tensors, exported merged and as adapter.
@pytest.mark.slow
def test_fit_from_pretrained_with_lora(pool_dir, model_dir, tmp_path):
    cfg = tiny_config(pool_dir, model_dir, tmp_path, **{"trainer.max_steps": 2, "trainer.val_check_interval": 2})
    cfg["model"]["student"] = {"path": model_dir}
    cfg["model"]["lora"] = {"r": 4, "alpha": 8}
    out = run_cli(["fit", "--config", str(write_config(cfg, tmp_path / "lora.yaml"))])
    assert out.returncode == 0, out.stderr[-3000:]
    state = torch.load(next(Path(tmp_path / "runs").rglob("last.ckpt")), weights_only=True, map_location="cpu")
    assert any("lora_A" in k for k in state["state_dict"])


def test_data_command_reports_and_fails_clearly(pool_dir, tokenizer_dir, tmp_path, capsys):
    # In-process (cli.main dispatches as the console script does): a subprocess would only add imports.
    cfg = write_config(tiny_config(pool_dir, tokenizer_dir, tmp_path), tmp_path / "tiny.yaml")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["data", str(cfg)])
    out = capsys.readouterr()
    assert exit_.value.code == 0, out.err[-2000:]
    assert "concise" in out.out and "examples" in out.out and "evaluation sets" in out.out
    bad = write_jsonl(tmp_path / "bad.jsonl", ['{"prompt": "Q", "response": "A"}', "{oops"])
    with pytest.raises(SystemExit) as exit_:
        cli.main(["data", str(bad), "--tokenizer", tokenizer_dir])
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert "bad.jsonl" in err and "line 2" in err  # 1-based file lines
