"""Looking at what the layers compute: first-layer filters, feature vectors and their nearest
neighbours, PCA of features, and the image patches that activate a channel most."""

from __future__ import annotations

import torch
from torch import nn

from cvlib import _checks
from cvlib.explain.hooks import capture, check_images, prepared, resolve_layer

__all__ = ["first_layer_filters", "layer_features", "nearest_neighbours", "pca", "max_activating_patches"]


def first_layer_filters(model: nn.Module) -> torch.Tensor:
    """Weights of the first ``nn.Conv2d`` ``[K, C, kh, kw]``, each filter min-max scaled to
    ``[0, 1]`` for display."""
    conv = next((m for m in _checks.module(model).modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError("model has no nn.Conv2d layer")
    w = conv.weight.detach().clone()
    low = w.amin(dim=(1, 2, 3), keepdim=True)
    high = w.amax(dim=(1, 2, 3), keepdim=True)
    return (w - low) / (high - low).clamp(min=1e-12)


def layer_features(
    model: nn.Module, images: torch.Tensor, layer: nn.Module | str, pool: bool = True, batch_size: int = 256
) -> torch.Tensor:
    """Output of ``layer`` for ``images`` ``[N, 3, H, W]``: ``[N, K, h, w]``, or the global
    average ``[N, K]`` when ``pool`` (the feature vector the classifier's FC layer sees)."""
    images = check_images(images, model=_checks.module(model))
    _checks.integer(batch_size, "batch_size", low=1)
    outputs = []
    with prepared(model) as handles, capture(resolve_layer(model, layer), handles) as store, torch.no_grad():
        for start in range(0, len(images), batch_size):
            model(images[start:start + batch_size])
            out = store["output"]
            outputs.append(out.mean(dim=(2, 3)) if pool and out.ndim == 4 else out.clone())
    return torch.cat(outputs)


def nearest_neighbours(queries: torch.Tensor, gallery: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Indices ``[Q, k]`` of the ``k`` gallery rows ``[N, D]`` nearest (L2) to each query ``[Q, D]``."""
    _checks.tensor(queries, "queries", shape=("Q", "D"), dtype="real", finite=True)
    _checks.tensor(gallery, "gallery", shape=("N", "D"), dtype="real", finite=True)
    _checks.integer(k, "k", low=1)
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries and gallery must be [Q, D] and [N, D], "
                         f"got {tuple(queries.shape)}, {tuple(gallery.shape)}")
    if not 1 <= k <= len(gallery):
        raise ValueError(f"k must be in [1, {len(gallery)}], got {k}")
    return torch.cdist(queries.float(), gallery.float()).topk(k, dim=1, largest=False).indices


def pca(features: torch.Tensor, components: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Project ``[N, D]`` on its first principal axes: ``(projections [N, components],
    explained variance ratio [components])``."""
    _checks.tensor(features, "features", shape=("N", "D"), dtype="real", finite=True)
    _checks.integer(components, "components", low=1)
    if not components <= min(features.shape):
        raise ValueError(f"features must be [N, D] and components in [1, min(N, D)], "
                         f"got {tuple(features.shape)}, {components}")
    centred = features.double() - features.double().mean(dim=0)
    _, s, v = torch.linalg.svd(centred, full_matrices=False)
    ratio = s**2 / (s**2).sum()
    return (centred @ v[:components].T).float(), ratio[:components].float()


def max_activating_patches(
    model: nn.Module, images: torch.Tensor, layer: nn.Module | str, channel: int, k: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``k`` largest activations of ``channel`` at ``layer`` over ``images`` ``[N, 3, H, W]``
    (at most one per image): ``(image indices [k], boxes [k, 4] xyxy, activations [k])``.

    Each box is the receptive field of that activation, measured as the bounding box of the
    pixels where its gradient with respect to the input is non-zero.
    """
    images = check_images(images, model=_checks.module(model))
    _checks.integer(channel, "channel", low=0)
    _checks.integer(k, "k", low=1)
    feats = layer_features(model, images, layer, pool=False)
    if feats.ndim != 4 or not 0 <= channel < feats.shape[1]:
        raise ValueError(f"channel must be in [0, {feats.shape[1]}) of a [N, K, h, w] layer output")
    if not 1 <= k <= len(images):
        raise ValueError(f"k must be in [1, {len(images)}], got {k}")
    per_image = feats[:, channel].flatten(1).max(dim=1)
    values, index = per_image.values.topk(k)
    boxes = []
    with prepared(model) as handles, capture(resolve_layer(model, layer), handles) as store:
        for i in index.tolist():
            image = images[i:i + 1].clone().requires_grad_(True)
            model(image)
            position = per_image.indices[i]
            (grad,) = torch.autograd.grad(store["output"][0, channel].flatten()[position], image)
            ys, xs = torch.nonzero(grad[0].abs().sum(dim=0) > 0, as_tuple=True)
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return index, torch.tensor(boxes, dtype=torch.float32), values


def neighbour_agreement(points: torch.Tensor, labels: torch.Tensor, k: int = 1) -> float:
    """Fraction of the ``k`` nearest neighbours (Euclidean, itself excluded) of each point of
    ``points`` ``[N, D]`` that share its label ``labels`` ``[N]``: how well an embedding (a
    2-D PCA or t-SNE, the raw features) keeps the classes together."""
    if not isinstance(points, torch.Tensor) or points.ndim != 2 or len(points) < 2:
        got = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"points must be a [N, D] tensor with N >= 2, got {got}")
    if not isinstance(labels, torch.Tensor) or labels.shape != points.shape[:1]:
        raise ValueError(f"labels must be a tensor [N] = [{len(points)}]")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < len(points):
        raise ValueError(f"k must be an int in [1, {len(points) - 1}], got {k!r}")
    distances = torch.cdist(points.float(), points.float())
    distances.fill_diagonal_(float("inf"))
    neighbours = distances.topk(k, largest=False).indices  # [N, k]
    return (labels[neighbours] == labels[:, None]).float().mean().item()
