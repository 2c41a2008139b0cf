"""The R-CNN family (lecture 05): R-CNN, Fast R-CNN, Faster R-CNN with its Region Proposal Network.

Read top to bottom, this file is the lecture's story:

1. **Region proposals** (``window_proposals``): a few thousand boxes that may hold an object,
   found without looking at classes. Selective search groups colour regions
   (``segment_proposals``, a shortened version); the detectors here use a simple stand-in,
   windows of many sizes and aspect ratios at every position.
2. **R-CNN** (``RCNN``): warp every proposal to a fixed size and run the CNN **once per region**;
   classify it (C classes + background) and regress box deltas ``(tx, ty, tw, th)``.
3. **Fast R-CNN** (``FastRCNN``): run the CNN **once per image**; cut a fixed-size feature out of
   the feature map for each proposal with **RoI Pool** or **RoI Align** (``RoIHeads``), then
   the same per-RoI heads.
4. **Faster R-CNN** (``FasterRCNN``): the proposals come from the network itself, a **Region
   Proposal Network** (``RegionProposalNetwork``) scoring K anchors at every feature-map cell.
   Four losses: RPN objectness, RPN box, head classification, head box.

All three follow torchvision's detection contract: ``model(images, targets)`` returns a dict
of losses in training mode; ``model(images)`` returns one ``{"boxes", "labels", "scores"}``
dict per image in eval mode. Images are float ``[3, H, W]`` in ``[0, 1]``; boxes float xyxy
pixels; labels ``1..C`` (0 is background). The settings and loss normalisations are
torchvision's (``FasterRCNN``'s defaults), so the two can be compared one to one.
Everything is built from ``cvlib.ops``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import (
    all_finite,
    choice,
    counts,
    describe,
    integer,
    module,
    number,
    pair,
    sequence,
    tensor,
)
from cvlib.models.blocks import vgg_features
from cvlib.ops import (
    batched_nms,
    box_iou,
    decode_boxes,
    encode_boxes,
    generate_anchors,
    label_anchors,
    nms,
    roi_align,
    roi_pool,
    sample_anchors,
)
from cvlib.ops.boxes import _check_boxes

__all__ = [
    "window_proposals",
    "segment_proposals",
    "segment_boxes",
    "touching_segments",
    "check_inputs",
    "batch_images",
    "Backbone",
    "match_proposals",
    "sample_proposals",
    "box_losses",
    "postprocess_detections",
    "RCNN",
    "BoxHead",
    "RoIHeads",
    "FastRCNN",
    "RegionProposalNetwork",
    "FasterRCNN",
    "torchvision_twin",
]

HEAD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # (wx, wy, ww, wh): head deltas scaled as torchvision's
SMOOTH_L1_BETA = 1.0 / 9  # torchvision's box losses: quadratic below 1/9, linear above


# ---------------------------------------------------------------------------------------------
# 1. Region proposals: multi-scale windows, a stand-in for selective search


def window_proposals(
    image_size,
    sizes: Sequence[float] = (12, 16, 20, 24, 32, 40, 48),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    stride: float = 4,
) -> torch.Tensor:
    """Class-agnostic region proposals ``[P, 4]`` (xyxy pixels) for images of ``image_size``
    ``(H, W)`` (or an int): windows of every size (square root of the area) and aspect ratio
    ``h / w``, every ``stride`` pixels, kept when they lie inside the image.

    Selective search proposes about 2,000 regions per image by grouping similar colour
    regions; this stand-in does not look at the image, it only covers it densely enough that
    every object overlaps some window well (the defaults give 2,055 windows on 64 x 64). The
    detector's box regression then moves the best window onto the object.
    """
    height, width = pair(image_size, "image_size")
    number(stride, "stride", low=0, low_open=True)
    for name, values in (("sizes", sizes), ("aspect_ratios", aspect_ratios)):
        for v in sequence(values, name, nonempty=True):
            number(v, name, low=0, low_open=True)
    windows = []
    for size in sizes:
        for ratio in aspect_ratios:
            w, h = round(size / ratio**0.5), round(size * ratio**0.5)
            if w > width or h > height:
                continue
            xs = torch.arange(0, width - w + 1, stride, dtype=torch.float32)
            ys = torch.arange(0, height - h + 1, stride, dtype=torch.float32)
            y, x = torch.meshgrid(ys, xs, indexing="ij")
            windows.append(torch.stack([x, y, x + w, y + h], dim=-1).reshape(-1, 4))
    return torch.cat(windows)


def segment_proposals(
    image: torch.Tensor, scales: Sequence[float] = (25, 50, 100, 200), sigma: float = 0.5, min_size: int = 10
) -> torch.Tensor:
    """Region proposals ``[P, 4]`` (xyxy pixels, no duplicates) that look at the image, as
    selective search does (Uijlings et al. 2013), in a shortened form: segment the ``[3, H, W]``
    ``image`` with Felzenszwalb and Huttenlocher's graph-based method (scikit-image) at each of
    several ``scales`` (larger: fewer, larger segments), and propose the box of every segment
    and of every pair of touching segments (the first step of selective search's hierarchical
    grouping, which goes on merging the most similar neighbours up to the whole image)."""
    from skimage.segmentation import felzenszwalb

    tensor(image, "image", shape=(3, "H", "W"), dtype="float", finite=True)
    for scale in sequence(scales, "scales", nonempty=True):
        number(scale, "scales", low=0, low_open=True)
    number(sigma, "sigma", low=0)
    integer(min_size, "min_size", low=0)
    rgb = image.detach().permute(1, 2, 0).cpu().numpy()
    proposals = []
    for scale in scales:
        segments = torch.from_numpy(felzenszwalb(rgb, scale=scale, sigma=sigma, min_size=min_size)).long()
        boxes = segment_boxes(segments)
        first, second = touching_segments(segments).T
        merged = torch.cat([torch.minimum(boxes[first, :2], boxes[second, :2]),
                            torch.maximum(boxes[first, 2:], boxes[second, 2:])], dim=1)
        proposals += [boxes, merged]
    return torch.cat(proposals).unique(dim=0)


def _check_segments(segments) -> None:
    """``segments`` must be an integer label map ``[H, W]`` whose labels are ``0 .. S-1``, each used."""
    tensor(segments, "segments", ndim=2, dtype="int", nonempty=True)
    if segments.min() < 0 or len(segments.unique()) != int(segments.max()) + 1:
        raise ValueError(f"segments must hold the labels 0 .. S-1, each at least once, "
                         f"got {segments.unique().tolist()[:20]}")


def segment_boxes(segments: torch.Tensor) -> torch.Tensor:
    """The box ``[S, 4]`` (xyxy pixels, a pixel spans one unit) of each segment ``0..S-1`` of a
    label map ``[H, W]``."""
    _check_segments(segments)
    height, width = segments.shape
    count, flat = int(segments.max()) + 1, segments.flatten()
    ys, xs = (v.flatten() for v in torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij"))

    def reduce(values, start, how):
        return torch.full((count,), start).scatter_reduce(0, flat, values, how)

    return torch.stack([reduce(xs, width, "amin"), reduce(ys, height, "amin"),
                        reduce(xs, -1, "amax") + 1, reduce(ys, -1, "amax") + 1], dim=1).float()


def touching_segments(segments: torch.Tensor) -> torch.Tensor:
    """The pairs ``[N, 2]`` (smaller label first, each once) of segments of a label map
    ``[H, W]`` that touch horizontally or vertically."""
    _check_segments(segments)
    pairs = torch.cat([torch.stack([segments[:, :-1].flatten(), segments[:, 1:].flatten()], 1),
                       torch.stack([segments[:-1].flatten(), segments[1:].flatten()], 1)])
    return pairs[pairs[:, 0] != pairs[:, 1]].sort(1).values.unique(dim=0).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------
# Inputs, backbone and the pieces all three detectors share


def check_inputs(images, targets, num_classes: int, training: bool, like: nn.Module | None = None) -> None:
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


def clip_boxes(boxes: torch.Tensor, image_size) -> torch.Tensor:
    """Clamp xyxy ``boxes`` ``[..., 4]`` into an image of ``image_size`` ``(H, W)``."""
    tensor(boxes, "boxes", dtype="float", finite=True)
    if boxes.ndim == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [..., 4], got {tuple(boxes.shape)}")
    height, width = pair(image_size, "image_size")
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def _check_target(target, name: str = "target") -> None:
    """One image's target: a dict with finite xyxy ``boxes`` ``[N, 4]`` and integer ``labels`` ``[N]``."""
    if not isinstance(target, dict) or not {"boxes", "labels"} <= set(target):
        raise TypeError(f"{name} must be a dict with 'boxes' and 'labels', got {describe(target)}")
    _check_boxes(target["boxes"], f"{name}['boxes']")
    tensor(target["labels"], f"{name}['labels']", shape=(len(target["boxes"]),), dtype="int")


def match_proposals(proposals: torch.Tensor, target: dict, fg_iou: float = 0.5):
    """Label each proposal ``[P, 4]`` with the class of the gt box it overlaps most when
    IoU >= ``fg_iou`` (else 0, background). Returns ``labels`` int64 ``[P]`` and ``matched``
    int64 ``[P]``, the index of that gt box (0 when the image has none)."""
    _check_target(target)
    _check_boxes(proposals, "proposals")
    number(fg_iou, "fg_iou", low=0, high=1)
    gt_boxes, gt_labels = target["boxes"], target["labels"]
    if len(gt_boxes) == 0:
        zeros = torch.zeros(len(proposals), dtype=torch.int64, device=proposals.device)
        return zeros, zeros.clone()
    best_iou, matched = box_iou(gt_boxes, proposals).max(dim=0)
    return torch.where(best_iou >= fg_iou, gt_labels[matched], torch.zeros_like(matched)), matched


def sample_proposals(
    proposals: torch.Tensor, target: dict, batch_size: int, positive_fraction: float, fg_iou: float = 0.5
):
    """The training RoIs of one image: the proposals plus the gt boxes, labelled by
    :func:`match_proposals`, then a balanced sample (at most ``positive_fraction`` of
    ``batch_size`` objects). Returns RoIs ``[S, 4]``, labels ``[S]``, regression targets
    ``[S, 4]`` (``encode_boxes`` with ``HEAD_BOX_WEIGHTS``; used for objects only) and the
    matched gt index ``[S]`` (for the masks of Mask R-CNN)."""
    _check_target(target)
    _check_boxes(proposals, "proposals")
    proposals = torch.cat([proposals, target["boxes"]])
    labels, matched = match_proposals(proposals, target, fg_iou)
    positive, negative = sample_anchors(labels, batch_size, positive_fraction)
    keep = torch.cat([positive, negative])
    rois, matched = proposals[keep], matched[keep]
    gt_boxes = target["boxes"][matched] if len(target["boxes"]) else rois
    return rois, labels[keep], encode_boxes(gt_boxes, rois, HEAD_BOX_WEIGHTS), matched


def box_losses(class_logits, box_deltas, labels, regression_targets) -> tuple[torch.Tensor, torch.Tensor]:
    """Fast R-CNN's multitask loss of ``K`` RoIs: softmax cross-entropy of ``class_logits``
    ``[K, C + 1]`` and smooth L1 of the deltas ``[K, (C + 1) * 4]`` of the true class, on the
    positive RoIs only, summed and divided by ``K`` (torchvision's ``fastrcnn_loss``)."""
    tensor(class_logits, "class_logits", shape=("K", "C + 1"), dtype="float", finite=True)
    num_rois, num_scores = class_logits.shape
    tensor(box_deltas, "box_deltas", shape=(num_rois, 4 * num_scores), dtype="float", finite=True)
    tensor(labels, "labels", shape=(num_rois,), dtype="int")
    if num_rois and (labels.min() < 0 or labels.max() >= num_scores):
        raise ValueError(f"labels must lie in 0..{num_scores - 1} (0 is background), got {labels.tolist()}")
    tensor(regression_targets, "regression_targets", shape=(num_rois, 4), dtype="float")
    classification = F.cross_entropy(class_logits, labels)
    positive = torch.nonzero(labels > 0).flatten()
    # a background RoI of zero width has an inf target, never used: only the objects' must be finite
    all_finite(regression_targets[positive], "regression_targets")
    deltas = box_deltas.reshape(len(labels), -1, 4)[positive, labels[positive]]
    box = F.smooth_l1_loss(deltas, regression_targets[positive], beta=SMOOTH_L1_BETA, reduction="sum")
    return classification, box / max(len(labels), 1)


def postprocess_detections(
    class_logits: torch.Tensor,
    box_deltas: torch.Tensor,
    rois: torch.Tensor,
    image_size,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.5,
    detections_per_img: int = 100,
) -> dict[str, torch.Tensor]:
    """Detections of one image from its ``K`` RoIs ``[K, 4]``: each RoI gives one box per class
    (its deltas decoded, clipped to the image) scored by the softmax; background is dropped,
    then scores <= ``score_thresh``, tiny boxes, and per-class NMS; the best
    ``detections_per_img`` are kept. Returns ``{"boxes" [D, 4], "labels" [D], "scores" [D]}``."""
    _check_boxes(rois, "rois")
    tensor(class_logits, "class_logits", shape=(len(rois), "C + 1"), dtype="float", finite=True)
    tensor(box_deltas, "box_deltas", shape=(len(rois), 4 * class_logits.shape[1]), dtype="float", finite=True)
    pair(image_size, "image_size")
    _check_head_settings(score_thresh, nms_thresh, detections_per_img)
    num_classes = class_logits.shape[1] - 1
    scores = F.softmax(class_logits, dim=1)[:, 1:]  # [K, C]
    refs = rois[:, None, :].expand(-1, num_classes, 4).reshape(-1, 4)
    deltas = box_deltas.reshape(len(rois), num_classes + 1, 4)[:, 1:].reshape(-1, 4)
    boxes = clip_boxes(decode_boxes(deltas, refs, HEAD_BOX_WEIGHTS), image_size)
    labels = torch.arange(1, num_classes + 1, device=rois.device).repeat(len(rois))
    scores = scores.reshape(-1)
    wide = (boxes[:, 2] - boxes[:, 0] >= 1e-2) & (boxes[:, 3] - boxes[:, 1] >= 1e-2)
    keep = torch.nonzero((scores > score_thresh) & wide).flatten()
    survivors = batched_nms(boxes[keep].detach(), scores[keep].detach(), labels[keep], nms_thresh)
    keep = keep[survivors][:detections_per_img]
    return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}


def _check_head_settings(score_thresh, nms_thresh, detections_per_img) -> None:
    """The thresholds of a detector's eval mode."""
    number(score_thresh, "score_thresh", low=0, high=1)
    number(nms_thresh, "nms_thresh", low=0, high=1)
    integer(detections_per_img, "detections_per_img", low=1)


class BoxHead(nn.Module):
    """Per-RoI heads: flatten -> two fully connected layers (``hidden``) -> class scores
    ``[K, C + 1]`` and class-specific box deltas ``[K, (C + 1) * 4]`` (torchvision's
    ``TwoMLPHead`` + ``FastRCNNPredictor``)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
        )
        self.cls_score = nn.Linear(hidden, num_classes + 1)
        self.bbox_pred = nn.Linear(hidden, (num_classes + 1) * 4)

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.mlp(pooled)
        return self.cls_score(h), self.bbox_pred(h)


# ---------------------------------------------------------------------------------------------
# 2. R-CNN: the CNN once per warped region


class RCNN(nn.Module):
    """R-CNN (Girshick et al. 2014), as one network trained end to end.

    Every proposal is **warped** to ``crop_size x crop_size`` pixels (bilinear sampling of
    the image inside the box, i.e. ``roi_align`` on the image itself) and goes **through the
    whole CNN on its own**: ``[P, 3, crop, crop]`` -> features -> ``C + 1`` class scores and
    ``(C + 1) x 4`` box deltas. (The paper trains SVMs and the box regressor separately on
    frozen CNN features; one multitask loss does the same job here.)
    """

    def __init__(
        self,
        num_classes: int = 3,
        width: int = 8,
        crop_size: int = 32,
        hidden: int = 128,
        proposals: dict | None = None,
        batch_size_per_image: int = 64,
        positive_fraction: float = 0.25,
        chunk: int = 512,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
    ):
        super().__init__()
        counts(num_classes=num_classes, width=width, crop_size=crop_size, hidden=hidden, chunk=chunk,
               batch_size_per_image=batch_size_per_image)
        number(positive_fraction, "positive_fraction", low=0, high=1)
        _check_head_settings(score_thresh, nms_thresh, detections_per_img)
        if crop_size % 8:
            raise ValueError(f"crop_size must be a multiple of 8, got {crop_size}")
        self.num_classes, self.crop_size, self.chunk = num_classes, crop_size, chunk
        self.proposal_args = dict(proposals or {})
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img = detections_per_img
        self.features = vgg_features(width)
        cells = (crop_size // 8) ** 2
        self.head = BoxHead(8 * width * cells, num_classes, hidden)

    def warp(self, image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """The regions ``boxes`` ``[P, 4]`` of ``image`` ``[3, H, W]`` warped to
        ``[P, 3, crop_size, crop_size]``."""
        return roi_align(image[None], [boxes], self.crop_size, sampling_ratio=2, aligned=True)

    def score_regions(self, image: torch.Tensor, boxes: torch.Tensor):
        """The CNN on every region, ``chunk`` regions at a time: ``[P, C + 1]`` logits and
        ``[P, (C + 1) * 4]`` deltas."""
        outputs = [self.head(self.features(self.warp(image, part))) for part in boxes.split(self.chunk)]
        return torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs])

    def forward(self, images, targets=None):
        check_inputs(images, targets, self.num_classes, self.training, self)
        if self.training:
            samples = []
            for image, target in zip(images, targets):
                windows = window_proposals(image.shape[1:], **self.proposal_args).to(image.device)
                sample = sample_proposals(windows, target, self.batch_size_per_image, self.positive_fraction)
                samples.append(sample)
            rois, labels, reg, _ = zip(*samples)  # per image: RoIs [S, 4], labels [S], targets [S, 4]
            crops = torch.cat([self.warp(i, r) for i, r in zip(images, rois)])
            logits, deltas = self.head(self.features(crops))
            classification, box = box_losses(logits, deltas, torch.cat(labels), torch.cat(reg))
            return {"loss_classifier": classification, "loss_box_reg": box}
        detections = []
        for image in images:
            proposals = window_proposals(image.shape[1:], **self.proposal_args).to(image.device)
            logits, deltas = self.score_regions(image, proposals)
            settings = (self.score_thresh, self.nms_thresh, self.detections_per_img)
            detections.append(postprocess_detections(logits, deltas, proposals, image.shape[1:], *settings))
        return detections


# ---------------------------------------------------------------------------------------------
# 3. Fast R-CNN: one backbone pass, RoI Pool / RoI Align, per-RoI heads


class RoIHeads(nn.Module):
    """The second stage of Fast and Faster R-CNN: pool a fixed ``output_size x output_size``
    feature for each RoI (``pooler="align"``: RoI Align, bilinear, ``sampling_ratio`` points
    per bin side; ``"pool"``: RoI Pool, quantised max), then :class:`BoxHead`.

    Training samples ``batch_size_per_image`` RoIs per image (``positive_fraction``
    objects, IoU >= 0.5 with a gt box) and returns ``loss_classifier`` and ``loss_box_reg``;
    eval returns detections. A mask head (Mask R-CNN) plugs in by overriding
    :meth:`extra_losses` and :meth:`extra_outputs` (they get the feature map and the RoIs).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_scale: float,
        pooler: str = "align",
        output_size: int = 7,
        sampling_ratio: int = 2,
        hidden: int = 128,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
    ):
        super().__init__()
        counts(num_classes=num_classes, output_size=output_size, hidden=hidden,
               batch_size_per_image=batch_size_per_image)
        choice(pooler, "pooler", ("align", "pool"))
        number(positive_fraction, "positive_fraction", low=0, high=1)
        _check_head_settings(score_thresh, nms_thresh, detections_per_img)
        self.num_classes, self.spatial_scale, self.pooler = num_classes, spatial_scale, pooler
        self.output_size, self.sampling_ratio = output_size, sampling_ratio
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.score_thresh, self.nms_thresh = score_thresh, nms_thresh
        self.detections_per_img = detections_per_img
        self.box_head = BoxHead(in_channels * output_size**2, num_classes, hidden)

    def pool(self, features: torch.Tensor, boxes: list[torch.Tensor], pooler=None, output_size=None):
        """``[B, C, h, w]`` features and one ``[K_i, 4]`` box tensor per image ->
        ``[sum K_i, C, S, S]``, ``S = output_size`` (default: the box head's), pooled with
        ``pooler`` (default: the box head's)."""
        pooler, size = pooler or self.pooler, output_size or self.output_size
        if pooler == "pool":
            return roi_pool(features, boxes, size, self.spatial_scale)
        return roi_align(features, boxes, size, self.spatial_scale, self.sampling_ratio)

    def forward(self, features, proposals: list[torch.Tensor], image_sizes, targets=None):
        """Returns ``(detections, losses)``: a list of detection dicts in eval mode (else
        empty) and a dict of losses in training mode (else empty)."""
        if self.training:
            rois, labels, reg, matched = zip(*(  # per image: RoIs, labels, box targets, gt index
                sample_proposals(p, t, self.batch_size_per_image, self.positive_fraction)
                for p, t in zip(proposals, targets)
            ))
            logits, deltas = self.box_head(self.pool(features, list(rois)))
            classification, box = box_losses(logits, deltas, torch.cat(labels), torch.cat(reg))
            losses = {"loss_classifier": classification, "loss_box_reg": box}
            losses.update(self.extra_losses(features, list(rois), list(labels), list(matched), targets))
            return [], losses
        logits, deltas = self.box_head(self.pool(features, proposals))
        counts = [len(p) for p in proposals]
        detections = [
            postprocess_detections(
                lg, dl, p, size, self.score_thresh, self.nms_thresh, self.detections_per_img
            )
            for lg, dl, p, size in zip(logits.split(counts), deltas.split(counts), proposals, image_sizes)
        ]
        return self.extra_outputs(features, detections, image_sizes), {}

    def extra_losses(self, features, rois, labels, matched, targets) -> dict[str, torch.Tensor]:
        """Losses of further per-RoI heads (Mask R-CNN's mask loss) from the sampled RoIs, their
        labels and matched gt indices (one tensor per image); none here."""
        return {}

    def extra_outputs(self, features, detections: list[dict], image_sizes) -> list[dict]:
        """Outputs of further per-RoI heads added to ``detections`` (masks), given each image's
        ``(H, W)``; none here."""
        return detections


class FastRCNN(nn.Module):
    """Fast R-CNN (Girshick 2015): the backbone runs **once per image**; every external
    proposal (``window_proposals``) takes its feature from the shared feature map with RoI
    Pool or RoI Align (``pooler``), then the per-RoI heads (:class:`RoIHeads`)."""

    def __init__(
        self,
        num_classes: int = 3,
        width: int = 8,
        pooler: str = "align",
        proposals: dict | None = None,
        output_size: int = 7,
        hidden: int = 128,
        batch_size_per_image: int = 128,
        **head_args,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.proposal_args = dict(proposals or {})
        self.backbone = Backbone(width)
        channels, scale = self.backbone.out_channels, 1 / Backbone.stride
        self.roi_heads = RoIHeads(channels, num_classes, scale, pooler, output_size, hidden=hidden,
                                  batch_size_per_image=batch_size_per_image, **head_args)

    def forward(self, images, targets=None):
        check_inputs(images, targets, self.num_classes, self.training, self)
        features = self.backbone(batch_images(images))
        proposals = [window_proposals(i.shape[1:], **self.proposal_args).to(i.device) for i in images]
        detections, losses = self.roi_heads(features, proposals, [i.shape[1:] for i in images], targets)
        return losses if self.training else detections


# ---------------------------------------------------------------------------------------------
# 4. Faster R-CNN: the Region Proposal Network replaces the external proposals


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

    def select(self, objectness: torch.Tensor, boxes: torch.Tensor, image_size) -> torch.Tensor:
        """The proposals ``[P, 4]`` of one image from all its decoded anchors ``[A, 4]``."""
        mode = 0 if self.training else 1
        top = objectness.topk(min(self.pre_nms_top_n[mode], len(objectness))).indices
        boxes, scores = clip_boxes(boxes[top], image_size), objectness[top]
        wide = torch.nonzero(
            (boxes[:, 2] - boxes[:, 0] >= 1e-3) & (boxes[:, 3] - boxes[:, 1] >= 1e-3)
        ).flatten()
        boxes, scores = boxes[wide], scores[wide]
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
        proposals = [self.select(o, b, size) for o, b, size in zip(objectness.detach(), boxes, image_sizes)]
        losses = self.losses(objectness, deltas, anchors, targets) if self.training else {}
        return proposals, losses


class FasterRCNN(nn.Module):
    """Faster R-CNN: backbone -> RPN proposals -> RoI heads, trained jointly with the four
    losses ``loss_objectness``, ``loss_rpn_box_reg`` (RPN) and ``loss_classifier``,
    ``loss_box_reg`` (head). ``rpn_args`` go to :class:`RegionProposalNetwork`,
    ``head_args`` to the second stage, :attr:`heads` (Mask R-CNN swaps in its own).
    ``backbone``: any module with ``out_channels`` and ``stride`` attributes (e.g.
    :func:`cvlib.models.backbones.torchvision_backbone`); by default ``Backbone(width)``."""

    heads = RoIHeads

    def __init__(
        self,
        num_classes: int = 3,
        width: int = 8,
        pooler: str = "align",
        scales: Sequence[float] = (16.0, 32.0),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        output_size: int = 7,
        hidden: int = 128,
        rpn_args: dict | None = None,
        head_args: dict | None = None,
        backbone: nn.Module | None = None,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone if backbone is not None else Backbone(width)
        channels, stride = self.backbone.out_channels, self.backbone.stride
        self.rpn = RegionProposalNetwork(channels, stride, scales, aspect_ratios, **(rpn_args or {}))
        self.roi_heads = self.heads(channels, num_classes, 1 / stride, pooler, output_size,
                                    hidden=hidden, **(head_args or {}))

    def check_inputs(self, images, targets) -> None:
        """:func:`check_inputs`; Mask R-CNN also checks the masks."""
        check_inputs(images, targets, self.num_classes, self.training, self)

    def forward(self, images, targets=None):
        self.check_inputs(images, targets)
        image_sizes = [i.shape[1:] for i in images]
        features = self.backbone(batch_images(images))
        proposals, rpn_losses = self.rpn(features, image_sizes, targets)
        detections, head_losses = self.roi_heads(features, proposals, image_sizes, targets)
        return {**rpn_losses, **head_losses} if self.training else detections


# ---------------------------------------------------------------------------------------------
# The reference: torchvision's FasterRCNN with the same architecture (and weights)

_TORCHVISION_NAMES = {  # cvlib parameter prefix -> torchvision's
    "rpn.conv.": "rpn.head.conv.0.0.",
    "rpn.cls_logits.": "rpn.head.cls_logits.",
    "rpn.bbox_pred.": "rpn.head.bbox_pred.",
    "roi_heads.box_head.mlp.1.": "roi_heads.box_head.fc6.",
    "roi_heads.box_head.mlp.3.": "roi_heads.box_head.fc7.",
    "roi_heads.box_head.cls_score.": "roi_heads.box_predictor.cls_score.",
    "roi_heads.box_head.bbox_pred.": "roi_heads.box_predictor.bbox_pred.",
}


def torchvision_twin(model: FasterRCNN, image_size: int = 64, copy_weights: bool = True) -> nn.Module:
    """torchvision's ``FasterRCNN`` built like ``model`` (a RoI Align one): the same backbone
    class, anchors, RoI Align, heads and settings, no resizing of ``image_size`` images and no
    normalisation; with ``model``'s weights when ``copy_weights`` (then both give the same
    detections), else freshly initialised."""
    from torchvision.models.detection import FasterRCNN as TorchvisionFasterRCNN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.rpn import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    integer(image_size, "image_size", low=1)
    if not isinstance(module(model), FasterRCNN) or model.roi_heads.pooler != "align":
        raise ValueError(
            "model must be a cvlib FasterRCNN with pooler='align' (torchvision has no RoI Pool head)"
        )
    rpn, heads = model.rpn, model.roi_heads
    backbone = Backbone(model.backbone.out_channels // 8)
    hidden = heads.box_head.cls_score.in_features
    twin = TorchvisionFasterRCNN(
        backbone,
        None,
        min_size=image_size,
        max_size=image_size,
        image_mean=[0.0] * 3,
        image_std=[1.0] * 3,
        rpn_anchor_generator=AnchorGenerator((rpn.scales,), (rpn.aspect_ratios,)),
        rpn_pre_nms_top_n_train=rpn.pre_nms_top_n[0],
        rpn_pre_nms_top_n_test=rpn.pre_nms_top_n[1],
        rpn_post_nms_top_n_train=rpn.post_nms_top_n[0],
        rpn_post_nms_top_n_test=rpn.post_nms_top_n[1],
        rpn_nms_thresh=rpn.nms_thresh,
        rpn_fg_iou_thresh=rpn.fg_iou,
        rpn_bg_iou_thresh=rpn.bg_iou,
        rpn_batch_size_per_image=rpn.batch_size_per_image,
        rpn_positive_fraction=rpn.positive_fraction,
        box_roi_pool=MultiScaleRoIAlign(["0"], heads.output_size, heads.sampling_ratio),
        box_head=TwoMLPHead(backbone.out_channels * heads.output_size**2, hidden),
        box_predictor=FastRCNNPredictor(hidden, heads.num_classes + 1),
        box_score_thresh=heads.score_thresh,
        box_nms_thresh=heads.nms_thresh,
        box_detections_per_img=heads.detections_per_img,
        box_batch_size_per_image=heads.batch_size_per_image,
        box_positive_fraction=heads.positive_fraction,
    )
    if copy_weights:

        def rename(key: str) -> str:
            prefix = next((p for p in _TORCHVISION_NAMES if key.startswith(p)), None)
            return key if prefix is None else _TORCHVISION_NAMES[prefix] + key[len(prefix) :]

        twin.load_state_dict({rename(k): v for k, v in model.state_dict().items()})
    return twin
