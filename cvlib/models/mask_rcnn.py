"""Mask R-CNN (He et al. 2017), lecture 08: Faster R-CNN plus a mask head.

Read top to bottom:

1. **Mask targets** (``project_masks``): for each positive RoI, the ground-truth mask of its
   matched object, cut out at the RoI and resampled to ``M x M`` (28 x 28) with RoI Align.
2. **The mask head** (``MaskHead``): a small FCN on the ``14 x 14`` RoI feature -> a
   ``2x`` transposed convolution -> one ``M x M`` mask logit map **per class**.
3. **The mask loss** (``mask_loss``): per-pixel binary cross-entropy on the map of the RoI's
   **ground-truth class only**; the other classes' maps get no gradient, so classes do not
   compete for a pixel (the classification head decides the class).
4. **Pasting** (``paste_masks``): at test time the ``M x M`` probabilities of the predicted
   class are resampled into the detection's box in the full image.
5. ``MaskRoIHeads`` adds 1-4 to Faster R-CNN's second stage through its ``extra_losses`` /
   ``extra_outputs`` hooks, and ``MaskRCNN`` is ``FasterRCNN`` with those heads; ``build_mask_rcnn``
   builds the course's.

The mask branch pools its features with RoI Align or RoI Pool (``mask_pooler``), the
switch of the lecture's experiment: RoI Pool rounds every RoI to the feature grid (here
stride 8), which shifts a mask by up to several pixels.

Contract (torchvision's): ``model(images, targets)`` -> dict of losses, where each target
also holds ``masks`` bool ``[N, H, W]``; ``model(images)`` -> per image ``{"boxes" [D, 4],
"labels" [D], "scores" [D], "masks" float [D, 1, H, W]}`` with mask probabilities in ``[0, 1]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import choice, counts, describe, module, pair, sequence, tensor
from cvlib.models.rcnn import FasterRCNN, RoIHeads, RoIPooler, build_faster_rcnn
from cvlib.ops import roi_align
from cvlib.ops.boxes import _check_boxes

__all__ = [
    "project_masks", "MaskHead", "mask_loss", "softmax_mask_loss", "paste_masks", "MaskRoIHeads",
    "check_masks", "MaskRCNN", "build_mask_rcnn",
]


def project_masks(
    gt_masks: torch.Tensor, rois: torch.Tensor, matched: torch.Tensor, size: int = 28, aligned: bool = True
) -> torch.Tensor:
    """Mask targets of ``K`` RoIs: ``gt_masks`` bool ``[N, H, W]`` of one image, ``rois``
    ``[K, 4]`` xyxy pixels, ``matched`` int64 ``[K]`` (the gt index of each RoI) ->
    float ``[K, size, size]`` in ``[0, 1]``: mask ``matched[k]`` cropped at RoI ``k`` and
    resampled by RoI Align.

    ``aligned=True`` samples at pixel centres, so that :func:`paste_masks` puts a target back
    exactly where it came from (as detectron2). ``aligned=False`` is torchvision's
    ``project_masks_on_boxes``: its samples sit half a pixel off, and a 28 x 28 target of a
    small shape pasted back overlaps the original by IoU 0.76 at worst (tests/test_mask_rcnn.py).
    """
    tensor(gt_masks, "gt_masks", shape=("N", "H", "W"))
    _check_boxes(rois, "rois")
    tensor(matched, "matched", shape=(len(rois),), dtype="int")
    if len(matched) and (matched.min() < 0 or matched.max() >= len(gt_masks)):
        raise ValueError(f"matched must index the {len(gt_masks)} gt masks, got {matched.tolist()}")
    counts(size=size)
    if len(rois) == 0:
        return gt_masks.new_zeros((0, size, size), dtype=torch.float32)
    indexed = torch.cat([matched[:, None].to(rois), rois], dim=1)  # [K, 5]: (gt index, box)
    return roi_align(gt_masks[:, None].float(), indexed, size, 1.0, aligned=aligned)[:, 0]


class MaskHead(nn.Module):
    """Per-RoI mask predictor (torchvision's ``MaskRCNNHeads`` + ``MaskRCNNPredictor``, smaller):
    ``layers`` 3x3 conv-ReLU of ``width`` channels on the pooled ``[K, C, S, S]`` feature, a 2x2
    stride-2 transposed conv, and a 1x1 conv to ``num_classes + 1`` logit maps:
    ``[K, C, S, S]`` -> ``[K, num_classes + 1, 2S, 2S]`` (map 0, background, is never used)."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, layers: int = 2):
        super().__init__()
        convs = []
        for i in range(layers):
            convs += [nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*convs)
        self.upsample = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.logits = nn.Conv2d(width, num_classes + 1, 1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.logits(F.relu(self.upsample(self.convs(pooled))))


def _check_mask_loss(mask_logits, labels, mask_targets) -> None:
    """``[K, C + 1, M, M]`` finite logits, ``[K]`` labels in ``0..C``, ``[K, M, M]`` targets in [0, 1]."""
    k, classes, m = tensor(mask_logits, "mask_logits", shape=("K", "C + 1", "M", "M"), dtype="float",
                           finite=True).shape[:3]
    tensor(labels, "labels", shape=(k,), dtype="int")
    if k and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"labels must lie in 0..{classes - 1}, got {labels.tolist()}")
    tensor(mask_targets, "mask_targets", shape=(k, m, m), dtype="float", finite=True)
    # RoI Align interpolates the 0/1 masks and may overshoot 1 by a rounding error
    if ((mask_targets < -1e-5) | (mask_targets > 1 + 1e-5)).any():
        raise ValueError("mask_targets must lie in [0, 1]")


def mask_loss(mask_logits: torch.Tensor, labels: torch.Tensor, mask_targets: torch.Tensor) -> torch.Tensor:
    """Mean per-pixel binary cross-entropy of ``K`` positive RoIs, on the logit map of each
    RoI's ground-truth class only: ``mask_logits`` ``[K, C + 1, M, M]``, ``labels`` ``[K]`` in
    ``1..C``, ``mask_targets`` ``[K, M, M]`` in ``[0, 1]`` -> scalar (0, still connected to
    the graph, when ``K == 0``), as torchvision's ``maskrcnn_loss``."""
    _check_mask_loss(mask_logits, labels, mask_targets)
    if len(labels) == 0:
        return mask_logits.sum() * 0
    own_class = mask_logits[torch.arange(len(labels), device=labels.device), labels]  # [K, M, M]
    return F.binary_cross_entropy_with_logits(own_class, mask_targets)


def softmax_mask_loss(mask_logits: torch.Tensor, labels: torch.Tensor, mask_targets: torch.Tensor):
    """The alternative Mask R-CNN argues against: a per-pixel softmax over the ``C + 1`` maps
    (classes compete for each pixel), cross-entropy against "the RoI's class where the target
    is >= 0.5, else background (0)". Same shapes as :func:`mask_loss`."""
    _check_mask_loss(mask_logits, labels, mask_targets)
    if len(labels) == 0:
        return mask_logits.sum() * 0
    pixel_labels = torch.where(mask_targets >= 0.5, labels[:, None, None], 0)  # [K, M, M]
    return F.cross_entropy(mask_logits, pixel_labels)


def paste_masks(masks: torch.Tensor, boxes: torch.Tensor, image_size) -> torch.Tensor:
    """Resample ``D`` box-relative masks ``[D, M, M]`` (probabilities) into their boxes
    ``[D, 4]`` xyxy in an image of ``image_size`` ``(H, W)``: ``[D, 1, H, W]``. Each pixel whose
    centre lies in a box is mapped into that box's mask and sampled bilinearly (the mask's
    ``M x M`` cells exactly cover the box, as in RoI Align); pixels outside the box are 0."""
    _check_boxes(boxes)
    tensor(masks, "masks", shape=(len(boxes), "M", "M"), dtype="float", finite=True)
    height, width = pair(image_size, "image_size")
    if len(masks) == 0:
        return masks.new_zeros((0, 1, height, width))
    x1, y1, x2, y2 = (boxes[:, i, None] for i in range(4))  # [D, 1] each
    xs = torch.arange(width, device=masks.device, dtype=masks.dtype) + 0.5  # pixel centres
    ys = torch.arange(height, device=masks.device, dtype=masks.dtype) + 0.5
    u = (xs - x1) / (x2 - x1).clamp(min=1e-6) * 2 - 1  # [D, W] in [-1, 1] inside the box
    v = (ys - y1) / (y2 - y1).clamp(min=1e-6) * 2 - 1  # [D, H]
    grid = torch.stack(torch.broadcast_tensors(u[:, None, :], v[:, :, None]), dim=-1)  # [D, H, W, 2]
    inside = (u.abs() <= 1)[:, None, :] & (v.abs() <= 1)[:, :, None]  # [D, H, W]: centre in the box
    sampled = F.grid_sample(masks[:, None], grid, align_corners=False, padding_mode="border")
    return sampled * inside[:, None]


class MaskRoIHeads(RoIHeads):
    """Faster R-CNN's second stage plus the mask branch: the positive training RoIs (and, at test
    time, the final detections) are pooled by ``mask_roi_pool`` (a
    :class:`~cvlib.models.rcnn.RoIPooler`, 14 x 14), then ``mask_head`` (a :class:`MaskHead`)
    gives square masks twice as large. Adds ``loss_mask`` in training and ``masks`` in eval.
    ``mask_loss_type="softmax"`` trains and reads the maps with :func:`softmax_mask_loss` instead of
    the per-class sigmoids (``"sigmoid"``, the paper's). The other arguments are
    :class:`~cvlib.models.rcnn.RoIHeads`'."""

    def __init__(self, box_roi_pool: nn.Module, box_head: nn.Module, mask_roi_pool: nn.Module,
                 mask_head: MaskHead, mask_loss_type: str = "sigmoid", **kwargs):
        super().__init__(box_roi_pool, box_head, **kwargs)
        self.mask_roi_pool = module(mask_roi_pool, "mask_roi_pool")
        if not isinstance(mask_head, MaskHead):
            raise TypeError(f"mask_head must be a MaskHead, got {describe(mask_head)}")
        self.mask_head = mask_head
        self.mask_loss_type = choice(mask_loss_type, "mask_loss_type", ("sigmoid", "softmax"))

    def mask_logits(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """Per-class mask logits ``[sum K_i, C + 1, M, M]`` of one ``[K_i, 4]`` box tensor per image."""
        return self.mask_head(self.mask_roi_pool(features, boxes))

    def extra_losses(self, features, rois, labels, matched, targets) -> dict[str, torch.Tensor]:
        boxes, labels, matched = self.positives(rois, labels, matched)
        logits = self.mask_logits(features, boxes)
        size = logits.shape[-1]
        mask_targets = [project_masks(t["masks"], b, m, size) for t, b, m in zip(targets, boxes, matched)]
        loss = mask_loss if self.mask_loss_type == "sigmoid" else softmax_mask_loss
        return {"loss_mask": loss(logits, torch.cat(labels), torch.cat(mask_targets))}

    def extra_outputs(self, features, detections: list[dict], image_sizes) -> list[dict]:
        logits = self.mask_logits(features, [d["boxes"] for d in detections])
        labels = torch.cat([d["labels"] for d in detections])
        probabilities = logits.sigmoid() if self.mask_loss_type == "sigmoid" else logits.softmax(dim=1)
        probabilities = probabilities[torch.arange(len(labels), device=logits.device), labels]  # [D, M, M]
        per_image = probabilities.split([len(d["boxes"]) for d in detections])
        return [
            {**d, "masks": paste_masks(m, d["boxes"], size)}
            for d, m, size in zip(detections, per_image, image_sizes)
        ]


def check_masks(images: list[torch.Tensor], targets: list[dict]) -> None:
    """Raise ``ValueError`` unless each target has ``masks``, bool ``[N, H, W]``: one mask per
    box, as large as its image."""
    sequence(images, "images")
    for i, target in enumerate(sequence(targets, "targets")):
        if not isinstance(target, dict) or "boxes" not in target:
            raise TypeError(f"targets[{i}] must be a dict with 'boxes' and 'masks', got {describe(target)}")
    for i, (image, target) in enumerate(zip(images, targets)):
        tensor(image, f"images[{i}]", shape=(3, "H", "W"))
        masks, expected = target.get("masks"), (len(target["boxes"]), *image.shape[1:])
        if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or tuple(masks.shape) != expected:
            got = f"{masks.dtype} {tuple(masks.shape)}" if isinstance(masks, torch.Tensor) else repr(masks)
            raise ValueError(f"targets[{i}]['masks'] must be a bool tensor of shape {expected}, got {got}")


class MaskRCNN(FasterRCNN):
    """Mask R-CNN: :class:`~cvlib.models.rcnn.FasterRCNN` whose second stage is a
    :class:`MaskRoIHeads`; five losses (RPN objectness and box, head classifier and box,
    ``loss_mask``); its training targets also hold ``masks``. :func:`build_mask_rcnn` builds the course's."""

    def __init__(self, backbone: nn.Module, rpn: nn.Module, roi_heads: MaskRoIHeads):
        if not isinstance(roi_heads, MaskRoIHeads):
            raise TypeError(f"roi_heads must be a MaskRoIHeads, got {describe(roi_heads)}")
        super().__init__(backbone, rpn, roi_heads)

    def check_inputs(self, images, targets) -> None:
        super().check_inputs(images, targets)
        if self.training:
            check_masks(images, targets)


def build_mask_rcnn(
    num_classes: int = 3,
    width: int = 8,
    mask_pooler: str = "align",
    mask_loss_type: str = "sigmoid",
    mask_pool_size: int = 14,
    **faster_rcnn_args,
) -> MaskRCNN:
    """The course's Mask R-CNN: :func:`~cvlib.models.rcnn.build_faster_rcnn` (``faster_rcnn_args`` go
    there) plus a mask branch pooling ``mask_pool_size x mask_pool_size`` with ``mask_pooler``
    (``"align"`` or ``"pool"``; the box branch keeps ``pooler``) and trained with ``mask_loss_type``
    (``"sigmoid"`` per class, the paper's, or ``"softmax"`` over classes)."""
    choice(mask_pooler, "mask_pooler", ("align", "pool"))
    choice(mask_loss_type, "mask_loss_type", ("sigmoid", "softmax"))
    counts(mask_pool_size=mask_pool_size)
    base = build_faster_rcnn(num_classes, width, **faster_rcnn_args)
    box = base.roi_heads
    channels, stride = base.backbone.out_channels, base.backbone.stride
    mask_roi_pool = RoIPooler(mask_pooler, mask_pool_size, 1 / stride, box.box_roi_pool.sampling_ratio)
    heads = MaskRoIHeads(box.box_roi_pool, box.box_head, mask_roi_pool, MaskHead(channels, num_classes),
                         mask_loss_type, settings=box.settings)
    return MaskRCNN(base.backbone, base.rpn, heads)
