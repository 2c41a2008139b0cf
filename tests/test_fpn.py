"""cvlib.models.fpn and cvlib.ops.roi.roi_levels against torchvision's FeaturePyramidNetwork
and MultiScaleRoIAlign level mapper."""

from collections import OrderedDict

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torchvision.ops import FeaturePyramidNetwork as TorchvisionFPN
from torchvision.ops.poolers import LevelMapper

from cvlib.models.fpn import FeaturePyramidNetwork
from cvlib.ops.roi import roi_levels


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
