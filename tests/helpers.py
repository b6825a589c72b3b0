"""Helpers importable from tests (``pythonpath = tests`` in pyproject)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

TINY_LLAMA = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=512,
)
REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CliRun:
    """The shared CLI fit of ``conftest.cli_run``: a 4-step fit, then resumed in place to step 6."""

    config: dict  # the config as written (a test that resumes elsewhere deep-copies it)
    config_path: Path
    run: Path  # runs/tiny/version_0: both fits log and checkpoint here
    first: subprocess.CompletedProcess  # the 4-step fit
    second: subprocess.CompletedProcess  # the resume to step 6
    first_ckpt: Path  # a copy of last.ckpt as the first fit left it (step 4)
    first_scalars: dict  # the run's scalars after the first fit

    @property
    def last_ckpt(self) -> Path:
        return self.run / "checkpoints" / "last.ckpt"


def write_jsonl(path, rows) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        for r in rows:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def tiny_config(pool_dir, tokenizer_dir, tmp_path, **over) -> dict:
    """A training config on the tiny pool: a from-config Llama, a few steps, an evaluation at the end."""
    cfg = {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_steps": 4,
            "val_check_interval": 4,
            "check_val_every_n_epoch": None,
            "num_sanity_val_steps": 0,
            "log_every_n_steps": 1,
            "enable_progress_bar": False,
            "logger": {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(tmp_path / "runs"), "name": "tiny"},
            },
        },
        "model": {
            "student": {"tokenizer": str(tokenizer_dir), "config": {"model_type": "llama", **TINY_LLAMA}},
            "optimizer": {"lr": 1e-3},
            "generation": {"max_new_tokens": 8, "samples_to_log": 1},
        },
        "data": {
            "sources": [
                {"name": n, "path": str(Path(pool_dir) / f"{n}.jsonl")} for n in ("concise", "verbose", "noisy", "hard")
            ],
            "eval_sources": [{"name": n, "path": str(Path(pool_dir) / f"eval_{n}.jsonl")} for n in ("easy", "hard")],
            "micro_batch_size": 4,
            "eval_batch_size": 8,
            "max_length": 1024,
            "mixture": {"policy": "balanced"},
        },
    }
    return set_dotted(cfg, over)


def set_dotted(cfg: dict, over: dict) -> dict:
    """Set ``{"trainer.max_steps": 6, ...}`` keys in a nested config dict (in place); returns it."""
    for dotted, value in over.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


def callback(name: str, **init_args) -> dict:
    """The YAML form of an opt-in callback key (``dmc``, ``lark``, ``consistency``)."""
    return {"class_path": f"lit_distill.callbacks.{name}", "init_args": init_args}


def selection_callbacks(
    *,
    dmc_every: int = 2,
    lark_every: int = 3,
    probe_size: int = 6,
    probe_questions: int = 3,
    dmc_batch_size: int = 8,
    max_new_tokens: int = 4,
    problems_per_refresh: int = 8,
    lark_batch_size: int = 8,
) -> dict:
    """The ``dmc``, ``lark`` and ``consistency`` config blocks of a tiny run with every selection callback on."""
    return {
        "dmc": callback(
            "dmc.DMCCallback",
            every_n_steps=dmc_every,
            probe_size=probe_size,
            probe_questions=probe_questions,
            batch_size=dmc_batch_size,
            max_new_tokens=max_new_tokens,
        ),
        "lark": callback(
            "lark.LARKCallback",
            budget=2,
            every_n_steps=lark_every,
            problems_per_refresh=problems_per_refresh,
            batch_size=lark_batch_size,
        ),
        "consistency": callback("consistency.StreamConsistency", every_n_steps=1),
    }


def write_config(cfg: dict, path) -> Path:
    path = Path(path)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_cli(args: list[str], timeout: int = 300, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess (as users do)."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "lit_distill.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd or REPO,
    )


def scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    """All scalar series of a TensorBoard run directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(Path(log_dir).glob("events.out.tfevents.*"))
    out: dict[str, list[tuple[int, float]]] = {}
    for f in files:
        ea = EventAccumulator(str(f))
        ea.Reload()
        for tag in ea.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in ea.Scalars(tag))
    return out


def fit_in_process(
    pool_dir, tokenizer_dir, tmp_path, callbacks=(), max_steps=4, ckpt_path=None, data=None, **trainer_kw
):
    """A tiny single-process fit without the CLI; returns (trainer, module, datamodule)."""
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger

    from lit_distill.data.datamodule import DistillDataModule, MixtureConfig
    from lit_distill.data.sources import SourceConfig
    from lit_distill.model.module import DistillModule, GenerationConfig
    from lit_distill.model.optim import OptimizerConfig
    from lit_distill.model.student import StudentConfig

    names = ("concise", "verbose", "noisy", "hard")
    data_args = dict(
        sources=[SourceConfig(name=n, path=str(Path(pool_dir) / f"{n}.jsonl")) for n in names],
        tokenizer=str(tokenizer_dir),
        micro_batch_size=4,
        max_length=1024,
        mixture=MixtureConfig(policy="balanced"),
    )
    data_args.update(data or {})
    dm = DistillDataModule(**data_args)
    module = DistillModule(
        student=StudentConfig(tokenizer=str(tokenizer_dir), config={"model_type": "llama", **TINY_LLAMA}),
        optimizer=OptimizerConfig(lr=1e-3),
        generation=GenerationConfig(max_new_tokens=8, samples_to_log=0),
    )
    args = dict(
        accelerator="cpu",
        devices=1,
        max_steps=max_steps,
        logger=TensorBoardLogger(str(tmp_path / "runs"), name="t"),
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    args.update(trainer_kw)
    pl.seed_everything(0)
    trainer = pl.Trainer(callbacks=list(callbacks), **args)
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer, module, dm


class StopAt:
    """A callback that stops a fit after optimiser step ``step`` (a run 'killed' at a step boundary)."""

    def __new__(cls, step: int):
        import lightning.pytorch as pl

        class _StopAt(pl.Callback):
            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if trainer.global_step >= step:
                    trainer.should_stop = True

        return _StopAt()


def free_port() -> int:
    """A free TCP port below the ephemeral range (32768-60999), for MASTER_PORT."""
    import random
    import socket

    for _ in range(100):
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port found")


def run_distributed(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Launch a multi-process CLI run (the ddp/fsdp launchers re-run sys.argv as subprocesses)."""
    return run_cli(args, timeout=timeout, env={"MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"})
