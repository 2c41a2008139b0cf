"""cvlib.ops.reference (the lecture's loops) gives the same results as the fast cvlib.ops and as
torchvision.ops: random boxes (outside the image, zero-area, duplicated), equal scores, the
thresholds of test_ops_nms; random RoIs (inside, partly or wholly off the map, zero-area),
scales, sampling ratios, aligned, float32 and float64; empty inputs, one box, no channels.
nms_steps equals the plain loop over an IoU table; bilinear_sample equals torchvision's RoI
Align at single points, on and off the map."""

import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ops_boxes import box_sets
from test_ops_nms import THRESHOLDS, _scores
from test_ops_roi import _rois

from cvlib import ops
from cvlib.ops import reference


@given(box_sets(), st.sampled_from(THRESHOLDS), st.booleans())
def test_nms_loop_equals_nms(boxes, iou_threshold, ties):
    scores = _scores(len(boxes), boxes.dtype, len(boxes), ties)
    keep = reference.nms_loop(boxes, scores, iou_threshold)
    assert keep.dtype == torch.int64
    assert torch.equal(keep, ops.nms(boxes, scores, iou_threshold))
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, iou_threshold))


@settings(max_examples=25)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 12),
    output_size=st.sampled_from([1, 2, 7, (3, 5)]),
    spatial_scale=st.sampled_from([1.0, 0.5, 0.25, 0.8, 0.1]),
)
def test_roi_pool_loop_equals_roi_pool(seed, n, output_size, spatial_scale):
    x = torch.randn(2, 3, 12, 15, generator=torch.Generator().manual_seed(seed))
    rois = _rois(seed, n)
    ours = reference.roi_pool_loop(x, rois, output_size, spatial_scale)
    torch.testing.assert_close(ours, ops.roi_pool(x, rois, output_size, spatial_scale))
    torch.testing.assert_close(ours, torchvision.ops.roi_pool(x, rois, output_size, spatial_scale))


@settings(max_examples=25)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 12),
    output_size=st.sampled_from([1, 2, 7, (3, 5)]),
    spatial_scale=st.sampled_from([1.0, 0.5, 0.25, 0.8, 0.1]),
    sampling_ratio=st.sampled_from([-1, 0, 1, 2, 3]),
    aligned=st.booleans(),
)
def test_roi_align_loop_equals_roi_align(seed, n, output_size, spatial_scale, sampling_ratio, aligned):
    x = torch.randn(2, 3, 12, 15, generator=torch.Generator().manual_seed(seed))
    rois = _rois(seed, n)
    ours = reference.roi_align_loop(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    args = (x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    torch.testing.assert_close(ours, ops.roi_align(*args), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, torchvision.ops.roi_align(*args), rtol=1e-5, atol=1e-5)


def test_roi_loops_have_gradients_like_the_fast_ops():
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    rois = torch.tensor([[0, 0.5, 1.2, 6.3, 5.0], [0, 2.0, 2.0, 2.0, 7.5]])
    for loop, fast in [(reference.roi_align_loop, ops.roi_align), (reference.roi_pool_loop, ops.roi_pool)]:
        (grad_loop,) = torch.autograd.grad(loop(x, rois, 3, 0.9).square().sum(), x)
        (grad_fast,) = torch.autograd.grad(fast(x, rois, 3, 0.9).square().sum(), x)
        torch.testing.assert_close(grad_loop, grad_fast, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loop", [reference.roi_pool_loop, reference.roi_align_loop])
def test_roi_loops_on_no_rois(loop):
    assert loop(torch.rand(1, 4, 6, 6), torch.zeros(0, 5), (2, 3)).shape == (0, 4, 2, 3)


def _plain_nms_steps(boxes, scores, iou_threshold):
    """The lecture's loop with nothing for speed: sort (stable), keep the best left, remove the
    boxes left that overlap it (IoU compared in double, as torchvision), repeat."""
    iou = ops.box_iou(boxes, boxes).double()
    left, steps = sorted(range(len(boxes)), key=lambda i: -scores[i]), []
    while left:
        best, rest = left[0], left[1:]
        steps.append((best, [i for i in rest if iou[best, i] > iou_threshold]))
        left = [i for i in rest if not iou[best, i] > iou_threshold]
    return steps


@given(box_sets(), st.sampled_from(THRESHOLDS), st.booleans())
def test_nms_steps_equal_the_plain_loop(boxes, iou_threshold, ties):
    """Every step, kept box and removed boxes in their order (by score), as the plain loop."""
    scores = _scores(len(boxes), boxes.dtype, len(boxes), ties)
    steps = reference.nms_steps(boxes, scores, iou_threshold)
    assert all(removed.dtype == torch.int64 for _, removed in steps)
    assert [(best, removed.tolist()) for best, removed in steps] == _plain_nms_steps(
        boxes, scores.tolist(), iou_threshold)


def _roi_sets(seed, n, extent, dtype):
    """``n`` RoIs on 2 images, corners anywhere in ``[-extent, 2 * extent]`` pixels: on a 12 x 15
    map many are partly or wholly off it; one in ten has zero width or height."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * 3 * extent - extent
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * extent
    wh[torch.rand(n, 2, generator=g) < 0.1] = 0
    return torch.cat([torch.randint(0, 2, (n, 1), generator=g).to(dtype), xy, xy + wh], 1)


ROI_CASES = dict(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 8),
    extent=st.sampled_from([4.0, 15.0, 60.0]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    output_size=st.sampled_from([1, 3, (2, 5)]),
    spatial_scale=st.sampled_from([1.0, 0.5, 0.25]),
)


@settings(max_examples=25)
@given(**ROI_CASES)
def test_roi_pool_loop_off_the_map(seed, n, extent, dtype, output_size, spatial_scale):
    x = torch.randn(2, 3, 12, 15, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    rois = _roi_sets(seed, n, extent, dtype)
    ours = reference.roi_pool_loop(x, rois, output_size, spatial_scale)
    assert torch.equal(ours, torchvision.ops.roi_pool(x, rois, output_size, spatial_scale))  # maxima: exact


@settings(max_examples=25)
@given(**ROI_CASES, sampling_ratio=st.sampled_from([-1, 0, 1, 2]), aligned=st.booleans())
def test_roi_align_loop_off_the_map(seed, n, extent, dtype, output_size, spatial_scale, sampling_ratio,
                                    aligned):
    x = torch.randn(2, 3, 12, 15, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    rois = _roi_sets(seed, n, extent, dtype)
    ours = reference.roi_align_loop(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    ref = torchvision.ops.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), p=st.integers(0, 6), q=st.integers(0, 6))
def test_bilinear_sample_equals_roi_align_at_points(seed, p, q):
    """A point ``(y, x)`` is a one-bin, one-sample aligned RoI centred on it. Points anywhere
    from 3 cells before the map to 3 cells after it, and on the map's edges and the limits of
    'just outside' (-1 and the size)."""
    g = torch.Generator().manual_seed(seed)
    feature = torch.randn(2, 5, 7, generator=g)
    ys = torch.cat([torch.rand(p, generator=g) * 11 - 3, torch.tensor([-1.5, -1.0, 0.0, 4.0, 5.0, 5.5])])
    xs = torch.cat([torch.rand(q, generator=g) * 13 - 3, torch.tensor([-1.0, 0.25, 6.0, 7.0, 7.25])])
    centres = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2) + 0.5  # (y, x)
    rois = torch.cat([torch.zeros(len(centres), 1), centres.flip(1) - 0.25, centres.flip(1) + 0.25], 1)
    ref = torchvision.ops.roi_align(feature[None], rois, 1, 1.0, 1, aligned=True)  # [P * Q, C, 1, 1]
    ours = reference.bilinear_sample(feature, ys, xs)  # [C, P, Q]
    torch.testing.assert_close(ours, ref.view(len(ys), len(xs), -1).permute(2, 0, 1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loop", [reference.roi_pool_loop, reference.roi_align_loop])
def test_roi_loops_on_no_channels(loop):
    rois = torch.tensor([[0, 1.0, 1.0, 4.0, 3.0]])
    assert torch.equal(loop(torch.rand(1, 0, 6, 6), rois, 2), torch.zeros(1, 0, 2, 2))


def test_nms_loop_on_no_boxes_and_one_box():
    assert reference.nms_loop(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    assert reference.nms_loop(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([0.3]), 0.5).tolist() == [0]


def test_roi_pool_bins_and_roi_align_points_of_the_lecture():
    """A box from pixel 20 to 70 on a stride-8 map of 16 cells, 4 bins. RoI Pool rounds it to cells
    3..9 (2.5 rounds away from 0; 8.75 to 9), 7 cells in 4 overlapping rounded bins; RoI Align keeps
    2.5 .. 8.75, 4 bins of 1.5625 cells, 2 points each at 1/4 and 3/4 of its bin. (The loops that
    use them equal torchvision's roi_pool / roi_align in the tests above.)"""
    assert reference.roi_pool_bins(20, 70, 4, 1 / 8, 16) == [(3, 5), (4, 7), (6, 9), (8, 10)]
    assert reference.roi_pool_bins(100, 130, 2, 1 / 8, 16) == [(13, 15), (15, 16)]  # 17 clipped to the map
    points = reference.roi_align_points(20, 70, 4, 2, 1 / 8)
    expected = 2.5 + 1.5625 * torch.tensor([0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75])
    torch.testing.assert_close(points, expected)
    assert len(reference.roi_align_points(20, 70, 4, -1, 1 / 8)) == 4 * 2  # ceil(1.5625) points per bin
    assert len(reference.roi_align_points(20, 20, 4, -1, 1 / 8, aligned=True)) == 0  # an empty box
