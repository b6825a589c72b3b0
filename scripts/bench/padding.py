"""Padding vs packing on the demo pool: share of padded tokens and the real-token throughput of each.

    python scripts/bench/padding.py              # demo student, 4 micro-batches of 32 per step (about 1.5 minutes)
    python scripts/bench/padding.py --quick      # smoke mode: a tiny student, a few micro-batches

Three layouts of the same examples, built by the real data path (``MixtureSampler`` + ``DistillDataModule
.batch_for``: the demo pool, balanced mixture, max_length 384) for a global batch of ``--accumulate``
micro-batches (as with gradient accumulation or several ranks):

* ``padding``: each micro-batch right-padded to its longest sequence (``packing: false``);
* ``grouped``: padding, with ``group_by_length: true`` (the global batch sorted by length before it is cut
  into micro-batches; with one micro-batch per step it changes nothing, hence the accumulation);
* ``packing``: each micro-batch packed into rows of 384 tokens (``packing: true``, the default).

Reported: ``padded_share`` (padding / all positions fed to the model, over ``--stats-steps`` global batches),
and the training throughput in real tokens/s (padding excluded) of the demo student (configs/demo.yaml's
model, fp32, ``Student.forward`` + ``reduce_loss`` + backward + AdamW, no Lightning), measured interleaved:
one round = the same global batch trained in each layout in turn; ``speedup_packing_over_padding`` is the
median of the per-round ratios. ``exactness`` checks that packing changes no number: on the same micro-batch
with random per-example loss weights, the per-sequence CE sums, the weighted loss and the gradients of the
packed and padded layouts (fp32; tests/data/test_datamodule.py and tests/tools/test_lark_tools.py test the
same property for token accounting and scoring).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import REPO, demo_datamodule, emit, machine, median, quiet, set_threads

LAYOUTS = ("padding", "grouped", "packing")


def demo_model_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["model"]["student"]["config"]


def global_batches(dm, steps: int, accumulate: int, seed: int) -> list[dict[str, list[dict]]]:
    """``steps`` global batches, each as {layout: its micro-batches}; every layout holds the same examples."""
    from lit_distill.data.sampler import MixtureSampler

    pool, mb = dm.pool, dm.micro_batch_size
    kw = dict(global_batch_size=mb * accumulate, seed=seed, source_weights=dm.initial_source_weights())
    plain = MixtureSampler(pool.sizes, **kw)
    grouped = MixtureSampler(pool.sizes, lengths=pool.length, group_by_length=True, micro_batch_size=mb, **kw)
    out = []
    for _ in range(steps):
        p, g = plain.draw(), grouped.draw()
        assert np.array_equal(np.sort(p.indices), np.sort(g.indices))  # same examples, another arrangement
        step = {}
        for layout, plan, packing in (("padding", p, False), ("grouped", g, False), ("packing", p, True)):
            dm.packing = packing
            step[layout] = [dm.batch_for(plan.micro_batch(a, 0, 1, mb)) for a in range(accumulate)]
        out.append(step)
    return out


def positions(batch: dict) -> tuple[int, int]:
    """(real tokens, positions fed to the model) of one micro-batch."""
    return int(batch["input_tokens"]), batch["input_ids"].numel()


class LayoutTrainer:
    """Forward + backward + AdamW of the lit-distill statistics path, one model per layout (same init)."""

    def __init__(self, config: dict, vocab: int) -> None:
        import torch

        from lit_distill.model.student import Student, StudentConfig, build_causal_lm

        self.student = Student(build_causal_lm(StudentConfig(config=config, tokenizer="x"), vocab_size=vocab))
        self.opt = torch.optim.AdamW(self.student.parameters(), lr=2e-3)

    def step(self, micro_batches: list[dict]) -> float:
        import torch

        from lit_distill.data.collate import student_inputs
        from lit_distill.model.losses import reduce_loss

        t0 = time.perf_counter()
        for b in micro_batches:
            loss = reduce_loss(self.student(**student_inputs(b)), b["loss_weight"]) / len(micro_batches)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0


def exactness(config: dict, vocab: int, padded: dict, packed: dict) -> dict:
    """Max differences between the padded and packed layouts of one micro-batch (same model)."""
    import torch

    from lit_distill.data.collate import student_inputs
    from lit_distill.model.losses import reduce_loss

    t = LayoutTrainer(config, vocab)
    out = {}
    grads, ce, losses = [], [], {}
    for name, b in (("padding", padded), ("packing", packed)):
        t.student.zero_grad(set_to_none=True)
        stats = t.student(**student_inputs(b))
        for mode in ("reference", "paper"):
            kw = dict(global_tokens=b["global_tokens"], global_examples=b["global_examples"])
            losses[(name, mode)] = reduce_loss(stats, b["loss_weight"], mode=mode, **kw).item()
        reduce_loss(stats, b["loss_weight"]).backward()
        ce.append(stats.ce_sum.detach())
        grads.append(torch.cat([p.grad.flatten() for p in t.student.parameters()]))
    out["ce_sum_max_rel_diff"] = float(((ce[0] - ce[1]).abs() / ce[0].abs().clamp(min=1e-12)).max())
    for mode in ("reference", "paper"):
        a, b = losses[("padding", mode)], losses[("packing", mode)]
        out[f"loss_{mode}_rel_diff"] = abs(a - b) / abs(a)
    out["grad_max_abs_diff_over_max_abs_grad"] = float((grads[0] - grads[1]).abs().max() / grads[0].abs().max())
    out["loss_weights_range"] = [float(padded["loss_weight"].min()), float(padded["loss_weight"].max())]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--micro-batch-size", type=int, default=32, help="examples per micro-batch (demo: 32)")
    parser.add_argument("--accumulate", type=int, default=4, help="micro-batches per global batch")
    parser.add_argument("--stats-steps", type=int, default=50, help="global batches for the padding statistics")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved throughput rounds (global batches)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see common.set_threads)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: tiny student, few batches")
    args = parser.parse_args(argv)
    if args.quick:
        args.micro_batch_size, args.accumulate, args.stats_steps, args.rounds = 8, 2, 3, 1
    quiet()
    set_threads(args.threads)
    # Quick: 300 rows per source are plenty for 3 global batches of 16 (tokenising all 12,000 took ~8 s).
    dm = demo_datamodule(micro_batch_size=args.micro_batch_size, max_samples=300 if args.quick else None)
    dm.setup("fit")
    rng = np.random.default_rng(0)
    dm.set_loss_weights(np.arange(len(dm.pool)), rng.uniform(0.1, 3.0, len(dm.pool)))  # non-uniform weights
    steps = global_batches(dm, max(args.stats_steps, args.rounds + 1), args.accumulate, seed=0)

    share = {}
    for layout in LAYOUTS:
        real = fed = 0
        for step in steps[: args.stats_steps]:
            for b in step[layout]:
                r, f = positions(b)
                real, fed = real + r, fed + f
        share[layout] = {"padded_share": 1 - real / fed, "positions_per_real_token": fed / real}

    config = demo_model_config()
    if args.quick:
        config = {**config, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    vocab = len(dm.tokenizer)
    trainers = {layout: LayoutTrainer(config, vocab) for layout in LAYOUTS}
    warm = steps[-1]
    for layout, t in trainers.items():
        t.step(warm[layout])
    times: dict[str, list[float]] = {k: [] for k in LAYOUTS}
    real_tokens = []
    for step in steps[: args.rounds]:
        real_tokens.append(sum(int(b["input_tokens"]) for b in step["packing"]))
        for layout, t in trainers.items():
            times[layout].append(t.step(step[layout]))
    throughput = {
        layout: {"real_tokens_per_sec": median([n / s for n, s in zip(real_tokens, v, strict=True)])}
        for layout, v in times.items()
    }
    ratio = {
        f"speedup_packing_over_{other}": median([a / b for a, b in zip(times[other], times["packing"], strict=True)])
        for other in ("padding", "grouped")
    }
    first = steps[0]
    checks = exactness(config, vocab, first["padding"][0], first["packing"][0])
    emit(
        {
            "benchmark": "padding",
            "quick": args.quick,
            "micro_batch_size": args.micro_batch_size,
            "accumulate": args.accumulate,
            "max_length": dm.max_length,
            "stats_global_batches": args.stats_steps,
            "rounds": args.rounds,
            "model": {k: config[k] for k in ("hidden_size", "num_hidden_layers", "intermediate_size")},
            "layouts": {k: {**share[k], **throughput[k]} for k in LAYOUTS},
            **ratio,
            "exactness": checks,
            "round_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
