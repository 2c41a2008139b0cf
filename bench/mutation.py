"""Mutation testing of cvlib.ops, cvlib.metrics and cvlib.weights: do the tests fail when the
code is wrong?

A small runner (mutmut 3 instruments a copy of the whole package and first runs the whole
suite to map tests to code, too slow for this machine): each *mutant* changes one thing in one
file (a comparison ``<`` -> ``<=``, an operator ``+`` -> ``-``, ``and`` -> ``or``, a constant
``n`` -> ``n + 1``, ``True`` -> ``False``, a ``not`` dropped, a ``raise`` replaced by ``pass``),
and that file's tests run on it in a scratch copy of the repository (the working tree is never
touched). A mutant the tests do not fail is a *survivor*: code that no test checks.

    python bench/mutation.py                     # every mutant (slow: an hour or more)
    python bench/mutation.py --per-file 20       # a seeded sample of 20 mutants per file
    python bench/mutation.py --files cvlib/ops/boxes.py --per-file 0   # one file, every mutant

Writes bench/results/mutation.json: per file the mutants tried, killed, survived (with the line,
the change and, for a survivor judged equivalent in ``EXPLAINED``, why), timed out.
``make test-mutation`` runs it; it is not part of ``make test``.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = {  # file -> the tests that guard it
    "cvlib/ops/boxes.py": ["tests/test_ops_boxes.py"],
    "cvlib/ops/nms.py": ["tests/test_ops_nms.py"],
    "cvlib/ops/anchors.py": ["tests/test_ops_anchors.py"],
    "cvlib/ops/roi.py": ["tests/test_ops_roi.py"],
    "cvlib/ops/upsample.py": ["tests/test_ops_upsample.py"],
    "cvlib/metrics.py": ["tests/test_metrics.py", "tests/test_metrics_coco.py", "tests/test_panoptic.py"],
    "cvlib/weights.py": ["tests/test_weights.py", "-k", "not shipped"],
}
# Survivors judged by hand: (file, the code of the line, the change) -> why no test can fail.
# A survivor not listed here gets "explanation": null in the results (a gap, or not yet judged).
EXPLAINED = {
    ("cvlib/ops/nms.py", "later = later[(x1[later] < x2[rows].max()) & (x2[later] > x1[rows].min())]",
     "x1[later] < x2[rows].max()  ->  x1[later] <= x2[rows].max()"):
        "equivalent: a later box that only touches the block's x-range has zero intersection, and an "
        "IoU of 0 is never > iou_threshold (>= 0), so adding it to the IoU block changes nothing",
    ("cvlib/ops/nms.py", "if (update == kept).all():", "update == kept  ->  update != kept"):
        "equivalent: the mutant never stops early (kept[0] and update[0] are always True: the "
        "block's first box has no earlier box, the matrix is strictly upper triangular, so the two "
        "never differ everywhere); it runs all len(overlaps) rounds, and the fixed point, reached "
        "within them, stays put",
    ("cvlib/ops/nms.py", "keep = _greedy(boxes + offsets[:, None], by_category, iou_threshold).sort().values",
     "boxes + offsets[:, None]  ->  boxes - offsets[:, None]"):
        "equivalent: the offsets only keep categories apart; categories shifted by -k * span instead "
        "of +k * span (span = the coordinate range + 1, more than any box) are as far apart, and a "
        "shift shared by all boxes of a category leaves their IoUs unchanged",
    ("cvlib/ops/roi.py", "g_max = max(int(grid.max()), 1) if len(grid) else 1", "1  ->  2"):
        "equivalent: g_max only sizes the sample grid; the points past each RoI's own grid get "
        "weight 0 (used = i < grid), so one more padding point changes no output",
    ("cvlib/ops/roi.py", "low = torch.where(at_edge, torch.full_like(low, limit - 1), low)",
     "limit - 1  ->  limit + 1"):
        "equivalent up to float rounding: roi_align clamps the cells it reads to height - 1 / "
        "width - 1, so cell limit + 1 reads the same last row or column as limit - 1; the window "
        "matrix is two columns wider (zero weights), which reorders the sums: 800 RoI Align outputs "
        "on boxes crossing every edge differ by at most 2.2e-16 (float64), below any test tolerance",
}
SWAPS = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.And: ast.Or,
    ast.Or: ast.And,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring constants (not worth mutating)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def sites(tree: ast.Module) -> list[tuple[int, str, int]]:
    """Every mutation of ``tree``: ``(node index in ast.walk order, kind, line)``."""
    skip = _docstrings(tree)
    found = []
    for index, node in enumerate(ast.walk(tree)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Compare,)) and type(node.ops[0]) in SWAPS:
            found.append((index, "compare", line))
        elif isinstance(node, ast.BinOp) and type(node.op) in SWAPS:
            found.append((index, "operator", line))
        elif isinstance(node, ast.BoolOp):
            found.append((index, "boolean", line))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            found.append((index, "not", line))
        elif isinstance(node, ast.Raise):
            found.append((index, "raise", line))
        elif (
            isinstance(node, ast.Constant)
            and id(node) not in skip
            and (isinstance(node.value, bool) or isinstance(node.value, (int, float)))
        ):
            found.append((index, "constant", line))
    return found


def mutate(tree: ast.Module, index: int, kind: str) -> tuple[str, str]:
    """The source of ``tree`` with mutation ``kind`` at node ``index``, and a description."""
    tree = copy.deepcopy(tree)
    node = list(ast.walk(tree))[index]
    before = ast.unparse(node).splitlines()[0][:80] if kind != "raise" else "raise ..."
    if kind == "compare":
        node.ops[0] = SWAPS[type(node.ops[0])]()
    elif kind == "operator":
        node.op = SWAPS[type(node.op)]()
    elif kind == "boolean":
        node.op = SWAPS[type(node.op)]()
    elif kind == "not":
        node.op = ast.UAdd()  # `+x` keeps the value: the `not` is gone
    elif kind == "raise":  # the check is gone: put `pass` in its place
        for parent in ast.walk(tree):
            for value in ast.iter_fields(parent):
                if isinstance(value[1], list) and any(item is node for item in value[1]):
                    value[1][[id(item) for item in value[1]].index(id(node))] = ast.Pass()
    elif kind == "constant":
        value = node.value
        node.value = (not value) if isinstance(value, bool) else (value + 1 if value == 0 else value * 2)
    after = "pass" if kind == "raise" else ast.unparse(node).splitlines()[0][:80]
    return ast.unparse(tree), f"{before}  ->  {after}"


def run_tests(workdir: Path, tests: list[str], timeout: float) -> str:
    """``killed`` (the tests fail), ``survived`` or ``timeout``."""
    env = {**os.environ, "PYTHONPATH": str(workdir), "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if result.returncode == 0 else "killed"


def scratch_copy() -> Path:
    """The package, its tests, the shipped data and the pytest configuration, copied."""
    workdir = Path(tempfile.mkdtemp(prefix="cvlib-mutation-"))
    for name in ("cvlib", "tests", "data"):
        shutil.copytree(ROOT / name, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", workdir)
    return workdir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="*", default=list(TESTS), help="files to mutate (keys of TESTS)")
    parser.add_argument(
        "--per-file", type=int, default=0, help="a seeded sample of N mutants per file (0: all)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "mutation.json"))
    args = parser.parse_args()
    workdir = scratch_copy()
    report = {"runner": "bench/mutation.py", "per_file": args.per_file, "seed": args.seed, "files": {}}
    try:
        for name in args.files:
            original = (ROOT / name).read_text()
            tree = ast.parse(original)
            start = time.perf_counter()
            if run_tests(workdir, TESTS[name], timeout=1800) != "survived":
                raise SystemExit(f"the tests of {name} fail without any mutation")
            timeout = 3 * (time.perf_counter() - start) + 10
            candidates = sites(tree)
            chosen = candidates
            if args.per_file and len(candidates) > args.per_file:
                chosen = sorted(random.Random(args.seed).sample(candidates, args.per_file))
            lines = original.splitlines()
            outcome = {
                "mutants_in_file": len(candidates),
                "tried": 0,
                "killed": 0,
                "timeout": 0,
                "survived": [],
            }
            for index, kind, line in chosen:
                source, change = mutate(tree, index, kind)
                (workdir / name).write_text(source)
                status = run_tests(workdir, TESTS[name], timeout)
                outcome["tried"] += 1
                if status == "survived":
                    code = lines[line - 1].strip()[:120]
                    outcome["survived"].append({
                        "line": line, "code": code, "kind": kind, "change": change,
                        "explanation": EXPLAINED.get((name, code, change)),
                    })
                else:
                    outcome[status] += 1
                print(f"{name}:{line} {kind:8s} {status}", flush=True)
            (workdir / name).write_text(original)
            report["files"][name] = outcome
            write(report, args.out)  # after each file: a stopped run keeps what it found
            survived = len(outcome["survived"])
            print(
                f"== {name}: {outcome['tried']} of {len(candidates)} mutants, {survived} survived", flush=True
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    total = write(report, args.out)
    print(f"{total['tried']} mutants, {total['survived']} survived; written to {args.out}")


def write(report: dict, out: str) -> dict:
    """Write ``report`` with its totals to ``out``; return the totals."""
    tried = sum(f["tried"] for f in report["files"].values())
    survivors = sum(len(f["survived"]) for f in report["files"].values())
    report["total"] = {"tried": tried, "survived": survivors}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=1) + "\n")
    return report["total"]


if __name__ == "__main__":
    main()
