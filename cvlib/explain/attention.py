"""Attention maps of a Vision Transformer: CLS attention per head and attention rollout.

Interface: ``attentions`` is a list with one tensor per layer, each ``[B, heads, T, T]``
(row ``i`` is the softmax over the keys that token ``i`` attends to), token 0 is the CLS token
and tokens ``1..T-1`` the ``g x g`` patches in row-major order.
Rollout (Abnar & Zuidema 2020): ``R = prod_l (0.5 * mean_heads A_l + 0.5 * I)`` (rows
renormalized), multiplied from the first layer to the last; ``R[0, 1:]`` says how much each
patch flows into the CLS token through all layers and residual connections.
"""

from __future__ import annotations

import math

import torch

from cvlib import _checks

__all__ = ["cls_attention", "attention_rollout", "tokens_to_grid"]


def _check(attentions) -> list[torch.Tensor]:
    if not isinstance(attentions, (list, tuple)) or not attentions:
        raise ValueError("attentions must be a non-empty list of [B, heads, T, T] tensors")
    shape = _checks.tensor(attentions[0], "attentions", ndim=4).shape
    for a in attentions:
        _checks.tensor(a, "attentions", dtype="float", finite=True)
        if a.ndim != 4 or a.shape != shape or a.shape[-1] != a.shape[-2]:
            raise ValueError(f"attentions must all be [B, heads, T, T] of one shape, got {tuple(a.shape)}")
        if (a < 0).any():
            raise ValueError("attentions must be softmax weights (>= 0), got negative values")
    return list(attentions)


def tokens_to_grid(values: torch.Tensor) -> torch.Tensor:
    """Patch values ``[..., g*g]`` -> ``[..., g, g]``."""
    _checks.tensor(values, "values", ndim=range(1, 9))
    g = math.isqrt(values.shape[-1])
    if g * g != values.shape[-1]:
        raise ValueError(f"the number of patch tokens must be a square, got {values.shape[-1]}")
    return values.reshape(*values.shape[:-1], g, g)


def cls_attention(attentions, layer: int = -1) -> torch.Tensor:
    """What the CLS token attends to in ``layer``, per head: ``[B, heads, g, g]``."""
    attentions = _check(attentions)
    if not -len(attentions) <= _checks.integer(layer, "layer") < len(attentions):
        raise ValueError(f"layer must index one of the {len(attentions)} layers, got {layer}")
    return tokens_to_grid(attentions[layer][:, :, 0, 1:])


def attention_rollout(attentions, residual: float = 0.5, head_fusion: str = "mean") -> torch.Tensor:
    """Rollout ``[B, T, T]`` of a list of ``[B, heads, T, T]`` attentions; each layer is
    ``residual * I + (1 - residual) * A`` with heads fused by ``"mean"`` or ``"max"``."""
    attentions = _check(attentions)
    _checks.number(residual, "residual", low=0, high=1)
    _checks.choice(head_fusion, "head_fusion", ("mean", "max"))
    tokens = attentions[0].shape[-1]
    eye = torch.eye(tokens, dtype=attentions[0].dtype, device=attentions[0].device)
    rollout = eye.expand(attentions[0].shape[0], tokens, tokens)
    for a in attentions:
        fused = a.mean(dim=1) if head_fusion == "mean" else a.amax(dim=1)
        layer = residual * eye + (1 - residual) * fused
        layer = layer / layer.sum(dim=-1, keepdim=True)
        rollout = layer @ rollout
    return rollout
