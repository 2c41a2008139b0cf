"""Exercises on what detectors and transformers are trained and scored with (notebooks 01, 04,
06, 07, 08): smooth L1, focal loss, the Mask R-CNN mask loss, average precision, attention,
YOLO's targets and DETR's Hungarian matching."""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F

from cvlib.exercises.core import Case, Exercise, noncontiguous
from cvlib.losses import sigmoid_focal_loss, smooth_l1
from cvlib.metrics import (
    RECALL_THRESHOLDS,
    average_precision_all_points,
    average_precision_coco,
    precision_envelope,
    precision_recall,
)
from cvlib.models.detr import hungarian_assignment
from cvlib.models.mask_rcnn import mask_loss, softmax_mask_loss
from cvlib.models.vit import scaled_dot_product_attention
from cvlib.models.yolo import encode_targets

# ---------------------------------------------------------------------------------------------
# Smooth L1 and focal loss


def _smooth_l1_variant(input, target, beta=1.0, *, divide=True, signed=False, shift=True, reduce=torch.mean):
    d = input - target
    size = d if signed else d.abs()
    quadratic = 0.5 * d**2 / (beta if divide else 1.0)
    linear = d.abs() - (0.5 * beta if shift else 0.0)
    return reduce(torch.where(size < beta, quadratic, linear))


def smooth_l1_exercise() -> Exercise:
    def edge_cases():
        t = lambda values: torch.tensor(values, dtype=torch.float64)
        return [
            Case((t([0.0, 0.5, -0.5]), t([0.0, 0.0, 0.0])), note="small errors (quadratic part)"),
            Case((t([3.0, -4.0]), t([0.0, 0.0])), note="large errors of both signs (linear part)"),
            Case((t([1.0, -1.0]), t([0.0, 0.0])), note="|d| exactly beta"),
            Case((t([0.05, 0.3, -2.0]), t([0.0, 0.0, 0.0]), 0.1), note="beta 0.1"),
            Case((t([0.5, 2.5]), t([0.0, 0.0]), 4.0), note="beta 4"),
            Case((noncontiguous(torch.randn(3, 4, generator=torch.Generator().manual_seed(0))),
                  torch.zeros(3, 4)), note="float32, non-contiguous [N, 4]"),
        ]

    def random_case(generator, i):
        shape = (1 + i % 4, 4)
        scale = (0.3, 1.0, 3.0)[i % 3]
        input = torch.randn(shape, generator=generator, dtype=torch.float64) * scale
        target = torch.randn(shape, generator=generator, dtype=torch.float64) * scale
        beta = (1.0, 0.5, 2.0, 1 / 9)[i % 4]
        return Case((input, target, beta), grad=(0, 1))

    mistakes = {
        "the quadratic part is not divided by beta (0.5 d^2 / beta)":
            partial(_smooth_l1_variant, divide=False),
        "the branch is chosen on d, not |d|: large negative errors stay quadratic":
            partial(_smooth_l1_variant, signed=True),
        "the linear part is |d|, not |d| - 0.5 beta: the two parts do not meet at |d| = beta":
            partial(_smooth_l1_variant, shift=False),
        "the loss is summed: it is the mean over the elements": partial(_smooth_l1_variant, reduce=torch.sum),
    }
    return Exercise("smooth_l1", smooth_l1, edge_cases, random_case, 100, mistakes)


def _focal_variant(inputs, targets, alpha=0.25, gamma=2.0, reduction="none", *, p_t=True,
                   swap_alpha=False, naive_log=False, honour_negative_alpha=True, honour_reduction=True):
    p = inputs.sigmoid()
    prob = p * targets + (1 - p) * (1 - targets) if p_t else p
    if naive_log:
        ce = -torch.log(p * targets + (1 - p) * (1 - targets))
    else:
        ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    loss = ce * (1 - prob) ** gamma
    if alpha >= 0 or not honour_negative_alpha:
        a = 1 - alpha if swap_alpha else alpha
        loss = loss * (a * targets + (1 - a) * (1 - targets))
    if reduction == "none" or not honour_reduction:
        return loss
    return loss.mean() if reduction == "mean" else loss.sum()


def sigmoid_focal_loss_exercise() -> Exercise:
    def edge_cases():
        t = lambda values: torch.tensor(values, dtype=torch.float64)
        return [
            Case((t([2.0, -1.0, 0.0]), t([1.0, 0.0, 1.0])), note="three logits"),
            Case((t([100.0, -100.0, 100.0]), t([0.0, 1.0, 1.0])),
                 note="large logits (log of sigmoid must not overflow)"),
            Case((t([0.5, -0.5]), t([1.0, 0.0]), 0.25, 0.0), note="gamma 0 (alpha-weighted cross-entropy)"),
            Case((t([0.5, -0.5]), t([1.0, 0.0]), -1.0), note="alpha < 0: no weighting"),
            Case((t([0.5, -2.0, 1.0]), t([1.0, 0.0, 0.0]), 0.25, 2.0, "mean"), note="reduction 'mean'"),
            Case((t([0.5, -2.0, 1.0]), t([1.0, 0.0, 0.0]), 0.25, 2.0, "sum"), note="reduction 'sum'"),
            Case((noncontiguous(torch.randn(2, 3, generator=torch.Generator().manual_seed(0))),
                  torch.tensor([[1.0, 0, 0], [0, 1, 0]])), note="float32, non-contiguous"),
        ]

    def random_case(generator, i):
        shape = (1 + i % 3, 1 + i % 5)
        inputs = torch.randn(shape, generator=generator, dtype=torch.float64) * (1 + 3 * (i % 2))
        targets = (torch.rand(shape, generator=generator, dtype=torch.float64) < 0.3).double()
        alpha = (0.25, 0.5, -1.0, 0.75)[i % 4]
        gamma = (2.0, 0.0, 1.0, 5.0)[(i // 4) % 4]
        reduction = ("none", "mean", "sum")[i % 3]
        return Case((inputs, targets, alpha, gamma, reduction), grad=(0,))

    mistakes = {
        "alpha weights the negatives: alpha_t = alpha for positives, 1 - alpha for negatives":
            partial(_focal_variant, swap_alpha=True),
        "the modulating factor is (1 - p)^gamma: it is (1 - p_t)^gamma, p_t = p for positives and "
        "1 - p for negatives": partial(_focal_variant, p_t=False),
        "log(sigmoid(x)) overflows for large logits: use F.binary_cross_entropy_with_logits":
            partial(_focal_variant, naive_log=True),
        "alpha < 0 should switch the weighting off": partial(_focal_variant, honour_negative_alpha=False),
        "reduction is ignored": partial(_focal_variant, honour_reduction=False),
    }
    return Exercise("sigmoid_focal_loss", sigmoid_focal_loss, edge_cases, random_case, 100, mistakes)


# ---------------------------------------------------------------------------------------------
# Mask R-CNN's mask loss


def _mask_loss_every_class(mask_logits, labels, mask_targets):
    if len(labels) == 0:
        return mask_logits.sum() * 0
    targets = mask_targets[:, None].expand_as(mask_logits)
    return F.binary_cross_entropy_with_logits(mask_logits, targets)


def _mask_loss_shifted(mask_logits, labels, mask_targets):
    return mask_loss(mask_logits, (labels - 1) % mask_logits.shape[1], mask_targets)


def _mask_loss_nan_when_empty(mask_logits, labels, mask_targets):
    own = mask_logits[torch.arange(len(labels)), labels]
    return F.binary_cross_entropy_with_logits(own, mask_targets)


def _mask_loss_summed(mask_logits, labels, mask_targets):
    own = mask_logits[torch.arange(len(labels)), labels]
    return F.binary_cross_entropy_with_logits(own, mask_targets, reduction="sum")


def _mask_case(generator, k, classes, size, soft=False) -> Case:
    logits = torch.randn(k, classes + 1, size, size, generator=generator, dtype=torch.float64) * 2
    labels = torch.randint(1, classes + 1, (k,), generator=generator)
    targets = torch.rand(k, size, size, generator=generator, dtype=torch.float64)
    targets = targets if soft else (targets > 0.5).double()
    return Case((logits, labels, targets), rows=((0, 1, 2),), grad=(0,))


def mask_loss_exercise() -> Exercise:
    def edge_cases():
        generator = torch.Generator().manual_seed(0)
        one = _mask_case(generator, 1, 2, 2)
        return [
            Case(_mask_case(generator, 0, 2, 4).args, note="no positive RoIs (the loss is 0)", grad=(0,)),
            Case(one.args, note="one RoI of class 1 or 2, 2 x 2 masks", grad=(0,)),
            Case(_mask_case(generator, 3, 1, 3).args, note="one class", grad=(0,)),
            Case(_mask_case(generator, 2, 3, 2, soft=True).args, note="soft targets in [0, 1]", grad=(0,)),
            Case((noncontiguous(one.args[0].float()), one.args[1], one.args[2].float()),
                 note="float32, non-contiguous"),
        ]

    def random_case(generator, i):
        return _mask_case(generator, 1 + i % 4, 1 + i % 3, 2 + i % 3, soft=i % 4 == 3)

    mistakes = {
        "the loss runs over every class's mask: only the map of the RoI's ground-truth class is "
        "trained": _mask_loss_every_class,
        "a softmax over the classes: Mask R-CNN uses a per-class sigmoid (binary cross-entropy)":
            softmax_mask_loss,
        "labels index the maps from 0: map 0 is the background, class c is map c": _mask_loss_shifted,
        "no RoIs gives NaN (the mean of nothing): return 0, still connected to the graph":
            _mask_loss_nan_when_empty,
        "the loss is summed over the pixels: it is the mean": _mask_loss_summed,
    }
    return Exercise("mask_loss", mask_loss, edge_cases, random_case, 80, mistakes)


# ---------------------------------------------------------------------------------------------
# Average precision


def _ap_all_points_variant(recall, precision, *, envelope=True, from_zero=True, left_max=False):
    recall, precision = recall.double(), precision.double()
    if left_max:
        precision = precision.cummax(-1).values
    elif envelope:
        precision = precision_envelope(precision)
    if from_zero:
        steps = recall.diff(dim=-1, prepend=torch.zeros_like(recall[..., :1]))
    else:
        steps = F.pad(recall.diff(dim=-1), (1, 0))
    return (steps * precision).sum(-1)


def _ap_coco_variant(recall, precision, *, envelope=True, thresholds=RECALL_THRESHOLDS, right=False,
                     zero_beyond=True):
    recall, precision = recall.double().contiguous(), precision.double()
    curve = precision_envelope(precision) if envelope else precision
    fill = 0.0 if zero_beyond else None
    columns = thresholds.double().expand(*recall.shape[:-1], -1).contiguous()
    first = torch.searchsorted(recall, columns, right=right)
    last = curve[..., -1:] if fill is None else torch.zeros_like(curve[..., :1])
    return torch.cat([curve, last], -1).gather(-1, first).mean(-1)


def _pr_case(generator, i) -> Case:
    """A precision-recall curve as :func:`~cvlib.metrics.precision_recall` makes it."""
    detections, num_gt = 1 + i % 9, 1 + i % 5
    thresholds = 1 + (i % 3 == 2)
    scores = torch.rand(detections, generator=generator)
    matched = torch.zeros(thresholds, detections, dtype=torch.bool)
    for row in matched:  # each object is matched at most once: at most num_gt true positives
        hits = int(torch.randint(min(num_gt, detections) + 1, (1,), generator=generator))
        row[torch.randperm(detections, generator=generator)[:hits]] = True
    precision, recall = precision_recall(scores, matched if thresholds > 1 else matched[0], num_gt)
    return Case((recall, precision))


def _pr_edge_cases() -> list[Case]:
    t = lambda values: torch.tensor(values, dtype=torch.float64)
    return [
        Case((t([1.0]), t([1.0])), note="one detection, right"),
        Case((t([0.0, 0.0]), t([0.0, 0.0])), note="two false positives"),
        Case((t([0.5, 0.5, 1.0]), t([1.0, 0.5, 2 / 3])), note="a saw tooth: precision rises again"),
        Case((t([0.25, 0.5, 0.5, 0.75]), t([1.0, 1.0, 2 / 3, 0.75])), note="recall 0.5 exactly, then more"),
        Case((t([0.3, 0.3, 0.6]), t([1.0, 0.5, 2 / 3])), note="recall never reaches 1"),
        Case((t([[0.5, 1.0], [0.5, 0.5]]), t([[1.0, 1.0], [1.0, 0.5]])), note="two curves [T, D]"),
        Case((noncontiguous(t([0.2, 0.4, 0.4, 0.6]).float()),
              noncontiguous(t([1.0, 1.0, 2 / 3, 0.75]).float())),
             note="float32, non-contiguous"),
    ]


def average_precision_all_points_exercise() -> Exercise:
    mistakes = {
        "the envelope of the precision curve is missing: p_interp(r) = max over r' >= r of p(r')":
            partial(_ap_all_points_variant, envelope=False),
        "the envelope runs from the left (max over r' <= r): it is the max over higher recalls":
            partial(_ap_all_points_variant, left_max=True),
        "the first step, from recall 0 to r_1, is missing (r_0 = 0)":
            partial(_ap_all_points_variant, from_zero=False),
        "the area is a trapezoid between the raw points: it is a step function under the envelope":
            lambda r, p: torch.trapezoid(p.double(), r.double(), dim=-1),
    }
    return Exercise("average_precision_all_points", average_precision_all_points, _pr_edge_cases, _pr_case,
                    100, mistakes)


def average_precision_coco_exercise() -> Exercise:
    mistakes = {
        "the envelope of the precision curve is missing: p_interp(r) = max over r' >= r of p(r')":
            partial(_ap_coco_variant, envelope=False),
        "100 recall points: COCO samples 101, 0, 0.01, ..., 1":
            partial(_ap_coco_variant, thresholds=torch.linspace(0, 1, 100, dtype=torch.float64)),
        "the first point with recall > r is used: COCO takes the first with recall >= r":
            partial(_ap_coco_variant, right=True),
        "where the recall never reaches r the last precision is used: the precision there is 0":
            partial(_ap_coco_variant, zero_beyond=False),
    }
    return Exercise("average_precision_coco", average_precision_coco, _pr_edge_cases, _pr_case, 100, mistakes)


# ---------------------------------------------------------------------------------------------
# Attention


def _attention_variant(q, k, v, mask=None, causal=False, *, scale=0.5, dim=-1, mask_true_blocks=False,
                       causal_upper=False, fill=float("-inf")):
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** scale
    tq, tk = q.shape[-2], k.shape[-2]
    if causal:
        allowed = torch.ones(tq, tk, dtype=torch.bool)
        allowed = allowed.triu() if causal_upper else allowed.tril()
        scores = scores.masked_fill(~allowed, fill)
    if mask is not None:
        scores = scores.masked_fill(mask if mask_true_blocks else ~mask, fill)
    weights = scores.softmax(dim=dim)
    return weights @ v, weights


def scaled_dot_product_attention_exercise() -> Exercise:
    def edge_cases():
        generator = torch.Generator().manual_seed(0)
        r = lambda *shape: torch.randn(shape, generator=generator, dtype=torch.float64)
        q, k, v = r(3, 4), r(5, 4), r(5, 2)
        mask = torch.tensor([[1, 1, 0, 0, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
        return [
            Case((r(1, 1), r(1, 1), r(1, 1)), note="one query, one key, d = 1", grad=(0, 1, 2)),
            Case((q, k, v), note="Tq = 3 queries, Tk = 5 keys, d = 4", grad=(0, 1, 2)),
            Case((q, k, v, mask), note="a bool mask (True = may attend)", grad=(0, 1, 2)),
            Case((r(4, 8), r(4, 8), r(4, 3)), {"causal": True}, note="causal", grad=(0, 1, 2)),
            Case((r(2, 3, 4, 16), r(2, 3, 4, 16), r(2, 3, 4, 5)), note="[B, heads, T, d], d = 16",
                 grad=(0, 1, 2)),
            Case((noncontiguous(q.float()), k.float().t().contiguous().t(), v.float()),
                 note="float32, non-contiguous"),
        ]

    def random_case(generator, i):
        d, tq, tk = (1, 2, 4, 8, 16)[i % 5], 1 + i % 4, 1 + (i // 2) % 5
        batch = (2,) if i % 3 == 0 else ()
        r = lambda *shape: torch.randn(*batch, *shape, generator=generator, dtype=torch.float64) * 2
        q, k, v = r(tq, d), r(tk, d), r(tk, 1 + i % 3)
        kwargs = {}
        if i % 4 == 1:
            mask = torch.rand(tq, tk, generator=generator) < 0.6
            mask[:, 0] = True  # every query sees at least one key
            kwargs["mask"] = mask
        if i % 4 == 2 and tk >= tq:
            kwargs["causal"] = True
        return Case((q, k, v), kwargs, grad=(0, 1, 2))

    mistakes = {
        "attention is not scaled by sqrt(d)": partial(_attention_variant, scale=0.0),
        "the softmax runs over the queries: each row (one query) must sum to 1 over the keys":
            partial(_attention_variant, dim=-2),
        "attention is scaled by d: it is scaled by sqrt(d)": partial(_attention_variant, scale=1.0),
        "the mask is read the wrong way round: True means 'may attend'":
            partial(_attention_variant, mask_true_blocks=True),
        "the causal mask lets a query see later keys (triu): query i sees keys j <= i (tril)":
            partial(_attention_variant, causal_upper=True),
        "masked scores are set to 0, not -inf: masked keys still get weight":
            partial(_attention_variant, fill=0.0),
    }
    return Exercise("scaled_dot_product_attention", scaled_dot_product_attention, edge_cases, random_case,
                    100, mistakes)


# ---------------------------------------------------------------------------------------------
# YOLO's targets


def _yolo_variant(boxes, labels, grid_size, image_size, *, offsets=True, sqrt=True, swap_grid=False,
                  corner=False, first_wins=False, swap_image=False):
    height, width = image_size[::-1] if swap_image else image_size
    s = grid_size
    params = boxes.new_zeros(s, s, 4)
    cell_labels = torch.zeros(s, s, dtype=torch.int64)
    order = range(len(boxes) - 1, -1, -1) if first_wins else range(len(boxes))
    for k in order:
        x1, y1, x2, y2 = boxes[k].tolist()
        px, py = (x1, y1) if corner else ((x1 + x2) / 2, (y1 + y2) / 2)
        gx, gy = px * s / width, py * s / height
        col, row = min(max(int(gx), 0), s - 1), min(max(int(gy), 0), s - 1)
        w, h = (x2 - x1) / width, (y2 - y1) / height
        cx, cy = (gx - col, gy - row) if offsets else (px / width, py / height)
        value = torch.tensor([cx, cy, math.sqrt(w) if sqrt else w, math.sqrt(h) if sqrt else h])
        at = (col, row) if swap_grid else (row, col)
        params[at] = value.to(params.dtype)
        cell_labels[at] = labels[k]
    return {"params": params, "labels": cell_labels, "object": cell_labels > 0}


def _yolo_boxes(generator, k, height, width):
    extent = torch.tensor([width, height], dtype=torch.float64)
    corner = torch.rand(k, 2, generator=generator, dtype=torch.float64) * extent * 0.8
    size = (0.05 + torch.rand(k, 2, generator=generator, dtype=torch.float64) * 0.4) * extent
    return torch.cat([corner, (corner + size).minimum(extent)], dim=1)


def encode_targets_exercise() -> Exercise:
    def edge_cases():
        t = lambda rows: torch.tensor(rows, dtype=torch.float64).reshape(-1, 4)
        labels = lambda *values: torch.tensor(values, dtype=torch.int64)
        return [
            Case((t([]), labels(), 4, (64, 64)), note="no objects"),
            Case((t([[8, 8, 24, 40]]), labels(2), 4, (64, 64)), note="one object"),
            Case((t([[0, 0, 32, 32]]), labels(1), 4, (64, 64)), note="a centre exactly on a cell boundary"),
            Case((t([[10, 2, 40, 20]]), labels(3), 4, (32, 64)), note="a non-square image (H = 32, W = 64)"),
            Case((t([[2, 2, 10, 10], [4, 4, 12, 12]]), labels(1, 2), 2, (64, 64)),
                 note="two centres in one cell (the later object wins)"),
            Case((t([[5, 40, 60, 60]]), labels(1), 1, (64, 64)), note="S = 1"),
            Case((noncontiguous(t([[8, 8, 24, 40], [40, 4, 60, 30]]).float()), labels(1, 2), 3, (48, 64)),
                 note="float32, non-contiguous"),
        ]

    def random_case(generator, i):
        height, width = ((64, 64), (48, 64), (64, 32), (40, 40))[i % 4]
        k = i % 6
        boxes = _yolo_boxes(generator, k, height, width)
        labels = torch.randint(1, 4, (k,), generator=generator)
        return Case((boxes, labels, (1, 2, 4, 7)[(i // 2) % 4], (height, width)), rows=((0, 1),))

    mistakes = {
        "the centre is stored in image units: (x, y) is the centre's offset inside its cell, in [0, 1)":
            partial(_yolo_variant, offsets=False),
        "the sizes are stored without the square root: (sqrt w, sqrt h), relative to the image":
            partial(_yolo_variant, sqrt=False),
        "rows and columns swapped: the grid is indexed [row (y), column (x)]":
            partial(_yolo_variant, swap_grid=True),
        "the cell is chosen by the box's top-left corner: it is the cell that holds the centre":
            partial(_yolo_variant, corner=True),
        "when two centres share a cell the first object wins: the later one in boxes does":
            partial(_yolo_variant, first_wins=True),
        "image_size is (H, W), not (W, H)": partial(_yolo_variant, swap_image=True),
    }
    return Exercise("encode_targets", encode_targets, edge_cases, random_case, 100, mistakes)


# ---------------------------------------------------------------------------------------------
# Hungarian matching


def compare_assignments(expected, actual, case: Case) -> str | None:
    """Any optimal assignment is right (costs may tie): a one-to-one assignment of every column
    (object), pairs sorted by row, with the minimum total cost."""
    cost = case.args[0].double()
    if not (isinstance(actual, (tuple, list)) and len(actual) == 2
            and all(isinstance(t, torch.Tensor) for t in actual)):
        return "expected a pair (rows, cols) of int64 tensors"
    rows, cols = actual
    m = cost.shape[1]
    if rows.shape != (m,) or cols.shape != (m,) or rows.is_floating_point() or cols.is_floating_point():
        return (f"rows and cols must be integer tensors of shape [M] = [{m}], got {rows.dtype} "
                f"{tuple(rows.shape)} and {cols.dtype} {tuple(cols.shape)}")
    if len(set(rows.tolist())) != m or sorted(cols.tolist()) != list(range(m)):
        return f"not one-to-one: rows {rows.tolist()}, cols {cols.tolist()}"
    if rows.tolist() != sorted(rows.tolist()):
        return f"the pairs must be sorted by row, got rows {rows.tolist()}"
    best, got = cost[expected[0], expected[1]].sum().item(), cost[rows, cols].sum().item()
    if not math.isclose(best, got, rel_tol=1e-9, abs_tol=1e-9):
        return f"total cost {got:.6g}; {best:.6g} is the minimum"
    return None


def _greedy_assignment(cost):
    free, pairs = set(range(cost.shape[0])), []
    for col in range(cost.shape[1]):
        row = min(free, key=lambda r: cost[r, col].item())
        free.discard(row)
        pairs.append((row, col))
    pairs.sort()
    return (torch.tensor([r for r, _ in pairs], dtype=torch.int64),
            torch.tensor([c for _, c in pairs], dtype=torch.int64))


def _cheapest_each(cost):
    rows = cost.argmin(dim=0)
    order = rows.argsort(stable=True)
    return rows[order], torch.arange(cost.shape[1])[order]


def _unsorted(cost):
    rows, cols = hungarian_assignment(cost)
    order = cols.argsort()
    return rows[order], cols[order]


def hungarian_assignment_exercise() -> Exercise:
    def edge_cases():
        t = lambda rows: torch.tensor(rows, dtype=torch.float64)
        return [
            Case((torch.zeros(3, 0, dtype=torch.float64),), note="no objects"),
            Case((t([[4.0]]),), note="1 x 1"),
            Case((t([[1.0, 2.0], [1.0, 100.0]]),), note="greedy takes row 0 for column 0 and pays 100"),
            Case((t([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]),), note="all costs tie"),
            Case((t([[5.0, 1.0], [1.0, 5.0], [0.0, 0.0]]),), note="3 predictions, 2 objects"),
            Case((t([[-1.0, -3.0], [-2.0, 0.5]]),), note="negative costs"),
            Case((noncontiguous(t([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0], [2.0, 3.0, 1.0]]).float()),),
                 note="float32, non-contiguous"),
        ]

    def random_case(generator, i):
        n = 1 + i % 6
        m = (i // 6) % (n + 1)
        cost = torch.rand(n, m, generator=generator, dtype=torch.float64) * 10
        if i % 3 == 0:
            cost = cost.floor() / 2  # ties
        return Case((cost,))

    mistakes = {
        "greedy matching (each object takes the cheapest free prediction) is not optimal":
            _greedy_assignment,
        "each object takes its cheapest prediction, so two objects can share one: the "
        "assignment must be one-to-one": _cheapest_each,
        "the assignment maximises the total cost": lambda cost: hungarian_assignment(-cost),
        "the pairs are not sorted by row (prediction index)": _unsorted,
    }
    return Exercise("hungarian_assignment", hungarian_assignment, edge_cases, random_case, 100,
                    mistakes, compare=compare_assignments)


EXERCISES = (
    smooth_l1_exercise, sigmoid_focal_loss_exercise, mask_loss_exercise,
    average_precision_all_points_exercise, average_precision_coco_exercise,
    scaled_dot_product_attention_exercise, encode_targets_exercise, hungarian_assignment_exercise,
)
