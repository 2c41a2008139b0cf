"""One training loop for every model of the course, and ``python -m cvlib.train NAME``.

``fit`` handles the three kinds of model in the notebooks:

- classification and segmentation: ``loss = loss_fn(model(images), targets)``;
- detection (torchvision's contract): ``model(images, targets)`` returns a dict of losses in
  training mode, which are summed; each one is recorded in the history.

It is device-agnostic (CUDA when present), seeded, shows a tqdm progress bar with the running
loss, and returns the history for plotting. Named recipes (``cvlib.recipes``) train the models
that the notebooks load; ``python -m cvlib.train NAME`` runs one and ships its checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler
from tqdm.auto import tqdm

from cvlib._checks import choice, describe, integer, number, sequence, tensor

__all__ = [
    "default_device", "seed_everything", "to_device", "fit", "predict", "detect", "seconds_per_call",
    "seconds_per_image",
    "CHECKPOINT", "MetricsLog", "is_distributed", "rank", "shard_loader", "open_dataset", "start_processes",
    "train_on_data", "main",
]


def default_device() -> torch.device:
    """``cuda`` when a GPU is available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's random generators (CPU and CUDA); ``seed`` is an int
    in ``[0, 2**32 - 1]`` (NumPy's range)."""
    integer(seed, "seed", low=0, high=2**32 - 1)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def to_device(obj, device: torch.device | str):
    """Move tensors, and lists / tuples / dicts of them, to ``device``; other values pass.
    Copies to a GPU do not block; copies back to the CPU do (an asynchronous GPU -> CPU copy
    could be read before it has arrived)."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from error
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=torch.device(device).type == "cuda")
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def _losses(model, inputs, targets, loss_fn) -> dict[str, torch.Tensor]:
    """The loss dict of one batch: the model's own (detection) or ``{"loss": loss_fn(...)}``."""
    if loss_fn is None:
        losses = model(inputs, targets)
        if not isinstance(losses, dict):
            raise TypeError(
                "with loss_fn=None the model must return a dict of losses in training mode "
                f"(torchvision's detection contract), got {type(losses).__name__}"
            )
        return losses
    losses = loss_fn(model(inputs), targets)
    return losses if isinstance(losses, dict) else {"loss": losses}


def fit(
    model: nn.Module,
    loader: Iterable,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    epochs: int = 1,
    max_steps: int | None = None,
    time_limit: float | None = None,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    grad_clip: float | None = None,
    device: torch.device | str | None = None,
    seed: int | None = 0,
    progress: bool | None = None,
    desc: str = "train",
    out: str | Path | None = None,
    checkpoint_every: int | None = None,
    resume: bool = False,
    amp: bool = False,
    meta: dict | None = None,
) -> dict[str, list[float]]:
    """Train ``model`` in place on batches ``(inputs, targets)`` from ``loader``.

    Args:
        loss_fn: ``loss_fn(model(inputs), targets)``, a loss or a dict of named losses
            (summed, each recorded); ``None`` for detection models whose
            ``model(inputs, targets)`` returns a dict of losses.
        epochs, max_steps, time_limit: stop after ``epochs`` passes, after ``max_steps``
            optimizer steps, or before a step that would end after ``time_limit`` seconds
            (judged by the last step's time), whichever comes first; at least one step runs.
        optimizer: defaults to AdamW(lr, weight_decay); ``scheduler`` is stepped every batch.
        grad_clip: clip the gradient norm to this value (``> 0``; ``None``: no clipping).
        device: defaults to :func:`default_device`; the model and batches are moved there.
        seed: seeds Python, NumPy and torch first thing, before the optimizer is made and the
            first batch is drawn (``None``: leave as is), so two calls with the same seed on
            models with the same weights give the same run, whatever happened before. The
            model's initial weights are drawn when it is built, before ``fit``: call
            :func:`seed_everything` before building it for a run reproducible from scratch.
        progress: show a tqdm bar; by default unless the environment sets ``TQDM_DISABLE``.
        out: a folder for ``checkpoint.pt`` (every ``checkpoint_every`` steps and at the end;
            written by rank 0 only) and the metrics log ``metrics.jsonl`` (one JSON object per
            step; also TensorBoard under ``out/tensorboard`` when it is installed).
        checkpoint_every: steps between checkpoints (``None``: only the one at the end).
        resume: continue from ``out/checkpoint.pt`` when it exists: the model, optimizer,
            scheduler, step, position in the data and random states are restored, so the run
            gives the losses of one that was never stopped (the batches of the current epoch
            before the checkpoint are read again and skipped).
        amp: mixed precision (float16 autocast and loss scaling) on CUDA; elsewhere one line
            says so and training stays float32.
        meta: plain values stored in the checkpoint (how to rebuild the model).

    Data-parallel: when ``torch.distributed`` is initialised (``torchrun``) with several
    processes, the model is wrapped in ``DistributedDataParallel``, a ``DataLoader`` is given a
    ``DistributedSampler`` and ``batch_size / world_size`` per process (:func:`shard_loader`),
    the recorded losses are averaged over the processes, and only rank 0 writes files. The
    averaged gradients are those of the whole batch when the losses are means over images;
    batch norm is the exception (each process normalises its share with its own statistics),
    as are samplers that draw at random per image (the RPN's and heads' positives/negatives).

    Returns:
        The history: ``{"step": [...], "time": [...], "loss": [...], <each loss>: [...]}``,
        one entry per optimizer step (``time`` in seconds since the start); after ``resume``
        it includes the steps before the checkpoint.
    """
    _check_fit_args(model, loader, epochs, max_steps, time_limit, lr, weight_decay, grad_clip)
    if checkpoint_every is not None and (out is None or checkpoint_every < 1):
        raise ValueError(f"checkpoint_every must be >= 1 and needs out, got {checkpoint_every}, out={out}")
    if resume and out is None:
        raise ValueError("resume=True needs out, the folder of the checkpoint to resume from")
    if seed is not None:
        seed_everything(seed)
    device = torch.device(device) if device is not None else default_device()
    model.to(device).train()
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    distributed = is_distributed()
    if distributed:
        loader = shard_loader(loader, seed=seed or 0)
    autocast, scaler = _mixed_precision(device, amp)
    run = _Run(model, optimizer, scheduler, scaler, meta)
    checkpoint = run.restore(Path(out) / CHECKPOINT) if resume else None
    history = run.history
    net = _data_parallel(model, device, find_unused=loss_fn is None) if distributed else model
    writes = out is not None and rank() == 0
    log = MetricsLog(out, run.step if resume else None) if writes else None
    total = max_steps or (epochs * len(loader) if hasattr(loader, "__len__") else None)
    if progress is None:
        progress = not os.environ.get("TQDM_DISABLE")
    bar = tqdm(total=total, initial=run.step, desc=desc, disable=not progress or rank() != 0, leave=False)
    start, running = time.perf_counter() - (history["time"][-1] if history["time"] else 0.0), None
    stop = max_steps is not None and run.step >= max_steps  # a resumed run that had finished
    for epoch in range(run.epoch, epochs if not stop else run.epoch):
        batches = run.start_epoch(epoch, loader, checkpoint)
        checkpoint = None
        for inputs, targets in batches:
            with autocast:
                losses = _losses(net, to_device(inputs, device), to_device(targets, device), loss_fn)
                loss = sum(losses.values())
            if not torch.isfinite(loss):
                bar.close()
                raise FloatingPointError(f"loss became {loss.item()} at step {run.step}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if grad_clip is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            run.advance()
            _record(history, run.step, time.perf_counter() - start, *_mean_over_processes(loss, losses))
            running = history["loss"][-1] if running is None else 0.9 * running + 0.1 * history["loss"][-1]
            bar.set_postfix(loss=f"{running:.4f}", refresh=False)
            bar.update()
            if log is not None:
                log.write(history, optimizer.param_groups[0]["lr"])
            if writes and checkpoint_every and run.step % checkpoint_every == 0:
                run.save(Path(out) / CHECKPOINT)
            out_of_time = time_limit is not None and _any_process(_out_of_time(history["time"], time_limit))
            stop = bool(max_steps and run.step >= max_steps) or out_of_time
            if stop:
                break
        if stop:
            break
    bar.close()
    if run.step == 0:
        raise ValueError("loader yielded no batch: fit needs at least one (inputs, targets) batch")
    if writes:
        run.save(Path(out) / CHECKPOINT)
        log.close()
    return history


def _check_fit_args(model, loader, epochs, max_steps, time_limit, lr, weight_decay, grad_clip) -> None:
    """The contract of :func:`fit`'s arguments (the seed is checked by :func:`seed_everything`)."""
    _check_model(model)
    if not hasattr(loader, "__iter__") or isinstance(loader, (str, bytes, dict)):
        raise TypeError(f"loader must be an iterable of (inputs, targets) batches, got {describe(loader)}")
    if hasattr(loader, "__len__") and len(loader) == 0:
        raise ValueError("loader is empty: fit needs at least one (inputs, targets) batch")
    integer(epochs, "epochs", low=1)
    if max_steps is not None:
        integer(max_steps, "max_steps", low=1)
    for name, value in (("time_limit", time_limit), ("grad_clip", grad_clip)):
        if value is not None:
            number(value, name, low=0, low_open=True)
    number(lr, "lr", low=0, low_open=True)
    number(weight_decay, "weight_decay", low=0)


# ---------------------------------------------------------------------------------------------
# Checkpoints: everything a stopped run needs to continue as if it had never stopped

CHECKPOINT = "checkpoint.pt"


def _rng_state(loader=None) -> dict:
    """Python's, NumPy's, torch's (CPU and CUDA) random states, and the loader's generator's."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [kind, keys.tolist(), position, has_gauss, gauss],  # plain values: weights_only
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    generator = getattr(loader, "generator", None)
    if generator is not None:
        state["loader"] = generator.get_state()
    return state


def _set_rng_state(state: dict, loader=None) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    if "loader" in state:
        loader.generator.set_state(state["loader"])


class _Run:
    """The state of one training run that a checkpoint holds: model, optimizer, scheduler,
    loss scaler, step, position in the data (epoch, batches read in it), random states at the
    start of the epoch and now, history and ``meta``."""

    def __init__(self, model, optimizer, scheduler, scaler, meta):
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.meta = dict(meta or {})
        self.step, self.epoch, self.batch = 0, 0, 0
        self.history: dict[str, list[float]] = {"step": [], "time": [], "loss": []}
        self.epoch_rng: dict = {}

    def start_epoch(self, epoch: int, loader, checkpoint: dict | None):
        """An iterator over the batches of ``epoch``. Resuming (``checkpoint``), the epoch's
        shuffle is replayed from its random state, the batches already trained on are read and
        skipped, and the random state of the checkpoint is restored."""
        if checkpoint is not None:
            _set_rng_state(checkpoint["epoch_rng"], loader)
        self.epoch, self.epoch_rng = epoch, _rng_state(loader)
        if hasattr(getattr(loader, "sampler", None), "set_epoch"):
            loader.sampler.set_epoch(epoch)  # a DistributedSampler shuffles by seed and epoch
        batches = iter(loader)
        if checkpoint is None:
            self.batch = 0
            return batches
        for _ in range(self.batch):
            next(batches)
        _set_rng_state(checkpoint["rng"], loader)
        return batches

    def advance(self) -> None:
        self.step += 1
        self.batch += 1

    def state_dict(self) -> dict:
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch": self.batch,
            "rng": _rng_state(), "epoch_rng": self.epoch_rng,
            "history": self.history, "meta": self.meta,
        }

    def save(self, path: Path) -> Path:
        """Write the checkpoint atomically (a stop while writing leaves the previous one)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        torch.save(self.state_dict(), temporary)
        os.replace(temporary, path)
        return path

    def restore(self, path: Path) -> dict | None:
        """Load ``path`` when it exists (``weights_only=True``) into this run; the checkpoint,
        or ``None`` for a fresh start."""
        if not path.exists():
            return None
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.step, self.epoch, self.batch = checkpoint["step"], checkpoint["epoch"], checkpoint["batch"]
        self.history = checkpoint["history"]
        self.meta = {**checkpoint["meta"], **self.meta}
        return checkpoint


class MetricsLog:
    """``out/metrics.jsonl``: one JSON object per optimizer step (step, time, the losses, lr);
    also TensorBoard scalars under ``out/tensorboard`` when ``tensorboard`` is installed.
    Resuming from step ``resume_step``, the log keeps its rows up to that step and drops the
    later ones (steps trained after the checkpoint, which the resumed run repeats)."""

    def __init__(self, out: str | Path, resume_step: int | None = None):
        _check_folder(out, "out")
        if resume_step is not None:
            integer(resume_step, "resume_step", low=0)
        path = Path(out) / "metrics.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None and path.exists():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= resume_step]
        self.file = open(path, "w")  # noqa: SIM115 (closed by close())
        self.file.writelines(line + "\n" for line in kept)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(Path(out) / "tensorboard"))
        except ImportError:
            self.tensorboard = None

    def write(self, history: dict, lr: float) -> None:
        row = {**{k: v[-1] for k, v in history.items()}, "lr": lr}
        self.file.write(json.dumps(row) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for name, value in row.items():
                if name != "step":
                    self.tensorboard.add_scalar(name, value, row["step"])

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _check_folder(value, name: str) -> None:
    """A folder to write into: a path (str or ``os.PathLike``) that is not an existing file."""
    if not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a folder path (str or Path), got {describe(value)}")
    if Path(value).is_file():
        raise ValueError(f"{name} must be a folder, got the file {str(value)!r}")


def _mixed_precision(device: torch.device, amp: bool):
    """``(autocast context, GradScaler)``: float16 autocast with loss scaling on CUDA when
    ``amp``; disabled (a pass-through, float32) otherwise, with one line saying so if asked."""
    enabled = amp and device.type == "cuda"
    if amp and not enabled:
        print(f"amp: mixed precision needs CUDA; training in float32 on {device.type}")
    return (torch.autocast(device.type, dtype=torch.float16, enabled=enabled),
            torch.amp.GradScaler(device.type, enabled=enabled))


# ---------------------------------------------------------------------------------------------
# Data parallel: torchrun starts one process per device; each reads its share of every batch


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is initialised with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed): only rank 0 writes files and prints."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def shard_loader(loader, seed: int = 0):
    """The same ``DataLoader`` for one of ``world_size`` processes: a ``DistributedSampler``
    (shuffled by ``seed`` and epoch when the loader shuffles) and ``batch_size / world_size``
    items per process, so that the processes together read the loader's batch size. A loader
    that already has a ``DistributedSampler``, or is not a ``DataLoader``, is returned as is, as
    is any loader when this process is alone (not distributed)."""
    if not hasattr(loader, "__iter__") or isinstance(loader, (str, bytes, dict)):
        raise TypeError(f"loader must be an iterable of (inputs, targets) batches, got {describe(loader)}")
    integer(seed, "seed", low=0)
    alone = not is_distributed()
    if alone or not isinstance(loader, DataLoader) or isinstance(loader.sampler, DistributedSampler):
        return loader
    world = dist.get_world_size()
    if loader.batch_size is None or loader.batch_size % world:
        raise ValueError(f"the loader's batch_size ({loader.batch_size}) must be a multiple of the "
                         f"number of processes ({world})")
    sampler = DistributedSampler(loader.dataset, shuffle=isinstance(loader.sampler, RandomSampler),
                                 seed=seed, drop_last=loader.drop_last)
    return DataLoader(loader.dataset, batch_size=loader.batch_size // world, sampler=sampler,
                      collate_fn=loader.collate_fn, num_workers=loader.num_workers,
                      pin_memory=loader.pin_memory, drop_last=loader.drop_last)


def _data_parallel(model: nn.Module, device: torch.device, find_unused: bool) -> nn.Module:
    """``DistributedDataParallel``: gradients are averaged over the processes in ``backward``.
    Detectors may leave a head unused in a batch (no positives), hence ``find_unused``."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                   find_unused_parameters=find_unused)


def _mean_over_processes(loss: torch.Tensor, losses: dict) -> tuple[torch.Tensor, dict]:
    """The loss and each named loss averaged over the processes (as they are; one process)."""
    if not is_distributed():
        return loss, losses
    values = torch.stack([loss.detach(), *(v.detach() for v in losses.values())]).float()
    dist.all_reduce(values)
    values /= dist.get_world_size()
    return values[0], dict(zip(losses, values[1:]))


def _any_process(flag: bool) -> bool:
    """Whether ``flag`` holds in any process, so that all stop at the same step."""
    if not is_distributed():
        return bool(flag)
    value = torch.tensor(float(flag), device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def _out_of_time(times: list[float], time_limit: float) -> bool:
    """Whether one more step, as long as the last one, would end after ``time_limit`` seconds."""
    last_step = times[-1] - (times[-2] if len(times) > 1 else 0.0)
    return times[-1] + last_step > time_limit


def _record(history, step, seconds, loss, losses) -> None:
    history["step"].append(step)
    history["time"].append(seconds)
    history["loss"].append(loss.item())
    if len(losses) > 1 or "loss" not in losses:
        for name, value in losses.items():
            history.setdefault(name, []).append(value.item())


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, batch_size: int = 256, device: torch.device | str | None = None
) -> torch.Tensor:
    """Outputs of ``model`` in eval mode for ``images`` ``[N, ...]``, in batches, on the CPU.

    For classifiers and segmenters (one tensor per batch); the result is ``[N, ...]``.
    The model is put in eval mode and left there.
    """
    _check_model(model)
    tensor(images, "images", ndim=range(1, 9))
    integer(batch_size, "batch_size", low=1)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).eval()
    outputs = [model(chunk.to(device)).cpu() for chunk in images.split(batch_size)]
    return torch.cat(outputs) if outputs else torch.empty(0)


@torch.no_grad()
def detect(model: nn.Module, images: list[torch.Tensor], batch_size: int = 25, device=None) -> list[dict]:
    """Detections of a detector with torchvision's contract for a list of ``[3, H, W]``
    images: one dict (``boxes``, ``labels``, ``scores``, ...) per image, computed in batches in
    eval mode on ``device`` (default: the model's) and returned on the CPU. The model is left
    in eval mode."""
    _check_model(model)
    sequence(images, "images")
    integer(batch_size, "batch_size", low=1)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).eval()
    return [
        to_device(d, "cpu")
        for i in range(0, len(images), batch_size)
        for d in model(to_device(list(images[i : i + batch_size]), device))
    ]


def seconds_per_call(fn: Callable, inputs: Sequence, repeats: int = 3, device=None) -> float:
    """Time of ``fn(x)`` for each ``x`` of ``inputs``: the mean seconds per call over
    ``inputs``, the best of ``repeats`` passes (the least disturbed by other work on the
    machine), after one warm-up call. On a CUDA ``device`` it waits for the GPU after each pass."""
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {describe(fn)}")
    inputs = sequence(inputs, "inputs", nonempty=True)
    integer(repeats, "repeats", low=1)
    fn(inputs[0])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for x in inputs:
            fn(x)
        if device is not None and torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - start) / len(inputs))
    return best


@torch.no_grad()
def seconds_per_image(
    model: nn.Module, images: list[torch.Tensor], repeats: int = 3, threads: int | None = None
) -> float:
    """Inference time of a detector, one image per call as in deployment: the mean seconds per
    image over ``images``, the best of ``repeats`` passes (the least disturbed by other work on
    the machine), after one warm-up call. Images go to the model's device first. ``threads``:
    time with that many torch CPU threads; the previous setting is restored, even on error."""
    _check_model(model)
    images = sequence(images, "images", nonempty=True)
    integer(repeats, "repeats", low=1)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(integer(threads, "threads", low=1))
    try:
        return _best_seconds(model, images, repeats)
    finally:
        torch.set_num_threads(previous)


def _best_seconds(model: nn.Module, images: list[torch.Tensor], repeats: int) -> float:
    device = next(model.parameters()).device
    model.eval()
    images = [image.to(device) for image in images]
    return seconds_per_call(lambda image: model([image]), images, repeats, device)


def _check_model(model) -> None:
    """A module with at least one parameter (its device and dtype are the model's)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    if next(model.parameters(), None) is None:
        raise ValueError("model must have parameters (its device is theirs), got a module without any")


# ---------------------------------------------------------------------------------------------
# python -m cvlib.train: the course's named recipes, or a model on your own data

WARMUP_STEPS = 100  # linear learning-rate warm-up of training on a dataset, then constant
CHECKPOINT_EVERY = 100  # steps between checkpoints of training on a dataset (and one at the end)
DATA_FLAGS = ("backbone", "epochs", "max_steps", "batch_size", "lr", "out", "resume", "amp")
DATA_DEFAULTS = {"epochs": 10, "batch_size": 8, "lr": 1e-3}  # and --out runs/NAME


def open_dataset(spec: str):
    """The dataset of ``--data``: ``coco:ANNOTATIONS.json:IMAGE_DIR`` (:class:`cvlib.data.CocoDetection`)
    or ``shapes:N`` (``N`` synthetic scenes, :class:`cvlib.data.ShapesDataset` seed 0)."""
    from cvlib.data import CocoDetection, ShapesDataset

    kind, rest = _data_spec(spec, "spec (--data)")
    if kind == "coco":
        annotation_file, _, image_dir = rest.rpartition(":")
        return CocoDetection(annotation_file, image_dir)
    return ShapesDataset(int(rest), seed=0)


def _data_spec(spec, name: str) -> tuple[str, str]:
    """``(kind, the rest)`` of a ``--data`` value, else a clear error naming ``name``."""
    if not isinstance(spec, str):
        raise TypeError(f"{name} must be a str, got {describe(spec)}")
    kind, _, rest = spec.partition(":")
    if not ((kind == "coco" and rest.count(":") >= 1) or (kind == "shapes" and rest.isdigit())):
        raise ValueError(f"{name} must be coco:ANNOTATIONS.json:IMAGE_DIR or shapes:N, got {spec!r}")
    return kind, rest


def _parser() -> argparse.ArgumentParser:
    from cvlib import recipes

    parser = argparse.ArgumentParser(
        prog="python -m cvlib.train",
        description="Train a named recipe and save data/weights/NAME.pt with its provenance; or, with "
                    "--data, train the model NAME on a dataset with checkpoints and logs in --out "
                    "(also under torchrun --nproc_per_node=K).",
    )
    parser.add_argument("name", nargs="?", choices=sorted(recipes.RECIPES),
                        help="recipe to train (with --data: the model)")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--data", help="coco:ANNOTATIONS.json:IMAGE_DIR (or shapes:N synthetic scenes)")
    parser.add_argument("--backbone", help="torchvision backbone: resnet18, resnet50 or mobilenet_v3")
    parser.add_argument("--epochs", type=int, help="passes over the data (default 10)")
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument("--batch-size", type=int, help="images per step, all processes together (default 8)")
    parser.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-3)")
    parser.add_argument("--out", help="folder for checkpoint.pt and metrics.jsonl (default runs/NAME)")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    return parser


def _device(name: str | None) -> torch.device | None:
    """The device of ``--device``; ``None`` after one line on stderr when it cannot be used."""
    device = torch.device(name) if name else default_device()
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {name} but this machine has no usable CUDA GPU "
              "(torch.cuda.is_available() is False); use --device cpu", file=sys.stderr)
        return None
    return device


def start_processes(device: torch.device) -> torch.device:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) join the process group,
    ``nccl`` on CUDA (each process on GPU ``LOCAL_RANK``) or ``gloo`` on the CPU; the device of
    this process. Alone, nothing happens."""
    _check_device(device)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def train_on_data(args: argparse.Namespace, device: torch.device, command: str) -> dict:
    """Train model ``args.name`` on ``args.data`` with ``fit`` (AdamW, ``WARMUP_STEPS`` of
    warm-up, checkpoints every ``CHECKPOINT_EVERY`` steps in ``args.out``); the history.
    ``args`` holds ``name``, ``data`` and every flag of ``DATA_FLAGS`` (as ``main`` fills them)."""
    from cvlib import recipes
    from cvlib.data import collate_detection, collate_segmentation

    _check_data_args(args)
    _check_device(device)
    if not isinstance(command, str):
        raise TypeError(f"command must be a str, got {describe(command)}")
    dataset = open_dataset(args.data)
    recipe = recipes.DATA_RECIPES[args.name]
    model = recipes.build_for_data(args.name, dataset.num_classes, args.backbone)
    detection = recipe.task == "detection"
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                        collate_fn=collate_detection if detection else collate_segmentation)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / WARMUP_STEPS))
    meta = {"recipe": args.name, "num_classes": dataset.num_classes, "classes": list(dataset.classes),
            "category_ids": list(getattr(dataset, "category_ids", range(1, dataset.num_classes + 1))),
            "backbone": args.backbone, "data": args.data, "command": command, "torch": str(torch.__version__)}
    return fit(model, loader, loss_fn=None if detection else nn.functional.cross_entropy,
               epochs=args.epochs, max_steps=args.max_steps, optimizer=optimizer, scheduler=warmup,
               device=device, out=args.out, checkpoint_every=CHECKPOINT_EVERY, resume=args.resume,
               amp=args.amp, meta=meta, desc=args.name)


def _check_device(device) -> None:
    if not isinstance(device, torch.device):
        raise TypeError(f"device must be a torch.device, got {describe(device)}")


def _check_data_args(args) -> None:
    """The contract of :func:`train_on_data`'s ``args``; errors name the field (``args.lr``)."""
    from cvlib import recipes
    from cvlib.models.backbones import BACKBONES

    if not isinstance(args, argparse.Namespace):
        raise TypeError(f"args must be an argparse.Namespace (as python -m cvlib.train makes), "
                        f"got {describe(args)}")
    missing = [f for f in ("name", "data", *DATA_FLAGS) if not hasattr(args, f)]
    if missing:
        raise ValueError(f"args must have the fields name, data and {', '.join(DATA_FLAGS)}; "
                         f"missing {missing}")
    choice(args.name, "args.name", tuple(recipes.DATA_RECIPES))
    _data_spec(args.data, "args.data (--data)")
    if args.backbone is not None:
        choice(args.backbone, "args.backbone", BACKBONES)
    integer(args.epochs, "args.epochs", low=1)
    if args.max_steps is not None:
        integer(args.max_steps, "args.max_steps", low=1)
    integer(args.batch_size, "args.batch_size", low=1)
    number(args.lr, "args.lr", low=0, low_open=True)
    _check_folder(args.out, "args.out")
    for flag in ("resume", "amp"):
        if not isinstance(getattr(args, flag), bool):
            raise TypeError(f"args.{flag} must be a bool, got {describe(getattr(args, flag))}")


def main(argv: list[str] | None = None) -> int:
    """``python -m cvlib.train NAME``: train a named recipe and ship its checkpoint;
    ``python -m cvlib.train NAME --data ...``: train model NAME on a dataset (see ``--help``)."""
    from cvlib import recipes

    parser = _parser()
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        for name, recipe in sorted(recipes.RECIPES.items()):
            print(f"{name:20s} {recipe.description}")
        print(f"with --data: {', '.join(recipes.DATA_RECIPES)}")
        return 0
    given = [f"--{flag.replace('_', '-')}" for flag in DATA_FLAGS if getattr(args, flag) not in (None, False)]
    if args.data is None and given:
        parser.error(f"{', '.join(given)} need --data (a recipe trains as written in cvlib/recipes.py)")
    if args.data is not None and args.name not in recipes.DATA_RECIPES:
        parser.error(f"with --data, NAME must be one of {', '.join(recipes.DATA_RECIPES)}; got {args.name}")
    try:
        device = _device(args.device)
    except RuntimeError as error:  # torch.device("gpu") and the like
        parser.error(f"--device: {error}")
    if device is None:
        return 2
    command = " ".join(["python -m cvlib.train", *(argv if argv is not None else sys.argv[1:])])
    if args.data is None:
        print(f"saved {recipes.run(args.name, device=device, command=command)}")
        return 0
    for flag, value in {**DATA_DEFAULTS, "out": os.path.join("runs", args.name)}.items():
        if getattr(args, flag) is None:
            setattr(args, flag, value)
    device = start_processes(device)
    reports = rank() == 0
    try:
        history = train_on_data(args, device, command)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if reports:
        steps = history["step"][-1]
        print(f"{steps} step{'s' if steps != 1 else ''}, last loss {history['loss'][-1]:.4f}; "
              f"checkpoint.pt and metrics.jsonl in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
