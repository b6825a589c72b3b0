"""Formatting: the response span is exactly the assistant turn (with its end-of-turn tokens), the prefix
property is enforced, and the length policy counts what it truncates or drops."""

from __future__ import annotations

import pytest

from lit_distill.data.formatting import FormatError, tokenise_source
from lit_distill.data.sources import SourceConfig, load_source

from helpers import write_jsonl

CONV = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 4 - 1 - 7?"},
    {"role": "assistant", "content": "4 - 1 = 3\n3 - 7 = -4\n#### -4"},
]


def _source(tmp_path, rows, name="s"):
    path = write_jsonl(tmp_path / f"{name}.jsonl", rows)
    return load_source(SourceConfig(name=name, path=str(path)))


def test_response_span_is_the_assistant_turn(tmp_path, tokenizer):
    ds, files = _source(tmp_path, [{"messages": CONV}])
    tok, stats = tokenise_source(ds, tokenizer, files, max_length=512)
    ids, p = tok[0]["input_ids"], tok[0]["prompt_len"]
    assert stats.kept == 1 and stats.truncated == stats.dropped == 0
    assert tokenizer.decode(ids[p:]) == "4 - 1 = 3\n3 - 7 = -4\n#### -4<|im_end|>\n"
    assert tokenizer.decode(ids[:p]).endswith("<|im_start|>assistant\n")
    # Cross-check with the template's {% generation %} assistant mask.
    enc = tokenizer.apply_chat_template(CONV, return_assistant_tokens_mask=True, return_dict=True)
    mask = enc["assistant_masks"]
    assert enc["input_ids"] == ids
    assert mask.index(1) == p and sum(mask) == len(ids) - p


def test_prefix_violation_is_an_error_naming_the_row(tmp_path, tokenizer):
    # A Qwen3-style template whose generation prompt opens a <think> block the conversation does not have.
    bad = tokenizer.chat_template.replace(
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}",
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n' }}",
    )
    assert bad != tokenizer.chat_template
    tok = tokenizer.__class__.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = bad
    ds, files = _source(tmp_path, [{"messages": CONV}, {"messages": CONV}])
    with pytest.raises(FormatError, match=r"line 1.*not a prefix"):
        tokenise_source(ds, tok, files, max_length=512)


def test_length_policies_count_what_they_do(tmp_path, tokenizer):
    short = {"messages": CONV}
    long = {"messages": [CONV[1], {"role": "assistant", "content": "x" * 300}]}
    ds, files = _source(tmp_path, [short, long, short])
    n_short = len(tokenizer(tokenizer.apply_chat_template(CONV, tokenize=False))["input_ids"])
    tok, stats = tokenise_source(ds, tokenizer, files, max_length=100, overflow="truncate")
    assert (stats.kept, stats.truncated, stats.dropped) == (3, 1, 0)
    assert tok["length"] == [n_short, 100, n_short]
    tok, stats = tokenise_source(ds, tokenizer, files, max_length=100, overflow="drop")
    assert (stats.kept, stats.truncated, stats.dropped) == (2, 0, 1)
    assert len(tok) == 2
    with pytest.raises(FormatError, match=r"line 2: \d+ tokens exceed max_length=100"):
        tokenise_source(ds, tokenizer, files, max_length=100, overflow="error")


def test_truncation_that_leaves_no_response_drops_the_row(tmp_path, tokenizer):
    long_prompt = {"messages": [{"role": "user", "content": "q" * 200}, {"role": "assistant", "content": "ok"}]}
    ds, files = _source(tmp_path, [long_prompt, {"messages": CONV}])
    tok, stats = tokenise_source(ds, tokenizer, files, max_length=150, overflow="truncate")
    assert stats.dropped == 1 and len(tok) == 1


def test_tokenisation_is_cached_by_content(tmp_path, tokenizer):
    ds, files = _source(tmp_path, [{"messages": CONV}])
    a, _ = tokenise_source(ds, tokenizer, files, max_length=512)
    b, _ = tokenise_source(ds, tokenizer, files, max_length=512)
    c, _ = tokenise_source(ds, tokenizer, files, max_length=256)
    assert a._fingerprint == b._fingerprint != c._fingerprint
