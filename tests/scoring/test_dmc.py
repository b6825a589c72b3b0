"""Tests for lit_distill.scoring.dmc: DMC components, variants A–E and compute_dmc (methods.md 3.2–3.3)."""

import math

import numpy as np
import pytest

from lit_distill.scoring.dmc import (
    DMCConfig,
    ProbeItems,
    capability,
    compute_dmc,
    dmc_value,
    pooled_learnability,
    quality,
    relative_difficulty,
    surprisal,
    token_nll,
)

NAN = float("nan")


def items(nll, tok, brier=None, correct=None) -> ProbeItems:
    brier = [0.5 * t for t in tok] if brier is None else brier
    return ProbeItems(np.array(nll, float), np.array(tok, float), np.array(brier, float), correct)


def varied(seed: int, n: int = 40, with_correct: bool = True) -> ProbeItems:
    rng = np.random.default_rng(seed)
    tok = rng.integers(5, 50, size=n).astype(float)
    correct = rng.integers(0, 2, size=n // 2).astype(float) if with_correct else None
    return ProbeItems(tok * rng.uniform(0.5, 2.0, n), tok, tok * rng.uniform(0.2, 0.8, n), correct)


# --- components -------------------------------------------------------------------------------


def test_quality():
    assert quality(8, 10) == pytest.approx(0.8)
    assert quality(8, 10, n_invalid=2) == pytest.approx(0.8)  # not penalised unless asked
    assert quality(8, 10, n_invalid=2, penalise_invalid=True) == pytest.approx(0.64)
    assert math.isnan(quality(0, 0))
    with pytest.raises(ValueError):
        quality(11, 10)
    with pytest.raises(ValueError):
        quality(1, 10, n_invalid=-1)


def test_token_nll_is_token_weighted():
    # Σ NLL / Σ tokens = 10/4, not the mean of per-trajectory means (1 + 3)/2 = 2.
    assert token_nll(items([1.0, 9.0], [1, 3])) == pytest.approx(2.5)
    assert math.isnan(token_nll(items([], [])))


def test_relative_difficulty_is_surprisal_per_trajectory():
    # Changed from the token-weighted NLL ratio (methods.md 3.6): s_j is the mean SUMMED NLL per trajectory.
    by_source = {"a": items([4.0, 8.0], [2, 2]), "b": items([3.0], [10])}
    assert surprisal(by_source["a"]) == pytest.approx(6.0)
    r = relative_difficulty(by_source)
    # s_a = 6, s_b = 3, s̄ = (4 + 8 + 3) / 3 = 5 (each trajectory once; a mean of means would give 4.5).
    assert r["a"] == pytest.approx(6 / 5)
    assert r["b"] == pytest.approx(3 / 5)
    assert relative_difficulty({"only": items([3.0, 5.0], [2, 7])})["only"] == pytest.approx(1.0)
    # A trajectory without response tokens is no measurement, not a free "zero surprisal" item.
    assert surprisal(items([4.0, 0.0], [2, 0])) == pytest.approx(4.0)
    assert math.isnan(surprisal(items([], [])))


def test_padding_cannot_make_a_source_look_easier():
    # A copy of a source with predictable filler (low NLL per token) added to every trajectory: a per-token
    # mean called it easier (R 0.57 for the demo's verbose teacher); a per-trajectory sum cannot.
    rng = np.random.default_rng(0)
    tok = rng.integers(5, 30, size=40).astype(float)
    nll = tok * rng.uniform(1.0, 2.0, size=40)
    correct = np.zeros(20)
    base = ProbeItems(nll, tok, 0.5 * tok, correct)
    padded = ProbeItems(nll + 0.05 * 80, tok + 80, 0.5 * (tok + 80), correct)  # 80 filler tokens at 0.05 nats
    other = varied(1)
    res = compute_dmc({"base": base, "padded": padded, "other": other}, dict.fromkeys(["base", "padded", "other"], 1.0),
                      DMCConfig())  # fmt: skip
    assert res["padded"].difficulty > res["base"].difficulty
    assert res["padded"].value < res["base"].value
    assert token_nll(padded) < token_nll(base)  # what the old term measured: the padded copy looked easier


def test_capability():
    assert capability(items([1.0], [1], correct=[1.0, 0.0, 0.5, 0.5])) == pytest.approx(0.5)
    assert math.isnan(capability(items([1.0], [1])))
    assert math.isnan(capability(items([1.0], [1], correct=[])))


def test_pooled_learnability_uses_per_trajectory_means():
    # L = [2/1, 3/3] = [2, 1], Brier = [0.5/1, 0.6/3] = [0.5, 0.2]: ρ̄ = 0.7/3.
    # Token-weighted (Σ brier_sum / Σ nll_sum) would give 1.1/5 = 0.22 instead.
    it = items([2.0, 3.0], [1, 3], brier=[0.5, 0.6])
    assert pooled_learnability(it) == pytest.approx(0.7 / 3)
    # A zero-token trajectory is excluded, as LARK excludes skipped candidates.
    it0 = items([2.0, 3.0, 0.0], [1, 3, 0], brier=[0.5, 0.6, 0.0])
    assert pooled_learnability(it0) == pytest.approx(0.7 / 3)
    assert math.isnan(pooled_learnability(items([0.0, 0.0], [1, 2])))


def test_probe_items_validation():
    with pytest.raises(ValueError, match="differ in length"):
        ProbeItems(np.ones(2), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="correct"):
        ProbeItems(np.ones(2), np.ones(2), np.ones(2), np.array([1.5]))
    assert ProbeItems([1, 2], [3, 4], [5, 6]).nll_sum.dtype == np.float64


# --- variants ---------------------------------------------------------------------------------


def test_variants_on_hand_numbers():
    q, c, r = 0.9, 0.4, 1.2
    assert dmc_value("A", quality=q, capability=c, difficulty=r) == pytest.approx(0.9 * 0.6 * math.exp(-0.2))
    assert dmc_value("B", quality=q, capability=c, difficulty=r) == pytest.approx(0.9 * 0.96 * math.exp(-0.2))
    assert dmc_value("A", quality=q, capability=c, difficulty=r, kappa=2.0) == pytest.approx(0.9 * 0.6 * math.exp(-0.4))
    assert dmc_value("C", quality=q, learnability=0.3) == pytest.approx(0.27)
    e = dmc_value("E", quality=q, capability=c, difficulty=r, alpha=2.0, beta=0.5)
    assert e == pytest.approx(0.9 * 0.16 / math.sqrt(1.2))


def test_variant_directions():
    a = [dmc_value("A", quality=1.0, capability=c, difficulty=1.0) for c in (0.1, 0.5, 0.9)]
    assert a[0] > a[1] > a[2]  # A falls as the student masters the data
    a_r = [dmc_value("A", quality=1.0, capability=0.5, difficulty=r) for r in (1.5, 1.0, 0.5)]
    assert a_r[0] < a_r[1] < a_r[2]  # A rises as the data becomes relatively easier
    grid = np.linspace(0, 1, 101)
    b = [dmc_value("B", quality=1.0, capability=c, difficulty=1.0) for c in grid]
    assert grid[int(np.argmax(b))] == pytest.approx(0.5)
    assert max(b) == pytest.approx(1.0)
    e = [dmc_value("E", quality=1.0, capability=c, difficulty=1.0) for c in (0.1, 0.5, 0.9)]
    assert e[0] < e[1] < e[2]  # E prefers easy data


@pytest.mark.parametrize("variant", ["A", "B", "E"])
def test_missing_capability_raises(variant):
    with pytest.raises(ValueError, match="capability"):
        dmc_value(variant, quality=1.0, difficulty=1.0)


def test_missing_inputs_named():
    with pytest.raises(ValueError, match="difficulty"):
        dmc_value("A", quality=1.0, capability=0.5)
    with pytest.raises(ValueError, match="learnability"):
        dmc_value("C", quality=1.0, capability=0.5, difficulty=1.0)
    with pytest.raises(ValueError, match="quality"):
        dmc_value("C", quality=NAN, learnability=0.2)
    with pytest.raises(ValueError, match="variant"):
        dmc_value("Z", quality=1.0)
    # C needs no capability.
    assert dmc_value("C", quality=1.0, learnability=0.2) == pytest.approx(0.2)


def test_config_validation():
    with pytest.raises(ValueError, match="variant"):
        DMCConfig(variant="F")
    with pytest.raises(ValueError, match="bootstrap"):
        DMCConfig(bootstrap=1)


# --- compute_dmc ------------------------------------------------------------------------------


def test_compute_dmc_matches_components():
    by_source = {"a": varied(0), "b": varied(1)}
    res = compute_dmc(by_source, {"a": 0.9, "b": 0.6}, DMCConfig(variant="A", bootstrap=0))
    r = relative_difficulty(by_source)
    for name, q in (("a", 0.9), ("b", 0.6)):
        it = by_source[name]
        assert res[name].capability == pytest.approx(capability(it))
        assert res[name].difficulty == pytest.approx(r[name])
        assert res[name].learnability == pytest.approx(pooled_learnability(it))
        expected = q * (1 - capability(it)) * math.exp(-(r[name] - 1))
        assert res[name].value == pytest.approx(expected)
        assert res[name].se == 0.0


def test_no_reference_answers_uses_default_quality():
    by_source = {"a": varied(0), "b": varied(1)}
    cfg = DMCConfig(variant="C", default_quality=0.7, bootstrap=0)
    res = compute_dmc(by_source, {"a": NAN, "b": 1.0}, cfg)
    assert res["a"].quality == pytest.approx(0.7)
    assert res["a"].value == pytest.approx(0.7 * pooled_learnability(by_source["a"]))


def test_all_correct_zeroes_a_and_all_wrong_zeroes_b():
    solved = items([2.0, 4.0], [2, 2], correct=[1.0, 1.0, 1.0])
    failed = items([3.0, 1.0], [2, 2], correct=[0.0, 0.0])
    res_a = compute_dmc({"s": solved, "f": failed}, {"s": 1.0, "f": 1.0}, DMCConfig(variant="A"))
    assert res_a["s"].value == 0.0 and res_a["s"].se == 0.0
    assert res_a["f"].value > 0
    res_b = compute_dmc({"s": solved, "f": failed}, {"s": 1.0, "f": 1.0}, DMCConfig(variant="B"))
    assert res_b["f"].value == 0.0 and res_b["s"].value == 0.0


def test_single_source_has_unit_difficulty():
    res = compute_dmc({"only": varied(3)}, {"only": 1.0}, DMCConfig(variant="A", bootstrap=0))
    assert res["only"].difficulty == pytest.approx(1.0)
    assert res["only"].value == pytest.approx(1.0 - capability(varied(3)))


def test_compute_dmc_missing_capability_names_source():
    by_source = {"a": varied(0), "nogen": varied(1, with_correct=False)}
    with pytest.raises(ValueError, match=r"'nogen'.*capability"):
        compute_dmc(by_source, {"a": 1.0, "nogen": 1.0}, DMCConfig(variant="A"))
    res = compute_dmc(by_source, {"a": 1.0, "nogen": 1.0}, DMCConfig(variant="C"))
    assert math.isnan(res["nogen"].capability) and res["nogen"].value > 0


def test_compute_dmc_quality_keys_must_match():
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        compute_dmc({"a": varied(0), "b": varied(1)}, {"a": 1.0}, DMCConfig())
    with pytest.raises(ValueError, match=r"unknown \['c'\]"):
        compute_dmc({"a": varied(0)}, {"a": 1.0, "c": 1.0}, DMCConfig())


def test_variant_d_was_removed():
    # Its length-normalised static difficulty always gave the longest source delta = 1 and DMC ~ 0.
    with pytest.raises(ValueError, match="variant"):
        DMCConfig(variant="D")
    with pytest.raises(ValueError, match="variant"):
        dmc_value("D", quality=1.0)


@pytest.mark.parametrize("variant", ["A", "B", "C", "E"])
def test_bootstrap_se_positive_for_varied_items(variant):
    res = compute_dmc({"a": varied(0), "b": varied(1)}, {"a": 1.0, "b": 1.0}, DMCConfig(variant=variant))
    assert res["a"].se > 0 and res["b"].se > 0
    again = compute_dmc({"b": varied(1), "a": varied(0)}, {"a": 1.0, "b": 1.0}, DMCConfig(variant=variant))
    assert again["a"].se == res["a"].se  # deterministic, independent of source order
    other_seed = compute_dmc({"a": varied(0), "b": varied(1)}, {"a": 1.0, "b": 1.0}, DMCConfig(variant=variant, seed=5))
    assert other_seed["a"].se != res["a"].se


def test_bootstrap_se_zero_for_identical_items_or_disabled():
    same = ProbeItems(np.full(20, 6.0), np.full(20, 3.0), np.full(20, 1.2), np.full(10, 0.5))
    res = compute_dmc({"s": same, "v": varied(0)}, {"s": 1.0, "v": 1.0}, DMCConfig(variant="A"))
    assert res["s"].se == 0.0
    assert res["v"].se > 0
    off = compute_dmc({"s": same, "v": varied(0)}, {"s": 1.0, "v": 1.0}, DMCConfig(variant="A", bootstrap=0))
    assert off["v"].se == 0.0


def test_bootstrap_se_shrinks_with_probe_size():
    # Four copies of each item: the bootstrap se of a ratio estimator should roughly halve.
    base = varied(2, n=60)
    big = ProbeItems(*(np.tile(a, 4) for a in (base.nll_sum, base.n_tokens, base.brier_sum, base.correct)))
    cfg = DMCConfig(variant="C", bootstrap=400)
    se_small = compute_dmc({"x": base}, {"x": 1.0}, cfg)["x"].se
    se_big = compute_dmc({"x": big}, {"x": 1.0}, cfg)["x"].se
    assert 0.35 < se_big / se_small < 0.65
