"""`import cvlib` is fast and lazy, and touches no network."""

import subprocess
import sys


def test_import_is_fast_and_lazy():
    code = (
        "import time, sys; t = time.perf_counter(); import cvlib; "
        "print(time.perf_counter() - t, 'torch' in sys.modules)"
    )
    seconds, torch_loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert torch_loaded == "False"
    assert float(seconds) < 1.0


def test_submodules_load_on_first_use():
    import cvlib

    assert cvlib.data.ShapesDataset is not None
    assert "weights" in dir(cvlib)


def test_import_opens_no_socket():
    code = (
        "import socket\n"
        "def refuse(*a, **k): raise RuntimeError('network used')\n"
        "socket.socket.connect = refuse\n"
        "import cvlib, cvlib.data, cvlib.train, cvlib.weights, cvlib.viz, cvlib.recipes\n"
        "cvlib.recipes.load_model('shapes_cnn')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _module_imports(lazy: bool = False) -> dict[str, set[str]]:
    """Which cvlib modules each cvlib module imports, read from the source with ``ast`` (nothing
    is imported): ``{"cvlib.models.yolo": {"cvlib.models.detection", ...}, ...}``. Module level
    only unless ``lazy`` (then imports inside functions count too); ``from cvlib.x import y``
    counts as importing ``cvlib.x.y`` when that is a module, else ``cvlib.x``."""
    import ast
    from pathlib import Path

    import cvlib

    root = Path(cvlib.__file__).parent
    names = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def statements(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not lazy:
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            yield node
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from statements(getattr(node, field, []) or [])

    graph = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in statements(ast.parse(path.read_text()).body):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in names else base)
        graph[name] = {t for t in targets if t in names and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles():
    """No two cvlib modules import each other, directly or round a longer circle, at module
    level: each module can be read (and imported) after the ones it builds on. An import inside
    a function runs when the function is called, after every module has loaded, so it is not a
    module-level cycle and is not counted (``cvlib.train``'s command line reads the recipes
    that way). Importing ``cvlib.a.b`` also runs the package ``cvlib.a``'s ``__init__``; that edge
    is Python's package machinery, not a dependency, and is not counted either."""
    graph = _module_imports()
    assert graph["cvlib.models.yolo"] >= {"cvlib.models.detection"}  # the walk sees the imports
    assert _cycles(graph) == []


def test_storage_does_not_know_the_catalogue():
    """``cvlib.weights`` stores checkpoints; the recipes (``cvlib.recipes``) rebuild models from
    them. Only the command line (``cvlib.train.main``) reaches back to the recipes, lazily."""
    lazy = _module_imports(lazy=True)
    assert "cvlib.recipes" not in lazy["cvlib.weights"]
    assert {module for module, imports in lazy.items() if "cvlib.recipes" in imports} <= {"cvlib.train"}


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_readme_index_of_lecture_ideas_names_what_exists():
    """Every name in the README's "Where each lecture idea lives" table is defined in one of the
    files of its row, and every notebook of the row exists."""
    import ast
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    section = readme.split("### Where each lecture idea lives", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "cvlib/" in line]
    assert len(rows) >= 12, "the index lost its rows"
    for row in rows:
        idea, notebooks, names, files = (cell.strip() for cell in row.strip("|").split("|"))
        defined = set()
        for file in re.findall(r"`(cvlib/[\w/]+\.py)`", files):
            tree = ast.parse((root / file).read_text())
            defined |= {node.name for node in ast.walk(tree)
                        if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        for name in re.findall(r"`(\w+)`", names):
            assert name in defined, f"README index, {idea}: {name} is not defined in {files}"
        for number in re.findall(r"\d\d", notebooks):
            assert list((root / "notebooks").glob(f"{number}_*.py")), f"README index, {idea}: {number}?"
