"""Wall-time share of DMC and LARK scoring in the demo, at the demo's cadences.

    python scripts/bench/scoring_overhead.py             # two 200-step demo runs (about 4 minutes on 2 CPU cores)
    python scripts/bench/scoring_overhead.py --quick     # smoke mode: 4 steps, tiny probes

Each run is ``lit-distill fit --config configs/demo.yaml`` through the real CLI class, in-process (so the
callbacks' own timers can be read), with an overlay that shortens the run to ``--steps`` (200 of the demo's
600) and adds a LARK callback. The cadences are left as they are (validation and DMC capability every 200
steps, DMC forward terms every 100, LARK every 200, each also at fit start where the callback does so),
so every kind of event happens as often per training step as in the full 600-step demo; 200 steps is the
shortest run for which that holds. Two runs:

* ``defaults``: the demo's DMC callback as shipped (forward terms every 100 steps on 64 trajectories per
  source, capability every 200 steps on 32 questions per source) plus a LARKCallback with its defaults
  (every 200 steps, all 4000 problems = 12000 trajectories scored per refresh);
* ``budget``: DMC forward terms every ``--dmc-every`` (200) steps, LARK on ``--problems`` (300) random
  problems per refresh (with all their candidates: 900 trajectories), everything else unchanged.

Reported per run: the fit's wall time (``trainer.fit``, setup and validation included), the seconds DMC and
LARK spent scoring (their ``seconds`` attributes, which are also logged as ``dmc/seconds`` and
``lark/seconds``), validation seconds, each share of the wall time, and the DMC share of a run without LARK
(DMC seconds / (wall - LARK seconds)). Target: each share <= 5%.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import REPO, emit, machine, quiet, set_threads


def timer_callback():
    import lightning.pytorch as pl

    class PhaseTimer(pl.Callback):
        """Seconds spent in validation (generation on the held-out sets) and training batches."""

        def __init__(self) -> None:
            self.validation = 0.0
            self._t = 0.0

        def on_validation_start(self, trainer, pl_module) -> None:
            self._t = time.perf_counter()

        def on_validation_end(self, trainer, pl_module) -> None:
            self.validation += time.perf_counter() - self._t

    return PhaseTimer()


def run(name: str, overlay: dict, out: Path) -> dict:
    from lit_distill.callbacks.dmc import DMCCallback
    from lit_distill.callbacks.lark import LARKCallback
    from lit_distill.cli import TRAINER_DEFAULTS, _cli_class
    from lit_distill.data.datamodule import DistillDataModule
    from lit_distill.model.module import DistillModule

    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    args = ["--config", str(REPO / "configs" / "demo.yaml"), "--config", str(path)]
    # The CLI's model summary and run summary are printed: keep stdout for the JSON line.
    with contextlib.redirect_stdout(sys.stderr):
        cli = _cli_class()(DistillModule, DistillDataModule, args=args, run=False, trainer_defaults=TRAINER_DEFAULTS)
        phases = timer_callback()
        cli.trainer.callbacks.append(phases)
        t0 = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        wall = time.perf_counter() - t0
    dmc = next(c for c in cli.trainer.callbacks if isinstance(c, DMCCallback))
    lark = next(c for c in cli.trainer.callbacks if isinstance(c, LARKCallback))
    return {
        "steps": cli.trainer.global_step,
        "wall_s": wall,
        "dmc_s": dmc.seconds,
        "lark_s": lark.seconds,
        "validation_s": phases.validation,
        "dmc_share": dmc.seconds / wall,
        "lark_share": lark.seconds / wall,
        "validation_share": phases.validation / wall,
        "dmc_share_without_lark": dmc.seconds / (wall - lark.seconds),
        "dmc_events": [(h["step"], round(h["seconds"], 2)) for h in dmc.history],
        "lark_events": [(h["step"], int(h["scored"]), round(h["lark/seconds"], 2)) for h in lark.history],
        "lark": {"every_n_steps": lark.every_n_steps, "problems_per_refresh": lark.problems_per_refresh},
        "dmc": {
            "every_n_steps": dmc.every_n_steps,
            "capability_every_n_steps": dmc.capability_every,
            "probe_size": dmc.probe_size,
            "probe_questions": dmc.probe_questions,
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="optimiser steps per run (demo: 600)")
    parser.add_argument("--problems", type=int, default=300, help="LARK problems_per_refresh of the budget run")
    parser.add_argument("--dmc-every", type=int, default=200, help="DMC every_n_steps of the budget run")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see common.set_threads)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 4 steps, tiny probes, one run")
    args = parser.parse_args(argv)
    quiet()
    set_threads(args.threads)
    base = {"trainer": {"max_steps": args.steps, "enable_progress_bar": False}}
    lark = "lit_distill.callbacks.lark.LARKCallback"
    runs = {
        "defaults": {"lark": {"class_path": lark}},
        "budget": {
            "dmc": {"init_args": {"every_n_steps": args.dmc_every}},
            "lark": {"class_path": lark, "init_args": {"problems_per_refresh": args.problems}},
        },
    }
    if args.quick:
        base = {
            "trainer": {"max_steps": 4, "val_check_interval": 4, "enable_progress_bar": False},
            "model": {"generation": {"max_new_tokens": 4}},
            "dmc": {"init_args": {"every_n_steps": 2, "probe_size": 4, "probe_questions": 2, "max_new_tokens": 4}},
        }
        runs = {"budget": {"lark": {"class_path": lark, "init_args": {"problems_per_refresh": 4, "every_n_steps": 2}}}}
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        for name, extra in runs.items():
            logger = {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(Path(tmp) / name), "name": "", "version": ""},
            }
            overlay = {**base, **extra, "trainer": {**base["trainer"], "logger": logger}}
            results[name] = run(name, overlay, Path(tmp))
    emit(
        {
            "benchmark": "scoring_overhead",
            "quick": args.quick,
            "config": "configs/demo.yaml",
            "max_steps": args.steps if not args.quick else 4,
            "target_share": 0.05,
            "runs": results,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
