"""Shared pieces of the experiment scripts: run the real CLI with YAML overlays, read back the results.

Every run lives in its own folder under the experiment's output directory and is skipped when its
``summary.json`` exists, so an interrupted experiment resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def overlay(run_dir: Path, seed: int, steps: int, val_every: int, extra: dict) -> dict:
    """The YAML overlay for one run: its own log folder, seed, budget and evaluation cadence.

    The seed sets the data order (``seed_everything``, ``data.seed``) and the student's random
    initialisation (``model.student.init_seed``): seeds that shared one initialisation would understate
    the run-to-run spread an arm comparison has to beat. (A run that loads ``init_checkpoint`` takes its
    weights from there; give each seed its own warm checkpoint, see ``warm_checkpoint``.)
    """
    cfg = {
        "seed_everything": seed,
        "model": {"student": {"init_seed": seed}},
        "trainer": {
            "max_steps": steps,
            "val_check_interval": val_every,
            "enable_progress_bar": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(run_dir), "name": "", "version": ""},
            },
        },
        "data": {"seed": seed},
    }
    return merge(cfg, extra)


def merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def fit(run_dir: Path, cfg: dict, base: Path = DEMO, extra_args: list[str] | None = None) -> dict:
    """Run ``lit-distill fit`` once (cached) and return its summary."""
    run_dir.mkdir(parents=True, exist_ok=True)
    summary, written = run_dir / "summary.json", run_dir / "overlay.yaml"
    if summary.exists():
        # A cached run is only reused for the same settings: a run from older settings (e.g. before seeds
        # varied the initialisation) would silently stand in for the new arm.
        if written.exists() and yaml.safe_load(written.read_text()) != yaml.safe_load(yaml.safe_dump(cfg)):
            msg = f"{run_dir} holds a finished run with other settings ({written}); remove it or pass --out"
            raise RuntimeError(msg)
        return json.loads(summary.read_text())
    written.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = [
        sys.executable,
        "-m",
        "lit_distill.cli",
        "fit",
        "--config",
        str(base),
        "--config",
        str(run_dir / "overlay.yaml"),
    ]
    cmd += extra_args or []
    started = time.time()
    with open(run_dir / "log.txt", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **OFFLINE}, cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"run failed ({run_dir}); see {run_dir / 'log.txt'}")
    data = json.loads(summary.read_text())
    data["wall_seconds"] = time.time() - started
    summary.write_text(json.dumps(data, indent=2))
    return data


def warm_checkpoint(run_dir: Path, steps: int, seed: int = 0) -> str:
    """A starting student: ``steps`` on the uniform mixture, no DMC, no evaluation; cached like every run.

    ``seed`` sets its initialisation and data order, so arms that start from it differ per seed as from scratch.
    """
    cfg = overlay(run_dir, seed, steps, 10**9, {
        "data": {"mixture": {"policy": "uniform"}}, "dmc": None, "trainer": {"limit_val_batches": 0},
    })  # fmt: skip
    return fit(run_dir, cfg)["checkpoint"]


def add_common_arguments(p: argparse.ArgumentParser, name: str, arms: list[str]) -> None:
    """Options every experiment script takes; ``name`` picks the default run and report locations."""
    p.add_argument("--out", type=Path, default=REPO / "runs" / "experiments" / name)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--warmup-steps", type=int, default=150, help="steps of the shared warm student")
    p.add_argument("--arms", nargs="+", choices=arms, help="only these arms (parallel workers)")
    p.add_argument("--cached-only", action="store_true", help="report finished runs, start none")
    p.add_argument("--report", action="store_true", help="only rewrite the report from cached runs")
    p.add_argument("--doc", type=Path, default=REPO / "docs" / "experiments" / f"{name}.md")


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """The run's TensorBoard scalars (the reader `lit-distill compare` uses)."""
    from lit_distill.compare.report import read_scalars

    return read_scalars(run_dir)


def mean_std(values) -> str:
    v = np.asarray(values, dtype=float)
    return f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0.0:.3f}"


def steps_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    """First evaluation step (1-based optimiser steps) whose accuracy reaches ``target``."""
    for step, value in curve:
        if value >= target - 1e-9:
            return step + 1
    return None
