"""cvlib.metrics: segmentation metrics, boundary F-score, matching, PR curves, AP interpolations.

The COCO evaluation is compared with pycocotools in ``test_metrics_coco.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cvlib.metrics import (
    average_precision_all_points,
    average_precision_coco,
    average_precision_voc11,
    boundary_f_score,
    boundary_mask,
    confusion_matrix,
    evaluate_detections,
    interpolated_precision,
    match_detections,
    mean_iou,
    per_class_iou,
    pixel_accuracy,
    precision_envelope,
    precision_recall,
)

# ----------------------------------------------------------------------------------------------
# segmentation
# ----------------------------------------------------------------------------------------------

PRED = torch.tensor([[0, 0, 1], [1, 2, 2]])
TARGET = torch.tensor([[0, 1, 1], [1, 2, 0]])


def test_confusion_matrix_and_ious_by_hand():
    cm = confusion_matrix(PRED, TARGET, num_classes=4)  # class 3 appears nowhere
    expected = [[1, 0, 1, 0], [1, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]  # rows = truth
    assert cm.dtype == torch.int64 and cm.tolist() == expected
    iou = per_class_iou(cm)
    assert iou[:3].tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 2]) and iou[3].isnan()
    assert mean_iou(cm) == pytest.approx(0.5)  # the absent class is left out
    assert pixel_accuracy(cm) == pytest.approx(4 / 6)


def test_class_only_predicted_counts_with_iou_zero():
    cm = confusion_matrix(torch.tensor([0, 1]), torch.tensor([0, 0]), num_classes=2)
    assert per_class_iou(cm).tolist() == [0.5, 0.0] and mean_iou(cm) == 0.25


def test_ignore_index_and_batches_add_up():
    target = TARGET.clone()
    target[0, 0] = 255
    cm = confusion_matrix(PRED, target, num_classes=3, ignore_index=255)
    assert cm.sum() == 5 and cm[0, 0] == 0
    both = confusion_matrix(torch.stack([PRED, PRED]), torch.stack([TARGET, target]), 3, 255)
    assert torch.equal(both, cm + confusion_matrix(PRED, TARGET, 3))


def test_empty_input_gives_zero_counts():
    cm = confusion_matrix(
        torch.zeros(0, 5, 5, dtype=torch.long), torch.zeros(0, 5, 5, dtype=torch.long), 3
    )
    assert cm.tolist() == [[0] * 3] * 3
    with pytest.raises(ValueError, match="confusion"):
        mean_iou(cm)
    with pytest.raises(ValueError, match="confusion"):
        pixel_accuracy(cm)


def _brute_force(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore: int):
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for p, t in zip(pred.ravel(), target.ravel(), strict=True):
        if t != ignore:
            cm[t, p] += 1
    ious = []
    for c in range(num_classes):
        inter = np.sum((pred == c) & (target == c))
        union = np.sum(((pred == c) | (target == c)) & (target != ignore))
        if union:
            ious.append(inter / union)
    accuracy = np.sum((pred == target) & (target != ignore)) / max(np.sum(target != ignore), 1)
    return cm, (np.mean(ious) if ious else None), accuracy


@st.composite
def label_maps(draw):
    num_classes = draw(st.integers(1, 5))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))
    pred = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, num_classes - 1)))
    target = draw(hnp.arrays(np.int64, shape, elements=st.sampled_from([*range(num_classes), 255])))
    return pred, target, num_classes


@given(label_maps())
def test_segmentation_metrics_match_brute_force(maps):
    pred, target, num_classes = maps
    cm = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), num_classes, 255)
    expected_cm, expected_miou, expected_accuracy = _brute_force(pred, target, num_classes, 255)
    np.testing.assert_array_equal(cm.numpy(), expected_cm)
    if expected_miou is None:
        return
    assert mean_iou(cm) == pytest.approx(expected_miou, abs=1e-12)
    assert pixel_accuracy(cm) == pytest.approx(expected_accuracy, abs=1e-12)


def _square(offset: int = 0, size: int = 32) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.long)
    mask[8:24, 8 + offset : 24 + offset] = 1
    return mask


def test_boundary_mask_is_two_pixels_thick():
    labels = torch.zeros(4, 6, dtype=torch.long)
    labels[:, 3:] = 2
    assert boundary_mask(labels).tolist() == [[False, False, True, True, False, False]] * 4


def test_boundary_f_score():
    target = _square()
    assert boundary_f_score(target, target) == 1.0
    assert boundary_f_score(_square(1), target, tolerance=1) == 1.0  # within tolerance
    shifted = [boundary_f_score(_square(4), target, tolerance=t) for t in (0, 1, 2)]
    assert shifted[0] < shifted[1] < shifted[2] < 1
    assert boundary_f_score(torch.zeros_like(target), torch.zeros_like(target)) == 1.0
    assert boundary_f_score(torch.zeros_like(target), target) == 0.0
    batch = boundary_f_score(torch.stack([target, _square(4)]), torch.stack([target, target]), 1)
    assert batch == pytest.approx((1 + shifted[1]) / 2)


def test_boundary_f_score_takes_bool_masks():
    assert boundary_f_score(_square(4).bool(), _square().bool(), 1) == boundary_f_score(
        _square(4), _square(), 1
    )


# ----------------------------------------------------------------------------------------------
# matching, precision-recall, AP
# ----------------------------------------------------------------------------------------------


def test_match_detections_duplicates_are_false_positives():
    iou = torch.tensor([[0.9, 0.0], [0.8, 0.1], [0.6, 0.55]], dtype=torch.float64)
    matched = match_detections(iou, torch.tensor([0.5, 0.7]))
    assert matched.tolist() == [[True, False, True], [True, False, False]]
    assert match_detections(torch.zeros(3, 0), torch.tensor([0.5])).tolist() == [[False] * 3]
    assert match_detections(torch.zeros(0, 2), torch.tensor([0.5])).shape == (1, 0)


# five detections, highest score first: TP FP TP FP TP, four objects
TP_PATTERN = torch.tensor([True, False, True, False, True])


def test_precision_recall_by_hand():
    scores = torch.tensor([0.5, 0.4, 0.9, 0.3, 0.7])  # sorted: 0.9 0.7 0.5 0.4 0.3
    matched = torch.tensor([True, False, True, True, False])  # -> TP FP TP FP TP
    precision, recall = precision_recall(scores, matched, num_gt=4)
    assert precision.tolist() == pytest.approx([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    assert recall.tolist() == pytest.approx([0.25, 0.25, 0.5, 0.5, 0.75])
    empty = precision_recall(torch.zeros(0), torch.zeros(2, 0, dtype=torch.bool), 1)
    assert empty[0].shape == empty[1].shape == (2, 0)


def test_average_precision_by_hand():
    precision, recall = precision_recall(torch.arange(5.0, 0, -1), TP_PATTERN, num_gt=4)
    assert precision_envelope(precision).tolist() == pytest.approx([1, 2 / 3, 2 / 3, 3 / 5, 3 / 5])
    # 11 points: r = 0, .1, .2 -> 1; .3, .4, .5 -> 2/3; .6, .7 -> 3/5; .8, .9, 1 -> 0
    assert average_precision_voc11(recall, precision).item() == pytest.approx(6.2 / 11)
    # area: recall steps of 1/4 at envelope 1, 2/3 and 3/5
    assert average_precision_all_points(recall, precision).item() == pytest.approx(
        (1 + 2 / 3 + 3 / 5) / 4
    )
    # 101 points: 26 with r <= .25 -> 1, 25 with r <= .5 -> 2/3, 25 with r <= .75 -> 3/5
    assert average_precision_coco(recall, precision).item() == pytest.approx(
        (26 + 25 * 2 / 3 + 25 * 3 / 5) / 101
    )


def test_average_precision_of_no_detections_is_zero():
    empty = torch.zeros(0, dtype=torch.float64)
    for ap in (average_precision_voc11, average_precision_all_points, average_precision_coco):
        assert ap(empty, empty).item() == 0.0


def _voc_devkit_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool) -> float:
    """``voc_ap`` of the PASCAL VOC devkit (py-faster-rcnn's port), the reference."""
    if use_07_metric:
        ap = 0.0
        for t in np.linspace(0, 1, 11):  # the devkit's np.arange(0., 1.1, 0.1), rounded
            p = np.max(precision[recall >= t]) if np.sum(recall >= t) > 0 else 0
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@given(st.lists(st.booleans(), max_size=30), st.integers(0, 5))
def test_voc_average_precision_matches_devkit(pattern, missed):
    matched = torch.tensor(pattern, dtype=torch.bool)
    num_gt = int(matched.sum()) + missed
    if num_gt == 0:
        return
    precision, recall = precision_recall(torch.arange(len(pattern), 0, -1.0), matched, num_gt)
    p, r = precision.numpy(), recall.numpy()
    assert average_precision_voc11(recall, precision).item() == pytest.approx(
        _voc_devkit_ap(r, p, use_07_metric=True), abs=1e-12
    )
    assert average_precision_all_points(recall, precision).item() == pytest.approx(
        _voc_devkit_ap(r, p, use_07_metric=False), abs=1e-12
    )


def test_interpolated_precision_is_batched():
    precision, recall = precision_recall(
        torch.arange(5.0, 0, -1), torch.stack([TP_PATTERN, ~TP_PATTERN]), num_gt=4
    )
    sampled = interpolated_precision(recall, precision, torch.tensor([0.0, 0.5, 0.6]))
    expected = torch.tensor([[1, 2 / 3, 3 / 5], [1 / 2, 1 / 2, 0]], dtype=torch.float64)
    torch.testing.assert_close(sampled, expected)


# ----------------------------------------------------------------------------------------------
# bad input
# ----------------------------------------------------------------------------------------------

LABELS = torch.zeros(2, 3, dtype=torch.long)
ONE = torch.ones(3, dtype=torch.float64)
NO = torch.zeros(3, dtype=torch.bool)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: confusion_matrix(LABELS, LABELS[:1], 3), "pred and target"),
        (lambda: confusion_matrix(LABELS, LABELS, 0), "num_classes"),
        (lambda: confusion_matrix(LABELS.float(), LABELS, 3), "pred"),
        (lambda: confusion_matrix(LABELS, LABELS + 3, 3), "target"),
        (lambda: confusion_matrix(LABELS - 1, LABELS, 3), "pred"),
        (lambda: per_class_iou(torch.zeros(2, 3)), "confusion"),
        (lambda: mean_iou(torch.zeros(0, 0)), "confusion"),
        (lambda: boundary_f_score(LABELS, LABELS, tolerance=-1), "tolerance"),
        (lambda: boundary_f_score(LABELS[0], LABELS[0]), "pred"),
        (lambda: boundary_f_score(LABELS[:0], LABELS[:0]), "pred"),
        (lambda: boundary_f_score(LABELS, LABELS.T), "pred and target"),
        (lambda: match_detections(torch.zeros(3), torch.tensor([0.5])), "iou"),
        (lambda: precision_recall(torch.zeros(3), NO[:2], 1), "matched"),
        (lambda: precision_recall(torch.zeros(3, 1), NO, 1), "scores"),
        (lambda: precision_recall(torch.zeros(3), NO, 0), "num_gt"),
        (lambda: average_precision_coco(ONE, ONE[:2]), "recall and precision"),
        (lambda: average_precision_voc11(ONE.cumsum(0).flip(0), ONE), "recall"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def _one_image(**changes) -> tuple[dict, dict]:
    """A good (prediction, target) pair, with entries replaced: ``pred_boxes=...`` etc."""
    box, mask = torch.tensor([[0.0, 0, 4, 4]]), torch.ones(1, 4, 4, dtype=torch.bool)
    pred = {"boxes": box, "scores": torch.ones(1), "labels": torch.ones(1), "masks": mask}
    target = {"boxes": box, "labels": torch.ones(1), "masks": mask}
    for key, value in changes.items():
        owner, field = key.split("_")
        (pred if owner == "pred" else target)[field] = value
    return pred, target


@pytest.mark.parametrize(
    "changes, iou_type, name",
    [
        ({"pred_boxes": torch.zeros(1, 5)}, "bbox", r"predictions\[0\]\['boxes'\]"),
        ({"pred_boxes": torch.tensor([[2.0, 0, 1, 1]])}, "bbox", "x2 >= x1"),
        ({"pred_scores": torch.zeros(2)}, "bbox", r"predictions\[0\]\['scores'\]"),
        ({"pred_scores": torch.tensor([float("nan")])}, "bbox", "NaN"),
        ({"target_labels": torch.ones(2)}, "bbox", r"targets\[0\] has 1 regions but 2 labels"),
        ({"pred_masks": torch.ones(1, 1, 5, 5)}, "segm", r"predictions\[0\]\['masks'\]"),
        ({"pred_masks": torch.ones(1, 2, 4, 4)}, "segm", r"\[N, 1, H, W\]"),
        ({"target_masks": torch.ones(4, 4)}, "segm", r"targets\[0\]\['masks'\]"),
        ({}, "polygons", "iou_type"),
    ],
)
def test_bad_detections_raise_value_error_naming_the_argument(changes, iou_type, name):
    pred, target = _one_image(**changes)
    with pytest.raises(ValueError, match=name):
        evaluate_detections([pred], [target], iou_type)


def test_bad_detection_arguments():
    pred, target = _one_image()
    with pytest.raises(ValueError, match="predictions and targets"):
        evaluate_detections([pred], [])
    with pytest.raises(ValueError, match="max_detections"):
        evaluate_detections([pred], [target], max_detections=0)
    with pytest.raises(ValueError, match=r"targets\[0\] must have a 'labels'"):
        evaluate_detections([pred], [{"boxes": target["boxes"]}])


def test_empty_detection_input_is_valid():
    result = evaluate_detections([], [])
    assert result["map"] == -1 and result["per_class"] == {}
    assert result["precision"].shape == (10, 101, 0)
