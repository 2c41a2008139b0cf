"""cvlib.models.ssd: default boxes on the cell centres of every map, the box coding is
torchvision's, the loss falls, hard negative mining, the detection contract and bad input."""

from __future__ import annotations

import pytest
import torch
from model_checks import (
    check_eval_contract,
    check_rejects_bad_input,
    check_trains_on_empty_images,
    totals,
    train_steps,
)

from cvlib.data import ShapesDataset, collate_detection
from cvlib.models.detection import DetectionSettings
from cvlib.models.ssd import BOX_WEIGHTS, SSD, default_boxes
from cvlib.ops import box_iou, decode_boxes, encode_boxes
from cvlib.ops.boxes import box_convert


def tiny(**kwargs):
    """A test-size SSD: width-4 backbone, two maps (strides 8 and 16) for 32 x 32 images."""
    return SSD(**{"width": 4, "scales": (8.0, 16.0), "aspect_ratios": (0.5, 1.0, 2.0), **kwargs})


def scenes(n=4, size=32, seed=0):
    return collate_detection(list(ShapesDataset(n, image_size=size, seed=seed, elongation=2)))


def test_default_boxes_sit_on_the_cell_centres_of_every_map():
    boxes = default_boxes([(4, 4), (2, 2)], [8, 16], [8.0, 16.0], [0.5, 1.0, 2.0])
    assert boxes.shape == (4 * 4 * 3 + 2 * 2 * 3, 4)
    cx, cy, w, h = box_convert(boxes, "xyxy", "cxcywh").unbind(1)
    fine, coarse = slice(0, 48), slice(48, None)
    assert set(cx[fine].tolist()) == {4.0, 12.0, 20.0, 28.0} and set(cy[coarse].tolist()) == {8.0, 24.0}
    torch.testing.assert_close((w * h)[fine].sqrt(), torch.full((48,), 8.0), atol=0.6, rtol=0)  # rounded
    ratios = (h / w)[coarse][:3]
    torch.testing.assert_close(ratios, torch.tensor([0.5, 1.0, 2.0]), atol=0.2, rtol=0)  # rounded


def test_box_coding_is_torchvisions_with_ssd_weights():
    from torchvision.models.detection._utils import BoxCoder

    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(20, 2, generator=generator) * 50
    references = torch.cat([xy, xy + 1 + torch.rand(20, 2, generator=generator) * 20], 1)
    xy = torch.rand(20, 2, generator=generator) * 50
    boxes = torch.cat([xy, xy + 1 + torch.rand(20, 2, generator=generator) * 20], 1)
    coder = BoxCoder(BOX_WEIGHTS)
    deltas = encode_boxes(boxes, references, BOX_WEIGHTS)
    torch.testing.assert_close(deltas, coder.encode_single(boxes, references))
    decoded = decode_boxes(deltas, references, BOX_WEIGHTS)
    torch.testing.assert_close(decoded, coder.decode_single(deltas, references))


def test_heads_give_one_prediction_per_default_box():
    model = tiny()
    logits, deltas, boxes = model.head(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 60, 4) and deltas.shape == (2, 60, 4) and boxes.shape == (60, 4)
    assert model.strides == (8, 16)


def test_loss_falls():
    model = tiny()
    images, targets = scenes()
    history = train_steps(model, lambda: model(images, targets), steps=15, lr=3e-3)
    assert set(history[-1]) == {"loss_class", "loss_box"}
    total = totals(history)
    assert sum(total[-3:]) / 3 < 0.6 * total[0], total


def test_hard_negative_mining_keeps_three_negatives_per_positive():
    """With every negative's class loss known, the class loss is the positives' plus the three
    hardest negatives' per positive, divided by the positives."""
    model = tiny(negatives_per_positive=3)
    boxes = default_boxes([(4, 4), (2, 2)], [8, 16], [8.0, 16.0], [0.5, 1.0, 2.0])
    target = {"boxes": boxes[5:6].clone(), "labels": torch.tensor([2])}  # one object = one default box
    logits = torch.zeros(1, 60, 4)
    logits[0, :, 1] = torch.arange(60.0) / 10  # negatives: the higher the index, the harder
    losses = model.loss(logits, torch.zeros(1, 60, 4), boxes, [target])
    positive = box_iou(boxes, target["boxes"])[:, 0] >= 0.5  # SSD's match (the object is a default box)
    classes = torch.where(positive, 2, 0)
    cross_entropy = torch.nn.functional.cross_entropy(logits[0], classes, reduction="none")
    negatives = [i for i in range(59, -1, -1) if not positive[i]][: 3 * int(positive.sum())]  # the hardest
    expected = (cross_entropy[positive].sum() + cross_entropy[negatives].sum()) / positive.sum()
    torch.testing.assert_close(losses["loss_class"], expected)


def test_eval_contract_and_empty_images():
    pairs = check_eval_contract(tiny(settings=DetectionSettings(0.0)))
    assert all(len(out["scores"]) > 0 for _, out in pairs)
    model = tiny()
    images, targets = scenes(2)
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = check_trains_on_empty_images(model, images[0], targets[0], empty)
    assert losses["loss_box"] == 0 and losses["loss_class"] == 0  # SSD mines no negative without a positive


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"width": 0}, "width"), ({"scales": ()}, "scales"), ({"scales": (8.0, -1.0)}, "scales"),
     ({"aspect_ratios": (0.0,)}, "aspect_ratios"), ({"fg_iou": 1.5}, "fg_iou"),
     ({"negatives_per_positive": -1}, "negatives_per_positive"), ({"settings": "fast"}, "settings")],
)
def test_bad_settings(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SSD(**kwargs)


def test_bad_input():
    images, targets = scenes(1)
    check_rejects_bad_input(tiny(), images, targets)
    with pytest.raises(ValueError, match="one entry per map"):
        default_boxes([(4, 4)], [8, 16], [8.0], [1.0])
    with pytest.raises(ValueError, match="feature_sizes"):
        default_boxes([], [], [], [1.0])


@pytest.mark.parametrize("name", [f"{recipe}{seed}" for recipe in ("yolo_elongated", "yolo_anchors", "ssd")
                                  for seed in ("", "_seed1")])
def test_shipped_anchor_models_reproduce_their_recorded_metrics(name):
    """The models of notebook 06's anchor comparison (both seeds): the metrics recorded with each
    checkpoint come from the file that ships (the recipe's own evaluation, run again)."""
    from cvlib import recipes, weights

    recorded = weights.load(name)["meta"]["metrics"]
    measured = recipes.evaluate_on_elongated(recipes.load_model(name), torch.device("cpu"))
    assert measured == pytest.approx(recorded, abs=2e-3)
