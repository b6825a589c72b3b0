"""Path resolution (lit_distill/paths.py): registered schemes resolve lazily, so core code never imports the demo."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from lit_distill import paths

from helpers import REPO


def test_plain_paths_pass_through_with_home_expanded():
    assert paths.resolve_path("~/x") == os.path.expanduser("~/x")
    assert paths.resolve_path("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"  # hub ids untouched
    assert paths.resolve_path(None) is None
    assert paths.scheme_of("demo://tokenizer") == "demo://" and paths.scheme_of("/a/b") is None


def test_a_registered_scheme_is_imported_on_first_use(monkeypatch):
    module = types.ModuleType("fake_lab_assets")
    module.resolve = lambda p: "/data/" + p.removeprefix("lab://")
    monkeypatch.setitem(sys.modules, "fake_lab_assets", module)
    monkeypatch.setattr(paths, "_RESOLVERS", dict(paths._RESOLVERS))
    paths.register_scheme("lab://", "fake_lab_assets:resolve")
    assert paths.resolve_path("lab://pool.jsonl") == "/data/pool.jsonl"
    with pytest.raises(ValueError, match="://"):
        paths.register_scheme("lab", "fake_lab_assets:resolve")


def test_core_modules_do_not_import_the_demo():
    code = (
        "import sys, lit_distill.model.module, lit_distill.data.datamodule, lit_distill.checkpoint, "
        "lit_distill.export; print(sorted(m for m in sys.modules if m.startswith('lit_distill.demo')))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"
