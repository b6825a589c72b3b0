"""``lit-distill score dmc``: static DMC of every source of a training config at a given student.

    lit-distill score dmc --config configs/demo.yaml                          # the untrained student
    lit-distill score dmc --config configs/demo.yaml --ckpt runs/demo/version_0/checkpoints/last.ckpt \\
        --output dmc.json

Measures each source's probe exactly as the DMC callback does during training (difficulty and learnability
by a forward pass, capability by greedy generation, quality from the reference answers), prints a table
sorted by DMC and writes JSON with the components and the value of every variant (A-E), for static data
selection (the paper's first use) and for checking which variant predicts post-training accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import time

from lit_distill.scoring.dmc import VARIANTS, DMCConfig, compute_dmc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lit-distill score dmc", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="training config naming the pool and the student")
    parser.add_argument("--ckpt", help="Lightning checkpoint of the student (default: the config's student)")
    parser.add_argument("--output", help="write the results as JSON here")
    parser.add_argument("--variant", default=None, choices=VARIANTS, help="variant to sort by (default: config's)")
    parser.add_argument("--probe-size", type=int, help="trajectories per source (default: config's dmc or 64)")
    parser.add_argument("--probe-questions", type=int, help="questions per source (default: config's dmc or 32)")
    parser.add_argument("--max-new-tokens", type=int, help="generation budget for capability")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, help="probe seed (default: config's dmc seed or 0)")
    args = parser.parse_args(argv)

    from lit_distill.callbacks.dmc import DMCProbe
    from lit_distill.checkpoint import load_trained_student
    from lit_distill.tools.config import build_datamodule, build_module, read_config

    config = read_config(args.config)
    dmc_cfg = config.get("dmc") or {}
    variant = args.variant or (dmc_cfg.get("dmc") or {}).get("variant", "A")
    started = time.perf_counter()
    dm = build_datamodule(config)
    dm.setup("validate")
    module = build_module(config)
    module.configure_model()
    step = load_trained_student(module, args.ckpt) if args.ckpt else 0
    probe = DMCProbe(
        dm.pool,
        args.probe_size or dmc_cfg.get("probe_size", 64),
        args.probe_questions or dmc_cfg.get("probe_questions", 32),
        args.seed if args.seed is not None else dmc_cfg.get("seed", 0),
    )
    budget = args.max_new_tokens or dmc_cfg.get("max_new_tokens") or module.generation.max_new_tokens
    forward = probe.forward_terms(module, dm, args.batch_size, top_k=50)
    correct = probe.capability_terms(module, dm, args.batch_size, budget)
    items = probe.items(forward, correct)
    results = {v: compute_dmc(items, probe.quality, DMCConfig(variant=v)) for v in VARIANTS}

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
