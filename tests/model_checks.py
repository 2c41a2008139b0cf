"""Checks shared by the model tests: ``from model_checks import ...`` (pytest puts tests/ on the
path). ``train_steps`` for every "the loss falls" test; ``check_rejects_bad_input`` for every
detector with torchvision's contract (R-CNN family, YOLO, DETR, Mask R-CNN)."""

from collections.abc import Callable

import pytest
import torch
from torch import nn


def train_steps(model: nn.Module, losses: Callable[[], dict], steps: int, lr: float) -> list[dict]:
    """``steps`` AdamW steps (learning rate ``lr``) on the sum of the loss dict that ``losses()``
    computes, always on the same batch. Returns each step's losses, detached: a list of
    ``{name: scalar tensor}``."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        step = losses()
        optimizer.zero_grad()
        sum(step.values()).backward()
        optimizer.step()
        history.append({name: value.detach() for name, value in step.items()})
    return history


def totals(history: list[dict]) -> list[float]:
    """The summed loss of every step of a :func:`train_steps` history."""
    return [sum(step.values()).item() for step in history]


def check_rejects_bad_input(model, images: list[torch.Tensor], targets: list[dict]) -> None:
    """``model`` in training mode raises an error naming the argument for: a batch tensor instead
    of a list, a 1-channel image, missing targets, a label outside ``1..3``, x2 < x1; and in eval
    mode for an empty list of images."""
    with pytest.raises(TypeError, match="images"):
        model(torch.rand(1, 3, 32, 32), targets)
    with pytest.raises(ValueError, match="images"):
        model([torch.rand(1, 32, 32)], targets)
    with pytest.raises(ValueError, match="targets"):
        model(images)
    bad = [{**targets[0], "labels": targets[0]["labels"] + 3}]
    with pytest.raises(ValueError, match="labels"):
        model(images, bad)
    bad = [{**targets[0], "boxes": targets[0]["boxes"][:, [2, 1, 0, 3]]}]
    with pytest.raises(ValueError, match="boxes"):
        model(images, bad)
    with pytest.raises(ValueError, match="images"):
        model.eval()([])
