"""``lit-distill compare``: paired statistics, the token budget, and a tiny study end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lit_distill.compare.stats import bootstrap_mean_ci, paired_difference

from helpers import run_cli, scalars, tiny_config, write_config


def test_paired_difference_pairs_by_seed_and_brackets_the_mean():
    arm = {0: 0.50, 1: 0.62, 2: 0.55, 3: 0.70, 9: 0.99}  # seed 9 has no partner: left out
    base = {0: 0.40, 1: 0.50, 2: 0.52, 3: 0.61}
    d = paired_difference(arm, base)
    assert d.n == 4
    assert d.mean == pytest.approx(np.mean([0.10, 0.12, 0.03, 0.09]))
    assert d.ci_low <= d.mean <= d.ci_high and d.excludes_zero
    assert (d.wins, d.losses) == (4, 0)
    assert d.effect_size == pytest.approx(d.mean / np.std([0.10, 0.12, 0.03, 0.09], ddof=1))


def test_pairing_removes_seed_variance_that_an_unpaired_interval_keeps():
    # A constant +0.01 gain on top of large seed-to-seed differences: the paired interval is a point at 0.01.
    base = {s: v for s, v in enumerate([0.1, 0.5, 0.3, 0.9, 0.7])}
    arm = {s: v + 0.01 for s, v in base.items()}
    d = paired_difference(arm, base)
    assert d.ci_low == pytest.approx(0.01) and d.ci_high == pytest.approx(0.01)
    low, high = bootstrap_mean_ci(np.array(list(arm.values())))
    assert high - low > 0.2  # the unpaired interval of one arm's mean is wide


def test_no_shared_seed_is_an_error():
    with pytest.raises(ValueError, match="share no finished seed"):
        paired_difference({0: 1.0}, {1: 1.0})


BUDGET = 3000  # trained tokens per study run: ~8 steps of the tiny pool


@pytest.fixture(scope="module")
def study(pool_dir, tokenizer_dir, tmp_path_factory):
    """One tiny study: arms balanced (baseline) and uniform, seeds 0 and 1, two runs at a time, each run stopped
    by a token budget of 3000 (well before its 50 steps). Returns (compare arguments, uniform overlay, output)."""
    tmp = tmp_path_factory.mktemp("compare")
    base = write_config(
        tiny_config(pool_dir, tokenizer_dir, tmp, **{"trainer.max_steps": 50, "trainer.val_check_interval": 50}),
        tmp / "base.yaml",
    )
    uniform = write_config({"data": {"mixture": {"policy": "uniform"}}}, tmp / "uniform.yaml")
    out = tmp / "study"
    args = ["compare", "--config", str(base), "--arm", "balanced=", "--arm", f"uniform={uniform}"]
    args += ["--seeds", "0", "1", "--parallel", "2", "--max-tokens", str(BUDGET), "--output", str(out)]
    proc = run_cli(args, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return args, uniform, out


def test_token_budget_stops_at_the_first_step_reaching_it(study):
    # The study's runs are budgeted (compare --max-tokens adds budget.TokenBudget, logging every step).
    run = study[2] / "runs" / "balanced" / "seed0"
    tokens = scalars(run)["train/tokens"]
    steps = [s for s, _ in tokens]
    values = [v for _, v in tokens]
    assert values[-1] >= BUDGET > values[-2], "stops at the first step that reaches the budget, not later"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] < 50 and summary["global_step"] == len(steps)
    assert "val/accuracy" in summary["metrics"], "a budget stop still runs the final validation"


def test_compare_runs_arms_by_seed_caches_and_reports(study):
    args, uniform, out = study
    data = json.loads((out / "results.json").read_text())
    assert set(data["arms"]) == {"balanced", "uniform"}
    assert set(data["arms"]["uniform"]["runs"]) == {"0", "1"}
    assert data["arms"]["uniform"]["vs_baseline"]["n"] == 2
    assert (out / "curves.png").stat().st_size > 0 and "| uniform | 2 |" in (out / "report.md").read_text()
    # Each seed set the student's initialisation, not only the data order.
    overlay = (out / "runs" / "uniform" / "seed1" / "overlay.yaml").read_text()
    assert "init_seed: 1" in overlay
    # A second invocation reuses every finished run (no new log lines) ...
    before = (out / "runs" / "balanced" / "seed0" / "log.txt").stat().st_size
    again = run_cli(args, timeout=600)
    assert again.returncode == 0 and "[compare] start" not in again.stdout
    assert (out / "runs" / "balanced" / "seed0" / "log.txt").stat().st_size == before
    # ... and refuses to reuse runs whose arm config changed since.
    uniform.write_text("data: {mixture: {policy: temperature, temperature: 2.0}}\n")
    changed = run_cli(args, timeout=600)
    assert changed.returncode == 2 and "other configs" in changed.stdout


def test_seed_placeholder_fills_paths_and_overrides_per_run(tmp_path):
    from lit_distill.compare.runner import Arm, Study, fingerprint, fit_command

    base = write_config({"trainer": {"max_steps": 1}}, tmp_path / "base.yaml")
    for seed in (3, 4):
        write_config({"data": {"seed": seed}}, tmp_path / f"mix{seed}.yaml")
    arm = Arm.parse(f"fixed={tmp_path}/mix{{seed}}.yaml")
    study = Study(
        base=(base,), arms=[arm], seeds=[3, 4], output=tmp_path / "out",
        fit_args=["--model.student.init_checkpoint", "warm/seed{seed}/last.ckpt"],
    )  # fmt: skip
    cmd = fit_command(study, arm, 4)
    assert str(tmp_path / "mix4.yaml") in cmd and "warm/seed4/last.ckpt" in cmd
    assert not any("{seed}" in c for c in cmd)
    assert fingerprint(study, arm, 3) != fingerprint(study, arm, 4)
    # A seed whose per-seed config is missing is refused when the study is built, not halfway through it.
    with pytest.raises(FileNotFoundError, match="seed 5"):
        Study(base=(base,), arms=[arm], seeds=[3, 5], output=tmp_path / "out")
