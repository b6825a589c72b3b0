"""The CLI offers only what works: no ``predict`` sub-command (DistillModule has no ``forward``) and no generic
``--optimizer``/``--lr_scheduler`` (they failed with "optimizer got an empty parameter list"); the optimiser is
``model.optimizer`` / ``model.scheduler``. Preemption and non-finite options are documented in ``fit --help``."""

from __future__ import annotations

from helpers import run_cli


def test_fit_help_offers_only_what_works():
    out = run_cli(["fit", "--help"], timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--optimizer " not in out.stdout and "--lr_scheduler" not in out.stdout
    for option in ("--model.optimizer OPTIMIZER", "--model.max_consecutive_skips", "--preemption.requeue"):
        assert option in out.stdout, option

    out = run_cli(["fit", "--optimizer", "torch.optim.SGD"], timeout=120)
    assert out.returncode != 0 and "--optimizer" in out.stderr, out.stderr[-2000:]

    out = run_cli(["predict", "--help"], timeout=120)
    assert out.returncode != 0 and "predict" in out.stderr, out.stderr[-2000:]
    assert "predict" not in run_cli(["--help"], timeout=120).stdout
