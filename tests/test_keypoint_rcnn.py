"""cvlib.models.keypoint_rcnn: keypoint targets, loss and decoding equal torchvision's, the model
learns and follows torchvision's Keypoint R-CNN contract, the box baseline, bad input."""

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
from torchvision.models.detection.roi_heads import heatmaps_to_keypoints as tv_heatmaps_to_keypoints
from torchvision.models.detection.roi_heads import keypointrcnn_loss, keypoints_to_heatmap

from cvlib.data import ShapesDataset, collate_detection
from cvlib.data.shapes import CLASSES, KEYPOINT_SIGMAS, NUM_KEYPOINTS
from cvlib.metrics import evaluate_detections
from cvlib.models.keypoint_rcnn import (
    KeypointHead,
    KeypointRCNN,
    build_keypoint_rcnn,
    check_keypoints,
    heatmaps_to_keypoints,
    keypoint_loss,
    keypoint_targets,
    keypoints_from_boxes,
    mean_keypoint_layout,
)
from cvlib.models.mask_rcnn import build_mask_rcnn


def tiny(**kwargs):
    """A test-size Keypoint R-CNN for 32 x 32 images."""
    return build_keypoint_rcnn(width=4, scales=(8.0, 16.0), output_size=4, hidden=32, **kwargs)


def scenes(n=4, size=32, seed=0):
    data = ShapesDataset(n, image_size=size, seed=seed, keypoints=True)
    return collate_detection([data[i] for i in range(n)])


def random_rois(g: torch.Generator, k: int, size: float = 32) -> torch.Tensor:
    xy = torch.rand(k, 2, generator=g) * (size - 4)
    return torch.cat([xy, xy + 2 + torch.rand(k, 2, generator=g) * (size - xy - 2)], dim=1)


def random_keypoints(g: torch.Generator, rois: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Keypoints ``[R, k, 3]`` around each RoI (some outside it, some on its right or bottom edge,
    some unlabelled)."""
    size = (rois[:, 2:] - rois[:, :2])[:, None]
    xy = rois[:, None, :2] + (torch.rand(len(rois), k, 2, generator=g) * 1.4 - 0.2) * size
    on_edge = torch.rand(len(rois), k, generator=g) < 0.15
    xy[..., 0] = torch.where(on_edge, rois[:, 2, None], xy[..., 0])
    visibility = torch.randint(0, 3, (len(rois), k), generator=g).float()
    return torch.cat([xy, visibility[..., None]], dim=2)


@given(st.integers(0, 2**31 - 1), st.integers(0, 6), st.sampled_from([14, 56]))
def test_targets_and_loss_equal_torchvision(seed, r, size):
    g = torch.Generator().manual_seed(seed)
    rois = random_rois(g, r)
    keypoints = random_keypoints(g, rois)
    cells, valid = keypoint_targets(keypoints, rois, size)
    theirs, their_valid = keypoints_to_heatmap(keypoints, rois, size)
    assert torch.equal(cells, theirs) and torch.equal(valid, their_valid.bool())
    logits = torch.randn(r, 5, size, size, generator=g, requires_grad=True)
    ours = keypoint_loss(logits, cells, valid)
    # torchvision's loss matches the keypoints of each RoI's object itself (matched index)
    reference = keypointrcnn_loss(logits, [rois], [keypoints], [torch.arange(r)])
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5, abs=1e-6)
    ours.backward()  # connected to the graph, also when no keypoint is valid
    assert logits.grad is not None


@given(st.integers(0, 2**31 - 1), st.integers(1, 5))
def test_decoding_equals_torchvision_on_boxes_of_the_heatmap_size(seed, r):
    """With a box of exactly S x S pixels torchvision's bicubic resize changes nothing, so the two
    decodings give the same keypoint for any heatmap."""
    g = torch.Generator().manual_seed(seed)
    corners = torch.randint(0, 100, (r, 2), generator=g).float()  # widths exactly 56
    boxes = torch.cat([corners, corners + 56], dim=1)
    logits = torch.randn(r, 5, 56, 56, generator=g)
    ours = heatmaps_to_keypoints(logits, boxes)
    theirs, _ = tv_heatmaps_to_keypoints(logits, boxes)
    torch.testing.assert_close(ours[..., :2], theirs[..., :2], rtol=0, atol=1e-4)
    probabilities = logits.flatten(2).softmax(2)
    torch.testing.assert_close(ours[..., 2], probabilities.max(2).values)


@given(st.integers(0, 2**31 - 1), st.integers(1, 5))
def test_decoding_agrees_with_torchvision_on_a_peak(seed, r):
    """On any box, a single smooth peak gives keypoints within one heatmap cell plus one pixel of
    torchvision's (which rounds to its box-sized map), and within half a cell of the peak."""
    g = torch.Generator().manual_seed(seed)
    boxes = random_rois(g, r, size=64)
    peaks = torch.rand(r, 5, 2, generator=g) * 50 + 3  # in heatmap cells
    grid = torch.arange(56.0) + 0.5
    logits = -((grid[None, None, None, :] - peaks[..., 0, None, None]) ** 2
               + (grid[None, None, :, None] - peaks[..., 1, None, None]) ** 2) / 8
    ours = heatmaps_to_keypoints(logits, boxes)[..., :2]
    theirs, _ = tv_heatmaps_to_keypoints(logits, boxes)
    cell = (boxes[:, 2:] - boxes[:, :2])[:, None] / 56  # [R, 1, 2]: a cell in pixels
    assert ((ours - theirs[..., :2]).abs() <= cell + 1 + 1e-4).all()
    exact = boxes[:, None, :2] + peaks * cell
    assert ((ours - exact).abs() <= cell / 2 + 1e-4).all()


@given(st.integers(0, 2**31 - 1))
def test_one_hot_targets_decode_to_their_keypoints(seed):
    """Encoding then decoding a one-hot map gives the keypoint back to within half a cell."""
    g = torch.Generator().manual_seed(seed)
    rois = random_rois(g, 4)
    keypoints = random_keypoints(g, rois)
    cells, valid = keypoint_targets(keypoints, rois)
    logits = torch.zeros(4, 5, 56 * 56).scatter(2, cells[..., None], 30.0).reshape(4, 5, 56, 56)
    decoded = heatmaps_to_keypoints(logits, rois)
    cell = (rois[:, 2:] - rois[:, :2])[:, None] / 56
    error = (decoded[..., :2] - keypoints[..., :2]).abs()
    assert (error[valid] <= cell.expand_as(error)[valid] / 2 * 1.001 + 1e-4).all()
    assert (decoded[..., 2][valid] > 0.99).all()


def test_head_shapes():
    head = KeypointHead(16, 5)
    assert head(torch.randn(3, 16, 14, 14)).shape == (3, 5, 56, 56)
    assert head(torch.randn(0, 16, 14, 14)).shape == (0, 5, 56, 56)


def test_keypoint_loss_falls():
    torch.manual_seed(0)
    model = tiny()
    images, targets = scenes()
    history = train_steps(model, lambda: model(images, targets), steps=40, lr=3e-3)
    losses = [step["loss_keypoint"].item() for step in history]
    assert set(history[-1]) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg",
                                "loss_mask", "loss_keypoint"}
    assert losses[0] == pytest.approx(torch.log(torch.tensor(56.0**2)).item(), abs=0.5)  # a flat map at first
    # at least one nat lower: e times more probability on the true cells than at the start
    assert sum(losses[-3:]) / 3 < losses[0] - 1, losses


def test_empty_images_train():
    model = tiny()
    images, targets = scenes(2)
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
             "masks": torch.zeros((0, 32, 32), dtype=torch.bool), "keypoints": torch.zeros((0, 5, 3))}
    losses = check_trains_on_empty_images(model, images[0], targets[0], empty)
    assert losses["loss_keypoint"] == 0


def test_eval_contract():
    torch.manual_seed(0)
    model = tiny()
    model.settings.score_thresh = 0.0  # an untrained model: keep its detections
    pairs = check_eval_contract(model, keys=("boxes", "labels", "scores", "masks", "keypoints"))
    assert sum(len(out["boxes"]) for _, out in pairs) > 0
    for _, out in pairs:
        assert out["keypoints"].shape == (len(out["scores"]), 5, 3)
        assert out["keypoints"].dtype == torch.float32
        boxes, points = out["boxes"], out["keypoints"]
        assert ((points[..., 0] >= boxes[:, None, 0]) & (points[..., 0] <= boxes[:, None, 2])).all()
        assert ((points[..., 2] > 0) & (points[..., 2] <= 1)).all()
    model.settings.score_thresh = 1.0  # no detections at all
    with torch.no_grad():
        out = model([pairs[0][0]])[0]
    assert out["keypoints"].shape == (0, 5, 3)
    target = scenes(1)[1][0]
    metrics = evaluate_detections([out], [target], "keypoints", max_detections=20, sigmas=KEYPOINT_SIGMAS)
    assert metrics["map"] == 0


def test_bad_input():
    model = tiny()
    images, targets = scenes(2)
    check_rejects_bad_input(model, images[:1], targets[:1])
    model.train()
    no_keypoints = [{k: v for k, v in t.items() if k != "keypoints"} for t in targets]
    with pytest.raises(TypeError, match=r"targets\[0\] must be a dict with .*'keypoints'"):
        model(images, no_keypoints)
    wrong = [{**t, "keypoints": t["keypoints"][:, :3]} for t in targets]
    with pytest.raises(ValueError, match=r"targets\[0\]\['keypoints'\] must have shape \[\d+, 5, 3\]"):
        model(images, wrong)
    with pytest.raises(ValueError, match="num_keypoints"):
        tiny(num_keypoints=0)
    with pytest.raises(TypeError, match="roi_heads must be a KeypointRoIHeads"):
        KeypointRCNN(model.backbone, model.rpn, build_mask_rcnn(width=4).roi_heads)
    with pytest.raises(ValueError, match="targets"):
        keypoint_loss(torch.zeros(1, 1, 4, 4), torch.tensor([[16]]), torch.tensor([[True]]))
    with pytest.raises(ValueError, match="heatmap_logits"):
        heatmaps_to_keypoints(torch.zeros(2, 1, 4, 4), torch.tensor([[0.0, 0, 4, 4]]))
    with pytest.raises(TypeError, match="targets"):
        check_keypoints(["x"], 5)


def test_box_baseline_places_square_corners_at_box_corners():
    """The baseline learns each class's average layout: a square's corners at its box's corners,
    a circle's centre at the box centre; on the true boxes of squares it is off by about a pixel."""
    train = [ShapesDataset(300, seed=0, keypoints=True)[i][1] for i in range(300)]
    layout = mean_keypoint_layout(train, len(CLASSES))
    assert layout.shape == (4, NUM_KEYPOINTS, 2)
    square, circle = CLASSES.index("square") + 1, CLASSES.index("circle") + 1
    corners = torch.tensor([[0.0, 0], [1, 0], [1, 1], [0, 1]])
    torch.testing.assert_close(layout[square, :4], corners, atol=0.03, rtol=0)
    torch.testing.assert_close(layout[circle, 0], torch.tensor([0.5, 0.5]), atol=0.03, rtol=0)
    assert (layout[square, 4] == 0.5).all()  # a square has no fifth keypoint: the box's centre
    _, target = ShapesDataset(1, seed=0, keypoints=True)[0]
    placed = keypoints_from_boxes(target["boxes"], target["labels"], layout)
    assert placed.shape == (len(target["boxes"]), NUM_KEYPOINTS, 3) and (placed[..., 2] == 1).all()
    none = keypoints_from_boxes(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), layout)
    assert none.shape == (0, 5, 3)
    with pytest.raises(ValueError, match="labels"):
        keypoints_from_boxes(target["boxes"], target["labels"] + 5, layout)
    with pytest.raises(ValueError, match="labels"):
        mean_keypoint_layout(train, 1)


def test_shipped_keypoint_rcnn_reproduces_its_recorded_metrics():
    """The held-out metrics recorded with data/weights/keypoint_rcnn.pt come from the file that
    ships: its keypoints and the baseline's, evaluated again, give the same numbers."""
    from cvlib import weights
    from cvlib.data import held_out_detection
    from cvlib.recipes import keypoint_metrics, load_model
    from cvlib.train import detect

    recorded = weights.load("keypoint_rcnn")["meta"]["metrics"]
    images, targets = held_out_detection(200, keypoints=True)
    measured = keypoint_metrics(detect(load_model("keypoint_rcnn"), images), targets)
    keys = [k for k in recorded if "keypoint" in k]
    assert len(keys) >= 6
    assert {k: measured[k] for k in keys} == pytest.approx({k: recorded[k] for k in keys}, abs=2e-3)
