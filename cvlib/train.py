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
import os
import random
import sys
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from cvlib._checks import describe, integer, number, sequence, tensor

__all__ = [
    "default_device", "seed_everything", "to_device", "fit", "predict", "detect", "seconds_per_image", "main"
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

    Returns:
        The history: ``{"step": [...], "time": [...], "loss": [...], <each loss>: [...]}``,
        one entry per optimizer step (``time`` in seconds since the start).
    """
    _check_fit_args(model, loader, epochs, max_steps, time_limit, lr, weight_decay, grad_clip)
    if seed is not None:
        seed_everything(seed)
    device = torch.device(device) if device is not None else default_device()
    model.to(device).train()
    if optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: dict[str, list[float]] = {"step": [], "time": [], "loss": []}
    total = max_steps or (epochs * len(loader) if hasattr(loader, "__len__") else None)
    if progress is None:
        progress = not os.environ.get("TQDM_DISABLE")
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    start, step, running = time.perf_counter(), 0, None
    for _ in range(epochs):
        for inputs, targets in loader:
            losses = _losses(model, to_device(inputs, device), to_device(targets, device), loss_fn)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                bar.close()
                raise FloatingPointError(f"loss became {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            _record(history, step, time.perf_counter() - start, loss, losses)
            running = history["loss"][-1] if running is None else 0.9 * running + 0.1 * history["loss"][-1]
            bar.set_postfix(loss=f"{running:.4f}", refresh=False)
            bar.update()
            out_of_time = time_limit is not None and _out_of_time(history["time"], time_limit)
            if (max_steps and step >= max_steps) or out_of_time:
                bar.close()
                return history
    bar.close()
    if step == 0:
        raise ValueError("loader yielded no batch: fit needs at least one (inputs, targets) batch")
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
    model(images[:1])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for image in images:
            model([image])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, (time.perf_counter() - start) / len(images))
    return best


def _check_model(model) -> None:
    """A module with at least one parameter (its device and dtype are the model's)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {describe(model)}")
    if next(model.parameters(), None) is None:
        raise ValueError("model must have parameters (its device is theirs), got a module without any")


def main(argv: list[str] | None = None) -> int:
    """``python -m cvlib.train NAME``: train a named recipe and ship its checkpoint."""
    from cvlib import recipes

    parser = argparse.ArgumentParser(
        prog="python -m cvlib.train",
        description="Train a named recipe and save data/weights/NAME.pt with its provenance.",
    )
    parser.add_argument("name", nargs="?", choices=sorted(recipes.RECIPES), help="recipe to train")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    args = parser.parse_args(argv)
    if args.list or args.name is None:
        for name, recipe in sorted(recipes.RECIPES.items()):
            print(f"{name:20s} {recipe.description}")
        return 0
    command = " ".join(["python -m cvlib.train", *(argv if argv is not None else sys.argv[1:])])
    path = recipes.run(args.name, device=args.device, command=command)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
