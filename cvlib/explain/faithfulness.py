"""Faithfulness of an explanation map: deletion and insertion curves (Petsiuk et al. 2018).

If a map ranks the pixels by how much the model's decision uses them, then

- **deleting** the pixels in that order (most important first, replaced by a neutral value)
  should make the class probability fall fast: a *low* area under the deletion curve;
- **inserting** them in that order into a blurred copy of the image should make it rise fast:
  a *high* area under the insertion curve.

A random ranking is the baseline both must beat. Unlike the pointing game or the IoU with an
object mask, these ask the model itself, not a human annotation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import integer, number, tensor
from cvlib.explain.hooks import check_images, pick_target, prepared

__all__ = ["deletion_curve", "insertion_curve", "area_under_curve", "pixel_order", "blur"]


def blur(images: torch.Tensor, kernel: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """Gaussian blur ``[B, 3, H, W]`` (reflect padding): the "nothing there yet" image of insertion."""
    tensor(images, "images", shape=("B", 3, "H", "W"), dtype="float", finite=True)
    if integer(kernel, "kernel", low=1) % 2 == 0:
        raise ValueError(f"kernel must be an odd int (the blurred image keeps its size), got {kernel}")
    number(sigma, "sigma", low=0, low_open=True)
    x = torch.arange(kernel, dtype=images.dtype, device=images.device) - (kernel - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).view(1, 1, 1, kernel).repeat(3, 1, 1, 1)
    pad = kernel // 2
    out = F.conv2d(F.pad(images, (pad, pad, 0, 0), mode="reflect"), g, groups=3)
    return F.conv2d(F.pad(out, (0, 0, pad, pad), mode="reflect"), g.transpose(2, 3), groups=3)


def pixel_order(maps: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Pixel indices ``[B, H * W]`` from the most to the least important by ``maps``
    ``[B, H, W]``; equal values in a random (seeded) order, so that a flat region of a map is
    not read in raster order."""
    tensor(maps, "maps", ndim=3, dtype="real", finite=True)
    integer(seed, "seed", low=0)
    flat = maps.flatten(1)
    generator = torch.Generator().manual_seed(seed)
    shuffle = torch.stack([torch.randperm(flat.shape[1], generator=generator) for _ in range(len(flat))])
    shuffle = shuffle.to(flat.device)
    by_value = flat.gather(1, shuffle).argsort(dim=1, descending=True, stable=True)
    return shuffle.gather(1, by_value)


def _curve(model, images, maps, target, steps, start, end, seed) -> torch.Tensor:
    """Class probability ``[B, steps + 1]`` as the pixels, in map order, go from ``start`` to
    ``end`` (fractions 0, 1/steps, ..., 1 of them switched)."""
    images = check_images(images)
    tensor(maps, "maps", shape=(images.shape[0], *images.shape[2:]), dtype="real", finite=True)
    integer(steps, "steps", low=1)
    batch, _, height, width = images.shape
    order = pixel_order(maps.detach(), seed)
    counts = [round(k * height * width / steps) for k in range(steps + 1)]
    probs = []
    with prepared(model), torch.no_grad():
        target = pick_target(model(images), target)
        for count in counts:
            switched = torch.zeros(batch, height * width, dtype=torch.bool, device=images.device)
            switched.scatter_(1, order[:, :count], True)
            mixed = torch.where(switched.view(batch, 1, height, width), end, start)
            probs.append(model(mixed).softmax(dim=1).gather(1, target[:, None])[:, 0])
    return torch.stack(probs, dim=1)


def deletion_curve(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, target=None,
                   steps: int = 16, fill: float = 0.5, seed: int = 0) -> torch.Tensor:
    """Probability of the class ``[B, steps + 1]`` while the pixels of ``images`` ``[B, 3, H, W]``
    are replaced by ``fill``, most important first by ``maps`` ``[B, H, W]`` (``target``
    None: the predicted class). Lower is more faithful."""
    number(fill, "fill")
    images = check_images(images)
    return _curve(model, images, maps, target, steps, images, torch.full_like(images, fill), seed)


def insertion_curve(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, target=None,
                    steps: int = 16, seed: int = 0) -> torch.Tensor:
    """Probability of the class ``[B, steps + 1]`` while the pixels of ``images`` are put back,
    most important first, into a blurred copy (:func:`blur`). Higher is more faithful."""
    images = check_images(images)
    return _curve(model, images, maps, target, steps, blur(images), images, seed)


def area_under_curve(curves: torch.Tensor) -> torch.Tensor:
    """Area ``[B]`` under curves ``[B, steps + 1]`` sampled at fractions ``0 .. 1`` (trapezoids)."""
    tensor(curves, "curves", ndim=2, dtype="float", finite=True)
    if curves.shape[1] < 2:
        raise ValueError(f"curves need at least 2 points, got shape {tuple(curves.shape)}")
    return torch.trapezoid(curves, dx=1.0 / (curves.shape[1] - 1), dim=1)
