"""End-to-end: every notebook in JupyterLab in headless Chromium, every explorer moved once.

For each notebook this starts from a temporary copy (so Lab's autosave never touches the
repository), runs all cells, waits for the kernel, checks that no cell shows a traceback, then
for every explorer (a cell with ipywidgets controls under a figure) presses ArrowRight on its
first slider (or picks the next option of its first dropdown) and waits until the figure's
image changes; the round trip (key press to new pixels) is recorded in
``tests/browser/artifacts/widgets_browser.json`` (``make bench`` copies it to ``bench/results/``)
and screenshots go to ``tests/browser/artifacts/``.

First, each notebook is opened as committed, without running it, as a reader on GitHub or Colab
first sees it: the browser console must show no widget error ("Could not instantiate widget",
"... is not registered") and the page no raw widget text (``VBox(children=...``), only the
static figures and the "Run this cell to explore" line under each.

Run with ``make browser-test`` (installs Debian's chromium and Playwright's Python package):
JupyterLab 4 and ipywidgets 8, from ``.venv``. ``make browser-test WIDGETS=7`` runs the same
tests against Colab's widget front end, ipywidgets 7.7 in JupyterLab 3.6 (``.venv-widgets7``);
its timings and screenshots go to ``tests/browser/artifacts/widgets7/``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import ipywidgets
import jupyterlab
import pytest

LAB_MAJOR = int(jupyterlab.__version__.split(".")[0])  # 4, or 3 for ipywidgets 7
WIDGETS_MAJOR = int(ipywidgets.__version__.split(".")[0])
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / ("widgets7" if WIDGETS_MAJOR == 7 else "")
RESULTS = ARTIFACTS / "widgets_browser.json"
NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
CHROMIUM = "/usr/bin/chromium"
TOKEN = "cvlib-browser-test"
RUN_TIMEOUT_S = 480
STEP_ATTEMPTS = 6  # key presses before an explorer counts as dead (a step may change nothing,
# e.g. a score threshold that crosses no detection)

pytestmark = pytest.mark.skipif(
    not os.environ.get("CVLIB_BROWSER_TESTS"), reason="browser tests run with `make browser-test`"
)
WIDGET_MANAGER = "@jupyter-widgets/jupyterlab-manager"  # the front end of ipywidgets 7 and 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free local port over a copy of notebooks/; stopped afterwards.

    ``make browser-test WIDGETS=7`` sets CVLIB_WIDGETS=7: the server and its kernels must then
    really have ipywidgets 7 (and JupyterLab 3, the only one whose front end it has)."""
    asked = int(os.environ.get("CVLIB_WIDGETS", WIDGETS_MAJOR))
    assert WIDGETS_MAJOR == asked, f"ipywidgets {ipywidgets.__version__}, asked for {asked}"
    assert LAB_MAJOR == (3 if WIDGETS_MAJOR == 7 else 4), f"JupyterLab {jupyterlab.__version__}"
    workdir = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", workdir / "notebooks")
    settings = workdir / "settings" / "@jupyterlab"
    for extension, name, value in [
        ("apputils-extension", "notification", {"fetchNews": "false"}),  # no news pop-up
        # render every cell (JupyterLab 3 always does, and rejects the setting)
        *([("notebook-extension", "tracker", {"windowingMode": "none"})] if LAB_MAJOR >= 4 else []),
    ]:
        (settings / extension).mkdir(parents=True)
        (settings / extension / f"{name}.jupyterlab-settings").write_text(json.dumps(value))
    port = _free_port()
    env = dict(os.environ, TQDM_DISABLE="1", JUPYTER_CONFIG_DIR=str(workdir / "config"))
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1",
         f"--port={port}",
         f"--IdentityProvider.token={TOKEN}", f"--LabApp.user_settings_dir={workdir / 'settings'}",
         f"--ServerApp.root_dir={workdir / 'notebooks'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(lambda: _status_ok(url), 60, "JupyterLab did not start")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _status_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _wait_for(condition, timeout: float, message: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(message)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def timings():
    results = {}
    yield results
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    slowest = max((t for nb in results.values() for t in nb.values()), default=None)
    RESULTS.write_text(json.dumps(
        {"what": "browser round trip of one widget step (key press to new image), seconds",
         "slowest": slowest, "notebooks": results}, indent=2) + "\n")


def _run_all(page) -> None:
    """Run > Run All Cells, from the menu bar, as a reader does."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def _executed(page) -> bool:
    """All code cells show an execution count and none is still queued or running."""
    prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
    return bool(prompts) and all(p.strip() not in ("[ ]:", "[*]:", "") for p in prompts)


def _explorers(page):
    """Cells that hold widget controls below an image: the notebook's explorers."""
    cells = page.locator(".jp-CodeCell").filter(has=page.locator(".widget-slider, .widget-dropdown"))
    return [cells.nth(k) for k in range(cells.count())]


def _image_src(cell) -> str:
    return cell.locator(".jp-OutputArea-output img").first.get_attribute("src") or ""


def _step(page, cell, attempt: int = 0) -> None:
    """Move the first slider one step (right, or left on odd attempts: a slider that opens at
    its maximum cannot go right), or pick the next option of the first dropdown."""
    handles = cell.locator(".noUi-handle, .ui-slider-handle")
    if handles.count():
        handles.first.focus()
        page.keyboard.press("ArrowRight" if attempt % 2 == 0 else "ArrowLeft")
        return
    select = cell.locator(".widget-dropdown select").first
    options = select.locator("option").all_inner_texts()
    current = select.input_value()
    select.select_option(label=options[(options.index(current) + 1) % len(options)])


WIDGET_ERRORS = ("Could not instantiate widget", "is not registered", "Error displaying widget",
                 "Model not found", "widget-view")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_unrun_notebook_shows_no_widget_errors(lab, browser, name):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.goto(f"{lab}/lab/workspaces/unrun-{Path(name).stem}/tree/{name}?reset&token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    time.sleep(3)  # let the widget manager try (and fail, if it would) to restore views
    outputs = " ".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    config = json.loads(page.locator("#jupyter-config-data").text_content())
    page.close()
    # without the widget manager nothing would try to restore a widget, and nothing could fail
    loaded = [e["name"] for e in config.get("federated_extensions", [])]
    assert WIDGET_MANAGER in loaded, f"{WIDGET_MANAGER} is not loaded: {loaded}"
    problems = []
    if "VBox(children" in outputs or "Slider(value" in outputs:
        problems.append("raw widget text")
    problems += [f"shown: {e}" for e in WIDGET_ERRORS if e in outputs]
    problems += [line for line in console if any(e in line for e in WIDGET_ERRORS)][:3]
    explorers = json.loads((ROOT / "notebooks" / name).read_text()).get("cells", [])
    expected = sum("explore(" in "".join(c["source"]) for c in explorers if c["cell_type"] == "code")
    if outputs.count("Run this cell to explore") < min(expected, 1):
        problems.append("no 'run to explore' line")
    assert not problems, f"{name} (ipywidgets {ipywidgets.__version__}): {problems}"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_widgets_respond(lab, browser, timings, name):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # a workspace of its own, reset: only this notebook is open (Lab restores earlier tabs)
    page.goto(f"{lab}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=60_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
    page.locator(".jp-Notebook").first.click()
    _run_all(page)
    time.sleep(1)
    _wait_for(lambda: _executed(page), RUN_TIMEOUT_S, f"{name}: cells did not finish", 1.0)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)

    outputs = " ".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Traceback" not in outputs, f"{name}: a cell raised an error"

    explorers = _explorers(page)
    timings[name] = {}
    for k, cell in enumerate(explorers):
        cell.scroll_into_view_if_needed()
        before = _image_src(cell)
        assert before, f"{name}: explorer {k} shows no figure"
        redrawn = lambda cell=cell, before=before: _image_src(cell) != before
        for attempt in range(STEP_ATTEMPTS):  # one step may legitimately change nothing
            start = time.perf_counter()
            _step(page, cell, attempt)
            try:
                timeout = 3 if attempt < STEP_ATTEMPTS - 1 else 30
                _wait_for(redrawn, timeout, f"{name}: explorer {k} did not redraw", 0.01)
                break
            except TimeoutError:
                if attempt == STEP_ATTEMPTS - 1:
                    raise
        timings[name][f"explorer_{k}"] = round(time.perf_counter() - start, 3)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{Path(name).stem}.png"), full_page=True)
    page.close()
