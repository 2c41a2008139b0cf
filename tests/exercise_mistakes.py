"""Broken implementations a student would plausibly write, each with the words the checker's
message must contain (``None``: it must be caught, no name is required).

They are written from scratch, the way a student writes them (loops, other operations, other
variable names), not as the knobs of ``cvlib.exercises``; tests/test_exercises.py checks that
``check`` catches every one and names the mistake where ``named`` says so. The knob versions in
``cvlib.exercises`` (``Exercise.mistakes``) are a second catalogue, tested the same way.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from cvlib import ops

CLIP = math.log(1000 / 16)  # decode_boxes' default clip
MISTAKES: list[tuple[str, str | None, object]] = []  # (exercise name, words of the message, function)


def mistake(name: str, named: str | None = None):
    def register(fn):
        MISTAKES.append((name, named, fn))
        return fn

    return register


def _area(b):
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


# --- box_iou ---------------------------------------------------------------------------------


@mistake("box_iou", "+1 pixel widths")
def iou_plus_one(boxes1, boxes2):
    out = torch.zeros(len(boxes1), len(boxes2), dtype=boxes1.dtype)
    for i, (a1, b1, c1, d1) in enumerate(boxes1.tolist()):
        for j, (a2, b2, c2, d2) in enumerate(boxes2.tolist()):
            iw = max(0.0, min(c1, c2) - max(a1, a2) + 1)
            ih = max(0.0, min(d1, d2) - max(b1, b2) + 1)
            inter = iw * ih
            union = (c1 - a1 + 1) * (d1 - b1 + 1) + (c2 - a2 + 1) * (d2 - b2 + 1) - inter
            out[i, j] = inter / union
    return out


@mistake("box_iou", "not clamped at 0")
def iou_no_clamp(boxes1, boxes2):
    lt = torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).prod(dim=-1)
    return inter / (_area(boxes1)[:, None] + _area(boxes2)[None] - inter)


@mistake("box_iou")
def iou_min_max_swapped(boxes1, boxes2):
    lt = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    return inter / (_area(boxes1)[:, None] + _area(boxes2)[None] - inter)


# --- generalized_box_iou ---------------------------------------------------------------------


@mistake("generalized_box_iou", "(C - intersection) / C")
def giou_minus_inter(boxes1, boxes2):
    inter = (
        (
            torch.min(boxes1[:, None, 2:], boxes2[None, :, 2:])
            - torch.max(boxes1[:, None, :2], boxes2[None, :, :2])
        )
        .clamp(min=0)
        .prod(-1)
    )
    union = _area(boxes1)[:, None] + _area(boxes2)[None] - inter
    hull = (
        torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
        - torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    ).prod(-1)
    return inter / union - (hull - inter) / hull


@mistake("generalized_box_iou", "plain IoU")
def giou_is_iou(boxes1, boxes2):
    return ops.box_iou(boxes1, boxes2)


@mistake("generalized_box_iou")
def giou_detached(boxes1, boxes2):
    return ops.generalized_box_iou(boxes1.detach(), boxes2.detach())  # no gradient reaches the boxes


# --- encode_boxes / decode_boxes -------------------------------------------------------------


def _cs(b):
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    return b[:, 0] + w / 2, b[:, 1] + h / 2, w, h


@mistake("encode_boxes", "offsets are those of the corners")
def encode_corners(boxes, references, weights=(1.0, 1.0, 1.0, 1.0)):
    _, _, wa, ha = _cs(references)
    _, _, w, h = _cs(boxes)
    dx, dy = (boxes[:, 0] - references[:, 0]) / wa, (boxes[:, 1] - references[:, 1]) / ha
    return torch.stack(
        [weights[0] * dx, weights[1] * dy, weights[2] * (w / wa).log(), weights[3] * (h / ha).log()], 1
    )


@mistake("encode_boxes", "boxes and references swapped")
def encode_swapped(boxes, references, weights=(1.0, 1.0, 1.0, 1.0)):
    xa, ya, wa, ha = _cs(boxes)
    x, y, w, h = _cs(references)
    return torch.stack(
        [
            weights[0] * (x - xa) / wa,
            weights[1] * (y - ya) / ha,
            weights[2] * torch.log(w / wa),
            weights[3] * torch.log(h / ha),
        ],
        1,
    )


@mistake("encode_boxes")
def encode_log_ratio_of_logs(boxes, references, weights=(1.0, 1.0, 1.0, 1.0)):
    xa, ya, wa, ha = _cs(references)
    x, y, w, h = _cs(boxes)
    return torch.stack(
        [
            weights[0] * (x - xa) / wa,
            weights[1] * (y - ya) / ha,
            weights[2] * (torch.log(w) - torch.log(ha)),
            weights[3] * (torch.log(h) - torch.log(wa)),
        ],
        1,
    )


@mistake("decode_boxes", "not clamped before exp")
def decode_no_clamp(deltas, references, weights=(1.0, 1.0, 1.0, 1.0), clip=CLIP):
    xa, ya, wa, ha = _cs(references)
    x, y = xa + deltas[:, 0] / weights[0] * wa, ya + deltas[:, 1] / weights[1] * ha
    w, h = wa * torch.exp(deltas[:, 2] / weights[2]), ha * torch.exp(deltas[:, 3] / weights[3])
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], 1)


@mistake("decode_boxes", "(cx, cy, w, h)")
def decode_centre_size(deltas, references, weights=(1.0, 1.0, 1.0, 1.0), clip=CLIP):
    xa, ya, wa, ha = _cs(references)
    x, y = xa + deltas[:, 0] / weights[0] * wa, ya + deltas[:, 1] / weights[1] * ha
    w = wa * torch.exp((deltas[:, 2] / weights[2]).clamp(max=clip))
    h = ha * torch.exp((deltas[:, 3] / weights[3]).clamp(max=clip))
    return torch.stack([x, y, w, h], 1)


@mistake("decode_boxes")
def decode_width_for_both(deltas, references, weights=(1.0, 1.0, 1.0, 1.0), clip=CLIP):
    xa, ya, wa, ha = _cs(references)
    x, y = xa + deltas[:, 0] / weights[0] * wa, ya + deltas[:, 1] / weights[1] * wa  # wa, not ha
    w = wa * torch.exp((deltas[:, 2] / weights[2]).clamp(max=clip))
    h = ha * torch.exp((deltas[:, 3] / weights[3]).clamp(max=clip))
    return torch.stack([x - w / 2, y - h / 2, x + w / 2, y + h / 2], 1)


# --- nms -------------------------------------------------------------------------------------


@mistake("nms", "not sorted by score")
def nms_in_input_order(boxes, scores, iou_threshold):
    iou = ops.box_iou(boxes, boxes)
    keep = []
    for i in range(len(boxes)):
        if all(iou[i, j] <= iou_threshold for j in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


@mistake("nms", "IoU >= threshold")
def nms_greater_equal(boxes, scores, iou_threshold):
    order = sorted(range(len(scores)), key=lambda i: -scores[i].item())
    iou = ops.box_iou(boxes, boxes)
    keep = []
    for i in order:
        if all(iou[i, j] < iou_threshold for j in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


@mistake("nms", "a suppressed box still suppresses")
def nms_everyone_suppresses(boxes, scores, iou_threshold):
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    iou = ops.box_iou(boxes, boxes)
    keep = [i for n, i in enumerate(order) if not any(iou[j, i] > iou_threshold for j in order[:n])]
    return torch.tensor(keep, dtype=torch.int64)


@mistake("nms", "equal scores")
def nms_reversed_ties(boxes, scores, iou_threshold):
    order = scores.double().flip(0).argsort(descending=True, stable=True)
    order = len(scores) - 1 - order  # ties come out in reverse index order
    iou = ops.box_iou(boxes, boxes)
    keep = []
    for i in order.tolist():
        if all(iou[i, j] <= iou_threshold for j in keep):
            keep.append(i)
    return torch.tensor(keep, dtype=torch.int64)


# --- generate_anchors ------------------------------------------------------------------------


def _anchor_grid(feature_size, stride, sizes, dtype, shift=0.0, indexing="ij"):
    height, width = feature_size
    sy, sx = (stride, stride) if isinstance(stride, (int, float)) else stride
    base = torch.tensor([[-w / 2, -h / 2, w / 2, h / 2] for w, h in sizes], dtype=dtype).round()
    ys, xs = (torch.arange(height, dtype=dtype) + shift) * sy, (torch.arange(width, dtype=dtype) + shift) * sx
    if indexing == "ij":
        cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    else:
        cx, cy = torch.meshgrid(xs, ys, indexing="ij")  # column-major cells
    centres = torch.stack([cx, cy, cx, cy], -1).reshape(-1, 1, 4)
    return (centres + base).reshape(-1, 4)


@mistake("generate_anchors", "w / h")
def anchors_ratio_w_over_h(
    feature_size, stride, scales=(32.0,), aspect_ratios=(0.5, 1.0, 2.0), dtype=torch.float32
):
    sizes = [(s * math.sqrt(r), s / math.sqrt(r)) for r in aspect_ratios for s in scales]
    return _anchor_grid(feature_size, stride, sizes, dtype)


@mistake("generate_anchors", "cell centres")
def anchors_cell_centres(
    feature_size, stride, scales=(32.0,), aspect_ratios=(0.5, 1.0, 2.0), dtype=torch.float32
):
    sizes = [(s / math.sqrt(r), s * math.sqrt(r)) for r in aspect_ratios for s in scales]
    return _anchor_grid(feature_size, stride, sizes, dtype, shift=0.5)


@mistake("generate_anchors")
def anchors_column_major(
    feature_size, stride, scales=(32.0,), aspect_ratios=(0.5, 1.0, 2.0), dtype=torch.float32
):
    sizes = [(s / math.sqrt(r), s * math.sqrt(r)) for r in aspect_ratios for s in scales]
    return _anchor_grid(feature_size, stride, sizes, dtype, indexing="xy")


@mistake("generate_anchors", "scale-major")
def anchors_scale_major(
    feature_size, stride, scales=(32.0,), aspect_ratios=(0.5, 1.0, 2.0), dtype=torch.float32
):
    sizes = [(s / math.sqrt(r), s * math.sqrt(r)) for s in scales for r in aspect_ratios]
    return _anchor_grid(feature_size, stride, sizes, dtype)


# --- roi_pool / roi_align --------------------------------------------------------------------


def _roi_pool(input, boxes, output_size, spatial_scale, to_cell=round, pool=torch.amax, end_cell=1):
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    _, channels, height, width = input.shape
    out = input.new_zeros(len(boxes), channels, ph, pw)
    for k, (b, *corners) in enumerate(boxes.tolist()):
        x1, y1, x2, y2 = (to_cell(c * spatial_scale) for c in corners)
        bh, bw = max(y2 - y1 + end_cell, 1) / ph, max(x2 - x1 + end_cell, 1) / pw
        for p in range(ph):
            for q in range(pw):
                r0, r1 = (
                    min(max(y1 + math.floor(p * bh), 0), height),
                    min(max(y1 + math.ceil((p + 1) * bh), 0), height),
                )
                c0, c1 = (
                    min(max(x1 + math.floor(q * bw), 0), width),
                    min(max(x1 + math.ceil((q + 1) * bw), 0), width),
                )
                if r1 > r0 and c1 > c0:
                    out[k, :, p, q] = pool(input[int(b), :, r0:r1, c0:c1], dim=(1, 2))
    return out


def _half_away(v):
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


@mistake("roi_pool", "floored to the grid")
def roi_pool_floor(input, boxes, output_size, spatial_scale=1.0):
    return _roi_pool(input, boxes, output_size, spatial_scale, to_cell=math.floor)


@mistake("roi_pool", "averaged")
def roi_pool_mean(input, boxes, output_size, spatial_scale=1.0):
    return _roi_pool(input, boxes, output_size, spatial_scale, to_cell=_half_away, pool=torch.mean)


@mistake("roi_pool", "last row and column are left out")
def roi_pool_exclusive(input, boxes, output_size, spatial_scale=1.0):
    return _roi_pool(input, boxes, output_size, spatial_scale, to_cell=_half_away, end_cell=0)


@mistake("roi_pool")
def roi_pool_torch_round(input, boxes, output_size, spatial_scale=1.0):
    return _roi_pool(input, boxes, output_size, spatial_scale, to_cell=round)  # round half to even


def _roi_align(
    input,
    boxes,
    output_size,
    spatial_scale,
    sampling_ratio,
    aligned,
    shift=0.5,
    grid=math.ceil,
    reduce="mean",
    clamp_border=True,
):
    ph, pw = (output_size, output_size) if isinstance(output_size, int) else output_size
    n, channels, height, width = input.shape
    out = input.new_zeros(len(boxes), channels, ph, pw)
    for k, (b, *corners) in enumerate(boxes.tolist()):
        x1, y1, x2, y2 = (c * spatial_scale - (shift if aligned else 0.0) for c in corners)
        rw, rh = (x2 - x1, y2 - y1) if aligned else (max(x2 - x1, 1.0), max(y2 - y1, 1.0))
        gh = sampling_ratio if sampling_ratio > 0 else grid(rh / ph)
        gw = sampling_ratio if sampling_ratio > 0 else grid(rw / pw)
        for p in range(ph):
            for q in range(pw):
                values = []
                for i in range(gh):
                    for j in range(gw):
                        y = y1 + (p + (i + 0.5) / gh) * rh / ph
                        x = x1 + (q + (j + 0.5) / gw) * rw / pw
                        if clamp_border and (y < -1 or y > height or x < -1 or x > width):
                            values.append(input.new_zeros(channels))
                            continue
                        y, x = min(max(y, 0.0), height - 1), min(max(x, 0.0), width - 1)
                        y0, x0 = int(y), int(x)
                        y1_, x1_ = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
                        ly, lx = y - y0, x - x0
                        f = input[int(b)]
                        values.append(
                            (1 - ly) * (1 - lx) * f[:, y0, x0]
                            + (1 - ly) * lx * f[:, y0, x1_]
                            + ly * (1 - lx) * f[:, y1_, x0]
                            + ly * lx * f[:, y1_, x1_]
                        )
                if values:
                    stacked = torch.stack(values)
                    out[k, :, p, q] = stacked.mean(0) if reduce == "mean" else stacked.amax(0)
    return out


@mistake("roi_align", "half a pixel")
def roi_align_no_shift(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    return _roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, shift=0.0)


@mistake("roi_align", "max-pooled")
def roi_align_max(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    return _roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, reduce="max")


@mistake("roi_align", "one point per bin")
def roi_align_one_sample(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    return _roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, grid=lambda v: 1)


@mistake("roi_align")
def roi_align_no_outside_zero(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    return _roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned, clamp_border=False)


# --- bilinear, max_unpool, conv_transpose2d_scatter ------------------------------------------


@mistake("bilinear")
def bilinear_always_align_corners(x, scale=None, size=None, align_corners=False):
    if size is not None:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=True)


def _bilinear_by_hand(x, scale, size, align_corners, source):
    height, width = x.shape[2:]
    out_h, out_w = size if size is not None else (int(height * scale), int(width * scale))

    def axis(n_in, n_out):
        src = torch.tensor(
            [source(d, n_in, n_out, scale, align_corners) for d in range(n_out)], dtype=torch.float64
        )
        i0 = src.floor().long().clamp(0, n_in - 1)
        return i0, (i0 + 1).clamp(max=n_in - 1), (src - i0).to(x.dtype)

    y0, y1, ty = axis(height, out_h)
    x0, x1, tx = axis(width, out_w)
    rows = x[:, :, y0] * (1 - ty[:, None]) + x[:, :, y1] * ty[:, None]
    return rows[..., x0] * (1 - tx) + rows[..., x1] * tx


@mistake("bilinear", "src = (dst + 0.5)")
def bilinear_no_half_pixel(x, scale=None, size=None, align_corners=False):
    def source(d, n_in, n_out, scale, align):
        if align:
            return d * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        return d * (1 / scale if scale else n_in / n_out)

    return _bilinear_by_hand(x, scale, size, align_corners, source)


@mistake("bilinear", "1 / scale")
def bilinear_in_over_out(x, scale=None, size=None, align_corners=False):
    def source(d, n_in, n_out, scale, align):
        if align:
            return d * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        return max((d + 0.5) * n_in / n_out - 0.5, 0.0)

    return _bilinear_by_hand(x, scale, size, align_corners, source)


@mistake("max_unpool", "whole tensor")
def unpool_global_index(x, indices, output_size):
    out = torch.zeros(x.shape[0], x.shape[1], *output_size, dtype=x.dtype).flatten()
    out[indices.flatten()] = x.flatten()
    return out.reshape(x.shape[0], x.shape[1], *output_size)


@mistake("max_unpool", "twice the input")
def unpool_double_size(x, indices, output_size):
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, 4 * h * w)
    out = out.scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(n, c, 2 * h, 2 * w)


@mistake("max_unpool", "pooled width")
def unpool_pooled_width(x, indices, output_size):
    out = x.new_zeros(*x.shape[:2], *output_size)
    n, c, h, w = x.shape
    for a in range(n):
        for b in range(c):
            for i in range(h):
                for j in range(w):
                    index = int(indices[a, b, i, j])
                    row, col = index // w, index % w
                    if row < output_size[0]:
                        out[a, b, row, col] = x[a, b, i, j]
    return out


@mistake("conv_transpose2d_scatter", "filter is flipped")
def transposed_by_zero_stuffing(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    """Insert stride - 1 zeros between pixels, then an ordinary convolution (no kernel flip)."""
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
    (sh, sw), (ph, pw), (oh, ow), (dh, dw) = map(pair, (stride, padding, output_padding, dilation))
    n, c, h, w = x.shape
    stuffed = x.new_zeros(n, c, (h - 1) * sh + 1, (w - 1) * sw + 1)
    stuffed[:, :, ::sh, ::sw] = x
    kh, kw = weight.shape[2:]
    eh, ew = dh * (kh - 1), dw * (kw - 1)
    stuffed = F.pad(stuffed, (ew - pw, ew - pw + ow, eh - ph, eh - ph + oh))
    return F.conv2d(stuffed, weight.transpose(0, 1), bias, dilation=(dh, dw))


@mistake("conv_transpose2d_scatter", "bias is not added")
def transposed_no_bias(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    return F.conv_transpose2d(x, weight, None, stride, padding, output_padding, 1, dilation)


@mistake("conv_transpose2d_scatter")
def transposed_no_crop(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    return F.conv_transpose2d(x, weight, bias, stride, 0, output_padding, 1, dilation)


# --- confusion_matrix, mean_iou --------------------------------------------------------------


@mistake("confusion_matrix", "rows are the predictions")
def confusion_predictions_as_rows(pred, target, num_classes, ignore_index=None):
    out = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist()):
        if t != ignore_index:
            out[p, t] += 1
    return out


@mistake("confusion_matrix")
def confusion_ignore_on_prediction(pred, target, num_classes, ignore_index=None):
    keep = pred != ignore_index  # the ignored pixels are marked in the target, not the prediction
    pairs = target[keep] * num_classes + pred[keep]
    return torch.bincount(pairs, minlength=num_classes**2)[: num_classes**2].reshape(num_classes, num_classes)


@mistake("confusion_matrix")
def confusion_float(pred, target, num_classes, ignore_index=None):
    keep = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    pairs = (target[keep] * num_classes + pred[keep]).float()
    return torch.histc(pairs, bins=num_classes**2, min=0, max=num_classes**2 - 1).reshape(
        num_classes, num_classes
    )


@mistake("mean_iou", "absent from both")
def miou_absent_zero(confusion):
    ious = []
    for c in range(len(confusion)):
        tp = confusion[c, c].item()
        union = confusion[c, :].sum().item() + confusion[:, c].sum().item() - tp
        ious.append(tp / union if union else 0.0)
    return sum(ious) / len(ious)


@mistake("mean_iou", "per-class recall")
def miou_recall(confusion):
    confusion = confusion.double()
    recall = confusion.diagonal() / confusion.sum(dim=1)
    return recall.nanmean().item()


@mistake("mean_iou")
def miou_precision(confusion):
    confusion = confusion.double()
    precision = confusion.diagonal() / confusion.sum(dim=0)
    return precision.nanmean().item()


# --- smooth_l1, sigmoid_focal_loss, mask_loss ------------------------------------------------


@mistake("smooth_l1", "not divided by beta")
def smooth_l1_no_beta(input, target, beta=1.0):
    d = (input - target).abs()
    return torch.where(d < beta, 0.5 * d * d, d - 0.5 * beta).mean()


@mistake("smooth_l1", "summed")
def smooth_l1_sum(input, target, beta=1.0):
    return F.smooth_l1_loss(input, target, beta=beta, reduction="sum")


@mistake("smooth_l1")
def smooth_l1_is_l1(input, target, beta=1.0):
    return F.l1_loss(input, target)


@mistake("sigmoid_focal_loss", "overflows")
def focal_naive_log(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    p = torch.sigmoid(inputs)
    p_t = torch.where(targets > 0.5, p, 1 - p)
    a_t = (
        torch.where(targets > 0.5, torch.full_like(p, alpha), torch.full_like(p, 1 - alpha))
        if alpha >= 0
        else 1.0
    )
    loss = -a_t * (1 - p_t) ** gamma * torch.log(p_t)
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@mistake("sigmoid_focal_loss", "alpha weights the negatives")
def focal_alpha_swapped(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    p = inputs.sigmoid()
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * ((1 - alpha) * targets + alpha * (1 - targets))
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@mistake("sigmoid_focal_loss", "(1 - p)^gamma")
def focal_one_minus_p(inputs, targets, alpha=0.25, gamma=2.0, reduction="none"):
    ce = F.binary_cross_entropy_with_logits(inputs, targets, reduction="none")
    loss = ce * (1 - inputs.sigmoid()) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return {"none": loss, "mean": loss.mean(), "sum": loss.sum()}[reduction]


@mistake("mask_loss", "every class's mask")
def mask_loss_all_maps(mask_logits, labels, mask_targets):
    if len(labels) == 0:
        return mask_logits.sum() * 0
    targets = mask_targets.unsqueeze(1).repeat(1, mask_logits.shape[1], 1, 1)
    return F.binary_cross_entropy_with_logits(mask_logits, targets)


@mistake("mask_loss", "softmax over the classes")
def mask_loss_softmax(mask_logits, labels, mask_targets):
    if len(labels) == 0:
        return mask_logits.sum() * 0
    pixel_class = (mask_targets >= 0.5).long() * labels.view(-1, 1, 1)
    return F.cross_entropy(mask_logits, pixel_class)


@mistake("mask_loss", "NaN")
def mask_loss_no_empty_case(mask_logits, labels, mask_targets):
    picked = (
        torch.stack([mask_logits[k, labels[k]] for k in range(len(labels))])
        if len(labels)
        else mask_logits.new_zeros(0, *mask_targets.shape[1:])
    )
    return F.binary_cross_entropy_with_logits(picked, mask_targets)


# --- average precision -----------------------------------------------------------------------


@mistake("average_precision_all_points", "envelope of the precision curve is missing")
def ap_raw_precision(recall, precision):
    recall, precision = recall.double(), precision.double()
    previous = torch.cat([torch.zeros_like(recall[..., :1]), recall[..., :-1]], -1)
    return ((recall - previous) * precision).sum(-1)


@mistake("average_precision_all_points", "trapezoid")
def ap_trapezoid(recall, precision):
    return torch.as_tensor(np.trapezoid(precision.double().numpy(), recall.double().numpy(), axis=-1))


@mistake("average_precision_all_points")
def ap_voc11(recall, precision):
    from cvlib.metrics import average_precision_voc11

    return average_precision_voc11(recall, precision)


@mistake("average_precision_coco", "envelope of the precision curve is missing")
def ap_coco_raw(recall, precision):
    out = []
    for r, p in zip(
        recall.double().reshape(-1, recall.shape[-1]), precision.double().reshape(-1, recall.shape[-1])
    ):
        values = []
        for t in np.linspace(0, 1, 101):
            reached = (r >= t).nonzero()
            values.append(p[reached[0, 0]].item() if len(reached) else 0.0)
        out.append(sum(values) / 101)
    return torch.tensor(out, dtype=torch.float64).reshape(recall.shape[:-1])


@mistake("average_precision_coco", "100 recall points")
def ap_coco_100(recall, precision):
    envelope = precision.double().flip(-1).cummax(-1).values.flip(-1)
    envelope = F.pad(envelope, (0, 1))
    thresholds = torch.linspace(0, 1, 100, dtype=torch.float64)
    first = torch.searchsorted(
        recall.double().contiguous(), thresholds.expand(*recall.shape[:-1], -1).contiguous()
    )
    return envelope.gather(-1, first).mean(-1)


@mistake("average_precision_coco")
def ap_coco_linear(recall, precision):
    envelope = precision.double().flip(-1).cummax(-1).values.flip(-1)
    flat_r, flat_p = recall.double().reshape(-1, recall.shape[-1]), envelope.reshape(-1, recall.shape[-1])
    out = [
        np.interp(np.linspace(0, 1, 101), r.numpy(), p.numpy(), right=0.0).mean()
        for r, p in zip(flat_r, flat_p)
    ]
    return torch.tensor(out, dtype=torch.float64).reshape(recall.shape[:-1])


# --- attention -------------------------------------------------------------------------------


def _attend(q, k, v, mask, causal, scale, dim=-1, keep=lambda m: m):
    scores = q @ k.transpose(-2, -1) * scale
    if causal:
        scores = scores.masked_fill(
            torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril().logical_not(), float("-inf")
        )
    if mask is not None:
        scores = scores.masked_fill(keep(mask).logical_not(), float("-inf"))
    weights = torch.softmax(scores, dim=dim)
    return weights @ v, weights


@mistake("scaled_dot_product_attention", "not scaled by sqrt(d)")
def attention_unscaled(q, k, v, mask=None, causal=False):
    return _attend(q, k, v, mask, causal, 1.0)


@mistake("scaled_dot_product_attention", "softmax runs over the queries")
def attention_softmax_queries(q, k, v, mask=None, causal=False):
    return _attend(q, k, v, mask, causal, q.shape[-1] ** -0.5, dim=-2)


@mistake("scaled_dot_product_attention", "wrong way round")
def attention_mask_inverted(q, k, v, mask=None, causal=False):
    return _attend(q, k, v, mask, causal, q.shape[-1] ** -0.5, keep=lambda m: ~m)


@mistake("scaled_dot_product_attention")
def attention_torch_output_only(q, k, v, mask=None, causal=False):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


# --- encode_targets (YOLO) -------------------------------------------------------------------


def _yolo(boxes, labels, grid_size, image_size, encode, index=lambda row, col: (row, col)):
    height, width = image_size
    params = boxes.new_zeros(grid_size, grid_size, 4)
    cells = torch.zeros(grid_size, grid_size, dtype=torch.int64)
    for box, label in zip(boxes.tolist(), labels.tolist()):
        row, col, values = encode(box, grid_size, height, width)
        params[index(row, col)] = torch.tensor(values, dtype=boxes.dtype)
        cells[index(row, col)] = label
    return {"params": params, "labels": cells, "object": cells > 0}


def _cell(box, s, height, width):
    x1, y1, x2, y2 = box
    gx, gy = (x1 + x2) / 2 / width * s, (y1 + y2) / 2 / height * s
    return gx, gy, min(int(gx), s - 1), min(int(gy), s - 1)


@mistake("encode_targets", "without the square root")
def yolo_no_sqrt(boxes, labels, grid_size, image_size):
    def encode(box, s, height, width):
        gx, gy, col, row = _cell(box, s, height, width)
        return row, col, [gx - col, gy - row, (box[2] - box[0]) / width, (box[3] - box[1]) / height]

    return _yolo(boxes, labels, grid_size, image_size, encode)


@mistake("encode_targets", "rows and columns swapped")
def yolo_col_row(boxes, labels, grid_size, image_size):
    def encode(box, s, height, width):
        gx, gy, col, row = _cell(box, s, height, width)
        return (
            row,
            col,
            [gx - col, gy - row, math.sqrt((box[2] - box[0]) / width), math.sqrt((box[3] - box[1]) / height)],
        )

    return _yolo(boxes, labels, grid_size, image_size, encode, index=lambda row, col: (col, row))


@mistake("encode_targets", "image units")
def yolo_absolute_centre(boxes, labels, grid_size, image_size):
    def encode(box, s, height, width):
        gx, gy, col, row = _cell(box, s, height, width)
        return (
            row,
            col,
            [gx / s, gy / s, math.sqrt((box[2] - box[0]) / width), math.sqrt((box[3] - box[1]) / height)],
        )

    return _yolo(boxes, labels, grid_size, image_size, encode)


# --- hungarian_assignment --------------------------------------------------------------------


@mistake("hungarian_assignment", "greedy matching")
def greedy_by_object(cost):
    taken, pairs = [], []
    for col in range(cost.shape[1]):
        free = [r for r in range(cost.shape[0]) if r not in taken]
        row = free[int(cost[free, col].argmin())]
        taken.append(row)
        pairs.append((row, col))
    pairs.sort()
    return torch.tensor([p[0] for p in pairs], dtype=torch.int64), torch.tensor(
        [p[1] for p in pairs], dtype=torch.int64
    )


@mistake("hungarian_assignment", "two objects can share one")
def cheapest_per_object(cost):
    rows = cost.argmin(0)
    order = torch.argsort(rows, stable=True)
    return rows[order], order


@mistake("hungarian_assignment", "maximises")
def scipy_maximise(cost):
    rows, cols = linear_sum_assignment(cost.double().numpy(), maximize=True)
    return torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)


# --- saliency, cam, grad_cam -----------------------------------------------------------------


def _hooked(model, layer):
    store = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: store.__setitem__("A", o))
    return store, handle


def _classes(logits, target):
    return logits.argmax(1) if target is None else torch.as_tensor(target).reshape(-1).expand(len(logits))


@mistake("saliency", "absolute value")
def saliency_signed(model, images, target=None):
    model.eval()
    images = images.clone().requires_grad_()
    logits = model(images)
    logits.gather(1, _classes(logits, target)[:, None]).sum().backward()
    return images.grad.amax(dim=1)


@mistake("saliency", "training mode")
def saliency_no_eval(model, images, target=None):
    images = images.clone().requires_grad_()
    logits = model(images)
    logits.gather(1, _classes(logits, target)[:, None]).sum().backward()
    return images.grad.abs().amax(dim=1)


@mistake("saliency", "summed")
def saliency_channel_sum(model, images, target=None):
    model.eval()
    images = images.clone().requires_grad_()
    logits = model(images)
    logits.gather(1, _classes(logits, target)[:, None]).sum().backward()
    return images.grad.abs().sum(dim=1)


def _cam(model, images, target, features, fc, upsample, relu=False, use_target=True, train=False):
    if not train:
        model.eval()
    store, handle = _hooked(model, features)
    with torch.no_grad():
        logits = model(images)
    handle.remove()
    classes = _classes(logits, target if use_target else None)
    maps = (model.get_submodule(fc).weight[classes][:, :, None, None] * store["A"]).sum(1)
    maps = maps.relu() if relu else maps
    if upsample:
        maps = F.interpolate(maps.unsqueeze(1), size=images.shape[2:], mode="bilinear", align_corners=False)[
            :, 0
        ]
    return maps.detach()


@mistake("cam", "CAM with a ReLU")
def cam_relu(model, images, target=None, features="features", fc="fc", upsample=True):
    return _cam(model, images, target, features, fc, upsample, relu=True)


@mistake("cam", "training mode")
def cam_train_mode(model, images, target=None, features="features", fc="fc", upsample=True):
    return _cam(model, images, target, features, fc, upsample, train=True)


@mistake("cam", "target class is ignored")
def cam_predicted_only(model, images, target=None, features="features", fc="fc", upsample=True):
    return _cam(model, images, target, features, fc, upsample, use_target=False)


def _grad_cam(model, images, target, layer, upsample, relu=True, pooled=torch.mean, probability=False):
    model.eval()
    store, handle = _hooked(model, layer)
    logits = model(images)
    handle.remove()
    scores = F.softmax(logits, dim=1) if probability else logits
    grads = torch.autograd.grad(scores.gather(1, _classes(logits, target)[:, None]).sum(), store["A"])[0]
    maps = (pooled(grads, dim=(2, 3), keepdim=True) * store["A"]).sum(1).detach()
    maps = F.relu(maps) if relu else maps
    if upsample:
        maps = F.interpolate(maps.unsqueeze(1), size=images.shape[2:], mode="bilinear", align_corners=False)[
            :, 0
        ]
    return maps


@mistake("grad_cam", "Grad-CAM without the ReLU")
def grad_cam_no_relu(model, images, target=None, layer="features", upsample=True):
    return _grad_cam(model, images, target, layer, upsample, relu=False)


@mistake("grad_cam", "summed over the cells")
def grad_cam_sum(model, images, target=None, layer="features", upsample=True):
    return _grad_cam(model, images, target, layer, upsample, pooled=torch.sum)


@mistake("grad_cam", "softmax probability")
def grad_cam_probability(model, images, target=None, layer="features", upsample=True):
    return _grad_cam(model, images, target, layer, upsample, probability=True)


# --- attention_rollout -----------------------------------------------------------------------


@mistake("attention_rollout", "residual identity is missing")
def rollout_no_identity(attentions, residual=0.5, head_fusion="mean"):
    result = None
    for a in attentions:
        fused = a.mean(1) if head_fusion == "mean" else a.max(1).values
        fused = fused / fused.sum(-1, keepdim=True)
        result = fused if result is None else fused @ result
    return result


@mistake("attention_rollout", "wrong order")
def rollout_right_multiplied(attentions, residual=0.5, head_fusion="mean"):
    eye = torch.eye(attentions[0].shape[-1], dtype=attentions[0].dtype)
    result = eye
    for a in attentions:
        fused = a.mean(1) if head_fusion == "mean" else a.max(1).values
        layer = residual * eye + (1 - residual) * fused
        result = result @ (layer / layer.sum(-1, keepdim=True))
    return result


@mistake("attention_rollout")
def rollout_fixed_half(attentions, residual=0.5, head_fusion="mean"):
    eye = torch.eye(attentions[0].shape[-1], dtype=attentions[0].dtype)
    result = eye
    for a in attentions:
        fused = a.mean(1) if head_fusion == "mean" else a.max(1).values
        layer = 0.5 * eye + 0.5 * fused
        result = (layer / layer.sum(-1, keepdim=True)) @ result
    return result
