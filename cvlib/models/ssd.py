"""SSD (Liu et al. 2016, lecture 06): a single-stage detector that predicts from several
feature maps, with default boxes (anchors) of several shapes at every cell of each.

Read top to bottom:

1. **Default boxes** (``default_boxes``): on every feature map (stride 8, 16, 32 here) one box
   of each aspect ratio centred on every cell, of a size that grows with the stride: fine maps
   for small objects, coarse maps for large ones (``generate_anchors`` of each map, moved to
   the cell centres).
2. **The network** (``SSD``): the course's backbone (stride 8), then extra stride-2 layers;
   on each map a 3x3 convolution gives every default box ``C + 1`` class scores (0 is
   background) and four deltas ``(t_x, t_y, t_w, t_h)`` (``encode_boxes`` / ``decode_boxes``
   with SSD's weights 10, 10, 5, 5, torchvision's ``BoxCoder`` numbers).
3. **The loss** (``SSD.loss``): a default box is positive when its IoU with an object is at
   least 0.5 (and every object's best box is positive, ``label_anchors``); cross-entropy of
   the classes of the positives and of the **hardest** negatives only, three per positive
   (hard negative mining: the many easy background boxes would swamp the few objects), plus
   smooth L1 (beta 1) of the positives' deltas, divided by the number of positives.
4. **Detections** (``SSD.postprocess``): softmax scores of every box and class, then the
   shared ``select_per_class`` (threshold, per-class NMS, top-k).

Follows torchvision's detection contract as every detector of the course does, with their
input checks and image batching (``cvlib/models/detection.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import counts, integer, number, sequence
from cvlib.models import detection
from cvlib.models.blocks import conv_bn_relu
from cvlib.models.detection import Backbone, DetectionSettings
from cvlib.ops import clip_boxes_to_image, decode_boxes, encode_boxes, generate_anchors, label_anchors
from cvlib.ops.anchors import NEGATIVE, POSITIVE

__all__ = ["default_boxes", "SSD"]

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # SSD's "variances" 0.1, 0.2 as torchvision's BoxCoder weights


def default_boxes(feature_sizes: Sequence, strides: Sequence[int], scales: Sequence[float],
                  aspect_ratios: Sequence[float]) -> torch.Tensor:
    """SSD's default boxes ``[sum_l H_l W_l K, 4]`` (xyxy pixels, ``K = len(aspect_ratios)``)
    of feature maps of ``feature_sizes`` ``[(H_l, W_l), ...]`` with ``strides`` ``[s_l, ...]``
    and one box size per map, ``scales`` ``[a_l, ...]`` (square root of the area): the boxes
    of map ``l`` are ``generate_anchors((H_l, W_l), s_l, (a_l,), aspect_ratios)`` moved by
    ``s_l / 2``, centred on the cells rather than on their top-left corners. Order: map by
    map, then as ``generate_anchors``."""
    sequence(feature_sizes, "feature_sizes", nonempty=True)
    if not len(feature_sizes) == len(sequence(strides, "strides")) == len(sequence(scales, "scales")):
        raise ValueError(f"feature_sizes, strides and scales must have one entry per map, got "
                         f"{len(feature_sizes)}, {len(strides)} and {len(scales)}")
    boxes = [generate_anchors(size, stride, (scale,), aspect_ratios) + number(stride, "strides", low=1) / 2
             for size, stride, scale in zip(feature_sizes, strides, scales)]
    return torch.cat(boxes)


class SSD(nn.Module):
    """A small SSD: ``Backbone(width)`` (stride 8) and ``len(scales) - 1`` extra 3x3 stride-2
    conv-BN-ReLU layers give one feature map per entry of ``scales`` (strides 8, 16, 32, ...);
    on each, a 3x3 convolution predicts ``K (C + 1)`` class logits and a 3x3 convolution
    ``4 K`` deltas, ``K = len(aspect_ratios)`` default boxes per cell.

    Args:
        num_classes: ``C``; labels are ``1..C``, class 0 of the logits is background.
        width: of the course's ``Backbone`` (``8 * width`` channels on every map).
        scales: default-box size (pixels, square root of the area) of each map, finest first.
        aspect_ratios: ``h / w`` of the default boxes of every cell.
        fg_iou: IoU from which a default box is matched to an object (SSD: 0.5).
        negatives_per_positive: hard negatives kept in the class loss per positive (SSD: 3).
        settings: the detections kept in eval mode (a ``DetectionSettings``; torchvision's defaults).
    """

    def __init__(self, num_classes: int = 3, width: int = 16, scales: Sequence[float] = (12.0, 24.0, 44.0),
                 aspect_ratios: Sequence[float] = (1 / 3, 1 / 2, 1.0, 2.0, 3.0), fg_iou: float = 0.5,
                 negatives_per_positive: int = 3, settings: DetectionSettings | None = None):
        super().__init__()
        counts(num_classes=num_classes, width=width)
        for name, values in (("scales", scales), ("aspect_ratios", aspect_ratios)):
            for value in sequence(values, name, nonempty=True):
                number(value, name, low=0, low_open=True)
        number(fg_iou, "fg_iou", low=0, high=1)
        integer(negatives_per_positive, "negatives_per_positive", low=0)
        self.num_classes, self.scales, self.aspect_ratios = num_classes, tuple(scales), tuple(aspect_ratios)
        self.fg_iou, self.negatives_per_positive = fg_iou, negatives_per_positive
        self.settings = detection.settings_or_default(settings)
        self.backbone = Backbone(width)
        channels, k = self.backbone.out_channels, len(aspect_ratios)
        self.extras = nn.ModuleList(conv_bn_relu(channels, channels, stride=2) for _ in scales[1:])
        self.strides = tuple(self.backbone.stride * 2**level for level in range(len(scales)))
        self.class_heads = nn.ModuleList(
            nn.Conv2d(channels, k * (num_classes + 1), 3, padding=1) for _ in scales
        )
        self.box_heads = nn.ModuleList(nn.Conv2d(channels, k * 4, 3, padding=1) for _ in scales)

    def features(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """The feature maps ``[N, 8 width, H / s_l, W / s_l]`` of a batch ``[N, 3, H, W]``, finest first."""
        maps = [self.backbone(batch)]
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return maps

    def head(self, batch: torch.Tensor):
        """Class logits ``[N, D, C + 1]``, deltas ``[N, D, 4]`` and the default boxes ``[D, 4]``
        of a batch ``[N, 3, H, W]``, in the order of :func:`default_boxes`."""
        maps = self.features(batch)
        # [N, K * X, h, w] -> [N, h * w * K, X]: cell by cell, then default box, as default_boxes
        logits = [h(m).permute(0, 2, 3, 1).reshape(len(m), -1, self.num_classes + 1)
                  for h, m in zip(self.class_heads, maps)]
        deltas = [h(m).permute(0, 2, 3, 1).reshape(len(m), -1, 4) for h, m in zip(self.box_heads, maps)]
        boxes = default_boxes([m.shape[2:] for m in maps], self.strides, self.scales, self.aspect_ratios)
        return torch.cat(logits, 1), torch.cat(deltas, 1), boxes.to(batch)

    def forward(self, images, targets=None):
        detection.check_detection_inputs(images, targets, self.num_classes, self.training, self)
        batch = detection.batch_images(images)
        logits, deltas, boxes = self.head(batch)
        if self.training:
            return self.loss(logits, deltas, boxes, targets)
        return [self.postprocess(lg, dl, boxes, image.shape[1:])
                for lg, dl, image in zip(logits, deltas, images)]

    def loss(self, logits: torch.Tensor, deltas: torch.Tensor, boxes: torch.Tensor,
             targets: list[dict]) -> dict[str, torch.Tensor]:
        """``loss_class`` (positives and hard negatives) and ``loss_box`` (smooth L1 of the
        positives' deltas), both summed over the batch and divided by its number of positives."""
        class_loss, box_loss, num_positive = logits.new_zeros(()), logits.new_zeros(()), 0
        for image_logits, image_deltas, target in zip(logits, deltas, targets):
            labels, matched = label_anchors(boxes, target["boxes"], self.fg_iou, self.fg_iou)
            positive = labels == POSITIVE
            classes = torch.where(positive, target["labels"][matched] if len(target["boxes"]) else 0, 0)
            cross_entropy = F.cross_entropy(image_logits, classes, reduction="none")  # [D]
            wanted_negatives = self.negatives_per_positive * int(positive.sum())
            num_negatives = min(wanted_negatives, int((labels == NEGATIVE).sum()))
            hardest = cross_entropy.masked_fill(labels != NEGATIVE, -1).argsort(descending=True)
            negatives = hardest[:num_negatives]
            class_loss = class_loss + cross_entropy[positive].sum() + cross_entropy[negatives].sum()
            if positive.any():
                wanted = encode_boxes(target["boxes"][matched[positive]], boxes[positive], BOX_WEIGHTS)
                box_loss = box_loss + F.smooth_l1_loss(image_deltas[positive], wanted, reduction="sum")
            num_positive += int(positive.sum())
        n = max(num_positive, 1)
        return {"loss_class": class_loss / n, "loss_box": box_loss / n}

    def postprocess(self, logits: torch.Tensor, deltas: torch.Tensor, boxes: torch.Tensor,
                    image_size) -> dict[str, torch.Tensor]:
        """Detections of one image from its class logits ``[D, C + 1]`` and deltas ``[D, 4]`` on
        the default ``boxes`` ``[D, 4]``: decoded boxes clipped to ``image_size``, one candidate
        per box and class scored by the softmax, then :func:`detection.select_per_class`. Returns
        ``{"boxes" [P, 4], "labels" [P], "scores" [P]}``."""
        decoded = clip_boxes_to_image(decode_boxes(deltas, boxes, BOX_WEIGHTS), image_size)
        scores = logits.softmax(-1)[:, 1:]  # [D, C]: background dropped
        return detection.select_per_class(decoded, scores, self.settings)
