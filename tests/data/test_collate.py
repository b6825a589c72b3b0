"""Packing: first-fit decreasing bins and packed rows whose positions, masks and indices are exact."""

from __future__ import annotations

import numpy as np
import torch

from lit_distill.data.collate import collate_train, first_fit_decreasing, pack


def test_first_fit_decreasing_fills_bins_in_order():
    lengths = [5, 3, 4, 2, 6]
    bins = first_fit_decreasing(lengths, capacity=8)
    # Decreasing: 6 opens bin 0, 5 opens bin 1, 4 opens bin 2, 3 fits bin 1 (5+3), 2 fits bin 0 (6+2).
    assert bins == [[4, 3], [0, 1], [2]]
    assert all(sum(lengths[i] for i in b) <= 8 for b in bins)
    assert sorted(i for b in bins for i in b) == list(range(len(lengths)))


def test_an_item_longer_than_the_capacity_gets_its_own_bin():
    assert first_fit_decreasing([10, 2, 2], capacity=4) == [[0], [1, 2]]


def test_pack_rows():
    seqs = [np.array([11, 12, 13, 14]), np.array([21, 22]), np.array([31, 32, 33])]
    prompt_len = np.array([2, 1, 1])
    out = pack(seqs, prompt_len, pad_id=0, capacity=6)
    ids, pos, resp, seq = out["input_ids"], out["position_ids"], out["response_mask"], out["sequence_index"]
    assert out["num_sequences"] == 3 and ids.shape == (2, 6)
    # Row 0: the 4-token sequence then the 2-token one; row 1: the 3-token one and a padding tail.
    assert ids[0].tolist() == [11, 12, 13, 14, 21, 22]
    assert ids[1].tolist() == [31, 32, 33, 0, 0, 0]
    assert pos[0].tolist() == [0, 1, 2, 3, 0, 1]  # positions restart at every sequence
    assert pos[1].tolist() == [0, 1, 2, 0, 1, 2]  # the padding tail is a block of its own
    assert seq[0].tolist()[:6] == [0, 0, 0, 0, 1, 1] and seq[1].tolist()[:3] == [2, 2, 2]
    # Response tokens: [P, T) of each sequence, nothing of the padding.
    assert resp[0].tolist() == [False, False, True, True, False, True]
    assert resp[1].tolist() == [False, True, True, False, False, False]


def test_packed_and_padded_batches_hold_the_same_response_tokens():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 50, size=n) for n in (7, 3, 9, 4, 5)]
    prompt_len = np.array([2, 1, 4, 1, 3])
    common = dict(
        pad_id=0,
        source=np.zeros(5, dtype=np.int64),
        index=np.arange(5),
        loss_weight=np.ones(5, dtype=np.float32),
        global_tokens=0,
        global_examples=5,
    )
    packed = collate_train(seqs, prompt_len, pack_length=12, **common)
    padded = collate_train(seqs, prompt_len, **common)
    assert "attention_mask" not in packed and packed["input_ids"].shape[0] < 5
    for i in range(5):
        want = torch.as_tensor(seqs[i][prompt_len[i] :])
        got = packed["input_ids"][packed["response_mask"] & (packed["sequence_index"] == i)]
        assert torch.equal(got, want)
        assert torch.equal(padded["input_ids"][i][padded["response_mask"][i]], want)
    assert packed["input_tokens"].item() == padded["input_tokens"].item() == sum(len(s) for s in seqs)
