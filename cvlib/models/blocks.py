"""Building blocks shared by the models, and the small classifier of the first notebooks."""

from __future__ import annotations

import torch
from torch import nn

from cvlib._checks import counts
from cvlib._checks import images as check_images

__all__ = ["conv_bn_relu", "vgg_features", "SmallCNN"]


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    """3x3 convolution (same padding for stride 1) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def vgg_features(width: int) -> nn.Sequential:
    """Seven 3x3 conv-BN-ReLU layers, three of them with stride 2: ``[B, 3, H, W]`` ->
    ``[B, 8 * width, H / 8, W / 8]`` (receptive field 51 pixels)."""
    return nn.Sequential(
        conv_bn_relu(3, width),
        conv_bn_relu(width, 2 * width, stride=2),
        conv_bn_relu(2 * width, 2 * width),
        conv_bn_relu(2 * width, 4 * width, stride=2),
        conv_bn_relu(4 * width, 4 * width),
        conv_bn_relu(4 * width, 8 * width, stride=2),
        conv_bn_relu(8 * width, 8 * width),
    )


class SmallCNN(nn.Module):
    """A small VGG-style CNN classifier ending in global average pooling + one linear layer.

    ``[B, 3, H, W]`` -> logits ``[B, num_classes]``. ``features(x)`` gives the last feature
    maps ``A`` ``[B, 8*width, H/8, W/8]``; the logits are ``fc(mean_ij A)``, the structure
    that CAM needs (``S_c = sum_k w_k^c (1/Z) sum_ij A^k_ij``).
    """

    def __init__(self, num_classes: int = 3, width: int = 16):
        super().__init__()
        counts(num_classes=num_classes, width=width)
        self.features = vgg_features(width)
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, like=self)
        return self.fc(self.features(images).mean(dim=(2, 3)))
