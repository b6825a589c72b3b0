"""LARK selection on the demo pool (methods.md section 1): which of each problem's teacher trajectories to train on.

    python scripts/experiments/lark.py              # everything (about 40 minutes on 2 CPU cores)
    python scripts/experiments/lark.py --report     # rewrite docs/experiments/lark.md from finished runs

Every problem of the demo pool has K=3 candidate trajectories (three teacher styles). All arms of a seed start
from that seed's warm student (``--warmup-steps`` on the uniform mixture, as a pretrained student would; its
initialisation and data order follow the seed, so seeds differ in both) and train
``--steps`` more optimiser steps on the balanced mixture at the same budget B of trajectories per problem:

* ``all``: every candidate (no selection; B = K);
* ``random``: B random candidates per problem, fixed at the start (the ``random`` rule);
* ``offline``: LARK chi-squared top-B scored once with the warm student (the paper's use);
* ``online``: LARK rescored every ``--refresh`` steps with the current student.

Reported per arm over ``--seeds``: held-out accuracy (easy, hard, mean ± std), the final training loss, and
the training loss on selected vs unselected trajectories at the refreshes (``lark/loss_selected`` ...).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from common import add_common_arguments, fit, mean_std, overlay, scalars, warm_checkpoint

LARK = "lit_distill.callbacks.lark.LARKCallback"


def arms(budget: int, refresh: int) -> dict[str, dict]:
    def lark(**kw) -> dict:
        return {"lark": {"class_path": LARK, "init_args": {"budget": budget, **kw}}}

    return {
        "all": {"lark": None},
        "random": lark(rule="random", every_n_steps=0),
        "offline": lark(rule="chi2", every_n_steps=0),
        "online": lark(rule="chi2", every_n_steps=refresh),
    }


def run_arms(out: Path, args) -> dict:
    results: dict[str, list[dict]] = {}
    for arm, extra in arms(args.budget, args.refresh).items():
        if args.arms and arm not in args.arms:
            continue
        for seed in args.seeds:
            run = out / f"{arm}_s{seed}"
            if args.cached_only and not (run / "summary.json").exists():
                continue
            ckpt = warm_checkpoint(out / f"warm_s{seed}", args.warmup_steps, seed)
            cfg = overlay(run, seed, args.steps, args.val_every, {
                "model": {"student": {"init_checkpoint": ckpt}, "scheduler": {"warmup_steps": 0}},
                "dmc": None, **extra,
            })  # fmt: skip
            summary = fit(run, cfg)
            tb = scalars(run)
            results.setdefault(arm, []).append(
                {
                    "seed": seed,
                    "metrics": summary["metrics"],
                    "val_curve": tb.get("val/accuracy", []),
                    "loss_curve": tb.get("train/loss", []),
                    "loss_selected": tb.get("lark/loss_selected", []),
                    "loss_unselected": tb.get("lark/loss_unselected", []),
                    "ghat_vs_drop": tb.get("lark/ghat_vs_loss_drop_spearman", []),
                    "lark_seconds": tb.get("lark/seconds", []),
                    "wall": summary.get("wall_seconds"),
                }
            )
    return results


def _last(curve) -> float:
    return curve[-1][1] if curve else float("nan")


def _tail_mean(curve, n: int = 5) -> float:
    """Mean of the last n logged values (train/loss is logged every 10 steps and is noisy)."""
    return float(np.mean([v for _, v in curve[-n:]])) if curve else float("nan")


def report(out: Path, res: dict, args) -> str:
    lines = [
        "# LARK on the demo pool",
        "",
        f"Reproduce: `python scripts/experiments/lark.py --steps {args.steps} --val-every {args.val_every} "
        f"--budget {args.budget} "
        f"--refresh {args.refresh} --warmup-steps {args.warmup_steps} --seeds {' '.join(map(str, args.seeds))}`. "
        f"Machine: 2 CPU cores, no GPU. Raw numbers: `{out / 'results.json'}`.",
        "",
        f"Every problem has K=3 teacher trajectories; the selecting arms keep B={args.budget} per problem. The arms "
        f"of a seed start from that seed's warm student ({args.warmup_steps} steps on the uniform mixture; the seed "
        "sets its initialisation and data order) and train "
        f"{args.steps} more steps on the balanced source mixture (no warm-up of the learning rate), evaluated "
        f"every {args.val_every} steps on the held-out easy and hard sets.",
        "",
        "| arm | accuracy | easy | hard | final train loss (mean of last 5 logs) | "
        "loss selected / unselected at last refresh | Spearman(g-hat, realised loss drop) |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, runs in res.items():
        acc = [r["metrics"]["val/accuracy"] for r in runs]
        easy = [r["metrics"]["val/accuracy/easy"] for r in runs]
        hard = [r["metrics"]["val/accuracy/hard"] for r in runs]
        loss = [_tail_mean(r["loss_curve"]) for r in runs]
        sel = [(_last(r["loss_selected"]), _last(r["loss_unselected"])) for r in runs]
        sel_txt = "; ".join(f"{a:.3f} / {b:.3f}" for a, b in sel) if runs[0]["loss_selected"] else "n/a"
        rho = [_last(r["ghat_vs_drop"]) for r in runs]
        rho_txt = ", ".join(f"{v:.2f}" for v in rho) if runs[0]["ghat_vs_drop"] else "n/a"
        lines.append(
            f"| {arm} | {mean_std(acc)} | {mean_std(easy)} | {mean_std(hard)} | {mean_std(loss)} | "
            f"{sel_txt} | {rho_txt} |"
        )
    lines += ["", "Held-out accuracy per evaluation (mean over seeds):", ""]
    steps = [s for s, _ in next(iter(res.values()))[0]["val_curve"]]
    lines += ["| arm | " + " | ".join(f"step {s + 1}" for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for arm, runs in res.items():
        curves = np.array([[v for _, v in r["val_curve"]] for r in runs if len(r["val_curve"]) == len(steps)])
        lines.append(f"| {arm} | " + " | ".join(f"{v:.3f}" for v in curves.mean(0)) + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(p, "lark", ["all", "random", "offline", "online"])
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--budget", type=int, default=1, help="trajectories kept per problem (of K=3)")
    p.add_argument("--refresh", type=int, default=100, help="online arm: steps between rescoring")
    p.add_argument("--val-every", type=int, default=100)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.json"
    res = json.loads(results_file.read_text()) if results_file.exists() and args.report else {}
    if not args.report:
        res = run_arms(args.out, args)
        results_file.write_text(json.dumps(res, indent=2))
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(report(args.out, res, args))
    print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
