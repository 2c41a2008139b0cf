"""Each notebook's run time on an idle machine and with both cores kept busy by other work.

A reader's laptop is rarely idle. torch runs each operation on all of its threads and waits
for the slowest: with a busy neighbour on one core, a two-thread step waits for that core, and
the course's small models are thousands of such steps. The notebooks therefore use one CPU
thread (``cvlib.runtime.start``, override with ``CVLIB_THREADS``). This measures the policy:

1. every notebook idle, with the notebooks' default (one thread);
2. every notebook while one busy-loop process per core runs (the load of another program);
3. for the notebooks matching ``--two-threads GLOB``, the same busy run with ``CVLIB_THREADS=2``
   (torch's default on this machine), to show what the policy saves.

Target: no notebook slower than 2x its idle time when the cores are busy. Writes
``bench/results/notebooks.json``.

    python bench/notebooks.py [NOTEBOOK_GLOB] [--two-threads GLOB]
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

from widgets import measure  # bench/widgets.py: runs a notebook with nbclient and times its cells

ROOT = Path(__file__).resolve().parent.parent
TARGET = 2.0


@contextmanager
def busy_cores(n: int = os.cpu_count() or 2):
    """``n`` processes that spin forever (one per core), stopped on exit."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in spinners:
            p.kill()
            p.wait()


@contextmanager
def threads(n: int | None):
    """Set ``CVLIB_THREADS`` for the kernels started inside (None: the notebooks' default)."""
    before = os.environ.get("CVLIB_THREADS")
    if n is not None:
        os.environ["CVLIB_THREADS"] = str(n)
    try:
        yield
    finally:
        os.environ.pop("CVLIB_THREADS", None)
        if before is not None:
            os.environ["CVLIB_THREADS"] = before


def seconds(path: Path) -> float:
    return measure(path)["notebook_seconds"]


def main(pattern: str = "[0-9][0-9]_*.ipynb", two_threads: str = "") -> dict:
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("CVLIB_NO_DOWNLOAD", "1")
    load_before = os.getloadavg()
    out = ROOT / "bench" / "results" / "notebooks.json"
    # A pattern that matches some notebooks re-measures those and keeps the others' rows.
    rows = json.loads(out.read_text())["notebooks"] if out.exists() else {}
    for path in sorted(p for p in (ROOT / "notebooks").glob(pattern) if p.suffix == ".ipynb"):
        idle = seconds(path)
        with busy_cores():
            busy = seconds(path)
            rows[path.stem] = {"idle_s": idle, "busy_s": busy, "busy_ratio": round(busy / idle, 2),
                               "load_average_1min_before": round(load_before[0], 2)}
            if two_threads and fnmatch.fnmatch(path.name, two_threads):
                with threads(2):
                    rows[path.stem]["busy_two_threads_s"] = seconds(path)
        print(f"{path.stem:28s} idle {idle:6.1f} s  busy {busy:6.1f} s ({busy / idle:.2f}x)  "
              f"{rows[path.stem].get('busy_two_threads_s', '')}", flush=True)
    worst = max(rows.items(), key=lambda kv: kv[1]["busy_ratio"])
    report = {
        "what": "seconds of each notebook's cells (nbclient, CVLIB_NO_DOWNLOAD=1): idle, with one "
                "spinning process per core, and (some) busy with CVLIB_THREADS=2; the notebooks "
                "default to one thread",
        "target": f"busy <= {TARGET}x idle",
        "worst": [worst[0], worst[1]["busy_ratio"]],
        "cpu_count": os.cpu_count(),
        "load_average_1_5_15_before_last_run": [round(v, 2) for v in load_before],
        "notebooks": dict(sorted(rows.items())),
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"worst: {worst[0]} {worst[1]['busy_ratio']}x (target <= {TARGET}x)")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pattern", nargs="?", default="[0-9][0-9]_*.ipynb")
    parser.add_argument("--two-threads", default="", help="also time these busy with CVLIB_THREADS=2")
    args = parser.parse_args()
    main(args.pattern, args.two_threads)
