"""Student versions (assignments/) of the notebooks: up to date with the solution notebooks, and
the "Your turn" section of each runs: with the solutions every check passes, with the stubs
every check says "not implemented yet". Only that section runs (its import cell, the tasks and
the checks), not the whole notebook."""

import contextlib
import importlib.util
import io
import re
from pathlib import Path

import jupytext
import pytest

from cvlib.exercises import NAMES

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("make_assignments", ROOT / "tools" / "make_assignments.py")
make_assignments = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_assignments)

SOLUTIONS = make_assignments.solution_notebooks()
ids = [path.stem for path in SOLUTIONS]
CHECK = re.compile(r'^check\("(\w+)", (\w+)\)$', re.MULTILINE)


def test_notebooks_02_to_09_have_at_least_two_tasks():
    tasks = {path.stem[:2]: sum(make_assignments.is_solution_cell(c) for c in jupytext.read(path).cells)
             for path in SOLUTIONS}
    assert all(tasks.get(f"{n:02d}", 0) >= 2 for n in range(2, 10)), tasks


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids)
def test_assignment_is_up_to_date(path):
    for name, text in make_assignments.render(path).items():
        committed = ROOT / "assignments" / name
        assert committed.exists() and committed.read_text() == text, f"run `make assignments` ({name})"


def test_no_stale_assignments():
    expected = {f"{path.stem}{suffix}" for path in SOLUTIONS for suffix in (".ipynb", ".py")}
    assert {p.name for p in (ROOT / "assignments").glob("*") if p.suffix in (".py", ".ipynb")} == expected


def test_stub_keeps_signature_and_docstring():
    source = 'def f(x):\n    """Doc."""\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION\n'
    assert make_assignments.stub(source) == (
        'def f(x):\n    """Doc."""\n    # YOUR CODE HERE\n    raise NotImplementedError()\n')


def run_tasks(notebook) -> tuple[list[str], str]:
    """Execute the cells of the "Your turn" section; returns the names checked and the output."""
    cells = notebook.cells
    start = next(i for i, c in enumerate(cells) if make_assignments.TASKS_HEADING in c.source)
    code = [c.source for c in cells[start:] if c.cell_type == "code"]
    namespace: dict = {"__name__": "__tasks__"}
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        for source in code:
            exec(compile(source, "<task cell>", "exec"), namespace)  # noqa: S102 - our own notebooks
    checked = [name for source in code for name, _ in CHECK.findall(source)]
    return checked, output.getvalue()


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids)
def test_solutions_pass_every_check(path):
    checked, output = run_tasks(jupytext.read(path))
    assert checked and set(checked) <= set(NAMES)
    for name in checked:
        assert re.search(rf"^{name}: \d+ cases passed$", output, re.MULTILINE), output


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids)
def test_stubs_report_not_implemented(path):
    checked, output = run_tasks(jupytext.read(ROOT / "assignments" / f"{path.stem}.ipynb"))
    assert output.splitlines() == [f"{name}: not implemented yet" for name in checked]
