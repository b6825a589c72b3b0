"""``lit-distill data``: mapping and ignored columns, each source once, --tokenizer with a config, bare
files without a tokenizer, and one-line errors for config mistakes."""

from __future__ import annotations

import logging

import yaml

from lit_distill.tools import data as data_tool

from helpers import tiny_config, write_jsonl

GSM = [{"question": f"Q{i}?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}", "extra": i} for i in range(4)]


def test_bare_file_needs_no_tokenizer_and_prints_the_mapping(tmp_path, capsys):
    path = write_jsonl(tmp_path / "gsm.jsonl", GSM)
    assert data_tool.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "prompt <- question" in out and "response <- answer" in out and "ignored: extra" in out
    assert "####" in out  # the reference answer comes from the solution's final line
    assert "no tokenizer" in out and "100%" in out  # 4 rows with an answer, all correct


def test_bare_file_with_a_tokenizer_has_lengths(tmp_path, tokenizer_dir, capsys):
    path = write_jsonl(tmp_path / "gsm.jsonl", GSM)
    assert data_tool.main([str(path), "--tokenizer", str(tokenizer_dir)]) == 0
    out = capsys.readouterr().out
    assert "tok mean" in out and "no tokenizer" not in out


def test_config_sources_printed_once_and_tokenizer_override(tmp_path, pool_dir, tokenizer_dir, capsys, caplog):
    cfg = tiny_config(pool_dir, tmp_path / "no-such-tokenizer", tmp_path)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with caplog.at_level(logging.INFO):
        assert data_tool.main([str(path), "--tokenizer", str(tokenizer_dir)]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("concise ")]
    assert len(table) == 1  # one table row; the datamodule's per-source log line is not repeated
    assert not [r for r in caplog.records if r.name == "lit_distill.data.datamodule" and "concise" in r.message]
    assert sum(line.startswith("concise: ") for line in out.splitlines()) == 1  # its column mapping


def test_config_typo_is_one_line_with_a_suggestion(tmp_path, pool_dir, tokenizer_dir, capsys):
    cfg = tiny_config(pool_dir, tokenizer_dir, tmp_path)
    cfg["data"]["max_lenght"] = cfg["data"].pop("max_length")
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert data_tool.main([str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_lenght" in err[0] and "did you mean 'data.max_length'" in err[0]


def test_bad_row_and_missing_config_are_one_line(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q", "response": "A"}, {"prompt": 3, "response": "A"}])
    assert data_tool.main([str(bad), str(tmp_path / "nope.yaml")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert "nope.yaml: no such config file" in err[0]
    assert "bad.jsonl, line 2: field 'prompt' must be a string" in err[1]
