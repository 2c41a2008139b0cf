"""Remove ipywidgets state and widget views from executed notebooks, in place.

    python tools/strip_widget_state.py notebooks/*.ipynb

An executed notebook stores the state of every widget it displayed (``metadata.widgets``) and a
widget view in each output that showed one. Both are written by the ipywidgets version of the
machine that ran it (8.x here); Colab's front end (ipywidgets 7.7) cannot load them and logs
"Could not instantiate widget" for every explorer. Without them an unrun notebook shows each
explorer's static figure followed by the plain-text line that ``cvlib.widgets`` displays with
the controls ("Run this cell to explore: ..."). Running the cell brings the sliders back.
``make notebooks`` calls this after executing; ``tests/test_notebooks.py`` checks the result.
"""

import json
import sys
from pathlib import Path

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def strip(notebook: dict) -> dict:
    """Drop ``metadata.widgets`` and every widget-view output bundle entry; return the notebook."""
    notebook["metadata"].pop("widgets", None)
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)
    return notebook


def main(paths: list[str]) -> None:
    for path in map(Path, paths):
        notebook = strip(json.loads(path.read_text()))
        # nbformat's own layout (1-space indent, sorted keys, trailing newline), so that only
        # the stripped parts change in a diff.
        path.write_text(json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
