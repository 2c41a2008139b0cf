"""What every explanation method shares: put the model in a clean state and always restore it.

Every function of :mod:`cvlib.explain` runs inside :func:`prepared`, which puts the model in
eval mode with its parameters frozen (only the input, or a chosen activation, gets gradients)
and, on the way out, even when an exception is raised, removes every hook it registered and
restores ``requires_grad`` of every parameter and the train/eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from cvlib import _checks

__all__ = ["prepared", "resolve_layer", "check_images", "pick_target", "capture"]


@contextmanager
def prepared(model: nn.Module) -> Iterator[list]:
    """Eval mode, parameters frozen, gradients on (also inside a caller's ``torch.no_grad()``);
    yields a list where callers put their hook handles.

    On exit the handles are removed and ``requires_grad`` / ``training`` are restored.
    """
    _checks.module(model)
    requires_grad = [p.requires_grad for p in model.parameters()]
    modes = [m.training for m in model.modules()]
    handles: list = []
    try:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        with torch.enable_grad():
            yield handles
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in zip(model.parameters(), requires_grad):
            p.requires_grad_(flag)
        for m, mode in zip(model.modules(), modes):
            m.training = mode


def resolve_layer(model: nn.Module, layer: nn.Module | str, name: str = "layer") -> nn.Module:
    """``layer`` as a submodule of ``model``: a module, or its dotted name (``"features.6"``);
    errors call it ``name`` (the caller's argument)."""
    _checks.module(model)
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError as error:
            names = [n for n, _ in model.named_modules() if n]
            raise ValueError(f"{name} {layer!r} is not a submodule of the model; "
                             f"some names: {names[:12]}") from error
    if isinstance(layer, nn.Module) and any(m is layer for m in model.modules()):
        return layer
    raise ValueError(f"{name} must be a submodule of the model or its name, got {_checks.describe(layer)}")


def check_images(images: torch.Tensor, name: str = "images", model: nn.Module | None = None) -> torch.Tensor:
    """``images`` must be a finite float tensor ``[B, 3, H, W]``, ``B >= 1`` (of the dtype of
    ``model``'s parameters when given, else float32); returns it detached."""
    _checks.images(images, name, like=model)
    if model is None and images.dtype != torch.float32:
        raise ValueError(f"{name} must be float32, got {images.dtype}")
    return images.detach()


def pick_target(logits: torch.Tensor, target: int | torch.Tensor | None) -> torch.Tensor:
    """Class index per image ``[B]`` (long): the predicted class when ``target`` (an int, or
    an integer tensor of one index or one per image) is None."""
    batch, num_classes = _checks.tensor(logits, "logits", shape=("B", "C"), dtype="float", finite=True).shape
    if target is None:
        return logits.argmax(dim=1)
    if not isinstance(target, torch.Tensor):
        _checks.integer(target, "target")
    target = _checks.tensor(torch.as_tensor(target, device=logits.device), "target", dtype="int").reshape(-1)
    if len(target) not in (1, batch):
        raise ValueError(f"target must hold one class index or one per image ({batch}), got {len(target)}")
    target = target.long().expand(batch)
    if ((target < 0) | (target >= num_classes)).any():
        raise ValueError(f"target must be class indices in [0, {num_classes}), got {target.tolist()}")
    return target


@contextmanager
def capture(layer: nn.Module, handles: list) -> Iterator[dict]:
    """Forward hook storing ``layer``'s output in ``store["output"]`` (the handle goes in ``handles``)."""
    store: dict = {}

    def hook(_module, _inputs, output):
        store["output"] = output

    handles.append(layer.register_forward_hook(hook))
    yield store
