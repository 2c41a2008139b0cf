"""cvlib.models.yolo: the grid targets round-trip to the boxes, the loss falls, the model follows
torchvision's detection contract (images without objects included) and rejects bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from model_checks import (
    check_eval_contract,
    check_rejects_bad_input,
    check_trains_on_empty_images,
    totals,
    train_steps,
)
from torch import nn

from cvlib.data import ShapesDataset, collate_detection
from cvlib.models.detection import Backbone, DetectionSettings
from cvlib.models.yolo import (
    YOLO,
    YOLOv2,
    anchor_grid_boxes,
    encode_anchor_targets,
    encode_targets,
    grid_boxes,
)
from cvlib.ops import box_iou


def tiny(**kwargs):
    """A test-size YOLO: width-4 backbone, for 32 x 32 images, a 4 x 4 grid unless told."""
    return YOLO(**{"width": 4, "grid_size": 4, **kwargs})


def scenes(n=4, size=32, seed=0):
    return collate_detection([ShapesDataset(n, image_size=size, seed=seed)[i] for i in range(n)])


def cells_of(boxes, grid_size, image_size):
    """(row, col) of the cell holding each box centre, ``[K, 2]``."""
    height, width = image_size
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    rows = (cy * grid_size / height).long().clamp(max=grid_size - 1)
    cols = (cx * grid_size / width).long().clamp(max=grid_size - 1)
    return torch.stack([rows, cols], dim=1)


def round_trip(boxes, labels, grid_size, image_size):
    """Encode then decode: the decoded box and label in the cell of every box, and which
    boxes have their cell to themselves."""
    encoded = encode_targets(boxes, labels, grid_size, image_size)
    decoded = grid_boxes(encoded["params"][:, :, None], image_size)[..., 0, :]  # [S, S, 4]
    rows, cols = cells_of(boxes, grid_size, image_size).unbind(1)
    shared = (rows[:, None] == rows) & (cols[:, None] == cols)
    alone = shared.sum(1) == 1
    assert encoded["object"].sum() == len(set(zip(rows.tolist(), cols.tolist())))
    assert (encoded["labels"] > 0).equal(encoded["object"])
    return decoded[rows, cols], encoded["labels"][rows, cols], alone


@pytest.mark.parametrize("grid_size", [1, 4, 7, 8, 13])
def test_encode_decode_round_trip_on_scenes(grid_size):
    lost = 0
    for image, target in ShapesDataset(40, seed=2):
        boxes, labels = target["boxes"], target["labels"]
        decoded, decoded_labels, alone = round_trip(boxes, labels, grid_size, image.shape[1:])
        torch.testing.assert_close(decoded[alone], boxes[alone])
        assert decoded_labels[alone].equal(labels[alone])
        lost += int((~alone).sum())
    assert lost > 0 or grid_size > 1  # a 1 x 1 grid holds one object per image


@given(st.integers(0, 10_000), st.integers(1, 16), st.integers(16, 80), st.integers(16, 80))
def test_encode_decode_round_trip_random_boxes(seed, grid_size, height, width):
    g = torch.Generator().manual_seed(seed)
    corners = torch.rand(5, 2, 2, generator=g) * torch.tensor([width, height])
    boxes = torch.cat([corners.min(1).values, corners.max(1).values], dim=1)
    labels = torch.randint(1, 4, (5,), generator=g)
    decoded, decoded_labels, alone = round_trip(boxes, labels, grid_size, (height, width))
    torch.testing.assert_close(decoded[alone], boxes[alone], atol=1e-4, rtol=1e-5)
    assert decoded_labels[alone].equal(labels[alone])


def test_shared_cell_keeps_the_later_object():
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [2.0, 2.0, 8.0, 6.0]])  # both centres in cell (0, 0)
    encoded = encode_targets(boxes, torch.tensor([1, 2]), 4, (32, 32))
    assert encoded["object"].sum() == 1 and encoded["labels"][0, 0] == 2
    torch.testing.assert_close(grid_boxes(encoded["params"][:, :, None], (32, 32))[0, 0, 0], boxes[1])


def test_encoded_params():
    boxes = torch.tensor([[8.0, 16.0, 24.0, 20.0]])  # centre (16, 18), size 16 x 4 in 32 x 32
    encoded = encode_targets(boxes, torch.tensor([3]), 4, (32, 32))  # cells of 8 x 8 pixels
    assert encoded["object"].nonzero().tolist() == [[2, 2]]
    torch.testing.assert_close(encoded["params"][2, 2], torch.tensor([0.0, 0.25, 0.5 ** 0.5, 0.125 ** 0.5]))
    empty = encode_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 4, (32, 32))
    assert not empty["object"].any() and empty["params"].shape == (4, 4, 4)


def test_encode_bad_input():
    with pytest.raises(ValueError, match="grid_size"):
        encode_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 0, (32, 32))
    with pytest.raises(ValueError, match="image_size"):
        encode_targets(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 4, (0, 32))
    with pytest.raises(ValueError, match="boxes"):
        encode_targets(torch.zeros(2, 5), torch.zeros(2, dtype=torch.int64), 4, (32, 32))
    with pytest.raises(ValueError, match="params"):
        grid_boxes(torch.zeros(4, 4, 4), (32, 32))


def test_output_shape_follows_s_b_c():
    for grid_size, boxes_per_cell, num_classes in [(4, 2, 3), (7, 1, 5), (3, 3, 1)]:
        model = tiny(grid_size=grid_size, boxes_per_cell=boxes_per_cell, num_classes=num_classes)
        output = model.head_output(torch.rand(2, 3, 32, 32))
        assert output.shape == (2, grid_size, grid_size, 5 * boxes_per_cell + num_classes)
        boxes, confidence, classes = model.split_output(output)
        assert boxes.shape == (2, grid_size, grid_size, boxes_per_cell, 4)
        assert ((boxes > 0) & (boxes < 1)).all()
        assert confidence.shape == (2, grid_size, grid_size, boxes_per_cell)
        assert classes.shape == (2, grid_size, grid_size, num_classes)


def test_any_backbone():
    class Tiny(nn.Module):
        out_channels = 6

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, stride=4, padding=1)

        def forward(self, x):
            return self.conv(x)

    model = YOLO(backbone=Tiny(), grid_size=5)
    assert model.head_output(torch.rand(1, 3, 32, 32)).shape == (1, 5, 5, 13)
    assert set(model(*scenes(2))) == {"loss_box", "loss_object", "loss_noobject", "loss_class"}
    assert isinstance(YOLO(width=4).backbone, Backbone)


@pytest.mark.parametrize("focal", [False, True])
def test_loss_falls(focal):
    model = tiny(focal=focal)
    images, targets = scenes()
    history = train_steps(model, lambda: model(images, targets), steps=15, lr=3e-3)
    assert set(history[-1]) == {"loss_box", "loss_object", "loss_noobject", "loss_class"}
    assert all(v.ndim == 0 and torch.isfinite(v) for v in history[-1].values())
    total = totals(history)
    assert sum(total[-3:]) / 3 < 0.6 * total[0], total


def test_focal_confidence_loss_is_smaller_on_easy_negatives():
    """At initialisation every confidence is about 0.01: easy negatives. The focal loss makes
    them almost free; binary cross-entropy with lambda_noobj does not."""
    images, targets = scenes(2)
    torch.manual_seed(0)
    plain = tiny()(images, targets)
    torch.manual_seed(0)
    focal = tiny(focal=True)(images, targets)
    assert focal["loss_noobject"] < 0.01 * plain["loss_noobject"]
    torch.testing.assert_close(focal["loss_box"], plain["loss_box"])
    torch.testing.assert_close(focal["loss_class"], plain["loss_class"])


def test_empty_images_train():
    model = tiny()
    images, targets = scenes(2)
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = check_trains_on_empty_images(model, images[0], targets[0], empty)
    assert losses["loss_box"] == 0 and losses["loss_class"] == 0 and losses["loss_object"] == 0


@pytest.mark.parametrize("focal", [False, True])
def test_eval_contract(focal):
    # threshold 0: many detections
    pairs = check_eval_contract(tiny(focal=focal, settings=DetectionSettings(0.0)))
    assert all(len(out["scores"]) > 0 for _, out in pairs)


def test_untrained_model_detects_nothing_at_the_default_threshold():
    """Confidences start near 0.01 (the prior of the bias), below score_thresh = 0.05: an
    image without objects gives an empty, well-formed result."""
    out = tiny().eval()([torch.zeros(3, 32, 32)])[0]
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,) and out["scores"].shape == (0,)


def test_nms_removes_duplicates():
    model = tiny(settings=DetectionSettings(score_thresh=0.0, nms_thresh=0.5)).eval()
    with torch.no_grad():
        out = model([torch.rand(3, 32, 32)])[0]
    for label in out["labels"].unique():
        boxes = out["boxes"][out["labels"] == label]
        iou = box_iou(boxes, boxes).fill_diagonal_(0)
        assert (iou <= 0.5).all()


def test_bad_input():
    model = tiny()
    images, targets = scenes(1)
    check_rejects_bad_input(model, images, targets)
    with pytest.raises(ValueError, match="grid_size"):
        YOLO(grid_size=0)


# ---------------------------------------------------------------------------------------------
# YOLO v2: anchor priors

PRIORS = torch.tensor([[6.0, 6.0], [12.0, 5.0], [5.0, 12.0]])


def tiny_v2(**kwargs):
    """A test-size YOLOv2: width-4 backbone, 4 x 4 grid, three priors (square, wide, tall)."""
    return YOLOv2(PRIORS, **{"width": 4, "grid_size": 4, **kwargs})


@given(st.integers(0, 10_000), st.integers(1, 9), st.integers(16, 80), st.integers(16, 80))
def test_anchor_encode_decode_round_trip_random_boxes(seed, grid_size, height, width):
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(6, 2, generator=generator) * torch.tensor([width, height])
    wh = 1 + torch.rand(6, 2, generator=generator) * torch.tensor([width, height]) / 2
    boxes = torch.cat([xy, xy + wh], 1)
    labels = torch.arange(1, 7)
    encoded = encode_anchor_targets(boxes, labels, PRIORS, grid_size, (height, width))
    decoded = anchor_grid_boxes(encoded["params"], PRIORS, (height, width))
    for box, label in zip(boxes, labels):  # every object whose slot it did not lose is decoded exactly
        slot = encoded["labels"] == label
        if slot.any():
            torch.testing.assert_close(decoded[slot][0], box, atol=1e-3, rtol=1e-5)
    assert encoded["object"].equal(encoded["labels"] > 0)


def test_anchor_targets_pick_the_prior_of_best_shape_and_match_torchvision_box_coder():
    """Two objects with centres in one cell: a wide one and a tall one go to the wide and the
    tall prior, both kept (YOLO v1 keeps one of them). ``t_w, t_h`` are the R-CNN deltas of the
    object against its prior centred on it (torchvision's BoxCoder, weights 1)."""
    from torchvision.models.detection._utils import BoxCoder

    boxes = torch.tensor([[4.0, 10.0, 20.0, 16.0], [9.0, 5.0, 15.0, 21.0]])  # centres (12, 13) and (12, 13)
    encoded = encode_anchor_targets(boxes, torch.tensor([1, 2]), PRIORS, 4, (32, 32))
    assert encoded["object"].sum() == 2
    assert encoded["labels"][1, 1].tolist() == [0, 1, 2]
    priors = torch.cat([torch.tensor([[12.0, 13.0]]).expand(2, 2) - PRIORS[1:] / 2,
                        torch.tensor([[12.0, 13.0]]).expand(2, 2) + PRIORS[1:] / 2], 1)
    expected = BoxCoder((1.0, 1.0, 1.0, 1.0)).encode_single(boxes, priors)
    torch.testing.assert_close(encoded["params"][1, 1, 1:, 2:], expected[:, 2:])
    torch.testing.assert_close(encoded["params"][1, 1, 1:, :2], torch.tensor([[0.5, 0.625], [0.5, 0.625]]))
    v1 = encode_targets(boxes, torch.tensor([1, 2]), 4, (32, 32))
    assert v1["object"].sum() == 1


def test_v2_output_shape_and_loss_falls():
    model = tiny_v2()
    images, targets = scenes()
    assert model.head_output(torch.stack(images)).shape == (4, 4, 4, 3 * (5 + 3))
    history = train_steps(model, lambda: model(images, targets), steps=15, lr=3e-3)
    assert set(history[-1]) == {"loss_box", "loss_object", "loss_noobject", "loss_class"}
    total = totals(history)
    assert sum(total[-3:]) / 3 < 0.6 * total[0], total


def test_v2_priors_are_saved_with_the_weights():
    model = tiny_v2()
    assert torch.equal(model.state_dict()["anchors"], PRIORS)
    other = YOLOv2(torch.ones(3, 2), width=4, grid_size=4)
    other.load_state_dict(model.state_dict())
    assert torch.equal(other.anchors, PRIORS)


def test_v2_eval_contract_and_empty_images():
    pairs = check_eval_contract(tiny_v2(settings=DetectionSettings(0.0)))
    assert all(len(out["scores"]) > 0 for _, out in pairs)
    model = tiny_v2()
    images, targets = scenes(2)
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = check_trains_on_empty_images(model, images[0], targets[0], empty)
    assert losses["loss_box"] == 0 and losses["loss_class"] == 0 and losses["loss_object"] == 0


def test_v2_bad_input():
    images, targets = scenes(1)
    check_rejects_bad_input(tiny_v2(), images, targets)
    for anchors in (torch.zeros(2, 2), torch.ones(2, 3), torch.ones(0, 2), torch.ones(2, 2).long()):
        with pytest.raises((ValueError, TypeError), match="anchors"):
            YOLOv2(anchors)
    with pytest.raises(ValueError, match="params"):
        anchor_grid_boxes(torch.zeros(4, 4, 2, 4), PRIORS, (32, 32))  # 2 predictors for 3 priors
    with pytest.raises(ValueError, match="labels"):
        encode_anchor_targets(torch.tensor([[0.0, 0, 4, 4]]), torch.tensor([0]), PRIORS, 4, (32, 32))
