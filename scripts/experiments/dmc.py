"""DMC validation on the demo pool (methods.md 3.5): does DMC predict what a source teaches, and does the
dynamic mixture beat static ones at the same budget?

    python scripts/experiments/dmc.py                 # everything (about 90 minutes on 2 CPU cores)
    python scripts/experiments/dmc.py --part a        # correlation only
    python scripts/experiments/dmc.py --report        # rewrite docs/experiments/dmc.md from finished runs

(a) A warm student (``--warmup-steps`` on the uniform mixture) is scored with ``lit-distill score dmc``
    (static DMC, every variant); then the warm student is trained on each source alone for ``--single-steps``
    and evaluated on the held-out sets. Reported: Spearman(DMC_variant, accuracy) over the sources.
(b) From scratch, ``--steps`` optimiser steps, ``--seeds`` seeds: uniform, balanced, temperature (T=2),
    static DMC (computed once at step 0, held), and dynamic DMC (the demo's callback). Reported: final
    held-out accuracy (mean ± std) and the steps needed to reach the uniform arm's final mean accuracy.
Runs are cached under --out; raw numbers go to results.json there and to the report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from common import (
    DEMO,
    OFFLINE,
    REPO,
    add_common_arguments,
    fit,
    mean_std,
    overlay,
    scalars,
    steps_to_reach,
    warm_checkpoint,
)

SOURCES = ("concise", "verbose", "noisy", "hard")
VARIANTS = ("A", "B", "C", "E")  # lit_distill.scoring.dmc.VARIANTS (D was removed)
ARMS = {
    "uniform": {"data": {"mixture": {"policy": "uniform"}}, "dmc": None},
    "balanced": {"data": {"mixture": {"policy": "balanced"}}, "dmc": None},
    "temperature": {"data": {"mixture": {"policy": "temperature", "temperature": 2.0}}, "dmc": None},
    "static_dmc": {"data": {"mixture": {"policy": "balanced"}}, "dmc": {"init_args": {"every_n_steps": 1000000}}},
    "dynamic_dmc": {"data": {"mixture": {"policy": "balanced"}}},
}


def part_a(out: Path, args) -> dict:
    ckpt = warm_checkpoint(out / "a_warm", args.warmup_steps)
    static = out / "a_static_dmc.json"
    if not static.exists():
        cmd = [sys.executable, "-m", "lit_distill.cli", "score", "dmc", "--config", str(DEMO), "--ckpt", ckpt]
        subprocess.run([*cmd, "--output", str(static)], check=True, env={**os.environ, **OFFLINE}, cwd=REPO)
    dmc = json.loads(static.read_text())["sources"]
    single = {}
    for s in SOURCES:
        cfg = overlay(out / f"a_only_{s}", 0, args.single_steps, args.single_steps, {
            "data": {"mixture": {"policy": "static", "weights": {s: 1.0}}},
            "model": {"student": {"init_checkpoint": ckpt}, "scheduler": {"warmup_steps": 0}},
            "dmc": None,
        })  # fmt: skip
        single[s] = fit(out / f"a_only_{s}", cfg)["metrics"]
    acc = np.array([single[s]["val/accuracy"] for s in SOURCES])
    corr = {}
    from lit_distill.scoring.stats import spearman

    for v in VARIANTS:
        values = np.array([dmc[s]["dmc"][v] for s in SOURCES])
        corr[v] = spearman(values, acc)
    return {"static_dmc": dmc, "single_source": single, "spearman": corr, "warm_checkpoint": ckpt}


def part_b(out: Path, args) -> dict:
    results: dict[str, list[dict]] = {}
    for arm, extra in ARMS.items():
        if args.arms and arm not in args.arms:
            continue
        for seed in args.seeds:
            run = out / f"b_{arm}_s{seed}"
            if args.cached_only and not (run / "summary.json").exists():
                continue
            summary = fit(run, overlay(run, seed, args.steps, args.val_every, extra))
            tb = scalars(run)
            results.setdefault(arm, []).append(
                {
                    "seed": seed,
                    "metrics": summary["metrics"],
                    "curve": tb.get("val/accuracy", []),
                    "wall": summary.get("wall_seconds"),
                    "tokens": estimated_tokens(run, tb, args.steps),
                }
            )
    return results


def estimated_tokens(run: Path, tb: dict, steps: int, batch: int = 32) -> float | None:
    """Training tokens of a run: the mixture in force at each step x the sources' mean trajectory lengths.

    The arms have the same step budget, not the same token budget: a mixture that favours long trajectories
    trains on more tokens per step. Mean lengths come from the run's own log (per-source summary lines);
    mixtures from ``mixture/<source>`` (DMC arms) or, without them, equal source weights.
    """
    lengths = dict(re.findall(r"source (\w+): .* mean (\d+) tokens", (run / "log.txt").read_text()))
    if not lengths:
        return None
    mean = {k: float(v) for k, v in lengths.items()}
    changes: dict[int, dict[str, float]] = {}
    for name in mean:
        for step, value in tb.get(f"mixture/{name}", []):
            changes.setdefault(int(step), {})[name] = value
    weights = {k: 1.0 / len(mean) for k in mean}
    total = 0.0
    for step in range(steps):
        weights.update(changes.get(step, {}))
        norm = sum(weights.values())
        total += batch * sum(weights[k] * mean[k] for k in mean) / norm
    return total


def report(out: Path, res: dict, args) -> str:
    lines = ["# DMC on the demo pool", "", "Reproduce: `python scripts/experiments/dmc.py` "
             f"(`--steps {args.steps} --val-every {args.val_every} --seeds {' '.join(map(str, args.seeds))} "
             f"--warmup-steps {args.warmup_steps} "
             f"--single-steps {args.single_steps}`). Machine: 2 CPU cores, no GPU. Raw numbers: "
             f"`{out / 'results.json'}`.", ""]  # fmt: skip
    if "a" in res:
        a = res["a"]
        lines += ["## (a) Static DMC vs accuracy after training on one source", "",
                  f"Warm student: {args.warmup_steps} steps on the uniform mixture; then {args.single_steps} steps "
                  "on one source; held-out accuracy on the easy+hard sets.", "",
                  "| source | Q | C | R | " + " | ".join(f"DMC-{v}" for v in VARIANTS) + " | accuracy | easy | hard |",
                  "|---" * (7 + len(VARIANTS)) + "|"]  # fmt: skip
        for s in SOURCES:
            d, m = a["static_dmc"][s], a["single_source"][s]
            lines.append(
                f"| {s} | {d['quality']:.3f} | {d['capability']:.3f} | {d['difficulty']:.3f} | "
                + " | ".join(f"{d['dmc'][v]:.4f}" for v in VARIANTS)
                + f" | {m['val/accuracy']:.3f} | {m['val/accuracy/easy']:.3f} | {m['val/accuracy/hard']:.3f} |"
            )
        lines += ["", "Spearman correlation between DMC and accuracy over the sources:", "",
                  "| " + " | ".join(VARIANTS) + " |", "|---" * len(VARIANTS) + "|",
                  "| " + " | ".join(f"{a['spearman'][v]:.2f}" for v in VARIANTS) + " |", ""]  # fmt: skip
    if "b" in res:
        b = res["b"]
        target = np.mean([r["metrics"]["val/accuracy"] for r in b["uniform"]])
        lines += [
            "## (b) Mixture policies at the same budget",
            "",
            f"{args.steps} optimiser steps from scratch, evaluation every {args.val_every} steps, "
            f"seeds {args.seeds}. 'Steps to uniform' = first evaluation reaching the uniform arm's final "
            f"mean accuracy ({target:.3f}).",
            "",
            "| arm | seeds | accuracy | easy | hard | steps to uniform (per seed) | est. tokens (M) | wall s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for arm, runs in b.items():
            acc = [r["metrics"]["val/accuracy"] for r in runs]
            easy = [r["metrics"]["val/accuracy/easy"] for r in runs]
            hard = [r["metrics"]["val/accuracy/hard"] for r in runs]
            reach = [steps_to_reach(r["curve"], target) for r in runs]
            wall = np.nanmean([r["wall"] or np.nan for r in runs])
            tokens = [r.get("tokens") or np.nan for r in runs]
            lines.append(
                f"| {arm} | {len(runs)} | {mean_std(acc)} | {mean_std(easy)} | {mean_std(hard)} | {reach} | "
                f"{np.nanmean(tokens) / 1e6:.2f} | {wall:.0f} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p, "dmc", list(ARMS))
    p.add_argument("--part", choices=["a", "b", "all"], default="all")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--single-steps", type=int, default=300)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    res = json.loads(results_file.read_text()) if results_file.exists() else {}
    if not args.report:
        if args.part in ("a", "all"):
            res["a"] = part_a(args.out, args)
            results_file.write_text(json.dumps(res, indent=2))
        if args.part in ("b", "all"):
            res["b"] = part_b(args.out, args)
            results_file.write_text(json.dumps(res, indent=2))
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(report(args.out, res, args))
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
