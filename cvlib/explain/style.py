"""Gram matrices, texture synthesis and style transfer (Gatys et al. 2015, 2016).

The **Gram matrix** of a layer's features ``F`` ``[C, h * w]`` is ``G = F F^T / (h w)``: which
channels fire *together*, averaged over all positions. It forgets *where*, so it describes a
texture or a painting's style, not its layout.

- **Texture synthesis**: from noise, descend on the pixels until the Gram matrices of several
  layers match those of an example texture.
- **Style transfer**: match the Gram matrices of a style image *and* the features of a content
  image at one deeper layer:
  ``L = w_content * ||F_l(x) - F_l(content)||^2 + w_style * sum_l ||G_l(x) - G_l(style)||^2``.

(**Fast style transfer**, Johnson et al. 2016, trains a feed-forward network to minimise the
same loss for one style, so that stylising an image is one forward pass instead of hundreds of
gradient steps.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cvlib._checks import integer, number, pair, sequence, tensor
from cvlib.explain.hooks import check_images, prepared, resolve_layer

__all__ = ["gram_matrix", "style_transfer", "synthesize_texture"]


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``F F^T / (h w)``: ``[B, C, h, w]`` -> ``[B, C, C]``."""
    tensor(features, "features", ndim=4, dtype="float")
    flat = features.flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[2]


def _features(model: nn.Module, images: torch.Tensor, layers: Sequence[nn.Module]) -> list[torch.Tensor]:
    """The outputs of ``layers`` for ``images``, in order (forward hooks, removed afterwards)."""
    store: dict[int, torch.Tensor] = {}
    handles = [layer.register_forward_hook(lambda _m, _i, out, k=k: store.__setitem__(k, out))
               for k, layer in enumerate(layers)]
    try:
        model(images)
    finally:
        for handle in handles:
            handle.remove()
    return [store[k] for k in range(len(layers))]


def style_transfer(model: nn.Module, content: torch.Tensor, style: torch.Tensor, content_layer: str,
                   style_layers: Sequence[str], steps: int = 150, lr: float = 0.03,
                   content_weight: float = 1.0, style_weight: float = 1e3, init: str = "content",
                   seed: int = 0) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """Gatys' style transfer on the pixels of one image: ``content`` ``[3, H, W]`` in the style
    of ``style`` ``[3, h, w]`` (any size). ``init`` is ``"content"`` or ``"noise"`` (grey plus
    seeded noise). Losses are relative: the content term is
    ``||F(x) - F(content)||^2 / ||F(content)||^2`` and each style term
    ``||G(x) - G(style)||^2 / ||G(style)||^2``, so the weights do not depend on the layers' scale.

    Returns the image ``[3, H, W]`` and the history ``{"content": [...], "style": [...]}`` (one
    value per step, the first before any step).
    """
    content = check_images(tensor(content, "content", ndim=3)[None], "content")
    style = check_images(tensor(style, "style", ndim=3)[None], "style")
    style_layers = sequence(style_layers, "style_layers", nonempty=True)
    integer(steps, "steps", low=1)
    number(lr, "lr", low=0, low_open=True)
    number(content_weight, "content_weight", low=0)
    number(style_weight, "style_weight", low=0)
    if init not in ("content", "noise"):
        raise ValueError(f"init must be 'content' or 'noise', got {init!r}")
    integer(seed, "seed", low=0)
    history: dict[str, list[float]] = {"content": [], "style": []}
    with prepared(model):
        style_modules = [resolve_layer(model, name, "style_layers") for name in style_layers]
        content_module = resolve_layer(model, content_layer, "content_layer")
        with torch.no_grad():
            grams = [gram_matrix(f) for f in _features(model, style, style_modules)]
            (target,) = _features(model, content, [content_module])
        if init == "content":
            x = content.clone()
        else:
            generator = torch.Generator().manual_seed(seed)
            x = (0.5 + 0.1 * torch.randn(content.shape, generator=generator)).to(content).clamp(0, 1)
        x.requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=lr)
        for step in range(steps + 1):
            *features, now = _features(model, x, [*style_modules, content_module])
            style_loss = sum((gram_matrix(f) - g).pow(2).sum() / g.pow(2).sum().clamp(min=1e-12)
                             for f, g in zip(features, grams)) / len(grams)
            content_loss = (now - target).pow(2).sum() / target.pow(2).sum().clamp(min=1e-12)
            history["style"].append(style_loss.item())
            history["content"].append(content_loss.item())
            if step == steps:
                break
            optimizer.zero_grad()
            (content_weight * content_loss + style_weight * style_loss).backward()
            optimizer.step()
            with torch.no_grad():
                x.clamp_(0, 1)
    return x.detach()[0], history


def synthesize_texture(model: nn.Module, texture: torch.Tensor, size: tuple[int, int],
                       style_layers: Sequence[str], steps: int = 150, lr: float = 0.03, seed: int = 0
                       ) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """A new image ``[3, *size]`` with the Gram matrices of ``texture`` ``[3, h, w]`` at
    ``style_layers``: style transfer from noise with no content term."""
    check_images(tensor(texture, "texture", ndim=3)[None], "texture")
    size = pair(size, "size")
    style_layers = sequence(style_layers, "style_layers", nonempty=True)
    blank = torch.full((3, *size), 0.5, dtype=texture.dtype, device=texture.device)
    return style_transfer(model, blank, texture, style_layers[-1], style_layers, steps, lr,
                          content_weight=0.0, style_weight=1.0, init="noise", seed=seed)
