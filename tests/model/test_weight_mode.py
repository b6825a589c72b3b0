"""``weight_mode`` through DistillModule.training_step: ``paper`` normalises by the global batch, ``reference``
within the micro-batch (docs/methods.md 1.6)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from lit_distill.batch import student_inputs
from lit_distill.data.collate import collate_train
from lit_distill.model.module import DistillModule
from lit_distill.model.student import StudentConfig

from helpers import TINY_LLAMA


def _module(tokenizer_dir, weight_mode: str, accumulate: int) -> DistillModule:
    module = DistillModule(
        student=StudentConfig(tokenizer=str(tokenizer_dir), config={"model_type": "llama", **TINY_LLAMA}),
        weight_mode=weight_mode,
    )
    module.configure_model()
    # The parts of a Trainer the training step reads (one rank, `accumulate` micro-batches per step).
    datamodule = SimpleNamespace(source_names=["a", "b"])
    module.trainer = SimpleNamespace(world_size=1, accumulate_grad_batches=accumulate, datamodule=datamodule)
    return module


def _batch(global_tokens: int) -> dict:
    rng = np.random.default_rng(0)
    seqs = [rng.integers(5, 200, size=n) for n in (12, 8, 10)]
    return collate_train(
        seqs,
        np.array([4, 3, 5]),
        pad_id=0,
        source=np.array([0, 1, 0]),
        index=np.arange(3),
        loss_weight=np.array([2.0, 0.0, 1.0], dtype=np.float32),
        global_tokens=global_tokens,
        global_examples=6,
        pack_length=None,
    )


@pytest.mark.parametrize("weight_mode", ["paper", "reference"])
def test_training_step_normalises_as_configured(tokenizer_dir, weight_mode):
    module = _module(tokenizer_dir, weight_mode, accumulate=2)
    tokens = 8 + 5 + 5  # response tokens of this micro-batch
    batch = _batch(global_tokens=2 * tokens)  # the optimiser step holds two such micro-batches
    loss = module.training_step(batch, 0)
    stats = module.student(**student_inputs(batch))
    w = batch["loss_weight"].double()
    ce, n = stats.ce_sum.double(), stats.n_tokens.double()
    # paper: sum w CE / global tokens, times the micro-batches Lightning averages over (2).
    paper = (w * ce).sum() / (2 * tokens) * 2
    reference = (w * ce).sum() / (w * n).sum()
    want, other = (paper, reference) if weight_mode == "paper" else (reference, paper)
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)
    assert abs(loss.item() - other.item()) > 1e-3  # the two modes really differ on this batch
