"""U-Net (Ronneberger et al. 2015): an encoder that halves the resolution ``depth`` times, a
decoder that doubles it back with transposed convolutions, and **skip connections** that hand
each decoder stage the encoder features of the same resolution, so fine detail (boundaries)
lost by downsampling can be recovered. ``skip=False`` gives the same network without them:
its decoder sees only the bottleneck.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import counts
from cvlib._checks import images as check_images
from cvlib.models.blocks import conv_bn_relu

__all__ = ["UNet"]


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU layers (same padding): the block of every U-Net stage."""
    return nn.Sequential(conv_bn_relu(in_channels, out_channels), conv_bn_relu(out_channels, out_channels))


class UNet(nn.Module):
    """``[B, 3, H, W]`` -> per-pixel class scores ``[B, num_classes, H, W]``.

    Stage ``d`` has ``width * 2^d`` channels. Any ``H, W`` works: the input is zero-padded to a
    multiple of ``2^depth`` and the scores are cropped back.
    """

    def __init__(self, num_classes: int = 4, depth: int = 3, width: int = 16, skip: bool = True):
        super().__init__()
        counts(num_classes=num_classes, depth=depth, width=width)
        self.depth, self.skip = depth, skip
        channels = [width * 2**d for d in range(depth + 1)]
        self.down = nn.ModuleList([double_conv(3, channels[0])])
        self.down.extend(double_conv(channels[d], channels[d + 1]) for d in range(depth))
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(channels[d + 1], channels[d], 2, stride=2) for d in range(depth)
        )
        merged = [2 * channels[d] if skip else channels[d] for d in range(depth)]
        self.decode = nn.ModuleList(double_conv(merged[d], channels[d]) for d in range(depth))
        self.classifier = nn.Conv2d(channels[0], num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, like=self)
        height, width = images.shape[-2:]
        multiple = 2**self.depth
        x = F.pad(images, (0, -width % multiple, 0, -height % multiple))
        skips = []
        for d, block in enumerate(self.down):
            x = block(x if d == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for d in reversed(range(self.depth)):  # from the bottleneck up
            x = self.up[d](x)
            x = self.decode[d](torch.cat([skips[d], x], dim=1) if self.skip else x)
        return self.classifier(x)[..., :height, :width]
