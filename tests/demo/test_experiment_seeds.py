"""The experiment scripts vary the student's initialisation with the seed (scripts/experiments/)."""

import json
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts" / "experiments"))
import common
import lark


def test_overlay_seeds_initialisation_and_data_order(tmp_path):
    cfg = common.overlay(tmp_path, 3, 10, 5, {"model": {"student": {"init_checkpoint": "w.ckpt"}}, "dmc": None})
    assert cfg["seed_everything"] == 3 and cfg["data"]["seed"] == 3
    # The arm's own student settings are merged with the seed's, not replaced.
    assert cfg["model"]["student"] == {"init_seed": 3, "init_checkpoint": "w.ckpt"}
    assert common.overlay(tmp_path, 4, 10, 5, {})["model"]["student"]["init_seed"] == 4


def test_lark_arms_start_from_a_warm_student_per_seed(tmp_path, monkeypatch):
    warm_calls, runs = [], {}

    def fake_warm(run_dir, steps, seed=0):
        warm_calls.append((run_dir.name, steps, seed))
        return f"{run_dir.name}.ckpt"

    def fake_fit(run_dir, cfg, *args, **kwargs):
        runs[run_dir.name] = cfg
        return {"metrics": {}}

    monkeypatch.setattr(lark, "warm_checkpoint", fake_warm)
    monkeypatch.setattr(lark, "fit", fake_fit)
    monkeypatch.setattr(lark, "scalars", lambda run_dir: {})
    args = Namespace(budget=1, refresh=50, arms=["all"], seeds=[0, 1], cached_only=False, steps=20, val_every=10,
                     warmup_steps=7)  # fmt: skip
    lark.run_arms(tmp_path, args)
    assert sorted(warm_calls) == [("warm_s0", 7, 0), ("warm_s1", 7, 1)]
    for seed in (0, 1):
        student = runs[f"all_s{seed}"]["model"]["student"]
        assert student == {"init_seed": seed, "init_checkpoint": f"warm_s{seed}.ckpt"}


def test_warm_checkpoint_follows_the_seed(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(common, "fit", lambda run_dir, cfg: seen.append(cfg) or {"checkpoint": "c"})
    common.warm_checkpoint(tmp_path / "w", 5, seed=2)
    assert seen[0]["model"]["student"]["init_seed"] == 2 and seen[0]["seed_everything"] == 2
    assert seen[0]["dmc"] is None and seen[0]["trainer"]["max_steps"] == 5


def test_cached_run_with_other_settings_is_not_reused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    old = common.overlay(run, 1, 10, 5, {})
    del old["model"]  # as written before seeds varied the initialisation
    (run / "overlay.yaml").write_text(yaml.safe_dump(old))
    (run / "summary.json").write_text(json.dumps({"metrics": {"val/accuracy": 0.5}}))
    with pytest.raises(RuntimeError, match="other settings"):
        common.fit(run, common.overlay(run, 1, 10, 5, {}))
    (run / "overlay.yaml").write_text(yaml.safe_dump(common.overlay(run, 1, 10, 5, {})))
    assert common.fit(run, common.overlay(run, 1, 10, 5, {}))["metrics"]["val/accuracy"] == 0.5
