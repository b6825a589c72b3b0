"""Read a training config exactly as ``lit-distill fit`` does, for tools that do not train.

The CLI's own LightningCLI class parses the files (several ``--config`` files compose, ``class_path`` /
``init_args`` forms, dotted overrides, defaults, the tokenizer injection into the DataModule), then the model,
the DataModule and the opt-in callbacks (``dmc``, ``lark``, ...) are instantiated as for training; no
Trainer is built and nothing is trained. The student itself is only built by ``model.configure_model()``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """The config does not parse or instantiate (the message names the key)."""


@dataclass
class ConfiguredRun:
    """What a training config instantiates, minus the Trainer.

    Attributes:
        model: The ``DistillModule`` (student not built yet: call ``configure_model()``).
        datamodule: The ``DistillDataModule``, holding the model's tokenizer.
        callbacks: Opt-in callback key (``dmc``, ``lark``, ``consistency``) -> instance, or None when absent.
        config: The parsed (not instantiated) namespace, for reading any other key.
    """

    model: Any
    datamodule: Any
    callbacks: dict[str, Any]
    config: Any


def load_run(configs: str | Path | Sequence[str | Path], overrides: Sequence[str] = ()) -> ConfiguredRun:
    """Parse ``configs`` (composed in order) plus CLI-style ``overrides`` and instantiate them as ``fit`` does.

    Args:
        configs: One YAML path or several (like repeated ``--config``).
        overrides: Extra arguments such as ``--data.max_length=512``.
    """
    from lit_distill.cli import TRAINER_DEFAULTS, _cli_class, _has_omegaconf
    from lit_distill.data.datamodule import DistillDataModule
    from lit_distill.model.module import DistillModule

    paths = [configs] if isinstance(configs, str | Path) else list(configs)
    args = [a for p in paths for a in ("--config", str(p))] + list(overrides)

    class ToolCLI(_cli_class()):
        def instantiate_classes(self) -> None:  # model, data and callbacks; no Trainer
            self.config_init = self.parser.instantiate_classes(self.config)
            self.model = self._get(self.config_init, "model")
            self.datamodule = self._get(self.config_init, "data")

    parser_kwargs: dict[str, Any] = {"exit_on_error": False}
    if _has_omegaconf():
        parser_kwargs["parser_mode"] = "omegaconf"
    try:
        with warnings.catch_warnings():
            # The tool's own argv is in sys.argv too; LightningCLI warns about that mix, which is intended here.
            warnings.filterwarnings("ignore", message=".*args parameter is intended to run from within Python")
            cli = ToolCLI(
                DistillModule,
                DistillDataModule,
                run=False,
                args=args,
                trainer_defaults=TRAINER_DEFAULTS,
                parser_kwargs=parser_kwargs,
            )
    except Exception as err:  # jsonargparse wraps the cause; keep its message, which names the key
        if isinstance(err, FileNotFoundError | OSError):
            raise
        raise ConfigError(f"{', '.join(map(str, paths))}: {err}") from err
    callbacks = {k: cli._get(cli.config_init, k) for k in ("dmc", "lark", "consistency")}
    return ConfiguredRun(cli.model, cli.datamodule, callbacks, cli.config)
