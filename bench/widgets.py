"""Kernel time of one widget step, for every explorer of every notebook.

Runs each notebook in a fresh kernel (nbclient), then moves every control of every
``cvlib.widgets.explore`` explorer a few steps (``Explorer.step``) and records the kernel
time of each redraw: the update function plus rendering the figure. Target: well under
100 ms per step on this CPU. Also records how long each notebook's cells took (target: under
60 s). Writes ``bench/results/widgets.json``.

    python bench/widgets.py [NOTEBOOK_GLOB]
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
STEPS = 5
MEASURE = f"""
def _bench_explorers():  # a function, so that no name of the notebook is overwritten
    import json, torch
    from cvlib.widgets import Explorer
    steps = []
    for k, explorer in enumerate(Explorer.alive()):
        for name in explorer.controls:
            seconds = [explorer.step(name) for _ in range({STEPS})]
            steps.append({{"explorer": k, "control": name, "seconds": seconds}})
    print("RESULT" + json.dumps({{"steps": steps, "threads": torch.get_num_threads()}}))
_bench_explorers()
"""


def measure(path: Path) -> dict:
    """Execute notebook ``path`` and time every control of its explorers; also the wall time of
    the notebook's own cells (first cell start to last cell end, from nbclient's timestamps)."""
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(MEASURE))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    result = json.loads(text.split("RESULT", 1)[1])
    timed = [c.metadata["execution"] for c in nb.cells[:-1] if c.cell_type == "code"]
    start, end = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in
                  (timed[0]["iopub.execute_input"], timed[-1]["shell.execute_reply"]))
    return {**result, "notebook_seconds": round((end - start).total_seconds(), 1)}


def main(pattern: str = "[0-9][0-9]_*.ipynb") -> None:
    results, seconds = {}, {}
    for path in sorted((ROOT / "notebooks").glob(pattern)):
        run = measure(path)
        results[path.stem], seconds[path.stem] = run["steps"], run["notebook_seconds"]
        print(f"{path.stem:28s} ran in {run['notebook_seconds']:.1f} s")
        for step in run["steps"]:
            median = statistics.median(step["seconds"]) * 1000
            print(f"{path.stem:28s} explorer {step['explorer']} {step['control']:16s} "
                  f"median {median:6.1f} ms  max {max(step['seconds']) * 1000:6.1f} ms")
    medians = [(statistics.median(s["seconds"]), nb, s["explorer"], s["control"])
               for nb, steps in results.items() for s in steps]
    slowest = max(medians, default=None)
    if slowest:
        print(f"slowest: {slowest[1]} explorer {slowest[2]} {slowest[3]}: {slowest[0] * 1000:.1f} ms")
    out = ROOT / "bench" / "results" / "widgets.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "what": "kernel seconds of one explorer step (update + figure render), per control",
        "machine": platform.processor() or platform.machine(),
        "slowest_median_seconds": slowest[0] if slowest else None,
        "slowest": list(slowest[1:]) if slowest else None,
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "notebook_seconds": seconds,
        "notebooks": results,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
