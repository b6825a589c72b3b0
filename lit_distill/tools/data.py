"""``lit-distill data``: validate sources with the training loader and print what is in them.

    lit-distill data configs/demo.yaml                  # every source of a training config
    lit-distill data configs/demo.yaml --tokenizer DIR  # ... with another tokenizer
    lit-distill data a.jsonl b.parquet                  # files, one source each (named by file stem)
    lit-distill data a.jsonl --tokenizer DIR            # ... with token-length statistics

Prints per source: the detected column mapping and the ignored columns, then examples, problems, candidates
per problem, rows truncated/dropped by the length policy, answer coverage (rows with a reference answer,
and how many trajectories reach it), token-length statistics and, for a config with a ``dmc`` callback, the
rows its probes hold out of training ('held'). Without a tokenizer (bare files) the schema checks still run
and the length columns say "no tokenizer". Exits with status 1 and a one-line message (file, line, field; or
the config key) on the first bad source or config.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lit_distill.data.formatting import FormatError
from lit_distill.data.sources import SourceConfig, SourceError, describe_source
from lit_distill.errors import one_line
from lit_distill.tools.config import ConfigError, load_run

_ERRORS = (SourceError, FormatError, ConfigError, ValueError, KeyError, OSError, argparse.ArgumentError)


def _datamodule_from_config(path: str, overrides: dict):
    """The DistillDataModule a training config describes, read exactly as ``lit-distill fit`` reads it."""
    if not Path(path).is_file():
        raise SourceError(f"{path}: no such config file")
    args = []
    if overrides.get("max_length") is not None:
        args.append(f"--data.max_length={overrides['max_length']}")
    if overrides.get("tokenizer"):
        args.append(f"--model.student.tokenizer={overrides['tokenizer']}")
    try:
        run = load_run(path, args)
    except ConfigError as e:  # jsonargparse: an unknown key, a wrong type, bad YAML
        cause = e.__cause__ or e
        raise SourceError(f"{path}: {one_line(cause)}{_did_you_mean(str(e))}") from None
    dm = run.datamodule
    if not dm.source_configs:
        raise SourceError(f"{path}: the config has no data.sources")
    dmc = run.callbacks.get("dmc")
    # The split the DMC callback will hold out at fit start, from its own (configured) settings.
    dm.dmc_probe_args = {k: getattr(dmc, k) for k in ("probe_size", "probe_questions", "seed")} if dmc else None
    if dmc is not None and dmc.needs_capability:  # as `fit` checks it: before anything is tokenised
        dm.answers_required = f"DMC variant {dmc.config.variant} (dmc.init_args.dmc.variant)"
    return dm


def _did_you_mean(message: str) -> str:
    import difflib
    import inspect
    import re

    from lit_distill.data.datamodule import DistillDataModule

    match = re.search(r"does not accept option '([^']+)'", message)
    if match is None:
        return ""
    known = list(inspect.signature(DistillDataModule.__init__).parameters)[1:]
    close = difflib.get_close_matches(match.group(1), known, n=1)
    return f" (did you mean 'data.{close[0]}'?)" if close else ""


def _hold_out_probes(pool, args: dict | None) -> None:
    # The same split the DMC callback holds out at fit start, so 'held' is what training will never draw.
    if args:
        for s in range(len(pool.names)):
            pool.hold_out(pool.probe_split(s, args["probe_size"], args["probe_questions"], args["seed"]).held_out)


def _datamodule_from_files(files: list[str], tokenizer: str | None, max_length: int | None):
    from lit_distill.data.datamodule import DistillDataModule

    sources = [SourceConfig(name=Path(f).stem.replace("/", "_"), path=f) for f in files]
    return DistillDataModule(sources, tokenizer=tokenizer, max_length=max_length or 2048)


def _print_mappings(configs: list[SourceConfig]) -> None:
    for cfg in configs:
        for line in describe_source(cfg):
            print(f"{cfg.name}: {line}")


def _print_table(pool, max_length: int) -> None:
    head = (
        f"{'source':<16}{'examples':>9}{'problems':>9}{'cand/pb':>8}{'trunc':>7}{'dropped':>8}"
        f"{'w/answer':>9}{'correct':>8}{'tok mean':>9}{'p50':>6}{'p95':>6}{'max':>6}{'resp':>6}{'held':>6}"
    )
    print(head)
    print("-" * len(head))
    for s in pool.summary():
        ans = s.with_answer / s.examples
        correct = f"{s.correct / s.with_answer:.0%}" if s.with_answer else "-"
        print(
            f"{s.name:<16}{s.examples:>9}{s.problems:>9}{s.examples / s.problems:>8.2f}{s.truncated:>7}"
            f"{s.dropped:>8}{ans:>9.0%}{correct:>8}{s.tokens_mean:>9.1f}{s.tokens_p50:>6.0f}"
            f"{s.tokens_p95:>6.0f}{s.tokens_max:>6}{s.response_tokens_mean:>6.0f}{s.held_out:>6}"
        )
    print(f"\n{len(pool)} examples in {len(pool.names)} sources (max_length {max_length}); 'correct' is the share")
    print("of trajectories whose final answer matches the reference; 'resp' is mean response tokens; 'held' the")
    print("rows the DMC probes hold out of training (whole probe problems; 0 without a dmc callback).")


def _print_schema_only(configs: list[SourceConfig]) -> None:
    """Counts without a tokenizer: every schema check of the loader, no token lengths."""
    import numpy as np

    from lit_distill.data.pool import with_quality
    from lit_distill.data.sources import load_source

    head = f"{'source':<16}{'examples':>9}{'problems':>9}{'cand/pb':>8}{'w/answer':>9}{'correct':>8}  tokens"
    print(head)
    print("-" * len(head))
    for cfg in configs:
        ds = with_quality(load_source(cfg)[0])
        q = np.asarray(ds.data.column("quality").to_numpy())
        flags = np.asarray(ds.data.column("correct").to_numpy())
        q = np.where(flags >= 0, flags, q)  # the data's own correctness flags (correctness: quality) win
        problems = len(set(ds.data.column("problem_id").to_pylist()))
        answered = int((q >= 0).sum())
        correct = f"{(q == 1).sum() / answered:.0%}" if answered else "-"
        print(
            f"{cfg.name:<16}{len(ds):>9}{problems:>9}{len(ds) / problems:>8.2f}{answered / len(ds):>9.0%}"
            f"{correct:>8}  no tokenizer (give --tokenizer DIR for lengths)"
        )


def _report(dm, tokenizer_known: bool) -> None:
    _print_mappings(list(dm.source_configs) + list(dm.eval_configs or []))
    if not tokenizer_known:
        _print_schema_only(list(dm.source_configs))
        return
    pool = dm.build_pool()
    _hold_out_probes(pool, getattr(dm, "dmc_probe_args", None))
    prompts = dm.build_prompts()
    _print_table(pool, dm.max_length)
    if prompts is not None:
        counts = {n: int((prompts.source == i).sum()) for i, n in enumerate(prompts.names)}
        print("evaluation sets: " + ", ".join(f"{n} ({c} prompts)" for n, c in counts.items()))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lit-distill data", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="training config(s) (.yaml) or data files")
    parser.add_argument("--tokenizer", help="tokenizer directory (overrides a config's; optional for files)")
    parser.add_argument("--max-length", type=int, help="override max_length")
    args = parser.parse_args(argv)
    # The datamodule logs one summary line per source; the table below says the same, once.
    logging.getLogger("lit_distill.data.datamodule").setLevel(logging.WARNING)
    status = 0
    configs = [p for p in args.inputs if p.endswith((".yaml", ".yml"))]
    files = [p for p in args.inputs if p not in configs]
    overrides = {"max_length": args.max_length, "tokenizer": args.tokenizer}
    jobs = [(c, lambda c=c: _datamodule_from_config(c, overrides), True) for c in configs]
    if files:
        build = lambda: _datamodule_from_files(files, args.tokenizer, args.max_length)  # noqa: E731
        jobs.append((", ".join(files), build, args.tokenizer is not None))
    for name, build, tokenizer_known in jobs:
        print(f"== {name}")
        try:
            _report(build(), tokenizer_known)
        except _ERRORS as e:
            print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
            status = 1
            continue
        print()
    return status
