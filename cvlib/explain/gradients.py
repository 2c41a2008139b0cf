"""Gradient maps: vanilla saliency, SmoothGrad and guided backpropagation.

Saliency (Simonyan et al. 2014): ``M_ij = max_c |dS_c / dI_(c,i,j)|``, the largest absolute
gradient over the three colour channels of the class score ``S_c`` (a logit).
Guided backpropagation (Springenberg et al. 2015): through every ReLU only positive gradients
flow back, ``R^l = (f^l > 0) * (R^(l+1) > 0) * R^(l+1)``.
"""

from __future__ import annotations

import torch
from torch import nn

from cvlib import _checks
from cvlib.explain.hooks import check_images, pick_target, prepared

__all__ = ["input_gradient", "saliency", "smoothgrad", "guided_backprop"]


def input_gradient(model: nn.Module, images: torch.Tensor, target=None) -> torch.Tensor:
    """``dS_c / dI`` ``[B, 3, H, W]`` of the class score (logit) ``S_c`` (``target`` None: predicted)."""
    images = check_images(images, model=_checks.module(model))
    with prepared(model):
        return _input_gradient(model, images, target)


def _input_gradient(model: nn.Module, images: torch.Tensor, target) -> torch.Tensor:
    images = images.clone().requires_grad_(True)
    logits = model(images)
    target = pick_target(logits, target)
    score = logits.gather(1, target[:, None]).sum()
    (grad,) = torch.autograd.grad(score, images)
    return grad


def saliency(model: nn.Module, images: torch.Tensor, target=None) -> torch.Tensor:
    """Vanilla saliency ``M = max_c |dS_c/dI_c|``: ``[B, 3, H, W]`` -> ``[B, H, W]``."""
    return input_gradient(model, images, target).abs().amax(dim=1)


def smoothgrad(
    model: nn.Module, images: torch.Tensor, target=None, samples: int = 16, sigma: float = 0.15, seed: int = 0
) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): saliency averaged over ``samples`` noisy copies
    ``I + N(0, (sigma * (max I - min I))^2)``; ``[B, 3, H, W]`` -> ``[B, H, W]``.

    The target class is fixed from the clean image so that every copy explains the same class.
    """
    images = check_images(images, model=_checks.module(model))
    _checks.integer(samples, "samples", low=1)
    _checks.number(sigma, "sigma", low=0)
    _checks.integer(seed, "seed", low=0)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    with prepared(model):
        with torch.no_grad():
            target = pick_target(model(images), target)
        scale = sigma * (images.amax(dim=(1, 2, 3)) - images.amin(dim=(1, 2, 3)))[:, None, None, None]
        total = torch.zeros_like(images[:, 0])
        for _ in range(samples):
            noise = torch.randn(images.shape, generator=generator).to(images.device) * scale
            total += _input_gradient(model, images + noise, target).abs().amax(dim=1)
    return total / samples


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward lets only positive gradients through (the 'guided' gate)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0)


def _guide(_module, _inputs, output):
    # ReLU's own backward applies (f > 0); this gate adds (R > 0) in front of it.
    return _PositiveGradient.apply(output)


def guided_backprop(model: nn.Module, images: torch.Tensor, target=None) -> torch.Tensor:
    """Guided backpropagation ``[B, 3, H, W]`` -> gradient image ``[B, 3, H, W]``.

    Every ``nn.ReLU`` module of ``model`` gets a forward hook for the duration of the call (the
    hooks are removed afterwards); a model that calls ``F.relu`` is not guided there.
    """
    images = check_images(images, model=_checks.module(model))
    with prepared(model) as handles:
        relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
        if not relus:
            raise ValueError("guided_backprop needs a model with nn.ReLU modules")
        handles.extend(m.register_forward_hook(_guide) for m in relus)
        return _input_gradient(model, images, target)
