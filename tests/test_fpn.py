"""cvlib.models.fpn, cvlib.ops.roi.roi_levels / multiscale_roi_align, cvlib.ops.anchors.pyramid_anchors
and the RPN on a pyramid against torchvision's FeaturePyramidNetwork, MultiScaleRoIAlign (and its
level mapper), AnchorGenerator and RegionProposalNetwork; Faster R-CNN on a pyramid learns."""

from collections import OrderedDict

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from model_checks import check_eval_contract, check_trains_on_empty_images, totals, train_steps
from torchvision.ops import FeaturePyramidNetwork as TorchvisionFPN
from torchvision.ops.poolers import LevelMapper

from cvlib.data import ShapesDataset, collate_detection
from cvlib.models.fpn import FeaturePyramidNetwork, FPNBackbone, MultiScaleRoIAlign, build_fpn_faster_rcnn
from cvlib.models.rpn import RegionProposalNetwork
from cvlib.ops.anchors import pyramid_anchors
from cvlib.ops.roi import multiscale_roi_align, roi_levels


@pytest.mark.parametrize("in_channels, sizes", [([8, 16, 32], [(32, 40), (16, 20), (8, 10)]),
                                                ([4, 4], [(15, 17), (8, 9)]),  # odd sizes: nearest, not x2
                                                ([6], [(5, 5)])])
def test_fpn_equals_torchvision_with_the_same_weights(in_channels, sizes):
    torch.manual_seed(0)
    theirs = TorchvisionFPN(in_channels, 12)
    ours = FeaturePyramidNetwork.from_torchvision(theirs)
    features = [torch.randn(2, c, h, w) for c, (h, w) in zip(in_channels, sizes)]
    expected = theirs(OrderedDict((str(i), f) for i, f in enumerate(features)))
    got = ours(features)
    assert [p.shape for p in got] == [(2, 12, h, w) for h, w in sizes]
    for p, q in zip(got, expected.values()):
        torch.testing.assert_close(p, q)


def test_fpn_top_down_carries_coarse_information_to_fine_levels():
    """Changing only the coarsest input changes every output level (the top-down path)."""
    torch.manual_seed(0)
    fpn = FeaturePyramidNetwork([3, 5], 4)
    fine, coarse = torch.randn(1, 3, 8, 8), torch.randn(1, 5, 4, 4)
    before = fpn([fine, coarse])
    after = fpn([fine, coarse + 1])
    assert not torch.allclose(before[0], after[0]) and not torch.allclose(before[1], after[1])


def test_fpn_rejects_bad_input():
    fpn = FeaturePyramidNetwork([3, 5], 4)
    with pytest.raises(ValueError, match="features must hold 2"):
        fpn([torch.randn(1, 3, 8, 8)])
    with pytest.raises(ValueError, match=r"features\[1\]"):
        fpn([torch.randn(1, 3, 8, 8), torch.randn(1, 4, 4, 4)])
    with pytest.raises(ValueError, match="in_channels"):
        FeaturePyramidNetwork([3, 0], 4)


@given(seed=st.integers(0, 10_000), k_min=st.integers(1, 3), span=st.integers(0, 3))
def test_roi_levels_equal_torchvisions_level_mapper(seed, k_min, span):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(30, 2, generator=g) * 500
    wh = torch.exp(torch.rand(30, 2, generator=g) * 8)  # 1 to 3,000 pixels
    boxes = torch.cat([xy, xy + wh], 1)
    boxes[:4, 2:] = boxes[:4, :2] + torch.tensor([[224.0], [112.0], [448.0], [56.0]])  # exact powers of two
    expected = LevelMapper(k_min, k_min + span)([boxes])
    assert torch.equal(roi_levels(boxes, k_min, k_min + span), expected)


def test_roi_levels_of_the_lecture():
    boxes = torch.tensor([[0.0, 0, 224, 224], [0, 0, 112, 112], [0, 0, 100, 100], [0, 0, 1000, 1000]])
    assert roi_levels(boxes, 2, 5).tolist() == [2, 1, 0, 3]  # levels 4, 3, 2 (clamped from 2.x), 5
    with pytest.raises(ValueError, match="k_min"):
        roi_levels(boxes, 5, 2)


# ---------------------------------------------------------------------------------------------
# Anchors per level, RoIs pooled from their level, the RPN on a pyramid: against torchvision


@given(seed=st.integers(0, 10_000), num_levels=st.integers(1, 3), first=st.sampled_from([2, 4]),
       per_level=st.integers(1, 2))
def test_pyramid_anchors_equal_torchvisions_anchor_generator(seed, num_levels, first, per_level):
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    g = torch.Generator().manual_seed(seed)
    strides = [first * 2**i for i in range(num_levels)]
    scales = [tuple(float(v) for v in (torch.rand(per_level, generator=g) * 60 + 2).round()) for _ in strides]
    sizes = [(64 // s, 48 // s) for s in strides]
    features = [torch.zeros(1, 1, h, w) for h, w in sizes]
    generator = AnchorGenerator(tuple(scales), ((0.5, 1.0, 2.0),) * num_levels)
    expected = generator(ImageList(torch.zeros(1, 3, 64, 48), [(64, 48)]), features)[0]
    assert torch.equal(pyramid_anchors(sizes, strides, scales), expected)


@given(seed=st.integers(0, 10_000), num_levels=st.integers(1, 3),
       canonical=st.sampled_from([(224.0, 4), (32.0, 3), (16.0, 2)]),
       sampling_ratio=st.sampled_from([-1, 1, 2]))
def test_multiscale_roi_align_equals_torchvision(seed, num_levels, canonical, sampling_ratio):
    """Each RoI pooled from its level equals torchvision's MultiScaleRoIAlign, on boxes from 1 to
    90 pixels (every level used), two images."""
    from torchvision.ops import MultiScaleRoIAlign as TorchvisionMultiScale

    g = torch.Generator().manual_seed(seed)
    strides = [4 * 2**i for i in range(num_levels)]
    features = [torch.randn(2, 3, 64 // s, 96 // s, generator=g) for s in strides]
    xy = torch.rand(30, 2, generator=g) * torch.tensor([90.0, 60.0])
    boxes = torch.cat([xy, xy + torch.exp(torch.rand(30, 2, generator=g) * 4.5)], 1)
    per_image = [boxes[:18], boxes[18:]]
    pool = TorchvisionMultiScale([str(i) for i in range(num_levels)], 5, sampling_ratio,
                                 canonical_scale=canonical[0], canonical_level=canonical[1])
    expected = pool(OrderedDict((str(i), f) for i, f in enumerate(features)), per_image, [(64, 96)] * 2)
    ours = multiscale_roi_align(features, per_image, 5, [1 / s for s in strides], sampling_ratio, *canonical)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    module = MultiScaleRoIAlign(strides, 5, max(sampling_ratio, 1), *canonical)
    assert module(features, per_image).shape == (30, 3, 5, 5)


def test_multiscale_roi_align_of_one_level_is_roi_align_and_empty_is_empty():
    from cvlib.ops import roi_align

    feature = torch.randn(1, 2, 8, 8)
    boxes = [torch.tensor([[1.0, 2.0, 30.0, 20.0], [0.0, 0.0, 4.0, 4.0]])]
    one_level = multiscale_roi_align([feature], boxes, 3, [1 / 8], 2)
    assert torch.equal(one_level, roi_align(feature, boxes, 3, 1 / 8, 2))
    assert multiscale_roi_align([feature], [torch.zeros(0, 4)], 3, [1 / 8]).shape == (0, 2, 3, 3)


def _rpn_pair(strides, scales, channels=8):
    """Our pyramid RPN and torchvision's with the same (random) head weights and settings."""
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.rpn import RegionProposalNetwork as TorchvisionRPN
    from torchvision.models.detection.rpn import RPNHead

    ours = RegionProposalNetwork(channels, strides, scales, pre_nms_top_n=(50, 40), post_nms_top_n=(60, 30))
    for p in ours.parameters():
        torch.nn.init.normal_(p, std=0.3)
    head = RPNHead(channels, len(scales[0]) * 3)
    head.conv[0][0].load_state_dict(ours.conv.state_dict())
    head.cls_logits.load_state_dict(ours.cls_logits.state_dict())
    head.bbox_pred.load_state_dict(ours.bbox_pred.state_dict())
    anchors = AnchorGenerator(tuple(scales), ((0.5, 1.0, 2.0),) * len(strides))
    theirs = TorchvisionRPN(anchors, head, 0.7, 0.3, 256, 0.5, {"training": 50, "testing": 40},
                            {"training": 60, "testing": 30}, 0.7)
    return ours.eval(), theirs.eval()


@given(seed=st.integers(0, 10_000))
def test_pyramid_rpn_proposals_equal_torchvisions(seed):
    """The same head on two levels, anchors per level, the best 40 of each level, NMS within each
    level, the best 30: the proposals of torchvision's RegionProposalNetwork."""
    from torchvision.models.detection.image_list import ImageList

    torch.manual_seed(seed)
    ours, theirs = _rpn_pair((4, 8), ((8.0, 16.0), (16.0, 32.0)))
    features = [torch.randn(2, 8, 16, 16), torch.randn(2, 8, 8, 8)]
    sizes = [(64, 64), (60, 50)]
    with torch.no_grad():
        expected, _ = theirs(ImageList(torch.zeros(2, 3, 64, 64), sizes),
                             OrderedDict((str(i), f) for i, f in enumerate(features)))
        got, _ = ours(features, sizes)
    for p, q in zip(got, expected):
        torch.testing.assert_close(p, q)


def test_pyramid_rpn_rejects_mismatched_levels():
    with pytest.raises(ValueError, match="scales"):
        RegionProposalNetwork(8, (4, 8), ((8.0,), (16.0, 32.0)))
    rpn = RegionProposalNetwork(8, (4, 8), ((8.0,), (16.0,)))
    with pytest.raises(ValueError, match="features must hold 2"):
        rpn([torch.randn(1, 8, 4, 4)], [(16, 16)])


# ---------------------------------------------------------------------------------------------
# The FPN backbone and Faster R-CNN on it


def test_fpn_backbone_levels():
    backbone = FPNBackbone(width=2, strides=(2, 4, 8), out_channels=6)
    levels = backbone(torch.rand(2, 3, 32, 48))
    assert [tuple(p.shape) for p in levels] == [(2, 6, 16, 24), (2, 6, 8, 12), (2, 6, 4, 6)]
    coarse = FPNBackbone(width=2, strides=(4,))
    assert len(coarse.body) == 5 and coarse.out_channels == 16  # only the layers the pyramid reads
    with pytest.raises(ValueError, match="strides"):
        FPNBackbone(strides=(8, 4))


def _tiny_fpn(**kwargs):
    return build_fpn_faster_rcnn(width=4, scales=((4.0, 8.0), (8.0, 16.0)), output_size=4, hidden=32,
                                 canonical=(16.0, 3), **kwargs)


def test_fpn_faster_rcnn_learns():
    """The four losses of Faster R-CNN on a pyramid fall on a fixed batch of size-range scenes."""
    torch.manual_seed(0)
    model = _tiny_fpn()
    images, targets = collate_detection(list(ShapesDataset(4, image_size=32, radius_range=(2.5, 12), seed=0)))
    history = train_steps(model, lambda: model(images, targets), steps=15, lr=3e-3)
    assert set(history[0]) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    total = totals(history)
    assert sum(total[-3:]) / 3 < 0.7 * total[0], total


def test_fpn_faster_rcnn_contract_and_empty_images():
    torch.manual_seed(0)
    model = _tiny_fpn()
    images, targets = collate_detection(list(ShapesDataset(2, image_size=32, seed=0)))
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    check_trains_on_empty_images(model, images[0], targets[0], empty)
    check_eval_contract(_tiny_fpn())


def test_single_level_baseline_has_the_same_parts():
    """strides=(8,) gives the same network without the finer level: the same parameters but
    the finer level's lateral and smoothing convolutions and the layers that only it reads."""
    fpn, single = build_fpn_faster_rcnn(width=2, hidden=8), build_fpn_faster_rcnn(
        width=2, hidden=8, strides=(8,), scales=((8.0, 16.0, 32.0),))
    only_fpn = set(dict(fpn.named_parameters())) - set(dict(single.named_parameters()))
    assert only_fpn == {"backbone.fpn.lateral.1.weight", "backbone.fpn.lateral.1.bias",
                        "backbone.fpn.smooth.1.weight", "backbone.fpn.smooth.1.bias"}


def test_fpn_backbone_is_its_pyramid_on_its_bottom_up_maps():
    torch.manual_seed(0)
    backbone, images = FPNBackbone(width=2, strides=(2, 8)), torch.rand(1, 3, 32, 32)
    bottom_up = backbone.bottom_up(images)
    assert [tuple(c.shape) for c in bottom_up] == [(1, 4, 16, 16), (1, 16, 4, 4)]
    assert all(torch.equal(p, q) for p, q in zip(backbone(images), backbone.fpn(bottom_up)))


def test_mask_rcnn_on_a_pyramid_learns_and_predicts_masks():
    """Mask R-CNN takes the same pyramid parts (its mask branch pools 14 x 14 from each RoI's
    level): its five losses fall on a fixed batch and eval gives one mask per detection."""
    from cvlib.models.mask_rcnn import MaskHead, MaskRCNN, MaskRoIHeads

    torch.manual_seed(0)
    base = _tiny_fpn()
    box = base.roi_heads
    mask_pool = MultiScaleRoIAlign(base.backbone.strides, 14, 2, 16.0, 3)
    heads = MaskRoIHeads(box.box_roi_pool, box.box_head, mask_pool, MaskHead(base.backbone.out_channels, 3),
                         batch_size_per_image=box.batch_size_per_image)
    model = MaskRCNN(base.backbone, base.rpn, heads)
    images, targets = collate_detection(list(ShapesDataset(4, image_size=32, radius_range=(2.5, 12), seed=0)))
    history = train_steps(model, lambda: model(images, targets), steps=15, lr=3e-3)
    assert "loss_mask" in history[0]
    total = totals(history)
    assert sum(total[-3:]) / 3 < 0.7 * total[0], total
    for image, out in check_eval_contract(model, keys=("boxes", "labels", "scores", "masks")):
        assert out["masks"].shape == (len(out["boxes"]), 1, *image.shape[1:])


def test_a_pyramid_model_has_no_torchvision_twin():
    from cvlib.models.rcnn_torchvision import torchvision_twin

    with pytest.raises(ValueError, match="feature-pyramid"):
        torchvision_twin(build_fpn_faster_rcnn(width=2, hidden=8))
