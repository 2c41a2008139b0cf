"""The lecture's algorithms as the lecture says them: NMS, RoI Pool and RoI Align, one box at a
time. Read these first.

``cvlib.ops.nms``, ``roi_pool`` and ``roi_align`` compute the same numbers fast (blocks of IoUs,
range-maximum tables, interpolation matrices), which hides the algorithm. These versions are
written for reading, as torchvision keeps a slow pure-Python ``_roi_align`` beside its kernel:
a loop over boxes (or RoIs), the lecture's steps in order, vectorised only inside one box (all
the bins, or all the sample points, of one RoI at once); ``nms_steps`` also records every
iteration, and ``roi_pool_bins`` / ``roi_align_points`` give RoI Pool's bins and RoI Align's
sample points along one axis of a box, for pictures (the loops use them). The tests check that
they give the same results as the fast versions and as ``torchvision.ops``;
``bench/reference.py`` times them against torchvision (target: within 20x at a hundred boxes,
so that a notebook that calls them stays fast).

Every function checks its inputs as the fast version does; the RoI loops take ``rois [K, 5]``
``(batch_index, x1, y1, x2, y2)`` and features ``[N, C, H, W]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cvlib._checks import integer, number, tensor
from cvlib.ops.boxes import _check_boxes, _inter_union
from cvlib.ops.nms import _by_score, _check_scores, _check_threshold, _largest_not_above
from cvlib.ops.roi import _check, rois_from_boxes

__all__ = [
    "nms_steps", "nms_loop", "roi_pool_bins", "roi_pool_loop", "roi_align_points", "roi_align_loop",
    "bilinear_sample",
]


def nms_steps(
    boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float
) -> list[tuple[int, torch.Tensor]]:
    """Greedy non-maximum suppression as the lecture states it, one iteration at a time:

    1. sort the boxes by score (equal scores in index order);
    2. the best box left is a detection: keep it;
    3. remove every box left whose IoU with it is ``> iou_threshold`` (two empty boxes, IoU
       0 / 0, never remove each other);
    4. repeat until no box is left.

    Returns one ``(kept index, removed indices [S])`` pair per iteration (notebook 04 draws
    them); the kept indices are those of :func:`cvlib.ops.nms`, in the same order. The IoU of
    every pair is computed once, up front (``N x N``: for reading, at a few hundred boxes).
    """
    _check_boxes(boxes)
    _check_scores(scores, boxes)
    _check_threshold(iou_threshold)
    threshold = _largest_not_above(iou_threshold, boxes.dtype)  # compared in double, as torchvision
    inter, union = _inter_union(boxes, boxes)
    overlaps = (inter / union > threshold).tolist()  # overlaps[i][j]: i removes j (NaN is not >)
    left, steps = _by_score(scores).tolist(), []  # 1.
    while left:
        best, *rest = left  # 2.
        removes = overlaps[best]
        removed = [i for i in rest if removes[i]]  # 3.
        steps.append((best, removed))
        left = [i for i in rest if not removes[i]] if removed else rest  # 4.
    # the removed indices as tensors: one tensor, split by step (one torch call, not one a step)
    removed = torch.tensor([i for _, r in steps for i in r], dtype=torch.int64, device=boxes.device)
    return list(zip([best for best, _ in steps], removed.split([len(r) for _, r in steps])))


def nms_loop(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """The kept indices ``[K]`` (int64) of :func:`nms_steps`, like :func:`cvlib.ops.nms`."""
    kept = [k for k, _ in nms_steps(boxes, scores, iou_threshold)]
    return torch.tensor(kept, dtype=torch.int64, device=boxes.device)


def _round_half_away(x: float) -> int:
    """C's ``round``, which torchvision's RoI Pool uses: halves go away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def roi_pool_bins(start: float, end: float, bins: int, spatial_scale: float = 1.0,
                  limit: int | None = None) -> list[tuple[int, int]]:
    """Steps 1 and 2 of RoI Pool along one axis of a box from ``start`` to ``end`` (pixels): the
    edges scaled by ``spatial_scale`` and **rounded** to feature cells (the box at least one cell),
    then cut into ``bins`` bins, also rounded. Returns each bin's cells ``(first, last)``
    (``last`` excluded; neighbouring bins may share a cell), clipped to ``[0, limit]`` (the
    map's size; ``None``: not clipped)."""
    number(start, "start")
    number(end, "end")
    integer(bins, "bins", low=1)
    number(spatial_scale, "spatial_scale", low=0, low_open=True)
    limit = math.inf if limit is None else integer(limit, "limit", low=0)
    first, last = (_round_half_away(v * spatial_scale) for v in (start, end))
    size = max(last - first + 1, 1)

    def clip(cell: int) -> int:
        return int(min(max(cell, 0), limit))

    return [(clip(first + math.floor(p * size / bins)), clip(first + math.ceil((p + 1) * size / bins)))
            for p in range(bins)]


def roi_pool_loop(input: torch.Tensor, rois: torch.Tensor, output_size, spatial_scale: float = 1.0):
    """RoI Pool (Fast R-CNN), RoI by RoI: ``[K, C, PH, PW]``, like :func:`cvlib.ops.roi_pool`.

    1. scale the box to the feature map and **round** it to whole cells (at least one);
    2. cut it into ``PH x PW`` bins, also rounded: bin ``p`` covers rows
       ``floor(p * h / PH)`` to ``ceil((p + 1) * h / PH)`` of the box, clipped to the map;
    3. each output value is the **max** over its bin's cells (0 for a bin outside the map):
       the max over the bin's rows, then over its columns (all bins of the RoI at once).
    """
    (ph, pw), _ = _check(input, output_size, spatial_scale), rois_from_boxes(rois, len(input), "rois")
    height, width = input.shape[-2:]
    out = input.new_zeros((len(rois), input.shape[1], ph, pw))
    for k, (n, x1, y1, x2, y2) in enumerate(rois.tolist()):
        rows = roi_pool_bins(y1, y2, ph, spatial_scale, height)  # 1. and 2.: PH bins (first, last)
        cols = roi_pool_bins(x1, x2, pw, spatial_scale, width)  # PW bins (first, last)
        empty = [[r1 <= r0 or c1 <= c0 for c0, c1 in cols] for r0, r1 in rows]  # [PH][PW]: off the map
        if all(map(all, empty)):
            continue  # the whole box is off the map: its bins stay 0
        # 3. the max over each bin's rows [C, PH, W], then over each bin's columns [C, PH, PW]
        row_max = input[int(n)].index_select(1, _cells(rows, input.device)).unflatten(1, (ph, -1)).amax(dim=2)
        bin_max = row_max.index_select(2, _cells(cols, input.device)).unflatten(2, (pw, -1)).amax(dim=3)
        out[k] = bin_max.masked_fill(torch.tensor(empty, device=input.device), 0)
    return out


def _cells(bins: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
    """The cells of ``B`` bins ``(first, last)`` as one index ``[B * S]``, ``S`` cells a bin (the
    largest bin's size): a smaller bin repeats its last cell (the max is the same), an empty bin
    reads cell 0 (its value is then replaced by 0)."""
    size = max(max(last - first for first, last in bins), 1)
    cells = [max(min(first + i, last - 1), 0) for first, last in bins for i in range(size)]
    return torch.tensor(cells, dtype=torch.int64, device=device)


def bilinear_sample(feature: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """``feature`` ``[C, H, W]`` at every point of the grid ``ys [P] x xs [Q]``: ``[C, P, Q]``.

    Bilinear interpolation is linear interpolation along y, then along x: a point at ``y``
    between rows ``y0`` and ``y0 + 1`` (``dy = y - y0``) reads ``(1 - dy) row[y0] + dy row[y0 + 1]``,
    so it is the weighted sum of its four neighbouring cells, weights ``(1 - dy)(1 - dx)``,
    ``(1 - dy) dx``, ``dy (1 - dx)``, ``dy dx``. As in torchvision, a point more than one cell
    outside the map is 0, and a point just outside takes the value at the border.
    """
    tensor(feature, "feature", ndim=3, dtype="float")
    tensor(ys, "ys", ndim=1, dtype="float", finite=True)
    tensor(xs, "xs", ndim=1, dtype="float", finite=True)
    return _bilinear(feature, ys, xs)


def _bilinear(feature: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """:func:`bilinear_sample` without the checks (:func:`roi_align_loop` checks its input once)."""

    def neighbours(coords: torch.Tensor, size: int):
        """The cells below and above each coordinate ``[P]`` (long) and their weights ``1 - d``, ``d``."""
        inside = ((coords >= -1) & (coords <= size)).to(coords.dtype)  # 0: more than a cell off the map
        coords = coords.clamp(0, size - 1)  # just off the map: at the border
        low = coords.floor()
        d = (coords - low) * inside
        low = low.long()
        return low, (low + 1).clamp(max=size - 1), inside - d, d

    y0, y1, wy0, wy1 = neighbours(ys, feature.shape[1])
    x0, x1, wx0, wx1 = neighbours(xs, feature.shape[2])
    # along y: every point's row [C, P, W]; then along x: every point [C, P, Q]
    rows = wy0[:, None] * feature.index_select(1, y0) + wy1[:, None] * feature.index_select(1, y1)
    return wx0 * rows.index_select(2, x0) + wx1 * rows.index_select(2, x1)


def roi_align_points(start: float, end: float, bins: int, sampling_ratio: int = -1,
                     spatial_scale: float = 1.0, aligned: bool = False,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Steps 1 and 2 of RoI Align along one axis of a box from ``start`` to ``end`` (pixels):
    the coordinates ``[bins * g]`` (feature cells, cell ``i`` centred at ``i``) of its sample
    points, bin after bin: the edges scaled by ``spatial_scale`` **without rounding** (shifted by
    half a cell when ``aligned``; a legacy box is at least one cell), cut into ``bins`` equal
    bins, ``g`` points at the centres of equal parts of each (``g = sampling_ratio``, or
    ``ceil(bin size)`` when ``<= 0``; an empty box has none)."""
    number(start, "start")
    number(end, "end")
    integer(bins, "bins", low=1)
    integer(sampling_ratio, "sampling_ratio")
    number(spatial_scale, "spatial_scale", low=0, low_open=True)
    offset = 0.5 if aligned else 0.0
    low, high = start * spatial_scale - offset, end * spatial_scale - offset
    size = high - low if aligned else max(high - low, 1.0)
    g = sampling_ratio if sampling_ratio > 0 else math.ceil(size / bins)
    return low + (torch.arange(bins * max(g, 0), dtype=dtype) + 0.5) * (size / bins / max(g, 1))


def roi_align_loop(input: torch.Tensor, rois: torch.Tensor, output_size, spatial_scale: float = 1.0,
                   sampling_ratio: int = -1, aligned: bool = False) -> torch.Tensor:
    """RoI Align (Mask R-CNN), RoI by RoI: ``[K, C, PH, PW]``, like :func:`cvlib.ops.roi_align`.

    1. scale the box to the feature map **without rounding** (shifted by half a cell when
       ``aligned``, so that cell centres line up; legacy boxes are at least one cell);
    2. cut it into ``PH x PW`` equal bins and place ``g x g`` sample points at the centres of a
       regular sub-grid of each bin (``g = sampling_ratio``, or ``ceil(bin size)`` when <= 0);
    3. read each point by **bilinear interpolation**; a bin's value is the mean of its points.
    """
    (ph, pw), _ = _check(input, output_size, spatial_scale), rois_from_boxes(rois, len(input), "rois")
    integer(sampling_ratio, "sampling_ratio")
    out = input.new_zeros((len(rois), input.shape[1], ph, pw))
    if out.numel() == 0 or 0 in input.shape[2:]:
        return out  # no RoIs, no channels or no cells: every point reads 0
    for k, (n, x1, y1, x2, y2) in enumerate(rois.tolist()):
        ys = roi_align_points(y1, y2, ph, sampling_ratio, spatial_scale, aligned, input.dtype)  # 1. and 2.
        xs = roi_align_points(x1, x2, pw, sampling_ratio, spatial_scale, aligned, input.dtype)  # [PW * gw]
        if len(ys) == 0 or len(xs) == 0:
            continue  # an empty box has no sample points: its bins stay 0
        samples = _bilinear(input[int(n)], ys.to(input.device), xs.to(input.device))  # 3. [C, P, Q]
        out[k] = F.avg_pool2d(samples, (len(ys) // ph, len(xs) // pw))  # the mean of each bin's points
    return out
