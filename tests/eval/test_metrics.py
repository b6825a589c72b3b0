"""AccuracyBySource: per-set sums of correct and attempted answers; padding items never count."""

from __future__ import annotations

import math

import torch

from lit_distill.eval.metrics import AccuracyBySource


def test_counts_per_set_and_ignores_invalid_items():
    m = AccuracyBySource(3)
    # set 0: 2 of 3 right; set 1: 0 of 1 right; set 2: nothing; the last item is padding (valid False).
    m.update(
        torch.tensor([1, 1, 0, 0, 1]),
        torch.tensor([0, 0, 0, 1, 1]),
        torch.tensor([True, True, True, True, False]),
    )
    out = m.compute()
    assert out["total"].tolist() == [3.0, 1.0, 0.0]
    per = out["per_source"].tolist()
    assert math.isclose(per[0], 2 / 3) and per[1] == 0.0 and math.isnan(per[2])  # an empty set is NaN, not 0
    assert math.isclose(out["overall"].item(), 2 / 4)  # over items, not a mean of per-set accuracies


def test_updates_accumulate_and_reset():
    m = AccuracyBySource(2)
    m.update(torch.tensor([1, 0]), torch.tensor([0, 1]))  # no mask: every item counts
    m.update(torch.tensor([1]), torch.tensor([1]))
    assert m.compute()["per_source"].tolist() == [1.0, 0.5]
    m.reset()
    assert m.correct.tolist() == [0.0, 0.0] and m.total.tolist() == [0.0, 0.0]
