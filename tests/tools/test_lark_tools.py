"""``lit-distill score lark`` / ``select lark`` against an independent re-implementation of the reference.

The reference semantics (docs/methods.md 1.2-1.5) are re-written here from the spec, on a different code
path from the tools: chat template + plain ``tokenizer(text, truncation=True)``, batch 1, full (T, V)
logits from ``AutoModelForCausalLM``, CE over the whole vocabulary, top-50 renormalised Brier, then ρ and
ĝ by their formulas in float64.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_distill.demo.generator import DemoSpec, build_pool
from lit_distill.scoring.lark import select_pool
from lit_distill.tools import score_lark, select_lark

from helpers import TINY_LLAMA, free_port, run_cli, write_config, write_jsonl

MAX_LENGTH = 160  # small enough that one row is truncated and one is skipped (prompt alone too long)
SYSTEM = "You are a careful solver. Show your steps."


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def sharp_model_dir(tmp_path_factory, tokenizer):
    """The tiny Llama with a wide initialisation: peaked next-token distributions make the top-K Brier
    and the candidate ranking sensitive to mistakes (a 0.02-init model is nearly uniform)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), initializer_range=0.3, **TINY_LLAMA))
    path = tmp_path_factory.mktemp("sharp-llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _records() -> list[dict]:
    """4 problems × 3-4 candidates with a system message; problem 0 gets a long (truncated) candidate
    and problem 1 a candidate whose prompt alone exceeds MAX_LENGTH (skipped)."""
    rows = build_pool(DemoSpec(problems_per_source=4, seed=3))["concise"]
    for r in rows:
        r["messages"].insert(0, {"role": "system", "content": SYSTEM})
        r["candidate_id"] = r["candidate_id"] * 2 + 1  # not 0..K-1: ids are keys, not positions
    long_answer = dict(rows[0], candidate_id=10, teacher="ramble")
    long_answer["messages"] = [*rows[0]["messages"][:2], {"role": "assistant", "content": "Let me think. " * 20}]
    long_prompt = dict(rows[3], candidate_id=11, teacher="chatty")
    long_prompt["messages"] = [
        {"role": "system", "content": SYSTEM + " Be thorough." * 15},
        *rows[3]["messages"][1:],
    ]
    return [*rows[:3], long_answer, *rows[3:6], long_prompt, *rows[6:]]


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("lark-pool") / "pool.jsonl", _records())


def _score(capsys, model_dir, data_args: list[str], output: Path, *extra: str) -> list[dict]:
    args = ["--model", model_dir, *data_args, "--output", str(output), "--accelerator", "cpu"]
    rc = score_lark.main([*args, "--max-length", str(MAX_LENGTH), *extra])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-3000:]
    assert "tokens/s" in captured.out
    return _read(output)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def scores_b1(sharp_model_dir, pool_file, tmp_path_factory) -> Path:
    """The batch-size-1 scores (module-scoped, so capsys is not available: call main directly)."""
    out = tmp_path_factory.mktemp("scores") / "b1.jsonl"
    args = ["--model", sharp_model_dir, "--data", str(pool_file), "--output", str(out), "--accelerator", "cpu"]
    assert score_lark.main([*args, "--max-length", str(MAX_LENGTH)]) == 0
    return out


# ------------------------------------------------------------------------------- reference semantics


def _reference_scores(model_dir: str, records: list[dict], max_length: int, top_k: int = 50) -> list[dict]:
    """methods.md 1.2-1.4, written from the spec: (L, brier, n_tokens, rho, g_hat) per record or None."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    stats = []
    for r in records:
        msgs = r["messages"]
        full = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
        prompt_msgs = [m for m in msgs if m["role"] != "assistant"]
        prompt = tok.apply_chat_template(prompt_msgs, tokenize=False, add_generation_prompt=True)
        full_ids = tok(full, truncation=True, max_length=max_length)["input_ids"]
        prompt_ids = tok(prompt, truncation=True, max_length=max_length)["input_ids"]
        p, t = len(prompt_ids), len(full_ids)
        if p >= t - 1:
            stats.append(None)
            continue
        with torch.no_grad():
            logits = model(torch.tensor([full_ids])).logits[0].float()
        z, y = logits[p - 1 : t - 1], torch.tensor(full_ids[p:t])
        ce = -torch.log_softmax(z, dim=-1)[torch.arange(len(y)), y]
        values, index = z.topk(top_k, dim=-1)
        q = torch.softmax(values, dim=-1)
        q_label = torch.where(index == y[:, None], q, torch.zeros_like(q)).sum(-1)
        brier = 1.0 - 2.0 * q_label + (q * q).sum(-1)
        stats.append({"L": ce.double().mean().item(), "brier": brier.double().mean().item(), "n_tokens": t - p})
    by_problem: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if stats[i] is not None:
            by_problem.setdefault(r["problem_id"], []).append(i)
    for rows in by_problem.values():
        s_l = sum(stats[i]["L"] for i in rows)
        s_b = sum(stats[i]["brier"] for i in rows)
        for i in rows:
            st = stats[i]
            st["rho"] = st["brier"] / st["L"]
            st["g_hat"] = (st["L"] / s_l) * (2 * st["rho"] - s_b / s_l)
    return stats


def _assert_same_stats(got: list[dict], want: list[dict], rel: float = 1e-5) -> None:
    assert [(r["problem_id"], r["candidate_id"], r["status"]) for r in got] == [
        (r["problem_id"], r["candidate_id"], r["status"]) for r in want
    ]
    for g, w in zip(got, want, strict=True):
        if w["L"] is None:
            assert g["L"] is None and g["brier"] is None and g["g_hat"] is None
            continue
        assert g["n_tokens"] == w["n_tokens"]
        assert g["L"] == pytest.approx(w["L"], rel=rel) and g["brier"] == pytest.approx(w["brier"], rel=rel)
        assert g["g_hat"] == pytest.approx(w["g_hat"], rel=1e-4, abs=1e-6)


# -------------------------------------------------------------------------------------------- score


def test_score_matches_reference_semantics(scores_b1, sharp_model_dir):
    records = _records()
    want = _reference_scores(sharp_model_dir, records, MAX_LENGTH)
    got = _read(scores_b1)
    assert [(r["problem_id"], r["candidate_id"], r["teacher"]) for r in got] == [
        (r["problem_id"], r["candidate_id"], r["teacher"]) for r in records
    ]
    statuses = [r["status"] for r in got]
    assert statuses.count("skipped") == 1 and statuses.count("truncated") == 1
    assert statuses[7] == "skipped" and statuses[3] == "truncated"
    for g, w in zip(got, want, strict=True):
        if w is None:
            assert g["L"] is None and g["brier"] is None and g["rho"] is None and g["g_hat"] is None
            assert g["n_tokens"] == 0
            continue
        assert g["n_tokens"] == w["n_tokens"]
        assert abs(g["L"] / w["L"] - 1) < 1e-5, (g, w)
        assert abs(g["brier"] / w["brier"] - 1) < 1e-5, (g, w)
        assert abs(g["rho"] / w["rho"] - 1) < 2e-5
        assert abs(g["g_hat"] - w["g_hat"]) < 1e-6, (g, w)
    # The scores discriminate: a broken ranking would show (the sharp model is far from uniform).
    g_hats = [g["g_hat"] for g in got if g["g_hat"] is not None]
    assert np.ptp(g_hats) > 1e-3


def test_batched_padding_and_packing_equal_batch_one(scores_b1, sharp_model_dir, pool_file, tmp_path, capsys):
    want = _read(scores_b1)
    data = ["--data", str(pool_file)]
    padded = _score(capsys, sharp_model_dir, data, tmp_path / "b4.jsonl", "--batch-size", "4")
    _assert_same_stats(padded, want)
    # Rows of 512 tokens hold all 4 sequences of a batch (each is 70-160 tokens): real packing.
    extra = ["--batch-size", "4", "--packing", "--pack-length", "512"]
    packed = _score(capsys, sharp_model_dir, data, tmp_path / "p4.jsonl", *extra)
    _assert_same_stats(packed, want)


def test_bfloat16_forward_is_close_but_not_identical(scores_b1, sharp_model_dir, pool_file, tmp_path, capsys):
    want = _read(scores_b1)
    got = _score(capsys, sharp_model_dir, ["--data", str(pool_file)], tmp_path / "bf16.jsonl", "--dtype", "bfloat16")
    pairs = [(g["L"], w["L"]) for g, w in zip(got, want, strict=True) if w["L"] is not None]
    rel = [abs(g / w - 1) for g, w in pairs]
    assert max(rel) < 0.05 and max(rel) > 0  # the bf16 path really ran in bf16


def test_score_from_training_config_source(scores_b1, sharp_model_dir, pool_file, tmp_path, capsys):
    # A training config, read as `fit` reads it (so it names a student, whose tokenizer it loads).
    cfg = {
        "model": {"student": {"path": str(sharp_model_dir)}},
        "data": {"sources": [{"name": "teachers", "path": str(pool_file), "problem_namespace": "numina"}]},
    }
    config = write_config(cfg, tmp_path / "train.yaml")
    got = _score(capsys, sharp_model_dir, ["--config", str(config), "--source", "teachers"], tmp_path / "c.jsonl")
    assert got == _read(scores_b1)  # same ids (namespace stripped), same numbers: one code path
    rc = score_lark.main(["--model", sharp_model_dir, "--config", str(config), "--source", "nope", "--output", "x"])
    assert rc == 1 and "'nope'" in capsys.readouterr().err


@pytest.mark.multiprocess
def test_two_processes_equal_one(scores_b1, sharp_model_dir, pool_file, tmp_path):
    out = tmp_path / "ddp.jsonl"
    args = ["score", "lark", "--model", sharp_model_dir, "--data", str(pool_file), "--output", str(out)]
    args += ["--max-length", str(MAX_LENGTH), "--devices", "2", "--accelerator", "cpu"]
    result = run_cli(args, timeout=240, env={"MASTER_PORT": str(free_port()), "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("wrote ") == 1  # only rank 0 writes
    # 13 rows scored by 2 ranks: one padded duplicate, never written; every row exactly once, in order.
    _assert_same_stats(_read(out), _read(scores_b1))


# ------------------------------------------------------------------------------------------- select


def _select(capsys, scores: Path, data_args: list[str], output: Path, *extra: str) -> tuple[int, str, str]:
    rc = select_lark.main(["--scores", str(scores), *data_args, "--output", str(output), *extra])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.mark.parametrize(("rule", "budget"), [("chi2", 2), ("chi2", 3), ("softmax", 2), ("hard", 1)])
def test_select_matches_select_pool(scores_b1, pool_file, tmp_path, capsys, rule, budget):
    out = tmp_path / "selected.jsonl"
    extra = ["--budget", str(budget), "--rule", rule, "--temperature", "0.01"]
    rc, stdout, err = _select(capsys, scores_b1, ["--data", str(pool_file)], out, *extra)
    assert rc == 0, err
    assert "entropy" in stdout
    scores = _read(scores_b1)
    g_hat = np.array([np.nan if s["g_hat"] is None else s["g_hat"] for s in scores])
    sel = select_pool([s["problem_id"] for s in scores], [s["candidate_id"] for s in scores], g_hat, budget, rule, 0.01)
    got = _read(out)
    assert len(got) == 4 * budget  # exactly B per problem
    records = _records()
    for line, row, weight in zip(got, sel.rows, sel.weights, strict=True):
        extra_fields = {"weight": line.pop("weight"), "lark_score": line.pop("lark_score")}
        assert line == records[row]  # the record as it was in the file, every original field
        assert extra_fields["weight"] == pytest.approx(weight, abs=1e-12)
        assert extra_fields["lark_score"] == g_hat[row]
    # Problems in input order; within a problem by descending score.
    firsts = list(dict.fromkeys(r["problem_id"] for r in got))
    assert firsts == list(dict.fromkeys(r["problem_id"] for r in records))
    for pid in firsts:
        mine = [r for r in _read(out) if r["problem_id"] == pid]
        assert [r["lark_score"] for r in mine] == sorted((r["lark_score"] for r in mine), reverse=True)
        assert sum(r["weight"] for r in mine) == pytest.approx(1.0, abs=1e-9)


def test_select_incomplete_problem_fails_unless_allowed(scores_b1, pool_file, tmp_path):
    # Problems hold 3 valid candidates (problem 1's 4th was skipped), so B = 4 is short everywhere but
    # problem 0. Run through the real entry point once, to cover the command dispatch.
    out = tmp_path / "sel.jsonl"
    args = ["select", "lark", "--scores", str(scores_b1), "--data", str(pool_file), "--budget", "4"]
    result = run_cli([*args, "--output", str(out)], timeout=120)
    assert result.returncode == 1
    assert "Selection incomplete" in result.stderr and "--allow-incomplete" in result.stderr
    result = run_cli([*args, "--output", str(out), "--allow-incomplete"], timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    counts: dict[str, int] = {}
    for r in _read(out):
        counts[r["problem_id"]] = counts.get(r["problem_id"], 0) + 1
    assert list(counts.values()) == [4, 3, 3, 3]


def test_select_from_training_config_source(scores_b1, sharp_model_dir, pool_file, tmp_path, capsys):
    rc, _, err = _select(capsys, scores_b1, ["--data", str(pool_file)], tmp_path / "a.jsonl", "--budget", "2")
    assert rc == 0, err
    cfg = {
        "model": {"student": {"path": str(sharp_model_dir)}},
        "data": {"sources": [{"name": "other", "path": "nowhere.jsonl"}, {"name": "pool", "path": str(pool_file)}]},
    }
    config = write_config(cfg, tmp_path / "train.yaml")
    data = ["--config", str(config), "--source", "pool"]
    rc, _, err = _select(capsys, scores_b1, data, tmp_path / "b.jsonl", "--budget", "2")
    assert rc == 0, err
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_select_join_errors_name_the_key(scores_b1, pool_file, tmp_path, capsys):
    lines = Path(scores_b1).read_text().splitlines()
    ghost = dict(json.loads(lines[0]), problem_id="ghost-problem", candidate_id=5)
    extra = write_jsonl(tmp_path / "extra.jsonl", [*lines, json.dumps(ghost)])
    rc, _, err = _select(capsys, extra, ["--data", str(pool_file)], tmp_path / "o.jsonl", "--budget", "1")
    assert rc == 1 and "'ghost-problem'" in err and "candidate_id=5" in err and "no row in the pool" in err
    missing = write_jsonl(tmp_path / "missing.jsonl", lines[:4] + lines[5:])
    rc, _, err = _select(capsys, missing, ["--data", str(pool_file)], tmp_path / "o.jsonl", "--budget", "1")
    key = json.loads(lines[4])
    assert rc == 1 and "has no score" in err
    assert f"problem_id={key['problem_id']!r}" in err and f"candidate_id={key['candidate_id']}" in err
    assert not (tmp_path / "o.jsonl").exists()
    # A pool whose key appears twice cannot be joined (nor scored): the error names the key and both rows.
    twice = write_jsonl(tmp_path / "twice.jsonl", [*_records(), _records()[0]])
    rc, _, err = _select(capsys, scores_b1, ["--data", str(twice)], tmp_path / "o.jsonl", "--budget", "1")
    # The loader catches it first (it is wrong for training too), naming both 1-based lines.
    assert rc == 1 and "line 1 and" in err and "both candidate" in err and "unique within a problem" in err
