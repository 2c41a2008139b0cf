"""A small ResNet with basic blocks, its plain (no-residual) twin, and stochastic depth (notebook 01).

Residual block (He et al. 2016): ``y = ReLU(F(x) + shortcut(x))`` with
``F = conv3x3-BN-ReLU-conv3x3-BN``; the shortcut is the identity, or a 1x1 conv + BN where the
block changes the width or the resolution. The plain twin computes ``y = ReLU(F(x))`` with the
same layers, so the only difference is the identity path. Stochastic depth drops ``F`` of a whole
sample with probability ``p`` during training (the block becomes the shortcut) and scales the kept
ones by ``1 / (1 - p)``.
"""

from __future__ import annotations

import torch
from torch import nn

from cvlib._checks import counts, number, tensor
from cvlib._checks import images as check_images
from cvlib.models.blocks import conv_bn_relu

__all__ = ["drop_path", "BasicBlock", "ResNet"]


def drop_path(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Stochastic depth on a residual branch ``x [B, ...]``: zero whole samples with probability
    ``p`` and scale the others by ``1 / (1 - p)`` (expectation unchanged); identity in eval mode."""
    tensor(x, "x")
    number(p, "p", low=0, high=1, high_open=True)
    if not training or p == 0:
        return x
    keep = torch.empty(x.shape[0], *([1] * (x.ndim - 1)), device=x.device, dtype=x.dtype).bernoulli_(1 - p)
    return x * keep / (1 - p)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers, ``[B, C_in, H, W]`` -> ``[B, C_out, H / stride, W / stride]``,
    with (``residual=True``) or without the shortcut; ``drop_prob`` is stochastic depth."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, residual: bool = True,
                 drop_prob: float = 0.0):
        super().__init__()
        if drop_prob and not residual:
            raise ValueError("drop_prob needs residual=True: a plain block has no path to fall back on")
        self.residual, self.drop_prob = residual, drop_prob
        self.body = nn.Sequential(
            conv_bn_relu(in_channels, out_channels, stride),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut = nn.Identity()
        if residual and (stride != 1 or in_channels != out_channels):
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        if self.residual:
            out = drop_path(out, self.drop_prob, self.training) + self.shortcut(x)
        return torch.relu(out)


class ResNet(nn.Module):
    """A CIFAR-style ResNet classifier: ``[B, 3, H, W]`` -> logits ``[B, num_classes]``.

    A stride-2 stem conv (``width`` channels), then three stages of ``blocks`` basic blocks each
    (widths ``width, 2 width, 4 width``; the 2nd and 3rd stages halve the resolution), global
    average pooling and a linear layer: ``6 * blocks + 2`` weighted layers. ``residual=False``
    gives the plain twin. ``drop_path_rate`` is the stochastic-depth probability of the last block,
    rising linearly from 0 over the depth (:func:`drop_path` drops a block's residual branch).
    """

    def __init__(self, num_classes: int = 3, width: int = 8, blocks: int = 3, residual: bool = True,
                 drop_path_rate: float = 0.0):
        super().__init__()
        counts(num_classes=num_classes, width=width, blocks=blocks)
        number(drop_path_rate, "drop_path_rate", low=0, high=1, high_open=True)
        self.stem = conv_bn_relu(3, width, stride=2)
        layers, channels, total = [], width, 3 * blocks
        for stage in range(3):
            for i in range(blocks):
                out, stride = width * 2**stage, 2 if stage and i == 0 else 1
                prob = drop_path_rate * len(layers) / max(total - 1, 1)
                layers.append(BasicBlock(channels, out, stride, residual, prob))
                channels = out
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, like=self)
        return self.fc(self.layers(self.stem(images)).mean(dim=(2, 3)))
