"""Checks shared by the tests of every detector with torchvision's contract (R-CNN family, YOLO,
DETR, Mask R-CNN): ``from detection_checks import ...`` (pytest puts tests/ on the path)."""

import pytest
import torch


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
