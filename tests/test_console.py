"""A quiet console and a readable TensorBoard run (lit_distill/console.py, callbacks/reporting.py).

The session's shared CLI fit (``conftest.cli_run``: DMC and activation checkpointing, resumed mid-epoch) is
checked for what its stderr must not say (Lightning's service tips, deprecation warnings, "dataloader is not
resumable") and for what its event files must hold (the custom-scalar layout, a mixture figure per DMC
update, no hp_metric/epoch, samples with their roles).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from lit_distill.console import StepRichProgressBar, default_callbacks, total_steps
from lit_distill.model.module import format_sample

from helpers import scalars

FORBIDDEN = ("litlogger", "litmodels", "Tip:", "deprecated", "not resumable", "FutureWarning")


def _event_files(log_dir: Path) -> list:
    """One EventAccumulator per event file (each fit writes its own), keeping every image and tensor."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = []
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"images": 0, "tensors": 0})
        acc.Reload()
        out.append(acc)
    return out


@pytest.fixture(scope="module")
def resumed_run(cli_run):
    """The shared CLI run (conftest.cli_run: 4 steps with DMC every 2 steps and activation checkpointing, then
    resumed mid-epoch to 6): (first stderr, second stderr, log dir)."""
    return cli_run.first.stderr, cli_run.second.stderr, cli_run.run


def test_console_has_no_tips_deprecations_or_resumability_warning(resumed_run):
    first, second, _ = resumed_run
    assert "resuming" in second.lower()  # the second fit really resumed (so the resumability check ran)
    for stderr in (first, second):
        found = [word for word in FORBIDDEN if word in stderr]
        assert not found, f"{found} in stderr:\n{stderr[-4000:]}"


def test_event_file_has_layout_figures_and_no_noise(resumed_run):
    from tensorboard.plugins.custom_scalar import metadata

    _, _, log_dir = resumed_run
    series = scalars(log_dir)
    assert "hp_metric" not in series and "epoch" not in series, sorted(series)
    assert any(tag.startswith("train/loss/") for tag in series) and any(t.startswith("mixture/") for t in series)

    files = _event_files(log_dir)
    assert len(files) == 2
    for acc in files:  # written at every fit start
        assert metadata.CONFIG_SUMMARY_TAG in acc.Tags()["tensors"], acc.Tags()
    # A figure at every DMC update (one log line each), plus the final one at each fit's end.
    updates = sum(stderr.count("DMC (value->weight)") for stderr in resumed_run[:2])
    images = sum(len(acc.Images("mixture/stacked")) for acc in files)
    assert updates >= 2 and images == updates + 2, (updates, images)
    assert (log_dir / "mixture.png").is_file()


def test_samples_show_the_roles(resumed_run):
    texts = [
        event.tensor_proto.string_val[0].decode()
        for acc in _event_files(resumed_run[2])
        if "val/samples/text_summary" in acc.Tags()["tensors"]
        for event in acc.Tensors("val/samples/text_summary")
    ]
    assert texts and all("**user**" in t and "**assistant (student)**" in t for t in texts), texts[:1]


def test_format_sample_splits_chatml_turns_and_keeps_other_templates_whole():
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n1+2<|im_end|>\n<|im_start|>assistant\n"
    text = format_sample(prompt, " #### 3\n", "3")
    assert text.split("\n") == [
        *("**system**", "```", "Be brief.", "```"),
        *("**user**", "```", "1+2", "```"),
        *("**assistant (student)**", "```", "#### 3", "```"),
        "**reference answer**: 3",
    ]
    assert format_sample("[INST] 1+2 [/INST]", "3", "3").startswith("**prompt**\n```\n[INST] 1+2 [/INST]\n```")


def test_progress_bar_counts_optimiser_steps_of_max_steps():
    from lightning.pytorch.callbacks.progress.rich_progress import CustomProgress

    bar = StepRichProgressBar()
    bar.progress = CustomProgress(auto_refresh=False)
    trainer = SimpleNamespace(max_steps=600, global_step=12)  # a resumed fit
    bar.on_train_epoch_start(trainer, None)
    task = bar.train_progress_bar
    assert (task.completed, task.total) == (12, 600)  # not 0/<micro-batches of an epoch>
    assert "Epoch" not in task.description
    trainer.global_step = 13
    bar._sync_train_bar(trainer)
    assert task.completed == 13
    assert total_steps(SimpleNamespace(max_steps=-1, estimated_stepping_batches=float("inf"))) is None


def test_default_callbacks_respect_a_disabled_or_configured_bar():
    kinds = lambda cbs: sorted(type(c).__name__ for c in cbs)  # noqa: E731
    assert kinds(default_callbacks({}, [])) == ["DashboardLayout", "StepRichProgressBar"]
    assert kinds(default_callbacks({"enable_progress_bar": False}, [])) == ["DashboardLayout"]
    assert kinds(default_callbacks({"callbacks": [StepRichProgressBar()]}, [])) == ["DashboardLayout"]
