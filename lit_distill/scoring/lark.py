"""LARK maths: the learnability score ĝ and the top-B selection rules (docs/methods.md §1.3-1.5).

Pure numpy in float64; no torch, Lightning or data pipeline, so every formula is unit-testable on
small arrays. Inputs are the per-trajectory means that scoring produces (cross-entropy L_k and top-K
Brier_k); outputs are ĝ per trajectory and, per problem, the selected rows with their weights.

    scores = score_pool(problem_ids, ce_mean, brier_mean)
    sel = select_pool(problem_ids, candidate_ids, scores.g_hat, budget=3)  # χ² rule by default

Everything is vectorised over the whole pool (one lexsort, bincount reductions), so 10^6 rows take
about a second. The per-problem functions run the same code on a pool of one problem, so there is a
single implementation of each formula, and it reproduces the reference's guards and tie rules.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

_L_GUARD = 1e-30  # ρ = 0 if L ≤ this; ĝ = NaN if S_L ≤ this (methods.md §1.3, §1.4)
_GAP_GUARD = 1e-12  # ē_A − e_(B+1) ≤ this -> uniform weights (§1.5, ties)
_THRESHOLD_SHIFT = 1e-8  # threshold below the lowest selected energy when all valid are kept (§1.5)


def _as_1d(name: str, x: np.ndarray | Sequence[float]) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def _check_lengths(**arrays: np.ndarray | Sequence) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"length mismatch: {lengths}")


def _check_budget(budget: int) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise ValueError(f"budget must be an integer >= 1, got {budget!r}")


def _check_temperature(temperature: float) -> None:
    if not (np.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be finite and > 0, got {temperature!r}")


def _problem_codes(problem_ids: Sequence[Hashable]) -> tuple[np.ndarray, list[Hashable]]:
    """Code each row by its problem's rank of first appearance; also return the problem ids."""
    index: dict[Hashable, int] = {}
    codes = np.fromiter((index.setdefault(p, len(index)) for p in problem_ids), np.int64, len(problem_ids))
    return codes, list(index)


# --------------------------------------------------------------------------------------------- scores


def trajectory_rho(ce_mean: np.ndarray, brier_mean: np.ndarray) -> np.ndarray:
    """Learnability factor ρ_k = Brier_k / L_k per trajectory (methods.md §1.3).

    Args:
        ce_mean: Mean token cross-entropy L_k per trajectory.
        brier_mean: Mean token top-K Brier score per trajectory.

    Returns:
        ρ_k; 0 where L_k ≤ 1e-30 (the reference guard), NaN where either input is non-finite (unscored).
    """
    loss, brier = _as_1d("ce_mean", ce_mean), _as_1d("brier_mean", brier_mean)
    _check_lengths(ce_mean=loss, brier_mean=brier)
    rho = np.zeros_like(loss)
    np.divide(brier, loss, out=rho, where=loss > _L_GUARD)
    rho[~(np.isfinite(loss) & np.isfinite(brier))] = np.nan
    return rho


def _grouped_scores(
    codes: np.ndarray, n_groups: int, ce_mean: np.ndarray, brier_mean: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ρ and ĝ per row and S_B / S_L per group; unscored rows are left out of every sum (§1.4)."""
    loss, brier = _as_1d("ce_mean", ce_mean), _as_1d("brier_mean", brier_mean)
    _check_lengths(problem_ids=codes, ce_mean=loss, brier_mean=brier)
    rho = trajectory_rho(loss, brier)
    scored = np.isfinite(rho)
    # bincount adds in row order, the same order as the reference's Python sum over a problem.
    s_l = np.bincount(codes, np.where(scored, loss, 0.0), n_groups)
    s_b = np.bincount(codes, np.where(scored, brier, 0.0), n_groups)
    # The reference's ρ̄ is Σρ_i L_i / S_L. It equals S_B / S_L unless some L_i ≤ 1e-30, where the
    # guard sets ρ_i = 0; we keep the reference's form so ĝ matches it bit for bit.
    s_rho_l = np.bincount(codes, np.where(scored, rho * loss, 0.0), n_groups)
    ok = s_l > _L_GUARD
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = np.where(ok, s_b / s_l, np.nan)
        rho_bar = np.where(ok, s_rho_l / s_l, np.nan)
        g_hat = (loss / s_l[codes]) * (2.0 * rho - rho_bar[codes])
    g_hat[~scored | ~ok[codes]] = np.nan
    return rho, g_hat, pooled


def pooled_rho(ce_mean: np.ndarray, brier_mean: np.ndarray) -> float:
    """Pooled learnability ρ̄ = S_B / S_L of ONE problem over its scored candidates (§1.4).

    Returns:
        NaN if no candidate is scored or S_L ≤ 1e-30.
    """
    loss = _as_1d("ce_mean", ce_mean)
    return float(_grouped_scores(np.zeros(len(loss), np.int64), 1, loss, brier_mean)[2][0])


def problem_g_hat(ce_mean: np.ndarray, brier_mean: np.ndarray) -> np.ndarray:
    """LARK score ĝ_k = (L_k / S_L)(2ρ_k − ρ̄) for ONE problem's candidates (§1.4).

    Unscored candidates (non-finite L or Brier) are excluded from the sums and get NaN; every ĝ is NaN
    if S_L ≤ 1e-30. Over the scored candidates Σ_k ĝ_k = ρ̄.
    """
    loss = _as_1d("ce_mean", ce_mean)
    return _grouped_scores(np.zeros(len(loss), np.int64), 1, loss, brier_mean)[1]


@dataclass(frozen=True)
class PoolScores:
    """Per-row LARK statistics of a pool, aligned with the input rows.

    Attributes:
        rho: ρ_k per row (NaN if unscored).
        g_hat: ĝ_k per row (NaN if unscored or its problem has S_L ≤ 1e-30).
        pooled_rho: Each row's problem's S_B / S_L.
    """

    rho: np.ndarray
    g_hat: np.ndarray
    pooled_rho: np.ndarray


def group_by_problem(problem_ids: Sequence[Hashable]) -> list[np.ndarray]:
    """Row indices of each problem, problems in order of first appearance, rows in input order."""
    codes, keys = _problem_codes(problem_ids)
    if not keys:
        return []
    order = np.argsort(codes, kind="stable")
    return np.split(order, np.cumsum(np.bincount(codes, minlength=len(keys)))[:-1])


def score_pool(problem_ids: Sequence[Hashable], ce_mean: np.ndarray, brier_mean: np.ndarray) -> PoolScores:
    """ρ, ĝ and pooled ρ for every row of a pool holding many problems, in rows of any order."""
    codes, keys = _problem_codes(problem_ids)
    rho, g_hat, pooled = _grouped_scores(codes, len(keys), ce_mean, brier_mean)
    return PoolScores(rho=rho, g_hat=g_hat, pooled_rho=pooled[codes])


# ------------------------------------------------------------------------------------------ selection


@dataclass(frozen=True)
class _Ranked:
    """A pool sorted problem-major, then by descending energy, ties by lower tie-break key."""

    order: np.ndarray  # input row at each sorted position
    group: np.ndarray  # problem code at each sorted position
    energy: np.ndarray  # energy at each sorted position
    start: np.ndarray  # per problem: its first sorted position
    size: np.ndarray  # per problem: number of candidates K
    n_valid: np.ndarray  # per problem: number of finite energies
    b_eff: np.ndarray  # per problem: min(B, n_valid)
    sel: np.ndarray  # per sorted position: selected


def _rank(codes: np.ndarray, n_groups: int, energies: np.ndarray, tiebreak: np.ndarray, budget: int) -> _Ranked:
    valid = np.isfinite(energies)
    # NaN (and ±inf, which would give NaN weights) sort as −∞: never selected, never the threshold.
    key = np.where(valid, -energies, np.inf)
    # lexsort is stable, so this is Python's stable descending sort on ids ordered by tiebreak (§1.5).
    order = np.lexsort((np.arange(len(codes)), tiebreak, key, codes))
    group = codes[order]
    size = np.bincount(codes, minlength=n_groups)
    start = np.cumsum(size) - size
    n_valid = np.bincount(codes, valid, n_groups).astype(np.int64)
    b_eff = np.minimum(budget, n_valid)
    # An all-NaN problem keeps every candidate at 1/K, as the reference does; callers reject it.
    n_take = np.where(n_valid > 0, b_eff, size)
    rank = np.arange(len(codes)) - start[group]
    sel = rank < n_take[group]
    return _Ranked(order, group, energies[order], start, size, n_valid, b_eff, sel)


def _chi2(r: _Ranked, g: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Closed-form χ² weights q_k = (e_k − e_(B+1)) / (B(ē_A − e_(B+1))) over the top-B (§1.5)."""
    has, more = r.n_valid > 0, r.n_valid > r.b_eff
    thr = np.full(len(r.size), np.nan)
    thr[more] = r.energy[(r.start + r.b_eff)[more]]  # e_(B+1), the first excluded candidate
    # Every valid candidate kept: shift below the lowest, so the last gets a weight of about 1e-7.
    last = has & ~more
    thr[last] = r.energy[(r.start + r.b_eff - 1)[last]] - _THRESHOLD_SHIFT
    denom = np.bincount(g, e, len(r.size)) / r.b_eff - thr  # ē_A − e_(B+1), summed in rank order
    w = (e - thr[g]) / (denom[g] * r.b_eff[g])
    flat = (denom <= _GAP_GUARD)[g]  # ties at the threshold
    w[flat] = 1.0 / r.b_eff[g][flat]
    return w


def _weights(r: _Ranked, rule: str, temperature: float) -> np.ndarray:
    """The rule's weight for every selected sorted position."""
    g, e = r.group[r.sel], r.energy[r.sel]
    with np.errstate(divide="ignore", invalid="ignore"):  # all-NaN problems, overwritten below
        if rule == "chi2":
            w = _chi2(r, g, e)
        elif rule == "softmax":
            # Removed KL rule: softmax(e/τ) over the valid candidates, cut to the top-B and
            # renormalised, which is a softmax over the top-B alone; rank 0 holds the maximum.
            z = np.exp((e - r.energy[r.start[g]]) / temperature)
            w = z / np.bincount(g, z, len(r.size))[g]
        else:  # removed hard top-B rule
            w = 1.0 / r.b_eff[g]
    none = (r.n_valid == 0)[g]
    w[none] = 1.0 / r.size[g][none]
    return w


def _one_problem(
    energies: np.ndarray, budget: int, rule: str, temperature: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    e = _as_1d("energies", energies)
    _check_budget(budget)
    _check_temperature(temperature)
    if e.size == 0:
        raise ValueError("energies is empty")
    r = _rank(np.zeros(e.size, np.int64), 1, e, np.arange(e.size), budget)
    return r.order[r.sel], _weights(r, rule, temperature)


def chi2_topb_weights(energies: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """χ²-regularised top-B weights of ONE problem, with every edge case of methods.md §1.5.

    Args:
        energies: Score per candidate (ĝ); NaN means unscored.
        budget: B, the number of candidates to keep.

    Returns:
        (selected positions in rank order, their weights q). Ties rank the lower position first. If
        every energy is NaN, all K positions with weight 1/K.
    """
    return _one_problem(energies, budget, "chi2")


def softmax_topb_weights(energies: np.ndarray, budget: int, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Ablation: softmax(e / temperature) over valid candidates, top-B kept and renormalised.

    budget >= #valid gives the plain softmax over the valid candidates.
    """
    return _one_problem(energies, budget, "softmax", temperature)


def hard_topb_weights(energies: np.ndarray, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Ablation: top-B by energy with uniform weights 1/B_eff."""
    return _one_problem(energies, budget, "hard")


RULES: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "chi2": chi2_topb_weights,
    "softmax": softmax_topb_weights,
    "hard": hard_topb_weights,
}


@dataclass(frozen=True)
class Selection:
    """Selected rows of a pool.

    Attributes:
        rows: Input row indices; problems in order of first appearance, within a problem by
            descending score, ties by lower candidate_id.
        weights: The rule's weight for each selected row (sums to 1 per problem).
        problem_index: Problem (0..n_problems-1, first-appearance order) of each selected row.
    """

    rows: np.ndarray
    weights: np.ndarray
    problem_index: np.ndarray


def select_pool(
    problem_ids: Sequence[Hashable],
    candidate_ids: Sequence[int] | np.ndarray,
    scores: np.ndarray,
    budget: int,
    rule: str = "chi2",
    temperature: float = 1.0,
    strict: bool = True,
) -> Selection:
    """Select the top-`budget` candidates of every problem and weight them with `rule`.

    Args:
        problem_ids: Problem of each row.
        candidate_ids: Candidate id of each row; equal scores rank the lower id first (§1.5).
        scores: Energy of each row (normally ĝ); non-finite means unscored, never selected.
        budget: B, candidates kept per problem.
        rule: One of RULES: "chi2" (LARK), "softmax" or "hard" (ablations).
        temperature: Softmax temperature; used only by rule="softmax".
        strict: Raise if a problem has fewer than B valid candidates, as the reference's
            "Selection incomplete" does. If False such problems keep B_eff = #valid rows, and problems
            with none are dropped.

    Raises:
        ValueError: Bad arguments, or (strict) a problem short of valid candidates; names the problem.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {sorted(RULES)}")
    _check_budget(budget)
    _check_temperature(temperature)
    e = _as_1d("scores", scores)
    cand = np.asarray(candidate_ids)
    _check_lengths(problem_ids=problem_ids, candidate_ids=cand, scores=e)
    codes, keys = _problem_codes(problem_ids)
    r = _rank(codes, len(keys), e, cand, budget)
    short = np.flatnonzero(r.n_valid < budget)
    if strict and short.size:
        first = short[0]
        raise ValueError(
            f"Selection incomplete: problem {keys[first]!r} has {r.n_valid[first]} valid candidates, "
            f"fewer than budget={budget} ({short.size} problem(s) short; pass strict=False to keep fewer)"
        )
    g, w = r.group[r.sel], _weights(r, rule, temperature)
    keep = r.n_valid[g] > 0  # an all-NaN problem has nothing to train on
    return Selection(rows=r.order[r.sel][keep], weights=w[keep], problem_index=g[keep])
