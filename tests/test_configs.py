"""Every shipped YAML parses with the CLI's own parser (types, keys and links), without running."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_distill.cli import TRAINER_DEFAULTS, _cli_class
from lit_distill.data.datamodule import DistillDataModule
from lit_distill.model.module import DistillModule

from helpers import REPO, tiny_config, write_config

CONFIGS = sorted(p for p in (REPO / "configs").rglob("*.yaml"))


def _parse(paths: list[Path]):
    class ParseOnly(_cli_class()):
        def instantiate_classes(self) -> None:  # parse and validate; do not build models
            pass

    args = [a for p in paths for a in ("--config", str(p))]
    return ParseOnly(DistillModule, DistillDataModule, run=False, args=args, trainer_defaults=TRAINER_DEFAULTS).config


def _launch_line(path: Path) -> list[Path]:
    """The configs a YAML's first comment says to launch it with (composed configs name several)."""
    first = path.read_text().splitlines()[0]
    assert first.startswith("#"), f"{path}: the first line should show how to launch it"
    words = first.split()
    return [REPO / w for w, prev in zip(words[1:], words[:-1], strict=True) if prev == "--config"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_parses(path):
    launch = _launch_line(path)
    files = launch if path in launch else [path]
    config = _parse(files)
    assert config.data.sources, f"{path}: no data sources"
    # data.tokenizer is no longer a key: the CLI hands the model's loaded tokenizer to the DataModule.
    student = config.model.student
    assert student.tokenizer or student.path, f"{path}: the student names no tokenizer"


def test_every_config_is_tested():
    """Every file under configs/ is a .yaml this module collects, and each one's launch line names it.

    test_config_parses parses a config through its launch line; a fragment whose line named only other
    files (or a .yml file the glob misses) would pass without ever being parsed.
    """
    files = sorted(p for p in (REPO / "configs").rglob("*") if p.is_file())
    assert files and files == CONFIGS, f"not collected: {sorted(set(files) - set(CONFIGS))}"
    for path in CONFIGS:
        launch = _launch_line(path)
        # No launch line: parsed on its own. A launch line: it must name the config, or it is never parsed.
        assert not launch or path in launch, f"{path}: its launch line does not include the config itself"
        missing = [str(p) for p in launch if not p.is_file()]
        assert not missing, f"{path}: its launch line names missing files {missing}"


def test_cli_injects_the_models_tokenizer(pool_dir, tokenizer_dir, tmp_path):
    """The tokenizer is loaded once, by the model, and the DataModule gets that very object."""
    cfg = write_config(tiny_config(pool_dir, tokenizer_dir, tmp_path), tmp_path / "c.yaml")
    cli = _cli_class()(
        DistillModule,
        DistillDataModule,
        run=False,
        args=["--config", str(cfg)],
        trainer_defaults=TRAINER_DEFAULTS,
    )
    assert cli.datamodule.tokenizer is cli.model.tokenizer
    assert cli.datamodule.load_tokenizer() is cli.model.tokenizer
