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

On a **feature pyramid** (FPN, ``cvlib/models/fpn.py``) the same head slides over every level,
each level with anchors of its own scales (small ones on the fine maps); the anchors of all
levels are labelled and sampled together, and proposals are chosen level by level (the best of
each level, NMS within each level), as torchvision's RPN does.

:class:`~cvlib.models.rcnn.FasterRCNN` feeds its proposals to the second stage.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import sequence
from cvlib.models.detection import SMOOTH_L1_BETA
from cvlib.ops import (
    batched_nms,
    clip_boxes_to_image,
    decode_boxes,
    encode_boxes,
    label_anchors,
    remove_small_boxes,
    sample_anchors,
)
from cvlib.ops.anchors import pyramid_anchors

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

    On a feature pyramid, ``stride`` holds one stride per level (fine to coarse) and ``scales``
    one sequence of scales per level, all of the same length (one head serves every level);
    ``pre_nms_top_n`` then counts per level.
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
        pyramid = isinstance(stride, (list, tuple))
        self.strides = tuple(sequence(stride, "stride", nonempty=True)) if pyramid else (stride,)
        self.level_scales = (tuple(tuple(s) for s in sequence(scales, "scales")) if pyramid
                             else (tuple(scales),))
        if len(self.level_scales) != len(self.strides) or len({len(s) for s in self.level_scales}) != 1:
            raise ValueError(f"scales must hold one sequence of scales per level ({len(self.strides)}), "
                             f"all of the same length, got {scales!r}")
        self.stride, self.scales, self.aspect_ratios = stride, scales, tuple(aspect_ratios)
        self.pre_nms_top_n, self.post_nms_top_n, self.nms_thresh = pre_nms_top_n, post_nms_top_n, nms_thresh
        self.fg_iou, self.bg_iou = fg_iou, bg_iou
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        k = len(self.level_scales[0]) * len(self.aspect_ratios)
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.cls_logits = nn.Conv2d(in_channels, k, 1)
        self.bbox_pred = nn.Conv2d(in_channels, 4 * k, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def anchors(self, feature_size, device=None) -> torch.Tensor:
        """All ``[h * w * K, 4]`` anchors of an ``(h, w)`` feature map, in image pixels (on a
        pyramid, ``feature_size`` lists the ``(h, w)`` of every level: their anchors, in order)."""
        sizes = feature_size if isinstance(feature_size[0], (list, tuple, torch.Size)) else [feature_size]
        return pyramid_anchors(sizes, self.strides, self.level_scales, self.aspect_ratios).to(device)

    def head(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, C, h, w]`` -> objectness ``[B, h * w * K]`` and deltas ``[B, h * w * K, 4]``,
        in the order of :meth:`anchors`."""
        t = F.relu(self.conv(features))
        batch = len(features)
        objectness = self.cls_logits(t).permute(0, 2, 3, 1).reshape(batch, -1)
        deltas = self.bbox_pred(t)  # [B, K * 4, h, w]
        deltas = deltas.reshape(batch, -1, 4, *deltas.shape[2:]).permute(0, 3, 4, 1, 2).reshape(batch, -1, 4)
        return objectness, deltas

    def filter_proposals(self, objectness: torch.Tensor, boxes: torch.Tensor, image_size,
                         level_sizes: Sequence[int] | None = None) -> torch.Tensor:
        """The proposals ``[P, 4]`` of one image from the objectness logits ``[A]`` of all its
        decoded anchors ``boxes`` ``[A, 4]`` (torchvision's ``filter_proposals``): keep the
        ``pre_nms_top_n`` best of each level (``level_sizes``: the number of anchors of each
        level, in order; default one level), clip them into the image, drop degenerate boxes, NMS
        at ``nms_thresh`` within each level, keep the ``post_nms_top_n`` best."""
        mode = 0 if self.training else 1
        level_sizes = [len(objectness)] if level_sizes is None else list(level_sizes)
        top, level, start = [], [], 0
        for i, scores in enumerate(objectness.split(level_sizes)):
            best = scores.topk(min(self.pre_nms_top_n[mode], len(scores))).indices + start
            top.append(best)
            level.append(torch.full_like(best, i))
            start += len(scores)
        top, level = torch.cat(top), torch.cat(level)
        boxes, scores = clip_boxes_to_image(boxes[top], image_size), objectness[top]
        non_degenerate = remove_small_boxes(boxes, MIN_PROPOSAL_SIZE)
        boxes, scores, level = boxes[non_degenerate], scores[non_degenerate], level[non_degenerate]
        return boxes[batched_nms(boxes, scores, level, self.nms_thresh)[: self.post_nms_top_n[mode]]]

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

    def forward(self, features, image_sizes, targets=None):
        """``features``: the ``[B, C, h, w]`` map, or on a pyramid the list of its levels, fine to
        coarse. Returns ``(proposals, losses)``: one ``[P_i, 4]`` tensor per image, and the RPN
        losses in training mode (else an empty dict)."""
        levels = list(features) if isinstance(features, (list, tuple)) else [features]
        if len(levels) != len(self.strides):
            raise ValueError(f"features must hold {len(self.strides)} level(s), one per stride, "
                             f"got {len(levels)}")
        heads = [self.head(level) for level in levels]  # the same head on every level
        objectness, deltas = torch.cat([o for o, _ in heads], 1), torch.cat([d for _, d in heads], 1)
        anchors = self.anchors([level.shape[2:] for level in levels], levels[0].device)
        batch = len(levels[0])
        boxes = decode_boxes(deltas.detach().reshape(-1, 4), anchors.repeat(batch, 1))
        boxes = boxes.reshape(batch, -1, 4)  # no gradient through the proposals
        level_sizes = [o.shape[1] for o, _ in heads]
        proposals = [self.filter_proposals(o, b, size, level_sizes)
                     for o, b, size in zip(objectness.detach(), boxes, image_sizes)]
        losses = self.losses(objectness, deltas, anchors, targets) if self.training else {}
        return proposals, losses
