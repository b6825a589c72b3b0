"""`lit-distill data` counts the rows a config's DMC probes hold out of training."""

from __future__ import annotations

from lit_distill.tools.data import main

from helpers import callback, tiny_config, write_config


def _held_column(stdout: str) -> dict[str, int]:
    rows = [line.split() for line in stdout.splitlines() if line.split()[:1] and line.split()[0] in ("concise", "hard")]
    return {r[0]: int(r[-1]) for r in rows}


def test_data_command_counts_held_out_probe_rows(pool_dir, tokenizer_dir, tmp_path, capsys):
    cfg = tiny_config(pool_dir, tokenizer_dir, tmp_path)
    assert main([str(write_config(cfg, tmp_path / "plain.yaml"))]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("source"))
    assert header.split()[-1] == "held"
    cfg["dmc"] = callback("dmc.DMCCallback", probe_size=6, probe_questions=3)  # 3 problems x K = 3 per source
    assert main([str(write_config(cfg, tmp_path / "dmc.yaml"))]) == 0
    assert _held_column(capsys.readouterr().out) == {"concise": 9, "hard": 9}
