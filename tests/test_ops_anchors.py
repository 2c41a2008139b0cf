"""cvlib.ops.anchors against torchvision's AnchorGenerator (one feature map), Matcher(0.7, 0.3,
allow_low_quality_matches=True) and BalancedPositiveNegativeSampler."""

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList

from cvlib import ops


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


def test_empty_anchors_and_ties():
    labels, matched = ops.label_anchors(torch.zeros(0, 4), torch.tensor([[0.0, 0, 4, 4]]))
    assert labels.shape == matched.shape == (0,)
    assert [len(t) for t in ops.sample_anchors(labels)] == [0, 0]
    # two anchors equally best for one gt: both positive (torchvision's low-quality matches)
    anchors = torch.tensor([[0.0, 0, 4, 4], [4, 0, 8, 4], [20, 20, 30, 30]])
    labels, matched = ops.label_anchors(anchors, torch.tensor([[2.0, 0, 6, 4]]))
    assert labels.tolist() == [1, 1, 0] and matched.tolist() == [0, 0, 0]


def test_anchor_bad_input():
    with pytest.raises(ValueError, match="stride"):
        ops.generate_anchors((4, 4), -8)
    with pytest.raises(ValueError, match="aspect_ratios"):
        ops.generate_anchors((4, 4), 8, (32,), ())
    with pytest.raises(ValueError, match="fg_iou"):
        ops.label_anchors(torch.zeros(1, 4), torch.zeros(1, 4), fg_iou=0.2, bg_iou=0.5)
    with pytest.raises(ValueError, match="labels"):
        ops.sample_anchors(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="feature_size"):
        ops.generate_anchors((4, -1), 8)
    with pytest.raises(ValueError, match="scales"):
        ops.generate_anchors((4, 4), 8, (-32,))
    with pytest.raises(ValueError, match="gt_boxes"):
        ops.label_anchors(torch.zeros(1, 4), torch.tensor([[0.0, 0, float("nan"), 1]]))
    with pytest.raises(TypeError, match="anchors must be a torch.Tensor"):
        ops.label_anchors([[0, 0, 1, 1]], torch.zeros(1, 4))
    with pytest.raises(TypeError, match="dtype must be a floating point torch.dtype"):
        ops.generate_anchors((4, 4), 8, dtype=torch.int64)  # a survivor of bench/mutation.py
    for bad in (1.5, -0.1):  # an IoU threshold outside [0, 1] (a survivor of bench/mutation.py)
        with pytest.raises(ValueError, match="fg_iou"):
            ops.label_anchors(torch.zeros(1, 4), torch.zeros(1, 4), fg_iou=bad, bg_iou=0.0)


def test_shape_iou_by_hand():
    from cvlib.ops.anchors import shape_iou

    iou = shape_iou(torch.tensor([[10.0, 10], [20, 5]]), torch.tensor([[10.0, 10], [5, 20]]))
    expected = torch.tensor([[1.0, 50 / 150], [50 / 150, 25 / 175]])
    torch.testing.assert_close(iou, expected)


def test_kmeans_anchors_find_the_shapes_of_clustered_boxes():
    """Boxes of three shapes (tall, wide, large square) with 10% noise: k = 3 finds them, and
    its anchors fit the boxes better (mean best IoU) than k = 1 or three square anchors."""
    from cvlib.ops.anchors import kmeans_anchors, shape_iou

    g = torch.Generator().manual_seed(0)
    shapes = torch.tensor([[8.0, 24], [30, 9], [60, 60]])
    sizes = shapes[torch.randint(0, 3, (300,), generator=g)] * (1 + 0.1 * torch.randn(300, 2, generator=g))
    xy = torch.rand(300, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + sizes], 1)
    anchors = kmeans_anchors(boxes, 3)
    assert anchors.shape == (3, 2)
    assert torch.allclose(anchors, shapes, rtol=0.1)  # sorted by area: tall, wide, large
    fit = lambda a: shape_iou(sizes, a).max(1).values.mean()
    squares = torch.tensor([[10.0, 10], [20, 20], [60, 60]])
    assert fit(anchors) > fit(kmeans_anchors(boxes, 1)) + 0.2 and fit(anchors) > fit(squares) + 0.1
    assert torch.equal(kmeans_anchors(boxes, 3, seed=0), anchors)
    with pytest.raises(ValueError, match="at least k"):
        kmeans_anchors(boxes[:2], 3)
