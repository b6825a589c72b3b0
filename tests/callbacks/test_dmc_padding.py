"""A filler-padded copy of a source must not look more compatible than the source itself (methods.md 3.6).

The old relative difficulty (token-weighted NLL over the pool's) called predictable filler "easy": the copy's
per-token NLL is diluted by it, so DMC-A preferred the copy. Here the pool is the demo's four sources plus
``padded`` (``concise`` with a fixed sentence before every solution), a tiny student trains briefly, and the
default DMC (variant, kappa, policy) is measured on the held-out probes.
"""

from __future__ import annotations

import numpy as np

from lit_distill.callbacks.dmc import DMCCallback
from lit_distill.data.sources import SourceConfig
from lit_distill.demo.generator import DemoSpec, build_pool

from helpers import fit_in_process, write_jsonl

FILLER = "Before solving, let me restate the task in my own words so that nothing is missed. "


def _padded_copy(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        user, assistant = r["messages"]
        out.append(
            {
                **r,
                "source": "padded",
                "problem_id": "padded-" + r["problem_id"],
                "messages": [user, {**assistant, "content": FILLER + assistant["content"]}],
            }
        )
    return out


def test_padded_copy_does_not_beat_the_original(tokenizer_dir, tmp_path):
    pool = build_pool(DemoSpec(problems_per_source=48, seed=1))
    pool["padded"] = _padded_copy(pool["concise"])
    for name, rows in pool.items():
        write_jsonl(tmp_path / "pool" / f"{name}.jsonl", rows)
    data = {
        "sources": [SourceConfig(name=n, path=str(tmp_path / "pool" / f"{n}.jsonl")) for n in pool],
        "micro_batch_size": 8,
    }
    cb = DMCCallback(every_n_steps=40, probe_size=32, probe_questions=8, batch_size=32, max_new_tokens=16)
    fit_in_process(tmp_path / "pool", tokenizer_dir, tmp_path, [cb], max_steps=41, data=data)
    names = list(pool)
    last = cb.history[-1]
    assert last["step"] == 40
    dmc = dict(zip(names, last["dmc"], strict=True))
    difficulty = dict(zip(names, last["difficulty"], strict=True))
    assert difficulty["padded"] > difficulty["concise"]
    assert dmc["padded"] <= dmc["concise"], dmc
    # ...and the mixture does not prefer the copy either.
    weights = dict(zip(names, last["weights"], strict=True))
    assert weights["padded"] <= weights["concise"]
    assert np.isfinite(last["dmc"]).all()
