"""Exercises on boxes (notebooks 04, 05 and 07): IoU, generalized IoU, the R-CNN box deltas,
NMS and anchors. Each ``*_exercise()`` returns the :class:`~cvlib.exercises.core.Exercise`;
the functions above it are the classic mistakes the checker recognises."""

from __future__ import annotations

import math
from functools import partial

import torch

from cvlib.exercises.core import Case, Exercise, noncontiguous
from cvlib.ops import (
    box_convert,
    box_iou,
    decode_boxes,
    encode_boxes,
    generalized_box_iou,
    generate_anchors,
    nms,
)
from cvlib.ops.boxes import BBOX_XFORM_CLIP


def random_boxes(generator: torch.Generator, n: int, extent: float = 16.0, integer: bool = False,
                 dtype=torch.float64) -> torch.Tensor:
    """``n`` random xyxy boxes ``[n, 4]`` inside ``[0, extent]``, none of zero area; integer
    corners make ties and touching edges likely."""
    corner = torch.rand(n, 2, generator=generator, dtype=torch.float64) * extent * 0.7
    size = 0.5 + torch.rand(n, 2, generator=generator, dtype=torch.float64) * extent * 0.4
    if integer:
        corner, size = corner.round(), size.round().clamp(min=1)
    return torch.cat([corner, corner + size], dim=1).to(dtype)


def _t(rows, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype).reshape(-1, 4)


# ---------------------------------------------------------------------------------------------
# IoU and generalized IoU


def _overlap(boxes1, boxes2, plus: float = 0.0, clamp: bool = True):
    """Intersection ``[N, M]`` and the two areas of the lecture's formula, with the pixel
    convention ``plus`` (1 for the "+1" mistake) and the clamp at 0 optional."""
    w1, h1 = boxes1[:, 2] - boxes1[:, 0] + plus, boxes1[:, 3] - boxes1[:, 1] + plus
    w2, h2 = boxes2[:, 2] - boxes2[:, 0] + plus, boxes2[:, 3] - boxes2[:, 1] + plus
    iw = torch.min(boxes1[:, None, 2], boxes2[None, :, 2]) - torch.max(boxes1[:, None, 0], boxes2[None, :, 0])
    ih = torch.min(boxes1[:, None, 3], boxes2[None, :, 3]) - torch.max(boxes1[:, None, 1], boxes2[None, :, 1])
    iw, ih = iw + plus, ih + plus
    if clamp:
        iw, ih = iw.clamp(min=0), ih.clamp(min=0)
    return iw * ih, (w1 * h1)[:, None], (w2 * h2)[None, :]


def _iou_plus_one(boxes1, boxes2):
    inter, a1, a2 = _overlap(boxes1, boxes2, plus=1.0)
    return inter / (a1 + a2 - inter)


def _iou_no_clamp(boxes1, boxes2):
    inter, a1, a2 = _overlap(boxes1, boxes2, clamp=False)
    return inter / (a1 + a2 - inter)


def _iou_union_double_counts(boxes1, boxes2):
    inter, a1, a2 = _overlap(boxes1, boxes2)
    return inter / (a1 + a2)


def _iou_xywh(boxes1, boxes2):
    return box_iou(box_convert(boxes1, "xywh", "xyxy"), box_convert(boxes2, "xywh", "xyxy"))


IOU_MISTAKES = {
    "IoU uses +1 pixel widths (x2 - x1 + 1): cvlib's boxes are continuous, width = x2 - x1":
        _iou_plus_one,
    "the intersection is not clamped at 0: two disjoint boxes multiply two negative overlaps "
    "into a positive area": _iou_no_clamp,
    "the union counts the intersection twice (union = area1 + area2 - intersection)":
        _iou_union_double_counts,
    "boxes read as (x, y, w, h): they are (x1, y1, x2, y2)": _iou_xywh,
}


def _pair_edge_cases(dtype=torch.float64) -> list[Case]:
    """Pairs of box sets every IoU-like function must get right."""
    a = _t([[0, 0, 2, 2]], dtype)
    return [
        Case((_t([], dtype), _t([[0, 0, 1, 1]], dtype)), note="no boxes in boxes1"),
        Case((_t([[0, 0, 1, 1]], dtype), _t([], dtype)), note="no boxes in boxes2"),
        Case((a, a.clone()), note="identical boxes"),
        Case((a, _t([[2, 0, 4, 2]], dtype)), note="touching boxes (a shared edge)"),
        Case((a, _t([[2, 2, 4, 4]], dtype)), note="touching at a corner"),
        Case((a, _t([[3, 3, 5, 6]], dtype)), note="disjoint in x and in y"),
        Case((_t([[0, 0, 4, 4]], dtype), _t([[1, 1, 2, 3]], dtype)), note="one box inside the other"),
        Case((_t([[0, 0, 4, 4]], dtype), _t([[1, 1, 1, 3]], dtype)), note="a zero-width box inside"),
        Case((_t([[0.5, 0.5, 1.5, 2.5], [0, 0, 3, 1]], torch.float32),
              noncontiguous(_t([[1, 0, 2, 2], [0, 0, 3, 1], [2, 0, 3, 5]], torch.float32))),
             note="float32, non-contiguous boxes2"),
    ]


def _pair_random(generator: torch.Generator, i: int, grad: bool = False) -> Case:
    n, m = 1 + i % 4, (i // 4) % 5
    integer = i % 3 == 0
    boxes1 = random_boxes(generator, n, integer=integer)
    boxes2 = random_boxes(generator, m, integer=integer)
    differentiable = grad and not integer  # ties of min/max have no single gradient
    return Case((boxes1, boxes2), rows=((0,), (1,)), grad=(0, 1) if differentiable else ())


def box_iou_exercise() -> Exercise:
    return Exercise("box_iou", box_iou, _pair_edge_cases, _pair_random, 140, IOU_MISTAKES)


def _giou_enclosing_is_intersection(boxes1, boxes2):
    inter, a1, a2 = _overlap(boxes1, boxes2)
    union = a1 + a2 - inter
    enclosing = inter  # min/max swapped: the enclosing box becomes the intersection box
    return inter / union - (enclosing - union) / enclosing


def _giou_minus_intersection(boxes1, boxes2):
    inter, a1, a2 = _overlap(boxes1, boxes2)
    enclosing = _enclosing(boxes1, boxes2)
    return inter / (a1 + a2 - inter) - (enclosing - inter) / enclosing


def _enclosing(boxes1, boxes2, plus: float = 0.0):
    top_left = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = bottom_right - top_left + plus
    return wh[..., 0] * wh[..., 1]


def _giou_plus_one(boxes1, boxes2):
    inter, a1, a2 = _overlap(boxes1, boxes2, plus=1.0)
    union = a1 + a2 - inter
    enclosing = _enclosing(boxes1, boxes2, plus=1.0)
    return inter / union - (enclosing - union) / enclosing


def generalized_box_iou_exercise() -> Exercise:
    mistakes = {
        "GIoU is plain IoU: the enclosing-box term -(C - union) / C is missing": box_iou,
        "the enclosing box C is the intersection box (min and max swapped)": _giou_enclosing_is_intersection,
        "GIoU subtracts (C - intersection) / C instead of (C - union) / C": _giou_minus_intersection,
        "IoU uses +1 pixel widths (x2 - x1 + 1): cvlib's boxes are continuous, width = x2 - x1":
            _giou_plus_one,
    }
    return Exercise("generalized_box_iou", generalized_box_iou, _pair_edge_cases,
                    lambda g, i: _pair_random(g, i, grad=True), 120, mistakes)


# ---------------------------------------------------------------------------------------------
# Box deltas (R-CNN's regression targets)


def _centre(boxes):
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, w, h


def _encode_corners(boxes, references, weights=(1.0, 1.0, 1.0, 1.0)):
    wx, wy, ww, wh = weights
    _, _, wa, ha = _centre(references)
    _, _, w, h = _centre(boxes)
    tx, ty = (boxes[:, 0] - references[:, 0]) / wa, (boxes[:, 1] - references[:, 1]) / ha
    return torch.stack((wx * tx, wy * ty, ww * torch.log(w / wa), wh * torch.log(h / ha)), dim=1)


def _encode_own_size(boxes, references, weights=(1.0, 1.0, 1.0, 1.0)):
    wx, wy, ww, wh = weights
    xa, ya, wa, ha = _centre(references)
    x, y, w, h = _centre(boxes)
    return torch.stack((wx * (x - xa) / w, wy * (y - ya) / h, ww * torch.log(w / wa), wh * torch.log(h / ha)),
                       dim=1)


def _encode_no_log(boxes, references, weights=(1.0, 1.0, 1.0, 1.0)):
    out = encode_boxes(boxes, references, weights)
    scale = torch.tensor(weights[2:], dtype=out.dtype)
    return torch.cat([out[:, :2], scale * torch.exp(out[:, 2:] / scale)], dim=1)


def _encode_divided_weights(boxes, references, weights=(1.0, 1.0, 1.0, 1.0)):
    inverse = tuple(1 / w for w in weights)
    return encode_boxes(boxes, references, inverse)


def _delta_random(generator: torch.Generator, i: int) -> tuple:
    n = i % 6
    weights = (10.0, 10.0, 5.0, 5.0) if i % 3 == 1 else (1.0, 1.0, 1.0, 1.0)
    return random_boxes(generator, n), random_boxes(generator, n), weights


def encode_boxes_exercise() -> Exercise:
    def edge_cases():
        box, ref = _t([[1, 2, 5, 4]]), _t([[0, 0, 4, 4]])
        return [
            Case((_t([]), _t([])), note="no boxes"),
            Case((ref, ref.clone()), note="a box on its own reference (all deltas 0)"),
            Case((box, ref), note="shifted and squashed"),
            Case((box, ref, (10.0, 10.0, 5.0, 5.0)), note="Faster R-CNN's weights (10, 10, 5, 5)"),
            Case((noncontiguous(_t([[0, 0, 2, 8], [3, 3, 4, 9]], torch.float32)),
                  _t([[0, 0, 4, 4], [2, 2, 6, 6]], torch.float32)), note="float32, non-contiguous"),
        ]

    def random_case(generator, i):
        boxes, references, weights = _delta_random(generator, i)
        return Case((boxes, references, weights), rows=((0, 1),))

    mistakes = {
        "the offsets are those of the corners (x1 - xa1): tx, ty move the centres": _encode_corners,
        "tx is divided by the box's own width: it is divided by the reference's (anchor's) width wa":
            _encode_own_size,
        "tw is the ratio w / wa: it is its log, log(w / wa)": _encode_no_log,
        "the weights divide the deltas: encoding multiplies by (wx, wy, ww, wh)": _encode_divided_weights,
        "boxes and references swapped: the deltas move the reference onto the box":
            lambda b, r, weights=(1.0, 1.0, 1.0, 1.0): encode_boxes(r, b, weights),
    }
    return Exercise("encode_boxes", encode_boxes, edge_cases, random_case, 100, mistakes)


def _decode_multiplied_weights(deltas, references, weights=(1.0, 1.0, 1.0, 1.0), clip=BBOX_XFORM_CLIP):
    scaled = deltas * torch.tensor(weights, dtype=deltas.dtype) ** 2  # deltas * w, not deltas / w
    return decode_boxes(scaled, references, weights, clip)


def _decode_variant(deltas, references, weights=(1.0, 1.0, 1.0, 1.0), clip=BBOX_XFORM_CLIP, *,
                    size=lambda t, clip: torch.exp(t.clamp(max=clip))):
    """``decode_boxes`` written out; ``size(t, clip)`` turns ``tw`` into ``w / wa``."""
    xa, ya, wa, ha = _centre(references.to(deltas.dtype))
    wx, wy, ww, wh = weights
    x, y = deltas[:, 0] / wx * wa + xa, deltas[:, 1] / wy * ha + ya
    w, h = size(deltas[:, 2] / ww, clip) * wa, size(deltas[:, 3] / wh, clip) * ha
    return torch.stack((x - w / 2, y - h / 2, x + w / 2, y + h / 2), dim=1)


def decode_boxes_exercise() -> Exercise:
    def edge_cases():
        ref = _t([[0, 0, 4, 4]])
        return [
            Case((_t([]), _t([])), note="no boxes"),
            Case((_t([[0, 0, 0, 0]]), ref), note="zero deltas give the reference back"),
            Case((_t([[0.5, -0.25, 0.7, -0.3]]), ref), note="a small move"),
            Case((_t([[0, 0, 50, 50]]), ref), note="a huge tw, th (clamped before exp)"),
            Case((_t([[1, 1, 1, 1]]), ref, (10.0, 10.0, 5.0, 5.0)), note="weights (10, 10, 5, 5)"),
            Case((noncontiguous(_t([[0.1, 0.2, 0.3, -0.4], [0, 0, -1, 1]], torch.float32)),
                  _t([[0, 0, 4, 4], [2, 2, 6, 10]], torch.float32)), note="float32, non-contiguous"),
        ]

    def random_case(generator, i):
        n = i % 6
        weights = (10.0, 10.0, 5.0, 5.0) if i % 3 == 1 else (1.0, 1.0, 1.0, 1.0)
        deltas = torch.randn(n, 4, generator=generator, dtype=torch.float64) * (3 if i % 4 == 3 else 0.5)
        return Case((deltas, random_boxes(generator, n), weights), rows=((0, 1),))

    mistakes = {
        "tw, th are not clamped before exp (a large predicted tw overflows)":
            partial(_decode_variant, size=lambda t, clip: torch.exp(t)),
        "the deltas are multiplied by the weights: decoding divides by (wx, wy, ww, wh)":
            _decode_multiplied_weights,
        "the size is wa * tw: it is wa * exp(tw)": partial(_decode_variant, size=lambda t, clip: t),
        "the result is (cx, cy, w, h): decode_boxes returns xyxy corners":
            lambda d, r, weights=(1.0, 1.0, 1.0, 1.0), clip=BBOX_XFORM_CLIP:
            box_convert(decode_boxes(d, r, weights, clip), "xyxy", "cxcywh"),
    }
    return Exercise("decode_boxes", decode_boxes, edge_cases, random_case, 100, mistakes)


# ---------------------------------------------------------------------------------------------
# NMS


def _greedy_nms(boxes, scores, iou_threshold, order=None, strict=True, suppressed_suppress=False,
                sort_output=False):
    """The lecture's loop with the knobs of the classic mistakes."""
    if order is None:
        order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    iou = box_iou(boxes, boxes)
    overlaps = iou > iou_threshold if strict else iou >= iou_threshold
    keep = []
    for n, i in enumerate(order):
        suppressors = order[:n] if suppressed_suppress else keep
        if not any(overlaps[j, i] for j in suppressors):
            keep.append(i)
    return torch.tensor(sorted(keep) if sort_output else keep, dtype=torch.int64)


def nms_exercise() -> Exercise:
    def edge_cases():
        chain = _t([[0, 0, 4, 4], [2, 0, 6, 4], [4, 0, 8, 4]])  # IoU 1/3 between neighbours
        return [
            Case((_t([]), torch.zeros(0, dtype=torch.float64), 0.5), note="no boxes"),
            Case((_t([[0, 0, 1, 1]]), torch.tensor([0.3], dtype=torch.float64), 0.5), note="one box"),
            Case((_t([[0, 0, 2, 2], [0, 0, 2, 2]]), torch.tensor([0.5, 0.5], dtype=torch.float64), 0.5),
                 note="identical boxes with equal scores (the first index wins)"),
            Case((_t([[0, 0, 3, 1], [1, 0, 4, 1]]), torch.tensor([0.9, 0.8], dtype=torch.float64), 0.5),
                 note="IoU exactly at the threshold (0.5 is not > 0.5: both stay)"),
            Case((chain, torch.tensor([0.9, 0.8, 0.7], dtype=torch.float64), 0.3),
                 note="a chain: the suppressed middle box must not suppress the third"),
            Case((chain, torch.tensor([0.7, 0.8, 0.9], dtype=torch.float64), 0.3),
                 note="scores in increasing order"),
            Case((_t([[0, 0, 2, 2], [2, 0, 4, 2]]), torch.tensor([0.6, 0.9], dtype=torch.float64), 0.0),
                 note="touching boxes at threshold 0 (IoU 0 suppresses nothing)"),
            Case((noncontiguous(_t([[0, 0, 4, 4], [1, 1, 5, 5], [8, 8, 9, 9]], torch.float32)),
                  noncontiguous(torch.tensor([0.2, 0.9, 0.5])), 0.1), note="float32, non-contiguous"),
        ]

    def random_case(generator, i):
        n = 1 + i % 9
        boxes = random_boxes(generator, n, extent=8.0, integer=i % 4 == 0)
        scores = torch.rand(n, generator=generator, dtype=torch.float64)
        if i % 3 == 0:
            scores = (scores * 3).floor() / 3  # ties
        threshold = (0.3, 0.5, 0.7, 0.1)[i % 4] if i % 5 else float(torch.rand(1, generator=generator))
        return Case((boxes, scores, threshold), rows=((0, 1),))

    mistakes = {  # the most specific first: the first that explains every failure is named
        "the kept indices are sorted by index: return them in decreasing order of score":
            lambda b, s, t: _greedy_nms(b, s, t, sort_output=True),
        "boxes are not sorted by score before suppression":
            lambda b, s, t: _greedy_nms(b, s, t, order=list(range(len(s)))),
        "a box is dropped when IoU >= threshold: the rule is IoU > threshold":
            lambda b, s, t: _greedy_nms(b, s, t, strict=False),
        "a suppressed box still suppresses other boxes (only kept boxes suppress)":
            lambda b, s, t: _greedy_nms(b, s, t, suppressed_suppress=True),
        "equal scores are not visited in index order (sort with a stable sort)":
            lambda b, s, t: _greedy_nms(b, s, t, order=sorted(range(len(s)), key=lambda i: (-s[i], -i))),
    }
    return Exercise("nms", nms, edge_cases, random_case, 200, mistakes)


# ---------------------------------------------------------------------------------------------
# Anchors


def _anchors(feature_size, stride, scales=(32.0,), aspect_ratios=(0.5, 1.0, 2.0), dtype=torch.float32,
             ratio_is_w_over_h=False, centred=False, scale_major=False, swap_axes=False, rounded=True):
    """The lecture's anchors with the knobs of the classic mistakes."""
    height, width = (feature_size, feature_size) if isinstance(feature_size, int) else feature_size
    stride_y, stride_x = (stride, stride) if isinstance(stride, (int, float)) else stride
    if swap_axes:
        height, width = width, height
    sizes = []
    pairs = [(s, r) for s in scales for r in aspect_ratios] if scale_major else \
        [(s, r) for r in aspect_ratios for s in scales]
    for s, r in pairs:
        r = 1 / r if ratio_is_w_over_h else r
        w, h = s / math.sqrt(r), s * math.sqrt(r)
        half = torch.tensor([-w, -h, w, h], dtype=dtype) / 2
        sizes.append(half.round() if rounded else half)
    base = torch.stack(sizes)
    shift = 0.5 if centred else 0.0
    out = []
    for y in range(height):
        for x in range(width):
            cx, cy = (x + shift) * stride_x, (y + shift) * stride_y
            out.append(base + torch.tensor([cx, cy, cx, cy], dtype=dtype))
    return torch.cat(out) if out else torch.zeros(0, 4, dtype=dtype)


def generate_anchors_exercise() -> Exercise:
    def edge_cases():
        return [
            Case(((1, 1), 16), note="one cell, default scales and ratios"),
            Case(((2, 3), (4, 8), (8.0,), (1.0,)), note="a non-square map and strides (sy, sx)"),
            Case(((2, 2), 8, (16.0, 32.0), (0.5, 1.0, 2.0)), note="two scales, three ratios"),
            Case(((1, 2), 4, (10.0,), (0.7,)), note="sizes that need rounding"),
        ]

    def random_case(generator, i):
        pick = lambda options: options[int(torch.randint(len(options), (1,), generator=generator))]
        size = (1 + i % 3, 1 + (i // 3) % 4)
        stride = pick([4, 8, 16, (4, 8), (16, 8)])
        scales = pick([(32.0,), (8.0, 16.0), (12.0, 24.0, 40.0)])
        ratios = pick([(0.5, 1.0, 2.0), (1.0,), (0.7, 1.4), (0.25, 3.0)])
        return Case((size, stride, scales, ratios))

    mistakes = {
        "the aspect ratio is taken as w / h: the lecture's r is h / w (w = s / sqrt(r), h = s sqrt(r))":
            lambda *a: _anchors(*a, ratio_is_w_over_h=True),
        "anchors are centred on the cell centres: torchvision centres them on each cell's top-left "
        "corner (x * stride, y * stride)": lambda *a: _anchors(*a, centred=True),
        "the anchors of a cell are ordered scale-major: the order is ratios, then scales within a "
        "ratio": lambda *a: _anchors(*a, scale_major=True),
        "rows and columns of the feature map swapped (feature_size is (H, W))":
            lambda *a: _anchors(*a, swap_axes=True),
        "the anchor sizes are not rounded to whole pixels": lambda *a: _anchors(*a, rounded=False),
    }
    return Exercise("generate_anchors", generate_anchors, edge_cases, random_case, 60, mistakes)


EXERCISES = (
    box_iou_exercise, generalized_box_iou_exercise, encode_boxes_exercise, decode_boxes_exercise,
    nms_exercise, generate_anchors_exercise,
)
