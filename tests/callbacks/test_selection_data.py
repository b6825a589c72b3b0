"""The SelectionData seam: DistillDataModule implements it, and what callbacks read through it is what the
pool and sampler hold (prompts without responses, copies of the weights, a digest that moves with the state)."""

from __future__ import annotations

import numpy as np
import pytest

from lit_distill.data.datamodule import DistillDataModule
from lit_distill.data.sources import SourceConfig
from lit_distill.selection_data import SelectionData, selection_data

NAMES = ("concise", "verbose", "noisy", "hard")


def _dm(pool_dir, tokenizer_dir, eval_names=("easy",)):
    dm = DistillDataModule(
        sources=[SourceConfig(name=n, path=str(pool_dir / f"{n}.jsonl")) for n in NAMES],
        eval_sources=[SourceConfig(name=n, path=str(pool_dir / "eval_easy.jsonl")) for n in eval_names],
        tokenizer=tokenizer_dir,
        micro_batch_size=4,
        max_length=1024,
    )
    dm.setup("fit")
    return dm


def test_datamodule_implements_the_protocol_and_others_get_a_clear_error(pool_dir, tokenizer_dir):
    dm = _dm(pool_dir, tokenizer_dir)
    assert isinstance(dm, SelectionData) and selection_data(dm, "DMC") is dm
    assert list(dm.pool_view.names) == list(dm.source_names) == list(NAMES)
    with pytest.raises(TypeError, match="LARK scoring needs a DataModule implementing"):
        selection_data(object(), "LARK scoring")


def test_prompt_batch_is_the_left_padded_prompt_without_the_response(pool_dir, tokenizer_dir):
    dm = _dm(pool_dir, tokenizer_dir)
    rows = np.array([0, len(dm.pool_view) - 1, 5])
    ids, mask = dm.prompt_batch(rows)
    for i, r in enumerate(rows):
        prompt = dm.pool.tokens[int(r)][: dm.pool.prompt_len[r]]
        assert int(mask[i].sum()) == len(prompt) < dm.pool.length[r]
        assert ids[i, -len(prompt) :].tolist() == prompt.tolist()  # left-padded: the prompt ends the row
        assert not mask[i, : ids.shape[1] - len(prompt)].any()


def test_weights_are_copies_and_the_digest_follows_the_stream_state(pool_dir, tokenizer_dir):
    dm, twin = _dm(pool_dir, tokenizer_dir), _dm(pool_dir, tokenizer_dir)
    assert dm.stream_digest() == twin.stream_digest()
    weights = dm.current_source_weights()
    weights[:] = 0.0  # a caller scribbling on its copy must not change the mixture
    assert dm.current_source_weights().sum() == pytest.approx(1.0)
    start = dm.stream_digest()
    dm.set_loss_weights(np.array([3]), 0.5)
    after_loss = dm.stream_digest()
    dm.set_source_weights([0.7, 0.1, 0.1, 0.1])
    assert len({start, after_loss, dm.stream_digest()}) == 3
    np.testing.assert_allclose(dm.current_source_weights(), [0.7, 0.1, 0.1, 0.1])


def test_drawable_sources_sees_a_source_emptied_by_sample_weights(pool_dir, tokenizer_dir):
    dm = _dm(pool_dir, tokenizer_dir)
    assert dm.drawable_sources().all()
    dm.set_sample_weights(dm.pool_view.rows(2), 0.0)
    assert dm.drawable_sources().tolist() == [True, True, False, True]


def test_validation_batches_name_the_evaluation_sets(pool_dir, tokenizer_dir):
    # The module sizes and labels its per-set accuracy from these names, never asking the DataModule.
    dm = _dm(pool_dir, tokenizer_dir, eval_names=("first", "second"))
    batch = next(iter(dm.val_dataloader()))
    assert batch["eval_sets"] == ["first", "second"]
    assert set(batch["source"].tolist()) <= {0, 1}
