"""DistillDataModule without a trainer: tickets become batches in order, weights apply at the next step,
and the state dict resumes the exact stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_distill.data.datamodule import DistillDataModule, MixtureConfig, Ticket
from lit_distill.data.sources import SourceConfig, SourceError

NAMES = ("concise", "verbose", "noisy", "hard")


def _dm(pool_dir, tokenizer_dir, **kw):
    args = dict(
        sources=[SourceConfig(name=n, path=str(pool_dir / f"{n}.jsonl")) for n in NAMES],
        eval_sources=[SourceConfig(name="easy", path=str(pool_dir / "eval_easy.jsonl"))],
        tokenizer=tokenizer_dir,
        micro_batch_size=4,
        max_length=1024,  # byte-level tokens: no demo trajectory is truncated
        seed=3,
    )
    args.update(kw)
    dm = DistillDataModule(**args)
    dm.setup("fit")
    return dm


def _consume(dm, n):
    tickets = iter(dm.train_dataloader())
    return [dm.on_before_batch_transfer(next(tickets), 0) for _ in range(n)]


def test_pool_and_quality(pool_dir, tokenizer_dir):
    dm = _dm(pool_dir, tokenizer_dir)
    summary = {s.name: s for s in dm.pool.summary()}
    assert dm.pool.sizes.tolist() == [36, 36, 36, 36]
    assert summary["concise"].correct == 36 and summary["noisy"].correct < 36
    assert summary["verbose"].tokens_mean > 2 * summary["concise"].tokens_mean
    assert len(dm.prompts) == 8 and dm.prompts.names == ["easy"]


@pytest.mark.parametrize("packing", [True, False])
def test_batches_carry_exact_response_tokens(pool_dir, tokenizer_dir, packing):
    dm = _dm(pool_dir, tokenizer_dir, packing=packing)
    batch = _consume(dm, 1)[0]
    idx = batch["index"].numpy()
    assert batch["response_mask"].sum().item() == dm.pool.response_tokens(idx).sum()
    assert batch["global_tokens"].item() == dm.pool.response_tokens(idx).sum()  # 1 rank, no accumulation
    assert batch["source"].tolist() == dm.pool.source_of[idx].tolist()
    decoded = dm.tokenizer.decode(batch["input_ids"][batch["response_mask"]].tolist())
    assert decoded.count("<|im_end|>") == len(idx)


def test_policies(pool_dir, tokenizer_dir):
    dm = _dm(pool_dir, tokenizer_dir, mixture=MixtureConfig(policy="static", weights={"hard": 1.0, "noisy": 1.0}))
    assert dm.source_weights == {"concise": 0.0, "verbose": 0.0, "noisy": 0.5, "hard": 0.5}
    with pytest.raises(SourceError, match="ghost"):
        _dm(pool_dir, tokenizer_dir, mixture=MixtureConfig(policy="static", weights={"ghost": 1.0}))


def test_weights_take_effect_at_the_next_step_and_state_resumes(pool_dir, tokenizer_dir):
    dm = _dm(pool_dir, tokenizer_dir)
    _consume(dm, 3)
    dm.set_source_weights({"hard": 1.0})
    hard = dm.pool.rows(3)
    dm.set_sample_weights(hard[:6], 0.0)
    dm.set_loss_weights(hard, 2.5)
    state = dm.state_dict()
    nxt = _consume(dm, 4)
    for b in nxt:
        assert set(b["source"].tolist()) == {3}
        assert not set(b["index"].tolist()) & set(hard[:6].tolist())
        assert torch.all(b["loss_weight"] == 2.5)
    dm2 = _dm(pool_dir, tokenizer_dir, seed=99)
    dm2.load_state_dict(state)
    again = _consume(dm2, 4)
    for a, b in zip(nxt, again, strict=True):
        assert torch.equal(a["index"], b["index"])


def test_out_of_order_ticket_is_an_error(pool_dir, tokenizer_dir):
    dm = _dm(pool_dir, tokenizer_dir)
    with pytest.raises(RuntimeError, match="out of step"):
        dm.on_before_batch_transfer(Ticket(5), 0)


def test_probes_are_fixed(pool_dir, tokenizer_dir):
    dm = _dm(pool_dir, tokenizer_dir)
    a, b = dm.pool.probe_rows(1, 10, seed=0), dm.pool.probe_rows(1, 10, seed=0)
    assert np.array_equal(a, b) and len(a) == 10 and np.all(dm.pool.source_of[a] == 1)
    q = dm.pool.probe_questions(2, 5, seed=0)
    assert len(np.unique(dm.pool.problem_of[q])) == 5
