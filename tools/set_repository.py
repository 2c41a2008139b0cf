"""Point the Colab cells and badges at another GitHub repository (a fork, a course's copy).

    python tools/set_repository.py https://github.com/OWNER/NAME      (or: make colab-url URL=...)

The repository URL lives in one place, ``[project.urls] Repository`` in ``pyproject.toml``;
this script writes it there and into every copy that must be literal: the ``REPOSITORY = ...``
line of each notebook's Colab cell (``.py`` twin and ``.ipynb``, student versions included) and
the "Open in Colab" badges of the README. ``tests/test_notebooks.py`` checks that they agree.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GITHUB = re.compile(r"https://github\.com/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)")


def current_repository() -> str:
    """The URL in pyproject.toml's ``[project.urls] Repository``."""
    match = re.search(r'^Repository = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    if match is None:
        raise SystemExit("pyproject.toml has no [project.urls] Repository = \"...\" line")
    return match.group(1)


def notebook_files() -> list[Path]:
    """Every file with a Colab cell: notebooks and student versions, both twins."""
    return sorted(p for folder in ("notebooks", "assignments") for p in (ROOT / folder).glob("[0-9][0-9]_*")
                  if p.suffix in (".py", ".ipynb"))


def set_repository(url: str) -> list[Path]:
    """Replace the current repository URL by ``url`` everywhere; return the files changed."""
    match = GITHUB.fullmatch(url.rstrip("/"))
    if match is None:
        raise SystemExit(f"URL must look like https://github.com/OWNER/NAME (Colab opens GitHub): {url!r}")
    url = match.group(0)
    old = current_repository()
    old_slug, new_slug = old.removeprefix("https://github.com/"), url.removeprefix("https://github.com/")
    edits = {ROOT / "pyproject.toml": [(f'Repository = "{old}"', f'Repository = "{url}"')],
             ROOT / "README.md": [(f"colab.research.google.com/github/{old_slug}/",
                                   f"colab.research.google.com/github/{new_slug}/")]}
    for path in notebook_files():
        edits[path] = [(f'REPOSITORY = \\"{old}\\"', f'REPOSITORY = \\"{url}\\"') if path.suffix == ".ipynb"
                       else (f'REPOSITORY = "{old}"', f'REPOSITORY = "{url}"')]
    changed = []
    for path, replacements in edits.items():
        text = path.read_text()
        new = text
        for before, after in replacements:
            new = new.replace(before, after)
        if new != text:
            path.write_text(new)
            changed.append(path)
    return changed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    for path in set_repository(sys.argv[1]):
        print("updated", path.relative_to(ROOT))
