"""MixtureSampler cost against pool size: draws/s, memory, and the cost of weight updates.

    python scripts/bench/sampler.py              # pools of 1e4..1e7 examples x 2, 8, 64 sources (about 10 seconds)
    python scripts/bench/sampler.py --quick      # pools of 1e4 and 1e5 only

The sampler is built directly from synthetic source sizes (equal shares of the pool; nothing is tokenised),
with the demo's global batch (32) by default. For each source count, the samplers of all pool sizes are
built first and then measured interleaved (one round = a few draws on every pool size in turn), so machine
noise hits all sizes alike. Reported per (pool size, sources):

* ``draw_us``: median microseconds per ``draw()`` (one optimiser step's global batch) within a pass;
  ``draws_per_sec`` is its inverse;
* ``first_draw_s``: the first ``draw()``, which builds the first pass of every source it draws from
  (a systematic pass costs one O(M log M) sort; the same cost recurs when a pass is spent);
* ``effective_weights_us``: of which ``effective_source_weights()`` (which sources can still be drawn);
* ``set_source_weights_us``: one ``set_source_weights`` call (what DMC does every refresh);
* ``set_example_weights_us``: a sparse update of ``--update-size`` random examples (what LARK does);
* ``reweight_then_draw_s``: such an update followed by one ``draw()``: a source whose weights change
  starts a new pass, so this is the real per-refresh cost of a LARK update;
* ``build_s`` and ``memory_mb``: construction time and the memory the sampler holds after its first draw
  (tracemalloc, which numpy reports its buffers to), ``bytes_per_example`` the same per example.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
from common import emit, machine, median


def split(n: int, sources: int) -> list[int]:
    base = np.full(sources, n // sources, dtype=np.int64)
    base[: n % sources] += 1
    return base.tolist()


def build(n: int, sources: int, batch: int):
    from lit_distill.data.sampler import MixtureSampler

    tracemalloc.start()
    t0 = time.perf_counter()
    sampler = MixtureSampler(split(n, sources), global_batch_size=batch, seed=0)
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    sampler.draw()  # builds the first passes, which the sampler then holds
    first = time.perf_counter() - t0
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()  # tracing would slow every later allocation
    return sampler, built, first, held


def time_call(fn, reps: int) -> float:
    """Median seconds of ``fn()`` over ``reps`` calls."""
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return median(out)


def bench_sources(sizes: list[int], sources: int, args) -> dict:
    rng = np.random.default_rng(0)
    samplers, rows = {}, {}
    for n in sizes:
        s, built, first, held = build(n, sources, args.batch)
        samplers[n] = s
        rows[n] = {
            "build_s": built,
            "first_draw_s": first,
            "memory_mb": held / 2**20,
            "bytes_per_example": held / n,
            "draw_us": [],
        }
    for s in samplers.values():  # warm-up: first pass bookkeeping, numpy's first-call costs
        for _ in range(3):
            s.draw()
    for _ in range(args.rounds):
        for n, s in samplers.items():
            t0 = time.perf_counter()
            for _ in range(args.draws):
                s.draw()
            rows[n]["draw_us"].append((time.perf_counter() - t0) / args.draws * 1e6)
    for n, s in samplers.items():
        row = rows[n]
        row["draw_us"] = median(row["draw_us"])
        row["draws_per_sec"] = 1e6 / row["draw_us"]
        row["effective_weights_us"] = time_call(s.effective_source_weights, args.reps) * 1e6
        weights = rng.random((args.reps, sources)) + 0.01
        it = iter(weights)
        row["set_source_weights_us"] = time_call(lambda s=s, it=it: s.set_source_weights(next(it)), args.reps) * 1e6
        k = min(args.update_size, n)
        updates = [(rng.choice(n, size=k, replace=False), rng.random(k) + 0.01) for _ in range(args.reps)]
        it2 = iter(updates)
        row["set_example_weights_us"] = time_call(lambda s=s, it=it2: s.set_example_weights(*next(it)), args.reps) * 1e6
        k = min(args.update_size, n)
        idx, w = rng.choice(n, size=k, replace=False), rng.random(k) + 0.02
        t0 = time.perf_counter()
        s.set_example_weights(idx, w)
        s.draw()
        row["reweight_then_draw_s"] = time.perf_counter() - t0
        row["passes_started"] = int(s.passes.sum())
    del samplers
    return {f"{n:.0e}".replace("+0", ""): rows[n] for n in sizes}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pools", default="1e4,1e5,1e6,1e7", help="comma-separated pool sizes")
    parser.add_argument("--sources", default="2,8,64", help="comma-separated source counts")
    parser.add_argument("--batch", type=int, default=32, help="global batch (examples per draw)")
    parser.add_argument("--draws", type=int, default=20, help="draws per pool size per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--reps", type=int, default=20, help="repetitions of each weight update")
    parser.add_argument("--update-size", type=int, default=1000, help="examples per sparse example-weight update")
    parser.add_argument("--quick", action="store_true", help="pools of 1e4 and 1e5, fewer repetitions")
    args = parser.parse_args(argv)
    if args.quick:
        args.pools, args.draws, args.rounds, args.reps = "1e4,1e5", 5, 2, 5
    sizes = [int(float(x)) for x in args.pools.split(",")]
    results = {f"{s}_sources": bench_sources(sizes, int(s), args) for s in args.sources.split(",")}
    emit(
        {
            "benchmark": "sampler",
            "quick": args.quick,
            "global_batch": args.batch,
            "update_size": args.update_size,
            "draws_per_round": args.draws,
            "rounds": args.rounds,
            "results": results,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
