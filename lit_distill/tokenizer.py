"""Tokenizer loading, shared by the model (which owns the tokenizer) and the data layer (which is handed it).

Under the CLI the tokenizer is loaded once, by ``DistillModule``, and linked into ``DistillDataModule`` at
instantiation (``cli.py``); a DataModule built by hand may instead be given a path and loads it here.
"""

from __future__ import annotations

from lit_distill.errors import load_local_or_hub
from lit_distill.paths import resolve_path


def load_tokenizer(path: str):
    """Load a tokenizer (``demo://`` paths resolved); use EOS as padding when it has no pad token."""
    from transformers import AutoTokenizer

    tok = load_local_or_hub(AutoTokenizer.from_pretrained, resolve_path(path))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok
