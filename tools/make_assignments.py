"""Write the student versions of the notebooks: ``assignments/NN_topic.ipynb`` and ``.py`` twins.

    python tools/make_assignments.py          # what `make assignments` runs

A notebook of ``notebooks/`` becomes an assignment when it has solution cells: code cells with
nbgrader's metadata ``{"nbgrader": {"solution": true, ...}}`` whose solution sits between
``### BEGIN SOLUTION`` and ``### END SOLUTION``. As nbgrader's ``generate_assignment`` does, each
such block is replaced by ``# YOUR CODE HERE`` and ``raise NotImplementedError()`` at the
block's indentation, so the signature and the docstring above it stay; every output and
execution count is cleared. The ``check(...)`` cell after each task then prints
"NAME: not implemented yet" until the student fills the stub in. nbgrader itself is not needed;
an instructor who uses it can run it on ``notebooks/`` directly (the metadata is nbgrader's).

``tests/test_assignments.py`` checks that ``assignments/`` is what this script writes.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION\n.*?^[ \t]*### END SOLUTION[ \t]*$",
                      re.DOTALL | re.MULTILINE)
TASKS_HEADING = "## Your turn: implement it"


def is_solution_cell(cell) -> bool:
    return cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution", False)


def stub(source: str) -> str:
    """``source`` with every solution block replaced by nbgrader's stub."""
    return SOLUTION.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE\n{m.group(1)}raise NotImplementedError()",
                        source)


def student_version(notebook):
    """The student version of a solution ``notebook`` (a new notebook; outputs cleared)."""
    student = jupytext.reads(jupytext.writes(notebook, fmt="ipynb"), fmt="ipynb")  # a deep copy
    for index, cell in enumerate(student.cells):
        cell.id = f"cell-{index:03d}"  # stable ids: the output does not change between runs
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
        if is_solution_cell(cell):
            cell.source = stub(cell.source)
    return student


def solution_notebooks() -> list[Path]:
    """The ``.py`` twins under ``notebooks/`` that have solution cells."""
    return [path for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
            if "### BEGIN SOLUTION" in path.read_text()]


def render(path: Path) -> dict[str, str]:
    """The two files of the assignment made from ``notebooks/NN_topic.py``: name -> text."""
    student = student_version(jupytext.read(path))
    return {
        f"{path.stem}.ipynb": jupytext.writes(student, fmt="ipynb"),
        f"{path.stem}.py": jupytext.writes(student, fmt="py:percent"),
    }


def main() -> None:
    folder = ROOT / "assignments"
    folder.mkdir(exist_ok=True)
    for path in solution_notebooks():
        for name, text in render(path).items():
            (folder / name).write_text(text)
            print(f"wrote assignments/{name}")


if __name__ == "__main__":
    main()
