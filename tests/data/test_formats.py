"""The dataset formats people have (OpenR1, GSM8K, ShareGPT, TRL, Alpaca) and data that must never be
silently wrong (issue 12 s3, issue 13 s2). Every error names the file, the 1-based line and the field."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from lit_distill.data.sources import SourceConfig, SourceError, _load_file, describe_source, load_source

from helpers import write_jsonl

Q = "What is 6 * 7?"


def _load(path, **kw):
    return load_source(SourceConfig(name="s", path=str(path), **kw))[0]


def _error(path, **kw) -> str:
    with pytest.raises(SourceError) as info:
        load_source(SourceConfig(name="s", path=str(path), **kw))
    return str(info.value)


# ---- formats -------------------------------------------------------------------------------------------
OPENR1 = {
    "problem": Q,
    "solution": "6 * 7 = 42. \\boxed{42}",
    "answer": "42",
    "generations": ["<think>6*7</think> \\boxed{42}", "it is \\boxed{41}", "so \\boxed{42}"],
    "correctness_math_verify": [True, False, True],
}


def test_openr1_generations_become_candidates_filtered_by_correctness(tmp_path):
    path = write_jsonl(tmp_path / "r1.jsonl", [OPENR1, {**OPENR1, "problem": "Q2?"}])
    ds = _load(path)
    assert len(ds) == 4  # 2 problems x the 2 generations marked correct; `solution` is not trained on
    assert ds["candidate_id"] == [0, 2, 0, 2] and ds["generation"] == [0, 2, 0, 2]
    assert ds[1]["messages"][-1] == {"role": "assistant", "content": "so \\boxed{42}"}
    assert len(set(ds["problem_id"])) == 2 and set(ds["answer"]) == {"42"}
    assert describe_source(SourceConfig(name="s", path=str(path)))[0].endswith("ignored: solution")


def test_openr1_messages_column_does_not_hide_the_generations(tmp_path):
    msgs = [{"role": "user", "content": Q}, {"role": "assistant", "content": OPENR1["generations"][0]}]
    ds = _load(write_jsonl(tmp_path / "r1.jsonl", [{**OPENR1, "messages": msgs}]))
    assert ds["generation"] == [0, 2]


def test_openr1_correctness_as_quality_or_ignored(tmp_path):
    path = write_jsonl(tmp_path / "r1.jsonl", [OPENR1])
    ds = _load(path, correctness="quality")
    assert ds["candidate_id"] == [0, 1, 2] and ds["correct"] == [1, 0, 1]
    assert _load(path, correctness="ignore")["correct"] == [-1, -1, -1]


def test_data_correctness_flags_become_pool_quality(tmp_path):
    from lit_distill.data.pool import with_quality

    # Flags say [1, 0, 1]; the answer checker would say [1, 0, 1] too, so mislabel one flag to tell them apart.
    row = {**OPENR1, "correctness_math_verify": [True, True, False]}
    path = write_jsonl(tmp_path / "r1.jsonl", [row])
    assert with_quality(_load(path, correctness="quality"))["quality"] == [1, 1, 0]  # the data's flags win
    assert with_quality(_load(path, correctness="ignore"))["quality"] == [1, 0, 1]  # answers checked


def test_openr1_misaligned_correctness_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "r1.jsonl", [OPENR1, {**OPENR1, "correctness_math_verify": [True]}])
    msg = _error(path)
    assert "line 2" in msg and "correctness_math_verify" in msg and "aligned with the 3 responses" in msg


def test_gsm8k_reference_comes_from_the_answer_column(tmp_path):
    rows = [{"question": f"Q{i}?", "answer": f"Half of {2 * i} is {i}.\n#### {i}"} for i in range(1, 4)]
    path = write_jsonl(tmp_path / "gsm8k.jsonl", rows)
    ds = _load(path)
    assert ds["answer"] == ["1", "2", "3"]
    assert ds[2]["messages"][-1]["content"] == "Half of 6 is 3.\n#### 3"
    ev = _load(path, require_response=False)  # as an evaluation set: prompts with their references
    assert ev["answer"] == ["1", "2", "3"] and [m["role"] for m in ev[0]["messages"]] == ["user"]


def test_sharegpt_conversations(tmp_path):
    conv = [
        {"from": "system", "value": "Be brief."},
        {"from": "human", "value": Q},
        {"from": "gpt", "value": "#### 42"},
    ]
    ds = _load(write_jsonl(tmp_path / "sg.jsonl", [{"conversations": conv}]))
    assert [m["role"] for m in ds[0]["messages"]] == ["system", "user", "assistant"]
    assert ds[0]["messages"][2]["content"] == "#### 42"


def test_trl_conversational_prompt_completion(tmp_path):
    row = {"prompt": [{"role": "user", "content": Q}], "completion": [{"role": "assistant", "content": "42"}]}
    ds = _load(write_jsonl(tmp_path / "trl.jsonl", [row]))
    assert ds[0]["messages"] == [{"role": "user", "content": Q}, {"role": "assistant", "content": "42"}]


def test_alpaca_input_is_part_of_the_prompt(tmp_path):
    rows = [{"instruction": "Add one.", "input": str(i), "output": str(i + 1)} for i in range(40)]
    rows.append({"instruction": "Say hi.", "input": "", "output": "hi"})
    ds = _load(write_jsonl(tmp_path / "alpaca.jsonl", rows))
    assert len(set(ds["problem_id"])) == 41  # not 1 problem with 40 candidates
    assert ds[3]["messages"][0]["content"] == "Add one.\n\n3"
    assert ds[40]["messages"][0]["content"] == "Say hi."


# ---- wrongly typed fields ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"messages": [{"role": "user", "content": 7}, {"role": "assistant", "content": "A"}]}, "messages[0].content"),
        ({"prompt": 7, "response": "A"}, "'prompt'"),
        ({"prompt": "Q", "response": "A", "teacher": ["t"]}, "'teacher'"),
        ({"prompt": "Q", "response": "A", "answer": {"x": 1}}, "'answer'"),
        ({"prompt": "Q", "response": "A", "problem_id": 1.5}, "'problem_id'"),
    ],
)
def test_wrongly_typed_field_names_file_line_and_field(tmp_path, row, field):
    good = {"prompt": "Q0", "response": "A0"}
    if "messages" in row:
        good = {"messages": [{"role": "user", "content": "Q0"}, {"role": "assistant", "content": "A0"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, row])
    msg = _error(path)
    assert str(path) in msg and "line 2" in msg and field in msg


# ---- data that is silently wrong -------------------------------------------------------------------------
def test_shared_problem_id_with_different_prompts_names_both_rows(tmp_path):
    rows = [
        {"problem_id": "p1", "prompt": Q, "response": "42"},
        {"problem_id": "p2", "prompt": "Other?", "response": "1"},
        {"problem_id": "p1", "prompt": "Something else?", "response": "42"},
    ]
    msg = _error(write_jsonl(tmp_path / "a.jsonl", rows))
    assert "line 1" in msg and "line 3" in msg and "'s/p1'" in msg and "different questions" in msg


def test_duplicate_candidate_ids_name_both_rows(tmp_path):
    row = {"problem_id": "p1", "candidate_id": 0, "prompt": Q, "response": "42"}
    msg = _error(write_jsonl(tmp_path / "a.jsonl", [row, {**row, "candidate_id": 1}, row]))
    assert "line 1" in msg and "line 3" in msg and "both candidate 0" in msg
    # An explicit id colliding with the order-of-appearance id of a row without one.
    rows = [{"problem_id": "p1", "prompt": Q, "response": "a"}, {**row, "candidate_id": 0}]
    assert "both candidate 0" in _error(write_jsonl(tmp_path / "b.jsonl", rows))


def test_directory_skips_notebook_checkpoints_and_symlinked_aliases(tmp_path):
    d = tmp_path / "d"
    write_jsonl(d / "a.jsonl", [{"prompt": Q, "response": "42"}])
    write_jsonl(d / ".ipynb_checkpoints" / "a-checkpoint.jsonl", [{"prompt": Q, "response": "42"}])
    os.symlink(d / "a.jsonl", d / "alias.jsonl")
    ds, files = load_source(SourceConfig(name="s", path=str(d)))
    assert files == [str(d / "a.jsonl")] and len(ds) == 1
    ds, files = load_source(SourceConfig(name="s", path=str(d / "*.jsonl")))
    assert files == [str(d / "a.jsonl")]


def test_large_jsonl_with_a_late_optional_field_and_a_late_type_change(tmp_path):
    path = tmp_path / "big.jsonl"
    pad = "x" * 2000
    with open(path, "w") as fh:
        for i in range(6000):  # > 10 MB, past datasets' schema-inference prefix
            fh.write(json.dumps({"prompt": f"Q{i} {pad}", "response": "A"}) + "\n")
        fh.write(json.dumps({"prompt": "late", "response": "A", "answer": 2}) + "\n")
        fh.write(json.dumps({"prompt": "later", "response": "A", "answer": "x=3", "teacher": "t"}) + "\n")
    assert path.stat().st_size > 10_000_000
    ds = _load(path)
    assert len(ds) == 6002 and ds["answer"][-2:] == ["2", "x=3"] and ds["teacher"][-1] == "t"


def test_empty_file_and_lone_surrogate(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    assert "empty" in _error(empty)
    path = tmp_path / "sur.jsonl"
    path.write_text('{"prompt": "Q", "response": "A"}\n{"prompt": "Q\\ud800", "response": "A"}\n')
    msg = _error(path)
    assert "line 2" in msg and "'prompt'" in msg and "lone surrogate" in msg


def test_assistant_first_and_multi_turn_rows_get_a_clear_message(tmp_path):
    first = [
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": Q},
        {"role": "assistant", "content": "4"},
    ]
    msg = _error(write_jsonl(tmp_path / "a.jsonl", [{"messages": first}]))
    assert "line 1" in msg and "must start with a user turn" in msg and "BPE" not in msg
    multi = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": Q},
        {"role": "assistant", "content": "42"},
    ]
    assert "multi-turn conversations are not supported" in _error(
        write_jsonl(tmp_path / "m.jsonl", [{"messages": multi}])
    )


@pytest.mark.parametrize("n", [0, -1])
def test_max_samples_must_be_positive(tmp_path, n):
    with pytest.raises(SourceError, match="max_samples must be >= 1"):
        SourceConfig(name="s", path="x.jsonl", max_samples=n)


def test_csv_na_and_integer_answers_stay_what_the_file_says(tmp_path):
    csv = tmp_path / "a.csv"
    pd.DataFrame({"prompt": ["Q1", "Q2"], "response": ["A", "B"], "answer": ["NA", "2"]}).to_csv(csv, index=False)
    assert _load(csv)["answer"] == ["NA", "2"]
    jsonl = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "Q", "response": "A", "answer": 2}])
    assert _load(jsonl)["answer"] == ["2"]
    pq = tmp_path / "a.parquet"  # pandas stores an integer column with a gap as float
    pd.DataFrame({"prompt": ["Q1", "Q2"], "response": ["A", "B"], "answer": [2, None]}).to_parquet(pq)
    assert _load(pq)["answer"] == ["2", ""]


def test_csv_multiline_cells_report_the_rows_first_line(tmp_path):
    csv = tmp_path / "a.csv"
    csv.write_text('prompt,response\n"Q1\nstill Q1",A\nQ2,\n')
    msg = _error(csv)
    assert "line 4" in msg and "assistant turn is empty" in msg


def test_rewritten_file_is_reloaded_not_served_from_cache(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "Q", "response": "A"}])
    assert _load(path)[0]["messages"][-1]["content"] == "A"
    write_jsonl(path, [{"prompt": "Q", "response": "B, longer"}])
    assert _load(path)[0]["messages"][-1]["content"] == "B, longer"


def test_raw_rows_line_up_with_the_records(tmp_path):
    # `score lark` and `select lark` key on (file, row) and read the original rows back through it.
    path = write_jsonl(tmp_path / "r1.jsonl", [OPENR1, {**OPENR1, "problem": "Q2?"}])
    ds = _load(path, correctness="quality")
    raw = _load_file(SourceConfig(name="s", path=str(path)), str(path))
    assert ds["row"] == list(range(6))  # (file, row) identifies a candidate, not just a line
    assert [raw[r]["problem"] for r in ds["row"]] == [Q] * 3 + ["Q2?"] * 3
    assert [raw[r]["generations"] for r in ds["row"][:3]] == OPENR1["generations"]
    assert [raw[r]["correctness_math_verify"] for r in ds["row"][:3]] == [True, False, True]
    filtered = _load(path)  # the filter keeps the indices of the candidates it keeps
    assert filtered["row"] == [0, 2, 3, 5]


def test_json_array_rows_are_located_by_line(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[\n  {"prompt": "Q1", "response": "A"},\n  {"prompt": "Q2",\n   "response": 5}\n]\n')
    msg = _error(path)
    assert "line 3" in msg and "'response' must be a string" in msg


def test_gsm8k_with_an_explicit_mapping(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"q": "Q?", "sol": "so \\boxed{7}"}])
    ds = _load(path, fields={"prompt": "q", "response": "sol", "answer": "sol"})
    assert ds["answer"] == ["7"]


def test_sharegpt_unknown_role_names_the_field(tmp_path):
    conv = [{"from": "human", "value": Q}, {"from": "robot", "value": "42"}]
    msg = _error(write_jsonl(tmp_path / "sg.jsonl", [{"conversations": conv}]))
    assert "line 1" in msg and "conversations[1].from" in msg and "'robot'" in msg
