"""Run every arm x seed of a study through the normal ``lit-distill fit`` path, cached and resumable.

A run is one ``lit-distill fit`` subprocess with the study's base configs, then the arm's overlays, then a
per-run overlay (seed, log folder, token budget), exactly as a user would compose them on the command line.
Its folder ``<output>/runs/<arm>/seed<s>/`` holds the TensorBoard events, ``summary.json``, ``log.txt``,
``checkpoints/last.ckpt`` and ``fingerprint.txt`` (a hash of everything that defines the run). A finished run
(summary present, same fingerprint) is reused; an interrupted one resumes from its ``last.ckpt``; a finished
run whose configs changed is refused, so a report never silently mixes two versions of an arm.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@dataclass(frozen=True)
class Arm:
    """One arm: a name and the overlay configs composed after the base configs (none = the base itself)."""

    name: str
    configs: tuple[Path, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Arm:
        """``name=a.yaml[,b.yaml]`` or ``name=`` (the base config alone).

        A path may contain ``{seed}`` (e.g. a per-seed mixture written by an earlier study); it is filled in
        per run and checked when the study is built, for every seed.
        """
        name, sep, paths = text.partition("=")
        if not sep or not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(
                f"--arm takes NAME=CONFIG[,CONFIG...] with a NAME of letters, digits, - and _; got {text!r}"
            )
        configs = tuple(Path(p) for p in paths.split(",") if p)
        for p in configs:
            if SEED not in str(p) and not p.is_file():
                raise FileNotFoundError(f"arm {name!r}: config {p} does not exist")
        return cls(name, configs)


SEED = "{seed}"


def for_seed(path: Path | str, seed: int) -> Path:
    """``path`` with ``{seed}`` replaced by the run's seed."""
    return Path(str(path).replace(SEED, str(seed)))


@dataclass
class Study:
    """What to run.

    Attributes:
        base: Configs every arm starts from (composed in order, as repeated ``--config``).
        arms: The arms; names must be unique.
        seeds: Seeds; seed s sets ``seed_everything``, ``data.seed`` and ``model.student.init_seed``.
        output: Study folder (runs, report).
        max_tokens: Token budget per run (``TokenBudget``); None keeps the configs' step budget.
        fit_args: Extra command-line overrides passed to every fit (after all configs); ``{seed}`` in a config
            path or an override is replaced by the run's seed (per-seed warm students, per-seed mixtures).
        parallel: Runs at a time; each gets ``cpu_count // parallel`` torch threads.
    """

    base: tuple[Path, ...]
    arms: list[Arm]
    seeds: list[int]
    output: Path
    max_tokens: int | None = None
    fit_args: list[str] = field(default_factory=list)
    parallel: int = 1

    def __post_init__(self) -> None:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if not self.arms or not self.seeds:
            raise ValueError("a study needs at least one arm and one seed")
        if self.parallel < 1:
            raise ValueError("parallel must be >= 1")
        for seed in self.seeds:
            for p in self.base:
                if not for_seed(p, seed).is_file():
                    raise FileNotFoundError(f"base config {for_seed(p, seed)} does not exist")
            for arm in self.arms:
                for p in self.configs(arm, seed)[len(self.base) :]:
                    if not p.is_file():
                        raise FileNotFoundError(f"arm {arm.name!r}, seed {seed}: config {p} does not exist")

    def run_dir(self, arm: Arm, seed: int) -> Path:
        return self.output / "runs" / arm.name / f"seed{seed}"

    def configs(self, arm: Arm, seed: int) -> list[Path]:
        """The run's configs in order: base, then the arm's overlays, ``{seed}`` filled in."""
        return [for_seed(p, seed) for p in (*self.base, *arm.configs)]

    def args(self, seed: int) -> list[str]:
        """The extra overrides of one run, ``{seed}`` filled in."""
        return [a.replace(SEED, str(seed)) for a in self.fit_args]


def run_overlay(study: Study, arm: Arm, seed: int) -> dict:
    """The per-run overlay: seeds, its own log folder, the budget."""
    run_dir = study.run_dir(arm, seed).resolve()
    cfg: dict = {
        "seed_everything": seed,
        "trainer": {
            "enable_progress_bar": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(run_dir), "name": "", "version": ""},
            },
        },
        "data": {"seed": seed},
        "model": {"student": {"init_seed": seed}},
    }
    if study.max_tokens is not None:
        cfg["budget"] = {
            "class_path": "lit_distill.callbacks.budget.TokenBudget",
            "init_args": {"max_tokens": study.max_tokens, "log_every_n_steps": 1},
        }
    return cfg


def fingerprint(study: Study, arm: Arm, seed: int) -> str:
    """Hash of the config texts, overrides, budget and seed that define one run."""
    h = hashlib.sha256()
    for p in study.configs(arm, seed):
        h.update(p.read_bytes())
    h.update(json.dumps([study.args(seed), study.max_tokens, seed]).encode())
    return h.hexdigest()[:16]


def fit_command(study: Study, arm: Arm, seed: int) -> list[str]:
    run_dir = study.run_dir(arm, seed)
    cmd = [sys.executable, "-m", "lit_distill.cli", "fit"]
    for p in (*study.configs(arm, seed), run_dir / "overlay.yaml"):
        cmd += ["--config", str(p)]
    cmd += study.args(seed)
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.exists():
        cmd += ["--ckpt_path", str(last)]  # an interrupted run continues where it stopped
    return cmd


def is_finished(study: Study, arm: Arm, seed: int) -> bool:
    run_dir = study.run_dir(arm, seed)
    if not (run_dir / "summary.json").exists():
        return False
    recorded = (run_dir / "fingerprint.txt").read_text().strip() if (run_dir / "fingerprint.txt").exists() else ""
    if recorded != fingerprint(study, arm, seed):
        raise RuntimeError(
            f"{run_dir} finished with other configs than arm {arm.name!r} has now; "
            "use a new --output folder (or delete that run) so the report does not mix two versions"
        )
    return True


def _start(study: Study, arm: Arm, seed: int, threads: int) -> subprocess.Popen:
    run_dir = study.run_dir(arm, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "overlay.yaml").write_text(yaml.safe_dump(run_overlay(study, arm, seed), sort_keys=False))
    (run_dir / "fingerprint.txt").write_text(fingerprint(study, arm, seed) + "\n")
    env = {**os.environ, **OFFLINE, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    log = open(run_dir / "log.txt", "a")  # noqa: SIM115 (closed when the process is reaped)
    proc = subprocess.Popen(fit_command(study, arm, seed), stdout=log, stderr=subprocess.STDOUT, env=env)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def run_study(study: Study, echo=print) -> dict[tuple[str, int], str]:
    """Run every unfinished arm x seed, ``parallel`` at a time; returns ``{(arm, seed): status}``.

    Status is ``cached``, ``ok`` or ``failed (exit N, see log.txt)``. A failed run does not stop the others.
    """
    todo, status = [], {}
    for seed in study.seeds:  # seed-major: an interrupted study has complete pairs for the seeds it finished
        for arm in study.arms:
            if is_finished(study, arm, seed):
                status[(arm.name, seed)] = "cached"
            else:
                todo.append((arm, seed))
    threads = max(1, (os.cpu_count() or 1) // study.parallel)
    running: list[tuple[Arm, int, subprocess.Popen, float]] = []
    while todo or running:
        while todo and len(running) < study.parallel:
            arm, seed = todo.pop(0)
            echo(f"[compare] start {arm.name} seed {seed}")
            running.append((arm, seed, _start(study, arm, seed, threads), time.time()))
        time.sleep(0.2)
        for item in list(running):
            arm, seed, proc, started = item
            if proc.poll() is None:
                continue
            proc.log.close()  # type: ignore[attr-defined]
            running.remove(item)
            ok = proc.returncode == 0 and (study.run_dir(arm, seed) / "summary.json").exists()
            log_path = study.run_dir(arm, seed) / "log.txt"
            status[(arm.name, seed)] = "ok" if ok else f"failed (exit {proc.returncode}, see {log_path})"
            echo(f"[compare] {arm.name} seed {seed}: {status[(arm.name, seed)]} in {time.time() - started:.0f} s")
    return status
