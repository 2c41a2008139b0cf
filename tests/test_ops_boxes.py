"""cvlib.ops.boxes against torchvision.ops on random and edge-case boxes: formats, areas, IoU,
generalized IoU, R-CNN deltas, clipping, removing small boxes, bad input."""

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from torchvision.models.detection._utils import BoxCoder

from cvlib import ops


@st.composite
def box_sets(draw, min_n=0, max_n=40, dtype=None):
    """Random xyxy boxes: some outside the image, some of zero width or height, some equal."""
    n = draw(st.integers(min_n, max_n))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    dtype = dtype or draw(st.sampled_from([torch.float32, torch.float64]))
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * 120 - 20  # some start outside [0, 100]
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * 50
    wh[torch.rand(n, 2, generator=g) < 0.1] = 0  # zero-area boxes
    boxes = torch.cat([xy, xy + wh], 1)
    if n > 1 and draw(st.booleans()):
        boxes[1] = boxes[0]  # duplicates
    return boxes.round() if draw(st.booleans()) else boxes  # integer-valued: exact ties in IoU


def _close(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    torch.testing.assert_close(a, b, equal_nan=True)


@given(box_sets(), st.sampled_from(["xyxy", "xywh", "cxcywh"]), st.sampled_from(["xyxy", "xywh", "cxcywh"]))
def test_box_convert(boxes, in_fmt, out_fmt):
    _close(ops.box_convert(boxes, in_fmt, out_fmt), torchvision.ops.box_convert(boxes, in_fmt, out_fmt))


@given(box_sets(), box_sets())
def test_area_iou_giou(boxes1, boxes2):
    boxes2 = boxes2.to(boxes1.dtype)
    _close(ops.box_area(boxes1), torchvision.ops.box_area(boxes1))
    _close(ops.box_iou(boxes1, boxes2), torchvision.ops.box_iou(boxes1, boxes2))
    positive = (boxes1[:, 2:] > boxes1[:, :2]).all(1)  # GIoU: torchvision needs non-degenerate
    p1, p2 = boxes1[positive], boxes2[(boxes2[:, 2:] > boxes2[:, :2]).all(1)]
    _close(ops.generalized_box_iou(p1, p2), torchvision.ops.generalized_box_iou(p1, p2))


@given(box_sets(), st.sampled_from([(100, 100), (50, 80), (1, 1), 30]))
def test_clip_boxes_to_image_like_torchvision(boxes, size):
    expected = torchvision.ops.clip_boxes_to_image(boxes, (size, size) if isinstance(size, int) else size)
    _close(ops.clip_boxes_to_image(boxes, size), expected)


def test_clip_boxes_to_image_keeps_leading_dimensions():
    boxes = torch.tensor([[-5.0, 2, 120, 40], [10, -3, 20, 200]]).expand(3, 2, 4)
    clipped = ops.clip_boxes_to_image(boxes, (100, 50))
    assert clipped.shape == (3, 2, 4)
    _close(clipped[1], torch.tensor([[0.0, 2, 50, 40], [10, 0, 20, 100]]))


@given(box_sets(), st.sampled_from([0.0, 1e-3, 1e-2, 1.0, 10.0]))
def test_remove_small_boxes_like_torchvision(boxes, min_size):
    _close(ops.remove_small_boxes(boxes, min_size), torchvision.ops.remove_small_boxes(boxes, min_size))


def test_non_contiguous_input():
    boxes = torch.rand(4, 10).cumsum(0).t()  # [10, 4] transposed view: x1 <= y1 <= x2 <= y2
    assert not boxes.is_contiguous()
    _close(ops.box_iou(boxes, boxes), torchvision.ops.box_iou(boxes, boxes))


@given(box_sets(min_n=1), st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]))
def test_encode_decode_like_torchvision(boxes, weights):
    boxes = boxes[(boxes[:, 2:] > boxes[:, :2] + 1).all(1)]
    references = boxes.flip(0) + 1.5
    coder = BoxCoder(weights)
    deltas = ops.encode_boxes(boxes, references, weights)
    _close(deltas, coder.encode_single(boxes, references))
    _close(ops.decode_boxes(deltas, references, weights), coder.decode_single(deltas, references))
    torch.testing.assert_close(ops.decode_boxes(deltas, references, weights), boxes, rtol=1e-4, atol=1e-3)


def test_decode_clamps_huge_deltas():
    references = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    decoded = ops.decode_boxes(torch.tensor([[0.0, 0.0, 100.0, 100.0]]), references)
    assert torch.isfinite(decoded).all() and decoded[0, 2] - decoded[0, 0] == pytest.approx(
        10 * 62.5, rel=1e-5
    )


def test_lecture_delta_example():
    """A proposal (cx 50, cy 50, 20 x 40) and a gt (cx 55, cy 40, 40 x 40): tx = 5/20, ty =
    -10/40, tw = log 2, th = 0."""
    proposal = torch.tensor([[40.0, 30.0, 60.0, 70.0]])
    gt = torch.tensor([[35.0, 20.0, 75.0, 60.0]])
    deltas = ops.encode_boxes(gt, proposal)
    torch.testing.assert_close(deltas, torch.tensor([[0.25, -0.25, 0.6931472, 0.0]]))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: ops.box_iou(torch.rand(3, 5), torch.rand(2, 4)), r"boxes1 must have shape \[N, 4\]"),
        (lambda: ops.box_iou(torch.rand(3, 4).cumsum(1), [[0, 0, 1, 1]]), "boxes2 must be a torch.Tensor"),
        (lambda: ops.box_area(torch.tensor([[5.0, 0, 1, 1]])), "x1 <= x2"),
        (lambda: ops.box_area(torch.tensor([[0, 0, 1, 1]])), "floating point"),
        (lambda: ops.box_area(torch.tensor([[0, 0, float("nan"), 1]])), "NaN"),
        (lambda: ops.box_convert(torch.rand(2, 4), "xyxy", "yxyx"), "out_fmt"),
        (lambda: ops.box_area(torch.zeros(4)), r"boxes must have shape \[N, 4\], got \(4,\)"),
        (lambda: ops.box_convert("boxes", "xyxy", "xywh"), "boxes must be a torch.Tensor"),
        (lambda: ops.generalized_box_iou(torch.tensor([[0.0, 3, 1, 1]]), torch.zeros(0, 4)), "boxes1"),
        (lambda: ops.encode_boxes(torch.rand(3, 4).cumsum(1), torch.rand(2, 4).cumsum(1)), "same shape"),
        (lambda: ops.decode_boxes(torch.rand(2, 4), torch.rand(2, 4).cumsum(1), (1, 1, 0, 1)), "weights"),
        (lambda: ops.clip_boxes_to_image(torch.rand(2, 4), (10, 0)), "size"),
        (lambda: ops.remove_small_boxes(torch.rand(2, 4), -1.0), "min_size"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
