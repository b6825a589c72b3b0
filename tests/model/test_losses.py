"""Per-sequence statistics and loss reduction: exact values, chunking, weights and normalisation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lit_distill.model.losses import SequenceStats, brier_top_k, reduce_loss, sequence_statistics

V, H = 37, 16


@pytest.fixture
def setup():
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 9, H, generator=g, dtype=torch.float64)
    head = torch.nn.Linear(H, V, bias=False).double()
    ids = torch.randint(0, V, (3, 9), generator=g)
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[0, 4:9] = True
    mask[1, 2:5] = True
    mask[2, 7:9] = True
    return hidden, head, ids, mask


def _reference(hidden, head, ids, mask):
    """Plain full-logits computation: shift, cross entropy and full-vocabulary Brier per sequence."""
    logits = head(hidden)[:, :-1]
    labels, m = ids[:, 1:], mask[:, 1:]
    ce = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
    probs = logits.softmax(-1)
    brier = ((probs - F.one_hot(labels, V)) ** 2).sum(-1)
    return (ce * m).sum(1), m.sum(1).double(), (brier * m).sum(1)


def test_matches_full_logits_and_exact_brier(setup):
    hidden, head, ids, mask = setup
    ce, n, brier = _reference(hidden, head, ids, mask)
    stats = sequence_statistics(hidden, head, ids, mask, top_k=V, chunk_size=4)
    assert torch.allclose(stats.ce_sum, ce) and torch.equal(stats.n_tokens, n)
    assert torch.allclose(stats.brier_sum, brier)  # K = V: the exact ||e_y - pi||^2


def test_top_k_brier_renormalises():
    logits = torch.tensor([[3.0, 1.0, 0.0, -1.0]])
    p = torch.softmax(torch.tensor([3.0, 1.0]), 0)
    assert brier_top_k(logits, torch.tensor([1]), 2).item() == pytest.approx(1 - 2 * p[1] + (p**2).sum())
    # Label outside the top-K: 1 + sum p~^2 (methods.md 1.2).
    assert brier_top_k(logits, torch.tensor([3]), 2).item() == pytest.approx(1 + (p**2).sum())


def test_chunking_and_checkpointing_do_not_change_values_or_gradients(setup):
    hidden, head, ids, mask = setup
    grads = []
    for chunk in (2, 3, 1000):
        h = hidden.clone().requires_grad_(True)
        head.zero_grad()
        stats = sequence_statistics(h, head, ids, mask, chunk_size=chunk)
        stats.ce_sum.sum().backward()
        grads.append((stats.ce_sum.detach(), h.grad.clone(), head.weight.grad.clone()))
    for other in grads[1:]:
        for a, b in zip(grads[0], other, strict=True):
            assert torch.allclose(a, b)


def test_packed_sequence_index(setup):
    hidden, head, ids, mask = setup
    # Treat rows 0 and 2 as one packed sequence (index 0) and row 1 as sequence 1.
    seq = torch.tensor([[0] * 9, [1] * 9, [0] * 9])
    stats = sequence_statistics(hidden, head, ids, mask, sequence_index=seq, num_sequences=2)
    ce, n, _ = _reference(hidden, head, ids, mask)
    assert torch.allclose(stats.ce_sum, torch.stack([ce[0] + ce[2], ce[1]]))
    assert stats.n_tokens.tolist() == [n[0] + n[2], n[1]]


def _stats(ce, n):
    return SequenceStats(ce_sum=torch.tensor(ce, dtype=torch.float64), n_tokens=torch.tensor(n, dtype=torch.float64))


def test_reference_mode_normalises_within_micro_batch():
    s = _stats([2.0], [4.0])
    # At micro-batch size 1 the weight cancels exactly; weight 0 zeroes the micro-batch (methods.md 1.6).
    assert reduce_loss(s, torch.tensor([0.3])).item() == reduce_loss(s, torch.tensor([1.0])).item() == 0.5
    assert reduce_loss(s, torch.tensor([0.0])).item() == 0.0
    s2 = _stats([2.0, 6.0], [4.0, 2.0])
    assert reduce_loss(s2, torch.tensor([1.0, 3.0])).item() == pytest.approx((2 + 18) / (4 + 6))
    seq = reduce_loss(s2, torch.tensor([1.0, 3.0]), reduction="sequence").item()
    assert seq == pytest.approx((0.5 + 3 * 3.0) / 4)


def test_paper_mode_accumulated_micro_batches_equal_the_global_objective():
    ce, n, w = [2.0, 6.0, 1.0, 5.0], [4.0, 2.0, 1.0, 5.0], [0.5, 1.5, 2.0, 0.0]
    full = sum(wi * ci for wi, ci in zip(w, ce, strict=True)) / sum(n)
    # Two micro-batches of two; Lightning divides each by the accumulation count (2).
    parts = [
        reduce_loss(
            _stats(ce[i : i + 2], n[i : i + 2]),
            torch.tensor(w[i : i + 2]),
            mode="paper",
            global_tokens=sum(n),
            micro_batches_per_step=2,
        ).item()
        / 2
        for i in (0, 2)
    ]
    assert sum(parts) == pytest.approx(full)
    seq = reduce_loss(_stats(ce, n), torch.tensor(w), mode="paper", reduction="sequence", global_examples=4)
    assert seq.item() == pytest.approx(sum(wi * c / t for wi, c, t in zip(w, ce, n, strict=True)) / 4)
