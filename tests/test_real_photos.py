"""Every notebook's "On real photographs" section, run in this process with the notebook's
import cell first: once with random weights of the same architectures cached under torchvision's
file names (so every code path runs and the identity assertions are checked; the claims that
need trained weights are only printed), once with nothing cached and no network (each model is
skipped with one line). The download and the reachability probe are patched: no test touches
the network."""

from __future__ import annotations

import os
import re
import time
import urllib.error
from pathlib import Path

import matplotlib
import pytest
import torch

from cvlib import pretrained

matplotlib.use("Agg")
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SECTIONS = {  # notebook -> the catalogue models its section loads
    "01_attention_and_vit": ["vit_b_16"],
    "03_semantic_segmentation": ["lraspp_mobilenet_v3_large"],
    "05_rcnn_family": ["fasterrcnn_mobilenet_v3_large_320_fpn"],
    "06_yolo": ["ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn"],
    "08_mask_rcnn": ["maskrcnn_resnet50_fpn"],
    "09_visualizing_cnns": ["resnet18"],
    "11_understanding_cnns": ["vgg16"],
}


def section_cells(notebook: str) -> list[str]:
    """The notebook's import cell (its second code cell, after the Colab cell) and the code cells
    of its "On real photographs" section, from the jupytext twin."""
    text = (NOTEBOOKS / f"{notebook}.py").read_text()
    cells = re.split(r"^# %%", text, flags=re.M)[1:]
    code = [c for c in cells if not c.startswith(" [markdown]")]
    start = next(i for i, c in enumerate(cells) if "## On real photographs" in c)
    end = next(i for i, c in enumerate(cells) if i > start and c.startswith(" [markdown]\n# ## "))
    section = [c for c in cells[start:end] if not c.startswith(" [markdown]")]
    assert section, f"{notebook} has no code in its real-photo section"
    return [code[1], *section]


def run_section(notebook: str) -> float:
    """Execute the cells; return the seconds the section took (the import cell not counted)."""
    import matplotlib.pyplot as plt

    namespace: dict = {"__name__": "__main__"}
    cells = section_cells(notebook)
    exec(compile(cells[0], f"{notebook}:imports", "exec"), namespace)
    start = time.perf_counter()
    for k, cell in enumerate(cells[1:], start=1):
        exec(compile(cell, f"{notebook}:section cell {k}", "exec"), namespace)
        plt.close("all")
    return time.perf_counter() - start


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(pretrained, "_reachable", lambda url, timeout=5.0: False)

    def no_download(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)


@pytest.fixture(scope="module")
def random_torch_home(tmp_path_factory):
    """A $TORCH_HOME whose cache holds random weights for every model the sections load."""
    home = tmp_path_factory.mktemp("torch_home")
    old = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(home)
    for name in sorted({n for names in SECTIONS.values() for n in names}):
        pretrained.write_random_weights(name)
    yield home
    if old is None:
        del os.environ["TORCH_HOME"]
    else:
        os.environ["TORCH_HOME"] = old


@pytest.mark.parametrize("notebook", list(SECTIONS))
def test_section_runs_with_random_weights(notebook, random_torch_home, offline, capsys):
    seconds = run_section(notebook)
    out = capsys.readouterr().out
    for name in SECTIONS[notebook]:
        assert f"{name}: " in out and "NOT genuine" in out, out
    assert "skipped" not in out, out
    with capsys.disabled():
        print(f"\n{notebook}: real-photo section {seconds:.1f} s with random weights")


@pytest.mark.parametrize("notebook", list(SECTIONS))
def test_section_offline_skips_each_model_in_one_line(notebook, tmp_path, monkeypatch, offline, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    run_section(notebook)
    lines = [line for line in capsys.readouterr().out.splitlines() if "skipped: offline" in line]
    assert sorted(line.split(":")[0] for line in lines) == sorted(SECTIONS[notebook])
