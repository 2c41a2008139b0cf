"""cvlib's Faster R-CNN against torchvision's ``FasterRCNN`` with the same backbone, anchors,
heads, settings and data, trained for the same wall time in the same process.

Both train in alternating rounds of ``ROUND_SECONDS`` (so a change of machine load hits both
alike) until each has trained ``TRAIN_SECONDS``; then COCO mAP on held-out scenes
(``cvlib.metrics.evaluate_detections``) and inference time per image (one image at a time,
the two models alternating). Writes ``bench/results/detection.json``.

    python bench/detection.py [--seconds 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torchvision

from cvlib.data import ShapesDataset, held_out_detection
from cvlib.metrics import evaluate_detections
from cvlib.models.rcnn import build_faster_rcnn
from cvlib.models.rcnn_torchvision import torchvision_twin
from cvlib.train import detect

RESULTS = Path(__file__).resolve().parent / "results" / "detection.json"
WIDTH, HIDDEN, OUTPUT_SIZE = 8, 128, 7
SCALES, RATIOS = (16.0, 32.0), (0.5, 1.0, 2.0)
BATCH, LR, ROUND_SECONDS = 8, 1e-3, 4.0


def build_cvlib(num_classes: int) -> torch.nn.Module:
    return build_faster_rcnn(num_classes, WIDTH, "align", SCALES, RATIOS, OUTPUT_SIZE, HIDDEN)


def build_torchvision(num_classes: int) -> torch.nn.Module:
    """torchvision's FasterRCNN built like ``build_cvlib``'s model, freshly initialised."""
    return torchvision_twin(build_cvlib(num_classes), image_size=64, copy_weights=False)


class Trainer:
    """One model, its optimizer and its own stream of shuffled batches; ``train_for(s)``
    trains ``s`` more seconds of wall time."""

    def __init__(self, model, data, seed):
        self.model, self.data = model.train(), data
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.seconds, self.steps, self.losses = [], 0.0, 0, []

    def batch(self):
        if len(self.order) < BATCH:
            self.order = torch.randperm(len(self.data), generator=self.generator).tolist()
        picked, self.order = self.order[:BATCH], self.order[BATCH:]
        return [self.data[i][0] for i in picked], [self.data[i][1] for i in picked]

    def train_for(self, seconds: float) -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            images, targets = self.batch()
            loss = sum(self.model(images, targets).values())
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.steps += 1
            self.losses.append(loss.item())
        self.seconds += time.perf_counter() - start


@torch.no_grad()
def time_per_image(models: dict, images, repeats: int = 3) -> dict[str, float]:
    """Median over ``repeats`` of the mean seconds per image, one image per call, the models
    alternating image by image."""
    runs = {name: [] for name in models}
    for _ in range(repeats):
        total = dict.fromkeys(models, 0.0)
        for image in images:
            for name, model in models.items():
                start = time.perf_counter()
                model.eval()([image])
                total[name] += time.perf_counter() - start
        for name in models:
            runs[name].append(total[name] / len(images))
    return {name: sorted(r)[len(r) // 2] for name, r in runs.items()}


def conditions(threads: int, load_before: tuple[float, float, float]) -> dict:
    """What a report records about its run: versions, machine, threads, and the 1/5/15-minute load
    averages before (``load_before``, from ``os.getloadavg()``) and now, after."""
    return {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "load_average_1_5_15_before": [round(v, 2) for v in load_before],
        "load_average_1_5_15_after": [round(v, 2) for v in os.getloadavg()],
    }


def write_report(report: dict, out: Path) -> dict:
    """Write ``report`` as json to ``out``, print it and return it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return report


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=64.0, help="training wall time of each model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    train_set = ShapesDataset(4000, seed=0)
    data = [train_set[i] for i in range(len(train_set))]  # rendered once, outside the timing
    test_images, test_targets = held_out_detection(200)
    load_before = os.getloadavg()
    trainers = {}
    for name, build in (("cvlib", build_cvlib), ("torchvision", build_torchvision)):
        torch.manual_seed(0)
        trainers[name] = Trainer(build(train_set.num_classes), data, seed=0)
    while min(t.seconds for t in trainers.values()) < args.seconds:
        for trainer in trainers.values():
            trainer.train_for(min(ROUND_SECONDS, args.seconds - trainer.seconds))
    results = {}
    for name, trainer in trainers.items():
        coco = evaluate_detections(detect(trainer.model, test_images), test_targets)
        results[name] = {
            "train_seconds": round(trainer.seconds, 1),
            "steps": trainer.steps,
            "final_loss": round(sum(trainer.losses[-20:]) / len(trainer.losses[-20:]), 4),
            "map": round(coco["map"], 4),
            "map_50": round(coco["map_50"], 4),
            "map_75": round(coco["map_75"], 4),
        }
    timing = time_per_image({n: t.model for n, t in trainers.items()}, test_images[:50])
    for name, seconds in timing.items():
        results[name]["inference_ms_per_image"] = round(1000 * seconds, 2)
    report = {
        **conditions(args.threads, load_before),
        "setup": (
            f"64x64 ShapesDataset scenes (4000 train, seed 0; 200 test, seed 1), batch {BATCH}, "
            f"AdamW lr {LR}; "
            f"backbone vgg_features(width={WIDTH}) stride 8; anchors scales {SCALES} x ratios {RATIOS}; "
            f"RoI Align {OUTPUT_SIZE}x{OUTPUT_SIZE} sampling 2; two FC layers of {HIDDEN}; torchvision's "
            f"default RPN/head settings for both; alternating rounds of {ROUND_SECONDS} s"
        ),
        "targets": {
            "map_at_least_torchvision": results["cvlib"]["map"] >= results["torchvision"]["map"],
            "inference_at_least_as_fast": timing["cvlib"] <= timing["torchvision"],
        },
        "results": results,
    }
    return write_report(report, args.out)


if __name__ == "__main__":
    main()
