"""Fully convolutional networks for semantic segmentation (lecture 03).

- ``PatchClassifier``: the sliding-window baseline. It classifies the centre pixel of a
  ``patch x patch`` window with unpadded 3x3 convolutions, so the *same* weights can run on
  every window separately (``sliding_window``) or over the whole image in one pass
  (``forward``): identical outputs, but the one pass computes each shared feature once.
- ``FCN``: downsample by 8 with strided convolutions, score classes at 1/8 resolution, and
  upsample by 8 with a transposed convolution initialised to bilinear interpolation.
- ``DilatedFCN``: no downsampling at all; dilated 3x3 convolutions grow the receptive field
  at full resolution: ``1 + 2 * sum(dilations)`` pixels (``dilated_receptive_field``),
  exponentially in depth when the rates double. Stacked layers of one rate ``r > 1`` only ever
  combine pixels ``r`` apart: the output sees a lattice with holes, 1 / r^2 of its receptive
  field (**gridding**). Hybrid rates without a common factor (1, 2, 3: Wang et al. 2018, HDC)
  fill the holes. ``receptive_field_coverage`` measures the fraction of the receptive field
  that the gradient reaches.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import counts, integer, module
from cvlib._checks import images as check_images
from cvlib.models.blocks import conv_bn_relu, vgg_features
from cvlib.ops.upsample import bilinear_kernel

__all__ = ["PatchClassifier", "FCN", "DilatedFCN", "dilated_receptive_field", "receptive_field",
           "input_gradient", "receptive_field_coverage"]


class PatchClassifier(nn.Module):
    """``layers`` unpadded 3x3 conv-BN-ReLU layers + a 1x1 classifier: a window of
    ``patch = 2 * layers + 1`` pixels -> scores of its centre pixel."""

    def __init__(self, num_classes: int = 4, width: int = 32, layers: int = 7):
        super().__init__()
        counts(num_classes=num_classes, width=width, layers=layers)
        self.patch = 2 * layers + 1
        channels = [3] + [width] * layers
        self.body = nn.Sequential(
            *(
                nn.Sequential(
                    nn.Conv2d(channels[i], channels[i + 1], 3, bias=False),
                    nn.BatchNorm2d(channels[i + 1]),
                    nn.ReLU(inplace=True),
                )
                for i in range(layers)
            )
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def classify_windows(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, 3, h, w]`` (``h, w >= patch``) -> ``[B, C, h - patch + 1, w - patch + 1]``: the
        scores of every window that fits, ``[B, C, 1, 1]`` for one window."""
        return self.classifier(self.body(x))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """All windows at once: zero-pad by ``patch // 2`` and run the convolutions over the
        whole image. ``[B, 3, H, W]`` -> ``[B, C, H, W]``."""
        check_images(images, like=self)
        return self.classify_windows(F.pad(images, [self.patch // 2] * 4))

    def sliding_window(self, images: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """One window per pixel, each classified on its own (the slow way, same numbers):
        ``[B, 3, H, W]`` -> ``[B, C, H, W]``."""
        check_images(images, like=self)
        b, _, h, w = images.shape
        windows = F.unfold(F.pad(images, [self.patch // 2] * 4), self.patch)  # [B, 3*P*P, H*W]
        windows = windows.transpose(1, 2).reshape(-1, 3, self.patch, self.patch)
        scores = torch.cat([self.classify_windows(chunk)[:, :, 0, 0] for chunk in windows.split(batch_size)])
        return scores.reshape(b, h, w, -1).permute(0, 3, 1, 2)


class FCN(nn.Module):
    """``[B, 3, H, W]`` -> ``[B, num_classes, H, W]``: features at 1/8 (``vgg_features``), a 1x1
    conv scores the classes, a transposed conv (kernel 16, stride 8, padding 4) initialised to
    bilinear interpolation brings them back to full resolution. Any ``H, W``: the input is
    padded to a multiple of 8 and the output cropped.

    ``backbone``: any module with ``out_channels`` and ``stride`` attributes instead (e.g.
    :func:`cvlib.models.backbones.torchvision_backbone`, stride 16): the upsampling then has
    kernel ``2 * stride``, stride ``stride``, padding ``stride / 2``."""

    def __init__(self, num_classes: int = 4, width: int = 16, backbone: nn.Module | None = None):
        super().__init__()
        counts(num_classes=num_classes, width=width)
        self.features = backbone if backbone is not None else vgg_features(width)
        self.stride = backbone.stride if backbone is not None else 8
        channels = backbone.out_channels if backbone is not None else 8 * width
        self.score = nn.Conv2d(channels, num_classes, 1)
        s = self.stride  # kernel 2s, stride s, padding s / 2: bilinear upsampling by s
        self.upsample = nn.ConvTranspose2d(num_classes, num_classes, 2 * s, s, padding=s // 2, bias=False)
        with torch.no_grad():  # class c upsamples only class c, bilinearly; training may change it
            self.upsample.weight.zero_()
            for c in range(num_classes):
                self.upsample.weight[c, c] = bilinear_kernel(2 * s)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, like=self)
        height, width = images.shape[-2:]
        x = F.pad(images, (0, -width % self.stride, 0, -height % self.stride))
        return self.upsample(self.score(self.features(x)))[..., :height, :width]


class DilatedFCN(nn.Module):
    """Full resolution throughout: 3x3 conv-BN-ReLU layers with dilations ``dilations``
    (receptive field ``1 + 2 * sum(dilations)``), then a 1x1 classifier."""

    def __init__(self, num_classes: int = 4, width: int = 32, dilations: tuple[int, ...] = (1, 1, 2, 4, 8)):
        super().__init__()
        counts(num_classes=num_classes, width=width)
        for d in dilations:
            integer(d, "dilations", low=1)
        self.dilations = tuple(dilations)
        channels = [3] + [width] * len(dilations)
        self.body = nn.Sequential(
            *(conv_bn_relu(channels[i], channels[i + 1], dilation=d) for i, d in enumerate(dilations))
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        check_images(images, like=self)
        return self.classifier(self.body(images))


def dilated_receptive_field(dilations, kernel_size: int = 3) -> int:
    """Receptive field (pixels, one side) of stacked stride-1 convolutions with ``dilations``:
    each layer adds ``(kernel_size - 1) * dilation`` pixels to it."""
    integer(kernel_size, "kernel_size", low=1)
    if isinstance(dilations, (str, bytes)) or not hasattr(dilations, "__iter__"):
        raise TypeError(f"dilations must be a sequence of ints, got {dilations!r}")
    return 1 + (kernel_size - 1) * sum(integer(d, "dilations", low=1) for d in dilations)


def input_gradient(model: nn.Module, size: int = 97) -> torch.Tensor:
    """``|d (summed class scores of the centre output pixel) / d input|``, summed over the
    colour channels: ``[size, size]`` float, on a random input (random, so that ReLUs are not
    all off). It is non-zero on the input pixels that reach the centre pixel (its *effective*
    receptive field); a pixel reached by few paths can read 0 when ReLUs cut all of them (a
    very narrow model), so the extent measured is a lower bound. The model is left in its mode,
    its weights untouched."""
    module(model)
    integer(size, "size", low=1)
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
        x = x.to(device).requires_grad_()
        out = model(x)
        out[0, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    finally:
        model.train(was_training)
    return x.grad[0].abs().sum(0).cpu()


def receptive_field(model: nn.Module, size: int = 97) -> int:
    """Measured receptive field (pixels, one side) of the centre output pixel of ``model``:
    the extent of the input pixels its gradient reaches (:func:`input_gradient`)."""
    cols = torch.nonzero(input_gradient(model, size).sum(0) > 0).flatten()
    return int(cols.max() - cols.min() + 1) if len(cols) else 0


def receptive_field_coverage(model: nn.Module, size: int = 97) -> float:
    """Fraction of the pixels of the centre output pixel's receptive field (the square box
    around the input pixels its gradient reaches) that the gradient does reach: 1 without
    holes; for layers that all have dilation ``r`` (gridding) only the lattice of every
    ``r``-th pixel is reached: ``((R - 1) / r + 1)^2 / R^2`` of a receptive field of ``R``
    pixels, about ``1 / r^2``."""
    reached = input_gradient(model, size) > 0
    if not reached.any():
        return 0.0
    rows, cols = (torch.nonzero(reached.any(dim)).flatten() for dim in (1, 0))
    box = reached[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return box.float().mean().item()
