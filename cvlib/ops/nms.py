"""Non-maximum suppression: keep the best-scoring box, drop the boxes that overlap it by more
than ``iou_threshold``, repeat with the best remaining box.

Same results as ``torchvision.ops.nms`` / ``batched_nms``: kept indices (int64) in decreasing
order of score. Equal scores keep their index order (a stable sort), as torchvision's CPU
kernel does; torchvision's ``batched_nms`` above 1,000 boxes (a loop over categories and an
unstable sort) keeps the same boxes but may list equal scores in another order.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from cvlib._checks import number, tensor
from cvlib.ops.boxes import _check_boxes, _inter_union

__all__ = ["nms", "batched_nms"]

BLOCK = 128  # boxes per block: an IoU block stays in cache, memory stays bounded
LATER = np.triu(np.ones((BLOCK, BLOCK), dtype=bool), k=1)  # [i, j]: j is visited after i (np.triu is slow)


def _check_scores(scores, boxes, name: str = "scores", dtype: str = "real") -> None:
    """``scores`` (or the categories ``idxs``): a tensor ``[N]`` like ``boxes``, no NaN."""
    if tensor(scores, name).shape != boxes.shape[:1]:
        raise ValueError(f"{name} must have shape [N] = [{len(boxes)}] like boxes, got {tuple(scores.shape)}")
    tensor(scores, name, dtype=dtype)
    if scores.is_floating_point() and torch.isnan(scores).any():
        raise ValueError(f"{name} contains NaN")


def _check_threshold(iou_threshold) -> None:
    number(iou_threshold, "iou_threshold", low=0)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices ``[K]`` (int64) of the ``boxes`` ``[N, 4]`` (xyxy) that survive greedy NMS,
    sorted by decreasing ``scores`` ``[N]``. A box is dropped when its IoU with a kept,
    better-scoring box is ``> iou_threshold``; two zero-area boxes (IoU 0 / 0) never suppress
    each other."""
    _check_boxes(boxes)
    _check_scores(scores, boxes)
    _check_threshold(iou_threshold)
    if len(boxes) <= BLOCK:  # one block: no block machinery
        return _greedy_all_pairs(boxes, scores, iou_threshold)
    return _greedy(boxes, _by_score(scores), iou_threshold)


def _by_score(scores: torch.Tensor) -> torch.Tensor:
    """Indices that sort ``scores`` in decreasing order, equal scores in index order."""
    return torch.sort(scores, descending=True, stable=True).indices


def _greedy_all_pairs(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS of at most ``BLOCK`` boxes ``[N, 4]``: sort by ``scores`` ``[N]``, the whole
    IoU matrix ``[N, N]`` at once, then :func:`_greedy_from_overlaps`. Returns the kept indices.

    In NumPy, because for a few dozen boxes a torch call costs more than its arithmetic (the
    IoU formula is :func:`cvlib.ops.boxes.box_iou`'s, term for term, so the numbers are equal).
    """
    order = _by_score(scores).cpu().numpy()
    x1, y1, x2, y2 = boxes.detach().cpu().numpy()[order].T[:, :, None]  # [N, 1] each
    inter = np.maximum(np.minimum(x2, x2.T) - np.maximum(x1, x1.T), 0)
    inter *= np.maximum(np.minimum(y2, y2.T) - np.maximum(y1, y1.T), 0)
    area = (x2 - x1) * (y2 - y1)
    with np.errstate(invalid="ignore"):  # 0 / 0 for two zero-area boxes: NaN, not > threshold
        overlaps = inter / (area + area.T - inter) > _largest_not_above(iou_threshold, boxes.dtype).item()
    kept = _greedy_from_overlaps(overlaps & LATER[: len(order), : len(order)])
    return torch.from_numpy(order[kept]).to(boxes.device)


def _greedy(boxes: torch.Tensor, order: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS visiting ``boxes`` in ``order``: a box is kept unless a kept box visited
    before it overlaps it by more than ``iou_threshold``. Returns the kept indices in ``order``.

    A block of ``BLOCK`` boxes at a time: its boxes that no earlier block suppressed get one
    vectorized IoU matrix against every later box still alive that reaches into the block's
    x-range (the others cannot overlap it). Its square part is resolved by :func:`_greedy_from_overlaps`;
    then the kept rows suppress the later boxes all at once.
    """
    boxes = boxes[order]
    x1, x2 = boxes[:, 0].cpu().numpy(), boxes[:, 2].cpu().numpy()
    threshold = _largest_not_above(iou_threshold, boxes.dtype)
    keep = np.ones(len(order), dtype=bool)
    for start in range(0, len(order), BLOCK):
        stop = min(start + BLOCK, len(order))
        rows = start + np.flatnonzero(keep[start:stop])  # not suppressed by an earlier block
        if len(rows) == 0:
            continue
        later = stop + np.flatnonzero(keep[stop:])
        later = later[(x1[later] < x2[rows].max()) & (x2[later] > x1[rows].min())]
        columns = torch.from_numpy(np.concatenate([rows, later])).to(boxes.device)
        inter, union = _inter_union(boxes[columns[: len(rows)]], boxes[columns])
        overlaps = (inter / union > threshold).cpu().numpy()  # NaN (0 / 0) is not > threshold
        kept = _greedy_from_overlaps(overlaps[:, : len(rows)] & LATER[: len(rows), : len(rows)])
        keep[rows] = kept
        keep[later] &= ~overlaps[kept, len(rows) :].any(axis=0)
    return order[torch.from_numpy(keep).to(order.device)]


def _greedy_from_overlaps(overlaps: np.ndarray) -> np.ndarray:
    """Greedy NMS of ``m`` boxes in visiting order, given ``overlaps`` ``[m, m]`` (bool, True
    where box ``j`` would suppress box ``i > j``; False on and below the diagonal).

    The answer is the one ``kept`` with ``kept[i] = not any(kept[j] and overlaps[j, i])``.
    Start from all kept and apply that rule to every box at once until nothing changes: box
    ``i`` depends only on the boxes before it, so after ``t`` rounds the first ``t`` boxes are
    final, and in practice a few rounds (the longest chain of suppressions) suffice.
    """
    kept = np.ones(len(overlaps), dtype=bool)
    for _ in range(len(overlaps)):
        update = ~overlaps[kept].any(axis=0)
        if (update == kept).all():
            break
        kept = update
    return kept


@lru_cache(maxsize=64)  # NMS is called once per image with the same threshold
def _largest_not_above(threshold: float, dtype: torch.dtype) -> torch.Tensor:
    """The largest number of ``dtype`` that is ``<= threshold``: for an IoU of that ``dtype``,
    ``iou > result`` is exactly ``iou > threshold`` in double precision, the comparison of
    torchvision's kernel (a float32 IoU of 0.3 is above the double 0.3, not above float32 0.3).
    """
    exact = torch.tensor(threshold, dtype=torch.float64)
    rounded = exact.to(dtype)
    if rounded > exact:
        rounded = torch.nextafter(rounded, rounded.new_tensor(-float("inf")))
    return rounded


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each category ``idxs`` ``[N]`` (int): boxes of different categories never
    suppress each other. Returns kept indices (int64) sorted by decreasing score.

    The coordinate-offset trick: shift the boxes of category ``c`` by ``c * (max - low + 1)``,
    with ``max`` the largest coordinate and ``low = min(0, smallest coordinate)``, so that boxes
    of different categories cannot overlap, and run one greedy NMS over all of them. (For
    boxes inside the image, ``low = 0`` and this is torchvision's offset; torchvision's
    ``max + 1`` alone lets a box left of 0 land on a box of the next category.) Visiting the
    boxes category by category (by score within one) keeps each block of :func:`_greedy` within
    a stretch of the shifted axis, so it compares only the boxes of its own categories.
    """
    _check_boxes(boxes)
    _check_scores(scores, boxes)
    _check_scores(idxs, boxes, "idxs", dtype="int")
    _check_threshold(iou_threshold)
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    low = boxes.min().clamp(max=0)  # torchvision's max + 1 lets negative boxes meet
    offsets = idxs.to(boxes) * (boxes.max() - low + 1)
    if len(boxes) <= BLOCK:  # one block: the IoU matrix sees every pair anyway
        return _greedy_all_pairs(boxes + offsets[:, None], scores, iou_threshold)
    by_score = _by_score(scores)
    by_category = by_score[torch.sort(idxs[by_score], stable=True).indices]
    keep = _greedy(boxes + offsets[:, None], by_category, iou_threshold).sort().values
    return keep[_by_score(scores[keep])]
