"""Hugging Face export: ``lit-distill export`` (lit_distill/export.py) and the ``HFExport`` callback.

Each kind of checkpoint is exported and checked against an oracle that does not go through the export code:

* single file: the module Lightning itself restores (``DistillModule.load_from_checkpoint``): greedy
  generation token for token and logits to 1e-5;
* LoRA (fitted under DDP, so the callback runs there too): merged export against the restored module; the
  adapter loaded by peft onto its base model;
* FSDP2 sharded directory: torch's own consolidation of the shards (``dcp_to_torch_save``), and the full
  state dict the callback gathered at the end of the same run.

The fits are the session's shared CLI runs (conftest.py: ``cli_run``, ``ddp_lora_run``, ``fsdp2_run``), each
with the HFExport callback; other test files assert on their training side.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lit_distill.export import export_checkpoint
from lit_distill.model.module import DistillModule
from lit_distill.model.student import eval_mode
from lit_distill.tools import export as export_tool

MAX_NEW_TOKENS = 12
LOGIT_TOL = 1e-5


# ------------------------------------------------------------------------------------------ helpers


def _prompts(tokenizer, pool_dir) -> tuple[torch.Tensor, torch.Tensor]:
    """Held-out questions of different lengths through the chat template, left-padded as in evaluation."""
    questions = []
    for name in ("easy", "hard"):
        lines = (Path(pool_dir) / f"eval_{name}.jsonl").read_text().splitlines()[:2]
        questions += [json.loads(line)["messages"] for line in lines]
    texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in questions]
    batch = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    assert len(set(batch["attention_mask"].sum(1).tolist())) > 1, "prompts should need padding"
    return batch["input_ids"], batch["attention_mask"]


def _assert_same_model(model, module: DistillModule, tokenizer, pool_dir) -> float:
    """The exported ``model`` decodes and scores like ``module``; returns the max abs logit difference."""
    ids, mask = _prompts(module.tokenizer, pool_dir)
    expected_text = module.generate_text(ids, mask, MAX_NEW_TOKENS)
    with eval_mode(module.student):
        expected = module.student.generate(
            ids,
            mask,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            pad_token_id=module.tokenizer.pad_token_id,
            eos_token_id=module.tokenizer.eos_token_id,
        )[:, ids.shape[1] :]
        reference_logits = module.student.lm(input_ids=ids, attention_mask=mask).logits
    model.eval()
    with torch.no_grad():
        # No pad/eos arguments: the exported generation config must carry the tokenizer's ids.
        got = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        got = got[:, ids.shape[1] :]
        logits = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(got, expected), (got, expected)
    assert tokenizer.batch_decode(got, skip_special_tokens=True) == expected_text
    diff = (logits - reference_logits).abs().max().item()
    assert diff <= LOGIT_TOL, diff
    return diff


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys(), sorted(a.keys() ^ b.keys())
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ------------------------------------------------------------------------------------------ single file


@pytest.fixture(scope="module")
def single_run(cli_run) -> Path:
    """The session's shared CLI run (conftest.cli_run): HFExport on, last.ckpt and the export at step 6."""
    return cli_run.run


def test_export_file_checkpoint_matches_restored_module(single_run, pool_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = single_run / "checkpoints" / "last.ckpt"
    out = tmp_path / "hf"
    assert export_tool.main(["--ckpt", str(ckpt), "--output", str(out)]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    info = json.loads((out / "lit_distill_export.json").read_text())
    assert info["source_checkpoint"] == str(ckpt.resolve()) and info["global_step"] == 6
    assert info["checkpoint_format"] == "file" and info["merge_lora"] is False

    module = DistillModule.load_from_checkpoint(ckpt, map_location="cpu")
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template == module.tokenizer.chat_template
    assert model.generation_config.eos_token_id == module.tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == module.tokenizer.pad_token_id
    _assert_same_model(model, module, tokenizer, pool_dir)

    # --dtype casts what is written, nothing else.
    half = export_checkpoint(ckpt, tmp_path / "bf16", dtype="bfloat16")
    cast = AutoModelForCausalLM.from_pretrained(half)
    assert cast.dtype == torch.bfloat16
    _assert_same_weights(cast.state_dict(), {k: v.bfloat16() for k, v in model.state_dict().items()})


def test_hf_export_callback_single_process(single_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    written = single_run / "hf"
    info = json.loads((written / "lit_distill_export.json").read_text())
    assert info["global_step"] == 6 and info["source"].startswith("HFExport")
    AutoTokenizer.from_pretrained(written)
    # The end-of-fit weights are the last checkpoint's.
    exported = export_checkpoint(single_run / "checkpoints" / "last.ckpt", tmp_path / "hf")
    _assert_same_weights(
        AutoModelForCausalLM.from_pretrained(written).state_dict(),
        AutoModelForCausalLM.from_pretrained(exported).state_dict(),
    )


def test_export_reads_pickled_config_dataclasses_weights_only(single_run, tmp_path, monkeypatch):
    """Checkpoints written before hyper_parameters were plain dicts hold the config dataclasses themselves."""
    from lit_distill.model.student import StudentConfig

    state = torch.load(single_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    hp = state["hyper_parameters"]
    hp["student"] = StudentConfig(**hp["student"])
    old = tmp_path / "old.ckpt"
    torch.save(state, old)

    calls = []
    real_load = torch.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    out = export_checkpoint(old, tmp_path / "hf")
    assert calls and all(w is True for w in calls), calls  # allow-listed: no fallback to full unpickling
    assert (out / "model.safetensors").is_file()


def test_export_fails_clearly(single_run, tmp_path, capsys):
    state = torch.load(single_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    gone = str(tmp_path / "moved-tokenizer")
    state["hyper_parameters"]["student"]["tokenizer"] = gone
    torch.save(state, tmp_path / "moved.ckpt")
    assert export_tool.main(["--ckpt", str(tmp_path / "moved.ckpt"), "--output", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert gone in err and "no longer exists" in err

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("keep me")
    ckpt = str(single_run / "checkpoints" / "last.ckpt")
    for extra in ([], ["--overwrite"]):  # never deletes a directory that is not a previous export
        assert export_tool.main(["--ckpt", ckpt, "--output", str(occupied), *extra]) == 1
    assert (occupied / "notes.txt").read_text() == "keep me"


# ------------------------------------------------------------------------------------------ LoRA


@pytest.mark.multiprocess
def test_lora_export_merged_and_adapter(ddp_lora_run, pool_dir, model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # The session's shared DDP run (conftest.ddp_lora_run: LoRA r=4 on the pretrained tiny Llama, HFExport on),
    # so the callback's DDP path (rank 0 holds the weights, the others wait for its verdict) runs too.
    run = ddp_lora_run
    ckpt = run / "checkpoints" / "last.ckpt"
    state_dict = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert any("lora_A" in k for k in state_dict) and any("lora_B" in k for k in state_dict)
    module = DistillModule.load_from_checkpoint(ckpt, map_location="cpu")
    tokenizer = module.tokenizer

    merged_dir = export_checkpoint(ckpt, tmp_path / "merged", merge_lora=True)
    assert not (merged_dir / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    diff = _assert_same_model(merged, module, tokenizer, pool_dir)

    # The adapters were trained: without them the logits move far more than the export tolerance.
    ids, mask = _prompts(tokenizer, pool_dir)
    base = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        base_logits = base(input_ids=ids, attention_mask=mask).logits
        merged_logits = merged(input_ids=ids, attention_mask=mask).logits
    assert (base_logits - merged_logits).abs().max().item() > 100 * max(diff, LOGIT_TOL)

    adapter_dir = export_checkpoint(ckpt, tmp_path / "adapter")
    assert not (adapter_dir / "model.safetensors").exists()
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == model_dir and config["r"] == 4
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"]), adapter_dir
    )
    with torch.no_grad():
        adapted_logits = adapted(input_ids=ids, attention_mask=mask).logits
    assert (adapted_logits - merged_logits).abs().max().item() <= LOGIT_TOL

    # HFExport (merge_lora=True) under DDP wrote the same merged model.
    _assert_same_weights(AutoModelForCausalLM.from_pretrained(run / "hf").state_dict(), merged.state_dict())


# ------------------------------------------------------------------------------------------ FSDP2


@pytest.mark.multiprocess
def test_fsdp2_sharded_checkpoint_export(fsdp2_run, pool_dir, tmp_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The session's shared FSDP2 run (conftest.fsdp2_run: 6 steps, HFExport on; test_distributed.py resumes it).
    _, run = fsdp2_run
    sharded = run / "checkpoints" / "last.ckpt"
    assert sharded.is_dir(), "FSDP2 should write a sharded (directory) checkpoint"
    out = export_checkpoint(sharded, tmp_path / "export")
    info = json.loads((out / "lit_distill_export.json").read_text())
    assert info["checkpoint_format"] == "sharded" and info["global_step"] == 6
    model = AutoModelForCausalLM.from_pretrained(out)
    exported = model.state_dict()

    # Oracle 1: torch's own consolidation of the shards.
    dcp_to_torch_save(sharded, tmp_path / "consolidated.pt")
    consolidated = torch.load(tmp_path / "consolidated.pt", map_location="cpu", weights_only=True)["state_dict"]
    _assert_same_weights(
        exported, {k.removeprefix("student.lm."): v for k, v in consolidated.items() if k.startswith("student.lm.")}
    )

    # Oracle 2: the full state dict HFExport gathered at the end of the same run (get_model_state_dict).
    gathered = AutoModelForCausalLM.from_pretrained(run / "hf")
    _assert_same_weights(exported, gathered.state_dict())
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids, mask = _prompts(tokenizer, pool_dir)
    with torch.no_grad():
        a = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        b = gathered.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
    assert torch.equal(a, b)


def test_init_checkpoint_starts_a_run_from_trained_weights(single_run):
    """``model.student.init_checkpoint`` loads the checkpoint's student through the export reader."""
    ckpt = single_run / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    hp = state["hyper_parameters"]
    module = DistillModule(**{**hp, "student": {**hp["student"], "init_checkpoint": str(ckpt)}})
    module.configure_model()
    _assert_same_weights(
        module.student.state_dict(),
        {k.removeprefix("student."): v for k, v in state["state_dict"].items() if k.startswith("student.")},
    )
    fresh = DistillModule(**hp)
    fresh.configure_model()
    assert any(
        not torch.equal(a, b)
        for a, b in zip(fresh.student.state_dict().values(), module.student.state_dict().values(), strict=True)
    )
