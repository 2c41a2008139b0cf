"""Occlusion sensitivity (Zeiler & Fergus 2014): slide a grey patch over the image and record
how much the probability of the class drops; large drops mark the pixels the decision uses."""

from __future__ import annotations

import torch
from torch import nn

from cvlib import _checks
from cvlib.explain.hooks import check_images, pick_target, prepared

__all__ = ["occlusion"]


def occlusion(
    model: nn.Module, images: torch.Tensor, target=None, patch: int = 8, stride: int = 4,
    fill: float = 0.5, batch_size: int = 256,
) -> torch.Tensor:
    """Drop in ``p_c`` when a ``patch x patch`` square of value ``fill`` covers each pixel,
    averaged over the patch positions (every ``stride`` pixels) that cover it.

    ``[B, 3, H, W]`` -> ``[B, H, W]``; pixels no patch covers get 0.
    """
    images = check_images(images, model=_checks.module(model))
    _, _, height, width = images.shape
    _checks.integer(patch, "patch", low=1, high=min(height, width))
    _checks.integer(stride, "stride", low=1)
    _checks.number(fill, "fill")
    _checks.integer(batch_size, "batch_size", low=1)
    positions = [(y, x) for y in range(0, height - patch + 1, stride)
                 for x in range(0, width - patch + 1, stride)]
    maps = torch.zeros(images.shape[0], height, width, device=images.device)
    with prepared(model), torch.no_grad():
        probs = model(images).softmax(dim=1)
        target = pick_target(probs, target)
        base = probs.gather(1, target[:, None])[:, 0]
        counts = torch.zeros(height, width, device=images.device)
        for y, x in positions:
            counts[y:y + patch, x:x + patch] += 1
        for b in range(images.shape[0]):
            for start in range(0, len(positions), batch_size):
                chunk = positions[start:start + batch_size]
                occluded = images[b].repeat(len(chunk), 1, 1, 1)
                for n, (y, x) in enumerate(chunk):
                    occluded[n, :, y:y + patch, x:x + patch] = fill
                drop = base[b] - model(occluded).softmax(dim=1)[:, target[b]]
                for n, (y, x) in enumerate(chunk):
                    maps[b, y:y + patch, x:x + patch] += drop[n]
    return maps / counts.clamp(min=1)
