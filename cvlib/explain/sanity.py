"""Sanity checks for explanation maps (Adebayo et al. 2018): does the map depend on the model?

A map that explains the model must change when the model's weights are destroyed. The
**cascading model-parameter randomisation test**: re-initialise the layers one by one from the
top (the classifier) down to the input, and after each step compare the map of the damaged
model with the map of the trained one by their **Spearman rank correlation** (1: same ranking
of the pixels; about 0: unrelated). Gradients and Grad-CAM fall towards 0; a method whose map
stays correlated (Adebayo et al. found guided backpropagation does) shows the image's edges
rather than what the model uses. The **label-randomisation test** compares the same maps with
those of a model trained on shuffled labels (the recipe ``shapes_cnn_random_labels``).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from cvlib._checks import integer, module, sequence, tensor
from cvlib.explain.hooks import resolve_layer

__all__ = ["randomized_copy", "cascading_randomization", "rank_correlation"]


def _reinitialize(module: nn.Module) -> None:
    """``reset_parameters()`` of ``module`` and every submodule that has one (convolutions and
    linear layers draw new weights; BatchNorm forgets its statistics and affine parameters)."""
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def randomized_copy(model: nn.Module, layers: Sequence[str], seed: int = 0) -> nn.Module:
    """A copy of ``model`` whose ``layers`` (dotted names) are re-initialised with the random
    generator seeded by ``seed``; ``model`` itself is not touched."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = sequence(layers, "layers")
    integer(seed, "seed", low=0)
    damaged = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name in layers:
            _reinitialize(resolve_layer(damaged, name, "layers"))
    return damaged.eval()


def cascading_randomization(model: nn.Module, layers: Sequence[str], seed: int = 0
                            ) -> Iterator[tuple[str, nn.Module]]:
    """``(name, copy)`` for each name of ``layers`` (list them from the output to the input): the
    copy has that layer and every layer before it in the list re-initialised. The arguments
    are checked at the call, before the first copy is asked for."""
    module(model)
    layers = sequence(layers, "layers", nonempty=True)
    for name in layers:
        resolve_layer(model, name, "layers")
    integer(seed, "seed", low=0)
    return ((name, randomized_copy(model, layers[: k + 1], seed)) for k, name in enumerate(layers))


def _ranks(values: torch.Tensor) -> torch.Tensor:
    """Rank of each entry of each row ``[B, N]`` (0..N-1; ties get their mean rank)."""
    order = values.argsort(dim=1, stable=True)
    ranks = torch.empty_like(values, dtype=torch.float64)
    positions = torch.arange(values.shape[1], dtype=torch.float64).expand_as(values).contiguous()
    ranks.scatter_(1, order, positions)
    # ties: replace each rank by the mean rank of its group of equal values
    for b in range(values.shape[0]):
        unique, inverse = torch.unique(values[b], return_inverse=True)
        if len(unique) < values.shape[1]:
            sums = torch.zeros(len(unique), dtype=torch.float64).index_add_(0, inverse, ranks[b])
            counts = torch.bincount(inverse, minlength=len(unique)).double()
            ranks[b] = (sums / counts)[inverse]
    return ranks


def rank_correlation(maps_a: torch.Tensor, maps_b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation ``[B]`` of two batches of maps ``[B, H, W]``: the Pearson
    correlation of the pixels' ranks (ties share their mean rank, as ``scipy.stats.spearmanr``).
    A constant map has no ranking: its correlation is NaN."""
    tensor(maps_a, "maps_a", ndim=3, dtype="real", finite=True, nonempty=True)
    tensor(maps_b, "maps_b", shape=tuple(maps_a.shape), dtype="real", finite=True)
    a, b = _ranks(maps_a.flatten(1).cpu()), _ranks(maps_b.flatten(1).cpu())
    a, b = a - a.mean(dim=1, keepdim=True), b - b.mean(dim=1, keepdim=True)
    return ((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).float()
