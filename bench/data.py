"""Is data loading ever the bottleneck, and what do two processes buy on this CPU?

1. ``CocoDetection`` + ``collate_detection`` (PNG decoding, RLE masks, targets) against
   Faster R-CNN training (the ``faster_rcnn`` model of ``python -m cvlib.train --data``, batches
   of 8, forward + backward + AdamW step on already loaded batches), in alternating rounds of
   ``ROUND_SECONDS`` so that a change of machine load hits both alike: images per second of
   each, and their ratio (the issue's target: loading >= 5x training).
2. ``python -m cvlib.train faster_rcnn --data coco:...`` under ``torchrun`` with 1 and with 2
   processes (gloo, one thread each, the same global batch of 8): images per second from the
   step times in ``metrics.jsonl`` (the first step, with start-up, left out) and the scaling
   efficiency ``ips(2) / (2 ips(1))``.
3. The gradient all-reduce alone: two gloo processes all-reduce a float32 tensor as large as the
   model's parameters, median of repeats, against the step time of one process.

Writes ``bench/results/data.json``.

    python bench/data.py [--seconds 20] [--steps 12]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from detection import conditions, write_report
from torch.utils.data import DataLoader

from cvlib import recipes
from cvlib.data import CocoDetection, ShapesDataset, collate_detection, export_coco

RESULTS = Path(__file__).resolve().parent / "results" / "data.json"
ROOT = Path(__file__).resolve().parent.parent
BATCH, ROUND_SECONDS, NUM_IMAGES = 8, 2.0, 512


class Rounds:
    """Counts images and seconds of a step function run for rounds of wall time."""

    def __init__(self, step):
        self.step, self.images, self.seconds = step, 0, 0.0

    def run_for(self, seconds: float) -> None:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.images += self.step()
        self.seconds += time.perf_counter() - start

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


def loading_step(dataset):
    """A step that reads the next batch of ``dataset`` through a DataLoader (restarted at the end)."""
    loader = DataLoader(dataset, batch_size=BATCH, shuffle=True, collate_fn=collate_detection)
    batches = iter(loader)

    def step() -> int:
        nonlocal batches
        try:
            images, _ = next(batches)
        except StopIteration:
            batches = iter(loader)
            images, _ = next(batches)
        return len(images)

    return step


def training_step(dataset):
    """A training step of the ``faster_rcnn`` data recipe on a batch read beforehand."""
    torch.manual_seed(0)
    model = recipes.build_for_data("faster_rcnn", dataset.num_classes).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    batches = [collate_detection([dataset[i] for i in range(k, k + BATCH)]) for k in range(0, 64, BATCH)]
    count = 0

    def step() -> int:
        nonlocal count
        images, targets = batches[count % len(batches)]
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += 1
        return len(images)

    return step, sum(p.numel() for p in model.parameters())


def torchrun_images_per_second(data: str, processes: int, steps: int, out: Path) -> dict:
    """Images per second of the CLI under torchrun with ``processes`` processes."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "cvlib.train", "faster_rcnn", "--data", data, "--max-steps", str(steps),
               "--batch-size", str(BATCH), "--out", str(out), "--device", "cpu"]
    subprocess.run(command, env=env, check=True, capture_output=True)
    times = [json.loads(line)["time"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    seconds = times[-1] - times[0]  # steps 2..N: start-up and the first step left out
    return {"processes": processes, "steps_timed": len(times) - 1,
            "seconds_per_step": round(seconds / (len(times) - 1), 4),
            "images_per_second": round(BATCH * (len(times) - 1) / seconds, 2)}


def _all_reduce_worker(rank: int, port: int, numel: int, repeats: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    gradient = torch.randn(numel)
    times = []
    for _ in range(repeats + 1):  # the first one warms up
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(gradient)
        times.append(time.perf_counter() - start)
    if rank == 0:
        Path(out).write_text(json.dumps(times[1:]))
    dist.destroy_process_group()


def all_reduce_seconds(numel: int, repeats: int = 20) -> float:
    """Median seconds of one gloo all-reduce of ``numel`` float32 between two processes."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        torch.multiprocessing.spawn(_all_reduce_worker, args=(port, numel, repeats, file.name), nprocs=2)
        return statistics.median(json.loads(Path(file.name).read_text()))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="wall time of loading and of training")
    parser.add_argument("--steps", type=int, default=12, help="optimizer steps of each torchrun run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as directory:
        annotation_file, image_dir = export_coco(ShapesDataset(NUM_IMAGES, seed=0), directory)
        dataset = CocoDetection(annotation_file, image_dir)
        train, numel = training_step(dataset)
        loading, training = Rounds(loading_step(dataset)), Rounds(train)
        while min(loading.seconds, training.seconds) < args.seconds:
            loading.run_for(ROUND_SECONDS)
            training.run_for(ROUND_SECONDS)
        data = f"coco:{annotation_file}:{image_dir}"
        runs = [torchrun_images_per_second(data, k, args.steps, Path(directory) / f"run{k}") for k in (1, 2)]
    reduce_seconds = all_reduce_seconds(numel)
    report = {
        "note": "2-core machine shared with other agents' jobs (see the load averages): absolute "
                "numbers vary run to run; the ratios are measured in the same run",
        "command": " ".join(["python bench/data.py", *(argv if argv is not None else sys.argv[1:])]),
        "batch": BATCH,
        "loading_images_per_second": round(loading.images_per_second, 1),
        "training_images_per_second": round(training.images_per_second, 2),
        "loading_over_training": round(loading.images_per_second / training.images_per_second, 1),
        "torchrun": runs,
        "scaling_efficiency_2_processes": round(
            runs[1]["images_per_second"] / (2 * runs[0]["images_per_second"]), 2),
        "model_parameters": numel,
        "all_reduce_seconds": round(reduce_seconds, 5),
        "all_reduce_fraction_of_1_process_step": round(reduce_seconds / runs[0]["seconds_per_step"], 3),
        **conditions(threads=1, load_before=load_before),
    }
    return write_report(report, args.out)


if __name__ == "__main__":
    main()
