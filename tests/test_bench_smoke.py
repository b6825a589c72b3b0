"""The benchmarks' smoke modes: each ``scripts/bench/*.py --quick`` exits cleanly and prints one JSON line
with its figures (the full runs and their numbers are in docs/benchmarks.md).

Each check asserts facts a regression would break (padding: packing is exact and pads less; scoring
overhead: both callbacks ran within the run), not speeds. Only padding is cheap enough for the default
suite; the others are ``slow`` (``pytest -m slow tests/test_bench_smoke.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import REPO

BENCH = REPO / "scripts" / "bench"


def _padding(result: dict) -> None:
    # Packing must change no number (methods: the loss and its gradient are layout-independent) and must
    # feed fewer padding positions than padding every sequence to the longest.
    exact = result["exactness"]
    assert exact["ce_sum_max_rel_diff"] < 1e-4, exact
    assert exact["loss_reference_rel_diff"] < 1e-4 and exact["loss_paper_rel_diff"] < 1e-4, exact
    assert exact["grad_max_abs_diff_over_max_abs_grad"] < 1e-3, exact
    layouts = result["layouts"]
    assert 0 <= layouts["packing"]["padded_share"] < layouts["padding"]["padded_share"] < 1, layouts


def _scoring_overhead(result: dict) -> None:
    # The quick run trains its 4 steps with both callbacks, each of which ran (at start at least), and the
    # time they report is a part of the run's wall time.
    run = result["runs"]["budget"]
    assert run["steps"] == result["max_steps"] == 4, run
    assert run["dmc_events"] and run["lark_events"], run
    assert 0 < run["dmc_share"] < 1 and 0 < run["lark_share"] < 1, run


def _timing_only(result: dict) -> None:
    """These benchmarks report only speeds; their behaviour is covered by unit tests, so the smoke run is opt-in."""


# benchmark -> (top-level keys, checks of the figures that a regression would break)
EXPECTED = {
    "overhead": ({"sizes", "micro_batch_size", "target_ratio", "machine"}, _timing_only),
    "scoring_overhead": ({"runs", "max_steps", "target_share", "machine"}, _scoring_overhead),
    "padding": ({"layouts", "speedup_packing_over_padding", "exactness", "machine"}, _padding),
    "sampler": ({"results", "global_batch", "update_size", "machine"}, _timing_only),
    "tokenise": ({"results", "records", "num_proc_applied", "machine"}, _timing_only),
}
# Opt-in (-m slow): the timing-only ones, and scoring_overhead, whose quick run still scores the whole demo
# pool at LARK's start-up (12,000 trajectories: ~7 minutes on 2 busy cores, measured 2026-12-01).
SLOW = {name for name, (_, check) in EXPECTED.items() if check is _timing_only} | {"scoring_overhead"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(EXPECTED)]
)
def test_quick_mode_prints_one_json_line(name, demo_assets):
    # conftest points LIT_DISTILL_HOME and HF_DATASETS_CACHE at this session's folders; the demo assets are
    # built there once (the demo_assets fixture, shared with tests/demo) and every benchmark reuses them.
    proc = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--quick"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout[-2000:]
    result = json.loads(lines[0])
    keys, check = EXPECTED[name]
    assert result["benchmark"] == name and result["quick"] is True
    assert keys <= result.keys()
    check(result)
