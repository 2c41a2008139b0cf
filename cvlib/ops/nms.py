"""Non-maximum suppression: keep the best-scoring box, drop the boxes that overlap it by more
than ``iou_threshold``, repeat with the best remaining box.

Read :func:`cvlib.ops.reference.nms_steps` first: the lecture's loop, one iteration at a time.
This file computes the same boxes fast (NumPy on a few boxes, blocks of IoUs on many), which
hides the algorithm.

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
from cvlib.ops.boxes import _check_boxes, _inter_union, _numpy

__all__ = ["nms", "batched_nms"]

BLOCK = 128  # boxes per block: an IoU block stays in cache, memory stays bounded
LATER = np.triu(np.ones((BLOCK, BLOCK), dtype=bool), k=1)  # [i, j]: j is visited after i (np.triu is slow)


def _check_scores(scores, boxes, name: str = "scores", dtype: str = "real") -> None:
    """``scores`` (or the categories ``idxs``): a tensor ``[N]`` like ``boxes``, no NaN."""
    if tensor(scores, name).shape != boxes.shape[:1]:
        raise ValueError(f"{name} must have shape [N] = [{len(boxes)}] like boxes, got {tuple(scores.shape)}")
    tensor(scores, name, dtype=dtype)
    if scores.is_floating_point() and _any_nan(scores):
        raise ValueError(f"{name} contains NaN")


def _any_nan(values: torch.Tensor) -> bool:
    """Whether ``values`` holds a NaN; in NumPy where it can (a microsecond, not five)."""
    array = _numpy(values)
    return bool(np.isnan(array).any() if array is not None else torch.isnan(values).any())


def _check_nms_boxes(boxes) -> None:
    """:func:`~cvlib.ops.boxes._check_boxes`, and not bfloat16: NumPy has no bfloat16 and
    torchvision's NMS kernels none either."""
    _check_boxes(boxes)
    if boxes.dtype == torch.bfloat16:
        raise TypeError("boxes must be float16, float32 or float64 for NMS (as torchvision's), got bfloat16")


def _check_threshold(iou_threshold) -> None:
    number(iou_threshold, "iou_threshold", low=0)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices ``[K]`` (int64) of the ``boxes`` ``[N, 4]`` (xyxy) that survive greedy NMS,
    sorted by decreasing ``scores`` ``[N]``. A box is dropped when its IoU with a kept,
    better-scoring box is ``> iou_threshold``; two zero-area boxes (IoU 0 / 0) never suppress
    each other."""
    _check_nms_boxes(boxes)
    _check_scores(scores, boxes)
    _check_threshold(iou_threshold)
    if len(boxes) <= BLOCK:  # one block: no block machinery
        threshold = _largest_not_above(iou_threshold, boxes.dtype).item()
        return _greedy_all_pairs(boxes.detach().cpu().numpy(), scores, threshold, boxes.device)
    return _greedy(boxes, _by_score(scores), iou_threshold)


def _by_score(scores: torch.Tensor) -> torch.Tensor:
    """Indices that sort ``scores`` in decreasing order, equal scores in index order."""
    return torch.sort(scores, descending=True, stable=True).indices


def _order_by_score(scores: torch.Tensor) -> np.ndarray:
    """:func:`_by_score` as a NumPy array, sorted by NumPy where it can (faster on a few scores).

    Floats: a stable ascending sort of the negated scores. Integers: a stable ascending sort of
    the reversed scores, read backwards, is the stable descending sort (equal scores in index
    order), with no negation (which would overflow an int8 -128).
    """
    values = _numpy(scores)
    if values is None:
        return _by_score(scores).cpu().numpy()
    if scores.is_floating_point():
        return np.argsort(-values, kind="stable")
    return len(values) - 1 - np.argsort(values[::-1], kind="stable")[::-1]


def _greedy_all_pairs(boxes: np.ndarray, scores: torch.Tensor, threshold: float, device) -> torch.Tensor:
    """Greedy NMS of at most ``BLOCK`` boxes ``[N, 4]`` (a NumPy array): sort by ``scores``
    ``[N]``, the whole IoU matrix ``[N, N]`` at once, then :func:`_greedy_from_overlaps`, with
    ``threshold`` from :func:`_largest_not_above`. Returns the kept indices (on ``device``).

    In NumPy, because for a few dozen boxes a torch call costs more than its arithmetic (the
    IoU formula is :func:`cvlib.ops.boxes.box_iou`'s, term for term, so the numbers are equal).
    x and y go together as the two rows of ``[2, N, N]`` arrays: half as many NumPy calls.
    """
    order = _order_by_score(scores)
    coordinates = np.ascontiguousarray(boxes[order].T)  # [4, N]; contiguous rows broadcast fast
    low, high = coordinates[:2], coordinates[2:]  # [2, N]: (x1, y1) and (x2, y2)
    ends = np.minimum(high[:, :, None], high[:, None, :])  # [2, N, N]: where each overlap ends
    starts = np.maximum(low[:, :, None], low[:, None, :])  # and where it starts, along x and y
    # the overlaps clamped at 0: ends - min(starts, ends) is ends - starts where that is positive
    # and exactly 0 elsewhere, the numbers of a clamp in 60% of its time (3.3 against 5.8 us on
    # 100 boxes)
    sides = ends - np.minimum(starts, ends, out=starts)
    inter = sides[0] * sides[1]
    width, height = high - low
    area = width * height
    with np.errstate(invalid="ignore"):  # 0 / 0 for two zero-area boxes: NaN, not > threshold
        overlaps = inter / (area[:, None] + area[None, :] - inter) > threshold
    kept = _greedy_from_overlaps(overlaps & LATER[: len(order), : len(order)])
    return torch.from_numpy(order[kept]).to(device)


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
    final, and in practice a few rounds (the longest chain of suppressions) suffice. A round is
    one matrix-vector product (how many kept boxes overlap each box; exact in float32), a third
    faster than selecting the kept rows and reducing them.
    """
    kept = ~overlaps.any(axis=0)  # the first round, from all kept: often the answer already
    if kept.all():
        return kept
    weights = overlaps.astype(np.float32)
    for _ in range(len(overlaps)):
        update = kept.astype(np.float32) @ weights == 0
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
    _check_nms_boxes(boxes)
    _check_scores(scores, boxes)
    _check_scores(idxs, boxes, "idxs", dtype="int")
    _check_threshold(iou_threshold)
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    if len(boxes) <= BLOCK:  # one block: the IoU matrix sees every pair anyway; in NumPy (same numbers)
        values, categories = boxes.detach().cpu().numpy(), idxs.detach().cpu().numpy()
        low = np.minimum(values.min(), 0)  # torchvision's max + 1 lets negative boxes meet
        offsets = categories.astype(values.dtype) * (values.max() - low + 1)
        threshold = _largest_not_above(iou_threshold, boxes.dtype).item()
        return _greedy_all_pairs(values + offsets[:, None], scores, threshold, boxes.device)
    low = boxes.min().clamp(max=0)
    offsets = idxs.to(boxes) * (boxes.max() - low + 1)
    by_score = _by_score(scores)
    by_category = by_score[torch.sort(idxs[by_score], stable=True).indices]
    keep = _greedy(boxes + offsets[:, None], by_category, iou_threshold).sort().values
    return keep[_by_score(scores[keep])]
