"""Anchors: reference boxes of several scales and aspect ratios at every feature-map cell
(Faster R-CNN's RPN), on every level of a feature pyramid (FPN), their labels against the
ground truth, and a balanced minibatch; anchor
shapes learnt from the training boxes by k-means with a 1 - IoU distance (YOLOv2).

Same conventions and numbers as torchvision's ``AnchorGenerator`` (one feature map or several),
``Matcher(0.7, 0.3, allow_low_quality_matches=True)`` and ``BalancedPositiveNegativeSampler``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cvlib._checks import integer, number, sequence, tensor
from cvlib.ops.boxes import _check_boxes, box_iou

__all__ = [
    "generate_anchors", "pyramid_anchors", "label_anchors", "sample_anchors", "shape_iou", "kmeans_anchors",
    "POSITIVE", "NEGATIVE", "IGNORED",
]

POSITIVE, NEGATIVE, IGNORED = 1, 0, -1


def _pair(value, name, check=number):
    """``value`` (a positive number, or a pair of them) as a pair, each checked by ``check``."""
    pair = (value, value) if not isinstance(value, (list, tuple, torch.Size)) else tuple(value)
    if len(pair) != 2:
        raise ValueError(f"{name} must be a positive number or a pair of them, got {value!r}")
    return tuple(check(v, name, low=1) if check is integer else check(v, name, low=0, low_open=True)
                 for v in pair)


def generate_anchors(
    feature_size,
    stride,
    scales: Sequence[float] = (32.0,),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """All anchors ``[H * W * K, 4]`` (xyxy, image pixels) of a feature map of ``feature_size``
    ``(H, W)`` cells, each ``stride`` pixels apart, with ``K = len(aspect_ratios) * len(scales)``.

    The anchor of scale ``s`` (its square root of area) and aspect ratio ``r = h / w`` has
    ``w = s / sqrt(r)`` and ``h = s * sqrt(r)``, rounded to whole pixels, and is centred on
    ``(x * stride_x, y * stride_y)``, the top-left corner of cell ``(y, x)`` (torchvision's
    convention). Order: cell by cell (row-major), then ratios, then scales within a ratio.
    """
    height, width = _pair(feature_size, "feature_size", integer)
    stride_y, stride_x = _pair(stride, "stride")
    for name, values in (("scales", scales), ("aspect_ratios", aspect_ratios)):
        for v in sequence(values, name, nonempty=True):
            number(v, name, low=0, low_open=True)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating point torch.dtype, got {dtype!r}")
    scales_t = torch.as_tensor(scales, dtype=dtype)
    h_ratios = torch.sqrt(torch.as_tensor(aspect_ratios, dtype=dtype))
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales_t[None, :]).reshape(-1)  # [K], ratio-major
    hs = (h_ratios[:, None] * scales_t[None, :]).reshape(-1)
    base = (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()  # [K, 4] around (0, 0)
    ys = torch.arange(height, dtype=torch.int32).to(dtype) * stride_y
    xs = torch.arange(width, dtype=torch.int32).to(dtype) * stride_x
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)  # [H * W, 1, 4]
    return (centres + base[None]).reshape(-1, 4)


def pyramid_anchors(
    feature_sizes: Sequence,
    strides: Sequence,
    scales: Sequence[Sequence[float]],
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The anchors of every level of a feature pyramid (FPN): level ``i`` has the
    :func:`generate_anchors` of its map, ``feature_sizes[i]`` ``(H_i, W_i)`` cells ``strides[i]``
    pixels apart, with its own ``scales[i]`` (small anchors on fine maps, large on coarse ones)
    and the shared ``aspect_ratios``. Returns ``[sum_i H_i W_i K_i, 4]``, the levels in the
    order given (torchvision's ``AnchorGenerator`` with ``sizes = scales``)."""
    levels = [sequence(v, name, nonempty=True) for v, name in
              ((feature_sizes, "feature_sizes"), (strides, "strides"), (scales, "scales"))]
    if not len(levels[0]) == len(levels[1]) == len(levels[2]):
        raise ValueError(f"feature_sizes, strides and scales must give one entry per level, got "
                         f"{len(levels[0])}, {len(levels[1])} and {len(levels[2])}")
    for i, (size, stride, level_scales) in enumerate(zip(*levels)):
        _pair(size, "feature_sizes", integer)
        _pair(stride, "strides")
        if isinstance(level_scales, (int, float)):
            raise ValueError(f"scales must hold one sequence of scales per level, got {level_scales!r} "
                             f"for level {i}")
    return torch.cat([generate_anchors(size, stride, level_scales, aspect_ratios, dtype)
                      for size, stride, level_scales in zip(*levels)])


def label_anchors(
    anchors: torch.Tensor, gt_boxes: torch.Tensor, fg_iou: float = 0.7, bg_iou: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Label each anchor against the ground truth boxes ``gt_boxes`` ``[G, 4]``.

    Returns ``labels`` ``[A]`` (int64: ``POSITIVE`` = 1 when its best IoU >= ``fg_iou``,
    ``NEGATIVE`` = 0 when < ``bg_iou``, ``IGNORED`` = -1 in between) and ``matched`` ``[A]``,
    the index of the gt box it overlaps most. Every gt box also makes positive the anchor(s)
    with which it has its highest IoU, so no object is left without an anchor. With no gt
    boxes every anchor is negative (``matched`` is 0).
    """
    _check_boxes(anchors, "anchors")
    _check_boxes(gt_boxes, "gt_boxes")
    number(fg_iou, "fg_iou", low=0, high=1)
    number(bg_iou, "bg_iou", low=0, high=1)
    if not bg_iou <= fg_iou:
        raise ValueError(f"need 0 <= bg_iou <= fg_iou <= 1, got bg_iou={bg_iou}, fg_iou={fg_iou}")
    if len(gt_boxes) == 0 or len(anchors) == 0:
        zeros = torch.zeros(len(anchors), dtype=torch.int64, device=anchors.device)
        return zeros.clone(), zeros
    iou = box_iou(gt_boxes, anchors)  # [G, A]
    best_iou, matched = iou.max(dim=0)
    labels = torch.full_like(matched, IGNORED)
    labels[best_iou < bg_iou] = NEGATIVE
    labels[best_iou >= fg_iou] = POSITIVE
    best_for_gt = iou.max(dim=1, keepdim=True).values  # [G, 1]
    labels[(iou == best_for_gt).any(dim=0)] = POSITIVE  # ties: every best anchor
    return labels, matched


def sample_anchors(
    labels: torch.Tensor,
    batch_size: int = 256,
    positive_fraction: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A balanced minibatch of anchors: at most ``batch_size * positive_fraction`` random
    positives (``labels == 1``), filled up to ``batch_size`` with random negatives
    (``labels == 0``). Returns the indices ``(positives, negatives)``."""
    tensor(labels, "labels", ndim=1, dtype="int")
    integer(batch_size, "batch_size", low=1)
    number(positive_fraction, "positive_fraction", low=0, high=1)
    positive = torch.nonzero(labels >= POSITIVE).flatten()
    negative = torch.nonzero(labels == NEGATIVE).flatten()
    num_pos = min(int(batch_size * positive_fraction), len(positive))
    num_neg = min(batch_size - num_pos, len(negative))
    pick_pos = torch.randperm(len(positive), generator=generator, device=labels.device)[:num_pos]
    pick_neg = torch.randperm(len(negative), generator=generator, device=labels.device)[:num_neg]
    return positive[pick_pos], negative[pick_neg]


def shape_iou(sizes1: torch.Tensor, sizes2: torch.Tensor) -> torch.Tensor:
    """IoU ``[N, M]`` of box shapes ``[N, 2]`` and ``[M, 2]`` (width, height) placed on the same
    centre: ``min(w) min(h) / (w1 h1 + w2 h2 - min(w) min(h))``. Only the shape counts."""
    for name, sizes in (("sizes1", sizes1), ("sizes2", sizes2)):
        if (tensor(sizes, name, shape=("N", 2), dtype="float", finite=True) < 0).any():
            raise ValueError(f"{name} must be widths and heights >= 0")
    inter = (torch.minimum(sizes1[:, None, 0], sizes2[None, :, 0])
             * torch.minimum(sizes1[:, None, 1], sizes2[None, :, 1]))
    area1, area2 = sizes1.prod(1)[:, None], sizes2.prod(1)[None, :]
    return inter / (area1 + area2 - inter)


def kmeans_anchors(boxes: torch.Tensor, k: int, iterations: int = 100, seed: int = 0) -> torch.Tensor:
    """Anchor shapes ``[k, 2]`` (width, height, by increasing area) for the training ``boxes``
    ``[N, 4]`` xyxy, by k-means with YOLOv2's distance ``1 - IoU(box shape, centroid)``.

    Euclidean k-means on widths and heights would let large boxes dominate (an error of 5
    pixels matters for a 10-pixel box, not for a 200-pixel one); ``1 - IoU`` measures what the
    detector needs, how well a prior fits a box, whatever the size. Each step assigns every
    box to the centroid it overlaps most and moves each centroid to the median shape of its
    boxes; it starts from ``k`` boxes chosen at random (``seed``).
    """
    _check_boxes(boxes)
    integer(k, "k", low=1)
    integer(iterations, "iterations", low=1)
    integer(seed, "seed", low=0)
    sizes = (boxes[:, 2:] - boxes[:, :2]).double()
    if len(sizes) < k or (sizes <= 0).any():
        raise ValueError(f"boxes must hold at least k = {k} boxes, each with a positive width and height")
    generator = torch.Generator().manual_seed(seed)
    centroids = sizes[torch.randperm(len(sizes), generator=generator)[:k]]
    for _ in range(iterations):
        nearest = shape_iou(sizes, centroids).argmax(1)
        moved = torch.stack([sizes[nearest == j].median(0).values if (nearest == j).any()
                             else centroids[j] for j in range(k)])
        if torch.equal(moved, centroids):
            break
        centroids = moved
    return centroids[centroids.prod(1).argsort()].to(boxes.dtype)
