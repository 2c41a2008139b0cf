"""Class activation maps: CAM, Grad-CAM and guided Grad-CAM.

CAM (Zhou et al. 2016) needs global average pooling + one linear layer: the score is
``S_c = sum_k w_k^c (1/Z) sum_ij A^k_ij`` and the map is ``M^c = sum_k w_k^c A^k``.
Grad-CAM (Selvaraju et al. 2017) works on any conv layer: ``alpha_k^c = (1/Z) sum_ij
dS_c/dA^k_ij`` and ``M^c = ReLU(sum_k alpha_k^c A^k)``. On a GAP + FC network
``dS_c/dA^k_ij = w_k^c / Z``, so Grad-CAM at the last conv layer is ``ReLU(CAM) / Z``.
Maps are computed at the layer's resolution ``[h, w]`` and resized bilinearly to the input's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvlib import _checks
from cvlib.explain.gradients import guided_backprop
from cvlib.explain.hooks import capture, check_images, pick_target, prepared, resolve_layer

__all__ = ["cam", "grad_cam", "guided_grad_cam", "upsample_map"]


def upsample_map(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize ``[B, h, w]`` -> ``[B, *size]``."""
    _checks.tensor(maps, "maps", shape=("B", "h", "w"), dtype="float")
    size = _checks.pair(size, "size")
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def cam(
    model: nn.Module, images: torch.Tensor, target=None,
    features: nn.Module | str = "features", fc: nn.Module | str = "fc", upsample: bool = True,
) -> torch.Tensor:
    """CAM ``sum_k w_k^c A^k`` (signed, no ReLU): ``[B, 3, H, W]`` -> ``[B, H, W]`` (``[B, h, w]``
    when ``upsample=False``). ``features`` is the layer whose output ``A`` ``[B, K, h, w]`` is
    average-pooled into the linear layer ``fc`` (``K`` inputs)."""
    images = check_images(images, model=_checks.module(model))
    fc = resolve_layer(model, fc, "fc")
    if not isinstance(fc, nn.Linear):
        raise ValueError(f"fc must be an nn.Linear (CAM needs GAP + FC), got {type(fc).__name__}")
    layer = resolve_layer(model, features, "features")
    with prepared(model) as handles, capture(layer, handles) as store, torch.no_grad():
        logits = model(images)
        target = pick_target(logits, target)
        activations = store["output"]
        if activations.ndim != 4 or activations.shape[1] != fc.in_features:
            raise ValueError(f"features output {tuple(activations.shape)} does not feed "
                             f"fc ({fc.in_features} inputs)")
        weights = fc.weight[target]  # [B, K]
        maps = torch.einsum("bk,bkhw->bhw", weights, activations)
    return upsample_map(maps, images.shape[-2:]) if upsample else maps


def grad_cam(
    model: nn.Module, images: torch.Tensor, target=None, layer: nn.Module | str = "features",
    upsample: bool = True,
) -> torch.Tensor:
    """Grad-CAM ``ReLU(sum_k alpha_k^c A^k)`` at ``layer`` (any layer with output ``[B, K, h, w]``):
    ``[B, 3, H, W]`` -> ``[B, H, W]`` (``[B, h, w]`` when ``upsample=False``).

    Choose a layer whose output is not modified in place afterwards (a conv-BN-ReLU block,
    not the BatchNorm inside it, whose output the in-place ReLU overwrites).
    """
    images = check_images(images, model=_checks.module(model))
    with prepared(model) as handles, capture(resolve_layer(model, layer), handles) as store:
        logits = model(images.clone().requires_grad_(True))
        target = pick_target(logits, target)
        activations = store["output"]
        if activations.ndim != 4:
            raise ValueError(f"layer output must be [B, K, h, w], got {tuple(activations.shape)}")
        (grads,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), activations)
        alpha = grads.mean(dim=(2, 3))  # [B, K]
        maps = torch.einsum("bk,bkhw->bhw", alpha, activations.detach()).relu()
    return upsample_map(maps, images.shape[-2:]) if upsample else maps


def guided_grad_cam(
    model: nn.Module, images: torch.Tensor, target=None, layer: nn.Module | str = "features"
) -> torch.Tensor:
    """Guided Grad-CAM: guided backprop ``[B, 3, H, W]`` times the upsampled Grad-CAM map
    ``[B, 1, H, W]`` -> ``[B, 3, H, W]`` (high resolution and class-discriminative)."""
    if target is None:
        with prepared(model), torch.no_grad():
            target = model(check_images(images, model=model)).argmax(dim=1)
    return guided_backprop(model, images, target) * grad_cam(model, images, target, layer)[:, None]
