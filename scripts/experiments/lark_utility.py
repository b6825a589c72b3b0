"""L3 (docs/experiments/protocol.md): does LARK's g-hat predict the realised per-trajectory loss drop?

    python scripts/experiments/lark_utility.py --seeds 10 11 12 13 14 --out runs/studies/l3
    python scripts/experiments/lark_utility.py --seeds 0 --problems 20 --out /tmp/l3   # a quick pilot

For each seed, from its warm student (``runs/studies/warm/.../seed{seed}/checkpoints/last.ckpt``, built as
``lit-distill score dmc --ckpt`` builds it from ``configs/experiments/testbed.yaml``):

1. a seeded, source-stratified draw of problems from the testbed sources whose K = 4 candidates differ in
   style (``STYLED``), all candidates of each;
2. the package's own LARK scoring of every candidate (``tools.score_lark``: the same tokenisation, forward
   pass and ``write_scores``, whose file is read back), giving L, Brier, rho and per-problem g-hat;
3. the realised utility of each trajectory: from a fresh copy of the warm student, ``steps`` optimiser steps
   on that one trajectory (by default a fresh AdamW at the config's peak lr, with its weight decay and
   gradient clipping, on the training loss; ``--optimizer adamw_warm`` / ``sgd`` are the alternatives of
   ``Settings``); the drop (before - after) of the mean response NLL of it and of the problem's other
   candidates (transfer), all measured in one eval forward pass of the problem;
4. statistics: within-problem Spearman (K = 4) of g-hat, L alone and a seeded random score with the drop,
   averaged over problems, and the pooled Spearman with the relative drop (drop / L: g-hat and the absolute
   drop both grow with L), with 95 % bootstrap CIs over problems; across seeds, means and the paired
   differences g-hat - L and g-hat - random with bootstrap CIs over seeds. Secondary targets: the relative
   drop and the problem drop (mean drop over all K candidates after training on one) within problems.

Writes ``out/seed{seed}/l3.json`` (raw per-trajectory arrays; reused when present with the same settings and
an unchanged warm checkpoint) and ``out/l3.json`` (every seed's raw arrays and statistics plus the summary),
and returns the summary.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from lit_distill.compare.stats import bootstrap_mean_ci, paired_difference
from lit_distill.scoring.stats import spearman

REPO = Path(__file__).resolve().parents[2]
BASE = REPO / "configs" / "experiments" / "testbed.yaml"
WARM = str(REPO / "runs" / "studies" / "warm" / "runs" / "warm" / "seed{seed}" / "checkpoints" / "last.ckpt")
# Testbed sources whose four candidates come from different teacher styles (the others repeat one teacher).
STYLED = ("easy", "easy_verbose", "medium", "medium_style2", "hard")
K = 4
SCORES = ("g_hat", "L", "random")
RESAMPLES = 2000  # bootstrap resamples over problems (the pooled Spearman is re-ranked per resample)


@dataclass(frozen=True)
class Settings:
    """What the realised utility depends on; a cached seed is reused only if these match.

    Args:
        problems: Problems drawn per seed (stratified over ``STYLED``, all K candidates each).
        steps: Optimiser steps on each trajectory alone.
        optimizer: ``adamw`` (the training optimiser, fresh state: its first steps move every parameter by
            about lr whatever the gradient's size), ``adamw_warm`` (AdamW with the warm run's second moments
            and step count from the checkpoint, first moments zeroed: the warm run's momentum is not this
            trajectory's) or ``sgd`` (plain SGD, the regime g-hat is derived in).
        lr: Learning rate; None = the config's peak ``model.optimizer.lr`` (constant, no warm-up).
        clip: Clip the gradient norm at the config's ``trainer.gradient_clip_val`` as training does.
        top_k: Brier top-K of the LARK scoring (``score lark``'s default).
        config: The training config the student, data and optimiser settings are read from.
    """

    problems: int = 150
    steps: int = 3
    optimizer: str = "adamw"
    lr: float | None = None
    clip: bool = True
    top_k: int = 50
    config: str = str(BASE)


# ------------------------------------------------------------------------------------------- loading
def load_student(config: str, ckpt: str) -> tuple:
    """``(module, run, step)``: the config's DistillModule with the checkpoint's student (as ``score dmc`` builds
    it) and the checkpoint's global step."""
    from lit_distill.checkpoint import load_trained_student
    from lit_distill.tools.config import load_run

    run = load_run([config])
    module = run.model
    module.configure_model()
    step = load_trained_student(module, ckpt)
    module.student.float()  # fp32 throughout
    return module, run, step


def draw_pools(run, seed: int, problems: int) -> list:
    """Per styled source, a LarkPool of the drawn problems' rows (all K), problems split evenly over sources."""
    from lit_distill.tools.score_lark import LarkPool, load_pool

    configs = {c.name: c for c in run.datamodule.source_configs}
    rng = np.random.default_rng([seed, 31])
    pools = []
    for i, name in enumerate(STYLED):
        pool = load_pool(configs[name])
        ids = list(dict.fromkeys(pool.problem_ids))  # problems in file order
        count = problems // len(STYLED) + (i < problems % len(STYLED))
        chosen = set(rng.choice(len(ids), size=min(count, len(ids)), replace=False).tolist())
        keep_ids = {ids[j] for j in chosen}
        rows = [r for r, p in enumerate(pool.problem_ids) if p in keep_ids]
        pools.append(
            LarkPool(
                source=pool.source,
                records=pool.records.select(rows),
                files=pool.files,
                problem_ids=[pool.problem_ids[r] for r in rows],
                candidate_ids=pool.candidate_ids[rows],
            )
        )
    return pools


def lark_scores(module, pool, max_length: int, top_k: int, path: Path):
    """Score a pool exactly as ``lit-distill score lark`` does and read its output file back."""
    from lit_distill.tools.score_lark import score_shard, tokenise_pool, write_scores

    data = tokenise_pool(pool, module.tokenizer, max_length)
    sums = np.zeros((len(pool.problem_ids), 3), dtype=np.float64)
    sums[data.rows] = score_shard(
        module.student,
        data.tokens,
        data.prompt_len,
        data.length,
        rank=0,
        world_size=1,
        batch_size=1,  # the reference's batch size
        top_k=top_k,
        chunk_size=module.chunk_size,
        pad_id=module.tokenizer.pad_token_id,
        pack_length=None,
        device=torch.device("cpu"),
    )
    write_scores(str(path), pool, data.status, sums)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return data, rows


# ---------------------------------------------------------------------------------------- realised utility
def _batch(data, items: list[int], pad_id: int) -> dict:
    from lit_distill.data.collate import collate_train

    lengths, prompt = data.length[items], data.prompt_len[items]
    return collate_train(
        [data.tokens[i] for i in items],
        prompt,
        pad_id=pad_id,
        source=np.zeros(len(items), dtype=np.int64),
        index=np.asarray(items),
        loss_weight=np.ones(len(items), dtype=np.float32),
        global_tokens=int((lengths - prompt).sum()),
        global_examples=len(items),
    )


def _nll(module, batch: dict) -> np.ndarray:
    return module.score(batch, top_k=None).ce_mean.numpy()


def realised_drops(
    module, data, groups: list[list[int]], settings: Settings, lr: float, clip: float | None, warm_opt: dict | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(before [n, K], after [n, K, K])`` for ``groups`` (each problem's tokenised items).

    ``before[p, j]``: mean response NLL of candidate j at the warm student; ``after[p, k, j]``: the same after
    ``steps`` steps on candidate k alone, from the warm weights and a fresh optimiser (the student's weights
    are the warm ones again on return).
    """
    from lit_distill.model.optim import SchedulerConfig, build_optimizer

    student = module.student
    warm = {k: v.detach().clone() for k, v in student.state_dict().items()}
    opt_cfg = module.optimizer_config
    pad = module.tokenizer.pad_token_id
    size = len(groups[0]) if groups else K
    if any(len(items) != size for items in groups):
        raise ValueError(f"every problem needs the same number of candidates, got {sorted({len(g) for g in groups})}")
    before = np.zeros((len(groups), size))
    after = np.zeros((len(groups), size, size))
    for p, items in enumerate(groups):
        problem_batch = _batch(data, items, pad)
        student.load_state_dict(warm)  # the previous problem's last trajectory left its steps in the weights
        before[p] = _nll(module, problem_batch)
        for k, item in enumerate(items):
            student.load_state_dict(warm)
            if settings.optimizer in ("adamw", "adamw_warm"):
                # The package's AdamW (param groups, weight decay, betas); its schedule is not stepped: constant lr.
                const = SchedulerConfig(warmup_steps=0, decay="constant")
                optimizer = build_optimizer(student, opt_cfg, const, settings.steps)["optimizer"]
                if settings.optimizer == "adamw_warm":
                    # load_state_dict keeps tensors that need no cast: copy, or every trajectory would share them.
                    optimizer.load_state_dict(copy.deepcopy(warm_opt))
                    for state in optimizer.state.values():
                        state["exp_avg"].zero_()
                for group in optimizer.param_groups:
                    group["lr"] = lr
            elif settings.optimizer == "sgd":
                optimizer = torch.optim.SGD([q for q in student.parameters() if q.requires_grad], lr=lr)
            else:
                raise ValueError(f"optimizer must be adamw, adamw_warm or sgd, got {settings.optimizer!r}")
            batch = _batch(data, [item], pad)
            student.train()
            for _ in range(settings.steps):
                optimizer.zero_grad(set_to_none=True)
                loss, _ = module.batch_loss(batch)  # the training loss, as training_step computes it
                loss.backward()
                if clip:
                    torch.nn.utils.clip_grad_norm_(student.parameters(), float(clip))
                optimizer.step()
            after[p, k] = _nll(module, problem_batch)
    student.load_state_dict(warm)
    return before, after


def _mtime(path: str) -> float | None:
    return os.path.getmtime(path) if os.path.exists(path) else None


def run_seed(seed: int, out: Path, settings: Settings, warm: str = WARM) -> dict:
    """Raw per-trajectory arrays of one seed (cached in ``out/seed{seed}/l3.json``)."""
    cache = out / f"seed{seed}" / "l3.json"
    if cache.exists():
        raw = json.loads(cache.read_text())
        # A warm run that was re-run (or still running when cached) leaves a newer checkpoint: recompute.
        if raw.get("settings") == asdict(settings) and raw.get("ckpt_mtime") == _mtime(warm.format(seed=seed)):
            return raw
        print(f"seed {seed}: cached settings or checkpoint differ, recomputing ({cache})", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    started = time.perf_counter()
    module, run, step = load_student(settings.config, warm.format(seed=seed))
    max_length = run.datamodule.max_length
    lr = settings.lr if settings.lr is not None else module.optimizer_config.lr
    clip = run.config.get("trainer.gradient_clip_val") if settings.clip else None  # Lightning clips by norm
    warm_opt = None
    if settings.optimizer == "adamw_warm":
        from lit_distill.checkpoint.read import read_checkpoint

        warm_opt = read_checkpoint(warm.format(seed=seed))["optimizer_states"][0]
    problem, source, cand, loss, brier, rho, g_hat, groups, datas = [], [], [], [], [], [], [], [], []
    t0 = time.perf_counter()
    for pool in draw_pools(run, seed, settings.problems):
        scores_file = cache.parent / f"scores_{pool.source.name}.jsonl"
        data, rows = lark_scores(module, pool, max_length, settings.top_k, scores_file)
        where = {r: i for i, r in enumerate(data.rows.tolist())}  # pool row -> tokenised item
        by_problem: dict[str, list[int]] = {}
        for r, row in enumerate(rows):
            by_problem.setdefault(row["problem_id"], []).append(r)
        for pid, pool_rows in by_problem.items():
            if len(pool_rows) != K or any(rows[r]["g_hat"] is None or r not in where for r in pool_rows):
                print(f"seed {seed}: {pool.source.name}/{pid} skipped (not all {K} candidates scored)", file=sys.stderr)
                continue
            groups.append((len(datas), [where[r] for r in pool_rows]))
            for r in pool_rows:
                row = rows[r]
                problem.append(f"{pool.source.name}/{pid}")
                source.append(pool.source.name)
                cand.append(row["candidate_id"])
                loss.append(row["L"])
                brier.append(row["brier"])
                rho.append(row["rho"])
                g_hat.append(row["g_hat"])
        datas.append(data)
    score_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    before, after = np.zeros((0, K)), np.zeros((0, K, K))
    for d, data in enumerate(datas):
        mine = [items for dd, items in groups if dd == d]
        b, a = realised_drops(module, data, mine, settings, lr, clip, warm_opt)
        before, after = np.concatenate([before, b]), np.concatenate([after, a])
    drop_matrix = before[:, None, :] - after  # [p, k trained, j measured]
    own = np.einsum("pkk->pk", drop_matrix)
    transfer = (drop_matrix.sum(axis=2) - own) / (K - 1)
    raw = {
        "seed": seed,
        "settings": asdict(settings),
        "ckpt": warm.format(seed=seed),
        "ckpt_step": step,
        "ckpt_mtime": _mtime(warm.format(seed=seed)),
        "lr": lr,
        "gradient_clip_val": clip,
        "problem": problem,
        "source": source,
        "candidate_id": cand,
        "L": loss,
        "brier": brier,
        "rho": rho,
        "g_hat": g_hat,
        "random": np.random.default_rng([seed, 97]).random(len(problem)).tolist(),
        "nll_before": before.ravel().tolist(),
        "drop": own.ravel().tolist(),
        "transfer_drop": transfer.ravel().tolist(),
        "drop_matrix": drop_matrix.tolist(),
        # The eval forward of the drop (padded batch of a problem) vs the scoring pass (batch 1): same model.
        "max_abs_L_mismatch": float(np.max(np.abs(before.ravel() - np.asarray(loss)))) if loss else 0.0,
        "seconds": {
            "scoring": score_seconds,
            "realised": time.perf_counter() - t0,
            "total": time.perf_counter() - started,
        },
    }
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(raw))
    tmp.replace(cache)
    return raw


# ------------------------------------------------------------------------------------------------ statistics
def _ci(values: np.ndarray) -> dict:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"mean": float("nan"), "ci": [float("nan"), float("nan")], "n": 0}
    low, high = bootstrap_mean_ci(v, resamples=RESAMPLES)
    return {"mean": float(v.mean()), "ci": [low, high], "n": len(v)}


def _pooled(score: np.ndarray, target: np.ndarray, n_problems: int, seed: int) -> dict:
    """Pooled Spearman over all trajectories with a bootstrap CI that resamples whole problems."""
    s, t = score.reshape(n_problems, K), target.reshape(n_problems, K)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_problems, (RESAMPLES, n_problems))
    boot = np.array([spearman(s[i].ravel(), t[i].ravel()) for i in draws])
    boot = boot[np.isfinite(boot)]  # resamples whose score or target is constant have no Spearman
    low, high = np.quantile(boot, [0.025, 0.975]) if len(boot) else (np.nan, np.nan)
    return {"value": spearman(s.ravel(), t.ravel()), "ci": [float(low), float(high)]}


def seed_statistics(raw: dict) -> dict:
    """Within-problem and pooled Spearmans of each score with the realised drops of one seed."""
    n = len(raw["problem"]) // K
    drop = np.asarray(raw["drop"]).reshape(n, K)
    loss = np.asarray(raw["L"]).reshape(n, K)
    targets = {
        "drop": drop,  # the primary target (protocol section 4)
        "relative_drop": drop / loss,
        "problem_drop": np.asarray(raw["drop_matrix"]).mean(axis=2),  # mean drop over all K after training on k
    }
    out: dict = {"problems": n, "within": {}, "pooled_relative": {}}
    per_problem: dict[str, dict[str, np.ndarray]] = {}
    for tname, target in targets.items():
        per_problem[tname] = {}
        for sname in SCORES:
            score = np.asarray(raw[sname], dtype=np.float64).reshape(n, K)
            per_problem[tname][sname] = np.array([spearman(score[p], target[p]) for p in range(n)])
        out["within"][tname] = {s: _ci(v) for s, v in per_problem[tname].items()}
        for other in ("L", "random"):  # paired per problem: the same problem's drops, two scores
            d = per_problem[tname]["g_hat"] - per_problem[tname][other]
            out["within"][tname][f"g_hat_minus_{other}"] = _ci(d)
    rel = (drop / loss).ravel()
    for sname in SCORES:
        out["pooled_relative"][sname] = _pooled(np.asarray(raw[sname], dtype=np.float64), rel, n, raw["seed"])
    out["mean_drop"] = float(drop.mean())
    out["mean_transfer_drop"] = float(np.mean(raw["transfer_drop"]))
    out["per_problem_within_drop"] = {s: v.tolist() for s, v in per_problem["drop"].items()}
    return out


def summarise(stats: dict[int, dict]) -> dict:
    """Across seeds: the mean of each per-seed value (CI over seeds) and the paired differences of g-hat."""
    metrics = {
        **{f"within_{t}/{s}": ("within", t, s) for t in ("drop", "relative_drop", "problem_drop") for s in SCORES},
        **{f"pooled_relative/{s}": ("pooled_relative", None, s) for s in SCORES},
    }

    def value(st: dict, key: tuple) -> float:
        kind, target, score = key
        return st[kind][target][score]["mean"] if kind == "within" else st[kind][score]["value"]

    per_seed = {name: {seed: value(st, key) for seed, st in stats.items()} for name, key in metrics.items()}
    summary: dict = {"seeds": sorted(stats), "metrics": {}, "paired": {}, "per_seed": {}}
    for seed, st in stats.items():  # CIs over problems, for reading one seed (a pilot) on its own
        summary["per_seed"][seed] = {
            "problems": st["problems"],
            "mean_drop": st["mean_drop"],
            "mean_transfer_drop": st["mean_transfer_drop"],
            "within_drop": st["within"]["drop"],
            "pooled_relative": st["pooled_relative"],
        }
    for name, values in per_seed.items():
        summary["metrics"][name] = {"per_seed": values, **_ci(np.array(list(values.values())))}
    for prefix in [f"within_{t}" for t in ("drop", "relative_drop", "problem_drop")] + ["pooled_relative"]:
        ghat = per_seed[f"{prefix}/g_hat"]
        for other in ("L", "random"):
            pd = paired_difference(ghat, per_seed[f"{prefix}/{other}"])
            summary["paired"][f"{prefix}/g_hat_minus_{other}"] = pd.to_dict()
    return summary


def l3(seeds: list[int], out: Path, problems: int = 150, warm: str = WARM, **settings) -> dict:
    """Run (or reuse) every seed, write ``out/l3.json`` and return the across-seed summary.

    Args:
        seeds: Seeds whose warm students are measured.
        out: Output folder (per-seed caches and ``l3.json``).
        problems: Problems drawn per seed.
        warm: Checkpoint path pattern with ``{seed}``.
        settings: Other ``Settings`` fields (steps, optimizer, lr, top_k, config).
    """
    torch.set_num_threads(1)
    cfg = Settings(problems=problems, **settings)
    out = Path(out)
    raws = {seed: run_seed(seed, out, cfg, warm) for seed in seeds}
    stats = {seed: seed_statistics(raw) for seed, raw in raws.items()}
    summary = summarise(stats)
    seeds_out = {s: {"raw": raws[s], "stats": stats[s]} for s in seeds}
    payload = {"settings": asdict(cfg), "summary": summary, "seeds": seeds_out}
    out.mkdir(parents=True, exist_ok=True)
    (out / "l3.json").write_text(json.dumps(payload, indent=1, allow_nan=True))
    return summary


def _print(summary: dict) -> None:
    for seed, st in summary["per_seed"].items():
        drops = f"mean drop {st['mean_drop']:+.4f}, mean transfer drop {st['mean_transfer_drop']:+.4f}"
        print(f"seed {seed}: {st['problems']} problems, {drops}; within-problem Spearman with the drop:")
        for name, m in st["within_drop"].items():
            print(f"  {name:<20} {m['mean']:+.3f}  [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]  over {m['n']} problems")
        for name, m in st["pooled_relative"].items():
            print(f"  pooled rel. {name:<8} {m['value']:+.3f}  [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]")
    for name, m in summary["metrics"].items():
        print(f"{name:<32} {m['mean']:+.3f}  [{m['ci'][0]:+.3f}, {m['ci'][1]:+.3f}]  per seed {m['per_seed']}")
    for name, d in summary["paired"].items():
        print(f"{name:<44} {d['mean']:+.3f}  [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]  n={d['n']}")


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[10, 11, 12, 13, 14])
    p.add_argument("--out", type=Path, default=REPO / "runs" / "studies" / "l3")
    p.add_argument("--problems", type=int, default=150)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--optimizer", choices=("adamw", "adamw_warm", "sgd"), default="adamw")
    p.add_argument("--no-clip", action="store_true", help="do not clip the gradient norm")
    p.add_argument("--lr", type=float, default=None, help="default: the config's model.optimizer.lr")
    p.add_argument("--warm", default=WARM, help="warm checkpoint path pattern with {seed}")
    p.add_argument("--config", default=str(BASE))
    args = p.parse_args(argv)
    summary = l3(
        args.seeds, args.out, args.problems, args.warm, steps=args.steps, optimizer=args.optimizer, lr=args.lr,
        clip=not args.no_clip,
        config=args.config,
    )  # fmt: skip
    _print(summary)


if __name__ == "__main__":
    main(sys.argv[1:])
