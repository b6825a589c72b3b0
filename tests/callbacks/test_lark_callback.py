"""LARKCallback in tiny fits: selection in sample and loss modes, subsets, diagnostics, exact resume."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_distill.callbacks.lark import LARKCallback
from lit_distill.scoring.lark import score_pool, select_pool

from helpers import StopAt, fit_in_process, scalars


class Batches(pl.Callback):
    """Records the pool indices and loss weights of every training batch."""

    def __init__(self):
        self.index, self.weight = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.index.append(batch["index"].tolist())
        self.weight.append(batch["loss_weight"].tolist())


def _lark(**kw):
    args = dict(budget=1, every_n_steps=2, batch_size=16)
    args.update(kw)
    return LARKCallback(**args)


def test_sample_mode_draws_only_selected_trajectories(pool_dir, tokenizer_dir, tmp_path):
    cb, rec = _lark(every_n_steps=0), Batches()
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb, rec], max_steps=4)
    pool, w = dm.pool, np.concatenate(dm.sampler.example_weights)
    # Budget 1 of K = 3: exactly one candidate per problem keeps weight (q * K = 3), the others 0.
    per_problem = np.bincount(pool.problem_of, weights=w > 0)
    assert np.all(per_problem == 1) and np.allclose(w[w > 0], 3.0)
    drawn = np.concatenate(rec.index)
    assert np.all(w[drawn] > 0)
    series = scalars(tmp_path / "runs" / "t" / "version_0")
    for key in ("lark/rho_mean", "lark/seconds", "lark/selected_share/noisy", "lark/loss_selected"):
        assert key in series, key
    shares = [series[f"lark/selected_share/{n}"][0][1] for n in pool.names]
    assert sum(shares) == pytest.approx(1.0)
    assert any(k.startswith("lark/selected_share_teacher/") for k in series)


def test_selection_matches_the_pure_maths(pool_dir, tokenizer_dir, tmp_path):
    """The callback's choice equals select_pool on an independent scoring of the same student."""

    class Capture(pl.Callback):
        def on_fit_start(self, trainer, pl_module):
            from lit_distill.callbacks.probing import score_rows

            dm = trainer.datamodule
            rows = np.arange(len(dm.pool))
            stats = score_rows(pl_module, dm, rows, batch_size=16, top_k=50)  # the callback's batches
            self.expected = (rows, stats)

    cap = Capture()
    cb = _lark(budget=2, every_n_steps=0)
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cap, cb], max_steps=1)
    rows, stats = cap.expected
    pool = dm.pool
    scores = score_pool(pool.problem_of, stats[:, 0] / stats[:, 1], stats[:, 2] / stats[:, 1])
    sel = select_pool(pool.problem_of, pool.candidate_id, scores.g_hat, 2)
    w = np.concatenate(dm.sampler.example_weights)
    # The callback ran before any training step on the same weights: same selection, weights q * K.
    assert set(np.flatnonzero(w > 0)) == set(rows[sel.rows][sel.weights > 0])
    assert np.allclose(w[rows[sel.rows]], sel.weights * 3, atol=1e-9)


def test_loss_mode_weights_the_loss_and_keeps_sampling(pool_dir, tokenizer_dir, tmp_path):
    cb, rec = _lark(budget=2, mode="loss", every_n_steps=0), Batches()
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb, rec], max_steps=3)
    assert all(np.all(w == 1.0) for w in dm.sampler.example_weights)
    lw = dm.loss_weights
    sums = np.bincount(dm.pool.problem_of, weights=lw)
    assert np.allclose(sums, 2.0)  # B * q sums to B within every problem
    # At most B=2 of the 3 candidates keep weight (the chi-squared projection may also zero a selected one).
    kept = np.bincount(dm.pool.problem_of, weights=(lw > 0).astype(float))
    assert kept.max() <= 2 and kept.min() >= 1
    for idx, w in zip(rec.index, rec.weight, strict=True):
        assert np.allclose(w, lw[idx])


def test_subset_refresh_and_diagnostic(pool_dir, tokenizer_dir, tmp_path):
    cb = _lark(budget=2, every_n_steps=2, problems_per_refresh=None)
    fit_in_process(pool_dir, tokenizer_dir, tmp_path / "a", [cb], max_steps=5)
    assert [h["step"] for h in cb.history] == [0, 2, 4]
    assert "lark/ghat_vs_loss_drop_spearman" in cb.history[1]
    assert -1 <= cb.history[1]["lark/ghat_vs_loss_drop_spearman"] <= 1
    sub = _lark(every_n_steps=2, problems_per_refresh=5)
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path / "b", [sub], max_steps=3)
    assert [h["scored"] for h in sub.history] == [15, 15]  # 5 problems x 3 candidates
    w = np.concatenate(dm.sampler.example_weights)
    changed = np.unique(dm.pool.problem_of[w != 1.0])
    assert 5 <= len(changed) <= 10


def test_resume_reproduces_selection_and_stream(pool_dir, tokenizer_dir, tmp_path):
    full, rec_full = _lark(budget=1), Batches()
    fit_in_process(pool_dir, tokenizer_dir, tmp_path / "a", [full, rec_full], max_steps=6)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=3, save_top_k=-1)
    fit_in_process(
        pool_dir, tokenizer_dir, tmp_path / "b", [_lark(budget=1), ckpt, StopAt(3)], max_steps=6,
        enable_checkpointing=True,
    )  # fmt: skip
    resumed, rec = _lark(budget=1), Batches()
    path = str(tmp_path / "ck" / "epoch=0-step=3.ckpt")
    fit_in_process(pool_dir, tokenizer_dir, tmp_path / "c", [resumed, rec], max_steps=6, ckpt_path=path)
    assert rec.index == rec_full.index[3:]
    assert [h["step"] for h in resumed.history] == [0, 2, 4]
    assert resumed.history[-1]["lark/rho_mean"] == pytest.approx(full.history[-1]["lark/rho_mean"], rel=1e-9)


def test_random_rule_is_a_uniform_baseline(pool_dir, tokenizer_dir, tmp_path):
    cb = _lark(budget=2, rule="random", every_n_steps=0)
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb], max_steps=1)
    w = np.concatenate(dm.sampler.example_weights)
    assert np.allclose(w[w > 0], 1.5)  # q = 1/2 each, times K = 3
