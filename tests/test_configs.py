"""Every shipped YAML parses with the CLI's own parser (types, keys and links), without running."""

from __future__ import annotations

from pathlib import Path

import pytest

from lit_distill.cli import TRAINER_DEFAULTS, _cli_class
from lit_distill.data.datamodule import DistillDataModule
from lit_distill.model.module import DistillModule

from helpers import REPO

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
    assert config.data.tokenizer, f"{path}: tokenizer not linked from the model"


def test_every_config_is_tested():
    assert CONFIGS, "no configs found"
