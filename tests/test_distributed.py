"""Two-process CPU runs (gloo): DDP and FSDP2 fits with the data-selection callbacks on, ranks in lockstep.

Launched as subprocesses of the real CLI (the launchers re-run sys.argv), with MASTER_PORT outside the
ephemeral range, OMP_NUM_THREADS=1 and a timeout. The fits are the session's shared two-process runs
(``conftest.ddp_lora_run``, ``conftest.fsdp2_run``), which tools/test_export.py exports as well.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import REPO, run_distributed, scalars

pytestmark = pytest.mark.multiprocess


def _hash_checks(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "stream_hashes.jsonl").read_text().splitlines()]
    assert rows, "no consistency checks recorded"
    for r in rows:
        assert len(r["hashes"]) == 2 and r["hashes"][0] == r["hashes"][1], r
    return rows


def test_ddp_fit_ranks_hold_identical_weights(ddp_lora_run):
    # The session's shared DDP run (conftest.ddp_lora_run: a LoRA student; tools/test_export.py exports it).
    run = ddp_lora_run
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
