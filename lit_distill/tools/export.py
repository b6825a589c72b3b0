"""``lit-distill export``: write a training checkpoint's student as a Hugging Face ``save_pretrained`` directory.

Examples::

    # single-device / DDP run (a last.ckpt file)
    lit-distill export --ckpt runs/lit-distill/version_0/checkpoints/last.ckpt --output hf/student

    # FSDP2 run: the sharded checkpoint is a directory; it is consolidated on one process, no GPUs needed
    lit-distill export --ckpt runs/lit-distill/version_3/checkpoints/last.ckpt --output hf/student --dtype bfloat16

    # LoRA run: the adapter plus its base model reference (default), or a plain merged model
    lit-distill export --ckpt .../last.ckpt --output hf/adapter
    lit-distill export --ckpt .../last.ckpt --output hf/merged --merge-lora

The result loads with ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` (or, for an
adapter, ``PeftModel.from_pretrained`` on its base); ``lit_distill_export.json`` records the source checkpoint.
The student is rebuilt from the checkpoint's saved config, so its tokenizer (and pretrained base, if any) must
still be where training loaded them from.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lit_distill.model.student import DTYPES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lit-distill export",
        description="Write a checkpoint's student (and tokenizer) as a save_pretrained directory.",
    )
    parser.add_argument("--ckpt", required=True, help="last.ckpt file, or an FSDP2 sharded checkpoint directory")
    parser.add_argument("--output", required=True, help="directory to create")
    parser.add_argument(
        "--merge-lora", action="store_true", help="LoRA runs: write a merged plain model instead of the adapter"
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="cast the weights (default: as trained)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it holds a previous export")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from lit_distill.export import export_checkpoint

    try:
        out = export_checkpoint(args.ckpt, args.output, args.merge_lora, args.dtype, overwrite=args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as err:
        print(f"lit-distill export: error: {err}", file=sys.stderr)
        return 1
    print(f"Exported {args.ckpt} to {out}:")
    for path in sorted(Path(out).rglob("*")):
        if path.is_file():
            print(f"  {path.relative_to(out)}  ({path.stat().st_size / 1e6:.2f} MB)")
    return 0
