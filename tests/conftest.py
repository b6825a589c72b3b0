"""Shared fixtures: a byte-level tokenizer, a tiny Llama saved with save_pretrained, and a small pool.

Everything is built offline; the hub is switched off before any HF library is imported.
"""

from __future__ import annotations

import os
import tempfile

_SESSION_HOME = tempfile.mkdtemp(prefix="lit-distill-tests-")
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    TRANSFORMERS_OFFLINE="1",
    TOKENIZERS_PARALLELISM="false",
    LIT_DISTILL_HOME=os.path.join(_SESSION_HOME, "home"),
    HF_DATASETS_CACHE=os.path.join(_SESSION_HOME, "datasets"),
)

import pytest  # noqa: E402

from helpers import TINY_LLAMA, write_jsonl  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    """Byte-level tokenizer (256 bytes + 3 specials, no merges, no BOS), ChatML template."""
    from lit_distill.demo.assets import build_tokenizer

    path = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer([], vocab_size=259).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from lit_distill.model.student import load_tokenizer

    return load_tokenizer(tokenizer_dir)


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, tokenizer):
    """A 2-layer, hidden-64 Llama saved with its tokenizer: the real from_pretrained path in tests."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), **TINY_LLAMA))
    path = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def pool_dir(tmp_path_factory):
    """The demo generator's four sources and two held-out sets, 12 problems each (3 candidates)."""
    from lit_distill.demo.generator import DemoSpec, build_eval, build_pool

    path = tmp_path_factory.mktemp("pool")
    spec = DemoSpec(problems_per_source=12, eval_per_set=8, seed=1)
    for name, rows in build_pool(spec).items():
        write_jsonl(path / f"{name}.jsonl", rows)
    for name, rows in build_eval(spec).items():
        write_jsonl(path / f"eval_{name}.jsonl", rows)
    return path


@pytest.fixture(autouse=True, scope="session")
def _quiet_datasets():
    import datasets

    datasets.disable_progress_bars()
