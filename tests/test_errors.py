"""Config mistakes fail in one line naming the key, before any source is tokenised (issue 13, section 3).

The CLI runs in-process (``lit_distill.cli.main``): a subprocess per case would cost ~20 s each. Tokenising is
replaced by a function that fails the test, so "before tokenising" is checked, not assumed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from lit_distill import cli
from lit_distill.errors import MissingModelFolderError

from helpers import callback, tiny_config, write_config, write_jsonl


@pytest.fixture
def no_tokenising(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a source was tokenised before the config error was reported")

    monkeypatch.setattr("lit_distill.data.datamodule.tokenise_source", fail)
    # In-process runs: a log handler of an earlier test may hold a closed capture stream; logging would print
    # its own "--- Logging error ---" traceback, which is not the CLI's output.
    monkeypatch.setattr(logging, "raiseExceptions", False)
    monkeypatch.delenv("LIT_DISTILL_DEBUG", raising=False)


def _fails_in_one_line(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 1
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("lit-distill: error:")]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err and "usage:" not in err, err[-3000:]
    return lines[0]


def _no_answers(tmp_path: Path) -> str:
    rows = [{"problem_id": f"p{i}", "prompt": f"Say hello {i}.", "response": "Hello there."} for i in range(6)]
    return str(write_jsonl(tmp_path / "plain.jsonl", rows))


CASES = {
    # name: (config overrides, command-line overrides, text the one line must contain)
    "micro batch 0": ({}, ["--data.micro_batch_size", "0"], "data.micro_batch_size must be >= 1, got 0"),
    "micro batch negative": ({}, ["--data.micro_batch_size=-2"], "data.micro_batch_size must be >= 1, got -2"),
    "temperature 0": ({"data.mixture": {"policy": "temperature", "temperature": 0}}, [], "data.mixture.temperature"),
    "static negative": ({"data.mixture": {"policy": "static", "weights": {"hard": -1.0}}}, [], "finite and >= 0"),
    "static all zero": ({"data.mixture": {"policy": "static", "weights": {"hard": 0.0}}}, [], "all zero"),
    "static unknown source": ({"data.mixture": {"policy": "static", "weights": {"ghost": 1.0}}}, [], "ghost"),
    "static without weights": ({"data.mixture": {"policy": "static"}}, [], "needs data.mixture.weights"),
    "weights under balanced": ({"data.mixture.weights": {"hard": 1.0}}, [], "only used by policy 'static'"),
    "dmc cadence 0": ({"dmc": callback("dmc.DMCCallback", every_n_steps=0)}, [], "dmc.every_n_steps"),
    "capability cadence negative": (
        {"dmc": callback("dmc.DMCCallback", capability_every_n_steps=-5)},
        [],
        "dmc.capability_every_n_steps",
    ),
    "lark budget 0": ({"lark": callback("lark.LARKCallback", budget=0)}, [], "lark.budget must be >= 1"),
    "typo key": ({}, ["--data.micro_batchsize", "3"], "did you mean 'data.micro_batch_size'"),
    "typo key in the file": ({"data.micro_batchsize": 3}, [], "option 'data.micro_batchsize' (did you mean"),
    "missing data file": ({"data.sources": [{"name": "x", "path": "/no/x.jsonl"}]}, [], "/no/x.jsonl"),
    "typo init_args": (
        {"dmc": callback("dmc.DMCCallback", probesize=4)},
        [],
        "dmc: Option 'probesize' is not accepted (did you mean 'probe_size'?)",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_config_mistakes_fail_in_one_line_before_tokenising(
    case, pool_dir, tokenizer_dir, tmp_path, capsys, no_tokenising
):
    over, args, expected = CASES[case]
    cfg = write_config(tiny_config(pool_dir, tokenizer_dir, tmp_path, **over), tmp_path / "c.yaml")
    assert expected in _fails_in_one_line(capsys, ["fit", "--config", str(cfg), *args])


def test_validate_and_dmc_answers_and_resume_batch(pool_dir, tokenizer_dir, tmp_path, capsys, no_tokenising):
    cfg = tiny_config(pool_dir, tokenizer_dir, tmp_path)
    path = write_config(cfg, tmp_path / "c.yaml")
    assert "data.micro_batch_size" in _fails_in_one_line(
        capsys, ["validate", "--config", str(path), "--data.micro_batch_size", "0"]
    )
    # A capability variant (A, the default) on a source without reference answers: found on the loaded rows.
    cfg["data"]["sources"].append({"name": "plain", "path": _no_answers(tmp_path)})
    cfg["dmc"] = callback("dmc.DMCCallback", every_n_steps=2)
    line = _fails_in_one_line(capsys, ["fit", "--config", str(write_config(cfg, tmp_path / "dmc.yaml"))])
    assert "DMC variant A" in line and "'plain'" in line
    # A resume whose checkpoint was written with another global batch (this run: 4 x 1 device x 1).
    ckpt = tmp_path / "old.ckpt"
    torch.save({"DistillDataModule": {"global_batch_size": 12}}, ckpt)
    line = _fails_in_one_line(capsys, ["fit", "--config", str(path), "--ckpt_path", str(ckpt)])
    assert "global batch of 12" in line and "this run has 4" in line


def test_missing_model_folder_and_missing_gpu(pool_dir, tokenizer_dir, tmp_path, capsys, monkeypatch, no_tokenising):
    cfg = tiny_config(pool_dir, tokenizer_dir, tmp_path)
    missing = str(tmp_path / "models" / "Qwen2.5-0.5B-Instruct")
    cfg["model"]["student"] = {"path": missing}
    line = _fails_in_one_line(capsys, ["fit", "--config", str(write_config(cfg, tmp_path / "m.yaml"))])
    assert f"model folder '{missing}' does not exist" in line
    # The same path relative to the working directory, as the GPU template writes it (also a valid hub id form).
    monkeypatch.chdir(tmp_path / "..")
    cfg["model"]["student"] = {"path": "models/Qwen2.5-0.5B-Instruct"}
    line = _fails_in_one_line(capsys, ["fit", "--config", str(write_config(cfg, tmp_path / "m.yaml"))])
    assert "model folder 'models/Qwen2.5-0.5B-Instruct' does not exist" in line
    if not torch.cuda.is_available():
        path = write_config(tiny_config(pool_dir, tokenizer_dir, tmp_path), tmp_path / "c.yaml")
        line = _fails_in_one_line(capsys, ["fit", "--config", str(path), "--trainer.accelerator", "gpu"])
        assert "trainer.accelerator" in line and "GPU" in line


def test_debug_flag_and_environment_keep_the_traceback(pool_dir, tokenizer_dir, tmp_path, monkeypatch, no_tokenising):
    cfg = write_config(tiny_config(pool_dir, tokenizer_dir, tmp_path), tmp_path / "c.yaml")
    bad = ["fit", "--config", str(cfg), "--data.mixture.policy", "static"]
    with pytest.raises(ValueError, match=r"needs data\.mixture\.weights"):  # as jsonargparse raised it
        cli.main([*bad, "--debug"])
    monkeypatch.setenv("LIT_DISTILL_DEBUG", "1")
    with pytest.raises(ValueError, match=r"needs data\.mixture\.weights"):
        cli.main(bad)
    cfg = tiny_config(pool_dir, tokenizer_dir, tmp_path)
    cfg["model"]["student"] = {"path": str(tmp_path / "nowhere")}
    with pytest.raises(MissingModelFolderError):
        cli.main(["fit", "--config", str(write_config(cfg, tmp_path / "m.yaml"))])


def test_one_line_mapping_and_missing_folder_wording(tmp_path, monkeypatch):
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from lit_distill.errors import load_local_or_hub, one_line

    # Checked here too, so a machine with a GPU (where the CLI case above is skipped) still covers the mapping.
    assert "trainer.accelerator" in one_line(MisconfigurationException("No supported gpu backend found!"))
    nested = "Does not validate against any of the Union subtypes\nErrors:\n  - lark.budget must be >= 1\n  - Expected"
    assert one_line(ValueError(nested)) == "lark.budget must be >= 1"

    def hub_fails(path, **kwargs):
        raise OSError(f"We couldn't connect to 'https://huggingface.co' to load {path}\n(130 more lines)")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingModelFolderError) as err:
        load_local_or_hub(hub_fails, "models/Qwen2.5-0.5B-Instruct")
    assert "does not exist" in str(err.value) and "huggingface" not in str(err.value)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # online: an org/name path may have been meant as a hub id
    with pytest.raises(MissingModelFolderError, match="as a hub id it failed too: We couldn't connect"):
        load_local_or_hub(hub_fails, "Qwen/Qwen2.5-0.5B-Instruct")
    with pytest.raises(OSError, match="couldn't connect") as err:  # the folder exists: the loader's own error
        load_local_or_hub(hub_fails, str(tmp_path))
    assert not isinstance(err.value, MissingModelFolderError)
