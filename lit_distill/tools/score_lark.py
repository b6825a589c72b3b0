"""``lit-distill score lark``: per-trajectory LARK statistics (L, Brier, ρ, ĝ) of a pool under a student.

Examples::

    lit-distill score lark --model runs/student0 --data pool.jsonl --output scores.jsonl
    lit-distill score lark --model M --config configs/demo.yaml --source concise --output scores.jsonl
    lit-distill score lark --model M --data pool.jsonl --output s.jsonl --batch-size 8 --packing
    lit-distill score lark --model M --data pool.jsonl --output s.jsonl --devices 2 --accelerator gpu

The pool is read by the training loader (``load_source``), so field mapping and errors are the training
pipeline's, and tokenised by ``tokenise_source``: response span [P, T), full and prompt texts truncated
independently at ``--max-length``, as the LARK reference does (docs/methods.md 1.2). The forward pass is
``Student.forward`` (chunked LM head, float32 logits, per-sequence sums), in eval mode without gradients.

Output: one JSON object per input row, in input order::

    {"problem_id", "candidate_id", "teacher", "L", "brier", "rho", "g_hat", "n_tokens", "status"}

``problem_id`` is the file's id without the namespace the loader adds. ``status`` is ``ok``, ``truncated``
(scored on its first ``--max-length`` tokens) or ``skipped`` (fewer than 2 response tokens after truncation:
the reference skips such rows; here they stay in the file with null statistics and are left out of their
problem's ĝ sums). Non-finite values (ĝ of a problem with ΣL ≈ 0) are written as null.

With ``--devices N > 1`` N processes (Lightning Fabric, DDP) each score an even shard of the rows; their
float64 sums are all-reduced and rank 0 computes ĝ and writes the file, identical to a single process.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np

from lit_distill.data.formatting import FormatError, tokenise_source
from lit_distill.data.pool import TokenStore, _chunks
from lit_distill.data.sources import SourceConfig, SourceError, load_source

log = logging.getLogger(__name__)

DEFAULT_MAX_LENGTH = 32768  # the reference's --max_length (docs/methods.md 1.7)
STATUS_SKIPPED = "skipped"


# ----------------------------------------------------------------------------------- the pool (shared)


def add_pool_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data FILE`` or ``--config CONFIG.yaml --source NAME`` (also used by ``select lark``)."""
    group = parser.add_argument_group("pool (one of --data, or --config with --source)")
    group.add_argument("--data", help="the pool: a JSON/JSONL/parquet/csv file, directory or glob")
    group.add_argument("--config", help="a training config; the pool is its data.sources entry named --source")
    group.add_argument("--source", help="name of the source in the config's data.sources")


def source_config(args: argparse.Namespace) -> SourceConfig:
    """The pool's SourceConfig, from ``--data`` or from a training config's ``data.sources``."""
    if (args.data is None) == (args.config is None):
        raise SourceError("give exactly one of --data or --config (with --source)")
    if args.data is not None:
        if args.source is not None:
            raise SourceError("--source selects a source of --config; it cannot be used with --data")
        name = Path(args.data).stem.replace("/", "_") or "pool"
        return SourceConfig(name=name, path=args.data)
    if args.source is None:
        raise SourceError(f"--config {args.config} needs --source NAME (one of its data.sources)")
    from lit_distill.tools.config import ConfigError, load_run

    try:  # read exactly as `lit-distill fit` reads it (composition, init_args, types)
        configured = load_run(args.config).datamodule.source_configs
    except ConfigError as e:
        raise SourceError(str(e)) from None
    names = [c.name for c in configured]
    matches = [c for c in configured if c.name == args.source]
    if not matches:
        raise SourceError(f"{args.config}: data.sources has no source named {args.source!r}; it has {names}")
    return matches[0]


@dataclass(frozen=True)
class LarkPool:
    """A pool loaded by the training loader, with the ids LARK joins on.

    Attributes:
        source: The SourceConfig it was loaded with.
        records: The loader's rows in input order (schema columns plus ``row``/``file`` provenance).
        files: The files ``records['file']`` indexes.
        problem_ids: Problem id of each row as in the file, as a string (the loader's namespace removed).
        candidate_ids: Candidate id of each row.
    """

    source: SourceConfig
    records: datasets.Dataset
    files: list[str]
    problem_ids: list[str]
    candidate_ids: np.ndarray


def load_pool(cfg: SourceConfig) -> LarkPool:
    """Load a pool with ``load_source``; raise if a (problem_id, candidate_id) key appears twice."""
    records, files = load_source(cfg)
    prefix = f"{cfg.problem_namespace or cfg.name}/"  # what _normalise prepends to every problem id
    problem_ids = [p[len(prefix) :] for p in records["problem_id"]]
    candidate_ids = np.asarray(records["candidate_id"], dtype=np.int64)
    seen: dict[tuple[str, int], int] = {}
    for i, key in enumerate(zip(problem_ids, candidate_ids.tolist(), strict=True)):
        if key in seen:
            raise SourceError(
                f"source '{cfg.name}': (problem_id={key[0]!r}, candidate_id={key[1]}) appears twice "
                f"({_where(records, files, seen[key])} and {_where(records, files, i)}); LARK keys rows by it"
            )
        seen[key] = i
    return LarkPool(cfg, records, files, problem_ids, candidate_ids)


def _where(records, files: list[str], i: int) -> str:
    return f"{files[records[i]['file']]} row {records[i]['row']}"


# ------------------------------------------------------------------------------------------ scoring


@dataclass(frozen=True)
class Tokenised:
    """The pool after ``tokenise_source``.

    Attributes:
        status: Per pool row: ``ok``, ``truncated`` or ``skipped`` (< 2 response tokens, not scored).
        tokens: Token ids of the rows to score.
        prompt_len: P of each row to score.
        length: T of each row to score.
        rows: Pool row of each row to score.
    """

    status: list[str]
    tokens: TokenStore
    prompt_len: np.ndarray
    length: np.ndarray
    rows: np.ndarray


def tokenise_pool(pool: LarkPool, tokenizer, max_length: int) -> Tokenised:
    """Tokenise with the training formatter (truncating, as the reference does) and keep every row's fate."""
    tok, _ = tokenise_source(pool.records, tokenizer, pool.files, max_length, overflow="truncate")
    # tokenise_source filters out the rows with < 2 response tokens; map the survivors back by provenance.
    index = {(f, r): i for i, (f, r) in enumerate(zip(pool.records["file"], pool.records["row"], strict=True))}
    rows = np.array([index[(f, r)] for f, r in zip(tok["file"], tok["row"], strict=True)], dtype=np.int64)
    status = [STATUS_SKIPPED] * len(pool.problem_ids)
    for i, s in zip(rows.tolist(), tok["status"], strict=True):
        status[i] = s
    return Tokenised(
        status=status,
        # The pool's own memory-mapped token access: a pool of billions of tokens is never copied into lists.
        tokens=TokenStore(_chunks(tok, "input_ids")),
        prompt_len=np.asarray(tok["prompt_len"], dtype=np.int64),
        # datasets skips map() on an empty table, so when every row is skipped there is no 'length' column.
        length=np.asarray(tok["length"] if len(tok) else [], dtype=np.int64),
        rows=rows,
    )


def score_shard(
    student,
    seqs: Sequence[np.ndarray],
    prompt_len: np.ndarray,
    lengths: np.ndarray,
    *,
    rank: int,
    world_size: int,
    batch_size: int,
    top_k: int,
    chunk_size: int,
    pad_id: int,
    pack_length: int | None,
    device,
) -> np.ndarray:
    """This rank's (ce_sum, n_tokens, brier_sum) rows of a float64 [n, 3] array; other rows are zero.

    The scorer the callbacks use (``lit_distill.scorer.score_items``: sorted by length, even shards, padded
    duplicates never written), fed batches collated exactly as training collates them.
    """
    import torch

    from lit_distill.batch import student_inputs
    from lit_distill.data.collate import collate_train
    from lit_distill.model.student import eval_mode
    from lit_distill.scorer import score_items

    def make_batch(items: np.ndarray) -> dict:
        return collate_train(
            [seqs[i] for i in items],
            prompt_len[items],
            pad_id=pad_id,
            source=np.zeros(len(items), dtype=np.int64),
            index=items,
            loss_weight=np.ones(len(items), dtype=np.float32),
            global_tokens=int((lengths[items] - prompt_len[items]).sum()),
            global_examples=len(items),
            pack_length=pack_length,
        )

    def forward(batch: dict):
        inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in student_inputs(batch).items()}
        return student(**inputs, top_k=top_k, chunk_size=chunk_size)

    with eval_mode(student):
        return score_items(
            lengths, make_batch, forward, batch_size=batch_size, rank=rank, world_size=world_size, reduce=None
        )


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def write_scores(path: str, pool: LarkPool, status: list[str], sums: np.ndarray) -> None:
    """Compute L, Brier, ρ, ĝ from the per-row (ce_sum, n_tokens, brier_sum) and write one JSON line per row."""
    from lit_distill.scoring.lark import score_pool

    n_tokens = sums[:, 1]
    scored = np.array([s != STATUS_SKIPPED for s in status]) & (n_tokens > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.where(scored, sums[:, 0] / n_tokens, np.nan)
        brier = np.where(scored, sums[:, 2] / n_tokens, np.nan)
    # NaN marks an unscored row: score_pool leaves it out of its problem's sums, as the reference does.
    scores = score_pool(pool.problem_ids, loss, brier)
    teachers = list(pool.records["teacher"])
    tmp = f"{path}.tmp"
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", encoding="utf-8") as fh:
        for i, pid in enumerate(pool.problem_ids):
            row = {
                "problem_id": pid,
                "candidate_id": int(pool.candidate_ids[i]),
                "teacher": teachers[i],
                "L": _finite_or_none(loss[i]),
                "brier": _finite_or_none(brier[i]),
                "rho": _finite_or_none(scores.rho[i]),
                "g_hat": _finite_or_none(scores.g_hat[i]),
                "n_tokens": int(n_tokens[i]),
                "status": status[i],
            }
            fh.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
    os.replace(tmp, path)  # a reader never sees a half-written score file


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit-distill score lark",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="save_pretrained directory of the student (at its init)")
    parser.add_argument("--tokenizer", help="tokenizer directory; default: the model directory")
    add_pool_arguments(parser)
    parser.add_argument("--output", required=True, help="scores file to write (JSONL)")
    parser.add_argument("--top-k", type=int, default=50, help="Brier top-K (default 50, the reference's)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="model dtype")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="truncate tokens (32768)")
    parser.add_argument("--batch-size", type=int, default=1, help="sequences per forward pass (1, the reference)")
    parser.add_argument("--packing", action="store_true", help="pack a batch's sequences into rows, no padding")
    parser.add_argument("--pack-length", type=int, help="packed row length (default --max-length)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="response tokens per LM-head chunk")
    parser.add_argument("--devices", type=int, default=1, help="processes (one per device)")
    parser.add_argument("--accelerator", choices=("cpu", "gpu", "auto"), default="auto")
    return parser


def _check_args(args: argparse.Namespace, argv: list[str]) -> None:
    for name in ("top_k", "max_length", "batch_size", "chunk_size", "devices"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.pack_length is not None and not args.packing:
        raise ValueError("--pack-length needs --packing")
    # Fabric's DDP launcher re-runs sys.argv in the new processes: that must be this very command.
    if args.devices > 1 and list(sys.argv[-len(argv) :] if argv else []) != list(argv):
        raise ValueError("--devices > 1 re-launches the command line; run it through `lit-distill score lark`")


def main(argv: list[str]) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        _check_args(args, argv)
        cfg = source_config(args)
    except (SourceError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from lightning.fabric import Fabric

    fabric = Fabric(accelerator=args.accelerator, devices=args.devices, strategy="ddp" if args.devices > 1 else "auto")
    fabric.launch()
    try:
        return _run(fabric, args, cfg)
    except (SourceError, FormatError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(fabric, args: argparse.Namespace, cfg: SourceConfig) -> int:
    import torch

    from lit_distill.model.student import Student, StudentConfig, build_causal_lm, load_tokenizer

    student_cfg = StudentConfig(path=args.model, tokenizer=args.tokenizer, dtype=args.dtype)
    # Rank 0 loads and tokenises first so the others read datasets' cache instead of racing to write it.
    # Errors are re-raised after the block: leaving it early on one rank would desynchronise its barriers.
    error = None
    with fabric.rank_zero_first():
        try:
            tokenizer = load_tokenizer(student_cfg.tokenizer_path)
            pool = load_pool(cfg)
            data = tokenise_pool(pool, tokenizer, args.max_length)
        except (SourceError, FormatError, OSError, ValueError) as e:
            error = e
    if error is not None:
        raise error
    student = Student(build_causal_lm(student_cfg)).to(fabric.device)
    max_pos = getattr(student.config, "max_position_embeddings", None)
    if fabric.global_rank == 0 and max_pos and len(data.length) and data.length.max() > max_pos:
        log.warning("some sequences are longer than the model's max_position_embeddings=%d", max_pos)
    start = time.perf_counter()
    shard_sums = score_shard(
        student,
        data.tokens,
        data.prompt_len,
        data.length,
        rank=fabric.global_rank,
        world_size=fabric.world_size,
        batch_size=args.batch_size,
        top_k=args.top_k,
        chunk_size=args.chunk_size,
        pad_id=tokenizer.pad_token_id,
        pack_length=(args.pack_length or args.max_length) if args.packing else None,
        device=fabric.device,
    )
    # One SUM of float64 sums: every row was written by exactly one rank, the others hold zeros.
    total = fabric.all_reduce(torch.from_numpy(shard_sums).to(fabric.device), reduce_op="sum")
    total = total.cpu().numpy().astype(np.float64)
    seconds = time.perf_counter() - start
    if fabric.global_rank == 0:
        sums = np.zeros((len(pool.problem_ids), 3), dtype=np.float64)
        sums[data.rows] = total
        write_scores(args.output, pool, data.status, sums)
        _print_summary(args, fabric, pool, data, seconds)
    # No barrier after the all-reduce: the other ranks are done, and a write error on rank 0 cannot hang them.
    return 0


def _print_summary(args, fabric, pool: LarkPool, data: Tokenised, seconds: float) -> None:
    tokens, status = int(data.length.sum()), data.status
    print(
        f"scored {len(data.rows)} rows of {len(set(pool.problem_ids))} problems "
        f"({status.count('truncated')} truncated at {args.max_length} tokens); "
        f"skipped {status.count(STATUS_SKIPPED)} (< 2 response tokens)"
    )
    print(
        f"{tokens} tokens in {seconds:.2f} s ({tokens / max(seconds, 1e-9):.0f} tokens/s) on "
        f"{fabric.world_size} x {fabric.device.type}, dtype {args.dtype}, top_k {args.top_k}, "
        f"batch {args.batch_size}{' packed' if args.packing else ''}"
    )
    print(f"wrote {args.output}")
