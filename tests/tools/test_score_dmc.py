"""``lit-distill score dmc``: reads the config as ``fit`` does and measures with the configured callback."""

from __future__ import annotations

import json
import math

from lit_distill.tools import score_dmc

from helpers import callback, tiny_config, write_config


def test_score_dmc_uses_the_configured_callback(pool_dir, tokenizer_dir, tmp_path, capsys):
    cfg = tiny_config(pool_dir, tokenizer_dir, tmp_path)
    # init_args form (as fit reads it), settings far from the callback's defaults (64, 32, variant A, kappa 1).
    cfg["dmc"] = callback(
        "dmc.DMCCallback",
        probe_size=5,
        probe_questions=2,
        batch_size=4,
        max_new_tokens=4,
        dmc={"variant": "C", "kappa": 3.0, "bootstrap": 0},
    )
    config = write_config(cfg, tmp_path / "train.yaml")
    out = tmp_path / "dmc.json"
    # A second config composes on top, as with repeated --config for fit.
    extra = write_config({"data": {"max_length": 512}}, tmp_path / "extra.yaml")
    rc = score_dmc.main(["--config", str(config), "--config", str(extra), "--output", str(out)])
    assert rc == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["variant"] == "C"
    probe = result["probe"]
    assert (probe["probe_size"], probe["probe_questions"], probe["max_new_tokens"]) == (5, 2, 4)
    assert set(probe["trajectories"].values()) == {5}  # every source has >= 5 rows: the configured size
    assert set(probe["questions"].values()) == {2}
    names = [s["name"] for s in cfg["data"]["sources"]]
    assert sorted(result["sources"]) == sorted(names)
    # kappa reached the variants that use it: A = Q (1 - C) exp(-kappa (R - 1)) with the configured kappa.
    for s in result["sources"].values():
        a = s["quality"] * (1 - s["capability"]) * math.exp(-3.0 * (s["difficulty"] - 1))
        assert math.isclose(s["dmc"]["A"], a, rel_tol=1e-6, abs_tol=1e-12)

    # Command-line flags override the callback's settings.
    rc = score_dmc.main(["--config", str(config), "--output", str(out), "--probe-size", "3", "--variant", "A"])
    assert rc == 0
    result = json.loads(out.read_text())
    assert result["variant"] == "A" and set(result["probe"]["trajectories"].values()) == {3}


def test_score_dmc_reports_a_bad_config(tmp_path, capsys):
    config = write_config({"data": {"sources": []}, "model": {"student": {"nope": 1}}}, tmp_path / "bad.yaml")
    assert score_dmc.main(["--config", str(config)]) == 1
    assert "nope" in capsys.readouterr().err
