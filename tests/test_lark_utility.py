"""scripts/experiments/lark_utility.py (the L3 study): its realised-drop measurement and its statistics.

The realised drop of a trajectory must not depend on what was measured before it (each starts from the warm
weights with a fresh optimiser), and the within-problem Spearman must rank within problems with average
ranks for ties. A tiny Llama on the demo pool; seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts" / "experiments"))

import lark_utility as lu

from helpers import tiny_config, write_config


@pytest.fixture(scope="module")
def setup(pool_dir, tokenizer_dir, tmp_path_factory):
    """A configured tiny student, the demo 'concise' pool tokenised, and its first three problems' items."""
    from lit_distill.data.sources import SourceConfig
    from lit_distill.tools.config import load_run
    from lit_distill.tools.score_lark import load_pool, tokenise_pool

    tmp = tmp_path_factory.mktemp("l3")
    torch.manual_seed(0)
    run = load_run([write_config(tiny_config(pool_dir, tokenizer_dir, tmp), tmp / "tiny.yaml")])
    module = run.model
    module.configure_model()
    pool = load_pool(SourceConfig(name="concise", path=str(Path(pool_dir) / "concise.jsonl")))
    data = tokenise_pool(pool, module.tokenizer, 1024)
    where = {r: i for i, r in enumerate(data.rows.tolist())}
    groups: dict[str, list[int]] = {}
    for r, pid in enumerate(pool.problem_ids):
        groups.setdefault(pid, []).append(where[r])
    return module, data, list(groups.values())[:3]


def _warm_optimizer_state(module, data) -> dict:
    """An AdamW state with non-zero moments, as a checkpoint's ``optimizer_states[0]`` holds."""
    import copy

    from lit_distill.batch import student_inputs
    from lit_distill.model.optim import SchedulerConfig, build_optimizer

    warm = copy.deepcopy(module.student.state_dict())
    opt = build_optimizer(module.student, module.optimizer_config, SchedulerConfig(warmup_steps=0), 1)["optimizer"]
    stats = module.student(**student_inputs(lu._batch(data, [0, 1], module.tokenizer.pad_token_id)))
    (stats.ce_sum.sum() / stats.n_tokens.sum()).float().backward()
    opt.step()
    module.student.load_state_dict(warm)
    return copy.deepcopy(opt.state_dict())


@pytest.mark.parametrize(("optimizer", "lr"), [("adamw", 1e-3), ("adamw_warm", 1e-3), ("sgd", 0.05)])
def test_drops_do_not_depend_on_measurement_order(setup, optimizer, lr):
    module, data, groups = setup
    settings = lu.Settings(steps=2, optimizer=optimizer)
    warm_opt = _warm_optimizer_state(module, data) if optimizer == "adamw_warm" else None
    warm = {k: v.clone() for k, v in module.student.state_dict().items()}
    ref_before = np.array([lu._nll(module, lu._batch(data, g, module.tokenizer.pad_token_id)) for g in groups])

    before, after = lu.realised_drops(module, data, groups, settings, lr, 1.0, warm_opt)
    # Problems and candidates in reverse order: every measurement must start from the same warm state.
    reverse = [g[::-1] for g in groups[::-1]]
    rev_before, rev_after = lu.realised_drops(module, data, reverse, settings, lr, 1.0, warm_opt)

    np.testing.assert_allclose(before, ref_before, rtol=1e-6)  # every problem measured at the warm student
    np.testing.assert_allclose(rev_before[::-1, ::-1], before, rtol=1e-6)
    np.testing.assert_allclose(rev_after[::-1, ::-1, ::-1], after, rtol=1e-5, atol=1e-6)
    own = np.einsum("pkk->pk", before[:, None, :] - after)
    assert np.all(own > 0)  # a few small steps on a trajectory lower its own loss
    for k, v in module.student.state_dict().items():  # the caller's student is left at the warm weights
        torch.testing.assert_close(v, warm[k])


def test_spearman_uses_average_ranks_and_is_nan_when_constant():
    assert lu.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert lu.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert lu.spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(3 / np.sqrt(10))
    assert np.isnan(lu.spearman([1, 1, 1, 1], [1, 2, 3, 4]))


def test_within_problem_spearman_ranks_inside_each_problem():
    """g-hat orders every problem's drops perfectly while the pooled order is reversed across problems."""
    n = 6
    rng = np.random.default_rng(0)
    g_hat, drop, loss = [], [], []
    for p in range(n):
        base = rng.permutation(lu.K).astype(float)
        g_hat += list(base - 10 * p)  # problems with high g-hat have low drops, and vice versa
        drop += list(0.1 * base + p + 1)
        loss += [1.0] * lu.K  # relative drop = drop
    raw = {
        "seed": 0,
        "problem": [f"p{p}" for p in range(n) for _ in range(lu.K)],
        "L": loss,
        "g_hat": g_hat,
        "random": list(rng.random(n * lu.K)),
        "drop": drop,
        "transfer_drop": [0.0] * (n * lu.K),
        "drop_matrix": np.zeros((n, lu.K, lu.K)).tolist(),
    }
    st = lu.seed_statistics(raw)
    assert st["within"]["drop"]["g_hat"]["mean"] == pytest.approx(1.0)
    assert st["pooled_relative"]["g_hat"]["value"] < 0
    assert np.isnan(st["within"]["drop"]["L"]["mean"])  # L is constant within each problem: undefined
    summary = lu.summarise({0: st, 1: st})
    assert summary["paired"]["within_drop/g_hat_minus_random"]["mean"] == pytest.approx(
        1.0 - st["within"]["drop"]["random"]["mean"]
    )
