"""Losses of the course, written out: smooth L1 and the multitask loss of single-object
detection (classification + box regression)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["smooth_l1", "single_object_loss"]


def smooth_l1(input: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Mean smooth L1 (Huber-like) loss: ``0.5 d^2 / beta`` where ``|d| < beta``, else
    ``|d| - 0.5 beta``, with ``d = input - target``. Quadratic near 0 (smooth gradients), linear
    for large errors (robust to outliers, unlike L2). Equals ``F.smooth_l1_loss``."""
    if input.shape != target.shape:
        raise ValueError(
            f"input and target must have the same shape, got {tuple(input.shape)} and {tuple(target.shape)}"
        )
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    d = (input - target).abs()
    return torch.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta).mean()


def single_object_loss(
    outputs: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    box_weight: float = 1.0,
    box_loss: str = "smooth_l1",
) -> dict[str, torch.Tensor]:
    """Multitask loss of classification + localization: ``CE + box_weight * box loss``.

    ``outputs["logits"]`` ``[B, C]`` and ``outputs["box_params"]`` ``[B, 4]`` (normalised
    ``cx, cy, w, h`` in ``[0, 1]``); ``targets["labels"]`` ``[B]`` (``0..C-1``) and
    ``targets["box_params"]`` ``[B, 4]``. Returns both terms, ``{"loss_cls", "loss_box"}``
    (the box term already weighted), so training can plot each.
    """
    if box_loss not in ("smooth_l1", "l2"):
        raise ValueError(f"box_loss must be 'smooth_l1' or 'l2', got {box_loss!r}")
    regression = smooth_l1 if box_loss == "smooth_l1" else F.mse_loss
    return {
        "loss_cls": F.cross_entropy(outputs["logits"], targets["labels"]),
        "loss_box": box_weight * regression(outputs["box_params"], targets["box_params"]),
    }
