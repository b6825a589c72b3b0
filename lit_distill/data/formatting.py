"""Formatting: records -> token ids and the response span, through the tokenizer's chat template.

The response span follows the LARK reference exactly (methods.md 1.2), so that training, DMC probes and
LARK scoring see the same tokens:

* ``full_text``   = chat template over all turns, ``add_generation_prompt=False``;
* ``prompt_text`` = chat template over the non-assistant turns, ``add_generation_prompt=True``;
* both tokenised with a plain ``tokenizer(text)`` (default ``add_special_tokens``, so a BOS may appear);
* the response is token positions ``[P, T)`` with ``P = len(prompt_ids)``: the assistant turn including the
  template's end-of-turn tokens (``<|im_end|>`` and the newline after it for ChatML).

We assert ``full_ids[:P] == prompt_ids``; a template or BPE merge that breaks it is an error naming the row,
because a shifted span would silently train on the wrong tokens.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass

import datasets

from lit_distill.data.readers import unit

log = logging.getLogger(__name__)

OVERFLOW_POLICIES = ("truncate", "drop", "error")
_FORMAT_VERSION = "1"  # bump when the tokenised columns change, to invalidate datasets' cache


class FormatError(ValueError):
    """A record cannot be tokenised consistently; the message names the source, file and row."""


@dataclass(frozen=True)
class FormatStats:
    """What the length policy did to one source (nothing is dropped silently)."""

    kept: int
    truncated: int
    dropped: int


def tokenizer_fingerprint(tokenizer) -> str:
    """A stable hash of everything that decides the token ids: vocabulary, merges, template, specials."""
    h = hashlib.sha1()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    h.update((backend.to_str() if backend is not None else repr(tokenizer.get_vocab())).encode())
    h.update(str(tokenizer.chat_template).encode())
    h.update(repr(sorted(tokenizer.special_tokens_map.items())).encode())
    h.update(type(tokenizer).__name__.encode())
    return h.hexdigest()[:16]


def chat_texts(tokenizer, messages: list[dict[str, str]]) -> tuple[str, str]:
    """(full_text, prompt_text) of one conversation, as the LARK reference builds them."""
    full = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    prompt_turns = [t for t in messages if t["role"] != "assistant"]
    prompt = tokenizer.apply_chat_template(prompt_turns, tokenize=False, add_generation_prompt=True)
    return full, prompt


def _where(batch: dict, i: int, files: list[str]) -> str:
    file = files[batch["file"][i]]
    if "line" not in batch:  # records from an older loader: 0-based row
        return f"source '{batch['source'][i]}', {file}, row {batch['row'][i] + 1}"
    return f"source '{batch['source'][i]}', {file}, {unit(file)} {batch['line'][i]}"


def _tokenise_batch(batch: dict, *, tokenizer, max_length: int, overflow: str, files: list[str]) -> dict:
    if tokenizer.chat_template is None:
        raise FormatError("the tokenizer has no chat template; set one (see README: bring your own model)")
    fulls, prompts = zip(*(chat_texts(tokenizer, m) for m in batch["messages"]), strict=True)
    full_ids = tokenizer(list(fulls))["input_ids"]
    prompt_ids = tokenizer(list(prompts))["input_ids"]
    out: dict[str, list] = {"input_ids": [], "prompt_len": [], "status": []}
    for i, (ids, pids) in enumerate(zip(full_ids, prompt_ids, strict=True)):
        p = len(pids)
        if ids[:p] != pids:
            raise FormatError(
                f"{_where(batch, i, files)}: the tokenised prompt is not a prefix of the tokenised "
                "conversation (the chat template rewrites earlier turns, or BPE merges across the "
                "prompt/response boundary); the response span would be wrong"
            )
        status = "ok"
        if len(ids) > max_length:
            if overflow == "error":
                raise FormatError(f"{_where(batch, i, files)}: {len(ids)} tokens exceed max_length={max_length}")
            status = "truncated" if overflow == "truncate" else "dropped"
            ids = ids[:max_length]
        if len(ids) - p < 2:  # the reference needs >= 2 response tokens (methods.md 1.2)
            status = "dropped"
        out["input_ids"].append(ids)
        out["prompt_len"].append(p)
        out["status"].append(status)
    return out


def _tokenise_prompts(batch: dict, *, tokenizer, max_length: int, files: list[str]) -> dict:
    prompts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True) for m in batch["messages"]]
    ids = tokenizer(prompts)["input_ids"]
    for i, row in enumerate(ids):
        if len(row) > max_length:
            raise FormatError(f"{_where(batch, i, files)}: prompt of {len(row)} tokens exceeds {max_length}")
    return {"input_ids": ids, "prompt_len": [len(r) for r in ids]}


def tokenise_source(
    ds: datasets.Dataset,
    tokenizer,
    files: list[str],
    max_length: int,
    overflow: str = "truncate",
    num_proc: int | None = None,
) -> tuple[datasets.Dataset, FormatStats]:
    """Tokenise a source's trajectories; apply the length policy and count what it did.

    Adds ``input_ids`` (int32), ``prompt_len`` and ``length``; drops the rows the policy drops.
    Cached by datasets under a fingerprint of (records, tokenizer, max_length, overflow).
    """
    if overflow not in OVERFLOW_POLICIES:
        raise ValueError(f"overflow must be one of {OVERFLOW_POLICIES}, got {overflow!r}")
    key = f"{ds._fingerprint}-{tokenizer_fingerprint(tokenizer)}-{max_length}-{overflow}-{_FORMAT_VERSION}"
    fp = hashlib.sha1(key.encode()).hexdigest()[:16]
    tok = ds.map(
        _tokenise_batch,
        batched=True,
        batch_size=256,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "overflow": overflow, "files": files},
        num_proc=num_proc if num_proc and len(ds) > 20_000 else None,
        new_fingerprint=fp,
        desc="tokenise",
        features=datasets.Features(
            {
                **ds.features,
                "input_ids": datasets.List(datasets.Value("int32")),
                "prompt_len": datasets.Value("int32"),
                "status": datasets.Value("string"),
            }
        ),
    )
    counts = Counter(tok["status"])
    stats = FormatStats(kept=len(tok) - counts["dropped"], truncated=counts["truncated"], dropped=counts["dropped"])
    # Lengths before filtering: datasets skips map() on an empty table, which would leave no `length` column.
    tok = tok.map(
        lambda ids: {"length": [len(x) for x in ids]},
        input_columns="input_ids",
        batched=True,
        new_fingerprint=f"{fp}-len",
        desc="lengths",
    )
    if stats.dropped:
        tok = tok.filter(lambda s: s != "dropped", input_columns="status", new_fingerprint=f"{fp}-kept")
    return tok, stats


def tokenise_prompts(ds: datasets.Dataset, tokenizer, files: list[str], max_length: int) -> datasets.Dataset:
    """Tokenise evaluation prompts (no assistant turn) with the generation prompt appended."""
    fp = hashlib.sha1(
        f"{ds._fingerprint}-{tokenizer_fingerprint(tokenizer)}-{max_length}-p{_FORMAT_VERSION}".encode()
    ).hexdigest()[:16]
    return ds.map(
        _tokenise_prompts,
        batched=True,
        batch_size=256,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_length, "files": files},
        new_fingerprint=fp,
        desc="tokenise prompts",
    )
