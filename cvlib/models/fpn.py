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

A detector then puts anchors of one size on each level ``P_i`` (small anchors on fine maps,
:func:`cvlib.ops.anchors.pyramid_anchors`) and pools each RoI from the level that suits its size
(:func:`cvlib.ops.roi.roi_levels`, :class:`MultiScaleRoIAlign`). :class:`FPNBackbone` is the
course's small backbone with a pyramid on top; :func:`build_fpn_faster_rcnn` puts Faster R-CNN's
RPN (one head shared by the levels, anchors per level) and RoI heads on it.
Same numbers as ``torchvision.ops.FeaturePyramidNetwork`` with the same weights
(:meth:`FeaturePyramidNetwork.from_torchvision`; a test compares them).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import counts, integer, number, sequence, tensor
from cvlib.models.blocks import vgg_features
from cvlib.models.detection import DetectionSettings
from cvlib.models.rcnn import BoxHead, FasterRCNN, RoIHeads
from cvlib.models.rpn import RegionProposalNetwork
from cvlib.ops.roi import multiscale_roi_align

__all__ = ["FeaturePyramidNetwork", "FPNBackbone", "MultiScaleRoIAlign", "build_fpn_faster_rcnn"]


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


class FPNBackbone(nn.Module):
    """The course's small CNN (``vgg_features(width)``, as :class:`~cvlib.models.detection.Backbone`)
    with a feature pyramid on top: ``[B, 3, H, W]`` -> ``[P_1, ..., P_L]``, ``P_i``
    ``[B, out_channels, H / strides[i], W / strides[i]]``.

    ``vgg_features`` halves the resolution three times; its maps at strides 2, 4 and 8 (after
    its layers 2, 4 and 6, with ``2, 4, 8 x width`` channels) are the ``C_i`` that ``strides``
    picks, fine to coarse. ``out_channels`` defaults to ``8 * width``, the channels of the
    single-level backbone, so the same RPN and box head fit on top.
    """

    TAPS = {2: 3, 4: 5, 8: 7}  # stride -> number of vgg_features layers that produce it

    def __init__(self, width: int = 8, strides: Sequence[int] = (4, 8), out_channels: int | None = None):
        super().__init__()
        counts(width=width)
        strides = tuple(sequence(strides, "strides", nonempty=True))
        if any(s not in self.TAPS for s in strides) or list(strides) != sorted(set(strides)):
            raise ValueError(f"strides must be increasing values among {tuple(self.TAPS)}, got {strides}")
        self.strides, self.out_channels = strides, 8 * width if out_channels is None else out_channels
        self.body = vgg_features(width)[: self.TAPS[strides[-1]]]  # the layers the pyramid reads
        self.fpn = FeaturePyramidNetwork([width * s for s in strides], self.out_channels)

    def bottom_up(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The CNN's own maps ``[C_1, ..., C_L]`` at ``strides`` (fine to coarse), before the pyramid."""
        taps, features, x = {self.TAPS[s] for s in self.strides}, [], images
        for i, layer in enumerate(self.body, start=1):
            x = layer(x)
            if i in taps:
                features.append(x)
        return features

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.fpn(self.bottom_up(images))


class MultiScaleRoIAlign(nn.Module):
    """RoI Align on a pyramid (torchvision's ``MultiScaleRoIAlign``): the levels ``[B, C, h_i, w_i]``
    (fine to coarse, strides ``strides``) and one ``[K_i, 4]`` box tensor per image ->
    ``[sum K_i, C, S, S]``, each RoI pooled from the level :func:`cvlib.ops.roi.roi_levels` gives
    it: a box of ``canonical_scale`` pixels reads the level of stride ``2^canonical_level``, one
    half as large the next finer level. No parameters."""

    def __init__(self, strides: Sequence[int], output_size: int = 7, sampling_ratio: int = 2,
                 canonical_scale: float = 224.0, canonical_level: int = 4):
        super().__init__()
        strides = sequence(strides, "strides", nonempty=True)
        self.strides = tuple(integer(s, "strides", low=1) for s in strides)
        counts(output_size=output_size, sampling_ratio=sampling_ratio)
        number(canonical_scale, "canonical_scale", low=0, low_open=True)
        self.output_size, self.sampling_ratio = output_size, sampling_ratio
        self.canonical_scale = canonical_scale
        self.canonical_level = integer(canonical_level, "canonical_level")

    def forward(self, features: Sequence[torch.Tensor], boxes: list[torch.Tensor]) -> torch.Tensor:
        return multiscale_roi_align(features, boxes, self.output_size, [1 / s for s in self.strides],
                                    self.sampling_ratio, self.canonical_scale, self.canonical_level)


def build_fpn_faster_rcnn(
    num_classes: int = 3,
    width: int = 8,
    strides: Sequence[int] = (4, 8),
    scales: Sequence[Sequence[float]] = ((8.0, 16.0), (16.0, 32.0)),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    rpn_top_n: tuple[int, int] = (600, 300),
    batch_size_per_image: int = 128,
    output_size: int = 7,
    canonical: tuple[float, int] = (32.0, 3),
    hidden: int = 128,
    settings: DetectionSettings | None = None,
) -> FasterRCNN:
    """Faster R-CNN on a feature pyramid: :class:`FPNBackbone` (levels at ``strides``, fine to
    coarse), an RPN whose shared head puts anchors of ``scales[i]`` x ``aspect_ratios`` on level
    ``i``, RoI Align from each RoI's level (:class:`MultiScaleRoIAlign`; ``canonical``:
    ``(canonical_scale, canonical_level)``, by default a 32-pixel box reads the stride-8 level)
    and a ``hidden``-wide :class:`~cvlib.models.rcnn.BoxHead`.

    ``rpn_top_n``: ``(pre_nms_top_n per level, post_nms_top_n)``, the same in training and at
    test time; ``batch_size_per_image``: RoIs sampled per image for the box head. With one
    stride (``strides=(8,)``, ``scales=((8, 16, 32),)``) it is a single-level Faster R-CNN with
    the same parts, the baseline that shows what the pyramid adds. Mask R-CNN on a pyramid takes
    the same parts, with a :class:`MultiScaleRoIAlign` (14 x 14) as its ``mask_roi_pool``.
    """
    counts(num_classes=num_classes, output_size=output_size, hidden=hidden)
    canonical = tuple(sequence(canonical, "canonical"))
    if len(canonical) != 2:
        raise ValueError(f"canonical must be (canonical_scale, canonical_level), got {canonical!r}")
    number(canonical[0], "canonical", low=0, low_open=True)
    integer(canonical[1], "canonical")
    pre, post = (integer(n, "rpn_top_n", low=1) for n in sequence(rpn_top_n, "rpn_top_n"))
    backbone = FPNBackbone(width, strides)
    channels = backbone.out_channels
    rpn = RegionProposalNetwork(channels, backbone.strides, scales, aspect_ratios,
                                pre_nms_top_n=(pre, pre), post_nms_top_n=(post, post))
    pool = MultiScaleRoIAlign(backbone.strides, output_size, 2, *canonical)
    heads = RoIHeads(pool, BoxHead(channels * output_size**2, num_classes, hidden), batch_size_per_image,
                     settings=settings)
    return FasterRCNN(backbone, rpn, heads)
