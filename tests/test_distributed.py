"""Two-process CPU runs (gloo): DDP and FSDP2 fits with the data-selection callbacks on, ranks in lockstep.

Launched as subprocesses of the real CLI (the launchers re-run sys.argv), with MASTER_PORT outside the
ephemeral range, OMP_NUM_THREADS=1 and a timeout.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import REPO, run_distributed, scalars, selection_callbacks, set_dotted, tiny_config, write_config

pytestmark = pytest.mark.multiprocess


def _config(pool_dir, tokenizer_dir, tmp_path, **over) -> Path:
    cfg = tiny_config(pool_dir, tokenizer_dir, tmp_path, **{"trainer.max_steps": 6, "trainer.val_check_interval": 6})
    cfg.update(selection_callbacks(dmc_batch_size=4, max_new_tokens=6))
    return write_config(set_dotted(cfg, over), tmp_path / "dist.yaml")


def _hash_checks(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "stream_hashes.jsonl").read_text().splitlines()]
    assert rows, "no consistency checks recorded"
    for r in rows:
        assert len(r["hashes"]) == 2 and r["hashes"][0] == r["hashes"][1], r
    return rows


def test_ddp_fit_ranks_hold_identical_weights(pool_dir, tokenizer_dir, tmp_path):
    cfg = _config(pool_dir, tokenizer_dir, tmp_path)
    out = run_distributed(["fit", "--config", str(cfg), "--config", str(REPO / "configs/strategy/ddp.yaml")])
    assert out.returncode == 0, out.stderr[-4000:]
    run = tmp_path / "runs" / "tiny" / "version_0"
    checks = _hash_checks(run)
    assert [r["step"] for r in checks] == [0, 1, 2, 3, 4, 5]  # none after the last step (SelectionCallback)
    assert (run / "checkpoints" / "last.ckpt").is_file()
    series = scalars(run)
    assert len(series["mixture/noisy"]) == 3 and "val/accuracy" in series
    assert len(series["lark/rho_mean"]) == 2  # fit start and step 3


def test_fsdp2_fit_and_resume_from_sharded_checkpoint(fsdp2_run):
    # The fit is the session's shared FSDP2 run (conftest.fsdp2_run, also exported by tools/test_export.py).
    strategy = str(REPO / "configs/strategy/fsdp2.yaml")
    cfg, first = fsdp2_run
    _hash_checks(first)
    sharded = first / "checkpoints" / "epoch=0-step=3.ckpt"
    assert sharded.is_dir(), "FSDP2 should write a sharded (directory) checkpoint"
    out = run_distributed(["fit", "--config", str(cfg), "--config", strategy, "--ckpt_path", str(sharded)])
    assert out.returncode == 0, out.stderr[-4000:]
    resumed = first.parent / "version_1"
    _hash_checks(resumed)
    full, again = scalars(first)["train/loss"], scalars(resumed)["train/loss"]
    tail = dict(full)
    assert [s for s, _ in again] == [3, 4, 5]
    for step, loss in again:
        assert loss == pytest.approx(tail[step], abs=1e-5), (step, loss, tail[step])
