"""cvlib.models.detection: the last step of inference every detector shares, equal to
torchvision's (RoIHeads.postprocess_detections after decoding) on random candidates."""

from __future__ import annotations

import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st

from cvlib.models.detection import DetectionSettings, select_detections


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
