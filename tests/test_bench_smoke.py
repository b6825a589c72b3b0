"""The benchmarks' smoke modes: each ``scripts/bench/*.py --quick`` exits cleanly and prints one JSON line
with its figures (the full runs and their numbers are in docs/benchmarks.md)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from helpers import REPO

BENCH = REPO / "scripts" / "bench"


def _ratio(result: dict) -> float:
    return result["sizes"]["micro"]["cpu_time"]["ratio_lit_over_plain"]


def _share(result: dict) -> float:
    return result["runs"]["budget"]["lark_share"]


def _padded(result: dict) -> float:
    return result["layouts"]["packing"]["padded_share"]


def _draws(result: dict) -> float:
    return result["results"]["2_sources"]["1e5"]["draws_per_sec"]


def _records(result: dict) -> float:
    return result["results"]["num_proc_1"]["records_per_sec"]


# benchmark -> (top-level keys, one figure that must be a positive finite number)
EXPECTED = {
    "overhead": ({"sizes", "micro_batch_size", "target_ratio", "machine"}, _ratio),
    "scoring_overhead": ({"runs", "max_steps", "target_share", "machine"}, _share),
    "padding": ({"layouts", "speedup_packing_over_padding", "exactness", "machine"}, _padded),
    "sampler": ({"results", "global_batch", "update_size", "machine"}, _draws),
    "tokenise": ({"results", "records", "num_proc_applied", "machine"}, _records),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_quick_mode_prints_one_json_line(name):
    # conftest points LIT_DISTILL_HOME and HF_DATASETS_CACHE at this session's folders; the first benchmark
    # builds the demo assets there and the others reuse them.
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
    keys, figure = EXPECTED[name]
    assert result["benchmark"] == name and result["quick"] is True
    assert keys <= result.keys()
    value = figure(result)
    assert isinstance(value, float) and math.isfinite(value) and value > 0
