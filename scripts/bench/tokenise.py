"""Tokenisation throughput of ``formatting.tokenise_source``: records/s with 1 and 2 processes, and the cache.

    python scripts/bench/tokenise.py             # 24000 synthetic trajectories, num_proc 1 vs 2 (about 1.5 minutes)
    python scripts/bench/tokenise.py --quick     # 1500 trajectories, num_proc 1 only

The pool is the demo generator's four sources (``DemoSpec(problems_per_source=N/12)``, 3 candidates per
problem) written to one JSONL file and loaded as one source with ``load_source``; it is tokenised with the
demo tokenizer (ChatML template, max_length 384). ``tokenise_source`` passes ``num_proc`` to ``datasets.map``
only for sources of more than 20000 rows, hence the default N = 24000 (``num_proc_applied`` says whether it
was). Each measurement runs in its own process with a fresh ``HF_DATASETS_CACHE`` directory, alternating
num_proc 1 and 2 (1 2 1 2 ...); reported per num_proc (medians over rounds):

* ``cold_s`` / ``records_per_sec``: the first ``tokenise_source`` call (chat template, tokenizer, length
  policy, the ``length`` column) on a fresh cache;
* ``cached_same_process_s``: a second call in the same process, served from the datasets cache;
* ``cached_new_process_s``: a new process on the same cache (what a second ``lit-distill fit`` pays),
  and ``load_s``: ``load_source`` (JSON parsing and validation, cached too on the second run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import OFFLINE, emit, machine, median

MAX_LENGTH = 384


def write_pool(path: Path, n: int) -> None:
    from lit_distill.demo.generator import DemoSpec, build_pool

    pool = build_pool(DemoSpec(problems_per_source=-(-n // 12)))
    records = [r for recs in pool.values() for r in recs]
    with open(path, "w", encoding="utf-8") as fh:
        for r in records[:n]:
            fh.write(json.dumps(r) + "\n")


def worker(file: str, num_proc: int, twice: bool) -> None:
    """One measurement (in its own process, on the cache that HF_DATASETS_CACHE names)."""
    from common import quiet

    quiet()
    from lit_distill.data.formatting import tokenise_source
    from lit_distill.data.sources import SourceConfig, load_source
    from lit_distill.model.student import load_tokenizer

    tok = load_tokenizer("demo://tokenizer")
    t0 = time.perf_counter()
    ds, files = load_source(SourceConfig(name="bench", path=file), num_proc)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out, stats = tokenise_source(ds, tok, files, MAX_LENGTH, "truncate", num_proc)
    first = time.perf_counter() - t0
    result = {"load_s": load_s, "tokenise_s": first, "rows": len(out), "truncated": stats.truncated}
    if twice:
        t0 = time.perf_counter()
        tokenise_source(ds, tok, files, MAX_LENGTH, "truncate", num_proc)
        result["again_s"] = time.perf_counter() - t0
    print(json.dumps(result), flush=True)


def run_worker(file: Path, num_proc: int, cache: Path, twice: bool) -> dict:
    env = {**os.environ, **OFFLINE, "HF_DATASETS_CACHE": str(cache)}
    cmd = [sys.executable, __file__, "--worker", str(file), "--num-proc", str(num_proc)]
    cmd += ["--twice"] if twice else []
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=24_000, help="synthetic trajectories (> 20000 for num_proc)")
    parser.add_argument("--num-procs", default="1,2", help="comma-separated num_proc values, interleaved")
    parser.add_argument("--rounds", type=int, default=3, help="fresh-cache measurements per num_proc")
    parser.add_argument("--quick", action="store_true", help="1500 records, num_proc 1, one round")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--num-proc", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--twice", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.num_proc, args.twice)
        return
    if args.quick:
        args.records, args.num_procs, args.rounds = 1500, "1", 1
    procs = [int(x) for x in args.num_procs.split(",")]
    rows: dict[int, dict[str, list[float]]] = {p: {} for p in procs}
    with tempfile.TemporaryDirectory(prefix="bench-tokenise-") as tmp:
        pool = Path(tmp) / "pool.jsonl"
        write_pool(pool, args.records)
        for r in range(args.rounds):
            for p in procs:
                cache = Path(tmp) / f"cache-{p}-{r}"
                cold = run_worker(pool, p, cache, twice=True)
                warm = run_worker(pool, p, cache, twice=False)
                for key, value in (
                    ("cold_s", cold["tokenise_s"]),
                    ("cached_same_process_s", cold["again_s"]),
                    ("cached_new_process_s", warm["tokenise_s"]),
                    ("load_s", cold["load_s"]),
                    ("load_cached_s", warm["load_s"]),
                ):
                    rows[p].setdefault(key, []).append(value)
                rows[p]["rows"] = cold["rows"]
    results = {}
    for p, row in rows.items():
        out = {k: median(v) for k, v in row.items() if k != "rows"}
        out["records_per_sec"] = args.records / out["cold_s"]
        out["cold_s_rounds"] = row["cold_s"]
        results[f"num_proc_{p}"] = out
    summary = {}
    if 1 in procs and 2 in procs:
        summary["speedup_num_proc_2"] = median(
            [a / b for a, b in zip(rows[1]["cold_s"], rows[2]["cold_s"], strict=True)]
        )
    emit(
        {
            "benchmark": "tokenise",
            "quick": args.quick,
            "records": args.records,
            "max_length": MAX_LENGTH,
            "num_proc_applied": args.records > 20_000,
            "rounds": args.rounds,
            "results": results,
            **summary,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
