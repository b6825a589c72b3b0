"""DMC (Data–Model Compatibility): dataset-level suitability of a source for the current student.

Pure numpy (float64) maths of methods.md section 3; the DMC callback feeds it all-reduced probe sums
and turns the result into mixture weights with ``scoring/policies.py``. The formula is our INFERRED
design (methods.md 3.2), so every variant A–E stays selectable for the validation of methods.md 3.5:

* A: Q·(1 − C)·exp(−κ(R − 1))          "worth learning × not yet learnt × learnable" (default)
* B: Q·4C(1 − C)·exp(−κ(R − 1))        peaked at a 50% pass rate
* C: Q·ρ̄                               forward-only (LARK pooled learnability)
* D: Q·exp(−(δ − c)² / 2σ²)            static difficulty δ matched to global capability c
* E: Q·C^α / R^β                        monotone control, prefers easy data
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from lit_distill.scoring.stats import replicate_se

VARIANTS = ("A", "B", "C", "D", "E")

# Inputs each variant needs (besides quality); a NaN input raises a ValueError naming it.
_NEEDS = {
    "A": ("capability", "difficulty"),
    "B": ("capability", "difficulty"),
    "C": ("learnability",),
    "D": ("global_capability", "static_difficulty"),
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
    """Token-weighted mean student NLL s_j over the probe: Σ NLL / Σ tokens (NaN with no tokens)."""
    return _ratio(float(items.nll_sum.sum()), float(items.n_tokens.sum()))


def _pooled_nll(items_by_source: Mapping[str, ProbeItems]) -> float:
    """s̄: token-weighted NLL over the union of all probes (sums first, never a mean of means)."""
    total_nll = sum(float(it.nll_sum.sum()) for it in items_by_source.values())
    total_tok = sum(float(it.n_tokens.sum()) for it in items_by_source.values())
    return _ratio(total_nll, total_tok)


def relative_difficulty(items_by_source: Mapping[str, ProbeItems]) -> dict[str, float]:
    """R_j = s_j / s̄, where s̄ is the token-weighted NLL over the union of all probes (methods.md 3.2).

    s̄ pools tokens, so it is not the mean of the s_j: a long probe weighs more. R > 1 means harder
    than average for this student now; normalising by s̄ keeps R comparable as all losses fall.
    """
    s_bar = _pooled_nll(items_by_source)
    return {name: _ratio(token_nll(it), s_bar) for name, it in items_by_source.items()}


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
        sigma: width of the difficulty–capability match in D.
        alpha: exponent of C in E.
        beta: exponent of R in E.
        default_quality: Q used for a source without reference answers (quality NaN).
        bootstrap: resamples for the standard error (methods.md 3.3); 0 disables it (se = 0).
        seed: seed of the bootstrap.
    """

    variant: str = "A"
    kappa: float = 1.0
    sigma: float = 0.15
    alpha: float = 1.0
    beta: float = 1.0
    default_quality: float = 1.0
    bootstrap: int = 200
    seed: int = 0

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"DMC variant must be one of {VARIANTS}, got {self.variant!r}")
        if not self.sigma > 0:
            raise ValueError(f"sigma must be > 0, got {self.sigma}")
        if not 0.0 <= self.default_quality <= 1.0:
            raise ValueError(f"default_quality must be in [0, 1], got {self.default_quality}")
        if self.bootstrap < 0 or self.bootstrap == 1:
            raise ValueError(f"bootstrap must be 0 (disabled) or >= 2, got {self.bootstrap}")


def _constants(config: DMCConfig) -> dict[str, float]:
    return {"kappa": config.kappa, "sigma": config.sigma, "alpha": config.alpha, "beta": config.beta}


def _combine(variant: str, *, quality, capability, difficulty, learnability, global_capability,
             static_difficulty, kappa, sigma, alpha, beta):  # fmt: skip
    """The variant formulas, vectorised over any broadcastable inputs (no validation)."""
    q, c, r = quality, capability, difficulty
    if variant == "A":
        return q * (1.0 - c) * np.exp(-kappa * (r - 1.0))
    if variant == "B":
        return q * 4.0 * c * (1.0 - c) * np.exp(-kappa * (r - 1.0))
    if variant == "C":
        return q * learnability
    if variant == "D":
        return q * np.exp(-((static_difficulty - global_capability) ** 2) / (2.0 * sigma**2))
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
    global_capability: float = math.nan,
    static_difficulty: float = math.nan,
    kappa: float = 1.0,
    sigma: float = 0.15,
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
        "global_capability": global_capability,
        "static_difficulty": static_difficulty,
    }
    if not math.isfinite(quality):
        raise ValueError("DMC needs a finite quality (substitute the default for sources without answers)")
    for name in _NEEDS[variant]:
        if not math.isfinite(inputs[name]):
            raise ValueError(f"DMC variant {variant} needs {name}, which is missing (NaN)")
    for name in ("capability", "global_capability"):
        if name in _NEEDS[variant] and not 0.0 <= inputs[name] <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {inputs[name]}")
    if variant == "E" and difficulty <= 0:
        raise ValueError(f"DMC variant E divides by difficulty, which must be > 0, got {difficulty}")
    consts = {"kappa": kappa, "sigma": sigma, "alpha": alpha, "beta": beta}
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


def static_difficulty_from_lengths(mean_tokens: Mapping[str, float]) -> dict[str, float]:
    """Static difficulty δ_j for DMC-D from mean response length, min-max normalised to [0, 1].

    Longer teacher responses read as harder problems (methods.md 3.2, DMC-D). All equal -> 0.5 each.
    """
    values = np.array([float(v) for v in mean_tokens.values()], dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ValueError(f"mean_tokens must be finite, got {dict(mean_tokens)}")
    if values.size == 0:
        return {}
    lo, hi = values.min(), values.max()
    if hi == lo:
        return dict.fromkeys(mean_tokens, 0.5)
    return {name: float((v - lo) / (hi - lo)) for name, v in zip(mean_tokens, values, strict=True)}


def _source_rng(seed: int, name: str) -> np.random.Generator:
    # Seeded by (seed, source name) so a source's se does not depend on which other sources are scored
    # or their order; crc32 because Python's str hash is randomised per process.
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])


def _bootstrap_se(
    name: str, items: ProbeItems, q: float, s_bar: float, c_global: float, delta: float, config: DMCConfig
) -> float:
    """Bootstrap se of one source's DMC over its probe items (methods.md 3.3).

    Trajectories (s_j, ρ̄_j) and questions (C_j) are resampled independently, since they are
    different item sets; s̄, Q and the global capability stay at their full-sample values.
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
        tok = items.n_tokens[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(tok > 0, items.nll_sum[idx].sum(axis=1) / tok, np.nan) / s_bar
            loss, brier = _per_trajectory_means(items)
            s_l = loss[idx].sum(axis=1)
            rho = np.where(s_l > 1e-30, brier[idx].sum(axis=1) / s_l, np.nan)
    c = nan
    if items.correct is not None and items.correct.size > 0:
        qidx = rng.integers(0, items.correct.size, size=(n_resamples, items.correct.size))
        c = items.correct[qidx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        replicates = _combine(
            config.variant, quality=q, capability=c, difficulty=r, learnability=rho,
            global_capability=c_global, static_difficulty=delta, **_constants(config),
        )  # fmt: skip
    return replicate_se(np.broadcast_to(replicates, (n_resamples,)))


def compute_dmc(
    items_by_source: Mapping[str, ProbeItems],
    quality_by_source: Mapping[str, float],
    config: DMCConfig,
    global_capability: float = math.nan,
    static_difficulty: Mapping[str, float] | None = None,
) -> dict[str, DMCResult]:
    """DMC of all sources at once, from their (all-reduced) probe statistics.

    Args:
        items_by_source: probe statistics per source; R_j is relative to the union of these probes.
        quality_by_source: Q_j per source (same keys); NaN (no reference answers) means
            ``config.default_quality``.
        config: variant, constants and bootstrap settings.
        global_capability: c(t) for variant D; defaults to the pooled pass rate over all sources'
            probe questions (each question counts once).
        static_difficulty: δ_j for variant D; defaults to ``static_difficulty_from_lengths`` of each
            probe's mean response tokens (the probe is fixed, so this is static).

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
    s_bar = _pooled_nll(items_by_source)
    difficulty = relative_difficulty(items_by_source)

    if config.variant == "D":
        if math.isnan(global_capability):
            answered = [it.correct for it in items_by_source.values() if it.correct is not None]
            pooled = np.concatenate(answered) if answered else np.empty(0)
            global_capability = float(pooled.mean()) if pooled.size else math.nan
        if static_difficulty is None:
            lengths = {n: _ratio(it.n_tokens.sum(), it.n_tokens.size) for n, it in items_by_source.items()}
            static_difficulty = static_difficulty_from_lengths(lengths)
    static_difficulty = static_difficulty or {}

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
        delta = float(static_difficulty.get(name, math.nan))
        try:
            value = dmc_value(
                config.variant, quality=q, **comps, global_capability=global_capability,
                static_difficulty=delta, **_constants(config),
            )  # fmt: skip
        except ValueError as err:
            raise ValueError(f"source {name!r}: {err}") from err
        se = _bootstrap_se(name, items, q, s_bar, global_capability, delta, config)
        results[name] = DMCResult(value=value, se=se, quality=q, **comps)
    return results
