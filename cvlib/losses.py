"""Losses of the course, written out: smooth L1 and the multitask loss of single-object
detection (classification + box regression), and the focal loss of RetinaNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cvlib._checks import choice, describe, number, tensor

__all__ = ["smooth_l1", "single_object_loss", "sigmoid_focal_loss"]


def _check_pair(input, input_name: str, target, target_name: str) -> None:
    """Two finite floating point tensors of the same shape."""
    tensor(input, input_name, dtype="float", finite=True)
    tensor(target, target_name, dtype="float", finite=True)
    if input.shape != target.shape:
        raise ValueError(
            f"{input_name} and {target_name} must have the same shape, got {tuple(input.shape)} "
            f"and {tuple(target.shape)}"
        )


def _entry(mapping, name: str, key: str):
    """``mapping[key]``, with an error naming ``name`` when it is not a dict holding ``key``."""
    if not isinstance(mapping, dict) or key not in mapping:
        raise ValueError(f"{name} must be a dict with a {key!r} entry, got {describe(mapping)}")
    return mapping[key]


def smooth_l1(input: torch.Tensor, target: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """Mean smooth L1 (Huber-like) loss: ``0.5 d^2 / beta`` where ``|d| < beta``, else
    ``|d| - 0.5 beta``, with ``d = input - target``. Quadratic near 0 (smooth gradients), linear
    for large errors (robust to outliers, unlike L2). Equals ``F.smooth_l1_loss``."""
    _check_pair(input, "input", target, "target")
    number(beta, "beta", low=0, low_open=True)
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
    choice(box_loss, "box_loss", ("smooth_l1", "l2"))
    number(box_weight, "box_weight", low=0)
    logits = tensor(_entry(outputs, "outputs", "logits"), "outputs['logits']", shape=("B", "C"),
                    dtype="float", finite=True)
    labels = tensor(_entry(targets, "targets", "labels"), "targets['labels']", shape=(len(logits),),
                    dtype="int")
    if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"targets['labels'] must lie in 0..{logits.shape[1] - 1}, got {labels.tolist()}")
    params, wanted = _entry(outputs, "outputs", "box_params"), _entry(targets, "targets", "box_params")
    _check_pair(params, "outputs['box_params']", wanted, "targets['box_params']")
    regression = smooth_l1 if box_loss == "smooth_l1" else F.mse_loss
    return {
        "loss_cls": F.cross_entropy(logits, labels),
        "loss_box": box_weight * regression(params, wanted),
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
    _check_pair(inputs, "inputs", targets, "targets")
    if ((targets < 0) | (targets > 1)).any():
        raise ValueError("targets must lie in [0, 1]")
    number(alpha, "alpha", high=1)
    number(gamma, "gamma", low=0)
    choice(reduction, "reduction", ("none", "mean", "sum"))
    p = inputs.sigmoid()
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss if reduction == "none" else loss.mean() if reduction == "mean" else loss.sum()
