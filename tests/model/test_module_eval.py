"""Validation through the module: accuracy per evaluation set, whatever the number of sets."""

from __future__ import annotations

from pathlib import Path

from helpers import fit_in_process


def test_fit_and_validate_with_one_eval_set(pool_dir, tokenizer_dir, tmp_path):
    # torchmetrics squeezes a one-element result to a 0-d tensor; one eval set used to crash here.
    one_set = [{"name": "easy", "path": str(Path(pool_dir) / "eval_easy.jsonl")}]
    from lit_distill.data.sources import SourceConfig

    trainer, module, _ = fit_in_process(
        pool_dir,
        tokenizer_dir,
        tmp_path,
        max_steps=2,
        data={"eval_sources": [SourceConfig(**s) for s in one_set], "eval_batch_size": 8},
        limit_val_batches=1,
        val_check_interval=2,
        check_val_every_n_epoch=None,
    )
    logged = trainer.callback_metrics
    assert "val/accuracy/easy" in logged and "val/accuracy" in logged
    assert 0.0 <= float(logged["val/accuracy/easy"]) <= 1.0
    results = trainer.validate(module, datamodule=trainer.datamodule, verbose=False)
    assert set(results[0]) >= {"val/accuracy", "val/accuracy/easy"}
