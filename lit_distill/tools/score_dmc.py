"""``lit-distill score dmc``: static DMC of every source of a training config at a given student.

    lit-distill score dmc --config configs/demo.yaml                          # the untrained student
    lit-distill score dmc --config configs/demo.yaml --ckpt runs/demo/version_0/checkpoints/last.ckpt \\
        --output dmc.json

The config is read exactly as ``lit-distill fit`` reads it (several ``--config`` files compose; extra
``--override KEY=VALUE`` arguments work like ``fit``'s ``--KEY=VALUE``), and the measurement is the configured
``DMCCallback``'s own: its probe size, questions, seed, batch size, Brier top-K, generation budget and DMC
constants (a config without a ``dmc`` key uses the callback's defaults). The flags below override them.

Prints a table sorted by DMC and writes JSON with the components and the value of every variant (A-E), for
static data selection (the paper's first use) and for checking which variant predicts post-training accuracy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time

from lit_distill.scoring.dmc import VARIANTS, compute_dmc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit-distill score dmc",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", required=True, action="append", help="training config (repeat to compose, as for fit)"
    )
    parser.add_argument(
        "--override", action="append", default=[], metavar="KEY=VALUE", help="as fit's --KEY=VALUE (repeatable)"
    )
    parser.add_argument("--ckpt", help="Lightning checkpoint of the student (default: the config's student)")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("--variant", default=None, choices=VARIANTS, help="variant to sort by (default: config's)")
    parser.add_argument("--probe-size", type=int, help="trajectories per source (default: the callback's)")
    parser.add_argument("--probe-questions", type=int, help="questions per source (default: the callback's)")
    parser.add_argument("--max-new-tokens", type=int, help="generation budget for capability")
    parser.add_argument("--batch-size", type=int, help="sequences per forward pass (default: the callback's)")
    parser.add_argument("--seed", type=int, help="probe seed (default: the callback's)")
    return parser


def _callback(run, args: argparse.Namespace):
    """The configured DMCCallback (or one with defaults), with the command line's overrides applied."""
    from lit_distill.callbacks.dmc import DMCCallback

    cb = run.callbacks.get("dmc") or DMCCallback()
    for flag, attr in (
        ("probe_size", "probe_size"),
        ("probe_questions", "probe_questions"),
        ("max_new_tokens", "max_new_tokens"),
        ("batch_size", "batch_size"),
        ("seed", "seed"),
    ):
        if getattr(args, flag) is not None:
            setattr(cb, attr, getattr(args, flag))
    return cb


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from lit_distill.checkpoint import load_trained_student
    from lit_distill.tools.config import ConfigError, load_run

    started = time.perf_counter()
    try:
        run = load_run(args.config, [f"--{o.removeprefix('--')}" for o in args.override])
    except ConfigError as err:
        print(f"lit-distill score dmc: error: {err}", file=sys.stderr)
        return 1
    cb, dm, module = _callback(run, args), run.datamodule, run.model
    dm.setup("validate")
    module.configure_model()
    step = load_trained_student(module, args.ckpt) if args.ckpt else 0
    cb._prepare(dm)  # the callback's own probe draw and checks, as at fit start
    probe = cb.probe
    budget = cb.max_new_tokens or module.generation.max_new_tokens
    forward = probe.forward_terms(module, dm, cb.batch_size, cb.top_k)
    correct = probe.capability_terms(module, dm, cb.batch_size, budget)
    items = probe.items(forward, correct)
    # Every variant with the configured constants (kappa, ...), so the chosen one matches the callback's.
    results = {v: compute_dmc(items, probe.quality, dataclasses.replace(cb.config, variant=v)) for v in VARIANTS}

    variant = args.variant or cb.config.variant
    chosen = results[variant]
    order = sorted(chosen, key=lambda n: -chosen[n].value if not math.isnan(chosen[n].value) else math.inf)
    print(f"DMC-{variant} at step {step} ({time.perf_counter() - started:.1f} s)")
    print(f"{'source':<16}{'DMC':>9}{'±se':>8}{'quality':>9}{'capab.':>8}{'difficulty':>11}{'learnab.':>10}")
    for n in order:
        r = chosen[n]
        print(
            f"{n:<16}{r.value:>9.4f}{r.se:>8.4f}{r.quality:>9.3f}{r.capability:>8.3f}"
            f"{r.difficulty:>11.3f}{r.learnability:>10.4f}"
        )
    if args.output:
        payload = {
            "config": args.config,
            "ckpt": args.ckpt,
            "step": step,
            "variant": variant,
            "probe": {
                "probe_size": cb.probe_size,
                "probe_questions": cb.probe_questions,
                "seed": cb.seed,
                "top_k": cb.top_k,
                "max_new_tokens": budget,
                "trajectories": {n: len(probe.rows[n]) for n in probe.names},
                "questions": {n: len(probe.questions[n]) for n in probe.names},
            },
            "sources": {
                n: {
                    "quality": chosen[n].quality,
                    "capability": chosen[n].capability,
                    "difficulty": chosen[n].difficulty,
                    "learnability": chosen[n].learnability,
                    "dmc": {v: results[v][n].value for v in VARIANTS},
                    "se": {v: results[v][n].se for v in VARIANTS},
                }
                for n in dm.source_names
            },
        }
        with open(args.output, "w") as fh:
            json.dump(payload, fh, indent=2)
        print(f"wrote {args.output}")
    return 0
