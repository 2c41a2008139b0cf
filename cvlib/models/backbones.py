"""torchvision's ImageNet CNNs as backbones of the course's detectors and FCN.

The lectures train detectors "from ImageNet features": the convolutional part of a
classification network, cut before its pooling and classifier, computes the feature map that
the RPN, the YOLO grid, DETR's transformer or the FCN scoring layer read. A backbone here is a
module ``[B, 3, H, W]`` (pixels in ``[0, 1]``) -> ``[B, out_channels, H / stride, W / stride]``
with the attributes ``out_channels`` and ``stride``, like the course's own
:class:`~cvlib.models.detection.Backbone` (stride 8):

| name | cut after | stride | out_channels |
|---|---|---|---|
| ``resnet18`` | ``layer3`` | 16 | 256 |
| ``resnet50`` | ``layer3`` | 16 | 1024 |
| ``mobilenet_v3`` | ``features[12]`` (MobileNetV3-Large) | 16 | 112 |

Stride 16 (not the networks' final 32) keeps a usable feature map on small images. The
ImageNet normalisation is done inside, so the models keep taking ``[0, 1]`` images.

Pretrained weights come through torchvision's weights API (``ResNet18_Weights.DEFAULT`` ...)
when they can be had (downloaded once, or already in torch's cache); otherwise, e.g. offline,
one line says so and the backbone starts from random weights. With ImageNet weights the
batch-norm layers are frozen (``FrozenBatchNorm2d``, as torchvision's detection models do):
detection batches are too small to re-estimate their statistics.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BACKBONES", "ImageNetBackbone", "torchvision_backbone"]

BACKBONES = ("resnet18", "resnet50", "mobilenet_v3")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetBackbone(nn.Module):
    """``body`` applied to ImageNet-normalised images: ``[B, 3, H, W]`` in ``[0, 1]`` ->
    ``[B, out_channels, ceil(H / stride), ceil(W / stride)]``."""

    def __init__(self, body: nn.Module, out_channels: int, stride: int, pretrained: bool):
        super().__init__()
        self.body, self.out_channels, self.stride, self.pretrained = body, out_channels, stride, pretrained
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body((images - self.mean) / self.std)


def _weights(name: str, pretrained: bool):
    """torchvision's default ImageNet weights enum of ``name`` if ``pretrained`` and they can be
    loaded (cache or download), else ``None`` after one line saying why."""
    from torchvision import models

    if not pretrained:
        return None
    weights = {"resnet18": models.ResNet18_Weights, "resnet50": models.ResNet50_Weights,
               "mobilenet_v3": models.MobileNet_V3_Large_Weights}[name].DEFAULT
    try:
        weights.get_state_dict(progress=False)  # fetched into torch's cache, or read from it
    except Exception as error:  # offline, a proxy, a broken cache: all mean "no weights"
        print(f"{name}: no ImageNet weights ({type(error).__name__}); starting from random weights")
        return None
    return weights


def torchvision_backbone(name: str, pretrained: bool = True) -> ImageNetBackbone:
    """The backbone ``name`` (one of :data:`BACKBONES`, see the table above), with ImageNet
    weights when ``pretrained`` and they can be had; ``backbone.pretrained`` says which."""
    from torchvision import models
    from torchvision.ops.misc import FrozenBatchNorm2d

    if name not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")
    if not isinstance(pretrained, bool):
        raise TypeError(f"pretrained must be True or False, got {type(pretrained).__name__}")
    weights = _weights(name, pretrained)
    norm_layer = FrozenBatchNorm2d if weights is not None else nn.BatchNorm2d
    if name == "mobilenet_v3":
        network = models.mobilenet_v3_large(weights=weights, norm_layer=norm_layer)
        return ImageNetBackbone(network.features[:13], 112, 16, weights is not None)
    network = getattr(models, name)(weights=weights, norm_layer=norm_layer)
    body = nn.Sequential(network.conv1, network.bn1, network.relu, network.maxpool,
                         network.layer1, network.layer2, network.layer3)
    return ImageNetBackbone(body, network.layer3[-1].conv1.in_channels, 16, weights is not None)
