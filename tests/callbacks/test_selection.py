"""SelectionCallback's schedule in real fits: max_steps, max_epochs, gradient accumulation, errors, timing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lit_distill.callbacks.consistency import StreamConsistency
from lit_distill.callbacks.lark import LARKCallback
from lit_distill.callbacks.selection import ScoringError, SelectionCallback

from helpers import fit_in_process


class Probe(SelectionCallback):
    """Records the optimiser step of every run and the sampler step it would shape."""

    metric_prefix = "probe"

    def __init__(self, every_n_steps: int, fail_at: int = -1) -> None:
        super().__init__(every_n_steps=every_n_steps)
        self.steps, self.next_draw, self.fail_at = [], [], fail_at

    def run(self, trainer, pl_module, at_start):
        if trainer.global_step == self.fail_at:
            raise ValueError("boom")
        self.steps.append(trainer.global_step)
        self.next_draw.append(trainer.datamodule.sampler.step)


@pytest.mark.parametrize(
    ("limits", "data", "want"),
    [
        # 7 steps; the run at step 6 would follow the last step of neither, but 7 is not a multiple of 2.
        (dict(max_steps=7), None, [0, 2, 4, 6]),
        # max_epochs with max_steps = -1 (the old guard `step < max_steps` never held): 2 epochs x 3 steps.
        (dict(max_steps=-1, max_epochs=2), {"steps_per_epoch": 3}, [0, 2, 4]),
        # Accumulation: 4 micro-batches per optimiser step, runs only at optimiser-step boundaries.
        (dict(max_steps=5, accumulate_grad_batches=4), None, [0, 2, 4]),
        (dict(max_steps=-1, max_epochs=2, accumulate_grad_batches=2), {"steps_per_epoch": 3}, [0, 2, 4]),
    ],
    ids=["max_steps", "max_epochs", "accumulate", "max_epochs_accumulate"],
)
def test_runs_at_optimiser_steps_and_never_after_the_last(pool_dir, tokenizer_dir, tmp_path, limits, data, want):
    probe = Probe(every_n_steps=2)
    trainer, _, _ = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [probe], data=data, **limits)
    assert trainer.global_step == (6 if "max_epochs" in limits else limits["max_steps"])
    assert probe.steps == want
    assert probe.next_draw == want  # each run's weights shape the very next optimiser step's draw
    assert probe.runs == len(want) and probe.seconds > 0
    assert 0 < probe.share < 1


def test_a_failing_run_names_the_callback_and_the_step(pool_dir, tokenizer_dir, tmp_path):
    with pytest.raises(ScoringError, match="Probe failed at step 2: boom"):
        fit_in_process(pool_dir, tokenizer_dir, tmp_path, [Probe(every_n_steps=1, fail_at=2)], max_steps=4)


def test_lark_and_consistency_run_under_max_epochs_with_accumulation(pool_dir, tokenizer_dir, tmp_path):
    lark = LARKCallback(budget=1, every_n_steps=2, problems_per_refresh=6, batch_size=16)
    check = StreamConsistency(every_n_steps=1)
    fit_in_process(
        pool_dir, tokenizer_dir, tmp_path, [lark, check], max_steps=-1, max_epochs=2,
        accumulate_grad_batches=2, data={"steps_per_epoch": 3},
    )  # fmt: skip
    assert [h["step"] for h in lark.history] == [0, 2, 4]
    assert lark.rotation == 2
    rows = [json.loads(line) for line in (tmp_path / "runs" / "t" / "version_0" / "stream_hashes.jsonl").open()]
    assert [(r["step"], r["where"]) for r in rows] == [(0, "fit_start")] + [(s, "step") for s in range(1, 6)]
    assert len({r["hashes"][0] for r in rows}) == len(rows)  # the stream state moves every step


def test_rank_zero_decides(monkeypatch):
    seen = []

    def broadcast(obj, strategy):
        seen.append(obj)
        return "rank0"

    monkeypatch.setattr("lit_distill.callbacks.selection.broadcast_object", broadcast)

    class T:
        strategy = None

    assert SelectionCallback.decide(T(), np.arange(3)) == "rank0" and len(seen) == 1


def test_last_step_detection_covers_max_time_and_epochs():
    """The guard on stubs: each way a fit can end makes the step just finished the last (no clocks involved)."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from lit_distill.callbacks.selection import training_ends_after_this_step as ends

    def trainer(**kw):
        base = dict(should_stop=False, max_steps=-1, global_step=4, max_epochs=None, is_last_batch=False,
                    current_epoch=0, callbacks=[])  # fmt: skip
        return SimpleNamespace(**{**base, **kw})

    assert not ends(trainer())
    assert ends(trainer(max_steps=4)) and not ends(trainer(max_steps=5))
    assert ends(trainer(max_epochs=2, current_epoch=1, is_last_batch=True))
    assert not ends(trainer(max_epochs=2, current_epoch=0, is_last_batch=True))
    assert ends(trainer(should_stop=True))
    spent, running = Timer(duration={"seconds": 0}), Timer(duration={"days": 1})
    assert ends(trainer(callbacks=[spent])) and not ends(trainer(callbacks=[running]))
