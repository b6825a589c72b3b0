"""Shared fixtures: a byte-level tokenizer, a tiny Llama saved with save_pretrained, and a small pool.

Everything is built offline; the hub is switched off before any HF library is imported.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

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


@pytest.fixture(scope="session")
def cli_run(pool_dir, tokenizer_dir, tmp_path_factory):
    """ONE tiny fit through the real console entry point, resumed once, shared by the tests that only read it.

    4 steps (evaluation at the end) with DMC every 2 steps, activation checkpointing and the ``HFExport``
    callback, then ``--ckpt_path last`` to step 6 in the same run directory. test_cli.py (checkpoint, scalars,
    resume in place), test_console.py (stderr and event files), test_resume_config.py (resumes its last checkpoint
    into a run of its own) and tools/test_export.py (the checkpoint and the callback's export) assert on it instead of
    each paying for its own fits (~10 s of imports per process on 2 cores).
    """
    from helpers import CliRun, callback, run_cli, scalars, tiny_config, write_config

    tmp = tmp_path_factory.mktemp("cli-run")
    cfg = tiny_config(pool_dir, tokenizer_dir, tmp)
    cfg["model"]["student"]["gradient_checkpointing"] = True
    cfg["dmc"] = callback("dmc.DMCCallback", every_n_steps=2, probe_size=6, probe_questions=3, max_new_tokens=4)
    cfg["trainer"]["callbacks"] = [{"class_path": "lit_distill.callbacks.export.HFExport"}]
    path = write_config(cfg, tmp / "fit.yaml")
    run = tmp / "runs" / "tiny" / "version_0"
    first = run_cli(["fit", "--config", str(path)])
    assert first.returncode == 0, first.stderr[-4000:]
    # What the first fit left, before the resume overwrites last.ckpt and adds an event file.
    first_ckpt = shutil.copy(run / "checkpoints" / "last.ckpt", tmp / "first.ckpt")
    first_scalars = scalars(run)
    second = run_cli(["fit", "--config", str(path), "--trainer.max_steps", "6", "--ckpt_path", "last"])
    assert second.returncode == 0, second.stderr[-4000:]
    return CliRun(cfg, path, run, first, second, Path(first_ckpt), first_scalars)


@pytest.fixture(scope="session")
def fsdp2_run(pool_dir, tokenizer_dir, tmp_path_factory) -> tuple[Path, Path]:
    """ONE two-process FSDP2 fit (gloo), shared by test_distributed.py and tools/test_export.py: 6 steps with every
    selection callback on, a sharded checkpoint every 3 steps (all kept) and the ``HFExport`` callback.

    Returns (its config file, its run directory ``runs/tiny/version_0``); a resume of it logs into ``version_1``.
    """
    from helpers import REPO, run_distributed, selection_callbacks, tiny_config, write_config

    tmp = tmp_path_factory.mktemp("fsdp2-run")
    over = {"trainer.max_steps": 6, "trainer.val_check_interval": 6}
    over |= {"checkpoint.every_n_train_steps": 3, "checkpoint.save_top_k": -1}
    cfg = tiny_config(pool_dir, tokenizer_dir, tmp, **over)
    cfg.update(selection_callbacks(dmc_batch_size=4, max_new_tokens=6))
    cfg["trainer"]["callbacks"] = [{"class_path": "lit_distill.callbacks.export.HFExport"}]
    path = write_config(cfg, tmp / "dist.yaml")
    out = run_distributed(["fit", "--config", str(path), "--config", str(REPO / "configs/strategy/fsdp2.yaml")])
    assert out.returncode == 0, out.stderr[-4000:]
    return path, tmp / "runs" / "tiny" / "version_0"


@pytest.fixture(scope="session")
def ddp_lora_run(pool_dir, model_dir, tmp_path_factory) -> Path:
    """ONE two-process DDP fit (gloo), shared by test_distributed.py and tools/test_export.py: the pretrained tiny
    Llama with LoRA adapters (r=4), 6 steps with every selection callback on, an evaluation at the end and the
    ``HFExport`` callback (merged). Returns its run directory (``runs/tiny/version_0``)."""
    from helpers import REPO, run_distributed, selection_callbacks, tiny_config, write_config

    tmp = tmp_path_factory.mktemp("ddp-lora-run")
    cfg = tiny_config(pool_dir, model_dir, tmp, **{"trainer.max_steps": 6, "trainer.val_check_interval": 6})
    cfg["model"]["student"] = {"path": model_dir}
    cfg["model"]["lora"] = {"r": 4, "alpha": 8}
    cfg.update(selection_callbacks(dmc_batch_size=4, max_new_tokens=6))
    cfg["trainer"]["callbacks"] = [{"class_path": "lit_distill.callbacks.export.HFExport"}]
    path = write_config(cfg, tmp / "dist.yaml")
    out = run_distributed(["fit", "--config", str(path), "--config", str(REPO / "configs/strategy/ddp.yaml")])
    assert out.returncode == 0, out.stderr[-4000:]
    return tmp / "runs" / "tiny" / "version_0"


@pytest.fixture(scope="session")
def demo_assets() -> Path:
    """The demo assets (``demo://`` paths), built once into this session's ``LIT_DISTILL_HOME``: the generator's
    tests read them and the benchmark smoke runs (subprocesses inheriting the variable) find them built."""
    from lit_distill.demo.assets import ensure_demo_assets

    return ensure_demo_assets()
