"""Checks shared by the model tests: ``from model_checks import ...`` (pytest puts tests/ on the
path). ``train_steps`` for every "the loss falls" test; ``check_rejects_bad_input``,
``check_eval_contract`` and ``check_trains_on_empty_images`` for every detector with
torchvision's contract (R-CNN family, YOLO, DETR, Mask R-CNN)."""

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
    """``model`` in training mode raises an error naming the public argument (``images``,
    ``images[0]``, ``targets``, ``targets[0]['labels']``, ``targets[0]['boxes']``; never an
    internal name such as ``boxes2``) for: a batch tensor instead of a list, a 1-channel, uint8,
    float64 or NaN image, missing targets, a label outside ``1..3``, x2 < x1, an inf or NaN
    box; and in eval mode for an empty list of images."""
    with pytest.raises(TypeError, match="images must be a list"):
        model(torch.rand(1, 3, 32, 32), targets)
    for image in (torch.rand(1, 32, 32), images[0].mul(255).byte(), images[0].double(),
                  images[0].clone().fill_(float("nan"))):
        with pytest.raises(ValueError, match=r"^images\[0\] "):
            model([image], targets)
    with pytest.raises(ValueError, match="^targets are required"):
        model(images)
    bad = [{**targets[0], "labels": targets[0]["labels"] + 3}]
    with pytest.raises(ValueError, match=r"^targets\[0\]\['labels'\] must lie in 1..3"):
        model(images, bad)
    bad = [{**targets[0], "boxes": targets[0]["boxes"][:, [2, 1, 0, 3]]}]
    with pytest.raises(ValueError, match=r"^targets\[0\]\['boxes'\] must be xyxy"):
        model(images, bad)
    for value in (float("inf"), float("nan")):
        boxes = targets[0]["boxes"].clone()
        boxes[0, 2] = value
        with pytest.raises(ValueError, match=r"^targets\[0\]\['boxes'\] contains (NaN|inf)"):
            model(images, [{**targets[0], "boxes": boxes}])
    with pytest.raises(ValueError, match="^images must not be empty"):
        model.eval()([])


def check_eval_contract(model, keys=("boxes", "labels", "scores")) -> list[tuple[torch.Tensor, dict]]:
    """Run ``model`` in eval mode on three images (random, blank, and a 24 x 40 one) and check
    torchvision's output contract: a list of one dict per image with exactly ``keys``; ``boxes``
    float32 ``[n, 4]`` xyxy inside the image, ``labels`` int64 ``[n]`` in ``1..3``, ``scores`` in
    ``(0, 1]`` sorted high to low, ``n <= 100``; the model also runs outside ``no_grad``.
    Returns the ``(image, output)`` pairs for the model's own checks."""
    images = [torch.rand(3, 32, 32), torch.zeros(3, 32, 32), torch.rand(3, 24, 40)]
    with torch.no_grad():
        outputs = model.eval()(images)
    assert len(model(images[:1])) == 1  # also without no_grad, as torchvision's models
    assert isinstance(outputs, list) and len(outputs) == 3
    assert any(len(out["scores"]) for out in outputs), "no detection at all: the checks below ran on nothing"
    for image, out in zip(images, outputs):
        assert set(out) == set(keys)
        n = len(out["scores"])
        assert n <= 100
        assert out["boxes"].shape == (n, 4) and out["boxes"].dtype == torch.float32
        assert out["labels"].shape == (n,) and out["labels"].dtype == torch.int64
        if n:
            assert out["labels"].min() >= 1 and out["labels"].max() <= 3
            assert (out["scores"] > 0).all() and (out["scores"] <= 1).all()
            assert (out["scores"][:-1] >= out["scores"][1:]).all()
            assert (out["boxes"][:, 2:] >= out["boxes"][:, :2]).all() and (out["boxes"] >= 0).all()
            height, width = image.shape[1:]
            assert out["boxes"][:, 0::2].max() <= width and out["boxes"][:, 1::2].max() <= height
    return list(zip(images, outputs))


def check_trains_on_empty_images(model, image: torch.Tensor, target: dict, empty: dict) -> dict:
    """A training batch where one of two 32 x 32 images has no object (target ``empty``), then
    one where no image has any: the losses are finite and the second batch backpropagates.
    Returns the losses of that all-empty batch."""
    losses = model([image, torch.rand(3, 32, 32)], [target, empty])
    assert all(torch.isfinite(v) for v in losses.values())
    losses = model([torch.rand(3, 32, 32)], [empty])  # no object in the whole batch
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    return losses
