"""Keypoint R-CNN (He et al. 2017, section 5), lecture 08: Mask R-CNN plus a keypoint head.

A keypoint is a landmark of an object (a person's left knee; here a square's top-left corner).
Mask R-CNN's recipe extends to them with one more per-RoI head. Read top to bottom:

1. **Keypoint targets** (``keypoint_targets``): for each positive RoI, each of the ``K``
   keypoints of its matched object becomes **one hot cell** of an ``S x S`` grid (S = 56) laid
   over the RoI: the index ``y * S + x`` of that cell. A keypoint that is not labelled, or lies
   outside the RoI, gives no target (``valid`` False).
2. **The keypoint head** (``KeypointHead``): a small FCN on the ``14 x 14`` RoI feature -> a
   ``2x`` transposed convolution -> ``2x`` bilinear upsampling: ``K`` logit maps of ``56 x 56``,
   **one per keypoint** (class-agnostic, as torchvision's: the classifier decides the class).
3. **The keypoint loss** (``keypoint_loss``): for each labelled keypoint, a **softmax over the
   ``S * S`` positions** of its map and the cross-entropy of the one hot cell, so each map
   learns a single peak (a mask head instead scores every pixel on its own with a sigmoid).
4. **Decoding** (``heatmaps_to_keypoints``): at test time each map's most likely cell gives the
   keypoint, its centre mapped back into the image through the detection's box, scored by its
   softmax probability.
5. ``KeypointRoIHeads`` adds 1-4 to Mask R-CNN's second stage through its ``extra_losses`` /
   ``extra_outputs`` hooks, and ``KeypointRCNN`` is ``MaskRCNN`` with those heads
   (``build_keypoint_rcnn`` builds the course's).

A baseline without the head closes the file: each class's average keypoint layout inside its
box (``mean_keypoint_layout``), stretched over a detected box (``keypoints_from_boxes``).

Contract (torchvision's Keypoint R-CNN): each training target also holds ``keypoints`` float
``[N, K, 3]`` (x, y, visibility; > 0 is labelled); ``model(images)`` gives each detection
``keypoints`` float ``[D, K, 3]``: (x, y, score), pixels, score the softmax probability of the
chosen cell (torchvision puts 1 there and the logit in ``keypoints_scores``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import counts, describe, module, sequence, tensor
from cvlib.models.mask_rcnn import MaskRCNN, MaskRoIHeads, build_mask_rcnn
from cvlib.models.rcnn import RoIPooler
from cvlib.ops.boxes import _check_boxes

__all__ = [
    "keypoint_targets", "KeypointHead", "keypoint_loss", "heatmaps_to_keypoints", "KeypointRoIHeads",
    "check_keypoints", "KeypointRCNN", "build_keypoint_rcnn", "mean_keypoint_layout", "keypoints_from_boxes",
]

HEATMAP_SIZE = 56  # S: the side of each keypoint's map, as torchvision's and the paper's


def _check_keypoints(keypoints, name: str) -> torch.Tensor:
    """Finite float ``[R, K, 3]`` keypoints (x, y, visibility or score)."""
    return tensor(keypoints, name, shape=("R", "K", 3), dtype="float", finite=True)


def keypoint_targets(keypoints: torch.Tensor, rois: torch.Tensor, size: int = HEATMAP_SIZE):
    """The one-hot heatmap targets of ``R`` RoIs (torchvision's ``keypoints_to_heatmap``).

    Args:
        keypoints: float ``[R, K, 3]``, the matched object's keypoints of each RoI: (x, y,
            visibility) in pixels, visibility > 0 labelled.
        rois: float ``[R, 4]`` xyxy pixels.
        size: ``S``, the side of the heatmap laid over each RoI.

    Returns:
        ``targets`` int64 ``[R, K]``: the index ``y * S + x`` of the cell holding each keypoint
        (0 where not valid) and ``valid`` bool ``[R, K]``: labelled and inside the RoI (a
        keypoint exactly on the right or bottom edge counts as the last cell).
    """
    _check_keypoints(keypoints, "keypoints")
    _check_boxes(rois, "rois")
    tensor(keypoints, "keypoints", shape=(len(rois), None, None))
    counts(size=size)
    x1, y1, x2, y2 = (rois[:, i, None] for i in range(4))  # [R, 1] each
    x, y = keypoints[..., 0], keypoints[..., 1]  # [R, K]
    cell_x = ((x - x1) * size / (x2 - x1)).floor().long()
    cell_y = ((y - y1) * size / (y2 - y1)).floor().long()
    cell_x = torch.where(x == x2, size - 1, cell_x)  # the right edge belongs to the last cell
    cell_y = torch.where(y == y2, size - 1, cell_y)
    inside = (cell_x >= 0) & (cell_x < size) & (cell_y >= 0) & (cell_y < size)
    valid = inside & (keypoints[..., 2] > 0)
    return torch.where(valid, cell_y * size + cell_x, 0), valid


class KeypointHead(nn.Module):
    """Per-RoI keypoint predictor (torchvision's ``KeypointRCNNHeads`` + ``KeypointRCNNPredictor``,
    smaller): ``layers`` 3x3 conv-ReLU of ``width`` channels on the pooled ``[R, C, P, P]``
    feature, a 4x4 stride-2 transposed conv to one map per keypoint, then 2x bilinear
    upsampling: ``[R, C, P, P]`` -> ``[R, num_keypoints, 4P, 4P]`` logits (P = 14: 56 x 56)."""

    def __init__(self, in_channels: int, num_keypoints: int, width: int = 32, layers: int = 4):
        super().__init__()
        counts(in_channels=in_channels, num_keypoints=num_keypoints, width=width, layers=layers)
        convs = []
        for i in range(layers):
            convs += [nn.Conv2d(in_channels if i == 0 else width, width, 3, padding=1), nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*convs)
        self.upsample = nn.ConvTranspose2d(width, num_keypoints, 4, stride=2, padding=1)
        self.num_keypoints = num_keypoints

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        low_resolution = self.upsample(self.convs(pooled))  # [R, K, 2P, 2P]
        return F.interpolate(low_resolution, scale_factor=2.0, mode="bilinear", align_corners=False)


def keypoint_loss(heatmap_logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of a softmax over the ``S * S`` positions of each valid keypoint's map
    (torchvision's ``keypointrcnn_loss``): ``heatmap_logits`` float ``[R, K, S, S]``, ``targets``
    int64 ``[R, K]`` in ``0..S*S-1`` and ``valid`` bool ``[R, K]`` from :func:`keypoint_targets`
    -> scalar (0, still connected to the graph, when no keypoint is valid)."""
    r, k, s = tensor(heatmap_logits, "heatmap_logits", shape=("R", "K", "S", "S"), dtype="float",
                     finite=True).shape[:3]
    tensor(targets, "targets", shape=(r, k), dtype="int")
    tensor(valid, "valid", shape=(r, k), dtype="bool")
    if valid.any() and (targets[valid].min() < 0 or targets[valid].max() >= s * s):
        raise ValueError(f"targets must lie in 0..{s * s - 1} (cells of the {s} x {s} map)")
    if not valid.any():
        return heatmap_logits.sum() * 0
    return F.cross_entropy(heatmap_logits.flatten(2)[valid], targets[valid])  # [V, S*S] vs [V]


def heatmaps_to_keypoints(heatmap_logits: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Keypoints ``[D, K, 3]`` (x, y, score) of ``D`` detections from their heatmap logits
    ``[D, K, S, S]`` and boxes ``[D, 4]`` xyxy: per map the most likely cell, its centre mapped
    into the box (the inverse of :func:`keypoint_targets`), scored by its softmax probability.

    torchvision's ``heatmaps_to_keypoints`` first resizes each map bicubically to the box's size
    in pixels and takes the argmax there; the two agree exactly when a box is S x S pixels."""
    _check_boxes(boxes)
    d, k, s = tensor(heatmap_logits, "heatmap_logits", shape=(len(boxes), "K", "S", "S"), dtype="float",
                     finite=True).shape[:3]
    probabilities = heatmap_logits.flatten(2).softmax(dim=2)  # [D, K, S*S]
    score, cell = probabilities.max(dim=2)  # [D, K] each
    cell_x, cell_y = cell % s, torch.div(cell, s, rounding_mode="floor")
    x1, y1, x2, y2 = (boxes[:, i, None] for i in range(4))  # [D, 1] each
    x = x1 + (cell_x + 0.5) * (x2 - x1) / s
    y = y1 + (cell_y + 0.5) * (y2 - y1) / s
    return torch.stack([x, y, score], dim=2)


class KeypointRoIHeads(MaskRoIHeads):
    """Mask R-CNN's second stage plus the keypoint branch: the positive training RoIs (and, at
    test time, the final detections) are pooled by ``keypoint_roi_pool`` (a
    :class:`~cvlib.models.rcnn.RoIPooler`, RoI Align 14 x 14), then ``keypoint_head`` (a
    :class:`KeypointHead`) gives one map four times as large per keypoint. Adds ``loss_keypoint``
    in training and ``keypoints`` in eval. The other arguments are
    :class:`~cvlib.models.mask_rcnn.MaskRoIHeads`'."""

    def __init__(self, box_roi_pool: nn.Module, box_head: nn.Module, mask_roi_pool: nn.Module,
                 mask_head: nn.Module, keypoint_roi_pool: nn.Module, keypoint_head: KeypointHead, **kwargs):
        super().__init__(box_roi_pool, box_head, mask_roi_pool, mask_head, **kwargs)
        self.keypoint_roi_pool = module(keypoint_roi_pool, "keypoint_roi_pool")
        if not isinstance(keypoint_head, KeypointHead):
            raise TypeError(f"keypoint_head must be a KeypointHead, got {describe(keypoint_head)}")
        self.keypoint_head = keypoint_head

    def heatmap_logits(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """Keypoint logits ``[sum R_i, K, S, S]`` of one ``[R_i, 4]`` box tensor per image."""
        return self.keypoint_head(self.keypoint_roi_pool(features, boxes))

    def extra_losses(self, features, rois, labels, matched, targets) -> dict[str, torch.Tensor]:
        losses = super().extra_losses(features, rois, labels, matched, targets)  # the mask loss
        boxes, _, matched = self.positives(rois, labels, matched)
        logits = self.heatmap_logits(features, boxes)
        size = logits.shape[-1]
        encoded = [keypoint_targets(t["keypoints"][m], b, size) for t, b, m in zip(targets, boxes, matched)]
        cells, valid = (torch.cat(parts) for parts in zip(*encoded))
        return {**losses, "loss_keypoint": keypoint_loss(logits, cells, valid)}

    def extra_outputs(self, features, detections: list[dict], image_sizes) -> list[dict]:
        detections = super().extra_outputs(features, detections, image_sizes)  # the masks
        boxes = [d["boxes"] for d in detections]
        keypoints = heatmaps_to_keypoints(self.heatmap_logits(features, boxes), torch.cat(boxes))
        per_image = keypoints.split([len(b) for b in boxes])
        return [{**d, "keypoints": k} for d, k in zip(detections, per_image)]


def check_keypoints(targets: list[dict], num_keypoints: int) -> None:
    """Raise ``TypeError``/``ValueError`` unless each target has ``boxes`` ``[N, 4]``, ``labels``
    ``[N]`` and ``keypoints``, finite float ``[N, num_keypoints, 3]``: one row per box."""
    counts(num_keypoints=num_keypoints)
    for i, target in enumerate(sequence(targets, "targets")):
        if not isinstance(target, dict) or not {"boxes", "labels", "keypoints"} <= set(target):
            raise TypeError(f"targets[{i}] must be a dict with 'boxes', 'labels' and 'keypoints', "
                            f"got {describe(target)}")
        _check_boxes(target["boxes"], f"targets[{i}]['boxes']")
        tensor(target["labels"], f"targets[{i}]['labels']", shape=(len(target["boxes"]),), dtype="int")
        shape = (len(target["boxes"]), num_keypoints, 3)
        tensor(target["keypoints"], f"targets[{i}]['keypoints']", shape=shape, dtype="float", finite=True)


class KeypointRCNN(MaskRCNN):
    """Keypoint R-CNN on top of Mask R-CNN (the lecture's "one more head"):
    :class:`~cvlib.models.mask_rcnn.MaskRCNN` whose second stage is a :class:`KeypointRoIHeads`;
    six losses (RPN objectness and box, head classifier and box, ``loss_mask``,
    ``loss_keypoint``); its training targets also hold ``keypoints``, and its detections boxes,
    masks and keypoints. :func:`build_keypoint_rcnn` builds the course's."""

    def __init__(self, backbone: nn.Module, rpn: nn.Module, roi_heads: KeypointRoIHeads):
        if not isinstance(roi_heads, KeypointRoIHeads):
            raise TypeError(f"roi_heads must be a KeypointRoIHeads, got {describe(roi_heads)}")
        super().__init__(backbone, rpn, roi_heads)
        self.num_keypoints = roi_heads.keypoint_head.num_keypoints

    def check_inputs(self, images, targets) -> None:
        super().check_inputs(images, targets)
        if self.training:
            check_keypoints(targets, self.num_keypoints)


def build_keypoint_rcnn(
    num_classes: int = 3,
    width: int = 8,
    num_keypoints: int = 5,
    keypoint_pool_size: int = 14,
    **mask_rcnn_args,
) -> KeypointRCNN:
    """The course's Keypoint R-CNN: :func:`~cvlib.models.mask_rcnn.build_mask_rcnn`
    (``mask_rcnn_args`` go there) plus a keypoint branch: RoI Align to ``keypoint_pool_size``
    squares and a :class:`KeypointHead` with ``num_keypoints`` maps of ``4 * keypoint_pool_size``."""
    counts(num_keypoints=num_keypoints, keypoint_pool_size=keypoint_pool_size)
    base = build_mask_rcnn(num_classes, width, **mask_rcnn_args)
    heads, channels = base.roi_heads, base.backbone.out_channels
    pool = RoIPooler("align", keypoint_pool_size, 1 / base.backbone.stride, heads.box_roi_pool.sampling_ratio)
    keypoint_heads = KeypointRoIHeads(
        heads.box_roi_pool, heads.box_head, heads.mask_roi_pool, heads.mask_head, pool,
        KeypointHead(channels, num_keypoints), mask_loss_type=heads.mask_loss_type, settings=heads.settings,
        batch_size_per_image=heads.batch_size_per_image, positive_fraction=heads.positive_fraction,
    )
    return KeypointRCNN(base.backbone, base.rpn, keypoint_heads)


# ---------------------------------------------------------------------------------------------
# A baseline without a keypoint head: keypoints at each class's average place inside the box


def mean_keypoint_layout(targets: list[dict], num_classes: int) -> torch.Tensor:
    """Where each keypoint of each class lies on average inside its object's box, float
    ``[num_classes + 1, K, 2]`` (row 0, background, unused): the mean over the labelled keypoints
    of ``targets`` (dicts with ``boxes`` ``[N, 4]``, ``labels`` ``[N]`` and ``keypoints``
    ``[N, K, 3]``) of ``(x - x1) / (x2 - x1)`` and ``(y - y1) / (y2 - y1)``; 0.5 (the box's
    centre) where a class never has that keypoint labelled."""
    counts(num_classes=num_classes)
    targets = sequence(targets, "targets", nonempty=True)
    first = targets[0].get("keypoints") if isinstance(targets[0], dict) else None
    num_keypoints = _check_keypoints(first, "targets[0]['keypoints']").shape[1]
    check_keypoints(targets, num_keypoints)
    total = torch.zeros(num_classes + 1, num_keypoints, 2, dtype=torch.float64)
    seen = torch.zeros(num_classes + 1, num_keypoints, 1, dtype=torch.float64)
    for i, target in enumerate(targets):
        boxes, labels = target["boxes"].double(), target["labels"]
        if len(labels) and (labels.min() < 1 or labels.max() > num_classes):
            raise ValueError(f"targets[{i}]['labels'] must lie in 1..{num_classes}, got {labels.tolist()}")
        size = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)[:, None]  # [N, 1, 2]
        relative = (target["keypoints"][..., :2].double() - boxes[:, None, :2]) / size  # [N, K, 2]
        labelled = (target["keypoints"][..., 2:] > 0).double()  # [N, K, 1]
        total.index_add_(0, labels, relative * labelled)
        seen.index_add_(0, labels, labelled)
    return torch.where(seen > 0, total / seen.clamp(min=1), 0.5).float()


def keypoints_from_boxes(boxes: torch.Tensor, labels: torch.Tensor, layout: torch.Tensor) -> torch.Tensor:
    """The baseline's keypoints ``[D, K, 3]`` (x, y, score 1) of ``D`` detections: each class's
    ``layout`` ``[C + 1, K, 2]`` (:func:`mean_keypoint_layout`) stretched over each box ``[D, 4]``
    of class ``labels`` ``[D]``."""
    _check_boxes(boxes)
    tensor(layout, "layout", shape=("C + 1", "K", 2), dtype="float", finite=True)
    tensor(labels, "labels", shape=(len(boxes),), dtype="int")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(layout)):
        raise ValueError(f"labels must lie in 0..{len(layout) - 1}, got {labels.tolist()}")
    relative = layout.to(boxes)[labels]  # [D, K, 2]
    xy = boxes[:, None, :2] + relative * (boxes[:, None, 2:] - boxes[:, None, :2])
    return torch.cat([xy, torch.ones_like(xy[..., :1])], dim=2)
