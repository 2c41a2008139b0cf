"""Losses of the course, written out: smooth L1 and the multitask loss of single-object
detection (classification + box regression), and the focal loss of RetinaNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["smooth_l1", "single_object_loss", "sigmoid_focal_loss"]


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


def sigmoid_focal_loss(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    reduction: str = "none",
) -> torch.Tensor:
    """Focal loss (Lin et al. 2017, RetinaNet) of logits ``inputs`` and targets in ``[0, 1]`` of
    the same shape: ``-alpha_t (1 - p_t)^gamma log(p_t)``, binary cross-entropy scaled down
    for the well classified examples (``p_t`` near 1), so that the many easy background
    predictions stop dominating the loss; ``alpha_t = alpha`` for positives and
    ``1 - alpha`` for negatives (``alpha < 0``: no weighting). ``reduction``: ``"none"``
    (the shape of ``inputs``), ``"mean"`` or ``"sum"``. Equals
    ``torchvision.ops.sigmoid_focal_loss``."""
    if inputs.shape != targets.shape:
        raise ValueError(
            "inputs and targets must have the same shape, "
            f"got {tuple(inputs.shape)} and {tuple(targets.shape)}"
        )
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    p = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss if reduction == "none" else loss.mean() if reduction == "mean" else loss.sum()
