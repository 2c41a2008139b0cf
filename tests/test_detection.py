"""cvlib.models.detection: the last step of inference every detector shares, equal to
torchvision's (RoIHeads.postprocess_detections after decoding) on random candidates."""

from __future__ import annotations

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from cvlib.models.detection import DetectionSettings, select_detections, select_per_class


def torchvision_selection(boxes, scores, labels, score_thresh, nms_thresh, detections_per_img, min_size):
    """The four steps as torchvision's RoIHeads writes them."""
    keep = torch.where(scores > score_thresh)[0]
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = torchvision.ops.remove_small_boxes(boxes, min_size)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = torchvision.ops.batched_nms(boxes, scores, labels, nms_thresh)[:detections_per_img]
    return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}


@st.composite
def candidates(draw):
    """``N`` clipped candidate boxes (some degenerate, some overlapping), scores, labels 1..3."""
    n = draw(st.integers(0, 60))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    xy = torch.rand(n, 2, generator=g) * 40
    wh = torch.rand(n, 2, generator=g) * 20
    wh[torch.rand(n, 2, generator=g) < 0.15] = 0  # lines and points: clipped away boxes
    boxes = torch.cat([xy, xy + wh], 1).clamp(0, 50)
    scores = torch.rand(n, generator=g)
    labels = torch.randint(1, 4, (n,), generator=g)
    return boxes, scores, labels


@given(
    candidates(),
    st.sampled_from([0.0, 0.05, 0.5]),
    st.sampled_from([0.3, 0.5, 0.7]),
    st.integers(1, 30),
    st.sampled_from([1e-3, 1e-2, 2.0]),
)
def test_select_detections_like_torchvision(candidates, score_thresh, nms_thresh, top, min_size):
    boxes, scores, labels = candidates
    settings = DetectionSettings(score_thresh, nms_thresh, top)
    ours = select_detections(boxes, scores, labels, settings, min_size)
    expected = torchvision_selection(boxes, scores, labels, score_thresh, nms_thresh, top, min_size)
    assert ours.keys() == expected.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], expected[key])


def test_select_detections_of_nothing():
    empty = select_detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    assert empty["boxes"].shape == (0, 4) and empty["scores"].shape == (0,) and empty["labels"].shape == (0,)


def test_settings_are_checked_when_used():
    """A setting changed on a trained model (``model.settings.nms_thresh = ...``) is checked at
    the next detection, not silently used."""
    settings = DetectionSettings()
    settings.nms_thresh = 1.5
    with pytest.raises(ValueError, match="nms_thresh"):
        select_detections(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), settings)
    with pytest.raises(ValueError, match="detections_per_img"):
        DetectionSettings(detections_per_img=0)


@given(candidates(), st.integers(1, 4))
def test_select_per_class_is_every_box_and_class_a_candidate(candidates, num_classes):
    """One box for all classes ([N, 4]) or one per class ([N, C, 4]): the same as listing the
    (box, class) pairs box by box and calling select_detections."""
    boxes, _, _ = candidates
    g = torch.Generator().manual_seed(len(boxes))
    scores = torch.rand(len(boxes), num_classes, generator=g)
    settings = DetectionSettings(0.3, 0.5, 20)
    labels = torch.arange(1, num_classes + 1).repeat(len(boxes))
    every_pair = boxes.repeat_interleave(num_classes, 0)
    expected = select_detections(every_pair, scores.reshape(-1), labels, settings)
    for shared_or_per_class in (boxes, boxes[:, None].repeat(1, num_classes, 1)):
        ours = select_per_class(shared_or_per_class, scores, settings)
        for key in expected:
            assert torch.equal(ours[key], expected[key])
    with pytest.raises(ValueError, match="boxes"):
        select_per_class(torch.zeros(len(boxes), num_classes + 1, 4), scores)
