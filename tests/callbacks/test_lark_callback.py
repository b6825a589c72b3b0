"""LARKCallback in tiny fits: selection in sample and loss modes, subsets, diagnostics, exact resume."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
from lightning.pytorch.callbacks import ModelCheckpoint

from lit_distill.callbacks.lark import LARKCallback, loss_drop_diagnostics
from lit_distill.scoring.lark import score_pool, select_pool
from lit_distill.scoring.stats import spearman

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
            from lit_distill.scorer import score_rows

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


class RecordingLARK(LARKCallback):
    """LARK that keeps, per run, the rows it scored and the statistics it stored for them."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.rows, self.snapshots = [], []

    def _rows_to_score(self, pool, at_start):
        rows = super()._rows_to_score(pool, at_start)
        self.rows.append(rows)
        return rows

    def run(self, trainer, pl_module, at_start):
        super().run(trainer, pl_module, at_start)
        self.snapshots.append({k: v.copy() for k, v in self.last.items()})


def test_loss_drop_diagnostics_on_known_relations():
    prev = np.array([1.0, 2.0, 3.0, 4.0, np.nan, 5.0])
    # The drop grows with the previous loss: g-hat that ranks like the loss correlates +1, its reverse -1.
    now = prev * 0.5
    d = loss_drop_diagnostics(prev, prev * 10, -prev, now)
    assert d["lark/ghat_vs_loss_drop_spearman"] == pytest.approx(1.0)
    assert d["lark/loss_vs_loss_drop_spearman"] == pytest.approx(1.0)
    now = prev - np.array([4.0, 3.0, 2.0, 1.0, 0.0, 0.5])  # high-g-hat rows dropped least
    d = loss_drop_diagnostics(prev, prev, prev, now)
    assert d["lark/ghat_vs_loss_drop_spearman"] == pytest.approx(-1.0)
    d = loss_drop_diagnostics(prev, prev, -prev, prev - 0.5)  # equal drops: the log drop falls with the loss
    assert d["lark/rho_vs_log_loss_drop_spearman"] == pytest.approx(1.0)
    assert loss_drop_diagnostics(prev, prev, prev, np.full(6, np.nan)) == {}  # fewer than 3 rows seen twice


def test_diagnostic_pairs_each_rows_earlier_g_hat_with_its_own_loss_drop(pool_dir, tokenizer_dir, tmp_path):
    cb = RecordingLARK(budget=2, every_n_steps=2, batch_size=16)
    fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb], max_steps=5)
    assert [h["step"] for h in cb.history] == [0, 2, 4]
    first, second = cb.snapshots[0], cb.snapshots[1]
    drop = first["L"] - second["L"]
    assert np.all(np.isfinite(drop)) and np.any(drop != 0)  # the student trained between the refreshes
    # (the snapshots are float32, the callback subtracts float64 losses: ranks may differ by a near-tie)
    assert cb.history[1]["lark/ghat_vs_loss_drop_spearman"] == pytest.approx(spearman(first["g_hat"], drop), abs=1e-3)
    assert cb.history[1]["lark/loss_vs_loss_drop_spearman"] == pytest.approx(spearman(first["L"], drop), abs=1e-3)
    shuffled = spearman(np.random.default_rng(0).permutation(first["g_hat"]), drop)
    assert abs(shuffled - cb.history[1]["lark/ghat_vs_loss_drop_spearman"]) > 1e-2  # pairing rows matters
    assert "lark/ghat_vs_loss_drop_spearman" not in cb.history[0]  # nothing to compare with at the start


def test_start_selects_every_problem_and_the_rotation_covers_all(pool_dir, tokenizer_dir, tmp_path):
    cb = RecordingLARK(budget=1, every_n_steps=1, problems_per_refresh=5, batch_size=16)
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb], max_steps=12)
    pool = dm.pool
    problems = np.unique(pool.problem_of)
    assert np.array_equal(cb.rows[0], np.arange(len(pool)))  # the start-up selection scores every row
    w = np.concatenate(dm.sampler.example_weights)
    assert np.all(np.bincount(pool.problem_of, weights=w > 0) == 1)  # every problem has its selection
    chunks = -(-len(problems) // 5)
    assert len(cb.rows) - 1 >= chunks + 1  # a whole cycle and the start of the next
    cycle = [np.unique(pool.problem_of[r]) for r in cb.rows[1 : 1 + chunks]]
    assert all(len(c) <= 5 for c in cycle)
    assert np.array_equal(np.sort(np.concatenate(cycle)), problems)  # each problem exactly once per cycle
    assert cb.rotation == len(cb.rows) - 1


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


def test_rotation_resumes_where_it_stopped(pool_dir, tokenizer_dir, tmp_path):
    full = RecordingLARK(budget=1, every_n_steps=1, problems_per_refresh=7, batch_size=16)
    fit_in_process(pool_dir, tokenizer_dir, tmp_path / "a", [full], max_steps=5)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", every_n_train_steps=2, save_top_k=-1)
    first = RecordingLARK(budget=1, every_n_steps=1, problems_per_refresh=7, batch_size=16)
    fit_in_process(
        pool_dir, tokenizer_dir, tmp_path / "b", [first, ckpt, StopAt(2)], max_steps=5, enable_checkpointing=True
    )
    resumed = RecordingLARK(budget=1, every_n_steps=1, problems_per_refresh=7, batch_size=16)
    path = str(tmp_path / "ck" / "epoch=0-step=2.ckpt")
    fit_in_process(pool_dir, tokenizer_dir, tmp_path / "c", [resumed], max_steps=5, ckpt_path=path)
    # Refreshes at steps 1, 2 before the checkpoint; the resumed fit goes on with chunks 3 and 4 (steps 3, 4).
    assert len(full.rows) == 5 and len(resumed.rows) == 2
    assert all(np.array_equal(a, b) for a, b in zip(full.rows[3:], resumed.rows, strict=True))


def test_random_rule_is_a_uniform_baseline(pool_dir, tokenizer_dir, tmp_path):
    cb = _lark(budget=2, rule="random", every_n_steps=0)
    _, _, dm = fit_in_process(pool_dir, tokenizer_dir, tmp_path, [cb], max_steps=1)
    w = np.concatenate(dm.sampler.example_weights)
    assert np.allclose(w[w > 0], 1.5)  # q = 1/2 each, times K = 3
