"""DMC (Data–Model Compatibility): dataset-level suitability of a source for the current student.

Pure numpy (float64) maths of methods.md section 3; the DMC callback feeds it all-reduced probe sums
and turns the result into mixture weights with ``scoring/policies.py``. The formula is our INFERRED
design (methods.md 3.2), so the variants stay selectable for the validation of methods.md 3.5:

* A: Q·(1 − C)·exp(−κ(R − 1))          "worth learning × not yet learnt × learnable" (default)
* B: Q·4C(1 − C)·exp(−κ(R − 1))        peaked at a 50% pass rate
* C: Q·ρ̄                               forward-only (LARK pooled learnability)
* E: Q·C^α / R^β                        monotone control, prefers easy data

Relative difficulty R is the student's mean surprisal per TRAJECTORY (summed response NLL, nats per
solution) over the pool's mean, not a per-token mean: tokens the student predicts well (formulaic prose,
filler) add almost nothing to a sum but dilute a mean, so a per-token mean made a padded copy of a
source look easier than the source (methods.md 3.6). With sums, padding can only add surprisal.
Variant D (a static difficulty matched to the global capability) was removed: its only built-in
difficulty was normalised length, which always gave the longest source δ = 1 and DMC ≈ 0.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lit_distill.scoring.stats import replicate_se

VARIANTS = ("A", "B", "C", "E")

# Inputs each variant needs (besides quality); a NaN input raises a ValueError naming it.
_NEEDS = {
    "A": ("capability", "difficulty"),
    "B": ("capability", "difficulty"),
    "C": ("learnability",),
    "E": ("capability", "difficulty"),
}


def _float_array(name: str, value: object) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"ProbeItems.{name} must be 1-D, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"ProbeItems.{name} holds NaN/inf")
    return arr


@dataclass(frozen=True, eq=False)  # eq=False: == on numpy fields would be ambiguous
class ProbeItems:
    """Per-item statistics of ONE source's fixed probe (float64 arrays, one entry per probe trajectory).

    Attributes:
        nll_sum: summed response-token NLL per trajectory.
        n_tokens: response tokens per trajectory.
        brier_sum: summed top-K Brier per trajectory.
        correct: per probe QUESTION, the fraction of attempts answered correctly (0/1 for greedy);
            None when capability was not measured.
    """

    nll_sum: np.ndarray
    n_tokens: np.ndarray
    brier_sum: np.ndarray
    correct: np.ndarray | None = None

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise to float64 once so every formula below can trust the arrays.
        for name in ("nll_sum", "n_tokens", "brier_sum"):
            object.__setattr__(self, name, _float_array(name, getattr(self, name)))
        if not len(self.nll_sum) == len(self.n_tokens) == len(self.brier_sum):
            raise ValueError(
                "ProbeItems trajectory arrays differ in length: "
                f"{len(self.nll_sum)}, {len(self.n_tokens)}, {len(self.brier_sum)}"
            )
        if np.any(self.n_tokens < 0):
            raise ValueError("ProbeItems.n_tokens must be non-negative")
        if self.correct is not None:
            correct = _float_array("correct", self.correct)
            if np.any((correct < 0) | (correct > 1)):
                raise ValueError("ProbeItems.correct must hold pass fractions in [0, 1]")
            object.__setattr__(self, "correct", correct)


def quality(n_match: int, n_checked: int, n_invalid: int = 0, penalise_invalid: bool = False) -> float:
    """Static data quality Q (methods.md 3.2): share of trajectories whose answer matches the reference.

    Args:
        n_match: trajectories whose extracted final answer matches the reference.
        n_checked: trajectories that have a reference answer to check against.
        n_invalid: truncated or format-invalid trajectories among the checked ones.
        penalise_invalid: multiply by (1 − n_invalid / n_checked).

    Returns:
        Q in [0, 1]; NaN when ``n_checked == 0`` (no reference answers): the caller substitutes a
        documented default (``DMCConfig.default_quality``).
    """
    if min(n_match, n_checked, n_invalid) < 0 or n_match > n_checked or n_invalid > n_checked:
        raise ValueError(f"need 0 <= n_match, n_invalid <= n_checked, got {n_match=}, {n_checked=}, {n_invalid=}")
    if n_checked == 0:
        return float("nan")
    q = n_match / n_checked
    if penalise_invalid:
        q *= 1.0 - n_invalid / n_checked
    return q


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def token_nll(items: ProbeItems) -> float:
    """Token-weighted mean student NLL over the probe: Σ NLL / Σ tokens (NaN with no tokens); for logs."""
    return _ratio(float(items.nll_sum.sum()), float(items.n_tokens.sum()))


def _scored(items: ProbeItems) -> np.ndarray:
    # Trajectories without response tokens carry no measurement (not "zero surprisal"): leave them out.
    return items.nll_sum[items.n_tokens > 0]


def surprisal(items: ProbeItems) -> float:
    """Mean surprisal per trajectory: the mean over probe trajectories of their summed NLL (nats).

    What the student still has to learn per solution. Padding a trajectory with text, however
    predictable, can only add to it; NaN if no trajectory has response tokens.
    """
    scored = _scored(items)
    return float(scored.mean()) if scored.size else float("nan")


def _pooled_surprisal(items_by_source: Mapping[str, ProbeItems]) -> float:
    """s̄: mean surprisal per trajectory over the union of all probes (each trajectory counts once)."""
    scored = np.concatenate([_scored(it) for it in items_by_source.values()])
    # fsum is exactly rounded, so s̄ (hence every R and se) does not depend on the order of the sources.
    return math.fsum(scored) / scored.size if scored.size else float("nan")


def relative_difficulty(items_by_source: Mapping[str, ProbeItems]) -> dict[str, float]:
    """R_j = s_j / s̄ with s the mean surprisal per trajectory (methods.md 3.2, 3.6).

    s̄ pools trajectories, so a larger probe weighs more. R > 1 means more to learn per solution than
    the pool's average for this student now; normalising by s̄ keeps R comparable as all losses fall.
    """
    s_bar = _pooled_surprisal(items_by_source)
    return {name: _ratio(surprisal(it), s_bar) for name, it in items_by_source.items()}


def capability(items: ProbeItems) -> float:
    """Student capability C_j: mean pass fraction over probe questions; NaN if not measured."""
    if items.correct is None or items.correct.size == 0:
        return float("nan")
    return float(items.correct.mean())


def _per_trajectory_means(items: ProbeItems) -> tuple[np.ndarray, np.ndarray]:
    """Per-trajectory (L_i, Brier_i) token means; trajectories without tokens get 0 for both.

    Zeroing both is the same as excluding the trajectory from the pooled sums, as LARK excludes
    skipped candidates (methods.md 1.4).
    """
    tok = items.n_tokens
    safe = np.where(tok > 0, tok, 1.0)
    loss = np.where(tok > 0, items.nll_sum / safe, 0.0)
    brier = np.where(tok > 0, items.brier_sum / safe, 0.0)
    return loss, brier


def pooled_learnability(items: ProbeItems) -> float:
    """LARK pooled ρ̄ over the probe: Σ_i Brier_i / Σ_i L_i with per-trajectory MEANS (methods.md 1.4).

    Each trajectory counts once (not token-weighted). NaN if Σ L <= 1e-30.
    """
    loss, brier = _per_trajectory_means(items)
    s_l = float(loss.sum())
    return float(brier.sum()) / s_l if s_l > 1e-30 else float("nan")


@dataclass(frozen=True)
class DMCConfig:
    """How DMC is computed.

    Attributes:
        variant: formula, one of ``VARIANTS`` (methods.md 3.2); "A" is the default triad.
        kappa: sharpness of the learnability factor exp(−κ(R − 1)) in A and B.
        alpha: exponent of C in E.
        beta: exponent of R in E.
        default_quality: Q used for a source without reference answers (quality NaN).
        bootstrap: resamples for the standard error (methods.md 3.3); 0 disables it (se = 0).
        seed: seed of the bootstrap.
    """

    variant: str = "A"
    kappa: float = 1.0
    alpha: float = 1.0
    beta: float = 1.0
    default_quality: float = 1.0
    bootstrap: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"DMC variant must be one of {VARIANTS}, got {self.variant!r}")
        if not 0.0 <= self.default_quality <= 1.0:
            raise ValueError(f"default_quality must be in [0, 1], got {self.default_quality}")
        if self.bootstrap < 0 or self.bootstrap == 1:
            raise ValueError(f"bootstrap must be 0 (disabled) or >= 2, got {self.bootstrap}")


def _constants(config: DMCConfig) -> dict[str, float]:
    return {"kappa": config.kappa, "alpha": config.alpha, "beta": config.beta}


def _combine(variant: str, *, quality, capability, difficulty, learnability, kappa, alpha, beta):  # fmt: skip
    """The variant formulas, vectorised over any broadcastable inputs (no validation)."""
    q, c, r = quality, capability, difficulty
    if variant == "A":
        return q * (1.0 - c) * np.exp(-kappa * (r - 1.0))
    if variant == "B":
        return q * 4.0 * c * (1.0 - c) * np.exp(-kappa * (r - 1.0))
    if variant == "C":
        return q * learnability
    if variant == "E":
        return q * c**alpha / r**beta
    raise ValueError(f"DMC variant must be one of {VARIANTS}, got {variant!r}")


def dmc_value(
    variant: str,
    *,
    quality: float,
    capability: float = math.nan,
    difficulty: float = math.nan,
    learnability: float = math.nan,
    kappa: float = 1.0,
    alpha: float = 1.0,
    beta: float = 1.0,
) -> float:
    """DMC of one source under ``variant`` (see the module docstring for the formulas).

    Raises:
        ValueError: unknown variant, NaN quality, or a NaN input that the variant needs (the message
            names it), a capability outside [0, 1], or a non-positive difficulty for E.
    """
    if variant not in VARIANTS:
        raise ValueError(f"DMC variant must be one of {VARIANTS}, got {variant!r}")
    inputs = {
        "capability": capability,
        "difficulty": difficulty,
        "learnability": learnability,
    }
    if not math.isfinite(quality):
        raise ValueError("DMC needs a finite quality (substitute the default for sources without answers)")
    for name in _NEEDS[variant]:
        if not math.isfinite(inputs[name]):
            raise ValueError(f"DMC variant {variant} needs {name}, which is missing (NaN)")
    if "capability" in _NEEDS[variant] and not 0.0 <= capability <= 1.0:
        raise ValueError(f"capability must be in [0, 1], got {capability}")
    if variant == "E" and difficulty <= 0:
        raise ValueError(f"DMC variant E divides by difficulty, which must be > 0, got {difficulty}")
    consts = {"kappa": kappa, "alpha": alpha, "beta": beta}
    return float(_combine(variant, quality=quality, **inputs, **consts))


@dataclass(frozen=True)
class DMCResult:
    """DMC of one source with its components (for logging) and bootstrap standard error."""

    value: float
    se: float
    quality: float
    capability: float
    difficulty: float
    learnability: float


def _source_rng(seed: int, name: str) -> np.random.Generator:
    # Seeded by (seed, source name) so a source's se does not depend on which other sources are scored
    # or their order; crc32 because Python's str hash is randomised per process.
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def _bootstrap_se(name: str, items: ProbeItems, q: float, s_bar: float, config: DMCConfig) -> float:
    """Bootstrap se of one source's DMC over its probe items (methods.md 3.3).

    Trajectories (s_j, ρ̄_j) and questions (C_j) are resampled independently, since they are
    different item sets; s̄ and Q stay at their full-sample values.
    """
    n_resamples = config.bootstrap
    if n_resamples == 0:
        return 0.0
    rng = _source_rng(config.seed, name)
    nan = np.full(n_resamples, np.nan)
    r = rho = nan
    n_traj = items.n_tokens.size
    if n_traj > 0:
        idx = rng.integers(0, n_traj, size=(n_resamples, n_traj))
        scored = items.n_tokens[idx] > 0
        n_scored = scored.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(n_scored > 0, np.where(scored, items.nll_sum[idx], 0.0).sum(axis=1) / n_scored, np.nan)
            r = r / s_bar
            loss, brier = _per_trajectory_means(items)
            s_l = loss[idx].sum(axis=1)
            rho = np.where(s_l > 1e-30, brier[idx].sum(axis=1) / s_l, np.nan)
    c = nan
    if items.correct is not None and items.correct.size > 0:
        qidx = rng.integers(0, items.correct.size, size=(n_resamples, items.correct.size))
        c = items.correct[qidx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        replicates = _combine(
            config.variant, quality=q, capability=c, difficulty=r, learnability=rho, **_constants(config)
        )
    return replicate_se(np.broadcast_to(replicates, (n_resamples,)))


def compute_dmc(
    items_by_source: Mapping[str, ProbeItems],
    quality_by_source: Mapping[str, float],
    config: DMCConfig,
) -> dict[str, DMCResult]:
    """DMC of all sources at once, from their (all-reduced) probe statistics.

    Args:
        items_by_source: probe statistics per source; R_j is relative to the union of these probes.
        quality_by_source: Q_j per source (same keys); NaN (no reference answers) means
            ``config.default_quality``.
        config: variant, constants and bootstrap settings.

    Returns:
        ``{source: DMCResult}`` in the order of ``items_by_source``.

    Raises:
        ValueError: mismatched source names, or a source lacking an input its variant needs.
    """
    names = list(items_by_source)
    if not names:
        raise ValueError("compute_dmc needs at least one source")
    if set(quality_by_source) != set(names):
        missing = sorted(set(names) - set(quality_by_source))
        unknown = sorted(set(quality_by_source) - set(names))
        raise ValueError(f"quality_by_source does not match the sources: missing {missing}, unknown {unknown}")
    s_bar = _pooled_surprisal(items_by_source)
    difficulty = relative_difficulty(items_by_source)
    results: dict[str, DMCResult] = {}
    for name in names:
        items = items_by_source[name]
        q = float(quality_by_source[name])
        q = config.default_quality if math.isnan(q) else q
        comps = {
            "capability": capability(items),
            "difficulty": difficulty[name],
            "learnability": pooled_learnability(items),
        }
        try:
            value = dmc_value(config.variant, quality=q, **comps, **_constants(config))
        except ValueError as err:
            raise ValueError(f"source {name!r}: {err}") from err
        se = _bootstrap_se(name, items, q, s_bar, config)
        results[name] = DMCResult(value=value, se=se, quality=q, **comps)
    return results
