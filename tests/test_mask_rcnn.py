"""cvlib.models.mask_rcnn: mask targets and loss equal torchvision's, pasted masks land in their
boxes, the model learns, follows torchvision's contract (masks, empty images) and rejects bad
input; the shipped checkpoints reach the issue's mask AP."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from model_checks import (
    check_eval_contract,
    check_rejects_bad_input,
    check_trains_on_empty_images,
    train_steps,
)
from torchvision.models.detection.roi_heads import maskrcnn_loss, project_masks_on_boxes

from cvlib.data import ShapesDataset, collate_detection
from cvlib.metrics import evaluate_detections
from cvlib.models.mask_rcnn import build_mask_rcnn, mask_loss, paste_masks, project_masks, softmax_mask_loss


def tiny(**kwargs):
    """A test-size Mask R-CNN for 32 x 32 images."""
    return build_mask_rcnn(width=4, scales=(8.0, 16.0), output_size=4, hidden=32, **kwargs)


def scenes(n=4, size=32, seed=0):
    return collate_detection([ShapesDataset(n, image_size=size, seed=seed)[i] for i in range(n)])


def random_rois(g: torch.Generator, k: int, size: int = 32) -> torch.Tensor:
    xy = torch.rand(k, 2, generator=g) * (size - 4)
    return torch.cat([xy, xy + 2 + torch.rand(k, 2, generator=g) * (size - xy - 2)], dim=1)


@given(st.integers(0, 2**31 - 1), st.integers(0, 6), st.sampled_from([14, 28]))
def test_mask_targets_and_loss_equal_torchvision(seed, k, size):
    g = torch.Generator().manual_seed(seed)
    gt_masks = torch.rand(3, 32, 32, generator=g) > 0.5
    gt_labels = torch.tensor([1, 3, 2])
    rois = random_rois(g, k)
    matched = torch.randint(0, 3, (k,), generator=g)
    ours = project_masks(gt_masks, rois, matched, size, aligned=False)
    assert torch.allclose(ours, project_masks_on_boxes(gt_masks, rois, matched, size), atol=1e-6)
    logits = torch.randn(k, 4, size, size, generator=g)
    expected = maskrcnn_loss(logits, [rois], [gt_masks], [gt_labels], [matched])
    assert torch.allclose(mask_loss(logits, gt_labels[matched], ours), expected, atol=1e-6)


def test_mask_loss_uses_the_ground_truth_class_only():
    logits = torch.zeros(2, 4, 28, 28, requires_grad=True)
    mask_loss(logits, torch.tensor([1, 3]), torch.ones(2, 28, 28)).backward()
    touched = logits.grad.abs().sum(dim=(2, 3)) > 0  # [K, C + 1]
    assert touched.tolist() == [[False, True, False, False], [False, False, False, True]]


def round_trip_iou(aligned: bool) -> torch.Tensor:
    """IoU of each object mask with itself cut out at its box (28 x 28) and pasted back."""
    ious = []
    for _, target in ShapesDataset(50, seed=4):
        masks, boxes = target["masks"], target["boxes"]
        cut = project_masks(masks, boxes, torch.arange(len(boxes)), aligned=aligned)
        pasted = paste_masks(cut, boxes, (64, 64))[:, 0] > 0.5
        ious.append((pasted & masks).flatten(1).sum(1) / (pasted | masks).flatten(1).sum(1))
    return torch.cat(ious)


def test_softmax_mask_loss_lets_classes_compete():
    logits = torch.zeros(1, 4, 2, 2, requires_grad=True)
    target = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    loss = softmax_mask_loss(logits, torch.tensor([2]), target)
    assert loss.item() == pytest.approx(torch.log(torch.tensor(4.0)).item())  # uniform over C + 1 = 4
    loss.backward()
    assert (logits.grad[0, :, 0, 0] != 0).all()  # every class's map is pushed at every pixel
    assert logits.grad[0, 2, 0, 0] < 0 and logits.grad[0, 0, 1, 1] < 0  # up: class 2 / background


def test_paste_round_trips_the_object_masks():
    assert round_trip_iou(aligned=True).min() == 1.0  # exactly back where it came from
    legacy = round_trip_iou(aligned=False)  # torchvision's targets: half a pixel off
    assert 0.7 < legacy.min() < 0.8 and legacy.mean() < 0.95


def test_paste_masks_stays_in_the_box():
    boxes = torch.tensor([[4.0, 8.0, 20.0, 16.0], [0.0, 0.0, 48.0, 32.0]])
    pasted = paste_masks(torch.ones(2, 28, 28), boxes, (32, 48))
    assert pasted.shape == (2, 1, 32, 48)
    assert pasted[0, 0, 9:15, 5:19].min() == 1 and pasted[0, 0].sum() == pytest.approx(16 * 8, abs=1e-3)
    assert pasted[0, 0, :8].max() == 0 and pasted[0, 0, :, 21:].max() == 0
    assert pasted[1].min() == 1  # the whole image
    assert paste_masks(torch.zeros(0, 28, 28), torch.zeros(0, 4), (32, 48)).shape == (0, 1, 32, 48)


@pytest.mark.parametrize(
    "mask_pooler, loss", [("align", "sigmoid"), ("pool", "sigmoid"), ("align", "softmax")], ids=str
)
def test_mask_loss_falls(mask_pooler, loss):
    torch.manual_seed(0)
    model = tiny(mask_pooler=mask_pooler, mask_loss_type=loss)
    images, targets = scenes()
    history = train_steps(model, lambda: model(images, targets), steps=25, lr=3e-3)
    mask_losses = [step["loss_mask"].item() for step in history]
    assert set(history[-1]) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg",
                                "loss_mask"}
    assert sum(mask_losses[-3:]) / 3 < 0.8 * mask_losses[0], mask_losses


def test_empty_images_train():
    model = tiny()
    images, targets = scenes(2)
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros((0, 32, 32), dtype=torch.bool)}
    losses = check_trains_on_empty_images(model, images[0], targets[0], empty)
    assert losses["loss_mask"] == 0  # no object, so no positive RoI, in the batch


@pytest.mark.parametrize("loss", ["sigmoid", "softmax"])
def test_eval_contract(loss):
    torch.manual_seed(0)
    model = tiny(mask_loss_type=loss)
    model.settings.score_thresh = 0.0  # an untrained model: keep its detections
    pairs = check_eval_contract(model, keys=("boxes", "labels", "scores", "masks"))
    assert sum(len(out["boxes"]) for _, out in pairs) > 0
    images = [image for image, _ in pairs]
    for image, out in pairs:
        n = len(out["scores"])
        assert out["masks"].shape == (n, 1, *image.shape[1:]) and out["masks"].dtype == torch.float32
        if n:
            assert out["masks"].min() >= 0 and out["masks"].max() <= 1
    model.settings.score_thresh = 1.0  # no detections at all
    with torch.no_grad():
        out = model(images[:1])[0]
    assert out["masks"].shape == (0, 1, 32, 32)
    assert evaluate_detections([out], [scenes(1)[1][0]], iou_type="segm")["map"] == 0


def test_bad_input():
    model = tiny()
    images, targets = scenes(2)
    check_rejects_bad_input(model, images[:1], targets[:1])
    model.train()
    no_masks = [{k: v for k, v in t.items() if k != "masks"} for t in targets]
    with pytest.raises(ValueError, match=r"targets\[0\]\['masks'\] must be a bool tensor"):
        model(images, no_masks)
    wrong = [{**t, "masks": t["masks"][:, :16]} for t in targets]
    with pytest.raises(ValueError, match=r"targets\[0\]\['masks'\].*\(\d+, 32, 32\)"):
        model(images, wrong)
    with pytest.raises(ValueError, match="mask_pooler"):
        tiny(mask_pooler="max")
    with pytest.raises(ValueError, match="mask_loss_type"):
        tiny(mask_loss_type="dice")
    with pytest.raises(ValueError, match="targets are required"):
        model(images)
