"""What every detector of the course shares (R-CNN family, YOLO, DETR): the input contract,
image batching, the small backbone, and the last step of inference.

- ``check_detection_inputs``: torchvision's detection contract, checked once for every model.
- ``batch_images``: images of different sizes -> one zero-padded batch.
- ``Backbone``: the course's small VGG-style CNN, stride 8.
- ``DetectionSettings``: what a detector keeps at test time (score threshold, NMS threshold,
  detections per image), one object for every detector.
- ``select_detections``: from every scored candidate box to the detections of one image: drop
  degenerate boxes and low scores, per-class NMS, keep the best (torchvision's
  ``RoIHeads.postprocess_detections`` after its decoding); ``select_per_class`` first makes
  each box a candidate of every class, as R-CNN's heads, YOLO and SSD score them.

Detectors are configured one way (as torchvision and DETR do): a model takes its **modules**
(backbone, RPN, heads) and one ``DetectionSettings``; a small builder function per model
(``build_faster_rcnn(...)``, ``build_mask_rcnn(...)``) makes the course's default modules. DETR keeps only
a score threshold: it has no NMS to set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cvlib._checks import counts, describe, integer, number, sequence, tensor
from cvlib.models.blocks import vgg_features
from cvlib.ops import batched_nms, remove_small_boxes
from cvlib.ops.boxes import _check_boxes

__all__ = [
    "check_detection_inputs", "batch_images", "Backbone", "DetectionSettings", "select_detections",
    "select_per_class",
]

SMOOTH_L1_BETA = 1.0 / 9  # torchvision's box losses: quadratic below 1/9, linear above


def check_detection_inputs(
    images, targets, num_classes: int, training: bool, like: nn.Module | None = None
) -> None:
    """Raise ``TypeError`` / ``ValueError`` naming the argument unless ``images`` is a list of
    finite float ``[3, H, W]`` tensors (of the dtype of the parameters of the model ``like``)
    and, in training, ``targets`` one dict per image with ``boxes`` finite float ``[N, 4]``
    (x2 >= x1, y2 >= y1) and ``labels`` int64 ``[N]`` in ``1..num_classes``."""
    if not isinstance(images, (list, tuple)) or not all(isinstance(i, torch.Tensor) for i in images):
        raise TypeError(f"images must be a list of [3, H, W] tensors, got {describe(images)}")
    integer(num_classes, "num_classes", low=1)
    dtype = next(like.parameters()).dtype if like is not None else None
    for i, image in enumerate(images):
        tensor(image, f"images[{i}]", shape=(3, "H", "W"), dtype="float", finite=True)
        if dtype is not None and image.dtype != dtype:
            raise ValueError(f"images[{i}] must have the model's dtype {dtype}, got {image.dtype}")
    if not images:
        raise ValueError("images must not be empty")
    if not training:
        return
    if targets is None:
        raise ValueError(
            "targets are required in training mode (model.train()); call model.eval() to predict"
        )
    if not isinstance(targets, (list, tuple)) or len(targets) != len(images):
        raise ValueError(
            f"targets must be a list of one dict per image ({len(images)}), got {type(targets).__name__}"
        )
    for i, t in enumerate(targets):
        if not isinstance(t, dict):
            raise TypeError(f"targets[{i}] must be a dict with 'boxes' and 'labels', got {describe(t)}")
        boxes, labels = t.get("boxes"), t.get("labels")
        if not isinstance(boxes, torch.Tensor) or boxes.shape[1:] != (4,) or not boxes.is_floating_point():
            got = getattr(boxes, "shape", boxes)
            raise ValueError(f"targets[{i}]['boxes'] must be a float [N, 4] tensor, got {got}")
        int_vector = isinstance(labels, torch.Tensor) and not labels.is_floating_point() and labels.ndim == 1
        if not int_vector or len(labels) != len(boxes):
            got = getattr(labels, "shape", labels)
            raise ValueError(f"targets[{i}]['labels'] must be an int tensor [N] = [{len(boxes)}], got {got}")
        if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
            raise ValueError(
                f"targets[{i}]['labels'] must lie in 1..{num_classes} (0 is background), "
                f"got {labels.tolist()}"
            )
        if not torch.isfinite(boxes).all():
            raise ValueError(
                f"targets[{i}]['boxes'] contains NaN or inf; it must be finite, got {boxes.tolist()}"
            )
        if (boxes[:, 2:] < boxes[:, :2]).any():
            raise ValueError(
                f"targets[{i}]['boxes'] must be xyxy with x2 >= x1 and y2 >= y1, got {boxes.tolist()}"
            )


def batch_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """A list of ``[3, H_i, W_i]`` images -> one ``[B, 3, H, W]`` batch, zero-padded at the
    bottom and right to the largest size (boxes keep their pixel coordinates)."""
    for i, image in enumerate(sequence(images, "images", nonempty=True)):
        tensor(image, f"images[{i}]", shape=(3, "H", "W"))
    height = max(i.shape[1] for i in images)
    width = max(i.shape[2] for i in images)
    batch = images[0].new_zeros((len(images), 3, height, width))
    for b, image in zip(batch, images):
        b[:, : image.shape[1], : image.shape[2]] = image
    return batch


class Backbone(nn.Module):
    """The small VGG-style CNN of the course (``vgg_features``): ``[B, 3, H, W]`` ->
    ``[B, out_channels, H / 8, W / 8]``, ``out_channels = 8 * width``, stride 8."""

    stride = 8

    def __init__(self, width: int = 8):
        super().__init__()
        counts(width=width)
        self.body = vgg_features(width)
        self.out_channels = 8 * width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


@dataclass
class DetectionSettings:
    """What a detector keeps in eval mode (torchvision's defaults): candidates scoring above
    ``score_thresh``, NMS within each class at ``nms_thresh``, the ``detections_per_img`` best.
    Change them on a trained model as ``model.settings.score_thresh = 0.0``."""

    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100

    def __post_init__(self):
        self.check()

    def check(self) -> None:
        """Raise ``ValueError`` naming the setting unless both thresholds lie in ``[0, 1]`` and
        ``detections_per_img >= 1``."""
        number(self.score_thresh, "score_thresh", low=0, high=1)
        number(self.nms_thresh, "nms_thresh", low=0, high=1)
        integer(self.detections_per_img, "detections_per_img", low=1)


def settings_or_default(settings) -> DetectionSettings:
    """``settings`` (a :class:`DetectionSettings`) or the defaults when ``None``."""
    if settings is None:
        return DetectionSettings()
    if not isinstance(settings, DetectionSettings):
        raise TypeError(f"settings must be a DetectionSettings, got {describe(settings)}")
    return settings


def select_detections(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    settings: DetectionSettings | None = None,
    min_size: float = 1e-2,
) -> dict[str, torch.Tensor]:
    """The detections of one image from its ``N`` candidates: xyxy ``boxes`` ``[N, 4]`` (clipped
    to the image), ``scores`` ``[N]`` and class ``labels`` ``[N]`` (one candidate per box and
    class). Four steps, torchvision's, with ``settings`` (default :class:`DetectionSettings`):

    1. drop degenerate boxes (narrower or lower than ``min_size``, :func:`remove_small_boxes`),
    2. drop scores <= ``settings.score_thresh``,
    3. NMS at ``settings.nms_thresh`` within each class (``batched_nms``),
    4. keep the ``settings.detections_per_img`` best.

    Returns ``{"boxes" [D, 4], "labels" [D], "scores" [D]}``, best first."""
    _check_boxes(boxes, ordered=False)
    tensor(scores, "scores", shape=(len(boxes),), dtype="float")
    tensor(labels, "labels", shape=(len(boxes),), dtype="int")
    settings = settings_or_default(settings)
    settings.check()  # its fields may have been changed since it was made
    keep = remove_small_boxes(boxes, min_size)
    keep = keep[scores[keep] > settings.score_thresh]
    survivors = batched_nms(boxes[keep].detach(), scores[keep].detach(), labels[keep], settings.nms_thresh)
    keep = keep[survivors][: settings.detections_per_img]
    return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}


def select_per_class(boxes: torch.Tensor, scores: torch.Tensor, settings: DetectionSettings | None = None):
    """The detections of one image whose ``N`` boxes each score every class: ``scores``
    ``[N, C]`` (class ``c + 1`` in column ``c``; no background column) and ``boxes`` ``[N, 4]``
    (one box for all classes, YOLO's and SSD's) or ``[N, C, 4]`` (one per class, R-CNN's
    heads). Each (box, class) pair is a candidate of :func:`select_detections`, box by box."""
    tensor(scores, "scores", shape=("N", "C"), dtype="float")
    n, c = scores.shape
    if tensor(boxes, "boxes", dtype="float").ndim == 2:
        boxes = tensor(boxes, "boxes", shape=(n, 4))[:, None].expand(-1, c, -1)
    tensor(boxes, "boxes", shape=(n, c, 4))
    labels = torch.arange(1, c + 1, device=scores.device).repeat(n)
    return select_detections(boxes.reshape(-1, 4), scores.reshape(-1), labels, settings)
