"""Tables, figures and JSON of the validation studies (``studies.py report``): docs/experiments/results.md.

Reads the finished runs of every stage (``compare``'s results.json, the D1 static-DMC files, the L3 JSON) and
writes the statistics the protocol names: paired differences per seed with 95 % percentile-bootstrap CIs, the
same with Bonferroni-adjusted intervals for the secondary comparisons (a conservative stand-in for Holm), d_z,
wins/losses, and for D1 the Spearman correlation over sources per seed with a joint source x seed bootstrap.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from lit_distill.compare.report import read_scalars
from lit_distill.compare.stats import paired_difference
from lit_distill.scoring.stats import spearman

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "experiments"
SOURCES = ["easy", "easy_wrong20", "easy_wrong45", "easy_verbose", "easy_filler", "medium", "medium_style2", "hard"]
VARIANTS = ("A", "B", "C", "E")
SETS = ("easy", "medium", "hard")


def paired(a: dict[str, float], b: dict[str, float], k: int = 1) -> dict:
    """Paired difference a - b over shared seeds: mean, 95 % CI, Bonferroni CI over ``k`` comparisons, d_z."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return {"n": 0}
    p95 = paired_difference(a, b)
    adj = paired_difference(a, b, confidence=1 - 0.05 / k)
    return {
        "n": p95.n,
        "mean": p95.mean,
        "ci95": [p95.ci_low, p95.ci_high],
        "ci_adjusted": [adj.ci_low, adj.ci_high],
        "comparisons": k,
        "d_z": p95.effect_size,
        "wins": p95.wins,
        "losses": p95.losses,
        "per_seed": {str(s): float(a[s] - b[s]) for s in seeds},
    }


def verdict(p: dict, margin: float = 0.02) -> str:
    """The protocol's reading of a CI (section 6): supported, refuted, or inconclusive."""
    if not p.get("n"):
        return "not run"
    lo, hi = p["ci_adjusted"] if p.get("comparisons", 1) > 1 else p["ci95"]  # secondaries: the adjusted CI
    if lo > 0:
        return "supported"
    if hi < 0:
        return "refuted (opposite direction)"
    if -margin < lo and hi < margin:
        return "refuted (equivalent within ±2 points)"
    return "inconclusive"


def finals(study_dir: Path, metric: str = "val/accuracy") -> dict[str, dict[str, float]]:
    """arm -> seed -> final metric, from compare's results.json."""
    data = json.loads((study_dir / "results.json").read_text())
    return {a: {s: r[metric] for s, r in e["runs"].items() if metric in r} for a, e in data["arms"].items()}


def fmt(p: dict, pct: bool = True) -> str:
    if not p.get("n"):
        return "n/a"
    f = (lambda x: f"{100 * x:+.1f}") if pct else (lambda x: f"{x:+.3f}")
    lo, hi = p["ci95"]
    alo, ahi = p["ci_adjusted"]
    adj = f" (adj. [{f(alo)}, {f(ahi)}])" if p["comparisons"] > 1 else ""
    return f"{f(p['mean'])} [{f(lo)}, {f(hi)}]{adj}, d_z {p['d_z']:.2f}, {p['wins']}/{p['n']} wins"


def arm_table(fin: dict[str, dict[str, float]], sets: dict[str, dict[str, dict[str, float]]]) -> list[str]:
    rows = ["| arm | accuracy (mean ± sd) | easy | medium | hard | seeds |", "|---|---|---|---|---|---|"]
    for arm, by_seed in fin.items():
        if not by_seed:
            continue  # an arm whose runs have not started
        v = np.array(list(by_seed.values()))
        per = [np.mean(list(sets[name][arm].values())) if sets[name].get(arm) else float("nan") for name in SETS]
        sd = v.std(ddof=1) if len(v) > 1 else 0.0
        rows.append(
            f"| {arm} | {100 * v.mean():.1f} ± {100 * sd:.1f} | "
            + " | ".join(f"{100 * x:.1f}" for x in per)
            + f" | {len(v)} |"
        )
    return rows


# ----------------------------------------------------------------------------------------------------- D1
def d1_stats(out: Path, seeds: list[int]) -> dict:
    fin = finals(out / "d1")
    dmc, acc = {}, {}
    for seed in seeds:
        path = out / "d1" / "static_dmc" / f"seed{seed}.json"
        if not path.exists() or any(str(seed) not in fin.get(f"only_{s}", {}) for s in SOURCES):
            continue
        src = json.loads(path.read_text())["sources"]
        dmc[seed] = {v: np.array([src[s]["dmc"][v] for s in SOURCES]) for v in VARIANTS}
        acc[seed] = np.array([fin[f"only_{s}"][str(seed)] for s in SOURCES])
    used = sorted(acc)
    result = {"seeds": used, "sources": SOURCES, "accuracy": {str(s): acc[s].tolist() for s in used}}
    rng = np.random.default_rng(0)
    for v in VARIANTS:
        per_seed = [spearman(dmc[s][v], acc[s]) for s in used]
        boots = []
        for _ in range(2000):  # sources and seeds resampled jointly
            ss = rng.choice(used, len(used))
            idx = rng.choice(len(SOURCES), len(SOURCES))
            vals = [spearman(dmc[s][v][idx], acc[s][idx]) for s in ss]
            boots.append(np.nanmean(vals))
        lo, hi = np.nanpercentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
        result[v] = {
            "per_seed": [float(x) for x in per_seed],
            "mean": float(np.mean(per_seed)) if per_seed else float("nan"),
            "ci95": [float(lo), float(hi)],
            "dmc": {str(s): dmc[s][v].tolist() for s in used},
        }
    return result


def d1_section(d1: dict) -> list[str]:
    lines = ["## D1: static DMC vs accuracy after training on one source", ""]
    if not d1["seeds"]:
        return [*lines, "Not run.", ""]
    lines += [
        f"Seeds {d1['seeds']}; each seed's warm student is scored (`lit-distill score dmc`, 128 trajectories and 64",
        "questions per source), then trained 120,000 tokens on each single source. Spearman over the 8 sources per",
        "seed, averaged; 95 % CI from resampling sources and seeds jointly (2,000 draws).",
        "",
        "| variant | mean Spearman | 95 % CI | per seed | reading |",
        "|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        r = d1[v]
        reading = "supported" if r["ci95"][0] > 0 else ("refuted" if r["ci95"][1] < 0 else "inconclusive")
        per = ", ".join(f"{x:+.2f}" for x in r["per_seed"])
        lines.append(f"| {v} | {r['mean']:+.3f} | [{r['ci95'][0]:+.3f}, {r['ci95'][1]:+.3f}] | {per} | {reading} |")
    acc = np.array([d1["accuracy"][str(s)] for s in d1["seeds"]])
    dmc_a = np.array([d1["A"]["dmc"][str(s)] for s in d1["seeds"]])
    lines += ["", "| source | accuracy after single-source training (mean over seeds) | DMC-A at the warm student |"]
    lines += ["|---|---|---|"]
    for i, s in enumerate(SOURCES):
        lines.append(f"| {s} | {100 * acc[:, i].mean():.1f} | {dmc_a[:, i].mean():.3f} |")
    return [*lines, ""]


# ---------------------------------------------------------------------------------------------- mixture
D2 = ("dmc_topm", "balanced", ["temperature", "uniform"])
D3 = ("dmc_dynamic", "balanced", ["dmc_static", "final_fixed", "dmc_shuffled", "odm"])


def study_stats(study_dir: Path, hypotheses: dict[str, tuple[str, str, list[str]]]) -> dict:
    fin = finals(study_dir)
    sets = {n: finals(study_dir, f"val/accuracy/{n}") for n in SETS}
    out: dict = {"finals": fin, "sets": sets}
    for name, (arm, primary, secondary) in hypotheses.items():
        if arm not in fin:
            continue
        k = 1 + len(secondary)
        out[name] = {"primary": {primary: paired(fin[arm], fin[primary])}, "secondary": {}}
        for other in secondary:
            if other in fin:
                out[name]["secondary"][other] = paired(fin[arm], fin[other], k)
                for n in SETS:  # where does it help or hurt
                    out[name]["secondary"].setdefault(f"{other}/{n}", paired(sets[n][arm], sets[n][other], k))
        for n in SETS:
            out[name]["primary"][f"{primary}/{n}"] = paired(sets[n][arm], sets[n][primary])
    return out


def hypothesis_lines(name: str, arm: str, stats: dict) -> list[str]:
    if name not in stats:
        return [f"{name}: not run.", ""]
    lines = [f"| {name}: `{arm}` minus | accuracy difference, points [95 % CI] | reading |", "|---|---|---|"]
    for kind in ("primary", "secondary"):
        for other, p in stats[name][kind].items():
            if "/" in other and not p.get("n"):
                continue
            label = f"**{other}** (primary)" if kind == "primary" and "/" not in other else other
            lines.append(f"| {label} | {fmt(p)} | {verdict(p) if '/' not in other else ''} |")
    return [*lines, ""]


def copy_study(study_dir: Path, name: str) -> None:
    dest = DOCS / "studies" / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in ("report.md", "results.json", "curves.png"):
        if (study_dir / f).exists():
            shutil.copy(study_dir / f, dest / f)


def loss_drop(study_dir: Path, arms: list[str]) -> dict[str, dict[str, float]]:
    """L2: mean training loss of the first 3 logged steps minus the last 3 (logged every 10 steps), per arm and seed."""
    out: dict[str, dict[str, float]] = {}
    for arm in arms:
        for run in sorted((study_dir / "runs" / arm).glob("seed*")):
            loss = [v for _, v in read_scalars(run).get("train/loss", [])]
            if len(loss) >= 6:
                out.setdefault(arm, {})[run.name.removeprefix("seed")] = float(np.mean(loss[:3]) - np.mean(loss[-3:]))
    return out


L3_ROWS = {
    "within_drop": "within-problem Spearman with the realised drop (primary)",
    "within_relative_drop": "within-problem Spearman with the relative drop (drop / L)",
    "within_problem_drop": "within-problem Spearman with the drop of all K candidates (transfer)",
    "pooled_relative": "pooled Spearman with the relative drop",
}


def l3_section(summary: dict) -> list[str]:
    m, paired_ = summary["metrics"], summary["paired"]
    lines = ["## L3: does g-hat predict the realised per-trajectory loss drop?", ""]
    lines += [
        f"Seeds {summary['seeds']}, 150 problems x 4 candidates per seed; realised drop = mean response NLL before",
        "minus after 3 plain-SGD steps (lr 1e-3) on that trajectory alone from the warm student. Per-seed values",
        "averaged; 95 % bootstrap CIs over seeds.",
        "",
        "| statistic | g-hat | L alone | random | g-hat minus L | g-hat minus random |",
        "|---|---|---|---|---|---|",
    ]

    def cell(x: dict) -> str:
        return f"{x['mean']:+.3f} [{x['ci'][0]:+.3f}, {x['ci'][1]:+.3f}]"

    def diff(x: dict) -> str:
        return f"{x['mean']:+.3f} [{x['ci_low']:+.3f}, {x['ci_high']:+.3f}], {x['wins']}/{x['n']} wins"

    for key, label in L3_ROWS.items():
        if f"{key}/g_hat" not in m:
            continue
        lines.append(
            f"| {label} | {cell(m[f'{key}/g_hat'])} | {cell(m[f'{key}/L'])} | {cell(m[f'{key}/random'])} | "
            f"{diff(paired_[f'{key}/g_hat_minus_L'])} | {diff(paired_[f'{key}/g_hat_minus_random'])} |"
        )
    return [*lines, ""]


def write_report(out: Path, seeds: list[int]) -> dict:
    DOCS.mkdir(parents=True, exist_ok=True)
    data: dict = {"seeds": seeds}
    lines = ["# Validation results (generated by `python scripts/experiments/studies.py report`)", ""]
    lines += ["Protocol: `docs/experiments/protocol.md` (version 2). Metric: held-out accuracy, macro over easy,"]
    lines += ["medium and hard (300 questions each), at the end of an equal budget of trained tokens. Differences are"]
    lines += [
        "arm minus comparator in accuracy points, paired by seed (each seed: its own initialisation, warm student"
    ]
    lines += [
        "and data order); 95 % percentile-bootstrap CI (10,000 resamples), Bonferroni-adjusted CI for the secondary"
    ]
    lines += ["comparisons of a hypothesis, Cohen's d_z, wins out of seeds.", ""]
    if (out / "d1" / "results.json").exists():
        data["d1"] = d1_stats(out, seeds)
        lines += d1_section(data["d1"])
        copy_study(out / "d1", "d1")
    if (out / "mixture" / "results.json").exists():
        stats = study_stats(out / "mixture", {"D2": D2, "D3": D3})
        data["mixture"] = stats
        lines += ["## D2 and D3: source mixtures at equal tokens", ""]
        lines += [*arm_table(stats["finals"], stats["sets"]), ""]
        lines += hypothesis_lines("D2", D2[0], stats) + hypothesis_lines("D3", D3[0], stats)
        lines += [
            "Curves (accuracy vs trained tokens, mean and 95 % band over seeds): `studies/mixture/curves.png`.",
            "",
        ]
        copy_study(out / "mixture", "mixture")
    if (out / "lark" / "results.json").exists():
        arms = [a for a, runs in finals(out / "lark").items() if runs]
        hyp = {}
        for mode in ("sample", "loss"):
            if f"chi2_{mode}" in arms and f"random_{mode}" in arms:
                hyp[f"L1 ({mode})"] = (f"chi2_{mode}", f"random_{mode}", ["all", f"hard_{mode}"])
        stats = study_stats(out / "lark", hyp)
        drops = loss_drop(out / "lark", arms)
        stats["L2"] = {
            mode: paired(drops[f"chi2_{mode}"], drops[f"random_{mode}"])
            for mode in ("sample", "loss")
            if f"chi2_{mode}" in drops and f"random_{mode}" in drops
        }
        stats["loss_drop"] = drops
        data["lark"] = stats
        lines += ["## L1 and L2: LARK trajectory selection (K = 4, B = 2) at equal tokens", ""]
        lines += [*arm_table(stats["finals"], stats["sets"]), ""]
        for name in hyp:
            lines += hypothesis_lines(name, hyp[name][0], stats)
        for mode, p in stats["L2"].items():
            lines += [f"L2 ({mode}): training-loss drop (first 3 minus last 3 logged steps), chi2 minus random-B:"]
            reading = "supported" if p["ci95"][0] > 0 else ("refuted" if p["ci95"][1] < 0 else "inconclusive")
            lines += [f"{fmt(p, pct=False)} (nats); {reading}.", ""]
        copy_study(out / "lark", "lark")
    l3_path = out / "l3" / "l3.json"
    if l3_path.exists():
        data["l3"] = json.loads(l3_path.read_text()).get("summary")
        lines += l3_section(data["l3"])
    (DOCS / "results.json").write_text(json.dumps(data, indent=1, default=float))
    (DOCS / "results.md").write_text("\n".join(lines) + "\n")
    return data
