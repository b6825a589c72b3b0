"""The CLI offers only what works: no ``predict`` sub-command (DistillModule has no ``forward``) and no generic
``--optimizer``/``--lr_scheduler`` (they failed with "optimizer got an empty parameter list"); the optimiser is
``model.optimizer`` / ``model.scheduler``. Preemption and non-finite options are documented in ``fit --help``.

The CLI runs in-process (``lit_distill.cli.main``, as in test_errors.py): parsing is all that is checked, and a
subprocess per command re-imports torch, transformers and Lightning (~10 s each on 2 cores). The console entry
point itself is exercised by the subprocess fits of test_cli.py.
"""

from __future__ import annotations

import logging

from lit_distill import cli


def _main(capsys, argv: list[str]) -> tuple[int, str, str]:
    """``lit-distill ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fit_help_offers_only_what_works(capsys, monkeypatch):
    # A log handler of an earlier in-process test may hold a closed capture stream (see test_errors.py).
    monkeypatch.setattr(logging, "raiseExceptions", False)
    monkeypatch.delenv("LIT_DISTILL_DEBUG", raising=False)
    code, out, err = _main(capsys, ["fit", "--help"])
    assert code == 0, err[-2000:]
    assert "--optimizer " not in out and "--lr_scheduler" not in out
    for option in ("--model.optimizer OPTIMIZER", "--model.max_consecutive_skips", "--preemption.requeue"):
        assert option in out, option

    code, _, err = _main(capsys, ["fit", "--optimizer", "torch.optim.SGD"])
    assert code != 0 and "--optimizer" in err, err[-2000:]

    code, _, err = _main(capsys, ["predict", "--help"])
    assert code != 0 and "predict" in err, err[-2000:]
    code, out, _ = _main(capsys, ["--help"])
    assert code == 0 and "fit/validate/test" in out and "predict" not in out
