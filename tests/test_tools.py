"""tools/: the repository URL is changed everywhere by one command; widget state is stripped."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def repo_copy(tmp_path, monkeypatch):
    """pyproject, README and two notebooks (both twins) in a temporary folder."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "notebooks").mkdir()
    for stem in ("00_tasks_and_data", "02_upsampling"):
        for suffix in (".py", ".ipynb"):
            shutil.copy(ROOT / "notebooks" / f"{stem}{suffix}", tmp_path / "notebooks" / f"{stem}{suffix}")
    module = _load("set_repository")
    monkeypatch.setattr(module, "ROOT", tmp_path)
    return module, tmp_path


def test_set_repository_rewrites_every_copy(repo_copy):
    module, root = repo_copy
    old = module.current_repository()
    changed = module.set_repository("https://github.com/some-course/cv-fork/")
    assert module.current_repository() == "https://github.com/some-course/cv-fork"
    assert {p.name for p in changed} == {"pyproject.toml", "README.md", "00_tasks_and_data.py",
                                         "00_tasks_and_data.ipynb", "02_upsampling.py", "02_upsampling.ipynb"}
    text = "".join(p.read_text() for p in root.rglob("*") if p.is_file())
    assert old not in text and "colab.research.google.com/github/some-course/cv-fork/blob/main" in text
    cell = json.loads((root / "notebooks" / "02_upsampling.ipynb").read_text())["cells"][1]
    assert 'REPOSITORY = "https://github.com/some-course/cv-fork"' in "".join(cell["source"])


def test_set_repository_rejects_what_colab_cannot_open(repo_copy):
    module, _ = repo_copy
    with pytest.raises(SystemExit, match="OWNER/NAME"):
        module.set_repository("https://gitlab.com/a/b")


def test_strip_widget_state_keeps_the_text_line():
    module = _load("strip_widget_state")
    view = {"version_major": 2, "version_minor": 0, "model_id": "abc"}
    notebook = {"metadata": {"widgets": {"state": {}}}, "cells": [
        {"cell_type": "code", "outputs": [{"output_type": "display_data", "data": {
            module.WIDGET_VIEW: view, "text/plain": "Run this cell to explore"}}]}]}
    stripped = module.strip(notebook)
    assert "widgets" not in stripped["metadata"]
    assert stripped["cells"][0]["outputs"][0]["data"] == {"text/plain": "Run this cell to explore"}


def test_runtime_start_sets_one_thread_and_seeds(monkeypatch, capsys):
    import torch

    from cvlib import runtime

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv(runtime.THREADS_VARIABLE, raising=False)
        assert runtime.start(seed=3).type in ("cpu", "cuda")
        assert torch.get_num_threads() == 1 and "1 CPU thread" in capsys.readouterr().out
        first = torch.rand(3)
        monkeypatch.setenv(runtime.THREADS_VARIABLE, "2")
        runtime.start(seed=3)
        assert torch.get_num_threads() == 2 and torch.equal(torch.rand(3), first)
        monkeypatch.setenv(runtime.THREADS_VARIABLE, "many")
        with pytest.raises(ValueError, match="CVLIB_THREADS"):
            runtime.start()
        with pytest.raises(ValueError, match="threads"):
            runtime.start(threads=0)
    finally:
        torch.set_num_threads(before)
