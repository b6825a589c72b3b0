"""Exact resume after SIGKILL: a CLI fit killed twice mid-epoch and resumed with ``--ckpt_path last`` trains on
the same batches, with the same losses and the same final mixture and example weights, as an uninterrupted fit.

The runs go through the real entry point (``python -m lit_distill.cli fit``) with DMC, LARK and the stream
consistency check on. ``Crash`` (below, imported by the subprocess from this file) records every batch's pool
indices and SIGKILLs its own process at a given step, after the step's checkpoint was written: a kill that no
``finally`` or signal handler gets to see. Each run is ~10 s on two CPU cores; the uninterrupted reference run
has no DataLoader workers, the killed and resumed ones switch between none and two (the data stream must not
depend on DataLoader workers, which only carry tickets).

A last test tears a checkpoint write half-way with SIGKILL (``TearCheckpointWrite``) and checks that the
previous ``last.ckpt`` survives, with ``$TMPDIR`` on another filesystem (where Lightning's default save is a
copy into place and does not survive; ``lit_distill.checkpoint.AtomicCheckpointIO`` does).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

from helpers import run_cli, scalars, selection_callbacks, tiny_config, write_config

MAX_STEPS = 6
EVERY = 2  # checkpoint cadence (optimiser steps)
TESTS_DIR = str(Path(__file__).resolve().parent)


class Crash(pl.Callback):
    """Appends ``{"step", "index"}`` per training batch to ``record``; SIGKILLs the process at ``kill_at``.

    The kill happens at the start of the batch that would become step ``kill_at + 1``, so the checkpoint of
    step ``kill_at`` (when due) and every callback refresh of that step have run, and nothing after.

    Args:
        record: JSONL file of batch indices (flushed per line, so a kill loses none).
        kill_at: Optimiser steps completed when the process kills itself; None runs to the end.
    """

    def __init__(self, record: str, kill_at: int | None = None) -> None:
        self.record = record
        self.kill_at = kill_at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.kill_at is not None and trainer.global_step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        with open(self.record, "a") as fh:
            fh.write(json.dumps({"step": trainer.global_step, "index": batch["index"].tolist()}) + "\n")
            fh.flush()


class TearCheckpointWrite(pl.Callback):
    """Makes the checkpoint save of step ``at_step`` die half-way through writing a file, by SIGKILL.

    Both ways a checkpoint file gets written are torn: ``torch.save`` into a file (half the bytes reach it) and
    the copy ``shutil.move`` falls back to across filesystems (Lightning's own save writes to ``$TMPDIR`` and
    moves the file into place). Serialising into memory is left alone. Installed in ``on_train_batch_end``,
    which runs before ModelCheckpoint's (Lightning orders checkpoint callbacks last).
    """

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step != self.at_step:
            return
        real_save = torch.save

        def torn_save(obj, f, *args, **kwargs):
            if isinstance(f, io.BytesIO):
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            if isinstance(f, str | os.PathLike):
                f = open(f, "wb")  # noqa: SIM115 (the process dies holding it)
            f.write(data[: len(data) // 2])
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        def torn_copy(fsrc, fdst, *args, **kwargs):
            fdst.write(fsrc.read(max(os.fstat(fsrc.fileno()).st_size // 2, 1)))
            fdst.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = torn_save
        shutil.copyfileobj = torn_copy
        shutil._fastcopy_sendfile = torn_copy  # what shutil.copyfile uses on Linux


def _run(
    inputs: tuple,
    base: Path,
    phase: str,
    ckpt_dir: Path,
    num_workers: int = 0,
    kill_at: int | None = None,
    resume: bool = False,
    selection: bool = True,
    callbacks: tuple[dict, ...] = (),
    env: dict | None = None,
    **over,
) -> tuple[Path, object]:
    """One CLI fit; returns its log directory and the process result. Phases differ only in the logger directory
    and the kill step."""
    cfg = tiny_config(
        *inputs,
        base / phase,
        **{
            "trainer.max_steps": MAX_STEPS,
            "trainer.limit_val_batches": 0,  # generation-based evaluation is not what is tested here
            "data.num_workers": num_workers,
            "checkpoint.dirpath": str(ckpt_dir),
            "checkpoint.every_n_train_steps": EVERY,
            **over,
        },
    )
    cfg["data"].pop("eval_sources")
    if selection:
        cfg.update(selection_callbacks(probe_questions=2, problems_per_refresh=6))
    record = base / phase / "batches.jsonl"
    crash = {"class_path": "test_resume.Crash", "init_args": {"record": str(record), "kill_at": kill_at}}
    cfg["trainer"]["callbacks"] = [crash, *callbacks]
    path = write_config(cfg, base / f"{phase}.yaml")
    args = ["fit", "--config", str(path)] + (["--ckpt_path", "last"] if resume else [])
    pythonpath = os.pathsep.join(filter(None, [TESTS_DIR, os.environ.get("PYTHONPATH")]))
    out = run_cli(args, timeout=240, env={"PYTHONPATH": pythonpath, **(env or {})})
    if resume:
        assert "no last checkpoint available" not in out.stderr, "the resumed run started from scratch"
    return base / phase / "runs" / "tiny" / "version_0", out


def _fit(*args, **kwargs) -> Path:
    """``_run`` that must end as planned: killed at ``kill_at`` or finished."""
    run, out = _run(*args, **kwargs)
    if kwargs.get("kill_at") is None:
        assert out.returncode == 0, out.stderr[-4000:]
    else:
        assert out.returncode == -signal.SIGKILL, (out.returncode, out.stderr[-4000:])
    return run


def _batches(run: Path) -> dict[int, list[int]]:
    rows = [json.loads(line) for line in (run.parents[2] / "batches.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)), f"a step trained twice in one run: {steps}"
    return {r["step"]: r["index"] for r in rows}


def _hashes(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stream_hashes.jsonl").read_text().splitlines()]


def _state(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)


def _callback_state(state: dict, name: str) -> dict:
    (key,) = [k for k in state["callbacks"] if name in k]
    return state["callbacks"][key]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, pool_dir, tokenizer_dir) -> Path:
    """The uninterrupted fit (no DataLoader workers) that every interrupted one must reproduce."""
    base = tmp_path_factory.mktemp("reference")
    return _fit((pool_dir, tokenizer_dir), base, "full", base / "ckpt")


# Two kills in one epoch: the first without DataLoader workers, the second with two (whose prefetched tickets die
# with them). The resumed runs use two workers, so a resume is checked from a run with and one without workers
# (the stream lives in the main process; workers only carry tickets). One chain of runs instead of one per
# worker count: each run is a process start (~10 s on two busy cores).
KILLS = (3, 5)
WORKERS = (0, 2, 2)  # per run: killed at 3, killed at 5, finished


def test_sigkill_and_resume_reproduce_the_uninterrupted_run(reference, pool_dir, tokenizer_dir, tmp_path):
    inputs, ckpt_dir, kills = (pool_dir, tokenizer_dir), tmp_path / "ckpt", KILLS
    runs = []
    for i, (kill_at, workers) in enumerate(zip((*kills, None), WORKERS, strict=True)):
        runs.append(_fit(inputs, tmp_path, f"run{i}", ckpt_dir, workers, kill_at=kill_at, resume=i > 0))
        if kill_at is not None:  # the kill lost the steps after the last checkpoint, not the checkpoint
            assert _state(ckpt_dir / "last.ckpt")["global_step"] == kill_at // EVERY * EVERY

    # Data order: each run trained exactly the reference's batches for the steps it covered, starting where
    # the last checkpoint left off (the steps after it, lost with the kill, are trained again).
    want = _batches(reference)
    starts = [0] + [k // EVERY * EVERY for k in kills]
    ends = [*kills, MAX_STEPS]
    for run, start, end in zip(runs, starts, ends, strict=True):
        got = _batches(run)
        assert sorted(got) == list(range(start, end)), (run, sorted(got))
        for step, index in got.items():
            assert index == want[step], f"{run.parents[2].name}: step {step} drew {index}, reference {want[step]}"

    # Stream state: the hash of (sampler, example weights, loss weights) after every step, and at the start of a
    # resumed fit (the restored state), equals the reference's at that step.
    ref_hashes = {r["step"]: r["hashes"] for r in _hashes(reference) if r["where"] == "step"}
    for run, start in zip(runs[1:], starts[1:], strict=True):
        rows = _hashes(run)
        assert rows[0] == {"step": start, "where": "fit_start", "hashes": ref_hashes[start]}, rows[0]
        for r in rows[1:]:
            assert r["hashes"] == ref_hashes[r["step"]], r

    # Losses of the resumed steps (a metric logged after optimiser step k sits at k - 1).
    ref_loss = dict(scalars(reference)["train/loss"])
    for run, start, end in zip(runs[1:], starts[1:], ends[1:], strict=True):
        series = scalars(run)["train/loss"]
        assert [s for s, _ in series] == list(range(start, end)), series
        for step, loss in series:
            assert loss == pytest.approx(ref_loss[step], abs=1e-6), (run, step, loss, ref_loss[step])

    # The final state: mixture, example and loss weights, sampler position, callback histories, parameters.
    ref, got = _state(reference.parents[2].parent / "ckpt" / "last.ckpt"), _state(ckpt_dir / "last.ckpt")
    assert got["global_step"] == ref["global_step"] == MAX_STEPS
    dm_ref, dm_got = ref["DistillDataModule"], got["DistillDataModule"]
    assert dm_got["consumed"] == dm_ref["consumed"] == MAX_STEPS
    assert torch.equal(dm_got["loss_weights"], dm_ref["loss_weights"])
    s_ref, s_got = dm_ref["sampler"], dm_got["sampler"]
    assert s_got["step"] == s_ref["step"] and s_got["history"] == s_ref["history"]
    assert len(s_ref["history"]) > 1, "DMC never changed the mixture: the test would not see a lost update"
    assert torch.equal(s_got["source_weights"], s_ref["source_weights"])
    assert all(torch.equal(a, b) for a, b in zip(s_got["example_weights"], s_ref["example_weights"], strict=True))
    assert any((w == 0).any() for w in s_ref["example_weights"]), "LARK deselected nothing"
    assert torch.equal(s_got["passes"], s_ref["passes"]) and torch.equal(s_got["position"], s_ref["position"])
    dmc_ref, dmc_got = _callback_state(ref, "DMCCallback"), _callback_state(got, "DMCCallback")
    assert [h["step"] for h in dmc_got["history"]] == [h["step"] for h in dmc_ref["history"]] == [0, 2, 4]
    for a, b in zip(dmc_got["history"], dmc_ref["history"], strict=True):
        assert a["weights"] == pytest.approx(b["weights"], abs=1e-12)
    lark_ref, lark_got = _callback_state(ref, "LARKCallback"), _callback_state(got, "LARKCallback")
    assert [h["step"] for h in lark_got["history"]] == [h["step"] for h in lark_ref["history"]] == [0, 3]
    for name, p in ref["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][name], p, atol=1e-6, rtol=0, msg=name)


def _other_filesystem(near: Path):
    """A fresh directory on another filesystem than ``near`` ($TMPDIR, the system temp dir or tmpfs /dev/shm),
    or None when every candidate shares ``near``'s filesystem."""
    candidates = [os.environ.get("TMPDIR"), tempfile.gettempdir(), "/dev/shm"]
    for c in filter(None, candidates):
        path = Path(c)
        if path.is_dir() and os.access(path, os.W_OK) and path.stat().st_dev != near.stat().st_dev:
            return Path(tempfile.mkdtemp(prefix="lit-distill-tmpdir-", dir=path))
    return None


def test_kill_during_a_checkpoint_write_keeps_the_previous_checkpoint(pool_dir, tokenizer_dir, tmp_path):
    """The save of step 4 is torn half-way by SIGKILL; ``last.ckpt`` must still be step 2's, whole.

    ``$TMPDIR`` is put on another filesystem, as on clusters with node-local /tmp: there Lightning's default
    save ends in a copy into ``last.ckpt`` and this test fails without ``AtomicCheckpointIO``.
    """
    ckpt_dir = tmp_path / "ckpt"
    other = _other_filesystem(tmp_path)
    if other is None:
        # On one filesystem Lightning's own save is a rename too: the test could not tell the two apart.
        pytest.skip("no writable directory on another filesystem than the checkpoints (tried $TMPDIR, /dev/shm)")
    tear = {"class_path": "test_resume.TearCheckpointWrite", "init_args": {"at_step": 4}}
    try:
        _, out = _run(
            (pool_dir, tokenizer_dir),
            tmp_path,
            "torn",
            ckpt_dir,
            selection=False,
            callbacks=(tear,),
            env={"TMPDIR": str(other)},
            **{"trainer.plugins": {"class_path": "lit_distill.checkpoint.AtomicCheckpointIO"}},
        )
    finally:
        shutil.rmtree(other, ignore_errors=True)
    assert out.returncode == -signal.SIGKILL, ("the save was not torn", out.returncode, out.stderr[-3000:])
    state = _state(ckpt_dir / "last.ckpt")
    assert state["global_step"] == 2
    assert state["DistillDataModule"]["sampler"]["step"] == 2
    # The torn bytes are in a hidden temporary beside it, which `--ckpt_path last` does not pick up.
    leftovers = sorted(p.name for p in ckpt_dir.iterdir() if p.name != "last.ckpt")
    assert leftovers and all(n.startswith(".last.ckpt.") and not n.endswith(".ckpt") for n in leftovers), leftovers
