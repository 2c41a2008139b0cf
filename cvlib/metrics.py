"""Metrics of the course: classification accuracy, segmentation and detection metrics.

Segmentation (lecture 03) starts from a confusion matrix summed over a data set::

    cm = sum(confusion_matrix(model(x).argmax(1), y, num_classes=4) for x, y in loader)
    mean_iou(cm), pixel_accuracy(cm), per_class_iou(cm)

and :func:`boundary_f_score` measures how sharp the predicted boundaries are.

Detection (lecture 04) is a pipeline of small steps, each a function here:

1. per image and class, :func:`match_detections` greedily matches detections (highest score
   first) to ground-truth boxes with IoU above a threshold: a match is a true positive,
2. :func:`precision_recall` sorts all detections of a class by score and counts,
3. an interpolation turns the precision-recall curve into the average precision (AP):
   :func:`average_precision_voc11`, :func:`average_precision_all_points`,
   :func:`average_precision_coco`,
4. :func:`evaluate_detections` runs it all on torchvision-style outputs and gives the COCO mAP,
   equal to pycocotools' ``COCOeval`` on the same detections.

Only torch and numpy are used; pycocotools is the reference of the tests, not a dependency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cvlib._checks import choice, describe, integer, number, sequence, tensor
from cvlib.ops.boxes import _check_boxes, box_iou

__all__ = [
    "accuracy",
    "confusion_matrix",
    "per_class_iou",
    "mean_iou",
    "pixel_accuracy",
    "boundary_mask",
    "boundary_f_score",
    "IOU_THRESHOLDS",
    "RECALL_THRESHOLDS",
    "AREA_RANGES",
    "COCO_PERSON_SIGMAS",
    "object_keypoint_similarity",
    "match_detections",
    "precision_recall",
    "precision_envelope",
    "interpolated_precision",
    "average_precision_voc11",
    "average_precision_all_points",
    "average_precision_coco",
    "evaluate_detections",
    "panoptic_quality",
    "mask_iou",
]

# COCO's thresholds, made with np.linspace as in pycocotools: torch.linspace rounds some of them
# differently in the last bit, which can flip a comparison such as recall >= 0.29.
IOU_THRESHOLDS = torch.from_numpy(np.linspace(0.5, 0.95, 10))  # float64 [10]: 0.50, 0.55, ... 0.95
RECALL_THRESHOLDS = torch.from_numpy(np.linspace(0.0, 1.0, 101))  # float64 [101]: 0.00 ... 1.00
VOC11_RECALL_THRESHOLDS = torch.from_numpy(np.linspace(0.0, 1.0, 11))  # float64 [11]
# COCO's per-keypoint OKS constants of its 17 person keypoints (nose, eyes, ears, shoulders, ...)
COCO_PERSON_SIGMAS = torch.tensor([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62,
                                   1.07, 1.07, 0.87, 0.87, 0.89, 0.89], dtype=torch.float64) / 10
# COCO's object sizes, by area in pixels (``areaRng`` of pycocotools): AP_small, AP_medium, AP_large
AREA_RANGES = {"small": (0.0, 32.0**2), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e5**2)}


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows of ``logits`` ``[N, C]`` whose argmax equals ``labels`` ``[N]`` (int)."""
    tensor(logits, "logits", shape=("N", "C"), dtype="float", finite=True)
    if tensor(labels, "labels", dtype="int").shape != logits.shape[:1]:
        raise ValueError(
            f"labels must have shape [N] = [{logits.shape[0]}], got {tuple(labels.shape)}"
        )
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set is undefined: logits and labels are empty")
    _check_classes(labels, "labels", logits.shape[1])
    return (logits.argmax(1) == labels).float().mean().item()


def _check_int(value, name: str, minimum: int) -> None:
    integer(value, name, low=minimum)


def _check_classes(labels: torch.Tensor, name: str, num_classes: int) -> None:
    """The integer ``labels`` must be class indices in ``0 .. num_classes - 1``."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{name} must hold classes in [0, {num_classes - 1}], got values "
            f"{labels.min().item()}..{labels.max().item()}"
        )


# ----------------------------------------------------------------------------------------------
# Semantic segmentation
# ----------------------------------------------------------------------------------------------


def _check_label_maps(pred: torch.Tensor, target: torch.Tensor) -> None:
    tensor(pred, "pred")
    tensor(target, "target")
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    for name, labels in (("pred", pred), ("target", target)):
        if labels.is_floating_point() or labels.is_complex():
            raise ValueError(
                f"{name} must hold integer class indices, got dtype {labels.dtype} "
                "(take scores.argmax(dim=1) first)"
            )


def confusion_matrix(
    pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = None
) -> torch.Tensor:
    """Count pixels by (true class, predicted class).

    Args:
        pred: integer ``[...]`` (e.g. ``[B, H, W]``), predicted class per pixel in ``0..C-1``.
        target: integer, same shape, true class per pixel in ``0..C-1`` or ``ignore_index``.
        num_classes: ``C >= 1`` (background included when it is a class).
        ignore_index: pixels whose target equals it are not counted (e.g. 255 on borders).

    Returns:
        int64 ``[C, C]``: entry ``[i, j]`` is the number of pixels of true class ``i`` predicted
        as ``j``; rows are the truth, the diagonal holds the correct pixels. Confusion matrices
        of several batches add up to that of the whole data set.
    """
    _check_int(num_classes, "num_classes", 1)
    _check_label_maps(pred, target)
    if ignore_index is not None:
        counted = target != integer(ignore_index, "ignore_index")
        pred, target = pred[counted], target[counted]
    for name, labels in (("pred", pred), ("target", target)):
        _check_classes(labels, name, num_classes)
    pairs = target.reshape(-1).long() * num_classes + pred.reshape(-1).long()
    return torch.bincount(pairs, minlength=num_classes**2).reshape(num_classes, num_classes)


def _check_confusion(confusion: torch.Tensor) -> None:
    tensor(confusion, "confusion", dtype="real", finite=True)
    if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
        raise ValueError(f"confusion must have shape [C, C], got {tuple(confusion.shape)}")
    if confusion.numel() == 0:
        raise ValueError("confusion must have at least one class, got shape [0, 0]")
    if (confusion < 0).any():
        raise ValueError(f"confusion must hold counts >= 0, got a minimum of {confusion.min().item()}")


def per_class_iou(confusion: torch.Tensor) -> torch.Tensor:
    """Intersection over union of each class, ``IoU_c = TP_c / (TP_c + FP_c + FN_c)``.

    Args:
        confusion: ``[C, C]`` counts, rows = truth (see :func:`confusion_matrix`).

    Returns:
        float64 ``[C]``. A class absent from both truth and prediction has no IoU (0 / 0): its
        entry is NaN. A class present in only one of them has IoU 0.
    """
    _check_confusion(confusion)
    confusion = confusion.double()
    tp = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - tp  # predicted + true - both
    return tp / union


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU (mIoU) over the classes present in the truth or the prediction.

    Classes absent from both are left out of the mean (their IoU is 0 / 0), so the result is
    never NaN; this is the convention of mmsegmentation. A class that is predicted but never
    true, or true but never predicted, counts with IoU 0.

    Args:
        confusion: ``[C, C]`` counts, rows = truth, summed over the whole data set (the mIoU of
            a data set is not the mean of per-image mIoUs).
    """
    iou = per_class_iou(confusion)
    present = ~iou.isnan()
    if not present.any():
        raise ValueError("mean IoU of no pixels is undefined: confusion is all zeros")
    return iou[present].mean().item()


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Fraction of counted pixels whose class is right: ``trace / sum`` of ``confusion`` ``[C, C]``.

    Ignored pixels are not in ``confusion`` (see ``ignore_index`` of :func:`confusion_matrix`).
    """
    _check_confusion(confusion)
    total = confusion.sum()
    if total == 0:
        raise ValueError("pixel accuracy of no pixels is undefined: confusion is all zeros")
    return (confusion.diagonal().sum().double() / total).item()


def boundary_mask(labels: torch.Tensor) -> torch.Tensor:
    """Boundary pixels of label maps ``[..., H, W]`` (int or bool): ``bool`` of the same shape.

    A pixel is on a boundary when one of its 4 neighbours has another label, so a boundary is
    two pixels thick, one on each side. The image border is not a boundary.
    """
    tensor(labels, "labels", dtype="int_or_bool")
    if labels.ndim < 2:
        raise ValueError(f"labels must have shape [..., H, W], got {tuple(labels.shape)}")
    edge = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    across_x = labels[..., :, 1:] != labels[..., :, :-1]  # [..., H, W - 1]
    across_y = labels[..., 1:, :] != labels[..., :-1, :]  # [..., H - 1, W]
    edge[..., :, 1:] |= across_x
    edge[..., :, :-1] |= across_x
    edge[..., 1:, :] |= across_y
    edge[..., :-1, :] |= across_y
    return edge


def _near(edge: torch.Tensor, tolerance: int) -> torch.Tensor:
    """Pixels within ``tolerance`` (chessboard distance) of a True pixel of ``edge`` [B, H, W]."""
    size = 2 * tolerance + 1
    return F.max_pool2d(edge[:, None].float(), size, stride=1, padding=tolerance)[:, 0] > 0


def boundary_f_score(pred: torch.Tensor, target: torch.Tensor, tolerance: int = 2) -> float:
    """Boundary F-score: how well the predicted boundaries lie on the true ones.

    With ``B_p`` and ``B_t`` the boundary pixels (:func:`boundary_mask`) of the prediction and
    the truth, a boundary pixel is *matched* when the other map has a boundary pixel at most
    ``tolerance`` pixels away (chessboard distance, i.e. in a ``(2 t + 1)^2`` square):

    - boundary precision ``P`` = matched pixels of ``B_p`` / ``|B_p|``,
    - boundary recall ``R`` = matched pixels of ``B_t`` / ``|B_t|``,
    - ``F = 2 P R / (P + R)`` (the BF score of Csurka et al., 2013, class-agnostic).

    Region metrics such as mIoU barely change when a boundary is blurred by a pixel or two,
    since the interior dominates; the boundary F-score does, which is why it shows what the
    skip connections of a U-Net recover. An image where neither map has a boundary scores 1,
    one where only one of them has a boundary scores 0.

    Args:
        pred: int or bool ``[H, W]`` or ``[B, H, W]``, predicted class per pixel.
        target: same shape and kind, true class per pixel.
        tolerance: int ``>= 0``, in pixels (0 = boundaries must coincide).

    Returns:
        The F-score of each image, averaged over the batch, in ``[0, 1]``.
    """
    _check_label_maps(pred, target)
    if pred.ndim not in (2, 3):
        raise ValueError(f"pred must have shape [H, W] or [B, H, W], got {tuple(pred.shape)}")
    if pred.numel() == 0:
        raise ValueError(f"boundary F-score of no pixels is undefined: pred is {tuple(pred.shape)}")
    _check_int(tolerance, "tolerance", 0)
    pred_edge = boundary_mask(pred.reshape(-1, *pred.shape[-2:]))  # [B, H, W]
    true_edge = boundary_mask(target.reshape(-1, *target.shape[-2:]))
    n_pred, n_true = pred_edge.sum((1, 2)), true_edge.sum((1, 2))  # [B]
    precision = (pred_edge & _near(true_edge, tolerance)).sum((1, 2)) / n_pred.clamp(min=1)
    recall = (true_edge & _near(pred_edge, tolerance)).sum((1, 2)) / n_true.clamp(min=1)
    f = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
    f = torch.where((n_pred == 0) & (n_true == 0), 1.0, f)
    return f.double().mean().item()


# ----------------------------------------------------------------------------------------------
# Detection: matching, precision-recall, average precision
# ----------------------------------------------------------------------------------------------


def match_detections(iou: torch.Tensor, iou_thresholds: torch.Tensor) -> torch.Tensor:
    """Greedy matching of detections to ground-truth objects, as in PASCAL VOC and COCO.

    The detections of one image and class are taken in order of decreasing score; each one
    is matched to the still unmatched object it overlaps most, if that IoU is at least the
    threshold. A matched detection is a true positive, the others are false positives (a
    duplicate of an already found object is a false positive too).

    Args:
        iou: float ``[D, G]``, IoU of each detection (sorted by decreasing score) with each
            ground-truth object.
        iou_thresholds: float ``[T]``, e.g. :data:`IOU_THRESHOLDS`.

    Returns:
        bool ``[T, D]``: whether detection ``d`` is a true positive at threshold ``t``.
        Ties (equal IoU with two objects) go to the later object, as in pycocotools.
    """
    _check_unit(tensor(iou, "iou", shape=("D", "G"), dtype="float"), "iou")
    _check_unit(tensor(iou_thresholds, "iou_thresholds", shape=("T",), dtype="float"), "iou_thresholds")
    return _match(iou, iou_thresholds, torch.zeros(iou.shape[1], dtype=torch.bool))[0]


def _match(iou: torch.Tensor, iou_thresholds: torch.Tensor, ignored: torch.Tensor):
    """:func:`match_detections` with some objects ``ignored`` ``[G]`` (outside the area range
    being evaluated), as pycocotools: a detection takes the best regular object it can; only
    when none is left above the threshold may it take an ignored one, and then it is ignored
    too. Returns ``(matched, matched_ignored)``, both bool ``[T, D]``."""
    num_dets, num_gt = iou.shape
    matched = torch.zeros(len(iou_thresholds), num_dets, dtype=torch.bool)
    matched_ignored = torch.zeros_like(matched)
    taken = torch.zeros(len(iou_thresholds), num_gt, dtype=torch.bool)  # [T, G]
    if num_gt == 0:
        return matched, matched_ignored
    thresholds = iou_thresholds.to(iou.dtype).clamp(max=1 - 1e-10)[:, None]  # [T, 1]
    for d in range(num_dets):
        free = ~taken & (iou[d] >= thresholds)  # [T, G]
        regular = free & ~ignored
        allowed = torch.where(regular.any(1, keepdim=True), regular, free)
        candidates = torch.where(allowed, iou[d], -1.0)  # [T, G]
        best = num_gt - 1 - candidates.flip(1).argmax(1)  # [T], the last one on ties
        hit = candidates.gather(1, best[:, None])[:, 0] >= 0  # [T]
        matched[:, d] = hit
        matched_ignored[:, d] = hit & ignored[best]
        taken[hit, best[hit]] = True
    return matched, matched_ignored


def precision_recall(
    scores: torch.Tensor, matched: torch.Tensor, num_gt: int, counted: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision and recall of one class after each detection, highest score first.

    With the detections sorted by decreasing score, after the first ``k`` of them
    ``precision = TP / k`` and ``recall = TP / num_gt``. Plotting precision against recall
    gives the precision-recall (PR) curve.

    Args:
        scores: float ``[D]``, the score of each detection of the class (all images).
        matched: bool ``[D]`` or ``[T, D]`` (one row per IoU threshold), true positives.
        num_gt: number of ground-truth objects of the class, ``>= 1``.
        counted: bool, the shape of ``matched`` (default: all): detections that are neither
            true nor false positives where False (COCO ignores those matched to an object
            outside the area range evaluated, and unmatched ones outside it); the curve keeps
            a point for them, repeating the previous precision and recall.

    Returns:
        ``(precision, recall)``, float64, each of the shape of ``matched``, in order of
        decreasing score (ties keep their order).
    """
    tensor(scores, "scores", shape=("D",), dtype="float")
    if scores.isnan().any():
        raise ValueError("scores contains NaN")
    if tensor(matched, "matched", dtype="bool").shape[-1:] != scores.shape or matched.ndim > 2:
        raise ValueError(
            f"matched must have shape [D] or [T, D] with D = {len(scores)}, "
            f"got {tuple(matched.shape)}"
        )
    _check_int(num_gt, "num_gt", 1)
    if counted is None:
        counted = torch.ones_like(matched)
    elif tensor(counted, "counted", dtype="bool").shape != matched.shape:
        raise ValueError(
            f"counted must have the shape of matched, {tuple(matched.shape)}, got {tuple(counted.shape)}"
        )
    true_positives = matched & counted
    if true_positives.numel() and true_positives.sum(-1).max() > num_gt:
        raise ValueError(
            f"matched has {true_positives.sum(-1).max().item()} true positives but num_gt is {num_gt}: "
            "each object is matched at most once"
        )
    order = torch.sort(scores, descending=True, stable=True).indices
    tp = true_positives[..., order].cumsum(-1, dtype=torch.float64)
    detections = counted[..., order].cumsum(-1, dtype=torch.float64)  # TP + FP
    return tp / detections.clamp(min=1), tp / num_gt


def _check_unit(values: torch.Tensor, name: str) -> torch.Tensor:
    """``values`` must lie in ``[0, 1]`` (no NaN): IoUs, precisions, recalls, thresholds."""
    if not ((values >= 0) & (values <= 1)).all():
        raise ValueError(f"{name} must lie in [0, 1], got values outside (or NaN): {describe(values)}")
    return values


def _check_pr(recall: torch.Tensor, precision: torch.Tensor) -> None:
    _check_unit(tensor(recall, "recall", dtype="float"), "recall")
    _check_unit(tensor(precision, "precision", dtype="float"), "precision")
    if recall.shape != precision.shape or recall.ndim == 0:
        raise ValueError(
            f"recall and precision must have the same shape [..., D], got {tuple(recall.shape)} "
            f"and {tuple(precision.shape)}"
        )
    if (recall.diff(dim=-1) < 0).any():
        raise ValueError("recall must be non-decreasing along the last dimension")


def precision_envelope(precision: torch.Tensor) -> torch.Tensor:
    """The precision envelope ``p_interp(r) = max_{r' >= r} p(r')``: ``[..., D]`` -> ``[..., D]``.

    Each point takes the best precision reachable at the same or a higher recall, which
    removes the wiggles ("saw teeth") of the raw PR curve: the curve becomes non-increasing.
    """
    _check_unit(tensor(precision, "precision", ndim=range(1, 9), dtype="float"), "precision")
    return precision.flip(-1).cummax(-1).values.flip(-1)


def interpolated_precision(
    recall: torch.Tensor, precision: torch.Tensor, recall_thresholds: torch.Tensor
) -> torch.Tensor:
    """Precision envelope sampled at ``recall_thresholds`` ``[R]``: ``[..., D]`` -> ``[..., R]``.

    At threshold ``r`` it is the envelope at the first point with ``recall >= r``, or 0 when
    the recall never reaches ``r``.

    Args:
        recall: float ``[..., D]``, non-decreasing (from :func:`precision_recall`).
        precision: float ``[..., D]``.
        recall_thresholds: float ``[R]``.
    """
    _check_pr(recall, precision)
    tensor(recall_thresholds, "recall_thresholds", shape=("R",), dtype="float")
    _check_unit(recall_thresholds, "recall_thresholds")
    thresholds = recall_thresholds.double().expand(*recall.shape[:-1], -1).contiguous()
    first = torch.searchsorted(recall.double().contiguous(), thresholds)  # [..., R]: recall >= r
    # a 0 after the last point is the precision where the recall never reaches r
    envelope = F.pad(precision_envelope(precision.double()), (0, 1))
    return envelope.gather(-1, first)


def average_precision_voc11(recall: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """AP of PASCAL VOC 2007: mean interpolated precision at 11 recalls 0, 0.1, ..., 1.

    ``AP = 1/11 sum_{r in {0, 0.1, ..., 1}} p_interp(r)``. Coarse: a curve that changes
    between two sample points changes nothing.

    Args:
        recall, precision: float ``[..., D]`` (from :func:`precision_recall`).

    Returns:
        float64 ``[...]`` (a 0-dim tensor for one curve).
    """
    return interpolated_precision(recall, precision, VOC11_RECALL_THRESHOLDS).mean(-1)


def average_precision_all_points(recall: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """AP of PASCAL VOC 2010 and later: the exact area under the precision envelope.

    ``AP = sum_k (r_k - r_{k-1}) p_interp(r_k)`` over all points of the curve (``r_0 = 0``):
    each step up in recall is weighted by the envelope there, so no recall is sampled.

    Args:
        recall, precision: float ``[..., D]`` (from :func:`precision_recall`).

    Returns:
        float64 ``[...]`` (a 0-dim tensor for one curve).
    """
    _check_pr(recall, precision)
    recall = recall.double()
    steps = recall.diff(dim=-1, prepend=torch.zeros_like(recall[..., :1]))
    return (steps * precision_envelope(precision.double())).sum(-1)


def average_precision_coco(recall: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """AP of COCO: mean interpolated precision at 101 recalls 0, 0.01, ..., 1.

    ``AP = 1/101 sum_{r in {0, 0.01, ..., 1}} p_interp(r)``: between VOC's 11 points and the
    exact area. COCO's "AP" is this averaged over 10 IoU thresholds 0.5, 0.55, ..., 0.95
    (see :func:`evaluate_detections`), which rewards well-localized boxes.

    Args:
        recall, precision: float ``[..., D]`` (from :func:`precision_recall`).

    Returns:
        float64 ``[...]`` (a 0-dim tensor for one curve).
    """
    return interpolated_precision(recall, precision, RECALL_THRESHOLDS).mean(-1)


# ----------------------------------------------------------------------------------------------
# Detection: COCO evaluation of torchvision-style outputs
# ----------------------------------------------------------------------------------------------


def _positive(values: torch.Tensor, name: str, low: float | None = None) -> torch.Tensor:
    """``values`` unless one is ``<= 0`` (``< low`` when ``low`` is given)."""
    if ((values <= 0) if low is None else (values < low)).any():
        raise ValueError(f"{name} must be {'> 0' if low is None else f'>= {low}'}, got {values.min().item()}")
    return values


def object_keypoint_similarity(
    pred_keypoints: torch.Tensor, true_keypoints: torch.Tensor, true_boxes: torch.Tensor,
    true_areas: torch.Tensor, sigmas: torch.Tensor,
) -> torch.Tensor:
    """Object keypoint similarity (OKS, COCO): the IoU of keypoints, ``[N, M]``.

    ``OKS = mean over the visible keypoints i of exp(-d_i^2 / (2 s^2 k_i^2))`` with ``d_i`` the
    distance between predicted and true keypoint ``i``, ``s^2`` the object's area and
    ``k_i = 2 sigma_i`` a per-keypoint tolerance (an eye must be placed more precisely than a
    hip). A true object with no visible keypoint is compared by each predicted keypoint's
    distance to its box grown by one box size on every side, as pycocotools does.

    Args:
        pred_keypoints: ``[N, K, 2 or 3]`` (x, y[, score]).
        true_keypoints: ``[M, K, 3]`` (x, y, visibility; > 0 is labelled).
        true_boxes: ``[M, 4]`` xyxy; true_areas: ``[M]``; sigmas: ``[K]``.
    """
    k = len(_positive(tensor(sigmas, "sigmas", ndim=1, dtype="float", finite=True, nonempty=True), "sigmas"))
    tensor(pred_keypoints, "pred_keypoints", shape=("N", k, None), dtype="float", finite=True)
    m = len(tensor(true_keypoints, "true_keypoints", shape=("M", k, 3), dtype="float", finite=True))
    _check_boxes(tensor(true_boxes, "true_boxes", shape=(m, 4)), "true_boxes")
    _positive(tensor(true_areas, "true_areas", shape=(m,), dtype="float", finite=True), "true_areas", low=0)
    pred, true = pred_keypoints.double(), true_keypoints.double()
    variances = (2 * sigmas.double()) ** 2  # [K]
    xd, yd = pred[:, None, :, 0], pred[:, None, :, 1]  # [N, 1, K]
    xg, yg = true[None, :, :, 0], true[None, :, :, 1]  # [1, M, K]
    visible = true[None, :, :, 2] > 0  # [1, M, K]
    labelled = visible.any(-1, keepdim=True)  # [1, M, 1]
    boxes = true_boxes.double()[None, :, None, :]  # [1, M, 1, 4]
    width, height = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    outside_x = (boxes[..., 0] - width - xd).clamp(min=0) + (xd - (boxes[..., 2] + width)).clamp(min=0)
    outside_y = (boxes[..., 1] - height - yd).clamp(min=0) + (yd - (boxes[..., 3] + height)).clamp(min=0)
    dx = torch.where(labelled, xd - xg, outside_x)
    dy = torch.where(labelled, yd - yg, outside_y)
    area = true_areas.double()[None, :, None] + np.spacing(1)
    similarity = torch.exp(-(dx**2 + dy**2) / variances / area / 2)  # [N, M, K]
    counted = torch.where(labelled, visible, True).double()
    return (similarity * counted).sum(-1) / counted.sum(-1)


def _box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of xyxy boxes ``[N, 4]`` x ``[M, 4]`` -> ``[N, M]`` as pycocotools computes it for
    matching: pycocotools says 0 where both boxes have zero area, but ``cvlib.ops.box_iou`` (like
    torchvision's) gives NaN there (0 / 0), so that NaN becomes 0 here."""
    return box_iou(boxes1, boxes2).nan_to_num(0.0)


def mask_iou(masks1: torch.Tensor, masks2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of bool masks: ``[N, H, W]`` x ``[M, H, W]`` -> float64 ``[N, M]``,
    ``|A & B| / |A | B|`` counted in pixels; 0 when both are empty (as pycocotools' ``iou``).
    The IoU of mask ``k`` with mask ``k`` of another set of ``N``: ``mask_iou(a, b).diagonal()``."""
    tensor(masks1, "masks1", ndim=3, dtype="bool")
    tensor(masks2, "masks2", shape=(None, *masks1.shape[1:]), dtype="bool")
    return _mask_iou(masks1, masks2)


def _mask_iou(masks1: torch.Tensor, masks2: torch.Tensor) -> torch.Tensor:
    """IoU of bool masks ``[N, H, W]`` x ``[M, H, W]`` -> ``[N, M]``; 0 when both are empty."""
    a, b = masks1.flatten(1).double(), masks2.flatten(1).double()
    inter = a @ b.T  # pixel counts, exact in float64
    union = a.sum(1)[:, None] + b.sum(1) - inter
    return torch.where(union > 0, inter / union, 0.0)


def _check_field(output: dict, key: str, name: str, shape: str, ndims: tuple[int, ...]):
    if not isinstance(output, dict):
        raise TypeError(f"{name} must be a dict, got {describe(output)}")
    if key not in output:
        raise ValueError(f"{name} must have a {key!r} entry ({shape})")
    try:
        value = torch.as_tensor(output[key])
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"{name}[{key!r}] must be a tensor {shape}, got {describe(output[key])}") from error
    if value.ndim not in ndims:
        raise ValueError(f"{name}[{key!r}] must have shape {shape}, got {tuple(value.shape)}")
    return value


def _regions(output: dict, name: str, iou_type: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The labels ``[N]`` and regions (boxes ``[N, 4]`` float64 or masks ``[N, H, W]`` bool)."""
    labels = _check_field(output, "labels", name, "[N]", (1,))
    if labels.dtype == torch.bool or (labels.is_floating_point() and (labels != labels.round()).any()):
        raise ValueError(f"{name}['labels'] must hold integer class labels, got {labels.tolist()}")
    if iou_type == "keypoints":
        regions = _check_field(output, "keypoints", name, "[N, K, 3] (x, y, visibility or score)", (3,))
        shaped = regions.shape[1] > 0 and regions.shape[2] == 3
        if not (shaped and regions.is_floating_point() and torch.isfinite(regions).all()):
            raise ValueError(f"{name}['keypoints'] must be a finite float [N, K, 3], got {describe(regions)}")
        regions = regions.double()
    elif iou_type == "bbox":
        regions = _check_field(output, "boxes", name, "[N, 4] xyxy", (2,)).double()
        if regions.shape[1:] != (4,):
            raise ValueError(f"{name}['boxes'] must have shape [N, 4], got {tuple(regions.shape)}")
        if not torch.isfinite(regions).all():
            raise ValueError(f"{name}['boxes'] contains NaN or inf; it must be finite")
        if (regions[:, 2:] < regions[:, :2]).any():
            raise ValueError(f"{name}['boxes'] must be xyxy with x2 >= x1 and y2 >= y1")
    else:
        regions = _check_field(output, "masks", name, "[N, H, W] or [N, 1, H, W]", (3, 4))
        if regions.ndim == 4 and regions.shape[1] != 1:
            raise ValueError(f"{name}['masks'] must be [N, 1, H, W], got {tuple(regions.shape)}")
        regions = regions.reshape(len(regions), *regions.shape[-2:])
        regions = regions > 0.5 if regions.is_floating_point() else regions.bool()
    if len(regions) != len(labels):
        raise ValueError(
            f"{name} has {len(regions)} regions but {len(labels)} labels; they must match"
        )
    return labels.long(), regions


def _scores(prediction: dict, name: str, num: int) -> torch.Tensor:
    scores = _check_field(prediction, "scores", name, "[N]", (1,)).double()
    if len(scores) != num:
        raise ValueError(f"{name}['scores'] must have shape [{num}], got {tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        raise ValueError(f"{name}['scores'] must be finite, got NaN or inf")
    return scores


def _areas(output: dict, regions: torch.Tensor, name: str, iou_type: str, is_target: bool) -> torch.Tensor:
    """Area ``[N]`` (pixels, float64) of each object or detection, by pycocotools' rules: an
    object's ``area`` entry when the target has one (COCO's annotation area), else its mask's
    pixel count when it has masks, else its box's; a detection's box (``"bbox"``) or mask
    (``"segm"``)."""
    if is_target and "area" in output:
        area = _check_field(output, "area", name, "[M]", (1,)).double()
        if len(area) != len(regions) or not (torch.isfinite(area) & (area >= 0)).all():
            raise ValueError(f"{name}['area'] must hold {len(regions)} finite areas >= 0, "
                             f"got {describe(area)}")
        return area
    if iou_type == "segm":
        return regions.flatten(1).sum(1).double()
    if iou_type == "keypoints" and not is_target:  # the extent of its keypoints, as loadRes
        return (regions[..., :2].amax(1) - regions[..., :2].amin(1)).prod(1)
    if is_target and iou_type == "keypoints":
        regions = _check_field(output, "boxes", name, "[M, 4] xyxy", (2,)).double()
    if is_target and "masks" in output:
        masks = torch.as_tensor(output["masks"])
        if masks.shape[:1] == regions.shape[:1] and masks.ndim in (3, 4):
            masks = masks > 0.5 if masks.is_floating_point() else masks.bool()
            return masks.flatten(1).sum(1).double()
    return ((regions[:, 2] - regions[:, 0]) * (regions[:, 3] - regions[:, 1])).double()


def _keypoint_similarity(target, index, pred_keypoints, true_keypoints, true_areas, sigmas):
    """OKS ``[N, M]`` of one image, checking that the keypoint counts agree with ``sigmas``."""
    num_keypoints = true_keypoints.shape[1]
    sigmas = COCO_PERSON_SIGMAS if sigmas is None else sigmas
    if len(sigmas) != num_keypoints:
        raise ValueError(f"sigmas must have one value per keypoint of targets[{index}] ({num_keypoints}), "
                         f"got {len(sigmas)} (COCO_PERSON_SIGMAS, the default, is for COCO's 17)")
    if pred_keypoints.shape[1] != num_keypoints:
        raise ValueError(f"predictions[{index}]['keypoints'] must have {num_keypoints} keypoints like "
                         f"targets[{index}], got {pred_keypoints.shape[1]}")
    true_boxes = _check_field(target, "boxes", f"targets[{index}]", "[M, 4] xyxy", (2,)).double()
    return object_keypoint_similarity(pred_keypoints, true_keypoints, true_boxes, true_areas, sigmas)


def _match_image(prediction, target, index, iou_type, max_detections, area_ranges, sigmas=None):
    """Per class of one image and per area range:
    ``{label: {range: (scores [D], matched [T, D], counted [T, D], number of objects)}}``."""
    pred_labels, pred_regions = _regions(prediction, f"predictions[{index}]", iou_type)
    scores = _scores(prediction, f"predictions[{index}]", len(pred_labels))
    true_labels, true_regions = _regions(target, f"targets[{index}]", iou_type)
    pred_size, true_size = tuple(pred_regions.shape[1:]), tuple(true_regions.shape[1:])
    if iou_type == "segm" and len(pred_regions) and pred_size != true_size:
        raise ValueError(
            f"predictions[{index}]['masks'] must be as large as targets[{index}]['masks'], "
            f"{true_size}, got {pred_size}"
        )
    pred_areas = _areas(prediction, pred_regions, f"predictions[{index}]", iou_type, False)
    true_areas = _areas(target, true_regions, f"targets[{index}]", iou_type, True)
    if iou_type == "keypoints":  # [N, M]; an object without labelled keypoints is ignored
        iou = _keypoint_similarity(target, index, pred_regions, true_regions, true_areas, sigmas)
        unlabelled = ~(true_regions[:, :, 2] > 0).any(1)
    else:
        iou = (_box_iou if iou_type == "bbox" else _mask_iou)(pred_regions, true_regions)
        unlabelled = torch.zeros(len(true_regions), dtype=torch.bool)
    per_class = {}
    for label in torch.cat([pred_labels, true_labels]).unique().tolist():
        dets = torch.nonzero(pred_labels == label)[:, 0]
        dets = dets[torch.sort(scores[dets], descending=True, stable=True).indices]
        dets = dets[:max_detections]
        objects = torch.nonzero(true_labels == label)[:, 0]
        per_class[label] = {}
        for name, (low, high) in area_ranges.items():
            outside = (true_areas[objects] < low) | (true_areas[objects] > high) | unlabelled[objects]
            matched, matched_ignored = _match(iou[dets][:, objects], IOU_THRESHOLDS, outside)
            det_outside = (pred_areas[dets] < low) | (pred_areas[dets] > high)
            counted = ~(matched_ignored | (~matched & det_outside))
            per_class[label][name] = (scores[dets], matched, counted, int((~outside).sum()))
    return per_class


def evaluate_detections(
    predictions: Sequence[dict],
    targets: Sequence[dict],
    iou_type: str = "bbox",
    max_detections: int = 100,
    area_ranges: dict | None = None,
    sigmas: torch.Tensor | None = None,
) -> dict:
    """COCO evaluation of detections: mAP over IoU 0.5:0.95, AP50, AP75, per-class AP, and AP
    by object size (AP_small, AP_medium, AP_large).

    Gives the numbers of pycocotools' ``COCOeval`` (``maxDets=100``, no crowd objects) on the
    same detections: per image and class the ``max_detections`` best detections are matched
    greedily (:func:`match_detections`) at each IoU threshold of :data:`IOU_THRESHOLDS`; per
    class, all images together give a PR curve (:func:`precision_recall`) and its 101-point
    AP (:func:`average_precision_coco`). A class with ground truth but no detection has AP 0;
    a class without ground truth has no AP and is left out of the means.

    For an area range (COCO's ``areaRng``), objects whose area lies outside it are ignored, as
    are detections matched to them and unmatched detections outside it; the AP of the range is
    computed on the rest (-1 when no object lies in it).

    Args:
        predictions: one dict per image, torchvision style: ``boxes`` float ``[N, 4]`` xyxy
            pixels, ``scores`` float ``[N]``, ``labels`` int ``[N]``; for ``"segm"`` also
            ``masks``, float ``[N, 1, H, W]`` (pixels > 0.5 are in) or bool ``[N, H, W]``.
        targets: one dict per image, in the same order: ``boxes`` ``[M, 4]``, ``labels``
            ``[M]``; for ``"segm"`` also ``masks`` bool ``[M, H, W]``.
        iou_type: ``"bbox"`` (box IoU), ``"segm"`` (mask IoU, i.e. mask AP) or ``"keypoints"``
            (:func:`object_keypoint_similarity`, i.e. keypoint AP): then predictions have
            ``keypoints`` float ``[N, K, 3]`` (x, y, score) and targets ``keypoints``
            ``[M, K, 3]`` (x, y, visibility) besides their boxes; objects without a labelled
            keypoint are ignored. (COCO evaluates keypoints with ``max_detections=20``.)
        max_detections: detections kept per image and class, highest scores first.
        area_ranges: ``{name: (low, high)}`` areas in pixels, both ends included; defaults to
            COCO's :data:`AREA_RANGES` (small < 32^2 <= medium < 96^2 <= large). Small images
            need smaller ranges: at 64 x 64 every COCO object is "small". An object's area is
            its target's ``area`` entry, else its mask's pixel count, else its box's.
        sigmas: float ``[K]``, the per-keypoint OKS constants (``"keypoints"`` only); default
            :data:`COCO_PERSON_SIGMAS` when ``K = 17``; the shapes' keypoints use
            ``cvlib.data.shapes.KEYPOINT_SIGMAS`` (0.1 each: OKS 0.5 at about 3.5 px on a median shape).

    Returns:
        A dict with

        - ``"map"``, ``"map_50"``, ``"map_75"``: floats, mean AP over classes with ground
          truth at IoU 0.5:0.95, 0.5 and 0.75 (-1 when no class has ground truth, as COCO),
        - ``"map_<name>"`` for each area range (``"map_small"``, ``"map_medium"``,
          ``"map_large"`` by default): mAP over IoU 0.5:0.95 of the objects of that size,
        - ``"per_class"``: ``{label: AP at IoU 0.5:0.95}`` for each class with ground truth,
        - ``"classes"``: int64 ``[K]``, the labels seen in targets or predictions, sorted,
        - ``"iou_thresholds"`` ``[T]`` and ``"recall_thresholds"`` ``[R]`` (float64),
        - ``"precision"``: float64 ``[T, R, K]``, the interpolated precision at each recall
          threshold (plot it against ``recall_thresholds`` for a PR curve); -1 for a class
          without ground truth, as ``COCOeval.eval["precision"]``,
        - ``"recall"``: float64 ``[T, K]``, the final recall per class; -1 without ground truth.
    """
    sequence(predictions, "predictions")
    sequence(targets, "targets")
    if len(predictions) != len(targets):
        raise ValueError(
            f"predictions and targets must have one dict per image each, got {len(predictions)} "
            f"and {len(targets)}"
        )
    choice(iou_type, "iou_type", ("bbox", "segm", "keypoints"))
    if sigmas is not None:
        sigmas = tensor(sigmas, "sigmas", ndim=1, dtype="float", finite=True)
        if (sigmas <= 0).any():
            raise ValueError(f"sigmas must be > 0, got {sigmas.tolist()}")
    _check_int(max_detections, "max_detections", 1)
    area_ranges = _check_area_ranges(AREA_RANGES if area_ranges is None else area_ranges)
    ranges = {"all": (0.0, math.inf), **area_ranges}
    images = [
        _match_image(p, t, i, iou_type, max_detections, ranges, sigmas)
        for i, (p, t) in enumerate(zip(predictions, targets, strict=True))
    ]
    classes = sorted({label for image in images for label in image})
    by_range = {name: _accumulate(images, classes, name) for name in ranges}
    precision, recall, has_gt = by_range["all"]

    def mean_ap(p: torch.Tensor, has: torch.Tensor) -> float:
        return p[..., has].mean().item() if has.any() else -1.0

    t50, t75 = 0, 5  # IOU_THRESHOLDS[0] == 0.5, IOU_THRESHOLDS[5] == 0.75
    return {
        "map": mean_ap(precision, has_gt),
        "map_50": mean_ap(precision[t50], has_gt),
        "map_75": mean_ap(precision[t75], has_gt),
        **{f"map_{name}": mean_ap(p, has) for name, (p, _, has) in by_range.items() if name != "all"},
        "per_class": {
            label: precision[:, :, k].mean().item() for k, label in enumerate(classes) if has_gt[k]
        },
        "classes": torch.tensor(classes, dtype=torch.int64),
        "iou_thresholds": IOU_THRESHOLDS.clone(),
        "recall_thresholds": RECALL_THRESHOLDS.clone(),
        "precision": precision,
        "recall": recall,
    }


def _check_area_ranges(area_ranges) -> dict:
    if not isinstance(area_ranges, dict):
        raise TypeError(f"area_ranges must be a dict {{name: (low, high)}}, got {describe(area_ranges)}")
    for name, bounds in area_ranges.items():
        pair = isinstance(bounds, (tuple, list)) and len(bounds) == 2
        if not isinstance(name, str) or name == "all" or not pair:
            raise ValueError(
                f"area_ranges must map names (not 'all') to (low, high) pairs, got {name!r}: {bounds!r}"
            )
        low, high = (number(v, f"area_ranges[{name!r}]", low=0) for v in bounds)
        if low > high:
            raise ValueError(f"area_ranges[{name!r}] must have low <= high, got {bounds!r}")
    return {name: (float(low), float(high)) for name, (low, high) in area_ranges.items()}


def _accumulate(images: list[dict], classes: list[int], area_range: str):
    """Interpolated precision ``[T, R, K]``, final recall ``[T, K]`` and which classes have
    ground truth ``[K]`` in ``area_range``, over all images (COCOeval's ``accumulate``)."""
    num_t, num_r, num_k = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(classes)
    precision = torch.full((num_t, num_r, num_k), -1.0, dtype=torch.float64)
    recall = torch.full((num_t, num_k), -1.0, dtype=torch.float64)
    has_gt = torch.zeros(num_k, dtype=torch.bool)
    for k, label in enumerate(classes):
        found = [image[label][area_range] for image in images if label in image]
        num_gt = sum(n for *_, n in found)
        if num_gt == 0:
            continue
        has_gt[k] = True
        scores = torch.cat([s for s, *_ in found])
        matched = torch.cat([m for _, m, _, _ in found], dim=1)  # [T, D]
        counted = torch.cat([c for _, _, c, _ in found], dim=1)  # [T, D]
        prec, rec = precision_recall(scores, matched, num_gt, counted)  # [T, D]
        precision[:, :, k] = interpolated_precision(rec, prec, RECALL_THRESHOLDS)
        recall[:, k] = rec[:, -1] if len(scores) else 0.0
    return precision, recall, has_gt


# ----------------------------------------------------------------------------------------------
# Panoptic segmentation: panoptic quality (Kirillov et al. 2019)
# ----------------------------------------------------------------------------------------------


def _panoptic_segments(output: dict, name: str, stuff: set[int], shape=None):
    """Segment id per pixel ``[H * W]`` (int64) and each segment's class: a segment is one
    (class, instance) pair; the instance of a stuff class does not count (one segment)."""
    if not isinstance(output, dict) or not {"classes", "instances"} <= output.keys():
        raise TypeError(f"{name} must be a dict with 'classes' and 'instances' [H, W], "
                        f"got {describe(output)}")
    classes = tensor(output["classes"], f"{name}['classes']", ndim=2, dtype="int", shape=shape)
    instances = tensor(output["instances"], f"{name}['instances']", shape=tuple(classes.shape), dtype="int")
    is_stuff = torch.isin(classes, torch.tensor(sorted(stuff), dtype=classes.dtype))
    pairs = torch.stack([classes.flatten(), torch.where(is_stuff, 0, instances).flatten()], 1)
    keys, segment = torch.unique(pairs, dim=0, return_inverse=True)
    return segment, keys[:, 0]


def panoptic_quality(
    predictions: Sequence[dict], targets: Sequence[dict], things: Sequence[int], stuff: Sequence[int],
    void: int = -1,
) -> dict:
    """Panoptic quality ``PQ = SQ x RQ`` over a data set, per class and averaged.

    A panoptic segmentation gives every pixel a class and, for *things* (countable objects),
    an instance: a **segment** is one (class, instance) pair; each *stuff* class (sky, road) is
    one segment per image. A predicted and a true segment of the same class **match** when
    their IoU is > 0.5 (then the match is unique). Per class, over all images,

        PQ = sum_TP IoU / (|TP| + |FP| / 2 + |FN| / 2) = SQ x RQ,
        SQ = sum_TP IoU / |TP|   (segmentation quality: how well matched segments overlap),
        RQ = |TP| / (|TP| + |FP| / 2 + |FN| / 2)   (recognition quality: an F1 score).

    Pixels whose true class is ``void`` are left out: they count in no true segment and not in
    the union of a match, and an unmatched prediction with more than half of its pixels on void
    is not a false positive (as the reference implementation, panopticapi; crowd regions are
    not supported).

    Args:
        predictions, targets: one dict per image with ``classes`` and ``instances``, int
            ``[H, W]`` each (the instance id of a stuff pixel is ignored).
        things, stuff: the class ids of each kind (disjoint).
        void: the true class of unlabelled pixels.

    Returns:
        ``{"pq", "sq", "rq"}`` (floats, the means over the classes that appear, predicted or
        true; -1 when none), the same for ``"things"`` and ``"stuff"`` (dicts), and
        ``"per_class"``: ``{class: {"pq", "sq", "rq", "tp", "fp", "fn"}}``.
    """
    sequence(predictions, "predictions")
    sequence(targets, "targets")
    if len(predictions) != len(targets):
        raise ValueError(f"predictions and targets must have one dict per image each, got "
                         f"{len(predictions)} and {len(targets)}")
    things, stuff = set(sequence(things, "things")), set(sequence(stuff, "stuff"))
    integer(void, "void")
    if things & stuff:
        raise ValueError(f"things and stuff must be disjoint, both hold {sorted(things & stuff)}")
    counts: dict[int, list[float]] = {}  # class -> [tp, fp, fn, sum of matched IoUs]
    for i, (prediction, target) in enumerate(zip(predictions, targets)):
        true_segment, true_class = _panoptic_segments(target, f"targets[{i}]", stuff)
        shape = tuple(torch.as_tensor(target["classes"]).shape)
        pred_segment, pred_class = _panoptic_segments(prediction, f"predictions[{i}]", stuff, shape)
        # intersections of every (true, predicted) pair of segments, counted in one bincount
        pairs = true_segment * len(pred_class) + pred_segment
        inter = torch.bincount(pairs, minlength=len(true_class) * len(pred_class)).view(len(true_class), -1)
        pred_area = inter.sum(0)  # all its pixels, void included
        pred_on_void = inter[true_class == void].sum(0)
        true_area = inter.sum(1)
        union = pred_area[None, :] + true_area[:, None] - inter - pred_on_void[None, :]
        iou = inter.double() / union.clamp(min=1).double()
        same = true_class[:, None] == pred_class[None, :]
        match = same & (iou > 0.5) & (true_class != void)[:, None]  # [T, P]: one per row and column
        classes = torch.cat([true_class, pred_class]).unique()
        for c in classes[classes != void].tolist():  # a prediction of "void" is no prediction
            tp_iou = iou[match & (true_class == c)[:, None]]
            matched_pred = match.any(0)
            fp = ((pred_class == c) & ~matched_pred & (pred_on_void * 2 <= pred_area)).sum().item()
            fn = ((true_class == c) & ~match.any(1)).sum().item()
            row = counts.setdefault(c, [0, 0, 0, 0.0])
            row[0] += len(tp_iou)
            row[1] += fp
            row[2] += fn
            row[3] += tp_iou.sum().item()
    per_class = {}
    for c, (tp, fp, fn, iou_sum) in sorted(counts.items()):
        if tp + fp + fn == 0:
            continue
        sq = iou_sum / tp if tp else 0.0
        rq = tp / (tp + fp / 2 + fn / 2)
        per_class[c] = {"pq": sq * rq, "sq": sq, "rq": rq, "tp": tp, "fp": fp, "fn": fn}

    def average(classes) -> dict:
        rows = [per_class[c] for c in per_class if c in classes]
        return {k: float(np.mean([r[k] for r in rows])) if rows else -1.0 for k in ("pq", "sq", "rq")}

    return {**average(set(per_class)), "things": average(things), "stuff": average(stuff),
            "per_class": per_class}
