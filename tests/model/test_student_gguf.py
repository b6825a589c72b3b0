"""A GGUF student loads tokenizer (with chat template) and model from ``path`` + ``gguf_file`` alone.

The 98 MB SmolLM2 GGUF is not needed here: transformers' loaders are monkeypatched to record what they are
asked for; tests/test_smollm2.py (``-m slow``) exercises the real file.
"""

from __future__ import annotations

import datasets
import pytest
import torch
import transformers

from lit_distill.data.formatting import tokenise_source
from lit_distill.model.student import StudentConfig, build_causal_lm, load_tokenizer
from lit_distill.tokenizer import split_gguf

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2-135M-Instruct's chat template, as embedded in its GGUF file: a default system prompt, no
# {% generation %} tags, so the response span must come from the prefix rule.
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class FakeLM:
    """What from_pretrained returns for a GGUF file: a model with the GGUF quantizer attached."""

    def __init__(self, kwargs: dict) -> None:
        if "gguf_file" in kwargs:
            self.hf_quantizer = self
            self.quantization_config = kwargs.get("quantization_config")

    def remove_quantization_config(self, model) -> None:
        del model.hf_quantizer


@pytest.fixture
def calls(monkeypatch, tokenizer):
    """Record (path, kwargs) of every AutoTokenizer / AutoModelForCausalLM.from_pretrained call."""
    seen: list[tuple[str, str, dict]] = []

    def fake_tok(path, **kwargs):
        seen.append(("tokenizer", path, kwargs))
        return tokenizer

    def fake_lm(path, **kwargs):
        seen.append(("model", path, kwargs))
        return FakeLM(kwargs)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake_tok)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake_lm)
    return seen


def test_gguf_student_reads_tokenizer_from_the_gguf_file(calls, tmp_path):
    cfg = StudentConfig(path=str(tmp_path), gguf_file=GGUF)
    load_tokenizer(cfg.tokenizer_path)  # what DistillModule and score-lark do
    lm = build_causal_lm(cfg)
    quant = calls[1][2].pop("quantization_config")
    assert calls == [
        ("tokenizer", str(tmp_path), {"gguf_file": GGUF}),
        ("model", str(tmp_path), {"dtype": torch.float32, **_model_kwargs(GGUF)}),
    ]
    # Dequantised to a dense, trainable model, and the quantizer detached: save_pretrained (the export)
    # refuses a model that still carries the GGUF quantizer.
    assert quant.dequantize is True
    assert not hasattr(lm, "hf_quantizer")


def _model_kwargs(gguf: str) -> dict:
    return {"trust_remote_code": False, "revision": None, "attn_implementation": "sdpa", "gguf_file": gguf}


def test_path_naming_the_gguf_file_loads_both(calls, tmp_path):
    cfg = StudentConfig(path=str(tmp_path / GGUF))
    load_tokenizer(cfg.tokenizer_path)
    build_causal_lm(cfg)
    assert [(kind, path, kw.get("gguf_file")) for kind, path, kw in calls] == [
        ("tokenizer", str(tmp_path), GGUF),
        ("model", str(tmp_path), GGUF),
    ]


def test_explicit_tokenizer_wins_over_the_gguf(calls, tmp_path, tokenizer_dir):
    cfg = StudentConfig(path=str(tmp_path), gguf_file=GGUF, tokenizer=tokenizer_dir)
    load_tokenizer(cfg.tokenizer_path)
    assert calls == [("tokenizer", tokenizer_dir, {})]


def test_plain_directory_unchanged(calls, tmp_path):
    load_tokenizer(StudentConfig(path=str(tmp_path)).tokenizer_path)
    assert calls == [("tokenizer", str(tmp_path), {})]


@pytest.mark.parametrize(
    ("path", "gguf", "expected"),
    [("d/m.gguf", None, ("d", "m.gguf")), ("m.GGUF", None, (".", "m.GGUF")), ("d", "m.gguf", ("d", "m.gguf"))],
)
def test_split_gguf(path, gguf, expected):
    assert split_gguf(path, gguf) == expected


def test_gguf_only_directory_without_gguf_file_names_the_file(tmp_path):
    (tmp_path / GGUF).write_bytes(b"not really gguf")
    with pytest.raises(ValueError, match=rf"cannot load the tokenizer from .*; it holds {GGUF}: set `gguf_file`"):
        load_tokenizer(str(tmp_path))


def test_smollm2_template_labels_cover_exactly_the_assistant_turn(tokenizer_dir):
    """The prefix rule with SmolLM2's template: the inserted system prompt and the user turn are prompt."""
    tok = load_tokenizer(tokenizer_dir)
    tok.chat_template = SMOLLM2_TEMPLATE
    answer = "3 + 4 = 7. The answer is 7."
    rows = {
        "messages": [[{"role": "user", "content": "What is 3 + 4?"}, {"role": "assistant", "content": answer}]],
        "source": ["s"],
        "file": [0],
        "line": [1],
    }
    ds, stats = tokenise_source(datasets.Dataset.from_dict(rows), tok, ["f.jsonl"], max_length=512)
    ids, p = ds[0]["input_ids"], ds[0]["prompt_len"]
    prompt = tok.decode(ids[:p])
    assert prompt.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert prompt.endswith("What is 3 + 4?<|im_end|>\n<|im_start|>assistant\n")
    assert tok.decode(ids[p:]) == answer + "<|im_end|>\n"  # the assistant turn, its end marker included
    assert stats.kept == 1
