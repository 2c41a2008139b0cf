"""Metrics of the course: classification accuracy, segmentation and detection metrics."""

from __future__ import annotations

import torch

__all__ = ["accuracy"]


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows of ``logits`` ``[N, C]`` whose argmax equals ``labels`` ``[N]`` (int)."""
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape [N, C], got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"labels must have shape [N] = [{logits.shape[0]}], got {tuple(labels.shape)}"
        )
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set is undefined: logits and labels are empty")
    return (logits.argmax(1) == labels).float().mean().item()
