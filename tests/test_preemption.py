"""Preemption through the real entry point: SIGTERM (and SLURM's requeue signal) mid-step finishes the optimiser
step, writes ``last.ckpt`` at that step, exits with status 143, and ``--ckpt_path last`` continues exactly.

``Signal`` (imported by the subprocess from this file) records every micro-batch's pool indices and sends a
signal to its own process at the first micro-batch of a given optimiser step (gradient accumulation 2), so
the signal lands in the middle of a step, deterministically. The checkpoint cadence (every 4 steps) is chosen
so that only the preemption can have written the checkpoint of step 3.
"""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from helpers import callback, free_port, run_cli, tiny_config, write_config

TESTS_DIR = str(Path(__file__).resolve().parent)
MAX_STEPS = 6
SIGNAL_AT = 2  # optimiser steps done when the signal arrives (during the first micro-batch of step 3)


class Signal(pl.Callback):
    """Appends ``{"step", "index"}`` per micro-batch to ``record``; sends ``signum`` to itself at ``at_step``.

    Args:
        record: JSONL file of batch indices.
        at_step: Optimiser steps completed when the signal is sent (at the step's first micro-batch); -1 sends
            it in ``on_train_start``, before ``Preemption`` has replaced Lightning's handler.
        signum: The signal number.
        rank: Only this rank signals itself (the others must learn of it at the step boundary).
    """

    def __init__(
        self, record: str, at_step: int | None = None, signum: int = int(signal.SIGTERM), rank: int = 0
    ) -> None:
        self.record = record
        self.at_step = at_step
        self.signum = signum
        self.rank = rank
        self.sent = False

    def on_train_start(self, trainer, pl_module) -> None:
        if self.at_step == -1 and trainer.global_rank == self.rank:
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_rank == 0:
            with open(self.record, "a") as fh:
                fh.write(json.dumps({"step": trainer.global_step, "index": batch["index"].tolist()}) + "\n")
        if trainer.global_step == self.at_step and trainer.global_rank == self.rank and not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signum)


def _run(inputs, base: Path, phase: str, at_step=None, resume=False, signum=signal.SIGTERM, env=None, **over):
    cfg = tiny_config(
        *inputs,
        base / phase,
        **{
            "trainer.max_steps": MAX_STEPS,
            "trainer.accumulate_grad_batches": 2,
            **over,
            "trainer.limit_val_batches": 0,
            "checkpoint.dirpath": str(base / "ckpt"),
            "checkpoint.every_n_train_steps": 4,
        },
    )
    cfg["data"].pop("eval_sources")
    cfg["dmc"] = callback(
        "dmc.DMCCallback", every_n_steps=2, probe_size=6, probe_questions=2, batch_size=8, max_new_tokens=4
    )
    # A LARK refresh at the step the preemption saves: it must be in the checkpoint (callback order).
    cfg["lark"] = callback("lark.LARKCallback", budget=2, every_n_steps=3, problems_per_refresh=6, batch_size=8)
    cfg["consistency"] = callback("consistency.StreamConsistency", every_n_steps=1)
    record = base / phase / "batches.jsonl"
    sig = {
        "record": str(record),
        "at_step": at_step,
        "signum": int(signum),
        "rank": 1 if "trainer.strategy" in over else 0,
    }
    cfg["trainer"]["callbacks"] = [{"class_path": "test_preemption.Signal", "init_args": sig}]
    args = ["fit", "--config", str(write_config(cfg, base / f"{phase}.yaml"))] + (["--ckpt_path", "last"] * resume)
    pythonpath = os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")]))
    out = run_cli(args, timeout=300, env={"PYTHONPATH": pythonpath, **(env or {})})
    return base / phase / "runs" / "tiny" / "version_0", out


def _batches(run: Path) -> dict[int, list[list[int]]]:
    out: dict[int, list[list[int]]] = {}
    for line in (run.parents[2] / "batches.jsonl").read_text().splitlines():
        row = json.loads(line)
        out.setdefault(row["step"], []).append(row["index"])
    return out


def _hashes(run: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run / "stream_hashes.jsonl").read_text().splitlines()]
    return {r["step"]: r["hashes"] for r in rows if r["where"] == "step"}


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, pool_dir, tokenizer_dir) -> Path:
    base = tmp_path_factory.mktemp("reference")
    run, out = _run((pool_dir, tokenizer_dir), base, "full")
    assert out.returncode == 0, out.stderr[-4000:]
    return run


def test_sigterm_saves_the_step_exits_143_and_resumes_exactly(reference, pool_dir, tokenizer_dir, tmp_path):
    inputs = (pool_dir, tokenizer_dir)
    first, out = _run(inputs, tmp_path, "preempted", at_step=SIGNAL_AT)
    assert out.returncode == 143, (out.returncode, out.stderr[-4000:])
    assert "preempted: wrote" in out.stderr
    state = _state(tmp_path / "ckpt" / "last.ckpt")
    # The step the signal interrupted was finished (both micro-batches) and saved.
    assert state["global_step"] == SIGNAL_AT + 1
    assert state["DistillDataModule"]["consumed"] == 2 * (SIGNAL_AT + 1)  # micro-batches
    want = _batches(reference)
    got = _batches(first)
    assert sorted(got) == list(range(SIGNAL_AT + 1)) and all(len(v) == 2 for v in got.values()), got
    assert all(got[s] == want[s] for s in got)

    second, out = _run(inputs, tmp_path, "resumed", resume=True)
    assert out.returncode == 0, out.stderr[-4000:]
    got = _batches(second)
    assert sorted(got) == list(range(SIGNAL_AT + 1, MAX_STEPS)), sorted(got)
    assert all(got[s] == want[s] for s in got), "the resumed run drew other batches"
    ref_hashes = _hashes(reference)
    for step, hashes in {**_hashes(first), **_hashes(second)}.items():
        assert hashes == ref_hashes[step], step
    ref, end = _state(reference.parents[2].parent / "ckpt" / "last.ckpt"), _state(tmp_path / "ckpt" / "last.ckpt")
    assert end["global_step"] == ref["global_step"] == 4  # the cadence's last save
    assert sorted(p.name for p in (tmp_path / "ckpt").glob("*.ckpt")) == ["last.ckpt"]  # not last-v1.ckpt
    lark = next(v for k, v in end["callbacks"].items() if "LARKCallback" in k)
    assert [h["step"] for h in lark["history"]] == [0, 3]
    for name, p in ref["state_dict"].items():
        torch.testing.assert_close(end["state_dict"][name], p, atol=1e-6, rtol=0, msg=name)


def test_slurm_requeue_signal_saves_requeues_and_exits_143(reference, pool_dir, tokenizer_dir, tmp_path):
    """SLURM detected (its environment variables) with Lightning's auto-requeue: SIGUSR1 mid-step saves the step
    and runs ``scontrol requeue <job>`` (a stand-in on PATH that records its arguments)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    scontrol.chmod(scontrol.stat().st_mode | stat.S_IEXEC)
    slurm = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_NTASKS": "1",
        "SLURM_JOB_NAME": "distill",
        "SLURM_JOB_ID": "4242",
        "SLURM_NODELIST": "localhost",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
    }
    _, out = _run((pool_dir, tokenizer_dir), tmp_path, "slurm", at_step=SIGNAL_AT, signum=signal.SIGUSR1, env=slurm)
    assert out.returncode == 143, (out.returncode, out.stderr[-4000:])
    assert _state(tmp_path / "ckpt" / "last.ckpt")["global_step"] == SIGNAL_AT + 1
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"]
    assert not list(tmp_path.rglob("hpc_ckpt_*.ckpt")), "Lightning's mid-step requeue checkpoint was written"


def test_sigterm_before_the_handler_is_replaced_still_finishes_the_step(pool_dir, tokenizer_dir, tmp_path):
    """A SIGTERM that Lightning's handler caught (here in on_train_start) is taken over: the first step is
    finished (both micro-batches) and saved, instead of Lightning stopping after one micro-batch with nothing."""
    run, out = _run((pool_dir, tokenizer_dir), tmp_path, "early", at_step=-1)
    assert out.returncode == 143, (out.returncode, out.stderr[-4000:])
    assert _state(tmp_path / "ckpt" / "last.ckpt")["global_step"] == 1
    assert [len(v) for v in _batches(run).values()] == [2]


FSDP2 = {"class_path": "lit_distill.strategies.FSDP2Strategy", "init_args": {"save_distributed_checkpoint": True}}


@pytest.mark.multiprocess
# The FSDP2 variant is opt-in (-m slow, ~1 min): the default suite keeps the DDP variant, and FSDP2's sharded
# save/resume path is covered by tests/test_distributed.py; this keeps `make test` under 10 minutes on 2 cores.
@pytest.mark.parametrize("strategy", ["ddp", pytest.param(FSDP2, marks=pytest.mark.slow)], ids=["ddp", "fsdp2"])
def test_ranks_agree_on_the_step_when_one_rank_is_signalled(pool_dir, tokenizer_dir, tmp_path, strategy):
    """Two processes (gloo); only rank 1 receives SIGTERM. Both stop after the same step, the checkpoint is of
    that step (a sharded directory under FSDP2), the launcher exits 143, and the resumed run continues from it
    with the ranks in lockstep."""
    ddp = {"trainer.strategy": strategy, "trainer.devices": 2, "trainer.accumulate_grad_batches": 1}
    port = {"MASTER_PORT": str(free_port())}
    _, out = _run((pool_dir, tokenizer_dir), tmp_path, "first", at_step=SIGNAL_AT, env=port, **ddp)
    assert out.returncode == 143, (out.returncode, out.stderr[-4000:])
    assert f"at optimiser step {SIGNAL_AT + 1}; exiting with status 143" in out.stderr, out.stderr[-4000:]
    last = tmp_path / "ckpt" / "last.ckpt"
    if last.is_file():
        assert _state(last)["global_step"] == SIGNAL_AT + 1
    else:
        assert strategy is FSDP2 and last.is_dir()
    port = {"MASTER_PORT": str(free_port())}
    run, out = _run((pool_dir, tokenizer_dir), tmp_path, "resumed", resume=True, env=port, **ddp)
    assert out.returncode == 0, out.stderr[-4000:]
    rows = [json.loads(line) for line in (run / "stream_hashes.jsonl").read_text().splitlines()]
    # (Under FSDP2 the checkpoint is restored after on_fit_start, so the fit_start row still says step 0.)
    assert sorted(_batches(run)) == list(range(SIGNAL_AT + 1, MAX_STEPS))
    # Checked after every step but the last (the SelectionCallback schedule runs nothing after the last step).
    assert [r["step"] for r in rows if r["where"] == "step"] == list(range(SIGNAL_AT + 2, MAX_STEPS))
    assert all(len(r["hashes"]) == 2 and r["hashes"][0] == r["hashes"][1] for r in rows), rows
