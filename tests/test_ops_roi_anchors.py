"""cvlib.ops.roi and cvlib.ops.anchors against torchvision: RoI Pool / Align on random boxes
(inside, outside, degenerate), gradients, anchors, anchor labels and sampling."""

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from cvlib import ops


def _rois(seed, n, num_images=2, extent=30.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=dtype) * extent - 5  # some start outside the map
    wh = torch.rand(n, 2, generator=g, dtype=dtype) * extent * 0.7
    wh[torch.rand(n, 2, generator=g) < 0.1] = 0  # degenerate boxes
    index = torch.randint(0, num_images, (n, 1), generator=g).to(dtype)
    return torch.cat([index, xy, xy + wh], 1)


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 30),
    output_size=st.sampled_from([1, 2, 7, (3, 5)]),
    spatial_scale=st.sampled_from([1.0, 0.5, 0.25, 0.8]),
    sampling_ratio=st.sampled_from([-1, 0, 1, 2, 3]),
    aligned=st.booleans(),
)
def test_roi_align_like_torchvision(seed, n, output_size, spatial_scale, sampling_ratio, aligned):
    x = torch.randn(2, 3, 12, 15, generator=torch.Generator().manual_seed(seed))
    rois = _rois(seed, n)
    ours = ops.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    ref = torchvision.ops.roi_align(x, rois, output_size, spatial_scale, sampling_ratio, aligned)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@given(
    seed=st.integers(0, 10_000),
    n=st.integers(0, 30),
    output_size=st.sampled_from([1, 2, 7, (3, 5)]),
    spatial_scale=st.sampled_from([1.0, 0.5, 0.25, 0.8]),
)
def test_roi_pool_like_torchvision(seed, n, output_size, spatial_scale):
    x = torch.randn(2, 3, 12, 15, generator=torch.Generator().manual_seed(seed))
    rois = _rois(seed, n)
    ours = ops.roi_pool(x, rois, output_size, spatial_scale)
    torch.testing.assert_close(ours, torchvision.ops.roi_pool(x, rois, output_size, spatial_scale))


def test_list_of_boxes_float64_and_non_contiguous():
    x = torch.randn(3, 4, 10, 10, dtype=torch.float64).transpose(2, 3)  # non-contiguous
    boxes = [
        torch.tensor([[1.0, 1.0, 6.0, 8.0]], dtype=torch.float64),
        torch.zeros(0, 4, dtype=torch.float64),
        torch.tensor([[0.0, 2.0, 9.0, 3.5], [2.2, 2.2, 2.2, 2.2]], dtype=torch.float64),
    ]
    for ours, ref in [
        (ops.roi_align(x, boxes, 3, 1.0, 2), torchvision.ops.roi_align(x, boxes, 3, 1.0, 2)),
        (ops.roi_pool(x, boxes, 3), torchvision.ops.roi_pool(x, boxes, 3)),
    ]:
        assert ours.dtype == torch.float64
        torch.testing.assert_close(ours, ref)


def test_empty_boxes():
    x = torch.randn(1, 2, 5, 5)
    assert ops.roi_align(x, torch.zeros(0, 5), 7).shape == (0, 2, 7, 7)
    assert ops.roi_pool(x, [torch.zeros(0, 4)], (2, 3)).shape == (0, 2, 2, 3)


def test_gradients():
    """Both are differentiable with respect to the features (float64 gradcheck)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 6, 7, dtype=torch.float64, generator=g, requires_grad=True)
    rois = torch.tensor([[0, 0.5, 0.7, 4.3, 5.1], [0, 1.0, 0.0, 6.0, 3.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ops.roi_align(t, rois, 2, 1.0, 2, True), (x,))
    assert torch.autograd.gradcheck(lambda t: ops.roi_pool(t, rois, 2), (x,))
    ours = torch.autograd.grad(ops.roi_pool(x, rois, 3).sum(), x)[0]
    ref = torch.autograd.grad(torchvision.ops.roi_pool(x, rois, 3).sum(), x)[0]
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: ops.roi_align(torch.rand(2, 3, 4), torch.zeros(0, 5), 2),
            r"input must be a float tensor \[N, C, H, W\]",
        ),
        (lambda: ops.roi_align(torch.rand(1, 3, 4, 4), torch.zeros(2, 4), 2), r"\[K, 5\]"),
        (lambda: ops.roi_pool(torch.rand(1, 3, 4, 4), torch.zeros(0, 5), 0), "output_size"),
        (lambda: ops.roi_pool(torch.rand(1, 3, 4, 4), torch.zeros(0, 5), 2, -1.0), "spatial_scale"),
        (lambda: ops.roi_pool(torch.rand(1, 3, 4, 4), torch.tensor([[1.0, 0, 0, 1, 1]]), 2), "batch indices"),
        (
            lambda: ops.roi_align(torch.rand(1, 3, 4, 4), [torch.zeros(1, 5)], 2),
            r"boxes\[0\] must have shape",
        ),
        (lambda: ops.roi_align(torch.rand(1, 3, 4, 4), "boxes", 2), "boxes must be"),
        (lambda: ops.roi_align(torch.rand(1, 3, 4, 4), torch.zeros(0, 5), 2, 1.0, 1.5), "sampling_ratio"),
    ],
)
def test_roi_bad_input(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


@pytest.mark.parametrize("feature, stride", [((8, 10), 8), ((5, 5), 16), ((3, 7), (4, 6))])
def test_anchors_like_torchvision(feature, stride):
    sizes, ratios = (16, 32, 64), (0.5, 1.0, 2.0)
    strides = (stride, stride) if isinstance(stride, int) else stride
    image = ImageList(
        torch.zeros(1, 3, feature[0] * strides[0], feature[1] * strides[1]),
        [(feature[0] * strides[0], feature[1] * strides[1])],
    )
    ref = AnchorGenerator((sizes,), (ratios,))(image, [torch.zeros(1, 1, *feature)])[0]
    ours = ops.generate_anchors(feature, stride, sizes, ratios)
    assert torch.equal(ours, ref) and ours.shape == (feature[0] * feature[1] * 9, 4)


def test_anchor_shapes():
    anchors = ops.generate_anchors((1, 1), 16, scales=(32,), aspect_ratios=(0.25, 1.0, 4.0))
    widths, heights = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    assert heights.tolist() == [16.0, 32.0, 64.0] and widths.tolist() == [64.0, 32.0, 16.0]


@given(seed=st.integers(0, 10_000), num_gt=st.integers(0, 5))
def test_label_anchors_like_torchvision_matcher(seed, num_gt):
    g = torch.Generator().manual_seed(seed)
    anchors = ops.generate_anchors((6, 6), 8, (8, 16, 32), (0.5, 1.0, 2.0))
    xy = torch.rand(num_gt, 2, generator=g) * 40
    gt = torch.cat([xy, xy + 4 + torch.rand(num_gt, 2, generator=g) * 20], 1)
    labels, matched = ops.label_anchors(anchors, gt)
    if num_gt == 0:
        assert (labels == 0).all()
        return
    ref = Matcher(0.7, 0.3, allow_low_quality_matches=True)(torchvision.ops.box_iou(gt, anchors))
    assert torch.equal(labels, torch.where(ref >= 0, 1, torch.where(ref == -1, 0, -1)))
    assert torch.equal(matched[ref >= 0], ref[ref >= 0])
    best = torchvision.ops.box_iou(gt, anchors).argmax(dim=1)
    assert (labels[best] == 1).all()  # every object has at least one positive anchor


def test_sample_anchors_like_torchvision():
    labels = torch.tensor([1] * 30 + [0] * 500 + [-1] * 70)[torch.randperm(600)]
    torch.manual_seed(5)
    pos_mask, neg_mask = BalancedPositiveNegativeSampler(64, 0.25)([labels])
    torch.manual_seed(5)
    pos, neg = ops.sample_anchors(labels, 64, 0.25)
    assert torch.equal(pos.sort().values, torch.nonzero(pos_mask[0]).flatten())
    assert torch.equal(neg.sort().values, torch.nonzero(neg_mask[0]).flatten())
    assert len(pos) == 16 and len(neg) == 48 and (labels[pos] == 1).all() and (labels[neg] == 0).all()
    few = ops.sample_anchors(torch.tensor([1, 0, 0, -1]), 256, 0.5)
    assert [len(t) for t in few] == [1, 2]


def test_anchor_bad_input():
    with pytest.raises(ValueError, match="stride"):
        ops.generate_anchors((4, 4), -8)
    with pytest.raises(ValueError, match="aspect_ratios"):
        ops.generate_anchors((4, 4), 8, (32,), ())
    with pytest.raises(ValueError, match="fg_iou"):
        ops.label_anchors(torch.zeros(1, 4), torch.zeros(1, 4), fg_iou=0.2, bg_iou=0.5)
    with pytest.raises(ValueError, match="labels"):
        ops.sample_anchors(torch.zeros(2, 2))
