"""Answer accuracy per evaluation set, as a torchmetrics Metric (sums, so it is exact under DDP)."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class AccuracyBySource(Metric):
    """Counts correct and attempted answers per evaluation set; invalid (padding) items are ignored."""

    full_state_update = False

    def __init__(self, num_sources: int) -> None:
        super().__init__()
        self.num_sources = num_sources
        self.add_state("correct", default=torch.zeros(num_sources, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(num_sources, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, correct: torch.Tensor, source: torch.Tensor, valid: torch.Tensor | None = None) -> None:
        correct = correct.to(torch.float64)
        keep = torch.ones_like(correct, dtype=torch.bool) if valid is None else valid.bool()
        self.correct += torch.bincount(source[keep], weights=correct[keep], minlength=self.num_sources)
        self.total += torch.bincount(source[keep], minlength=self.num_sources).to(torch.float64)

    def compute(self) -> dict[str, torch.Tensor]:
        """Overall accuracy (over all items) and accuracy per set (NaN for an empty set)."""
        overall = self.correct.sum() / self.total.sum().clamp(min=1)
        per_source = self.correct / self.total.where(self.total > 0, torch.nan)
        return {"overall": overall, "per_source": per_source, "total": self.total}
