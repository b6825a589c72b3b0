"""The ``lit-distill`` command.

Training goes through LightningCLI (``fit``, ``validate``, ``test``), configured by YAML::

    lit-distill fit --config configs/demo.yaml
    lit-distill fit --config configs/demo.yaml --print_config      # the fully resolved config

Tools that work without training have their own sub-commands::

    lit-distill data FILE_OR_CONFIG...      validate sources and print their statistics
    lit-distill score lark|dmc ...          offline LARK / static DMC scoring
    lit-distill select lark ...             offline LARK selection
    lit-distill export --ckpt ... --output  Hugging Face export of a checkpoint

Defaults that differ from a bare Lightning Trainer: TensorBoard logging under ``runs/``, an atomically
written ``last.ckpt`` checkpoint, ``use_distributed_sampler=False`` (the mixture sampler shards by rank
itself), and ``--ckpt_path last`` resuming the newest run of the config in its own directory. A resume trains
the model the config describes (not the checkpoint's hyper-parameters). SIGTERM (and SLURM's requeue signal)
finishes the optimiser step, writes ``last.ckpt`` and exits with status 143 (``callbacks/preemption.py``).
A mistake (config key or value, missing file or model folder, no GPU) ends in one ``lit-distill: error:`` line
and status 1 (``errors.py``); ``--debug`` or ``LIT_DISTILL_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from lit_distill.errors import run_reported

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # we fork DataLoader workers after tokenising
log = logging.getLogger("lit_distill.cli")
_PARSERS: list = []  # the LightningCLI parser of this process, once built


def _configure_logging() -> None:
    rank = int(os.environ.get("LOCAL_RANK", os.environ.get("RANK", "0")))
    logger = logging.getLogger("lit_distill")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[lit-distill] %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if rank == 0 else logging.WARNING)
    logger.propagate = False
    import datasets

    datasets.disable_progress_bars()  # per-source counts are logged instead


def _cli_class():
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI

    from lit_distill import console
    from lit_distill.callbacks.budget import TokenBudget
    from lit_distill.callbacks.consistency import StreamConsistency
    from lit_distill.callbacks.dmc import DMCCallback
    from lit_distill.callbacks.lark import LARKCallback
    from lit_distill.callbacks.odm import ODMCallback
    from lit_distill.callbacks.preemption import Preemption
    from lit_distill.callbacks.summary import RunSummary

    console.quiet()

    class DistillCLI(LightningCLI):
        """LightningCLI with the model's tokenizer injected into the data and our default callbacks."""

        @staticmethod
        def subcommands() -> dict[str, set[str]]:
            # No `predict`: DistillModule has no forward/predict_step (generation is evaluation's job).
            return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}

        def init_parser(self, **kwargs):
            parser = super().init_parser(**kwargs)
            _PARSERS.append(parser)  # for "did you mean" when a key is unknown (lit_distill.errors)
            return parser

        def _parse_ckpt_path(self) -> None:
            # LightningCLI would load the checkpoint's hyper-parameters over the config and the command line, so
            # a resume silently trains the checkpoint's model while config.yaml records the config's. The config
            # is what runs: DistillModule.on_load_checkpoint refuses a model of another shape in one line and
            # says which optimiser settings replace the checkpoint's.
            pass

        def add_arguments_to_parser(self, parser) -> None:
            # The model loads the tokenizer; the DataModule is handed that object (loaded once, as litgpt's
            # DataModule.connect), so data.tokenizer is not a config key of its own.
            parser.link_arguments("model.tokenizer", "data.tokenizer", apply_on="instantiate")
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0})
            parser.add_lightning_class_args(RunSummary, "summary")
            # SIGTERM / SLURM requeue: finish the optimiser step, write last.ckpt, exit PREEMPTED_EXIT_CODE.
            parser.add_lightning_class_args(Preemption, "preemption")
            # Data-selection callbacks live under their own keys so composing configs never drops them.
            # Opt-in (subclass mode: a key absent from the config means no callback; the YAML gives
            # class_path and init_args). Non-subclass groups would always be built from their defaults.
            opt_in = (
                (DMCCallback, "dmc"),
                (LARKCallback, "lark"),
                (StreamConsistency, "consistency"),
                (TokenBudget, "budget"),
                (ODMCallback, "odm"),
            )
            for cls, key in opt_in:
                parser.add_lightning_class_args(cls, key, subclass_mode=True, required=False)

        def before_instantiate_classes(self) -> None:
            if self.subcommand == "fit":
                _resume_in_place(self.config.fit)

        def before_fit(self) -> None:
            _check_resume_batch(self.datamodule, self.trainer, self.config.fit.get("ckpt_path"))

        def instantiate_trainer(self, **kwargs):
            # An opt-in key that is absent instantiates to None; LightningCLI would hand that to the Trainer.
            keys = self._parser(self.subcommand).callback_keys
            extra = [c for c in (self._get(self.config_init, k) for k in keys) if c is not None]
            for c in extra:  # checked on the loaded sources, before tokenising (DistillDataModule.build_pool)
                if getattr(c, "needs_capability", False) and self.datamodule is not None:
                    self.datamodule.answers_required = f"DMC variant {c.config.variant} (dmc.init_args.dmc.variant)"
            config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
            extra += console.default_callbacks(config, extra)  # step progress bar, TensorBoard layout
            return console.quiet_loggers(self._instantiate_trainer(config, extra))

    return DistillCLI


def latest_version_with_checkpoint(save_dir: str, name: str) -> int | None:
    """The highest ``version_N`` under ``save_dir/name`` holding ``checkpoints/last.ckpt`` (file or sharded dir)."""
    found = []
    for path in Path(save_dir, name).glob("version_*"):
        suffix = path.name.removeprefix("version_")
        if suffix.isdigit() and (path / "checkpoints" / "last.ckpt").exists():
            found.append(int(suffix))
    return max(found, default=None)


def _resume_in_place(cfg) -> None:
    """Make ``--ckpt_path last`` resume the latest run of this config, logging into that run's directory.

    Checkpoints go to ``<logger dir>/version_N/checkpoints`` and every new run gets a new ``version_N``, so
    Lightning's own ``last`` lookup would search the new, empty directory, warn and start from step 0. When
    no explicit ``checkpoint.dirpath`` or logger version is set, point the logger at the newest version that
    holds a ``last.ckpt``: the run continues there (same TensorBoard curves, same checkpoint files). Every
    rank computes the same answer from the shared filesystem.
    """
    if cfg.get("ckpt_path") != "last" or cfg.get("checkpoint.dirpath"):
        return
    logger = cfg.get("trainer.logger")
    init = getattr(logger, "init_args", None)
    if init is None or init.get("version") is not None or init.get("save_dir") is None:
        return
    version = latest_version_with_checkpoint(init.save_dir, init.get("name") or "lightning_logs")
    if version is None:
        log.warning("--ckpt_path last: no previous run with a last.ckpt under %s; starting from step 0", init.save_dir)
        return
    init.version = version
    log.info("--ckpt_path last: resuming %s/version_%d", Path(init.save_dir, init.get("name") or ""), version)


def _check_resume_batch(datamodule, trainer, ckpt_path) -> None:
    """Refuse a resume with another global batch now, not after every source has been tokenised."""
    if ckpt_path == "last" and trainer.logger is not None and trainer.logger.log_dir:
        ckpt_path = str(Path(trainer.logger.log_dir, "checkpoints", "last.ckpt"))
    if datamodule is None or not ckpt_path or not Path(ckpt_path).is_file():
        return  # no checkpoint, a sharded one (a directory) or one Lightning will report itself
    import torch

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    state = ckpt.get(type(datamodule).__qualname__)
    global_batch = datamodule.micro_batch_size * trainer.world_size * trainer.accumulate_grad_batches
    if state and hasattr(datamodule, "check_global_batch"):
        datamodule.check_global_batch(state, global_batch)


TRAINER_DEFAULTS = {
    "use_distributed_sampler": False,
    # Checkpoint writes are atomic (temporary file beside the target, fsync, rename): a kill mid-write keeps
    # the previous last.ckpt loadable. Setting trainer.plugins replaces this default.
    "plugins": {"class_path": "lit_distill.checkpoint.AtomicCheckpointIO"},
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        # No hp_metric placeholder scalar (console.quiet_loggers also drops it for configs naming the logger).
        "init_args": {"save_dir": "runs", "name": "lit-distill", "default_hp_metric": False},
    },
}


def run_lightning(args: list[str]) -> None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from lit_distill.callbacks.preemption import PREEMPTED_EXIT_CODE
    from lit_distill.data.datamodule import DistillDataModule
    from lit_distill.model.module import DistillModule
    from lit_distill.model.resume import CheckpointMismatchError

    try:
        _cli_class()(
            DistillModule,
            DistillDataModule,
            # None = read sys.argv; LightningCLI warns when both are given, even if identical.
            args=None if args == sys.argv[1:] else args,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            # exit_on_error=False: a config mistake raises, and lit_distill.errors prints one line (no usage dump).
            parser_kwargs={"exit_on_error": False, **({"parser_mode": "omegaconf"} if _has_omegaconf() else {})},
            # DistillModule.configure_optimizers is the optimiser (model.optimizer / model.scheduler); the CLI's
            # generic --optimizer/--lr_scheduler would build one before the student exists.
            auto_configure_optimizers=False,
        )
    except CheckpointMismatchError as exc:
        print(f"lit-distill: error: {exc}", file=sys.stderr)  # one line: what differs is the whole story
        raise SystemExit(1) from None
    except SIGTERMException as exc:
        # Lightning's own SIGTERM path (a signal before training started) raises it without a code: exit 0.
        if exc.code in (None, 0):
            log.warning("stopped by SIGTERM before training started; exiting with status %d", PREEMPTED_EXIT_CODE)
            raise SystemExit(PREEMPTED_EXIT_CODE) from None
        raise


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True


TOOLS = {
    "data": "lit_distill.tools.data:main",
    "score": "lit_distill.tools.score:main",
    "select": "lit_distill.tools.select:main",
    "export": "lit_distill.tools.export:main",
    "compare": "lit_distill.tools.compare:main",
}

USAGE = """usage: lit-distill {fit,validate,test} --config CONFIG.yaml [overrides]
       lit-distill data FILE_OR_CONFIG...
       lit-distill score {lark,dmc} ...
       lit-distill select lark ...
       lit-distill export --ckpt PATH --output DIR [--merge-lora]
       lit-distill compare --config BASE.yaml --arm NAME=OVERLAY.yaml ... --output DIR

Student-centred reasoning distillation with PyTorch Lightning.
  fit/validate/test   train or evaluate (LightningCLI; `lit-distill fit --help` lists every option)
  data                validate sources and print per-source statistics
  score lark|dmc      score trajectories (LARK) or sources (static DMC) with a student
  select lark         keep the top-B trajectories of every problem by LARK score
  export              write a checkpoint's student as a save_pretrained directory
  compare             run arms x seeds through fit and report paired differences with CIs

Errors are one line; add --debug (or set LIT_DISTILL_DEBUG=1) for the traceback.
How it fits together: docs/architecture.md; the maths as implemented: docs/methods.md.
"""


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    _configure_logging()
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    if argv[0] in TOOLS:
        import importlib

        module, func = TOOLS[argv[0]].split(":")
        sys.exit(run_reported(getattr(importlib.import_module(module), func), argv[1:]))
    run_reported(run_lightning, argv, parser_of=lambda: _PARSERS[-1] if _PARSERS else None)


if __name__ == "__main__":
    main()
