"""Tests for lit_distill.scoring.lark: ĝ identities and the §1.5 selection table of docs/methods.md."""

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_distill.scoring import lark
from lit_distill.scoring.lark import (
    RULES,
    chi2_topb_weights,
    group_by_problem,
    hard_topb_weights,
    pooled_rho,
    problem_g_hat,
    score_pool,
    select_pool,
    softmax_topb_weights,
    trajectory_rho,
)


def _random_problem(rng: np.random.Generator, k: int) -> tuple[np.ndarray, np.ndarray]:
    loss = rng.uniform(0.05, 3.0, k)
    brier = rng.uniform(0.01, 1.5, k)
    return loss, brier


def _project_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex by the sort-and-threshold method."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    j = np.arange(1, len(v) + 1)
    n_support = j[u - css / j > 0][-1]
    return np.maximum(v - css[n_support - 1] / n_support, 0.0)


def _chi2_by_the_table(energies: list[float], budget: int) -> tuple[list[int], list[float]]:
    """The §1.5 table transcribed literally, one scalar at a time, as an independent oracle."""
    clean = [-math.inf if math.isnan(x) else x for x in energies]
    ranked = sorted(range(len(clean)), key=lambda i: -clean[i])  # stable: lower index first on ties
    valid = [i for i in ranked if clean[i] != -math.inf]
    if not valid:
        return list(range(len(clean))), [1.0 / len(clean)] * len(clean)
    b = min(budget, len(valid))
    top = valid[:b]
    thr = clean[valid[b]] if b < len(valid) else clean[top[-1]] - 1e-8
    gap = sum(clean[i] for i in top) / b - thr
    if gap <= 1e-12:
        return top, [1.0 / b] * b
    return top, [(clean[i] - thr) / (gap * b) for i in top]


def _g_hat_by_the_formula(loss: list[float], brier: list[float]) -> list[float]:
    """§1.4 transcribed literally, one scalar at a time: ρ̄ = Σρ_i L_i / S_L, ĝ = (L/S_L)(2ρ − ρ̄)."""
    rho = [b / lo if lo > 1e-30 else 0.0 for lo, b in zip(loss, brier, strict=True)]
    s_l = sum(loss)
    if s_l <= 1e-30:
        return [math.nan] * len(loss)
    rho_bar = sum(r * lo for r, lo in zip(rho, loss, strict=True)) / s_l
    return [(lo / s_l) * (2.0 * r - rho_bar) for lo, r in zip(loss, rho, strict=True)]


def test_module_imports_only_numpy_and_stdlib():
    tree = ast.parse(Path(lark.__file__).read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {name.split(".")[0] for name in names} <= {"__future__", "collections", "dataclasses", "numpy"}


# ------------------------------------------------------------------------------------------- g_hat


def test_hand_computed_example():
    # L = (1, 2, 1), Brier = (0.5, 0.5, 1.0)  ->  ρ = (0.5, 0.25, 1.0); S_L = 4, S_B = 2, ρ̄ = 0.5.
    # ĝ_0 = (1/4)(2·0.5 − 0.5) = 0.125;  ĝ_1 = (2/4)(2·0.25 − 0.5) = 0;  ĝ_2 = (1/4)(2·1 − 0.5) = 0.375.
    # Σĝ = 0.5 = ρ̄.  χ² with B = 2: ranked (2, 0, 1), threshold e_(3) = 0, ē_A = 0.25,
    # q = 0.375 / (2·0.25) = 0.75 and 0.125 / (2·0.25) = 0.25.  B = 1: position 2 alone with q = 1.
    loss, brier = np.array([1.0, 2.0, 1.0]), np.array([0.5, 0.5, 1.0])
    np.testing.assert_allclose(trajectory_rho(loss, brier), [0.5, 0.25, 1.0], rtol=0, atol=1e-15)
    g = problem_g_hat(loss, brier)
    np.testing.assert_allclose(g, [0.125, 0.0, 0.375], rtol=0, atol=1e-15)
    assert pooled_rho(loss, brier) == 0.5
    pos, q = chi2_topb_weights(g, 2)
    assert pos.tolist() == [2, 0]
    np.testing.assert_allclose(q, [0.75, 0.25], rtol=0, atol=1e-15)
    pos, q = chi2_topb_weights(g, 1)
    assert pos.tolist() == [2] and q.tolist() == [1.0]


@pytest.mark.parametrize("k", [1, 2, 3, 11, 33])
def test_g_hat_sums_to_pooled_rho(k):
    rng = np.random.default_rng(k)
    for _ in range(20):
        loss, brier = _random_problem(rng, k)
        g = problem_g_hat(loss, brier)
        assert abs(g.sum() - brier.sum() / loss.sum()) < 1e-10
        assert abs(g.sum() - pooled_rho(loss, brier)) < 1e-10
        assert g.tolist() == _g_hat_by_the_formula(loss.tolist(), brier.tolist())  # bit for bit


@pytest.mark.parametrize("k", [2, 5, 33])
def test_g_hat_is_anchor_gradient(k):
    # ĝ_k = (1/S_B) ∂J/∂q_k at q = 1, with J(q) = (Σ q_i B_i)² / (Σ q_i L_i)  (§1.4).
    rng = np.random.default_rng(100 + k)
    loss, brier = _random_problem(rng, k)
    q = torch.ones(k, dtype=torch.float64, requires_grad=True)
    b, lo = torch.from_numpy(brier), torch.from_numpy(loss)
    j = (q * b).sum() ** 2 / (q * lo).sum()
    (grad,) = torch.autograd.grad(j, q)
    np.testing.assert_allclose(problem_g_hat(loss, brier), grad.numpy() / brier.sum(), rtol=1e-12, atol=1e-14)


def test_rho_guard_and_unscored():
    rho = trajectory_rho([0.0, 1e-31, 1e-30, 2.0, np.nan, 1.0], [0.3, 0.3, 0.3, 1.0, 0.5, np.nan])
    assert rho[:3].tolist() == [0.0, 0.0, 0.0]  # L ≤ 1e-30 -> 0, not a division
    assert rho[3] == 0.5
    assert np.isnan(rho[4]) and np.isnan(rho[5])


def test_g_hat_nan_when_total_loss_vanishes():
    assert np.isnan(problem_g_hat([0.0, 1e-31], [0.1, 0.2])).all()
    assert np.isnan(pooled_rho([0.0, 0.0], [0.1, 0.2]))
    assert np.isnan(pooled_rho([np.nan], [np.nan]))  # nothing scored


def test_g_hat_excludes_unscored_candidates():
    rng = np.random.default_rng(7)
    loss, brier = _random_problem(rng, 6)
    loss_nan, brier_nan = loss.copy(), brier.copy()
    loss_nan[1], brier_nan[4] = np.nan, np.nan
    g = problem_g_hat(loss_nan, brier_nan)
    keep = [0, 2, 3, 5]
    assert np.isnan(g[[1, 4]]).all()
    np.testing.assert_allclose(g[keep], problem_g_hat(loss[keep], brier[keep]), rtol=1e-14)
    assert pooled_rho(loss_nan, brier_nan) == pytest.approx(brier[keep].sum() / loss[keep].sum(), rel=1e-14)


def test_g_hat_uses_reference_rho_bar_when_one_loss_is_guarded():
    # With L_0 ≤ 1e-30 the guard sets ρ_0 = 0, so the reference's ρ̄ = Σρ_i L_i / S_L drops Brier_0.
    loss, brier = np.array([0.0, 1.0, 3.0]), np.array([0.2, 0.5, 0.9])
    g = problem_g_hat(loss, brier)
    rho_bar = (0.5 + 0.9) / 4.0
    np.testing.assert_allclose(g, [0.0, 0.25 * (1.0 - rho_bar), 0.75 * (0.6 - rho_bar)], rtol=1e-14)
    assert pooled_rho(loss, brier) == pytest.approx(1.6 / 4.0)


# -------------------------------------------------------------------------------------- chi2 weights


@pytest.mark.parametrize("k", [2, 3, 7, 33])
def test_chi2_is_simplex_projection_and_affine_invariant(k):
    rng = np.random.default_rng(200 + k)
    for _ in range(10):
        e = rng.normal(0.01, 0.02, k)
        desc = np.sort(e)[::-1]
        for b in range(1, k):
            pos, q = chi2_topb_weights(e, b)
            assert pos.tolist() == np.argsort(-e, kind="stable")[:b].tolist()
            assert abs(q.sum() - 1.0) < 1e-12
            assert (np.diff(q) <= 0).all()
            tau = b * (desc[:b].mean() - desc[b]) / k
            full = np.zeros(k)
            full[pos] = q
            np.testing.assert_allclose(full, _project_simplex(e / (tau * k)), rtol=0, atol=1e-10)
            pos2, q2 = chi2_topb_weights(3.7 * e - 1.3, b)
            assert pos2.tolist() == pos.tolist()
            np.testing.assert_allclose(q2, q, rtol=1e-9, atol=1e-12)


def test_chi2_matches_table_oracle_exactly():
    rng = np.random.default_rng(3)
    for _ in range(300):
        k = int(rng.integers(1, 12))
        e = rng.choice([-0.02, 0.0, 0.01, 0.03], k) if rng.random() < 0.3 else rng.normal(0, 0.02, k)
        e[rng.random(k) < 0.2] = np.nan
        b = int(rng.integers(1, k + 3))
        pos, q = chi2_topb_weights(e, b)
        want_pos, want_q = _chi2_by_the_table(e.tolist(), b)
        assert pos.tolist() == want_pos
        assert q.tolist() == want_q  # same float operations in the same order: bit for bit


def test_chi2_nan_is_never_selected_nor_threshold():
    # Valid energies 0.3 > 0.1 > 0.0: with B = 2 the threshold is 0.0, not the NaN.
    pos, q = chi2_topb_weights([np.nan, 0.1, 0.3, np.nan, 0.0], 2)
    assert pos.tolist() == [2, 1]
    np.testing.assert_allclose(q, [0.3 / 0.4, 0.1 / 0.4], rtol=1e-14)


def test_chi2_all_nan_gives_every_position_uniform():
    pos, q = chi2_topb_weights([np.nan] * 4, 2)
    assert pos.tolist() == [0, 1, 2, 3]
    assert q.tolist() == [0.25] * 4


@pytest.mark.parametrize("budget", [3, 4, 10])
def test_chi2_all_valid_kept_threshold_shift(budget):
    # #valid = 3 ≤ B: threshold = lowest selected − 1e-8, so the last weight is ≈ 1e-8 / (3·(ē − thr)).
    e = np.array([0.01, np.nan, 0.05, 0.02])
    pos, q = chi2_topb_weights(e, budget)
    assert pos.tolist() == [2, 3, 0]
    thr = 0.01 - 1e-8
    denom = 3 * ((0.05 + 0.02 + 0.01) / 3 - thr)
    np.testing.assert_allclose(q, [(0.05 - thr) / denom, (0.02 - thr) / denom, (0.01 - thr) / denom], rtol=1e-14)
    assert 1e-8 < q[-1] < 1e-6


def test_chi2_b_at_least_k_single_candidate():
    pos, q = chi2_topb_weights([0.4], 3)
    assert pos.tolist() == [0]
    assert q[0] == pytest.approx(1.0, abs=1e-15)


def test_chi2_ties_uniform_and_lower_index_first():
    pos, q = chi2_topb_weights([0.1, 0.2, 0.2, 0.2], 2)  # ē_A − e_(3) = 0 -> uniform
    assert pos.tolist() == [1, 2]
    assert q.tolist() == [0.5, 0.5]
    pos, q = chi2_topb_weights([0.2, 0.3, 0.2], 2)  # tie at the threshold: emitted with weight 0
    assert pos.tolist() == [1, 0]
    assert q.tolist() == [1.0, 0.0]
    pos, q = chi2_topb_weights([0.2] * 3, 3)  # all kept and tied: the 1e-8 shift gives 1/3 each
    assert pos.tolist() == [0, 1, 2]
    np.testing.assert_allclose(q, [1 / 3] * 3, rtol=1e-7)


def test_chi2_tiny_gap_below_guard_is_uniform():
    pos, q = chi2_topb_weights([1.0 + 1.6e-12, 1.0, 1.0], 2)  # ē_A − e_(3) = 8e-13 ≤ 1e-12 < B·gap
    assert pos.tolist() == [0, 1] and q.tolist() == [0.5, 0.5]


# ----------------------------------------------------------------------------------- ablation rules


def test_softmax_rule():
    e = np.array([1.0, 3.0, np.nan, 2.0])
    pos, q = softmax_topb_weights(e, 10)  # budget ≥ #valid: plain softmax over the valid ones
    z = np.exp(np.array([3.0, 2.0, 1.0]))
    assert pos.tolist() == [1, 3, 0]
    np.testing.assert_allclose(q, z / z.sum(), rtol=1e-14)
    pos, q = softmax_topb_weights(e, 2, temperature=0.5)
    z = np.exp(np.array([3.0, 2.0]) / 0.5)
    assert pos.tolist() == [1, 3]
    np.testing.assert_allclose(q, z / z.sum(), rtol=1e-14)
    pos, q = softmax_topb_weights([1000.0, 0.0], 2)  # stable for large energies
    np.testing.assert_allclose(q, [1.0, 0.0], atol=1e-300)


def test_hard_rule():
    pos, q = hard_topb_weights([0.1, np.nan, 0.5, 0.5, 0.2], 3)
    assert pos.tolist() == [2, 3, 4]
    np.testing.assert_allclose(q, [1 / 3] * 3)
    pos, q = hard_topb_weights([0.1, np.nan], 3)
    assert pos.tolist() == [0] and q.tolist() == [1.0]


@pytest.mark.parametrize("name", sorted(RULES))
def test_rules_validate_arguments(name):
    with pytest.raises(ValueError, match="budget"):
        RULES[name]([0.1, 0.2], 0)
    with pytest.raises(ValueError, match="empty"):
        RULES[name]([], 1)
    with pytest.raises(ValueError, match="1-D"):
        RULES[name](np.zeros((2, 2)), 1)
    with pytest.raises(ValueError, match="temperature"):
        softmax_topb_weights([0.1], 1, temperature=0.0)


# ------------------------------------------------------------------------------------------- pools


def test_group_by_problem_first_appearance():
    groups = group_by_problem(["b", "a", "b", 7, "a"])
    assert [g.tolist() for g in groups] == [[0, 2], [1, 4], [3]]
    assert group_by_problem([]) == []
    assert select_pool([], [], [], budget=2).rows.size == 0


def test_score_pool_matches_per_problem_functions():
    rng = np.random.default_rng(11)
    pid = rng.integers(0, 20, 300)
    loss, brier = rng.uniform(0.1, 2.0, 300), rng.uniform(0.05, 1.0, 300)
    loss[rng.random(300) < 0.05] = np.nan
    s = score_pool(pid, loss, brier)
    for rows in group_by_problem(pid):
        np.testing.assert_array_equal(s.g_hat[rows], problem_g_hat(loss[rows], brier[rows]))
        np.testing.assert_array_equal(s.rho[rows], trajectory_rho(loss[rows], brier[rows]))
        assert (s.pooled_rho[rows] == pooled_rho(loss[rows], brier[rows])).all()


def test_select_pool_ordering_and_candidate_tie_rule():
    # Rows arrive out of candidate order; problem "q" appears first, so it is problem 0.
    pid = ["q", "p", "q", "p", "q", "p"]
    cid = [2, 1, 0, 0, 1, 2]
    scores = [0.5, 0.1, 0.5, 0.9, 0.2, 0.4]
    sel = select_pool(pid, cid, scores, budget=2, rule="hard")
    # q: scores by cid {0: 0.5, 1: 0.2, 2: 0.5} -> cid 0 (row 2) before cid 2 (row 0).
    # p: {0: 0.9, 1: 0.1, 2: 0.4} -> rows 3, 5.
    assert sel.rows.tolist() == [2, 0, 3, 5]
    assert sel.problem_index.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(sel.weights, [0.5] * 4)


def test_select_pool_chi2_matches_per_problem_rule():
    rng = np.random.default_rng(5)
    k, n = 6, 40
    pid = np.repeat(np.arange(n), k)
    cid = np.tile(np.arange(k), n)
    e = rng.normal(0, 0.02, n * k)
    perm = rng.permutation(n * k)
    sel = select_pool(pid[perm], cid[perm], e[perm], budget=3)
    assert len(sel.rows) == 3 * n
    np.testing.assert_allclose(np.bincount(sel.problem_index, sel.weights), 1.0, atol=1e-12)
    for p in range(n):
        pos, q = chi2_topb_weights(e[p * k : (p + 1) * k], 3)
        mine = sel.problem_index == _order(pid[perm], p)
        assert perm[sel.rows[mine]].tolist() == (p * k + pos).tolist()
        np.testing.assert_allclose(sel.weights[mine], q, rtol=1e-14)


def _order(ids: np.ndarray, p: int) -> int:
    """Index of problem p in first-appearance order."""
    return list(dict.fromkeys(ids.tolist())).index(p)


def test_select_pool_softmax_rule():
    sel = select_pool([0, 0, 0], [0, 1, 2], [1.0, 2.0, 0.0], budget=2, rule="softmax", temperature=2.0)
    z = np.exp(np.array([2.0, 1.0]) / 2.0)
    assert sel.rows.tolist() == [1, 0]
    np.testing.assert_allclose(sel.weights, z / z.sum(), rtol=1e-14)


def test_select_pool_strict_and_lenient():
    pid = ["ok", "ok", "short-7", "short-7", "none"]
    scores = [0.2, 0.1, 0.3, np.nan, np.nan]
    with pytest.raises(ValueError, match="short-7"):
        select_pool(pid, [0, 1, 0, 1, 0], scores, budget=2)
    sel = select_pool(pid, [0, 1, 0, 1, 0], scores, budget=2, strict=False)
    assert sel.rows.tolist() == [0, 1, 2]  # "short-7" keeps B_eff = 1, the all-NaN problem is dropped
    assert sel.problem_index.tolist() == [0, 0, 1]
    assert sel.weights[2] == pytest.approx(1.0)


def test_select_pool_validates_arguments():
    with pytest.raises(ValueError, match="unknown rule"):
        select_pool([0], [0], [0.1], budget=1, rule="kl")
    with pytest.raises(ValueError, match="length mismatch"):
        select_pool([0, 0], [0], [0.1, 0.2], budget=1)
    with pytest.raises(ValueError, match="budget"):
        select_pool([0], [0], [0.1], budget=True)
    with pytest.raises(ValueError, match="length mismatch"):
        score_pool([0, 1], [0.1], [0.1])
