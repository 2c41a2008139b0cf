"""Feature pyramid network (Lin et al. 2017): strong features at every scale.

A CNN's feature maps form a pyramid: the fine early maps (small stride) see small objects but
know little; the coarse late maps know a lot but are too coarse for small objects. FPN gives
every level the late maps' knowledge:

1. **lateral** 1x1 convolutions bring each level ``C_i`` (fine to coarse) to the same number
   of channels;
2. a **top-down** path starts at the coarsest level and, going finer, upsamples (nearest, x2)
   and adds the next lateral map: ``T_i = lateral_i(C_i) + upsample(T_{i+1})``;
3. a 3x3 **smoothing** convolution on each sum reduces the upsampling's aliasing:
   ``P_i = smooth_i(T_i)``.

A detector then puts anchors of one size on each level ``P_i`` (small anchors on fine maps) and
pools each RoI from the level that suits its size (:func:`cvlib.ops.roi.roi_levels`).
Same numbers as ``torchvision.ops.FeaturePyramidNetwork`` with the same weights
(:meth:`FeaturePyramidNetwork.from_torchvision`; a test compares them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import integer, sequence, tensor

__all__ = ["FeaturePyramidNetwork"]


class FeaturePyramidNetwork(nn.Module):
    """``[C_1, ..., C_L]`` feature maps, fine to coarse, ``C_i`` ``[B, in_channels[i], H_i, W_i]``
    -> ``[P_1, ..., P_L]``, each ``[B, out_channels, H_i, W_i]``."""

    def __init__(self, in_channels: Sequence[int], out_channels: int):
        super().__init__()
        in_channels = sequence(in_channels, "in_channels", nonempty=True)
        for c in in_channels:
            integer(c, "in_channels", low=1)
        integer(out_channels, "out_channels", low=1)
        self.lateral = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        for conv in self.modules():
            if isinstance(conv, nn.Conv2d):  # torchvision's initialisation
                nn.init.kaiming_uniform_(conv.weight, a=1)
                nn.init.zeros_(conv.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        features = sequence(features, "features", nonempty=True)
        if len(features) != len(self.lateral):
            raise ValueError(
                f"features must hold {len(self.lateral)} maps (fine to coarse), got {len(features)}"
            )
        for i, (c, conv) in enumerate(zip(features, self.lateral)):
            tensor(c, f"features[{i}]", shape=("B", conv.in_channels, "H", "W"), dtype="float")
        top_down = self.lateral[-1](features[-1])  # 1. the coarsest level
        pyramid = [self.smooth[-1](top_down)]
        for i in range(len(features) - 2, -1, -1):  # 2. finer and finer
            lateral = self.lateral[i](features[i])
            top_down = lateral + F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest")
            pyramid.insert(0, self.smooth[i](top_down))  # 3.
        return pyramid

    @classmethod
    def from_torchvision(cls, fpn: nn.Module) -> FeaturePyramidNetwork:
        """The same network as a ``torchvision.ops.FeaturePyramidNetwork`` without norm layers
        or extra blocks, with its weights (``inner_blocks`` are our ``lateral``,
        ``layer_blocks`` our ``smooth``)."""
        inner = [block[0] for block in fpn.inner_blocks]
        ours = cls([conv.in_channels for conv in inner], inner[0].out_channels)
        for mine, theirs in [*zip(ours.lateral, inner), *zip(ours.smooth, (b[0] for b in fpn.layer_blocks))]:
            mine.load_state_dict(theirs.state_dict())
        return ours
