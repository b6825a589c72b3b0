"""Sources: formats, field mappings, and a clear error (file, row, field) for every kind of bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lit_distill.data.sources import SourceConfig, SourceError, check_source_names, load_source

from helpers import write_jsonl

ROW = {
    "problem_id": "p1",
    "candidate_id": 0,
    "teacher": "t",
    "messages": [{"role": "user", "content": "What is 1 + 1?"}, {"role": "assistant", "content": "#### 2"}],
    "answer": "2",
}


def test_messages_schema_round_trip(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [ROW, {**ROW, "candidate_id": 1}])
    ds, files = load_source(SourceConfig(name="a", path=str(path)))
    assert files == [str(path)]
    assert ds[0]["problem_id"] == "a/p1" and ds[1]["candidate_id"] == 1
    assert ds[0]["messages"][-1] == {"role": "assistant", "content": "#### 2"}
    assert ds[0]["answer"] == "2" and ds[0]["teacher"] == "t"


def test_prompt_response_pairs_and_detection(tmp_path):
    rows = [{"question": "Q1?", "solution": "S1", "final_answer": "1"}, {"question": "Q1?", "solution": "S2"}]
    path = write_jsonl(tmp_path / "qs.jsonl", rows)
    ds, _ = load_source(SourceConfig(name="qs", path=str(path), system_prompt="Be brief."))
    assert [m["role"] for m in ds[0]["messages"]] == ["system", "user", "assistant"]
    # No problem_id column: the same question is the same problem; candidate ids by order of appearance.
    assert ds[0]["problem_id"] == ds[1]["problem_id"]
    assert ds["candidate_id"] == [0, 1]
    assert ds["answer"] == ["1", ""]


def test_explicit_field_mapping(tmp_path):
    rows = [{"inp": "Q?", "out": "A", "gold": "7", "pid": 3}]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    cfg = SourceConfig(
        name="m",
        path=str(path),
        fields={"prompt": "inp", "response": "out", "answer": "gold", "problem_id": "pid"},
    )
    ds, _ = load_source(cfg)
    assert ds[0]["problem_id"] == "m/3" and ds[0]["answer"] == "7"


@pytest.mark.parametrize("fmt", ["json", "parquet", "csv"])
def test_other_formats(tmp_path, fmt):
    rows = [{"prompt": f"Q{i}?", "response": f"A{i}", "answer": str(i)} for i in range(3)]
    path = tmp_path / f"x.{fmt}"
    if fmt == "json":
        path.write_text(json.dumps(rows))
    elif fmt == "parquet":
        pd.DataFrame(rows).to_parquet(path)
    else:
        pd.DataFrame(rows).to_csv(path, index=False)
    ds, _ = load_source(SourceConfig(name="x", path=str(path)))
    assert len(ds) == 3 and ds[2]["messages"][1]["content"] == "A2"


def test_directory_glob_and_namespace(tmp_path):
    write_jsonl(tmp_path / "d" / "part1.jsonl", [ROW])
    write_jsonl(tmp_path / "d" / "part2.jsonl", [{**ROW, "candidate_id": 5}])
    ds, files = load_source(SourceConfig(name="d", path=str(tmp_path / "d"), problem_namespace="shared"))
    assert len(files) == 2 and ds["file"] == [0, 1] and ds["problem_id"] == ["shared/p1", "shared/p1"]
    ds2, _ = load_source(SourceConfig(name="g", path=str(tmp_path / "d" / "part*.jsonl")))
    assert len(ds2) == 2


def test_max_samples_keeps_whole_problems(tmp_path):
    rows = [{**ROW, "problem_id": f"p{i // 3}", "candidate_id": i % 3} for i in range(30)]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    ds, _ = load_source(SourceConfig(name="a", path=str(path), max_samples=10, seed=3))
    assert len(ds) == 9  # three whole problems (3 candidates each) fit in 10 rows
    counts = pd.Series(ds["problem_id"]).value_counts()
    assert (counts == 3).all()


# ---- bad input: every error names the file, the row and the field ------------------------------------
def _error(tmp_path, rows, **kw) -> str:
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(SourceError) as info:
        load_source(SourceConfig(name="bad", path=str(path), **kw))
    msg = str(info.value)
    assert str(path) in msg
    return msg


def test_malformed_json_names_row_and_line(tmp_path):
    msg = _error(tmp_path, [json.dumps(ROW), json.dumps(ROW), '{"messages": [oops'])
    assert "line 3" in msg and "malformed JSON" in msg and "source 'bad'" in msg


def test_missing_field(tmp_path):
    row = {"question": "Q?"}
    msg = _error(tmp_path, [row])
    assert "no response column" in msg


def test_null_field_names_row(tmp_path):
    msg = _error(tmp_path, [{"prompt": "Q", "response": "A"}, {"prompt": "Q2", "response": None}])
    assert "line 2" in msg and "'response'" in msg and "missing" in msg  # 1-based file lines everywhere


def test_wrong_type(tmp_path):
    bad = {**ROW, "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": ["list"]}]}
    msg = _error(tmp_path, [ROW, bad])
    assert "line 2" in msg and "messages[1].content" in msg and "must be a string" in msg


def test_wrong_candidate_id_type(tmp_path):
    msg = _error(tmp_path, [ROW, {**ROW, "candidate_id": "zero"}])
    assert "line 2" in msg and "candidate_id" in msg


def test_empty_assistant_turn(tmp_path):
    bad = {**ROW, "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "  "}]}
    msg = _error(tmp_path, [bad])
    assert "line 1" in msg and "assistant turn is empty" in msg


def test_unknown_role_and_missing_assistant(tmp_path):
    msg = _error(tmp_path, [{**ROW, "messages": [{"role": "robot", "content": "Q"}]}])
    assert "messages[0].role" in msg
    msg = _error(tmp_path, [{**ROW, "messages": [{"role": "user", "content": "Q"}]}])
    assert "does not end with an assistant turn" in msg


def test_mapped_column_missing(tmp_path):
    msg = _error(tmp_path, [ROW], fields={"answer": "gold"})
    assert "'gold'" in msg


def test_missing_file_and_unknown_source_name(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        load_source(SourceConfig(name="x", path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(SourceError, match=r"\['ghost'\].*not in the pool"):
        check_source_names(["concise", "ghost"], ["concise", "hard"], "mixture.weights")


def test_eval_source_without_response(tmp_path):
    path = write_jsonl(tmp_path / "e.jsonl", [{"messages": [{"role": "user", "content": "Q"}], "answer": "1"}])
    ds, _ = load_source(SourceConfig(name="e", path=str(path), require_response=False))
    assert ds[0]["messages"] == [{"role": "user", "content": "Q"}]
