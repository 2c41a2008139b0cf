"""Feature inversion (Mahendran & Vedaldi 2015): which image has these features?

Given the features ``phi_l(I)`` of an image at layer ``l``, find an image ``x`` whose features
match, by gradient descent on the pixels:

    x* = argmin_x ||phi_l(x) - phi_l(I)||^2 / ||phi_l(I)||^2 + lambda * TV(x)

The total-variation prior ``TV(x)`` (squared differences of neighbouring pixels) prefers
smooth, natural images among the many that match. Shallow layers keep almost everything (the
reconstruction is close to the image); deep layers keep what the classifier needs and discard
the rest (colour, exact position, texture), so the reconstruction drifts from the image.
"""

from __future__ import annotations

import torch
from torch import nn

from cvlib._checks import integer, number, tensor
from cvlib.explain.hooks import capture, check_images, prepared, resolve_layer

__all__ = ["total_variation", "invert_features"]


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of horizontally and vertically neighbouring pixels ``[B]`` of
    ``images`` ``[B, C, H, W]``."""
    tensor(images, "images", ndim=4, dtype="float", finite=True)
    dx = (images[..., :, 1:] - images[..., :, :-1]).pow(2).mean(dim=(1, 2, 3))
    dy = (images[..., 1:, :] - images[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
    return dx + dy


def invert_features(model: nn.Module, images: torch.Tensor, layer: nn.Module | str, steps: int = 200,
                    lr: float = 0.05, tv_weight: float = 0.5, seed: int = 0
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruct ``images`` ``[B, 3, H, W]`` from their features at ``layer``, starting from
    grey plus seeded noise; Adam on the pixels, kept in ``[0, 1]``.

    Returns the reconstructions ``[B, 3, H, W]`` and the relative feature error
    ``||phi(x) - phi(I)||^2 / ||phi(I)||^2`` ``[B]`` they reach.
    """
    images = check_images(images)
    integer(steps, "steps", low=1)
    number(lr, "lr", low=0, low_open=True)
    number(tv_weight, "tv_weight", low=0)
    integer(seed, "seed", low=0)
    generator = torch.Generator().manual_seed(seed)
    with prepared(model) as handles, capture(resolve_layer(model, layer), handles) as store:
        with torch.no_grad():
            model(images)
            target = store["output"].detach().clone()
        norm = target.pow(2).flatten(1).sum(1).clamp(min=1e-12)
        x = (0.5 + 0.05 * torch.randn(images.shape, generator=generator)).to(images).requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=lr)
        for _ in range(steps + 1):
            model(x)
            error = (store["output"] - target).pow(2).flatten(1).sum(1) / norm
            if _ == steps:
                break
            optimizer.zero_grad()
            (error + tv_weight * total_variation(x)).sum().backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0, 1)
    return x.detach(), error.detach()
