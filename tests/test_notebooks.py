"""Notebook hygiene: every .ipynb has an identical py:percent twin, starts with the same Colab
cell (pointing at pyproject's repository), is committed executed without widget state, and has
a row with a Colab badge in the README."""

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


def _colab_cell(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


def _repository() -> str:
    return re.search(r'^Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_colab_cell_is_the_same_everywhere_and_points_at_the_repository(path):
    """One Colab cell, copied verbatim; its URL is pyproject's (`make colab-url URL=...`)."""
    first = NOTEBOOKS[0]
    assert _colab_cell(path) == _colab_cell(first), f"{path.name}: copy the Colab cell of {first.name}"
    assert f'REPOSITORY = "{_repository()}"' in _colab_cell(path)
    assert "raise SystemExit" in _colab_cell(path), "a failed clone must stop the notebook with one line"


def test_readme_badges_point_at_the_repository():
    slug = _repository().removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text()
    badges = re.findall(r"colab\.research\.google\.com/github/([^)]*?)/blob/", readme)
    assert badges and set(badges) == {slug}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_committed_without_widget_state(path):
    """Colab's ipywidgets 7 cannot load the state 8 saves: no state, no widget views, no reprs;
    each explorer leaves its plain-text line instead (tools/strip_widget_state.py)."""
    nb = json.loads(path.read_text())
    assert "widgets" not in nb["metadata"], f"{path.name}: widget state saved; run `make notebooks`"
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    texts = ["".join(o.get("data", {}).get("text/plain", "")) + "".join(o.get("text", "")) for o in outputs]
    assert not [t for t in texts if re.search(r"\b(VBox|HBox|IntSlider|FloatSlider|Dropdown)\(", t)]
    explorers = sum("explore(" in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert sum("Run this cell to explore" in t for t in texts) >= explorers


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
