"""The Region Proposal Network of Faster R-CNN (Ren et al. 2015, lecture 05): the network
proposes its own regions.

1. **Anchors** (``RegionProposalNetwork.anchors``): ``K`` boxes (scales x aspect ratios)
   centred on every cell of the feature map.
2. **The head** (``head``): a 3x3 conv, then two 1x1 convs give each anchor an objectness logit
   and box deltas ``(tx, ty, tw, th)``.
3. **Proposals** (``filter_proposals``): decode the deltas, keep the best, clip, drop
   degenerate boxes, NMS.
4. **The loss** (``losses``): anchors labelled by IoU with the gt boxes, a balanced sample,
   binary cross-entropy on objectness and smooth L1 on the positives' deltas.

:class:`~cvlib.models.rcnn.FasterRCNN` feeds its proposals to the second stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvlib.models.detection import SMOOTH_L1_BETA
from cvlib.ops import (
    clip_boxes_to_image,
    decode_boxes,
    encode_boxes,
    generate_anchors,
    label_anchors,
    nms,
    remove_small_boxes,
    sample_anchors,
)

__all__ = ["RegionProposalNetwork"]

MIN_PROPOSAL_SIZE = 1e-3  # torchvision's RPN: proposals narrower or lower than this are dropped


class RegionProposalNetwork(nn.Module):
    """RPN (Ren et al. 2015): ``K = len(scales) * len(aspect_ratios)`` anchors at every cell of
    the feature map; a 3x3 conv then two 1x1 convs give each anchor an **objectness** logit
    and **box deltas**. Proposals: decode, keep the ``pre_nms_top_n`` best, clip, drop tiny
    boxes, NMS at ``nms_thresh``, keep ``post_nms_top_n``.

    Training labels anchors positive at IoU >= 0.7 (and each gt box's best anchor), negative
    below 0.3 (``label_anchors``), samples 256 per image, half positive at most
    (``sample_anchors``), and returns ``loss_objectness`` (binary cross-entropy) and
    ``loss_rpn_box_reg`` (smooth L1 on the positives, divided by the sample size).
    """

    def __init__(
        self,
        in_channels: int,
        stride: int = 8,
        scales: Sequence[float] = (16.0, 32.0),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        pre_nms_top_n: tuple[int, int] = (2000, 1000),
        post_nms_top_n: tuple[int, int] = (2000, 1000),
        nms_thresh: float = 0.7,
        fg_iou: float = 0.7,
        bg_iou: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
    ):
        """``pre_nms_top_n`` and ``post_nms_top_n``: ``(training, testing)``."""
        super().__init__()
        self.stride, self.scales, self.aspect_ratios = stride, tuple(scales), tuple(aspect_ratios)
        self.pre_nms_top_n, self.post_nms_top_n, self.nms_thresh = pre_nms_top_n, post_nms_top_n, nms_thresh
        self.fg_iou, self.bg_iou = fg_iou, bg_iou
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        k = len(self.scales) * len(self.aspect_ratios)
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, k, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * k, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def anchors(self, feature_size, device=None) -> torch.Tensor:
        """All ``[h * w * K, 4]`` anchors of an ``(h, w)`` feature map, in image pixels."""
        return generate_anchors(feature_size, self.stride, self.scales, self.aspect_ratios).to(device)

    def head(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, h, w]`` -> objectness ``[B, h * w * K]`` and deltas ``[B, h * w * K, 4]``,
        in the order of :meth:`anchors`."""
        t = F.relu(self.conv(features))
        batch = len(features)
        objectness = self.cls_logits(t).permute(0, 2, 3, 1).reshape(batch, -1)
        deltas = self.bbox_pred(t)  # [B, K * 4, h, w]
        deltas = deltas.reshape(batch, -1, 4, *deltas.shape[2:]).permute(0, 3, 4, 1, 2).reshape(batch, -1, 4)
        return objectness, deltas

    def filter_proposals(self, objectness: torch.Tensor, boxes: torch.Tensor, image_size) -> torch.Tensor:
        """The proposals ``[P, 4]`` of one image from the objectness logits ``[A]`` of all its
        decoded anchors ``boxes`` ``[A, 4]`` (torchvision's ``filter_proposals``, one feature
        level): keep the ``pre_nms_top_n`` best, clip them into the image, drop degenerate
        boxes, NMS at ``nms_thresh``, keep the ``post_nms_top_n`` best."""
        mode = 0 if self.training else 1
        top = objectness.topk(min(self.pre_nms_top_n[mode], len(objectness))).indices
        boxes, scores = clip_boxes_to_image(boxes[top], image_size), objectness[top]
        non_degenerate = remove_small_boxes(boxes, MIN_PROPOSAL_SIZE)
        boxes, scores = boxes[non_degenerate], scores[non_degenerate]
        return boxes[nms(boxes, scores, self.nms_thresh)[: self.post_nms_top_n[mode]]]

    def losses(self, objectness, deltas, anchors, targets) -> dict[str, torch.Tensor]:
        """The two RPN losses over a balanced sample of anchors of every image."""
        picked, labels, reg_targets, positives = [], [], [], []
        for b, target in enumerate(targets):
            anchor_labels, matched = label_anchors(anchors, target["boxes"], self.fg_iou, self.bg_iou)
            pos, neg = sample_anchors(anchor_labels, self.batch_size_per_image, self.positive_fraction)
            gt = target["boxes"][matched[pos]]
            offset = b * len(anchors)
            positives.append(pos + offset)
            picked.append(torch.cat([pos, neg]) + offset)
            labels.append(torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).to(objectness))
            reg_targets.append(encode_boxes(gt, anchors[pos]))
        picked, positives = torch.cat(picked), torch.cat(positives)
        loss_objectness = F.binary_cross_entropy_with_logits(
            objectness.reshape(-1)[picked], torch.cat(labels)
        )
        box = F.smooth_l1_loss(
            deltas.reshape(-1, 4)[positives], torch.cat(reg_targets), beta=SMOOTH_L1_BETA, reduction="sum"
        )
        return {"loss_objectness": loss_objectness, "loss_rpn_box_reg": box / max(len(picked), 1)}

    def forward(self, features: torch.Tensor, image_sizes, targets=None):
        """Returns ``(proposals, losses)``: one ``[P_i, 4]`` tensor per image, and the RPN
        losses in training mode (else an empty dict)."""
        objectness, deltas = self.head(features)
        anchors = self.anchors(features.shape[2:], features.device)
        boxes = decode_boxes(deltas.detach().reshape(-1, 4), anchors.repeat(len(features), 1))
        boxes = boxes.reshape(len(features), -1, 4)  # no gradient through the proposals
        proposals = [
            self.filter_proposals(o, b, size) for o, b, size in zip(objectness.detach(), boxes, image_sizes)
        ]
        losses = self.losses(objectness, deltas, anchors, targets) if self.training else {}
        return proposals, losses
