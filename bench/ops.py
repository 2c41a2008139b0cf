"""cvlib.ops vs torchvision.ops on CPU: box_iou, nms, batched_nms, roi_align, roi_pool at 10,
100, 1,000 and 10,000 boxes, both timed in the same run, one thread. Each time is the fastest of
rounds that alternate cvlib and torchvision (so that load from other jobs hits both alike, the
fastest round being the least disturbed, and neither runs warm from a loop of itself: a
detector calls them once per image between other work). The argument checks of each op
(cvlib._checks: type, shape, dtype, NaN / inf, order) and the op are then timed alone, each in
a loop of itself, on the same inputs: ``checks %`` is the checks' share of the op's time.

    python bench/ops.py        # prints the table, writes bench/results/ops.json (about 2 min)

Targets (issue 22): cvlib within 2x of torchvision's compiled kernels at every size (a detector
calls these per image with 10 to 300 boxes); the checks under 5% of each op's time at 1,000
boxes. The load average is recorded before and after: the ratios are only as good as the
machine is quiet.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import time
from pathlib import Path

import torch
import torchvision

from cvlib import ops

box_ops, nms_ops, roi_ops = (importlib.import_module(f"cvlib.ops.{name}") for name in ("boxes", "nms", "roi"))

THREADS = 1
SIZES = (10, 100, 1_000, 10_000)
TARGET_RATIO = 2.0
TARGET_CHECKS = 0.05  # the argument checks' share of an op's time at 1,000 boxes


def fastest_seconds(fns, budget: float = 1.0, max_rounds: int = 2_000) -> list[float]:
    """The fastest time of each of ``fns`` over rounds that call them in turn (at least 3, then
    as many as fit in about ``budget`` seconds)."""
    for fn in fns:
        fn()  # warm up
    best = [float("inf")] * len(fns)
    start, rounds = time.perf_counter(), 0
    while rounds < 3 or (time.perf_counter() - start < budget and rounds < max_rounds):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
        rounds += 1
    return best


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def inputs(n: int, seed: int = 0):
    """``n`` random boxes in a 500 x 500 image, scores, 5 classes, and RoIs on a 2 x 64 x 50 x 50
    feature map (stride 10)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 450
    boxes = torch.cat([xy, xy + 10 + torch.rand(n, 2, generator=g) * 90], 1)
    scores = torch.rand(n, generator=g)
    classes = torch.randint(0, 5, (n,), generator=g)
    rois = torch.cat([torch.randint(0, 2, (n, 1), generator=g).float(), boxes], 1)
    features = torch.randn(2, 64, 50, 50, generator=g)
    return boxes, scores, classes, rois, features


def cases(n: int):
    boxes, scores, classes, rois, features = inputs(n)
    iou_boxes = boxes[: min(n, 2_000)]  # a 10,000 x 10,000 IoU matrix is 400 MB; cap it
    nms_checks = lambda: (box_ops._check_boxes(boxes), nms_ops._check_scores(scores, boxes),  # noqa: E731
                          nms_ops._check_threshold(0.5))
    roi_checks = lambda: (roi_ops._check(features, 7, 0.1), roi_ops.rois_from_boxes(rois, 2))  # noqa: E731
    yield (
        "box_iou",
        (lambda: ops.box_iou(iou_boxes, iou_boxes)),
        (lambda: torchvision.ops.box_iou(iou_boxes, iou_boxes)),
        lambda: (box_ops._check_boxes(iou_boxes, "boxes1"), box_ops._check_boxes(iou_boxes, "boxes2")),
    )
    yield (
        "nms",
        lambda: ops.nms(boxes, scores, 0.5),
        lambda: torchvision.ops.nms(boxes, scores, 0.5),
        nms_checks,
    )
    yield (
        "batched_nms",
        lambda: ops.batched_nms(boxes, scores, classes, 0.5),
        lambda: torchvision.ops.batched_nms(boxes, scores, classes, 0.5),
        lambda: (nms_checks(), nms_ops._check_scores(classes, boxes, "idxs")),
    )
    yield (
        "roi_align",
        lambda: ops.roi_align(features, rois, 7, 0.1, -1),
        lambda: torchvision.ops.roi_align(features, rois, 7, 0.1, -1),
        roi_checks,
    )
    yield (
        "roi_pool",
        lambda: ops.roi_pool(features, rois, 7, 0.1),
        lambda: torchvision.ops.roi_pool(features, rois, 7, 0.1),
        roi_checks,
    )


def main() -> None:
    torch.set_num_threads(THREADS)
    load_before = os.getloadavg()
    print(f"load average (1, 5, 15 min): {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}")
    rows = []
    print(f"{'op':12s} {'boxes':>6s} {'cvlib ms':>9s} {'torchvision ms':>14s} {'ratio':>6s} {'checks %':>8s}")
    for n in SIZES:
        for name, ours, reference, checks in cases(n):
            t_ours, t_ref = fastest_seconds([ours, reference])
            share = fastest_seconds([checks])[0] / fastest_seconds([ours])[0]  # each alone, warm
            rows.append(
                {"op": name, "boxes": n, "cvlib_s": t_ours, "torchvision_s": t_ref, "ratio": t_ours / t_ref,
                 "checks_share": share}
            )
            print(f"{name:12s} {n:6d} {t_ours * 1e3:9.2f} {t_ref * 1e3:14.2f} {t_ours / t_ref:6.2f} "
                  f"{100 * share:8.2f}")
    at_1000 = [r for r in rows if r["boxes"] == 1_000]
    missed = [f"{r['op']} at {r['boxes']} ({r['ratio']:.2f}x)" for r in rows if r["ratio"] > TARGET_RATIO]
    print(
        "target: within 2x at every size:",
        "met by every op" if not missed else "missed by " + ", ".join(missed),
    )
    costly = [f"{r['op']} ({100 * r['checks_share']:.1f}%)"
              for r in at_1000 if r["checks_share"] > TARGET_CHECKS]
    print(
        "target: argument checks under 5% of the op at 1,000 boxes:",
        "met by every op" if not costly else "missed by " + ", ".join(costly),
    )
    load_after = os.getloadavg()
    print(f"load average (1, 5, 15 min): {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    out = Path(__file__).resolve().parent / "results" / "ops.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "torch": str(torch.__version__),
                "torchvision": torchvision.__version__,
                "threads": THREADS,
                "machine": f"{platform.machine()} {_cpu_model()}",
                "python": platform.python_version(),
                "cpu_count": os.cpu_count(),
                "load_average_1_5_15_before": [round(v, 2) for v in load_before],
                "load_average_1_5_15_after": [round(v, 2) for v in load_after],
                "timing": "ratio: fastest of rounds alternating cvlib and torchvision, about 1 s per case; "
                "checks_share: checks and op each timed alone (fastest of about 1 s of repeats)",
                "note": "box_iou at 10,000 boxes uses the first 2,000 (memory); "
                "RoIs on a 2 x 64 x 50 x 50 feature map (spatial_scale 0.1), output 7 x 7",
                "target_ratio": TARGET_RATIO,
                "missed": missed,
                "target_checks_share_at_1000": TARGET_CHECKS,
                "checks_over_target_at_1000": costly,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
