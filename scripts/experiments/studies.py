"""The validation studies of docs/experiments/protocol.md, on the testbed, through ``lit-distill compare``.

    python scripts/experiments/studies.py warm             # one warm student per seed (400 steps, uniform)
    python scripts/experiments/studies.py mixture_primary  # D2 + D3 primary arms: balanced, top-m, dynamic DMC
    python scripts/experiments/studies.py lark_primary     # L1 primary arms: chi2 and random-B, sample mode
    python scripts/experiments/studies.py d1 --seeds 10 11 12   # static DMC per variant vs single-source accuracy
    python scripts/experiments/studies.py mixture          # D2 + D3: all nine mixture arms, token-matched
    python scripts/experiments/studies.py lark             # L1 + L2 sample mode: chi2 / hard / random-B / all
    python scripts/experiments/studies.py l3               # L3: g-hat vs realised per-trajectory loss drop
    python scripts/experiments/studies.py lark_loss        # L1 + L2 loss mode
    python scripts/experiments/studies.py report           # docs/experiments/results.md, figures, JSON

``--seeds`` defaults to the confirmatory seeds {10..14}; ``--seeds 0 1`` runs the pilot. Every run is cached by
``compare`` (interrupt and rerun freely). Arms start from their seed's warm student
(``model.student.init_checkpoint``), as a user's run starts from a pretrained student.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from lit_distill.compare.report import build_report, read_scalars
from lit_distill.compare.runner import OFFLINE, Arm, Study, run_study

REPO = Path(__file__).resolve().parents[2]
EXP = REPO / "configs" / "experiments"
BASE = EXP / "testbed.yaml"
ARMS = EXP / "arms"
OUT = REPO / "runs" / "studies"
CONFIRMATORY = [10, 11, 12, 13, 14]
SOURCES = ["easy", "easy_wrong20", "easy_wrong45", "easy_verbose", "easy_filler", "medium", "medium_style2", "hard"]
VARIANTS = ("A", "B", "C", "E")
WARM = str(OUT / "warm" / "runs" / "warm" / "seed{seed}" / "checkpoints" / "last.ckpt")
FROM_WARM = ["--model.student.init_checkpoint", WARM]
# Token budgets (protocol, Changes): ~195 balanced steps for the mixture and LARK arms, ~half for single sources.
MIXTURE_TOKENS = 250_000
SINGLE_TOKENS = 120_000
PARALLEL = 2


def study(name: str, arms: dict[str, list[Path]], seeds: list[int], tokens: int | None, fit_args=(), base=(BASE,)):
    """A compare study; pilot seeds (< 10) write to ``<name>_pilot`` so they never mix with confirmatory runs."""
    if name != "warm" and min(seeds) < 10:
        if max(seeds) >= 10:
            raise ValueError("run pilot seeds (< 10) and confirmatory seeds (>= 10) separately")
        name += "_pilot"
    return Study(
        base=tuple(base),
        arms=[Arm(n, tuple(c)) for n, c in arms.items()],
        seeds=seeds,
        output=OUT / name,
        max_tokens=tokens,
        fit_args=list(fit_args),
        parallel=PARALLEL,
    )


def run(s: Study, baseline: str) -> dict:
    status = run_study(s)
    return build_report(s, "val/accuracy", baseline, status)


def write(path: Path, cfg: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# --------------------------------------------------------------------------------------------------- warm
def warm(seeds: list[int]) -> None:
    run(study("warm", {"warm": [EXP / "warm.yaml"]}, seeds, None), "warm")


# ----------------------------------------------------------------------------------------------------- D1
def static_dmc(seed: int) -> dict:
    """Static DMC (every variant) of every source at the seed's warm student, larger probes than in-run."""
    out = OUT / ("d1" if seed >= 10 else "d1_pilot") / "static_dmc" / f"seed{seed}.json"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "lit_distill.cli", "score", "dmc", "--config", str(BASE)]
        cmd += ["--config", str(ARMS / "dmc_static.yaml"), "--ckpt", WARM.format(seed=seed)]
        cmd += ["--probe-size", "128", "--probe-questions", "64", "--output", str(out)]
        env = {**os.environ, **OFFLINE, "OMP_NUM_THREADS": str(os.cpu_count() or 1)}
        subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def d1(seeds: list[int]) -> None:
    for seed in seeds:
        static_dmc(seed)
    arms = {}
    for src in SOURCES:
        weights = {s: (1.0 if s == src else 0.0) for s in SOURCES}
        cfg = {"data": {"mixture": {"policy": "static", "weights": weights}}, "trainer": {"val_check_interval": 400}}
        arms[f"only_{src}"] = [write(OUT / "configs" / f"only_{src}.yaml", cfg)]
    run(study("d1", arms, seeds, SINGLE_TOKENS, FROM_WARM), "only_easy")


# ----------------------------------------------------------------------------------------- D2 + D3 mixture
PHASE1 = {
    "balanced": [],
    "uniform": [ARMS / "uniform.yaml"],
    "temperature": [ARMS / "temperature.yaml"],
    "dmc_topm": [ARMS / "dmc_topm.yaml"],
    "dmc_static": [ARMS / "dmc_static.yaml"],
    "dmc_dynamic": [ARMS / "dmc_dynamic.yaml"],
    "odm": [ARMS / "odm.yaml"],
}


def _mixture_at(run_dir: Path, last: bool) -> dict[str, float]:
    scalars = read_scalars(run_dir)
    out = {}
    for src in SOURCES:
        series = scalars.get(f"mixture/{src}")
        if not series:
            raise RuntimeError(f"{run_dir}: no mixture/{src} scalar")
        out[src] = float(series[-1 if last else 0][1])
    total = sum(out.values())
    return {k: v / total for k, v in out.items()}


def derived_overlays(s: Study, seed: int) -> None:
    """Per-seed arms that need phase 1: the final dynamic mixture held from step 0, and shuffled static DMC."""
    runs = s.output / "runs"
    final = _mixture_at(runs / "dmc_dynamic" / f"seed{seed}", last=True)
    write(s.output / "configs" / f"final_fixed_seed{seed}.yaml",
          {"data": {"mixture": {"policy": "static", "weights": final}}})  # fmt: skip
    static = _mixture_at(runs / "dmc_static" / f"seed{seed}", last=False)
    values, rng = np.array([static[s] for s in SOURCES]), np.random.default_rng(seed)
    order = np.argsort(-values)
    while True:  # same concentration (the same multiset of weights), a random ranking that is not DMC's
        perm = rng.permutation(len(SOURCES))
        if not np.array_equal(order, np.argsort(-values[perm])):
            break
    shuffled = {s: float(values[perm][i]) for i, s in enumerate(SOURCES)}
    write(s.output / "configs" / f"shuffled_seed{seed}.yaml",
          {"data": {"mixture": {"policy": "static", "weights": shuffled}}})  # fmt: skip


PRIMARY = ("balanced", "dmc_topm", "dmc_dynamic")  # the primary comparisons of D2 and D3 run first


def mixture(seeds: list[int], only: list[str] | None = None) -> None:
    """Phase 1 (``only`` a subset of it, e.g. the primary arms), then the two arms derived from phase 1."""
    first = {k: v for k, v in PHASE1.items() if only is None or k in only}
    phase1 = study("mixture", first, seeds, MIXTURE_TOKENS, FROM_WARM)
    run(phase1, "balanced")
    if only is not None:
        return
    for seed in seeds:
        derived_overlays(phase1, seed)
    cfg = phase1.output / "configs"
    arms = {
        **PHASE1,
        "final_fixed": [cfg / "final_fixed_seed{seed}.yaml"],
        "dmc_shuffled": [cfg / "shuffled_seed{seed}.yaml"],
    }
    run(study("mixture", arms, seeds, MIXTURE_TOKENS, FROM_WARM), "balanced")


def mixture_primary(seeds: list[int]) -> None:
    mixture(seeds, list(PRIMARY))


# ------------------------------------------------------------------------------------------ LARK (L1, L2)
LARK_BASE = (BASE, EXP / "lark_pool.yaml")
LARK_RULES = ("chi2", "hard", "random")


def _lark_arms(modes: tuple[str, ...], s: Study) -> dict[str, list[Path]]:
    seed_cfg = s.output / "configs" / "lark_seed{seed}.yaml"  # the random rule's draw follows the run's seed
    for seed in s.seeds:
        write(Path(str(seed_cfg).format(seed=seed)), {"lark": {"init_args": {"seed": seed}}})
    arms: dict[str, list[Path]] = {"all": []}
    for mode in modes:
        for rule in LARK_RULES:
            arms[f"{rule}_{mode}"] = [ARMS / f"lark_{rule}_{mode}.yaml", seed_cfg]
    return arms


def lark(seeds: list[int], modes: tuple[str, ...] = ("sample",), only: tuple[str, ...] | None = None) -> None:
    s = study("lark", {"all": []}, seeds, MIXTURE_TOKENS, FROM_WARM, base=LARK_BASE)
    arms = {k: v for k, v in _lark_arms(modes, s).items() if only is None or k in only}
    run(study("lark", arms, seeds, MIXTURE_TOKENS, FROM_WARM, base=LARK_BASE), "random_sample")


def lark_primary(seeds: list[int]) -> None:
    lark(seeds, only=("random_sample", "chi2_sample"))


def lark_loss(seeds: list[int]) -> None:
    lark(seeds, ("sample", "loss"))


def l3(seeds: list[int]) -> None:
    from lark_utility import l3 as run_l3  # scripts/experiments/lark_utility.py

    # Plain SGD (lr 1e-3, 3 steps, no clipping): the "a few SGD steps"; chosen on pilot seed 0
    # (protocol, Changes 8), where a fresh AdamW's first steps raised the losses it was meant to lower.
    run_l3(seeds, OUT / ("l3" if min(seeds) >= 10 else "l3_pilot"), optimizer="sgd", lr=1e-3, clip=False)


def report(seeds: list[int]) -> None:
    from study_report import write_report  # scripts/experiments/study_report.py

    # Each study's results.json, rebuilt over every arm that has runs (stages ran on subsets of the arms).
    studies = (("d1", "only_easy", SINGLE_TOKENS), ("mixture", "balanced", MIXTURE_TOKENS))
    for name, baseline, tokens in (*studies, ("lark", "random_sample", MIXTURE_TOKENS)):
        runs = OUT / name / "runs"
        if runs.is_dir():
            arms = [Arm(d.name) for d in sorted(runs.iterdir()) if d.is_dir()]
            s = Study(base=(BASE,), arms=arms, seeds=seeds, output=OUT / name, max_tokens=tokens)
            build_report(s, "val/accuracy", baseline if baseline in [a.name for a in arms] else arms[0].name)
    write_report(OUT, seeds)


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "stage",
        choices=["warm", "d1", "mixture_primary", "mixture", "lark_primary", "lark", "lark_loss", "l3", "report"],
    )
    p.add_argument("--seeds", type=int, nargs="+", default=CONFIRMATORY)
    args = p.parse_args(argv)
    globals()[args.stage](args.seeds)


if __name__ == "__main__":
    main(sys.argv[1:])
