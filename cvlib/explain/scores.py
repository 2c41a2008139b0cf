"""Scoring an explanation map against the object's ground-truth mask, so that "this method
localizes better" becomes a number."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvlib import _checks

__all__ = ["pointing_game", "map_iou"]


def _check(maps: torch.Tensor, masks: torch.Tensor) -> None:
    _checks.tensor(maps, "maps", shape=("B", "H", "W"), dtype="real")
    _checks.tensor(masks, "masks", dtype="int_or_bool")
    if masks.shape != maps.shape:
        raise ValueError(f"maps and masks must both be [B, H, W], "
                         f"got {tuple(maps.shape)}, {tuple(masks.shape)}")
    if not torch.isfinite(maps).all():
        raise ValueError("maps must be finite")


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Hit ``[B]`` bool: the map's maximum ``[B, H, W]`` lies in the mask ``[B, H, W]`` grown
    by ``tolerance`` pixels (Zhang et al. 2016 use 15 pixels on 224-pixel images)."""
    _check(maps, masks)
    _checks.integer(tolerance, "tolerance", low=0)
    grown = masks.float()[:, None]
    if tolerance:
        grown = F.max_pool2d(grown, 2 * tolerance + 1, stride=1, padding=tolerance)
    peak = maps.flatten(1).argmax(dim=1)
    return grown.flatten(1).gather(1, peak[:, None])[:, 0] > 0


def map_iou(maps: torch.Tensor, masks: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """IoU ``[B]`` of ``{map >= threshold * max map}`` with the mask (both ``[B, H, W]``)."""
    _check(maps, masks)
    _checks.number(threshold, "threshold", low=0, high=1, low_open=True)
    region = maps >= threshold * maps.flatten(1).amax(dim=1)[:, None, None]
    masks = masks.bool()
    inter = (region & masks).flatten(1).sum(dim=1)
    union = (region | masks).flatten(1).sum(dim=1)
    return inter.float() / union.clamp(min=1).float()
