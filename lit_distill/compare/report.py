"""Read a study's finished runs back and write ``report.md``, ``results.json`` and ``curves.png``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lit_distill.compare.runner import Study
from lit_distill.compare.stats import mean_band, paired_difference


@dataclass
class RunResult:
    """What one finished run reached: final metrics, steps, tokens and its evaluation curve."""

    arm: str
    seed: int
    metrics: dict[str, float]
    steps: int
    tokens: float | None
    curve: list[tuple[int, float, float | None]]  # (step, metric, tokens at that step or None)


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """A run folder's TensorBoard scalar series, sorted by step (a repeated step keeps its last value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    for f in sorted(run_dir.glob("events.out.tfevents.*")):
        ea = EventAccumulator(str(f), size_guidance={"scalars": 0})
        ea.Reload()
        for tag in ea.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in ea.Scalars(tag))
    return {k: sorted(dict(v).items()) for k, v in out.items()}  # a resumed run may repeat a step: keep the last


def read_run(study: Study, arm: str, seed: int, metric: str) -> RunResult | None:
    run_dir = study.output / "runs" / arm / f"seed{seed}"
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        return None
    summary = json.loads(summary_path.read_text())
    scalars = read_scalars(run_dir)
    tokens = scalars.get("train/tokens", [])
    curve = []
    for step, value in scalars.get(metric, []):
        at = float(np.interp(step, [s for s, _ in tokens], [v for _, v in tokens])) if tokens else None
        curve.append((step, value, at))
    return RunResult(
        arm=arm,
        seed=seed,
        metrics={k: float(v) for k, v in summary["metrics"].items() if k.startswith("val/")},
        steps=int(summary["global_step"]),
        tokens=tokens[-1][1] if tokens else None,
        curve=curve,
    )


def _fmt(x: float, pct: bool) -> str:
    return "n/a" if x is None or math.isnan(x) else (f"{100 * x:+.1f}" if pct else f"{x:+.4f}")


def build_report(study: Study, metric: str, baseline: str, status: dict | None = None) -> dict:
    """Collect every run, pair arms with the baseline by seed, write the three files; return the JSON."""
    arms = [a.name for a in study.arms]
    if baseline not in arms:
        raise ValueError(f"baseline arm {baseline!r} is not one of {arms}")
    results = {a: {s: r for s in study.seeds if (r := read_run(study, a, s, metric)) is not None} for a in arms}
    final = {a: {s: r.metrics.get(metric, math.nan) for s, r in runs.items()} for a, runs in results.items()}
    data: dict = {"metric": metric, "baseline": baseline, "seeds": study.seeds, "max_tokens": study.max_tokens}
    data["arms"] = {}
    for a in arms:
        values = np.array(list(final[a].values()), dtype=float)
        entry = {
            "runs": {str(s): {**r.metrics, "steps": r.steps, "tokens": r.tokens} for s, r in results[a].items()},
            "mean": float(np.nanmean(values)) if len(values) else math.nan,
            "sd": float(np.nanstd(values, ddof=1)) if len(values) > 1 else math.nan,
        }
        if a != baseline and final[a] and final[baseline]:
            entry["vs_baseline"] = paired_difference(final[a], final[baseline]).to_dict()
        data["arms"][a] = entry
    if status:
        data["status"] = {f"{a}/seed{s}": v for (a, s), v in status.items()}
    study.output.mkdir(parents=True, exist_ok=True)
    (study.output / "results.json").write_text(json.dumps(data, indent=2))
    (study.output / "report.md").write_text(_markdown(data, study))
    _figure(results, metric, study.output / "curves.png")
    return data


def _markdown(data: dict, study: Study) -> str:
    metric, baseline = data["metric"], data["baseline"]
    pct = metric.startswith("val/accuracy")
    budget = f"{study.max_tokens:,} trained tokens per run" if study.max_tokens else "the configs' step budget"
    lines = [
        f"# Comparison: {', '.join(data['arms'])}",
        "",
        f"Metric `{metric}` at the end of each run ({budget}); seeds {data['seeds']} (each seed sets the student's "
        "initialisation and the data order). Differences are paired by seed, against "
        f"`{baseline}`, with 95% percentile-bootstrap confidence intervals"
        + (" (in percentage points)." if pct else "."),
        "",
        "| arm | runs | mean | sd | diff vs baseline [95% CI] | d_z | wins/losses | mean steps | mean tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for a, e in data["arms"].items():
        runs = e["runs"].values()
        steps = np.mean([r["steps"] for r in runs]) if runs else math.nan
        toks = [r["tokens"] for r in runs if r["tokens"] is not None]
        scale = 100 if pct else 1
        mean = f"{scale * e['mean']:.1f}" if pct else f"{e['mean']:.4f}"
        sd = f"{scale * e['sd']:.1f}" if pct else f"{e['sd']:.4f}"
        if "vs_baseline" in e:
            d = e["vs_baseline"]
            diff = f"{_fmt(d['mean'], pct)} [{_fmt(d['ci_low'], pct)}, {_fmt(d['ci_high'], pct)}]"
            dz, wl = _fmt(d["effect_size"], False), f"{d['wins']}/{d['losses']}"
        else:
            diff, dz, wl = "(baseline)", "", ""
        tok = f"{np.mean(toks):,.0f}" if toks else "n/a"
        lines.append(f"| {a} | {len(e['runs'])} | {mean} | {sd} | {diff} | {dz} | {wl} | {steps:.0f} | {tok} |")
    failed = {k: v for k, v in data.get("status", {}).items() if v.startswith("failed")}
    if failed:
        lines += ["", "Failed runs (left out of the table):", *[f"- {k}: {v}" for k, v in failed.items()]]
    lines += ["", "Curves (mean and 95% bootstrap band over seeds): `curves.png`. Raw numbers: `results.json`.", ""]
    return "\n".join(lines)


def _figure(results: dict[str, dict[int, RunResult]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    use_tokens = all(p[2] is not None for runs in results.values() for r in runs.values() for p in r.curve)
    for arm, runs in results.items():
        curves = [r.curve for r in runs.values() if r.curve]
        if not curves:
            continue
        xs = [np.array([p[2] if use_tokens else p[0] for p in c], dtype=float) for c in curves]
        # Seeds are evaluated at different token counts: average them on a grid where every seed has a value
        # (between the latest first and the earliest last evaluation), so the mean never jumps between subsets.
        lo, hi = max(x[0] for x in xs), min(x[-1] for x in xs)
        grid = np.linspace(lo, hi, 25) if hi > lo else np.array([hi])
        rows = [
            np.interp(grid, x, [p[1] for p in c], left=np.nan, right=np.nan) for x, c in zip(xs, curves, strict=True)
        ]
        mean, low, high = mean_band(rows)
        ax.plot(grid, mean, marker="o", ms=3, label=f"{arm} (n={len(curves)})")
        ax.fill_between(grid, low, high, alpha=0.2)
    ax.set_xlabel("trained tokens" if use_tokens else "optimiser step")
    ax.set_ylabel(metric)
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
