"""The R-CNN family (lecture 05): R-CNN, Fast R-CNN, Faster R-CNN with its Region Proposal Network.

Read top to bottom, this file is the lecture's story:

1. **Region proposals** (``window_proposals``): a few thousand boxes that may hold an object,
   found without looking at classes. Selective search groups colour regions
   (``segment_proposals``, a shortened version); the detectors here use a simple stand-in,
   windows of many sizes and aspect ratios at every position.
2. **R-CNN** (``RCNN``): warp every proposal to a fixed size and run the CNN **once per region**;
   classify it (C classes + background) and regress box deltas ``(tx, ty, tw, th)``.
3. **Fast R-CNN** (``FastRCNN``): run the CNN **once per image**; cut a fixed-size feature out of
   the feature map for each proposal with **RoI Pool** or **RoI Align** (``RoIPooler``), then
   the same per-RoI heads (``RoIHeads``).
4. **Faster R-CNN** (``FasterRCNN``): the proposals come from the network itself, a **Region
   Proposal Network** (``RegionProposalNetwork``, in ``cvlib/models/rpn.py``) scoring K anchors
   at every feature-map cell. Four losses: RPN objectness, RPN box, head classification, head box.

5. **Building them** (``build_fast_rcnn``, ``build_faster_rcnn``): the models take their modules
   (backbone, RPN, RoI heads) and one ``DetectionSettings``, as torchvision's and DETR's do; these
   builders make the course's small ones, with the settings of the shipped checkpoints.

All three follow torchvision's detection contract: ``model(images, targets)`` returns a dict
of losses in training mode; ``model(images)`` returns one ``{"boxes", "labels", "scores"}``
dict per image in eval mode. Images are float ``[3, H, W]`` in ``[0, 1]``; boxes float xyxy
pixels; labels ``1..C`` (0 is background). The settings and loss normalisations are
torchvision's (``FasterRCNN``'s defaults), so the two can be compared one to one.
Everything is built from ``cvlib.ops`` and the pieces every detector shares
(``cvlib/models/detection.py``); torchvision's twin of ``FasterRCNN`` is in
``cvlib/models/rcnn_torchvision.py``.
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
from cvlib.models import detection
from cvlib.models.blocks import vgg_features
from cvlib.models.detection import SMOOTH_L1_BETA, Backbone, DetectionSettings
from cvlib.models.rpn import RegionProposalNetwork
from cvlib.ops import (
    box_iou,
    clip_boxes_to_image,
    decode_boxes,
    encode_boxes,
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
    "match_proposals",
    "sample_proposals",
    "box_losses",
    "postprocess_detections",
    "RCNN",
    "BoxHead",
    "RoIPooler",
    "RoIHeads",
    "FastRCNN",
    "FasterRCNN",
    "build_fast_rcnn",
    "build_faster_rcnn",
]

HEAD_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # (wx, wy, ww, wh): head deltas scaled as torchvision's


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
# The pieces R-CNN, Fast and Faster R-CNN share: training RoIs, the multitask loss, detections


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
    settings: DetectionSettings | None = None,
) -> dict[str, torch.Tensor]:
    """Detections of one image from its ``K`` RoIs ``[K, 4]``: each RoI gives one box per class
    (its deltas decoded, clipped to the image) scored by the softmax; background is dropped,
    then :func:`~cvlib.models.detection.select_per_class` keeps what ``settings`` says
    (default :class:`~cvlib.models.detection.DetectionSettings`).
    Returns ``{"boxes" [D, 4], "labels" [D], "scores" [D]}``."""
    _check_boxes(rois, "rois")
    tensor(class_logits, "class_logits", shape=(len(rois), "C + 1"), dtype="float", finite=True)
    tensor(box_deltas, "box_deltas", shape=(len(rois), 4 * class_logits.shape[1]), dtype="float", finite=True)
    pair(image_size, "image_size")
    settings = detection.settings_or_default(settings)
    num_classes = class_logits.shape[1] - 1
    scores = F.softmax(class_logits, dim=1)[:, 1:]  # [K, C]
    refs = rois[:, None, :].expand(-1, num_classes, 4).reshape(-1, 4)
    deltas = box_deltas.reshape(len(rois), num_classes + 1, 4)[:, 1:].reshape(-1, 4)
    boxes = clip_boxes_to_image(decode_boxes(deltas, refs, HEAD_BOX_WEIGHTS), image_size)
    return detection.select_per_class(boxes.reshape(len(rois), num_classes, 4), scores, settings)


class BoxHead(nn.Module):
    """Per-RoI heads: flatten -> two fully connected layers (``hidden``) -> class scores
    ``[K, C + 1]`` and class-specific box deltas ``[K, (C + 1) * 4]`` (torchvision's
    ``TwoMLPHead`` + ``FastRCNNPredictor``)."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 128):
        super().__init__()
        self.num_classes = num_classes
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
        proposal_args: dict | None = None,
        batch_size_per_image: int = 64,
        positive_fraction: float = 0.25,
        chunk: int = 512,
        settings: DetectionSettings | None = None,
    ):
        super().__init__()
        counts(num_classes=num_classes, width=width, crop_size=crop_size, hidden=hidden, chunk=chunk,
               batch_size_per_image=batch_size_per_image)
        number(positive_fraction, "positive_fraction", low=0, high=1)
        if crop_size % 8:
            raise ValueError(f"crop_size must be a multiple of 8, got {crop_size}")
        self.num_classes, self.crop_size, self.chunk = num_classes, crop_size, chunk
        self.proposal_args = dict(proposal_args or {})
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.settings = detection.settings_or_default(settings)
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
        detection.check_detection_inputs(images, targets, self.num_classes, self.training, self)
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
            size = image.shape[1:]
            detections.append(postprocess_detections(logits, deltas, proposals, size, self.settings))
        return detections


# ---------------------------------------------------------------------------------------------
# 3. Fast R-CNN: one backbone pass, RoI Pool / RoI Align, per-RoI heads


class RoIPooler(nn.Module):
    """One fixed-size feature per RoI: ``[B, C, h, w]`` features (stride ``1 / spatial_scale``)
    and one ``[K_i, 4]`` box tensor per image -> ``[sum K_i, C, S, S]``, ``S = output_size``, by
    **RoI Align** (``method="align"``: bilinear, ``sampling_ratio`` points per bin side) or
    **RoI Pool** (``"pool"``: quantised max). No parameters."""

    def __init__(self, method: str = "align", output_size: int = 7, spatial_scale: float = 1 / 8,
                 sampling_ratio: int = 2):
        super().__init__()
        choice(method, "method", ("align", "pool"))
        counts(output_size=output_size, sampling_ratio=sampling_ratio)
        number(spatial_scale, "spatial_scale", low=0, low_open=True)
        self.method, self.output_size = method, output_size
        self.spatial_scale, self.sampling_ratio = spatial_scale, sampling_ratio

    def forward(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        if self.method == "pool":
            return roi_pool(features, boxes, self.output_size, self.spatial_scale)
        return roi_align(features, boxes, self.output_size, self.spatial_scale, self.sampling_ratio)


class RoIHeads(nn.Module):
    """The second stage of Fast and Faster R-CNN: ``box_roi_pool`` (a :class:`RoIPooler`) cuts a
    fixed-size feature out of the feature map for each RoI, ``box_head`` (a :class:`BoxHead`)
    scores and refines it.

    Training samples ``batch_size_per_image`` RoIs per image (``positive_fraction``
    objects, IoU >= 0.5 with a gt box) and returns ``loss_classifier`` and ``loss_box_reg``;
    eval returns the detections that ``settings`` keeps. A mask head (Mask R-CNN) plugs in by
    overriding :meth:`extra_losses` and :meth:`extra_outputs` (they get the feature map and the RoIs).
    """

    def __init__(
        self,
        box_roi_pool: nn.Module,
        box_head: BoxHead,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        settings: DetectionSettings | None = None,
    ):
        super().__init__()
        self.box_roi_pool = module(box_roi_pool, "box_roi_pool")
        if not isinstance(box_head, BoxHead):
            raise TypeError(f"box_head must be a BoxHead, got {describe(box_head)}")
        counts(batch_size_per_image=batch_size_per_image)
        number(positive_fraction, "positive_fraction", low=0, high=1)
        self.box_head, self.num_classes = box_head, box_head.num_classes
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.settings = detection.settings_or_default(settings)

    def forward(self, features, proposals: list[torch.Tensor], image_sizes, targets=None):
        """Returns ``(detections, losses)``: a list of detection dicts in eval mode (else
        empty) and a dict of losses in training mode (else empty)."""
        if self.training:
            rois, labels, reg, matched = zip(*(  # per image: RoIs, labels, box targets, gt index
                sample_proposals(p, t, self.batch_size_per_image, self.positive_fraction)
                for p, t in zip(proposals, targets)
            ))
            logits, deltas = self.box_head(self.box_roi_pool(features, list(rois)))
            classification, box = box_losses(logits, deltas, torch.cat(labels), torch.cat(reg))
            losses = {"loss_classifier": classification, "loss_box_reg": box}
            losses.update(self.extra_losses(features, list(rois), list(labels), list(matched), targets))
            return [], losses
        logits, deltas = self.box_head(self.box_roi_pool(features, proposals))
        counts = [len(p) for p in proposals]
        detections = [
            postprocess_detections(lg, dl, p, size, self.settings)
            for lg, dl, p, size in zip(logits.split(counts), deltas.split(counts), proposals, image_sizes)
        ]
        return self.extra_outputs(features, detections, image_sizes), {}

    @staticmethod
    def positives(rois, labels, matched) -> tuple[list, list, list]:
        """The sampled RoIs that are objects (label > 0), what a mask or keypoint head learns
        from: their boxes ``[P_i, 4]``, labels ``[P_i]`` and matched gt indices ``[P_i]``, one
        tensor per image each."""
        keep = [torch.nonzero(lb > 0).flatten() for lb in labels]
        return ([r[k] for r, k in zip(rois, keep)], [lb[k] for lb, k in zip(labels, keep)],
                [m[k] for m, k in zip(matched, keep)])

    def extra_losses(self, features, rois, labels, matched, targets) -> dict[str, torch.Tensor]:
        """Losses of further per-RoI heads (Mask R-CNN's mask loss) from the sampled RoIs, their
        labels and matched gt indices (one tensor per image); none here."""
        return {}

    def extra_outputs(self, features, detections: list[dict], image_sizes) -> list[dict]:
        """Outputs of further per-RoI heads added to ``detections`` (masks), given each image's
        ``(H, W)``; none here."""
        return detections


class FastRCNN(nn.Module):
    """Fast R-CNN (Girshick 2015): the ``backbone`` runs **once per image**; every external
    proposal (``window_proposals`` with the keyword arguments ``proposal_args``) takes its feature from the
    shared feature map, then the per-RoI heads (``roi_heads``, a :class:`RoIHeads`).
    :func:`build_fast_rcnn` builds the course's."""

    def __init__(self, backbone: nn.Module, roi_heads: RoIHeads, proposal_args: dict | None = None):
        super().__init__()
        self.backbone = module(backbone, "backbone")
        self.roi_heads = _check_heads(roi_heads)
        self.num_classes = roi_heads.num_classes
        self.proposal_args = dict(proposal_args or {})

    def forward(self, images, targets=None):
        detection.check_detection_inputs(images, targets, self.num_classes, self.training, self)
        features = self.backbone(detection.batch_images(images))
        proposals = [window_proposals(i.shape[1:], **self.proposal_args).to(i.device) for i in images]
        detections, losses = self.roi_heads(features, proposals, [i.shape[1:] for i in images], targets)
        return losses if self.training else detections


# ---------------------------------------------------------------------------------------------
# 4. Faster R-CNN: the Region Proposal Network replaces the external proposals


class FasterRCNN(nn.Module):
    """Faster R-CNN: ``backbone`` -> ``rpn`` proposals -> ``roi_heads``, trained jointly with
    the four losses ``loss_objectness``, ``loss_rpn_box_reg`` (:class:`RegionProposalNetwork`)
    and ``loss_classifier``, ``loss_box_reg`` (:class:`RoIHeads`). The backbone is any module
    with ``out_channels`` and ``stride`` attributes (the course's ``Backbone``, or
    :func:`cvlib.models.backbones.torchvision_backbone`). :func:`build_faster_rcnn` builds the course's."""

    def __init__(self, backbone: nn.Module, rpn: RegionProposalNetwork, roi_heads: RoIHeads):
        super().__init__()
        self.backbone = module(backbone, "backbone")
        self.rpn = module(rpn, "rpn")
        self.roi_heads = _check_heads(roi_heads)
        self.num_classes = roi_heads.num_classes

    @property
    def settings(self) -> DetectionSettings:
        """What the model keeps at test time (its second stage's settings)."""
        return self.roi_heads.settings

    def check_inputs(self, images, targets) -> None:
        """:func:`~cvlib.models.detection.check_detection_inputs`; Mask R-CNN also checks the masks."""
        detection.check_detection_inputs(images, targets, self.num_classes, self.training, self)

    def forward(self, images, targets=None):
        self.check_inputs(images, targets)
        image_sizes = [i.shape[1:] for i in images]
        features = self.backbone(detection.batch_images(images))
        proposals, rpn_losses = self.rpn(features, image_sizes, targets)
        detections, head_losses = self.roi_heads(features, proposals, image_sizes, targets)
        return {**rpn_losses, **head_losses} if self.training else detections


def _check_heads(roi_heads) -> RoIHeads:
    if not isinstance(roi_heads, RoIHeads):
        raise TypeError(f"roi_heads must be a RoIHeads, got {describe(roi_heads)}")
    return roi_heads


# ---------------------------------------------------------------------------------------------
# 5. The course's models: small builders with the settings of the shipped checkpoints


def build_fast_rcnn(
    num_classes: int = 3,
    width: int = 8,
    pooler: str = "align",
    proposal_args: dict | None = None,
    output_size: int = 7,
    hidden: int = 128,
    batch_size_per_image: int = 128,
    settings: DetectionSettings | None = None,
) -> FastRCNN:
    """The course's Fast R-CNN: ``Backbone(width)`` (stride 8), ``window_proposals``, RoI Align
    or RoI Pool (``pooler``) to ``output_size x output_size``, a ``hidden``-wide :class:`BoxHead`."""
    choice(pooler, "pooler", ("align", "pool"))
    counts(num_classes=num_classes, output_size=output_size, hidden=hidden)
    backbone = Backbone(width)
    box_roi_pool = RoIPooler(pooler, output_size, 1 / backbone.stride)
    box_head = BoxHead(backbone.out_channels * output_size**2, num_classes, hidden)
    heads = RoIHeads(box_roi_pool, box_head, batch_size_per_image, settings=settings)
    return FastRCNN(backbone, heads, proposal_args)


def build_faster_rcnn(
    num_classes: int = 3,
    width: int = 8,
    pooler: str = "align",
    scales: Sequence[float] = (16.0, 32.0),
    aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
    output_size: int = 7,
    hidden: int = 128,
    backbone: nn.Module | None = None,
    settings: DetectionSettings | None = None,
) -> FasterRCNN:
    """The course's Faster R-CNN: ``backbone`` (default ``Backbone(width)``, stride 8), an RPN
    with ``len(scales) x len(aspect_ratios)`` anchors per cell, RoI Align or RoI Pool
    (``pooler``) to ``output_size x output_size``, a ``hidden``-wide :class:`BoxHead`, and
    torchvision's other settings."""
    choice(pooler, "pooler", ("align", "pool"))
    counts(num_classes=num_classes, output_size=output_size, hidden=hidden)
    backbone = Backbone(width) if backbone is None else module(backbone, "backbone")
    channels, stride = backbone.out_channels, backbone.stride
    rpn = RegionProposalNetwork(channels, stride, scales, aspect_ratios)
    box_head = BoxHead(channels * output_size**2, num_classes, hidden)
    heads = RoIHeads(RoIPooler(pooler, output_size, 1 / stride), box_head, settings=settings)
    return FasterRCNN(backbone, rpn, heads)
