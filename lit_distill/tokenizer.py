"""Tokenizer loading, shared by the model (which owns the tokenizer) and the data layer (which is handed it).

Under the CLI the tokenizer is loaded once, by ``DistillModule``, and linked into ``DistillDataModule`` at
instantiation (``cli.py``); a DataModule built by hand may instead be given a path and loads it here.

A GGUF checkpoint carries its tokenizer (vocabulary, merges, chat template) inside the ``.gguf`` file and
usually nothing else in its directory, so a tokenizer path may name the file itself
(``models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf``): it is then read with ``gguf_file=``.
"""

from __future__ import annotations

import os

from lit_distill.errors import MissingModelFolderError, load_local_or_hub
from lit_distill.paths import resolve_path

GGUF_SUFFIX = ".gguf"


def split_gguf(path: str, gguf_file: str | None = None) -> tuple[str, str | None]:
    """(directory or hub id, GGUF file name or None) of a tokenizer/model path.

    ``path`` may be a directory plus ``gguf_file`` or the ``.gguf`` file itself; both give the same pair.
    """
    if gguf_file is None and path.lower().endswith(GGUF_SUFFIX):
        head, tail = os.path.split(path)
        return head or ".", tail
    return path, gguf_file


def load_tokenizer(path: str, gguf_file: str | None = None):
    """Load a tokenizer (``demo://`` paths resolved); use EOS as padding when it has no pad token.

    Args:
        path: Directory or hub id, or a ``.gguf`` file (its embedded tokenizer and chat template are read).
        gguf_file: A GGUF file inside ``path`` to read the tokenizer from.
    """
    from transformers import AutoTokenizer

    directory, gguf = split_gguf(resolve_path(path), gguf_file)
    kwargs = {"gguf_file": gguf} if gguf else {}
    try:
        # A missing local folder is reported as such, not as the hub download from_pretrained then tries.
        tok = load_local_or_hub(AutoTokenizer.from_pretrained, directory, **kwargs)
    except MissingModelFolderError:
        raise
    except (OSError, ValueError) as err:
        hint = ""
        if not gguf and os.path.isdir(directory):
            found = sorted(f for f in os.listdir(directory) if f.lower().endswith(GGUF_SUFFIX))
            if found:  # the reported failure: a GGUF-only directory read without gguf_file
                hint = f"; it holds {', '.join(found)}: set `gguf_file` or name the .gguf file"
        where = f"{path} (gguf_file={gguf})" if gguf else path
        raise ValueError(f"cannot load the tokenizer from {where}{hint}: {err}") from err
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok
