"""The readable versions of ``cvlib.ops.reference`` (NMS, RoI Pool, RoI Align, one box at a
time) against torchvision's compiled kernels, at 10 and 100 boxes, in the same run, one
thread: each timed alone, the fastest of about 1 s of repeats (alternating with a readable
version that takes milliseconds would leave torchvision's kernel cold and flatter the ratio).

    python bench/reference.py      # prints the table, writes bench/results/reference.json

Target: within 20x of torchvision at 100 boxes. They are for reading, but a notebook calls
them, so they must not make it slow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torchvision
from ops import fastest_seconds, inputs  # bench/ops.py

from cvlib.ops import reference

THREADS = 1
SIZES = (10, 100)
TARGET_RATIO = 20.0


def cases(n: int):
    boxes, scores, _, rois, features = inputs(n)
    yield "nms", (lambda: reference.nms_loop(boxes, scores, 0.5)), (
        lambda: torchvision.ops.nms(boxes, scores, 0.5))
    yield "roi_pool", (lambda: reference.roi_pool_loop(features, rois, 7, 0.1)), (
        lambda: torchvision.ops.roi_pool(features, rois, 7, 0.1))
    yield "roi_align", (lambda: reference.roi_align_loop(features, rois, 7, 0.1, -1)), (
        lambda: torchvision.ops.roi_align(features, rois, 7, 0.1, -1))


def main() -> dict:
    torch.set_num_threads(THREADS)
    load_before = os.getloadavg()
    rows = []
    print(f"{'op':10s} {'boxes':>6s} {'readable ms':>12s} {'torchvision ms':>15s} {'ratio':>6s}")
    for n in SIZES:
        for name, ours, theirs in cases(n):
            t_ours, t_ref = (fastest_seconds([f])[0] for f in (ours, theirs))  # each alone
            rows.append({"op": name, "boxes": n, "readable_s": t_ours, "torchvision_s": t_ref,
                         "ratio": t_ours / t_ref})
            print(f"{name:10s} {n:6d} {t_ours * 1e3:12.2f} {t_ref * 1e3:15.3f} {t_ours / t_ref:6.1f}")
    missed = [f"{r['op']} ({r['ratio']:.1f}x)" for r in rows
              if r["boxes"] == 100 and r["ratio"] > TARGET_RATIO]
    print(f"target: within {TARGET_RATIO:.0f}x at 100 boxes:",
          "met" if not missed else "missed by " + ", ".join(missed))
    report = {"torch": str(torch.__version__), "torchvision": torchvision.__version__, "threads": THREADS,
              "load_average_1_5_15_before": [round(v, 2) for v in load_before],
              "load_average_1_5_15_after": [round(v, 2) for v in os.getloadavg()],
              "target_ratio_at_100": TARGET_RATIO, "missed_at_100": missed, "results": rows}
    out = Path(__file__).resolve().parent / "results" / "reference.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
