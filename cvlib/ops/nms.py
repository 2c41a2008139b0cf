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
        raise ValueError(
            f"scores must be a tensor of shape [N] = [{len(boxes)}], got "
            f"{tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__}"
        )
    if (
        isinstance(iou_threshold, bool)
        or not isinstance(iou_threshold, (int, float))
        or iou_threshold != iou_threshold
    ):
        raise ValueError(f"iou_threshold must be a number, got {iou_threshold!r}")


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices ``[K]`` (int64) of the ``boxes`` ``[N, 4]`` (xyxy) that survive greedy NMS,
    sorted by decreasing ``scores`` ``[N]``."""
    _check(boxes, scores, iou_threshold)
    return _greedy(boxes, scores, iou_threshold)


def _greedy(boxes, scores, iou_threshold) -> torch.Tensor:
    """Greedy NMS. In score order, box ``i`` is kept unless a kept box before it overlaps it
    by more than ``iou_threshold``.

    The IoU of box ``i`` with the boxes after it is computed in blocks of ``BLOCK`` rows (one
    vectorized matrix per block, only the part right of the diagonal); the greedy pass then
    costs one NumPy row operation per kept box.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    boxes = boxes[order]
    keep = np.ones(len(order), dtype=bool)
    for start in range(0, len(order), BLOCK):
        inter, union = _inter_union(boxes[start : start + BLOCK], boxes[start:])
        apart = (~(inter / union > iou_threshold)).cpu().numpy()  # NaN (0/0) never suppresses
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

    One :func:`nms` per category (exact, and ``C`` times less work than one NMS over all
    boxes), then the kept boxes of all categories sorted by score.
    """
    _check(boxes, scores, iou_threshold)
    if not isinstance(idxs, torch.Tensor) or idxs.shape != scores.shape:
        raise ValueError(
            f"idxs must be a tensor of shape [N] = [{len(boxes)}], got "
            f"{tuple(idxs.shape) if isinstance(idxs, torch.Tensor) else type(idxs).__name__}"
        )
    keep = [
        members[_greedy(boxes[members], scores[members], iou_threshold)]
        for members in (torch.nonzero(idxs == c).flatten() for c in idxs.unique())
    ]
    keep = torch.cat(keep) if keep else torch.zeros(0, dtype=torch.int64, device=boxes.device)
    keep = keep.sort().values  # index order, so that equal scores stay in index order
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]
