"""``lit-distill compare``: does DMC (or LARK, or ODM) help on my data and my student?

Runs each arm x seed through the normal ``fit`` path and writes a report with paired differences::

    lit-distill compare --config base.yaml \\
        --arm balanced= --arm dmc=configs/selection/dmc.yaml --baseline balanced \\
        --seeds 0 1 2 3 4 --parallel 2 --max-tokens 2000000 --output runs/compare/my-study

An arm is ``NAME=overlay.yaml[,more.yaml]`` composed after the base configs (``NAME=`` is the base alone);
``{seed}`` in a config path or override is replaced by the run's seed (per-seed warm students or mixtures).
Finished runs are cached, so an interrupted study resumes; ``--report-only`` rewrites the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lit_distill.compare.report import build_report
from lit_distill.compare.runner import Arm, Study, run_study


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lit-distill compare", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, action="append", required=True, help="base config (repeat to compose)")
    p.add_argument("--arm", action="append", required=True, help="NAME=CONFIG[,CONFIG...] (repeat per arm)")
    p.add_argument("--baseline", help="arm the others are paired against (default: the first arm)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--max-tokens", type=int, help="match budgets in trained (response) tokens")
    p.add_argument("--metric", default="val/accuracy", help="final metric to compare (default val/accuracy)")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (threads are split between them)")
    p.add_argument("--output", type=Path, required=True, help="study folder: runs/, report.md, results.json")
    p.add_argument("--report-only", action="store_true", help="report the finished runs, start none")
    p.add_argument(
        "fit_args", nargs=argparse.REMAINDER, help="after --: overrides passed to every fit ({seed} is filled in)"
    )
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        arms = [Arm.parse(a) for a in args.arm]
        fit_args = args.fit_args[1:] if args.fit_args[:1] == ["--"] else args.fit_args
        study = Study(
            base=tuple(args.config),
            arms=arms,
            seeds=args.seeds,
            output=args.output,
            max_tokens=args.max_tokens,
            fit_args=fit_args,
            parallel=args.parallel,
        )
        status = None if args.report_only else run_study(study)
        data = build_report(study, args.metric, args.baseline or arms[0].name, status)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"lit-distill compare: error: {e}")
        return 2
    print((args.output / "report.md").read_text())
    failed = [k for k, v in (data.get("status") or {}).items() if v.startswith("failed")]
    return 1 if failed else 0
