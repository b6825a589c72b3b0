"""The checkpoint package: weights-only reading of old checkpoints and atomic writes."""

from __future__ import annotations

import logging

import torch

from lit_distill.checkpoint import atomic_torch_save, read_checkpoint
from lit_distill.model.generation import GenerationConfig


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_old_checkpoints_with_pickled_configs_load_weights_only(tmp_path, monkeypatch):
    # Before the move, GenerationConfig was pickled under lit_distill.model.module; such files stay loadable
    # without falling back to full unpickling (which logs a warning).
    monkeypatch.setattr(GenerationConfig, "__module__", "lit_distill.model.module")
    path = tmp_path / "old.ckpt"
    torch.save({"hyper_parameters": {"generation": GenerationConfig(max_new_tokens=7)}, "global_step": 3}, path)
    monkeypatch.undo()
    # A handler on the reader's own logger: the CLI may have stopped propagation to the root logger.
    records, logger = _Records(), logging.getLogger("lit_distill.checkpoint.read")
    logger.addHandler(records)
    try:
        got = read_checkpoint(path)
    finally:
        logger.removeHandler(records)
    assert got["hyper_parameters"]["generation"].max_new_tokens == 7 and got["global_step"] == 3
    assert not [m for m in records.messages if "full unpickling" in m]


def test_atomic_save_replaces_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "ckpt" / "last.ckpt"
    atomic_torch_save({"step": 1}, path)
    atomic_torch_save({"step": 2}, path)
    assert torch.load(path)["step"] == 2
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
