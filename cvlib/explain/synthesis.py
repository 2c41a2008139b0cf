"""Making images by gradient ascent on the input: class visualization, DeepDream, and
adversarial (fooling) images, FGSM and its iterative version."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvlib import _checks
from cvlib.explain.hooks import capture, check_images, pick_target, prepared, resolve_layer

__all__ = ["class_visualization", "deep_dream", "fgsm", "iterative_attack"]


def _blur(image: torch.Tensor, sigma: float = 0.5) -> torch.Tensor:
    """3x3 Gaussian blur of ``[B, 3, H, W]`` (the smoothness prior of class visualization)."""
    t = torch.tensor([-1.0, 0.0, 1.0], device=image.device)
    k1 = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = (k1[:, None] * k1[None, :]) / k1.sum() ** 2
    return F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernel.expand(3, 1, 3, 3), groups=3)


def class_visualization(
    model: nn.Module, target: int, size: int = 64, steps: int = 100, lr: float = 0.01,
    l2: float = 1e-3, blur_every: int = 5, seed: int = 0,
) -> torch.Tensor:
    """``I* = argmax_I S_c(I) - l2 ||I - 0.5||^2`` by gradient ascent, starting from grey plus
    noise, blurred every ``blur_every`` steps and kept in ``[0, 1]``. Returns ``[3, size, size]``."""
    _checks.module(model)
    _checks.integer(target, "target", low=0)
    for name, value in (("size", size), ("steps", steps), ("blur_every", blur_every)):
        _checks.integer(value, name, low=1)
    _checks.number(lr, "lr", low=0, low_open=True)
    _checks.number(l2, "l2", low=0)
    _checks.integer(seed, "seed", low=0)
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    image = (0.5 + 0.05 * torch.randn(1, 3, size, size, generator=generator)).to(device)
    with prepared(model):
        target = int(pick_target(model(image).detach(), target)[0])
        for step in range(steps):
            image.requires_grad_(True)
            objective = model(image)[0, target] - l2 * ((image - 0.5) ** 2).sum()
            (grad,) = torch.autograd.grad(objective, image)
            with torch.no_grad():
                image = image + lr * grad / grad.abs().mean().clamp(min=1e-12)
                if (step + 1) % blur_every == 0:
                    image = _blur(image)
                image = image.clamp(0, 1)
    return image[0].detach()


def deep_dream(
    model: nn.Module, image: torch.Tensor, layer: nn.Module | str, steps: int = 20, lr: float = 0.02
) -> torch.Tensor:
    """DeepDream: amplify what ``layer`` already sees, ascending ``||A(I)||^2 / 2`` with
    normalized gradient steps. ``[3, H, W]`` -> ``[3, H, W]`` in ``[0, 1]``."""
    image = check_images(_checks.tensor(image, "image", ndim=3)[None], "image", _checks.module(model))
    _checks.integer(steps, "steps", low=1)
    _checks.number(lr, "lr", low=0, low_open=True)
    with prepared(model) as handles, capture(resolve_layer(model, layer), handles) as store:
        for _ in range(steps):
            image.requires_grad_(True)
            model(image)
            (grad,) = torch.autograd.grad(store["output"].pow(2).sum() / 2, image)
            with torch.no_grad():
                image = (image + lr * grad / grad.abs().mean().clamp(min=1e-12)).clamp(0, 1)
    return image[0].detach()


def _loss_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, name: str) -> torch.Tensor:
    """Gradient of the cross-entropy of ``labels`` (the argument ``name``) for ``images``."""
    images = images.clone().requires_grad_(True)
    logits = model(images)
    if labels.min() < 0 or labels.max() >= logits.shape[1]:
        raise ValueError(f"{name} must be class indices in [0, {logits.shape[1]}), got {labels.tolist()}")
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, labels), images)
    return grad


def _labels(labels, images: torch.Tensor, name: str = "labels") -> torch.Tensor:
    """Class indices ``[B]`` from an int, a list of ints or an integer tensor (one, or one per image)."""
    try:
        labels = torch.as_tensor(labels, device=images.device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name} must be class indices, got {_checks.describe(labels)}") from error
    labels = _checks.tensor(labels, name, dtype="int").reshape(-1)
    if labels.shape[0] not in (1, images.shape[0]):
        raise ValueError(f"{name} must have one entry per image, got {labels.shape[0]} for {images.shape[0]}")
    return labels.expand(images.shape[0])


def fgsm(model: nn.Module, images: torch.Tensor, labels, eps: float = 0.03) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): ``I + eps * sign(dL/dI)`` with the
    cross-entropy ``L`` of the true ``labels``, clipped to ``[0, 1]``. ``[B, 3, H, W]`` -> same."""
    images = check_images(images, model=_checks.module(model))
    _checks.number(eps, "eps", low=0)
    with prepared(model):
        grad = _loss_gradient(model, images, _labels(labels, images), "labels")
    return (images + eps * grad.sign()).clamp(0, 1)


def iterative_attack(
    model: nn.Module, images: torch.Tensor, labels, eps: float = 0.03, step_size: float = 0.005,
    steps: int = 10, target=None, return_path: bool = False,
) -> torch.Tensor:
    """Iterative FGSM / PGD (Kurakin et al. 2017): ``steps`` sign steps of ``step_size``, each
    projected back to ``||I' - I||_inf <= eps`` and ``[0, 1]``. Untargeted (raise the loss of
    ``labels``) or, with ``target`` a class, a fooling image (lower the loss of ``target``).

    ``[B, 3, H, W]`` -> the adversarial images, same shape; with ``return_path=True`` every
    iterate instead, ``[steps + 1, B, 3, H, W]`` (index 0 is the input): one run shows the
    attack step by step (the first k steps of a run are the run with ``steps=k``)."""
    images = check_images(images, model=_checks.module(model))
    _checks.number(eps, "eps", low=0)
    _checks.number(step_size, "step_size", low=0, low_open=True)
    _checks.integer(steps, "steps", low=0)
    labels = _labels(labels, images)
    adversarial = images.clone()
    path = [adversarial]
    with prepared(model):
        goal = labels if target is None else _labels(target, images, "target")
        direction = 1.0 if target is None else -1.0
        for _ in range(steps):
            grad = _loss_gradient(model, adversarial, goal, "labels" if target is None else "target")
            adversarial = adversarial + direction * step_size * grad.sign()
            adversarial = (images + (adversarial - images).clamp(-eps, eps)).clamp(0, 1)
            path.append(adversarial)
    return torch.stack(path) if return_path else adversarial
