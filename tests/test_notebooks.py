"""Notebook hygiene: every .ipynb has an identical py:percent twin, starts with the Colab cell,
is committed executed, and has a row with a Colab badge in the README."""

import json
import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
TWINS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
ids = [p.stem for p in NOTEBOOKS]


def test_every_notebook_has_a_twin_and_back():
    assert NOTEBOOKS, "no notebooks found"
    assert [p.stem for p in NOTEBOOKS] == [p.stem for p in TWINS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_py_twin_equals_notebook(path):
    """Code and markdown of the .ipynb and the committed .py are the same (jupytext pairing)."""
    expected = jupytext.writes(jupytext.read(path), fmt="py:percent")
    committed = path.with_suffix(".py").read_text()
    assert committed == expected, f"{path.name} and its .py differ: run `make notebooks NB={path.stem}`"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_first_code_cell_installs_on_colab(path):
    cells = json.loads(path.read_text())["cells"]
    first_code = next(c for c in cells if c["cell_type"] == "code")
    assert 'if "google.colab" in sys.modules:' in "".join(first_code["source"])
    assert cells[0]["cell_type"] == "markdown", "a notebook opens with what the reader will learn"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_executed_with_kernelspec(path):
    """nbval fails on cells with outputs but no execution count; readers want the figures."""
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["execution_count"] is not None for c in code), "execute with `make notebooks`"
    assert any(o.get("data", {}).get("image/png") for c in code for o in c["outputs"]), "no figure"
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_readme_lists_notebook_with_colab_badge(path):
    readme = (ROOT / "README.md").read_text()
    badge = re.escape(f"/blob/main/notebooks/{path.name})")
    assert re.search(r"colab\.research\.google\.com/github/[^)]*" + badge, readme), path.name
