"""Exercises on dense prediction (notebooks 02 and 03): bilinear upsampling, max unpooling, the
transposed convolution, the confusion matrix and the mean IoU."""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F

from cvlib.exercises.core import Case, Exercise, noncontiguous
from cvlib.metrics import confusion_matrix, mean_iou, per_class_iou
from cvlib.ops.upsample import bilinear, conv_transpose2d_scatter, max_unpool

# ---------------------------------------------------------------------------------------------
# Bilinear upsampling


def _taps(in_size, out_size, scale, align_corners, half_pixel=True, clamp=True, use_scale=True):
    """Source positions of one axis, with the knobs of the classic mistakes."""
    dst = torch.arange(out_size, dtype=torch.float64)
    if align_corners:
        src = dst * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        ratio = 1.0 / scale if scale is not None and use_scale else in_size / out_size
        src = (dst + 0.5) * ratio - 0.5 if half_pixel else dst * ratio
        src = src.clamp(min=0.0) if clamp else src
    i0 = src.floor().long().clamp(max=in_size - 1)
    return i0, (i0 + 1).clamp(max=in_size - 1), src - i0


def bilinear_variant(x, scale=None, size=None, align_corners=False, *, honour_align=True, **knobs):
    """Bilinear interpolation written out; the keyword-only knobs make the classic mistakes."""
    height, width = x.shape[2:]
    out_h, out_w = (size if isinstance(size, tuple) else (size, size)) if size is not None else (
        math.floor(height * scale), math.floor(width * scale))
    align = align_corners and honour_align
    y0, y1, ty = _taps(height, out_h, scale, align, **knobs)
    x0, x1, tx = _taps(width, out_w, scale, align, **knobs)
    ty, tx = ty.to(x.dtype)[:, None], tx.to(x.dtype)
    rows = x[:, :, y0] * (1 - ty) + x[:, :, y1] * ty
    return rows[..., x0] * (1 - tx) + rows[..., x1] * tx


def bilinear_exercise() -> Exercise:
    def edge_cases():
        ramp = torch.arange(6, dtype=torch.float64).reshape(1, 1, 2, 3)
        return [
            Case((ramp, 2), note="a 2 x 3 ramp, scale 2"),
            Case((ramp,), {"size": (4, 6), "align_corners": True}, note="align_corners=True"),
            Case((ramp, 1.5), note="scale 1.5: floor(2 * 1.5) = 3 rows, source step 1 / 1.5"),
            Case((ramp,), {"size": (5, 5)}, note="size (5, 5)"),
            Case((ramp, 0.5), note="downsampling, scale 0.5"),
            Case((torch.ones(1, 1, 1, 1, dtype=torch.float64), 3), note="a single pixel"),
            Case((noncontiguous(torch.randn(2, 2, 3, 4, generator=torch.Generator().manual_seed(0))), 2),
                 note="float32, non-contiguous"),
        ]

    def random_case(generator, i):
        x = torch.randn(1 + i % 2, 1 + i % 3, 2 + i % 4, 2 + (i // 4) % 3, generator=generator,
                        dtype=torch.float64)
        if i % 3 == 0:
            kwargs = {"size": (1 + (i // 3) % 6, 2 + (i // 5) % 5)}
        else:
            kwargs = {"scale": (2, 3, 1.5, 2.5, 0.75)[(i // 3) % 5]}
        kwargs["align_corners"] = i % 4 == 1
        return Case((x,), kwargs, grad=(0,))

    mistakes = {
        "the source pixel is dst * in / out: with align_corners=False pixel centres line up, "
        "src = (dst + 0.5) * in / out - 0.5": partial(bilinear_variant, half_pixel=False),
        "the source position is not clamped at 0: the first output pixels read index -1, the "
        "last input pixel": partial(bilinear_variant, clamp=False),
        "the step is in / out where PyTorch uses 1 / scale (they differ when H * scale is not a "
        "whole number)": partial(bilinear_variant, use_scale=False),
        "align_corners is ignored": partial(bilinear_variant, honour_align=False),
    }
    return Exercise("bilinear", bilinear, edge_cases, random_case, 100, mistakes)


# ---------------------------------------------------------------------------------------------
# Max unpooling


def _unpool_whole_tensor(x, indices, output_size):
    height, width = output_size
    out = x.new_zeros(x.shape[0] * x.shape[1] * height * width)
    out[indices.flatten()] = x.flatten()
    return out.view(*x.shape[:2], height, width)


def _unpool_twice(x, indices, output_size):
    n, c, h, w = x.shape
    out = x.new_zeros(n, c, 4 * h * w).scatter(2, indices.flatten(2), x.flatten(2))
    return out.view(n, c, 2 * h, 2 * w)


def _unpool_pooled_width(x, indices, output_size):
    height, width = output_size
    rows, cols = indices // x.shape[3], indices % x.shape[3]
    flat = torch.where(rows < height, rows * width + cols, height * width)  # beyond the map: dropped
    out = x.new_zeros(*x.shape[:2], height * width + 1)
    out = out.scatter(2, flat.flatten(2), x.flatten(2))
    return out[..., :-1].reshape(*x.shape[:2], height, width)


def _unpool_added(x, indices, output_size):
    height, width = output_size
    out = x.new_zeros(*x.shape[:2], height * width)
    return out.scatter_add(2, indices.flatten(2), x.flatten(2)).view(*x.shape[:2], height, width)


def _pooled(generator, shape, kernel, stride) -> tuple[torch.Tensor, torch.Tensor]:
    image = torch.randn(shape, generator=generator, dtype=torch.float64)
    return F.max_pool2d(image, kernel, stride, return_indices=True)


def max_unpool_exercise() -> Exercise:
    def edge_cases():
        generator = torch.Generator().manual_seed(0)
        values, indices = _pooled(generator, (1, 1, 4, 4), 2, 2)
        odd_values, odd_indices = _pooled(generator, (2, 3, 5, 5), 2, 2)
        overlap_values, overlap_indices = _pooled(generator, (1, 2, 5, 6), 3, 2)
        empty_values, empty_indices = _pooled(generator, (0, 1, 4, 4), 2, 2)
        return [
            Case((values, indices, (4, 4)), note="a 4 x 4 map pooled 2 x 2"),
            Case((odd_values, odd_indices, (5, 5)), note="odd size 5 x 5: output_size says 5, not 4"),
            Case((overlap_values, overlap_indices, (5, 6)),
                 note="overlapping windows (kernel 3, stride 2): two windows may pick the same pixel"),
            Case((empty_values, empty_indices, (4, 4)), note="an empty batch"),
            Case((noncontiguous(odd_values.float()), odd_indices, (5, 5)), note="float32, non-contiguous"),
        ]

    def random_case(generator, i):
        kernel, stride = ((2, 2), (3, 2), (2, 1), (3, 3))[i % 4]
        height, width = 3 + i % 4, 3 + (i // 4) % 4
        values, indices = _pooled(generator, (1 + i % 2, 1 + i % 3, height, width), kernel, stride)
        return Case((values, indices, (height, width)), grad=(0,))

    mistakes = {
        "the indices are read as positions in the whole tensor: they index one H x W plane "
        "(row * W + col) per image and channel": _unpool_whole_tensor,
        "the output size is taken as twice the input: use output_size (odd sizes lose a row)":
            _unpool_twice,
        "the flat index is decoded with the pooled width: row = index // W of the output":
            _unpool_pooled_width,
        "values that land on the same position are added (overlapping windows): each is put, "
        "not summed": _unpool_added,
    }
    return Exercise("max_unpool", max_unpool, edge_cases, random_case, 80, mistakes)


# ---------------------------------------------------------------------------------------------
# Transposed convolution


def _transposed(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    return F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, 1, dilation)


def _ignoring(**forced):
    """The transposed convolution with the arguments in ``forced`` replaced (ignored by mistake)."""

    def wrong(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
        arguments = {"bias": bias, "stride": stride, "padding": padding, "output_padding": output_padding,
                     "dilation": dilation, **forced}
        return F.conv_transpose2d(x, weight, **arguments)

    return wrong


def _crop_one_side(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1):
    full = _transposed(x, weight, bias, stride, 0, output_padding, dilation)
    p = padding if isinstance(padding, int) else padding[0]
    size = [s - 2 * p for s in full.shape[2:]]
    return full[:, :, 2 * p:2 * p + size[0], 2 * p:2 * p + size[1]]


def conv_transpose2d_scatter_exercise() -> Exercise:
    def edge_cases():
        generator = torch.Generator().manual_seed(0)
        x = torch.arange(1.0, 5.0, dtype=torch.float64).reshape(1, 1, 2, 2)
        ramp = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 1, 3, 3)
        weight = torch.randn(3, 2, 3, 3, generator=generator, dtype=torch.float64)
        return [
            Case((x, torch.ones(1, 1, 3, 3, dtype=torch.float64)), {"stride": 2},
                 note="the lecture's 2 x 2 input, 3 x 3 ones filter, stride 2"),
            Case((x, ramp), {"stride": 2}, note="an asymmetric filter (not flipped)"),
            Case((torch.randn(1, 3, 3, 4, generator=generator, dtype=torch.float64), weight),
                 {"bias": torch.tensor([1.0, -2.0], dtype=torch.float64), "stride": 2, "padding": 1},
                 note="3 -> 2 channels (weight is [C_in, C_out, kH, kW]), bias, padding 1"),
            Case((x, ramp), {"stride": 2, "padding": 1, "output_padding": 1}, note="output_padding 1"),
            Case((x, ramp), {"dilation": 2}, note="dilation 2"),
            Case((noncontiguous(torch.randn(2, 3, 2, 3, generator=generator)), weight.float()),
                 {"stride": (1, 2)}, note="float32, non-contiguous, stride (1, 2)"),
        ]

    def random_case(generator, i):
        c_in, c_out = 1 + i % 3, 1 + (i // 3) % 2
        kernel = (1 + i % 4, 1 + (i // 2) % 3)
        stride, dilation = 1 + i % 3, 1 + (i // 5) % 2
        output_padding = (i // 7) % 2 if max(stride, dilation) > 1 else 0
        x = torch.randn(1 + i % 2, c_in, 1 + i % 3, 1 + (i // 3) % 3, generator=generator,
                        dtype=torch.float64)
        sizes = [(n - 1) * stride + dilation * (k - 1) + output_padding + 1
                 for n, k in zip(x.shape[2:], kernel)]
        padding = i % 2 if min(sizes) > 2 else 0  # the cropped output keeps at least one pixel
        weight = torch.randn(c_in, c_out, *kernel, generator=generator, dtype=torch.float64)
        bias = torch.randn(c_out, generator=generator, dtype=torch.float64) if i % 2 else None
        return Case((x, weight, bias, stride, padding, output_padding, dilation), grad=(0, 1))

    mistakes = {
        "the filter is flipped: a transposed convolution places the filter as it is":
            lambda x, w, *a, **k: _transposed(x, w.flip(-1, -2), *a, **k),
        "the weight is read as [C_out, C_in, kH, kW]: a transposed convolution's weight is "
        "[C_in, C_out, kH, kW]": lambda x, w, *a, **k: _transposed(x, w.transpose(0, 1), *a, **k),
        "padding is cropped from one side only: crop `padding` pixels from each side":
            _crop_one_side,
        "output_padding is ignored": _ignoring(output_padding=0),
        "dilation is ignored": _ignoring(dilation=1),
        "the bias is not added": _ignoring(bias=None),
    }
    return Exercise("conv_transpose2d_scatter", conv_transpose2d_scatter, edge_cases, random_case, 80,
                    mistakes)


# ---------------------------------------------------------------------------------------------
# Confusion matrix and mean IoU


def _miou_absent_as_zero(confusion):
    return per_class_iou(confusion).nan_to_num(0.0).mean().item()


def _miou_recall(confusion):
    confusion = confusion.double()
    recall = confusion.diagonal() / confusion.sum(1)
    return recall[~recall.isnan()].mean().item()


def _miou_union_twice(confusion):
    confusion = confusion.double()
    tp = confusion.diagonal()
    iou = tp / (confusion.sum(0) + confusion.sum(1))
    return iou[~iou.isnan()].mean().item()


def mean_iou_exercise() -> Exercise:
    def edge_cases():
        t = lambda rows: torch.tensor(rows, dtype=torch.int64)
        return [
            Case((t([[5]]),), note="one class, all right"),
            Case((t([[3, 1], [2, 4]]),), note="two classes"),
            Case((t([[3, 0, 1], [0, 0, 0], [2, 0, 4]]),), note="class 1 absent from truth and prediction"),
            Case((t([[3, 2, 0], [0, 0, 0], [0, 0, 5]]),), note="class 1 predicted but never true (IoU 0)"),
            Case((t([[0, 0], [0, 7]]),), note="class 0 absent from both"),
            Case((noncontiguous(t([[10**6, 3], [5, 10**6]])),), note="large counts, non-contiguous"),
        ]

    def random_case(generator, i):
        classes = 1 + i % 5
        confusion = torch.randint(0, 6, (classes, classes), generator=generator)
        confusion[:, i % classes] *= i % 2  # some classes never predicted
        if i % 3 == 0:
            absent = i % classes
            confusion[absent, :] = 0
            confusion[:, absent] = 0
        if confusion.sum() == 0:
            confusion[0, 0] = 1
        return Case((confusion,))

    mistakes = {
        "classes absent from both truth and prediction count as IoU 0: leave them out of the mean":
            _miou_absent_as_zero,
        "IoU divides by the true pixels only: TP / (TP + FN) is the per-class recall, IoU is "
        "TP / (TP + FP + FN)": _miou_recall,
        "the union counts the true positives twice: TP + FP + FN = row + column - TP":
            _miou_union_twice,
        "this is the pixel accuracy (trace / sum), not the mean IoU":
            lambda c: (c.diagonal().sum().double() / c.sum()).item(),
    }
    return Exercise("mean_iou", mean_iou, edge_cases, random_case, 100, mistakes)


def confusion_matrix_exercise() -> Exercise:
    def edge_cases():
        t = lambda values: torch.tensor(values, dtype=torch.int64)
        return [
            Case((t([0, 1, 1]), t([0, 1, 0]), 2), note="three pixels"),
            Case((t([[2, 2], [0, 1]]), t([[2, 1], [0, 1]]), 4), note="class 3 never seen (num_classes wins)"),
            Case((t([0, 1, 2]), t([0, 255, 2]), 3, 255), note="an ignored pixel"),
            Case((t([]), t([]), 2), note="no pixels"),
            Case((noncontiguous(t([[1, 0], [0, 1]])), t([[1, 1], [0, 0]]), 2), note="non-contiguous"),
        ]

    def random_case(generator, i):
        classes = 1 + i % 4
        shape = (1 + i % 3, 2 + i % 4, 1 + (i // 3) % 4)
        pred = torch.randint(0, classes, shape, generator=generator)
        target = torch.randint(0, classes, shape, generator=generator)
        if i % 2:
            target[torch.rand(shape, generator=generator) < 0.2] = 255
            return Case((pred, target, classes, 255))
        return Case((pred, target, classes))

    def transposed(pred, target, num_classes, ignore_index=None):
        return confusion_matrix(pred, target, num_classes, ignore_index).t()

    def counts_ignored(pred, target, num_classes, ignore_index=None):
        if ignore_index is not None:
            target = torch.where(target != ignore_index, target, pred)  # ignored pixels counted as right
        return confusion_matrix(pred, target, num_classes)

    def size_from_labels(pred, target, num_classes, ignore_index=None):
        out = confusion_matrix(pred, target, num_classes, ignore_index)
        seen = max(int(pred.max()) + 1 if pred.numel() else 0, 1)
        return out[:seen, :seen]

    mistakes = {
        "rows are the predictions: rows are the truth (entry [i, j] = true i predicted as j)": transposed,
        "pixels whose target is ignore_index are counted": counts_ignored,
        "the matrix is sized by the labels present, not by num_classes": size_from_labels,
    }
    return Exercise("confusion_matrix", confusion_matrix, edge_cases, random_case, 100, mistakes)


EXERCISES = (
    bilinear_exercise, max_unpool_exercise, conv_transpose2d_scatter_exercise, confusion_matrix_exercise,
    mean_iou_exercise,
)
