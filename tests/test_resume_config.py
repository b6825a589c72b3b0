"""A resume trains what the config says (not the checkpoint's hyper-parameters, as LightningCLI would):

* a config whose student has another shape than the checkpoint is refused with one line naming a tensor, both
  shapes and the hyper-parameter behind them (before: exit 0, training the checkpoint's hidden-64 student);
* ``--model.optimizer.lr`` given on resume is the learning rate the resumed optimiser and scheduler use (before:
  the checkpoint's, while ``config.yaml`` recorded the new value), and the replacement is announced.

Both resume the session's shared run (``conftest.cli_run``, step 6, lr 1e-3) into a run directory of their own,
through ``lit_distill.cli.main`` in this process (as test_errors.py and test_faults.py do): a subprocess per
command would add ~10 s of imports each on 2 cores, and the console entry point is covered by ``cli_run``.
"""

from __future__ import annotations

import copy
import logging

import torch
import yaml

from lit_distill import cli

from helpers import set_dotted, write_config


def _main(capsys, argv: list[str]) -> tuple[int, str]:
    """``lit-distill ARGV`` in this process: (exit status, stderr)."""
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def test_resume_refuses_another_shape_and_honours_a_new_learning_rate(cli_run, tmp_path, capsys, caplog, monkeypatch):
    # A log handler of an earlier in-process run may hold a closed capture stream (see test_errors.py); the
    # announcement is read from caplog's handler, attached to the package logger (which does not propagate).
    monkeypatch.setattr(logging, "raiseExceptions", False)
    monkeypatch.delenv("LIT_DISTILL_DEBUG", raising=False)
    package_logger = logging.getLogger("lit_distill")
    package_logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="lit_distill")
    try:
        _resume(cli_run, tmp_path, capsys, caplog)
    finally:
        package_logger.removeHandler(caplog.handler)


def _resume(cli_run, tmp_path, capsys, caplog) -> None:
    cfg = copy.deepcopy(cli_run.config)
    set_dotted(cfg, {"trainer.logger.init_args.save_dir": str(tmp_path / "runs"), "trainer.limit_val_batches": 0})
    cfg["trainer"].pop("callbacks")  # no Hugging Face export at the end
    path = str(write_config(cfg, tmp_path / "tiny.yaml"))
    resume = ["--trainer.max_steps", "7", "--ckpt_path", str(cli_run.last_ckpt)]
    run = tmp_path / "runs" / "tiny" / "version_0"

    wider = ["--model.student.config.hidden_size", "128", "--model.student.config.intermediate_size", "256"]
    refused = ["--trainer.logger.init_args.save_dir", str(tmp_path / "refused")]
    code, err = _main(capsys, ["fit", "--config", path, *wider, *refused, *resume])
    assert code == 1, (code, err[-3000:])
    errors = [line for line in err.splitlines() if line.startswith("lit-distill: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-3000:]
    assert "64] in the checkpoint and [" in errors[0] and "128] in the config's model" in errors[0], errors[0]
    assert "model.student.config.hidden_size: checkpoint 64, config 128" in errors[0], errors[0]
    assert not list(tmp_path.rglob("*.ckpt")), "the refused resume wrote a checkpoint"

    caplog.clear()
    code, err = _main(capsys, ["fit", "--config", path, "--model.optimizer.lr", "5e-4", *resume])
    assert code == 0, err[-3000:]
    assert "model.optimizer.lr=0.0005 (checkpoint: 0.001)" in caplog.text, caplog.text[-3000:]
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert state["global_step"] == 7
    assert state["hyper_parameters"]["optimizer"]["lr"] == 5e-4
    assert state["lr_schedulers"][0]["base_lrs"] == [5e-4, 5e-4]
    assert [g["initial_lr"] for g in state["optimizer_states"][0]["param_groups"]] == [5e-4, 5e-4]
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["optimizer"]["lr"] == 5e-4
