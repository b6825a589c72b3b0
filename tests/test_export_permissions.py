"""An export is readable by others: files get 0666 minus the umask, not safetensors' private 0600."""

from __future__ import annotations

import os
import stat

import pytest

from lit_distill.export import write_student
from lit_distill.model.student import Student, StudentConfig, build_causal_lm

from helpers import TINY_LLAMA


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield 0o027
    os.umask(old)


def test_export_files_follow_the_umask(tokenizer, tokenizer_dir, tmp_path, umask_027):
    config = StudentConfig(tokenizer=str(tokenizer_dir), config={"model_type": "llama", **TINY_LLAMA})
    student = Student(build_causal_lm(config, vocab_size=len(tokenizer)))
    out = write_student(student, tokenizer, config, tmp_path / "hf")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.rglob("*") if p.is_file()}
    assert "model.safetensors" in modes
    assert set(modes.values()) == {0o640}, {name: oct(mode) for name, mode in modes.items()}
