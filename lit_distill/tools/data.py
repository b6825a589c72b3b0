"""``lit-distill data``: validate sources with the training loader and print what is in them.

    lit-distill data configs/demo.yaml                  # every source of a training config
    lit-distill data a.jsonl b.parquet --tokenizer DIR  # files, one source each (named by file stem)

Prints per source: examples, problems, candidates per problem, rows truncated/dropped by the length policy,
answer coverage (rows with a reference answer, and how many trajectories reach it) and token-length
statistics. Exits with status 1 and the loader's message (file, row, field) on the first bad source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lit_distill.data.formatting import FormatError
from lit_distill.data.sources import SourceError
from lit_distill.tools.config import ConfigError, load_run


def _datamodule_from_config(path: str, max_length: int | None):
    """The DistillDataModule a training config describes, read exactly as ``lit-distill fit`` reads it."""
    overrides = [f"--data.max_length={max_length}"] if max_length is not None else []
    return load_run(path, overrides).datamodule


def _datamodule_from_files(files: list[str], tokenizer: str | None, max_length: int | None):
    from lit_distill.data.datamodule import DistillDataModule
    from lit_distill.data.sources import SourceConfig

    if tokenizer is None:
        raise SourceError("give --tokenizer (a tokenizer directory) to validate files without a config")
    sources = [SourceConfig(name=Path(f).stem.replace("/", "_"), path=f) for f in files]
    return DistillDataModule(sources, tokenizer=tokenizer, max_length=max_length or 2048)


def _print_table(pool, max_length: int) -> None:
    head = (
        f"{'source':<16}{'examples':>9}{'problems':>9}{'cand/pb':>8}{'trunc':>7}{'dropped':>8}"
        f"{'w/answer':>9}{'correct':>8}{'tok mean':>9}{'p50':>6}{'p95':>6}{'max':>6}{'resp':>6}"
    )
    print(head)
    print("-" * len(head))
    for s in pool.summary():
        ans = s.with_answer / s.examples
        correct = f"{s.correct / s.with_answer:.0%}" if s.with_answer else "-"
        print(
            f"{s.name:<16}{s.examples:>9}{s.problems:>9}{s.examples / s.problems:>8.2f}{s.truncated:>7}"
            f"{s.dropped:>8}{ans:>9.0%}{correct:>8}{s.tokens_mean:>9.1f}{s.tokens_p50:>6.0f}"
            f"{s.tokens_p95:>6.0f}{s.tokens_max:>6}{s.response_tokens_mean:>6.0f}"
        )
    print(f"\n{len(pool)} examples in {len(pool.names)} sources (max_length {max_length}); 'correct' is the share")
    print("of trajectories whose final answer matches the reference; 'resp' is mean response tokens.")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lit-distill data", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="training config(s) (.yaml) or data files")
    parser.add_argument("--tokenizer", help="tokenizer for files (configs name their own)")
    parser.add_argument("--max-length", type=int, help="override max_length")
    args = parser.parse_args(argv)
    status = 0
    configs = [p for p in args.inputs if p.endswith((".yaml", ".yml"))]
    files = [p for p in args.inputs if p not in configs]
    jobs = [(c, lambda c=c: _datamodule_from_config(c, args.max_length)) for c in configs]
    if files:
        jobs.append((", ".join(files), lambda: _datamodule_from_files(files, args.tokenizer, args.max_length)))
    for name, build in jobs:
        print(f"== {name}")
        try:
            dm = build()
            pool = dm.build_pool()
            prompts = dm.build_prompts()
        except (SourceError, FormatError, ConfigError, ValueError, KeyError, FileNotFoundError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        _print_table(pool, dm.max_length)
        if prompts is not None:
            counts = {n: int((prompts.source == i).sum()) for i, n in enumerate(prompts.names)}
            print("evaluation sets: " + ", ".join(f"{n} ({c} prompts)" for n, c in counts.items()))
        print()
    return status
