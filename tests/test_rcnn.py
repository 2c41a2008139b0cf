"""cvlib.models.rcnn: R-CNN, Fast R-CNN and Faster R-CNN learn, follow torchvision's detection
contract (empty images included), equal torchvision's FasterRCNN with the same weights, and
reject bad input."""

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

from cvlib.data import ShapesDataset, collate_detection
from cvlib.models.rcnn import (
    RCNN,
    RoIHeads,
    build_fast_rcnn,
    build_faster_rcnn,
    segment_boxes,
    segment_proposals,
    touching_segments,
    window_proposals,
)
from cvlib.models.rcnn_torchvision import torchvision_twin
from cvlib.models.rpn import RegionProposalNetwork
from cvlib.ops import box_iou

SMALL = {"sizes": (8, 12, 16), "stride": 4}  # proposals for 32 x 32 images


def tiny(kind: str, **kwargs):
    """Each model at a test size: width 4 backbone, 32 x 32 images."""
    if kind == "rcnn":
        return RCNN(width=4, crop_size=16, hidden=32, proposal_args=SMALL, **kwargs)
    if kind == "fast":
        return build_fast_rcnn(width=4, proposal_args=SMALL, output_size=4, hidden=32, **kwargs)
    return build_faster_rcnn(width=4, scales=(8.0, 16.0), output_size=4, hidden=32, **kwargs)


def scenes(n=4, size=32, seed=0):
    return collate_detection([ShapesDataset(n, image_size=size, seed=seed)[i] for i in range(n)])


KINDS = ["rcnn", "fast", "faster"]


def test_window_proposals_cover_the_objects():
    proposals = window_proposals(64)
    assert 1500 <= len(proposals) <= 2500  # about 2k, like selective search
    assert proposals.min() >= 0 and proposals.max() <= 64
    assert (proposals[:, 2:] > proposals[:, :2]).all()
    data = ShapesDataset(30, seed=3)
    best = torch.cat([box_iou(data[i][1]["boxes"], proposals).max(1).values for i in range(30)])
    assert (best >= 0.5).all()  # every object overlaps some window by IoU >= 0.5
    assert window_proposals((40, 64)).shape[1] == 4


def test_window_proposals_bad_input():
    with pytest.raises(ValueError, match="stride"):
        window_proposals(64, stride=0)


@given(st.integers(1, 6), st.integers(1, 12), st.integers(1, 12), st.integers(0, 10_000))
def test_segment_boxes_equal_torchvision_masks_to_boxes(count, height, width, seed):
    """The box of each segment is torchvision's masks_to_boxes of its mask, with the pixel
    spanning one unit (x2 = last column + 1)."""
    from torchvision.ops import masks_to_boxes

    segments = torch.randint(count, (height, width), generator=torch.Generator().manual_seed(seed))
    segments = segments.unique(return_inverse=True)[1]  # labels 0..S-1, all present
    masks = torch.stack([segments == k for k in range(int(segments.max()) + 1)])
    expected = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    torch.testing.assert_close(segment_boxes(segments), expected)


def test_touching_segments():
    segments = torch.tensor([[0, 0, 1],
                             [2, 2, 1],
                             [3, 3, 3]])
    assert touching_segments(segments).tolist() == [[0, 1], [0, 2], [1, 2], [1, 3], [2, 3]]
    assert touching_segments(torch.zeros(3, 3, dtype=torch.long)).shape == (0, 2)


def test_segment_proposals_look_at_the_image():
    """A few hundred boxes (not thousands of windows) and every object has one at IoU >= 0.7."""
    data = ShapesDataset(10, seed=3)
    for image, target in (data[i] for i in range(10)):
        proposals = segment_proposals(image)
        assert 10 <= len(proposals) <= 1000 and len(proposals.unique(dim=0)) == len(proposals)
        assert proposals.min() >= 0 and proposals.max() <= 64 and (proposals[:, 2:] > proposals[:, :2]).all()
        assert (box_iou(target["boxes"], proposals).max(1).values >= 0.7).all()


def test_segment_proposals_bad_input():
    with pytest.raises(ValueError, match="image"):
        segment_proposals(torch.zeros(64, 64))
    with pytest.raises(ValueError, match="scales"):
        segment_proposals(torch.zeros(3, 8, 8), scales=())


@pytest.mark.parametrize(
    "kind, pooler", [("rcnn", None), ("fast", "align"), ("fast", "pool"), ("faster", "align")]
)
def test_loss_falls(kind, pooler):
    model = tiny(kind, **({"pooler": pooler} if pooler else {}))
    images, targets = scenes()
    history = train_steps(model, lambda: model(images, targets), steps=12, lr=3e-3)
    assert set(history[-1]) >= {"loss_classifier", "loss_box_reg"}
    total = totals(history)
    assert sum(total[-3:]) / 3 < 0.7 * total[0], total


def test_faster_rcnn_reports_the_four_losses():
    losses = tiny("faster")(*scenes(2))
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    assert all(v.ndim == 0 and torch.isfinite(v) and v.requires_grad for v in losses.values())


@pytest.mark.parametrize("kind", KINDS)
def test_empty_images_train_and_predict(kind):
    model = tiny(kind)
    images, targets = scenes(2)
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    check_trains_on_empty_images(model, images[0], targets[0], empty)


@pytest.mark.parametrize(
    "kind, pooler",
    [("rcnn", None), ("fast", "align"), ("fast", "pool"), ("faster", "align"), ("faster", "pool")],
)
def test_eval_contract(kind, pooler):
    for _, out in check_eval_contract(tiny(kind, **({"pooler": pooler} if pooler else {}))):
        assert (out["scores"] > 0.05).all()  # the default score_thresh


def test_extra_head_hook_sees_the_sampled_rois():
    """Mask R-CNN plugs a mask head into RoIHeads through extra_losses / extra_outputs."""
    seen = {}

    class WithExtra(RoIHeads):
        def extra_losses(self, features, rois, labels, matched, targets):
            seen.update(rois=rois, labels=labels, matched=matched)
            return {"loss_extra": features.sum() * 0}

        def extra_outputs(self, features, detections, image_sizes):
            return [{**d, "extra": torch.ones(len(d["boxes"]))} for d in detections]

    model = tiny("faster")
    model.roi_heads.__class__ = WithExtra
    images, targets = scenes(2)
    assert "loss_extra" in model(images, targets)
    for rois, labels, matched, target in zip(seen["rois"], seen["labels"], seen["matched"], targets):
        assert rois.shape == (len(labels), 4) and matched.shape == labels.shape
        positive = labels > 0
        assert torch.equal(target["labels"][matched[positive]], labels[positive])  # matched object's class
    assert all("extra" in d for d in model.eval()(images))


def test_rpn_head_follows_the_anchor_order():
    rpn = RegionProposalNetwork(8, stride=8, scales=(8.0, 16.0), aspect_ratios=(0.5, 1.0, 2.0))
    features = torch.randn(2, 8, 3, 5)
    objectness, deltas = rpn.head(features)
    anchors = rpn.anchors((3, 5))
    assert objectness.shape == (2, 3 * 5 * 6) and deltas.shape == (2, 3 * 5 * 6, 4)
    assert anchors.shape == (3 * 5 * 6, 4)
    # anchor k of cell (y, x) reads channel k of the 1x1 convs at (y, x)
    y, x, k = 2, 4, 5
    raw = rpn.cls_logits(torch.relu(rpn.conv(features)))
    assert torch.allclose(objectness[1, (y * 5 + x) * 6 + k], raw[1, k, y, x])
    assert torch.allclose(
        anchors[(y * 5 + x) * 6 + k, :2] + anchors[(y * 5 + x) * 6 + k, 2:], torch.tensor([64.0, 32.0])
    )


def test_equal_to_torchvision_with_the_same_weights():
    torch.manual_seed(0)
    model = tiny("faster")
    images, targets = scenes(4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(15):  # confident enough that detections pass the score threshold
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    twin = torchvision_twin(model, image_size=32).eval()
    model.eval()
    with torch.no_grad():
        ours, theirs = model(images), twin(images)
    assert sum(len(o["boxes"]) for o in ours) > 0
    for a, b in zip(ours, theirs):
        assert torch.equal(a["labels"], b["labels"])
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-4)
        assert torch.allclose(a["scores"], b["scores"], atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input(kind):
    model = tiny(kind)
    images, targets = scenes(1)
    check_rejects_bad_input(model, images, targets)


def test_torchvision_twin_of_a_fresh_model_trains():
    twin = torchvision_twin(tiny("faster"), image_size=32, copy_weights=False)
    assert set(twin(*scenes(2))) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
    with pytest.raises(ValueError, match="pooler"):
        torchvision_twin(tiny("faster", pooler="pool"))


def test_bad_settings():
    with pytest.raises(ValueError, match="pooler"):
        build_fast_rcnn(pooler="max")
    with pytest.raises(ValueError, match="crop_size"):
        RCNN(crop_size=30)
