"""The size-based initial mixtures (uniform, temperature) through the DataModule, on sources of unequal size:
the weights it reports and the sources the sampler actually draws."""

from __future__ import annotations

from collections import Counter

import pytest

from lit_distill.data.datamodule import DistillDataModule, MixtureConfig
from lit_distill.data.sources import SourceConfig

from helpers import write_jsonl


@pytest.fixture
def unequal_sources(pool_dir, tmp_path):
    """concise: all 36 rows; hard: its first 9 rows (3 problems x 3 candidates)."""
    rows = (pool_dir / "hard.jsonl").read_text().splitlines()[:9]
    small = write_jsonl(tmp_path / "hard_small.jsonl", rows)
    return [
        SourceConfig(name="concise", path=str(pool_dir / "concise.jsonl")),
        SourceConfig(name="hard", path=str(small)),
    ]


def _drawn_shares(dm: DistillDataModule, batches: int) -> dict[str, float]:
    tickets = iter(dm.train_dataloader())
    counts: Counter = Counter()
    for _ in range(batches):
        batch = dm.on_before_batch_transfer(next(tickets), 0)
        counts.update(batch["source"].tolist())
    total = sum(counts.values())
    return {n: counts[i] / total for i, n in enumerate(dm.source_names)}


@pytest.mark.parametrize(
    ("mixture", "want"),
    [
        (MixtureConfig(policy="uniform"), {"concise": 0.8, "hard": 0.2}),  # proportional to size: 36 : 9
        (MixtureConfig(policy="temperature", temperature=2.0), {"concise": 2 / 3, "hard": 1 / 3}),  # 6 : 3
        (MixtureConfig(policy="balanced"), {"concise": 0.5, "hard": 0.5}),
    ],
    ids=["uniform", "temperature", "balanced"],
)
def test_size_based_policies(unequal_sources, tokenizer_dir, mixture, want):
    dm = DistillDataModule(
        unequal_sources,
        tokenizer=str(tokenizer_dir),
        micro_batch_size=8,
        max_length=1024,
        mixture=mixture,
        steps_per_epoch=60,
        seed=1,
    )
    dm.setup("fit")
    assert dm.source_weights == pytest.approx(want)
    # 480 draws: the standard error of a share is <= 0.023, so 0.08 is > 3 se yet far from the other policies.
    drawn = _drawn_shares(dm, 60)
    assert drawn == pytest.approx(want, abs=0.08)


def test_systematic_source_draw_keeps_every_step_within_one_of_its_share(unequal_sources, tokenizer_dir):
    """``source_draw: systematic``: each step's count of a source is floor or ceil of weight x batch (6.4 and 1.6
    here); the i.i.d. multinomial draw strays outside that within a few steps."""
    counts = {}
    for draw in ("systematic", "multinomial"):
        dm = DistillDataModule(
            unequal_sources,
            tokenizer=str(tokenizer_dir),
            micro_batch_size=8,
            max_length=1024,
            mixture=MixtureConfig(policy="uniform", source_draw=draw),
            steps_per_epoch=30,
            seed=1,
        )
        dm.setup("fit")
        tickets = iter(dm.train_dataloader())
        per_step = [dm.on_before_batch_transfer(next(tickets), 0)["source"].tolist() for _ in range(30)]
        counts[draw] = {step.count(0) for step in per_step}
    assert counts["systematic"] <= {6, 7}
    assert not counts["multinomial"] <= {6, 7}
