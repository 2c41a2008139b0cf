"""Non-maximum suppression: keep the best-scoring box, drop the boxes that overlap it by more
than ``iou_threshold``, repeat with the best remaining box.

Same results as ``torchvision.ops.nms`` / ``batched_nms``: kept indices (int64) in decreasing
order of score, ties in score kept in their original order.
"""

from __future__ import annotations

import numpy as np
import torch

from cvlib.ops.boxes import _inter_union, check_boxes

__all__ = ["nms", "batched_nms"]

BLOCK = 256  # rows of the IoU matrix computed at once: cache-sized, bounded memory


def _check(boxes, scores, iou_threshold) -> None:
    check_boxes(boxes)
    if not isinstance(scores, torch.Tensor) or scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must be a tensor of shape [N] = [{len(boxes)}], got "
                         f"{tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__}")
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)) or iou_threshold != iou_threshold:
        raise ValueError(f"iou_threshold must be a number, got {iou_threshold!r}")


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices ``[K]`` (int64) of the ``boxes`` ``[N, 4]`` (xyxy) that survive greedy NMS,
    sorted by decreasing ``scores`` ``[N]``."""
    _check(boxes, scores, iou_threshold)
    return _greedy(boxes, scores, iou_threshold, None)


def _greedy(boxes, scores, iou_threshold, idxs) -> torch.Tensor:
    """Greedy NMS. In score order, box ``i`` is kept unless a kept box before it (of the same
    category when ``idxs`` is given) overlaps it by more than ``iou_threshold``.

    The IoU of box ``i`` with the boxes after it is computed in blocks of ``BLOCK`` rows (one
    vectorized matrix per block, only the part right of the diagonal); the greedy pass then
    costs one NumPy row operation per kept box.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes[order]
    keep = np.ones(len(order), dtype=bool)
    for start in range(0, len(order), BLOCK):
        inter, union = _inter_union(boxes[start : start + BLOCK], boxes[start:])
        apart = ~(inter / union > iou_threshold)  # [B, N - start]; NaN (0/0) never suppresses
        if idxs is not None:
            apart |= idxs[order[start : start + BLOCK], None] != idxs[order[start:]][None, :]
        apart = apart.cpu().numpy()
        for row in range(len(apart)):
            i = start + row
            if keep[i]:
                keep[i + 1 :] &= apart[row, row + 1 :]
    return order[torch.from_numpy(keep).to(order.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each category ``idxs`` ``[N]`` (int): boxes of different categories never
    suppress each other. Returns kept indices sorted by decreasing score.

    One greedy pass over all boxes in which pairs of different categories never count as
    overlapping (exact, unlike shifting each category's boxes apart, which rounds).
    """
    _check(boxes, scores, iou_threshold)
    if not isinstance(idxs, torch.Tensor) or idxs.shape != scores.shape:
        raise ValueError(f"idxs must be a tensor of shape [N] = [{len(boxes)}], got "
                         f"{tuple(idxs.shape) if isinstance(idxs, torch.Tensor) else type(idxs).__name__}")
    return _greedy(boxes, scores, iou_threshold, idxs)
