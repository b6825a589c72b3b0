"""Build the model and data objects a training config describes, for tools that do not train.

Uses jsonargparse with the same classes as the CLI, so a config that trains also works here (types,
defaults and the tokenizer link from ``model.student`` to ``data.tokenizer``).
"""

from __future__ import annotations

from pathlib import Path

import yaml


def read_config(path: str | Path) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


def build_datamodule(config: dict, **overrides):
    """The ``DistillDataModule`` of a parsed config (``overrides`` replace ``data`` keys when not None)."""
    from jsonargparse import ArgumentParser

    from lit_distill.data.datamodule import DistillDataModule

    data = dict(config.get("data") or {})
    student = (config.get("model") or {}).get("student") or {}
    data.setdefault("tokenizer", student.get("tokenizer") or student.get("path"))
    data.update({k: v for k, v in overrides.items() if v is not None})
    if not data.get("sources"):
        raise ValueError("the config has no data.sources")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(DistillDataModule, "data")
    return parser.instantiate_classes(parser.parse_object({"data": data})).data


def build_module(config: dict):
    """The ``DistillModule`` of a parsed config (the student itself is built by ``configure_model``)."""
    from jsonargparse import ArgumentParser

    from lit_distill.model.module import DistillModule

    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(DistillModule, "model")
    return parser.instantiate_classes(parser.parse_object({"model": config.get("model") or {}})).model
