"""Exercises on RoI Pool and RoI Align (notebooks 05 and 08).

The mistakes are knobs of one loop version of each op (one RoI, one bin, one sample point at a
time); with the default knobs the loops equal ``cvlib.ops.roi_pool`` and ``roi_align``
(tests/test_exercises.py checks it). ``cvlib.ops.reference`` has the loops to read; these
exist to be broken on purpose, one knob per classic mistake."""

from __future__ import annotations

import math
from functools import partial

import torch

from cvlib.exercises.core import Case, Exercise, noncontiguous
from cvlib.ops import roi_align, roi_pool


def _pair(size):
    return (size, size) if isinstance(size, int) else tuple(size)


def _round_half_away(x: float) -> int:
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def roi_pool_variant(input, boxes, output_size, spatial_scale=1.0, *, rounding=_round_half_away,
                  inclusive=True, reduce="max", overlapping_bins=True, use_scale=True):
    """RoI Pool, one bin at a time; the keyword-only knobs make the classic mistakes."""
    ph, pw = _pair(output_size)
    _, channels, height, width = input.shape
    out = input.new_zeros(len(boxes), channels, ph, pw)
    scale = spatial_scale if use_scale else 1.0
    for k, (b, *corners) in enumerate(boxes.tolist()):
        x1, y1, x2, y2 = (rounding(c * scale) for c in corners)
        roi_w, roi_h = max(x2 - x1 + inclusive, 1), max(y2 - y1 + inclusive, 1)
        end = math.ceil if overlapping_bins else math.floor
        for p in range(ph):
            r0 = min(max(math.floor(p * (roi_h / ph)) + y1, 0), height)
            r1 = min(max(end((p + 1) * (roi_h / ph)) + y1, 0), height)
            for q in range(pw):
                c0 = min(max(math.floor(q * (roi_w / pw)) + x1, 0), width)
                c1 = min(max(end((q + 1) * (roi_w / pw)) + x1, 0), width)
                if r1 > r0 and c1 > c0:
                    region = input[int(b), :, r0:r1, c0:c1].flatten(1)
                    out[k, :, p, q] = region.amax(1) if reduce == "max" else region.mean(1)
    return out


def _bilinear_point(feature, y, x):
    """Bilinear interpolation of ``feature`` ``[C, H, W]`` at ``(y, x)``; 0 beyond one cell outside."""
    height, width = feature.shape[1:]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return feature.new_zeros(feature.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    if y0 >= height - 1:
        y0, y = height - 1, float(height - 1)
    if x0 >= width - 1:
        x0, x = width - 1, float(width - 1)
    ly, lx = y - y0, x - x0
    return ((1 - ly) * (1 - lx) * feature[:, y0, x0] + (1 - ly) * lx * feature[:, y0, x1]
            + ly * (1 - lx) * feature[:, y1, x0] + ly * lx * feature[:, y1, x1])


def roi_align_variant(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False, *,
                   shift=True, min_size=True, adaptive=math.ceil, reduce="mean", quantize=False):
    """RoI Align, one sample point at a time; the keyword-only knobs make the classic mistakes."""
    ph, pw = _pair(output_size)
    out = input.new_zeros(len(boxes), input.shape[1], ph, pw)
    offset = 0.5 if aligned and shift else 0.0
    for k, (b, *corners) in enumerate(boxes.tolist()):
        x1, y1, x2, y2 = (c * spatial_scale - offset for c in corners)
        if quantize:
            x1, y1, x2, y2 = (_round_half_away(c) for c in (x1, y1, x2, y2))
        roi_w, roi_h = x2 - x1, y2 - y1
        if not aligned and min_size:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        grid_h = sampling_ratio if sampling_ratio > 0 else adaptive(roi_h / ph)
        grid_w = sampling_ratio if sampling_ratio > 0 else adaptive(roi_w / pw)
        for p in range(ph):
            for q in range(pw):
                points = [_bilinear_point(input[int(b)], y1 + (p + (i + 0.5) / grid_h) * roi_h / ph,
                                          x1 + (q + (j + 0.5) / grid_w) * roi_w / pw)
                          for i in range(grid_h) for j in range(grid_w)]
                if not points:
                    continue
                stacked = torch.stack(points)
                out[k, :, p, q] = stacked.amax(0) if reduce == "max" else stacked.sum(0) / max(len(points), 1)
    return out


def _rois(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 5)


def _feature(generator_seed: int = 0, shape=(1, 2, 6, 6)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(generator_seed), dtype=torch.float64)


def _random_rois(generator, k, images, height, width, scale):
    """``k`` RoIs ``[k, 5]`` in image pixels, some reaching past the map's border."""
    extent = torch.tensor([width, height], dtype=torch.float64) / scale
    corner = torch.rand(k, 2, generator=generator, dtype=torch.float64) * extent
    size = torch.rand(k, 2, generator=generator, dtype=torch.float64) * extent / 2
    index = torch.randint(images, (k, 1), generator=generator).double()
    return torch.cat([index, corner - 1, corner + size - 1], dim=1)


def _random_roi_case(generator, i, align: bool) -> Case:
    images, channels = 1 + i % 2, 1 + (i // 2) % 2
    height, width = 4 + i % 4, 4 + (i // 3) % 4
    scale = (1.0, 0.5, 0.25)[i % 3]
    features = torch.randn(images, channels, height, width, generator=generator, dtype=torch.float64)
    rois = _random_rois(generator, i % 5, images, height, width, scale)
    output_size = (1, 2, 3, (2, 3))[i % 4]
    args = (features, rois, output_size, scale)
    if align:
        args += ((-1, 0, 1, 2)[(i // 4) % 4], i % 5 in (1, 3))
    return Case(args, rows=((1,),), grad=(0,))


def roi_pool_exercise() -> Exercise:
    def edge_cases():
        x = _feature()
        return [
            Case((x, _rois([]), 2), note="no RoIs"),
            Case((x, _rois([[0, 0, 0, 5, 5]]), 1), note="the whole map in one bin"),
            Case((x, _rois([[0, 1.5, 0.5, 3.5, 2.5]]), 2), note="corners at .5 (rounded half away from 0)"),
            Case((x, _rois([[0, 2, 2, 2, 2]]), 2), note="a one-cell RoI (x2 is included)"),
            Case((x, _rois([[0, 4, 4, 9, 9]]), 3), note="a RoI past the border (empty bins give 0)"),
            Case((x, _rois([[0, 2, 2, 9, 7]]), (2, 3), 0.5), note="spatial_scale 0.5, output 2 x 3"),
            Case((noncontiguous(x.float()), _rois([[0, 1, 0, 4, 3], [0, 0, 0, 2, 5]]), 2),
                 note="float32, non-contiguous input"),
        ]

    mistakes = {
        "the box is floored to the grid: RoI Pool rounds it (half away from 0)":
            partial(roi_pool_variant, rounding=math.floor),
        "the RoI's last row and column are left out: it spans x2 - x1 + 1 cells (x2 included)":
            partial(roi_pool_variant, inclusive=False),
        "the bins are averaged: RoI Pool takes the max": partial(roi_pool_variant, reduce="mean"),
        "spatial_scale is ignored: boxes are in image pixels, scale them to the feature map":
            partial(roi_pool_variant, use_scale=False),
        "bin p ends at floor((p + 1) h / PH): it ends at ceil(...) (bins may overlap by a cell)":
            partial(roi_pool_variant, overlapping_bins=False),
    }
    return Exercise("roi_pool", roi_pool, edge_cases, partial(_random_roi_case, align=False), 90, mistakes)


def roi_align_exercise() -> Exercise:
    def edge_cases():
        x = _feature()
        return [
            Case((x, _rois([]), 2), note="no RoIs"),
            Case((x, _rois([[0, 0, 0, 6, 6]]), 1, 1.0, 2), note="the whole map, 2 x 2 samples"),
            Case((x, _rois([[0, 1, 1, 4, 3]]), 2, 1.0, -1, True), note="aligned=True (half-pixel shift)"),
            Case((x, _rois([[0, 2.2, 2.2, 2.4, 2.4]]), 2),
                 note="a tiny box, aligned=False (at least one cell)"),
            Case((x, _rois([[0, 1.3, 0.6, 4.7, 3.1]]), 2, 1.0, 0), note="fractional corners, adaptive grid"),
            Case((x, _rois([[0, -3, -3, 2, 8]]), 3, 1.0, 2), note="a RoI reaching past the border"),
            Case((x, _rois([[0, 2, 2, 11, 7]]), (2, 3), 0.5, -1, True),
                 note="spatial_scale 0.5, output 2 x 3"),
            Case((noncontiguous(x.float()), _rois([[0, 1, 0, 4.5, 3], [0, 0, 0, 2, 5]]), 2),
                 note="float32, non-contiguous input"),
        ]

    mistakes = {
        "aligned=True does not shift the box by half a pixel (-0.5 after scaling)":
            partial(roi_align_variant, shift=False),
        "the box is rounded to the grid: that is RoI Pool's quantisation, RoI Align keeps it exact":
            partial(roi_align_variant, quantize=True),
        "the sample points are max-pooled: RoI Align averages them": partial(roi_align_variant, reduce="max"),
        "the adaptive grid (sampling_ratio <= 0) has one point per bin: it has ceil(roi_size / output_size)":
            partial(roi_align_variant, adaptive=lambda size: 1),
        "with aligned=False a box is not made at least one cell wide and high":
            partial(roi_align_variant, min_size=False),
    }
    return Exercise("roi_align", roi_align, edge_cases, partial(_random_roi_case, align=True), 90, mistakes)


EXERCISES = (
    roi_pool_exercise, roi_align_exercise,
)
