"""Checks the DataModule makes across sources before tokenising, with 1-based file lines in the messages."""

from __future__ import annotations

import pytest

from lit_distill.data.datamodule import DistillDataModule
from lit_distill.data.sources import SourceConfig, SourceError

from helpers import write_jsonl


def _row(pid, question, answer="3"):
    msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": f"#### {answer}"}]
    return {"problem_id": pid, "messages": msgs, "answer": answer}


def test_shared_namespace_problem_ids_must_ask_the_same_question(tmp_path, tokenizer_dir):
    a = write_jsonl(tmp_path / "a.jsonl", [_row("p1", "What is 1 + 2?"), _row("p2", "What is 2 + 2?", "4")])
    b = write_jsonl(tmp_path / "b.jsonl", [_row("p2", "What is 2 + 2?", "4"), _row("p1", "What is 9 - 6?")])
    sources = [SourceConfig(name=n, path=str(p), problem_namespace="shared") for n, p in (("a", a), ("b", b))]
    with pytest.raises(SourceError, match=r"a\.jsonl, line 1 and .*b\.jsonl, line 2 share problem_id 'shared/p1'"):
        DistillDataModule(sources, tokenizer=tokenizer_dir).build_pool()
    # Without the shared namespace the ids differ (a/p1, b/p1): two problems, no error.
    own = [SourceConfig(name=n, path=str(p)) for n, p in (("a", a), ("b", b))]
    assert DistillDataModule(own, tokenizer=tokenizer_dir).build_pool().summary()[1].problems == 2


def test_eval_row_without_answer_names_its_file_line(tmp_path, tokenizer_dir, pool_dir):
    rows = [_row("q1", "What is 1 + 2?"), {"messages": [{"role": "user", "content": "What is 5 + 5?"}]}]
    bad = write_jsonl(tmp_path / "eval.jsonl", rows)
    dm = DistillDataModule(
        [SourceConfig(name="concise", path=str(pool_dir / "concise.jsonl"))],
        tokenizer=tokenizer_dir,
        eval_sources=[SourceConfig(name="ev", path=str(bad))],
    )
    with pytest.raises(ValueError, match=r"'ev': .*eval\.jsonl, line 2 has no reference answer \(1 rows"):
        dm.build_prompts()
