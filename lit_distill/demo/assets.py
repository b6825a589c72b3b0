"""The embedded default's files: the demo pool, the held-out sets and an offline tokenizer.

Configs name them with ``demo://`` paths (``demo://pool/concise.jsonl``, ``demo://tokenizer``). The first
use builds them under ``$LIT_DISTILL_HOME`` (default ``~/.cache/lit-distill``) in a few seconds; later uses
find them there. Building is deterministic, takes a file lock (several DDP ranks may ask at once) and
writes to a temporary folder that is renamed into place, so a half-written folder is never used.

Layout::

    pool/{concise,verbose,noisy,hard}.jsonl   training sources (record schema, K = 3 candidates/problem)
    eval/{easy,hard}.jsonl                    held-out problems with reference answers
    testbed/pool/<source>.jsonl               the validation testbed (demo/testbed.py): 8 sources, K = 4
    testbed/eval/{easy,medium,hard}.jsonl     its held-out sets, 300 problems each
    tokenizer/                                byte-level BPE (digits split), ChatML template with
                                              {% generation %} tags, saved with save_pretrained
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path

from lit_distill.demo.generator import DemoSpec, build_eval, build_pool
from lit_distill.demo.testbed import TestbedSpec, build_testbed_eval, build_testbed_pool

SCHEME = "demo://"
VERSION = "3"  # bump when the generator or the tokenizer recipe changes
VOCAB_SIZE = 512
# ChatML. The {% generation %} markers let transformers return assistant-token masks; the assistant
# turn (with its <|im_end|> and newline) is exactly what formatting.py trains on.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>\n' }}{% endgeneration %}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def home() -> Path:
    return Path(os.environ.get("LIT_DISTILL_HOME", Path.home() / ".cache" / "lit-distill"))


def demo_root() -> Path:
    return home() / f"demo-v{VERSION}"


def resolve_path(path: str) -> str:
    """Map ``demo://x`` to the built demo assets (building them on first use); other paths pass through."""
    if not isinstance(path, str) or not path.startswith(SCHEME):
        return os.path.expanduser(path) if isinstance(path, str) else path
    return str(ensure_demo_assets() / path[len(SCHEME) :])


def build_tokenizer(texts: list[str], vocab_size: int = VOCAB_SIZE):
    """Train a small byte-level BPE with one token per digit (so arithmetic is learnable digit by digit)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
        model_max_length=4096,
    )


def _write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")


def build_demo_assets(root: Path, spec: DemoSpec | None = None) -> Path:
    """Write the demo pool, held-out sets and tokenizer into ``root`` (which must not exist yet)."""
    spec = spec or DemoSpec()
    pool, evals = build_pool(spec), build_eval(spec)
    for name, records in pool.items():
        _write_jsonl(root / "pool" / f"{name}.jsonl", records)
    for name, records in evals.items():
        _write_jsonl(root / "eval" / f"{name}.jsonl", records)
    testbed = TestbedSpec(seed=spec.seed)
    for name, records in build_testbed_pool(testbed).items():
        _write_jsonl(root / "testbed" / "pool" / f"{name}.jsonl", records)
    for name, records in build_testbed_eval(testbed).items():
        _write_jsonl(root / "testbed" / "eval" / f"{name}.jsonl", records)
    # The tokenizer is trained on the demo pool only, so the testbed leaves the demo's tokenizer unchanged.
    texts = [m["content"] for recs in pool.values() for r in recs for m in r["messages"]]
    # Role names appear once in every templated sequence; weight them so BPE merges them too.
    texts += ["user\n", "assistant\n"] * len(texts)
    build_tokenizer(texts).save_pretrained(root / "tokenizer")
    manifest = {"version": VERSION, "spec": spec.__dict__, "sources": {k: len(v) for k, v in pool.items()}}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


def ensure_demo_assets(root: Path | None = None) -> Path:
    """Return the demo asset folder, building it once (process-safe) if it is missing."""
    root = root or demo_root()
    if (root / "manifest.json").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "manifest.json").exists():
            tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
            try:
                build_demo_assets(tmp)
                if root.exists():
                    shutil.rmtree(root)
                tmp.rename(root)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return root
