"""Single-stage vs two-stage: the shipped YOLO checkpoints against the shipped Faster R-CNN on
the same 200 held-out scenes, same process, same thread count.

COCO mAP of each model (``cvlib.metrics.evaluate_detections``) and inference time per image:
one image per call, the models alternating image by image, median over repeats
(``detection.time_per_image``); also seconds per image for one batch of 50. Writes
``bench/results/yolo.json``.

    python bench/yolo.py [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from detection import conditions, time_per_image, write_report  # bench/detection.py

from cvlib import recipes
from cvlib.data import held_out_detection
from cvlib.metrics import evaluate_detections
from cvlib.train import detect

RESULTS = Path(__file__).resolve().parent / "results" / "yolo.json"
MODELS = ("yolo", "yolo_width8", "yolo_focal", "faster_rcnn")


@torch.no_grad()
def batch_seconds_per_image(model, images, repeats: int) -> float:
    """Median over ``repeats`` of the seconds per image of one call on all ``images``."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.eval()(images)
        runs.append((time.perf_counter() - start) / len(images))
    return sorted(runs)[len(runs) // 2]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    images, targets = held_out_detection(200)
    models = {name: recipes.load_model(name) for name in MODELS}
    load_before = os.getloadavg()
    results = {}
    for name, model in models.items():
        coco = evaluate_detections(detect(model, images), targets)
        results[name] = {k: round(coco[k], 4) for k in ("map", "map_50", "map_75")}
        results[name]["params"] = sum(p.numel() for p in model.parameters())
    for name, seconds in time_per_image(models, images[:50], args.repeats).items():
        results[name]["ms_per_image"] = round(1000 * seconds, 2)
    for name, model in models.items():
        seconds = batch_seconds_per_image(model, images[:50], args.repeats)
        results[name]["ms_per_image_batch_50"] = round(1000 * seconds, 2)
    faster = results["faster_rcnn"]["ms_per_image"]
    report = {
        **conditions(args.threads, load_before),
        "setup": "shipped checkpoints (data/weights), 200 held-out 64x64 ShapesDataset scenes (seed 1); "
                 f"time: 50 scenes one image per call, models alternating, median of {args.repeats}",
        "faster_rcnn_time_over_yolo_time": {
            name: round(faster / results[name]["ms_per_image"], 2) for name in MODELS[:3]
        },
        "targets": {
            "yolo_map_50_at_least_0.9": results["yolo"]["map_50"] >= 0.9,
            "yolo_faster_than_faster_rcnn": results["yolo"]["ms_per_image"] < faster,
        },
        "results": results,
    }
    return write_report(report, args.out)


if __name__ == "__main__":
    main()
