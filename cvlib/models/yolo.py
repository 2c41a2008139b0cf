"""YOLO (Redmon et al. 2016, lecture 06): a single-stage detector, one forward pass per image.

Read top to bottom, this file is the lecture's story:

1. **The grid** (``encode_targets``): the image is cut into ``S x S`` cells; the cell that holds
   an object's **centre** is *responsible* for it. The cell stores the centre's offset inside
   the cell ``(x, y)`` in ``[0, 1)`` and the box's size relative to the image as
   ``(sqrt w, sqrt h)``; ``grid_boxes`` turns these numbers back into pixel boxes.
2. **The network** (``YOLO``): backbone -> one ``S x S x (5B + C)`` tensor. Every cell predicts
   ``B`` boxes ``(x, y, sqrt w, sqrt h, confidence)`` and ``C`` class probabilities; the
   confidence is trained towards ``P(object) x IoU(predicted box, true box)``. No anchors, no
   proposals, no second stage.
3. **The loss** (``YOLO.loss``): of the ``B`` predictors of a responsible cell, the one whose box
   overlaps the object best is responsible for it; then

   ``lambda_coord * sum_resp [(x - x^)^2 + (y - y^)^2 + (sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]``
   ``+ sum_resp BCE(C, IoU) + lambda_noobj * sum_rest BCE(C, 0) + sum_cells-with-object CE(classes)``

   per image. The paper uses squared errors for the confidence and the class terms; binary
   and softmax cross-entropy train the same outputs faster. ``focal=True`` replaces the two
   confidence terms by RetinaNet's focal loss, which down-weights the many easy no-object
   predictors by ``(1 - p_t)^gamma`` instead of by the constant ``lambda_noobj``.
4. **Detections** (``YOLO.postprocess``): class-specific score = confidence x class
   probability, threshold, per-class NMS.

5. **Anchor priors** (``YOLOv2``, Redmon and Farhadi 2017): the lecture's "K anchor boxes at
   each point" in YOLO. Each of a cell's ``A`` predictors owns a prior shape ``(p_w, p_h)``,
   learnt from the training boxes by k-means with a ``1 - IoU`` distance
   (``cvlib.ops.anchors.kmeans_anchors``); it predicts the centre as a sigmoid offset inside
   the cell and the size as ``p_w e^{t_w}, p_h e^{t_h}`` (``anchor_grid_boxes``). The predictor
   responsible for an object is the one whose **prior** fits the object's shape best
   (``encode_anchor_targets``), fixed before training, so each predictor specialises in one
   shape, and every predictor has its own class scores: a cell can hold several objects.

``YOLO`` and ``YOLOv2`` follow torchvision's detection contract as the R-CNN family does (``model(images,
targets)`` -> dict of losses in training mode, one ``{"boxes", "labels", "scores"}`` dict per
image in eval mode) and shares its input checks, image batching and the last step of
inference (``cvlib/models/detection.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cvlib._checks import counts, number, pair, tensor
from cvlib.losses import sigmoid_focal_loss
from cvlib.models import detection
from cvlib.models.blocks import conv_bn_relu
from cvlib.models.detection import Backbone, DetectionSettings
from cvlib.ops import box_convert, box_iou, clip_boxes_to_image
from cvlib.ops.anchors import shape_iou
from cvlib.ops.boxes import BBOX_XFORM_CLIP, _check_boxes

__all__ = ["encode_targets", "grid_boxes", "YOLO", "encode_anchor_targets", "anchor_grid_boxes", "YOLOv2"]

ENCODED_KEYS = ("params", "labels", "object")


# ---------------------------------------------------------------------------------------------
# 1. The grid: which cell is responsible for which object


def _check_grid(grid_size: int, image_size) -> tuple[int, int]:
    counts(grid_size=grid_size)
    return pair(image_size, "image_size")


def _check_objects(boxes: torch.Tensor, labels: torch.Tensor) -> None:
    """xyxy ``boxes`` ``[K, 4]`` and their classes ``labels`` int ``[K]`` in ``1..C``."""
    _check_boxes(boxes)
    tensor(labels, "labels", dtype="int")
    if labels.numel() and labels.min() < 1:
        raise ValueError(f"labels must be classes 1..C (0 is background), got {labels.tolist()}")
    if labels.shape != boxes.shape[:1]:
        raise ValueError(
            f"boxes must be [K, 4] and labels [K], got {tuple(boxes.shape)} and {tuple(labels.shape)}"
        )


def encode_targets(boxes: torch.Tensor, labels: torch.Tensor, grid_size: int, image_size) -> dict:
    """The YOLO target of one image: its xyxy ``boxes`` ``[K, 4]`` (pixels) and ``labels``
    ``[K]`` (``1..C``) written into an ``S x S`` grid over an image of ``image_size`` ``(H, W)``.

    Returns ``{"params" float [S, S, 4], "labels" int64 [S, S], "object" bool [S, S]}``:
    ``params`` are ``(x, y, sqrt w, sqrt h)`` of the object whose centre lies in the cell
    (``x, y`` the centre's offset inside the cell, ``w, h`` relative to the image), ``labels``
    its class (0 where no object), ``object`` where a cell is responsible for one. A cell holds
    one object: when two centres share a cell, the later one in ``boxes`` wins (YOLO v1 cannot
    detect both; ``YOLO`` then loses the other).
    """
    height, width = _check_grid(grid_size, image_size)
    _check_objects(boxes, labels)
    s = grid_size
    params = boxes.new_zeros((s, s, 4))
    cell_labels = torch.zeros((s, s), dtype=torch.int64, device=boxes.device)
    cx, cy, w, h = box_convert(boxes, "xyxy", "cxcywh").unbind(-1)
    gx, gy = cx * s / width, cy * s / height  # centre in cell units
    cols, rows = gx.long().clamp(0, s - 1), gy.long().clamp(0, s - 1)
    encoded = torch.stack([gx - cols, gy - rows, (w / width).sqrt(), (h / height).sqrt()], dim=-1)
    for k in range(len(boxes)):  # in order, so that the later object of a shared cell wins
        params[rows[k], cols[k]] = encoded[k]
        cell_labels[rows[k], cols[k]] = labels[k]
    return {"params": params, "labels": cell_labels, "object": cell_labels > 0}


def _cells(s: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The row and the column of every cell of an ``S x S`` grid, ``[S, S, 1]`` each (one value
    for all the predictors of a cell), in ``like``'s dtype and device."""
    index = torch.arange(s, device=like.device, dtype=like.dtype)
    rows, cols = torch.meshgrid(index, index, indexing="ij")
    return rows[:, :, None], cols[:, :, None]


def grid_boxes(params: torch.Tensor, image_size) -> torch.Tensor:
    """Decode the ``B`` boxes of every cell, ``(x, y, sqrt w, sqrt h)`` ``[..., S, S, B, 4]``,
    into xyxy pixel boxes of the same shape: centre ``((col + x) W / S, (row + y) H / S)``,
    size ``(sqrt w^2 W, sqrt h^2 H)``. The inverse of :func:`encode_targets` (give its
    ``params[:, :, None]``, ``B = 1``)."""
    tensor(params, "params", dtype="float", finite=True)
    if params.ndim < 4 or params.shape[-1] != 4 or params.shape[-3] != params.shape[-4]:
        raise ValueError(f"params must be [..., S, S, B, 4], got {tuple(params.shape)}")
    s = params.shape[-3]
    height, width = _check_grid(s, image_size)
    rows, cols = _cells(s, params)
    x, y, sw, sh = params.unbind(-1)
    cxcywh = torch.stack([(cols + x) * width / s, (rows + y) * height / s, sw**2 * width, sh**2 * height], -1)
    return box_convert(cxcywh.reshape(-1, 4), "cxcywh", "xyxy").reshape(params.shape)


# ---------------------------------------------------------------------------------------------
# 2.-4. The network, its loss and its detections


class YOLO(nn.Module):
    """YOLO v1 on a small backbone: ``[N, 3, H, W]`` -> backbone -> 3x3 conv -> average pooling
    to ``S x S`` -> 1x1 conv -> ``[N, S, S, 5B + C]``: per cell ``B`` boxes ``(x, y, sqrt w,
    sqrt h, confidence)`` (the first ``5B`` numbers, box after box) and ``C`` class logits.

    Args:
        num_classes: ``C``; labels are ``1..C``.
        grid_size: ``S``; the grid always covers the (padded) batch, whatever its size.
        boxes_per_cell: ``B``.
        backbone: a module ``[N, 3, H, W]`` -> ``[N, out_channels, h, w]`` with an
            ``out_channels`` attribute; by default the course's ``Backbone(width)`` (stride 8).
        lambda_coord, lambda_noobj: the paper's weights of the box and no-object terms (5, 0.5).
        focal: the confidence terms as RetinaNet's focal loss (``focal_alpha``, ``focal_gamma``)
            instead of binary cross-entropy with ``lambda_noobj``.
        settings: the detections kept in eval mode (a ``DetectionSettings``; torchvision's defaults).
    """

    def __init__(
        self,
        num_classes: int = 3,
        grid_size: int = 8,
        boxes_per_cell: int = 2,
        backbone: nn.Module | None = None,
        width: int = 16,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        focal: bool = False,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        settings: DetectionSettings | None = None,
    ):
        super().__init__()
        counts(num_classes=num_classes, grid_size=grid_size, boxes_per_cell=boxes_per_cell, width=width)
        for name, value in (("lambda_coord", lambda_coord), ("lambda_noobj", lambda_noobj),
                            ("focal_gamma", focal_gamma)):
            number(value, name, low=0)
        self.num_classes, self.grid_size, self.boxes_per_cell = num_classes, grid_size, boxes_per_cell
        self.lambda_coord, self.lambda_noobj = lambda_coord, lambda_noobj
        self.focal, self.focal_alpha, self.focal_gamma = focal, focal_alpha, focal_gamma
        self.settings = detection.settings_or_default(settings)
        self.backbone = backbone if backbone is not None else Backbone(width)
        channels = self.backbone.out_channels
        self.head = nn.Sequential(
            conv_bn_relu(channels, channels),
            nn.AdaptiveAvgPool2d(grid_size),
            nn.Conv2d(channels, 5 * boxes_per_cell + num_classes, 1),
        )
        with torch.no_grad():  # confidences start near 0.01 (RetinaNet's prior): most cells are empty
            self.head[-1].bias[4 : 5 * boxes_per_cell : 5] = -4.6

    def head_output(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw network output ``[N, S, S, 5B + C]`` of a batch ``[N, 3, H, W]``."""
        return self.head(self.backbone(batch)).permute(0, 2, 3, 1)

    def split_output(self, output: torch.Tensor):
        """``[N, S, S, 5B + C]`` -> box parameters ``(x, y, sqrt w, sqrt h)`` in ``(0, 1)``
        ``[N, S, S, B, 4]`` (sigmoid), confidence logits ``[N, S, S, B]`` and class logits
        ``[N, S, S, C]``."""
        boxes = output[..., : 5 * self.boxes_per_cell].unflatten(-1, (self.boxes_per_cell, 5))
        return boxes[..., :4].sigmoid(), boxes[..., 4], output[..., 5 * self.boxes_per_cell :]

    def forward(self, images, targets=None):
        detection.check_detection_inputs(images, targets, self.num_classes, self.training, self)
        batch = detection.batch_images(images)
        output = self.head_output(batch)
        if self.training:
            return self.loss(output, targets, batch.shape[2:])
        return [self.postprocess(o, batch.shape[2:], i.shape[1:]) for o, i in zip(output, images)]

    def loss(self, output: torch.Tensor, targets: list[dict], image_size) -> dict[str, torch.Tensor]:
        """The four terms of the YOLO loss, summed over the grid and averaged over the images:
        ``loss_box`` (coordinates), ``loss_object`` and ``loss_noobject`` (confidence of the
        responsible predictors and of all others), ``loss_class``."""
        boxes, confidence, class_logits = self.split_output(output)
        encoded = [encode_targets(t["boxes"], t["labels"], self.grid_size, image_size) for t in targets]
        params, labels, objects = (torch.stack([e[key] for e in encoded]) for key in ENCODED_KEYS)
        # of the B predictors of a responsible cell, the one that overlaps the object best is responsible
        predicted = grid_boxes(boxes.detach(), image_size)[objects]  # [K, B, 4]
        true = grid_boxes(params[..., None, :], image_size)[objects].expand_as(predicted)
        iou = box_iou(predicted.reshape(-1, 4), true.reshape(-1, 4)).diagonal().reshape(predicted.shape[:2])
        best = iou.argmax(dim=1)  # [K]
        responsible = torch.zeros_like(confidence, dtype=torch.bool)
        responsible[objects] = F.one_hot(best, self.boxes_per_cell).bool()
        target_confidence = torch.zeros_like(confidence)
        target_confidence[responsible] = iou.gather(1, best[:, None]).flatten()  # P(object) x IoU
        box = ((boxes[responsible] - params[objects]) ** 2).sum()
        return self.loss_terms(box, confidence, target_confidence, responsible, class_logits[objects],
                               labels[objects], len(targets))

    def loss_terms(self, box, confidence, target_confidence, responsible, class_logits, labels, n):
        """The four terms from the summed squared ``box`` error, the confidence logits and their
        targets (the ``responsible`` predictors against all others), and the class logits
        ``[K, C]`` and labels ``[K]`` of the responsible cells; sums averaged over ``n`` images."""
        if self.focal:
            focal = sigmoid_focal_loss(confidence, target_confidence, self.focal_alpha, self.focal_gamma)
            obj, noobj = focal[responsible].sum(), focal[~responsible].sum()
        else:
            obj = F.binary_cross_entropy_with_logits(
                confidence[responsible], target_confidence[responsible], reduction="sum"
            )
            noobj = self.lambda_noobj * F.binary_cross_entropy_with_logits(
                confidence[~responsible], target_confidence[~responsible], reduction="sum"
            )
        classes = F.cross_entropy(class_logits, labels - 1, reduction="sum")
        return {"loss_box": self.lambda_coord * box / n, "loss_object": obj / n,
                "loss_noobject": noobj / n, "loss_class": classes / n}

    def postprocess(self, output: torch.Tensor, grid_image_size, image_size) -> dict[str, torch.Tensor]:
        """Detections of one image from its output ``[S, S, 5B + C]`` (the grid covers
        ``grid_image_size``, the padded batch): every predictor gives one box per class scored
        ``confidence x P(class | object)``; boxes are clipped to ``image_size``; then
        :func:`~cvlib.models.detection.select_per_class` keeps what ``self.settings`` says.
        Returns ``{"boxes" [D, 4], "labels" [D],
        "scores" [D]}``."""
        boxes, confidence, class_logits = self.split_output(output)
        boxes = clip_boxes_to_image(grid_boxes(boxes, grid_image_size), image_size)  # [S, S, B, 4]
        scores = confidence.sigmoid()[..., None] * class_logits.softmax(-1)[:, :, None, :]  # [S, S, B, C]
        scores = scores.reshape(-1, self.num_classes)
        return detection.select_per_class(boxes.reshape(-1, 4), scores, self.settings)


# ---------------------------------------------------------------------------------------------
# 5. YOLO v2: a prior shape (anchor) for every predictor of a cell


def _check_anchors(anchors: torch.Tensor) -> torch.Tensor:
    tensor(anchors, "anchors", shape=("A", 2), dtype="float", finite=True)
    if not len(anchors) or (anchors <= 0).any():
        raise ValueError(f"anchors must be at least one (width, height) pair > 0, got {anchors.tolist()}")
    return anchors


def encode_anchor_targets(boxes: torch.Tensor, labels: torch.Tensor, anchors: torch.Tensor, grid_size: int,
                          image_size) -> dict:
    """The YOLO v2 target of one image: xyxy ``boxes`` ``[K, 4]`` (pixels) with ``labels``
    ``[K]`` (``1..C``), written into an ``S x S`` grid of ``A`` predictors whose prior shapes
    are ``anchors`` ``[A, 2]`` (width, height in pixels).

    An object goes to the cell that holds its centre and, in it, to the predictor whose prior
    overlaps the object's shape best (``shape_iou``: both on the same centre). Returns
    ``{"params" float [S, S, A, 4], "labels" int64 [S, S, A], "object" bool [S, S, A]}``;
    ``params`` are ``(x, y, t_w, t_h)``: the centre's offset inside the cell and
    ``t_w = log(w / p_w)``, ``t_h = log(h / p_h)``. Two objects lose each other only when they
    share a cell **and** a prior; then the later one in ``boxes`` wins."""
    height, width = _check_grid(grid_size, image_size)
    _check_objects(boxes, labels)
    _check_anchors(anchors)
    s, a = grid_size, len(anchors)
    params = boxes.new_zeros((s, s, a, 4))
    slot_labels = torch.zeros((s, s, a), dtype=torch.int64, device=boxes.device)
    cx, cy, w, h = box_convert(boxes, "xyxy", "cxcywh").unbind(-1)
    gx, gy = cx * s / width, cy * s / height  # centre in cell units
    cols, rows = gx.long().clamp(0, s - 1), gy.long().clamp(0, s - 1)
    sizes = torch.stack([w, h], -1)
    best = shape_iou(sizes.to(anchors.dtype), anchors).argmax(1) if len(boxes) else cols  # [K]
    prior = anchors.to(boxes.dtype)[best]
    encoded = torch.stack([gx - cols, gy - rows, (w / prior[:, 0]).log(), (h / prior[:, 1]).log()], dim=-1)
    for k in range(len(boxes)):  # in order, so that the later object of a shared slot wins
        params[rows[k], cols[k], best[k]] = encoded[k]
        slot_labels[rows[k], cols[k], best[k]] = labels[k]
    return {"params": params, "labels": slot_labels, "object": slot_labels > 0}


def anchor_grid_boxes(params: torch.Tensor, anchors: torch.Tensor, image_size) -> torch.Tensor:
    """Decode the ``A`` predictors of every cell, ``(x, y, t_w, t_h)`` ``[..., S, S, A, 4]`` with
    ``x, y`` in ``[0, 1]``, into xyxy pixel boxes of the same shape: centre ``((col + x) W / S,
    (row + y) H / S)``, size ``(p_w e^{t_w}, p_h e^{t_h})`` with the priors ``anchors``
    ``[A, 2]`` (``t`` clamped at ``log(1000 / 16)`` before ``exp``, as for R-CNN deltas). The
    inverse of :func:`encode_anchor_targets`."""
    tensor(params, "params", dtype="float", finite=True)
    _check_anchors(anchors)
    if (params.ndim < 4 or params.shape[-1] != 4 or params.shape[-3] != params.shape[-4]
            or params.shape[-2] != len(anchors)):
        raise ValueError(f"params must be [..., S, S, A = {len(anchors)}, 4], got {tuple(params.shape)}")
    s = params.shape[-3]
    height, width = _check_grid(s, image_size)
    rows, cols = _cells(s, params)
    x, y, tw, th = params.unbind(-1)
    prior_w, prior_h = anchors.to(params).unbind(-1)  # [A] each
    cxcywh = torch.stack([(cols + x) * width / s, (rows + y) * height / s,
                          prior_w * tw.clamp(max=BBOX_XFORM_CLIP).exp(),
                          prior_h * th.clamp(max=BBOX_XFORM_CLIP).exp()], -1)
    return box_convert(cxcywh.reshape(-1, 4), "cxcywh", "xyxy").reshape(params.shape)


class YOLOv2(YOLO):
    """YOLO with anchor priors: the network of :class:`YOLO` with ``A = len(anchors)``
    predictors per cell, each ``(x, y, t_w, t_h, confidence)`` and its own ``C`` class logits:
    ``[N, S, S, A (5 + C)]``.

    The loss keeps YOLO's four terms, on the predictors that :func:`encode_anchor_targets`
    makes responsible (by prior shape, not by the predicted box): ``lambda_coord`` times the
    squared error of ``(sigmoid x, sigmoid y, t_w, t_h)``, BCE of their confidence towards the
    IoU of their box with the object, ``lambda_noobj`` BCE of all other confidences towards 0,
    cross-entropy of their classes. (v2 also ignores the confidence of a predictor whose box
    overlaps an object by more than 0.6, and adds batch norm, a finer grid and multi-scale
    training; left out here.)

    Args:
        anchors: the priors ``[A, 2]``, (width, height) in pixels, e.g. from
            ``kmeans_anchors(training boxes, A)``; stored with the weights.
        The rest: as :class:`YOLO` (``focal`` is not offered).
    """

    def __init__(self, anchors: torch.Tensor, num_classes: int = 3, grid_size: int = 8,
                 backbone: nn.Module | None = None, width: int = 16, lambda_coord: float = 5.0,
                 lambda_noobj: float = 0.5, settings: DetectionSettings | None = None):
        _check_anchors(anchors)
        super().__init__(num_classes, grid_size, len(anchors), backbone, width, lambda_coord, lambda_noobj,
                         settings=settings)
        self.register_buffer("anchors", anchors.detach().clone().float())
        a, channels = len(anchors), self.backbone.out_channels
        self.head[-1] = nn.Conv2d(channels, a * (5 + num_classes), 1)  # YOLO's: 5B + C, one class set a cell
        with torch.no_grad():  # confidences start near 0.01, as in YOLO
            self.head[-1].bias.view(a, 5 + num_classes)[:, 4] = -4.6

    def split_output(self, output: torch.Tensor):
        """``[N, S, S, A (5 + C)]`` -> box parameters ``(x, y, t_w, t_h)`` ``[N, S, S, A, 4]``
        (sigmoid on ``x, y`` only), confidence logits ``[N, S, S, A]`` and class logits
        ``[N, S, S, A, C]``."""
        per_anchor = output.unflatten(-1, (self.boxes_per_cell, 5 + self.num_classes))
        boxes = torch.cat([per_anchor[..., :2].sigmoid(), per_anchor[..., 2:4]], -1)
        return boxes, per_anchor[..., 4], per_anchor[..., 5:]

    def loss(self, output: torch.Tensor, targets: list[dict], image_size) -> dict[str, torch.Tensor]:
        """YOLO's four loss terms, averaged over the images (see the class)."""
        boxes, confidence, class_logits = self.split_output(output)
        encoded = [encode_anchor_targets(t["boxes"], t["labels"], self.anchors, self.grid_size, image_size)
                   for t in targets]
        params, labels, objects = (torch.stack([e[key] for e in encoded]) for key in ENCODED_KEYS)
        predicted = anchor_grid_boxes(boxes.detach(), self.anchors, image_size)[objects]  # [K, 4]
        true = anchor_grid_boxes(params, self.anchors, image_size)[objects]
        target_confidence = torch.zeros_like(confidence)
        target_confidence[objects] = box_iou(predicted, true).diagonal()  # P(object) x IoU
        box = ((boxes[objects] - params[objects]) ** 2).sum()
        return self.loss_terms(box, confidence, target_confidence, objects, class_logits[objects],
                               labels[objects], len(targets))

    def postprocess(self, output: torch.Tensor, grid_image_size, image_size) -> dict[str, torch.Tensor]:
        """Detections of one image from its output ``[S, S, A (5 + C)]``: every predictor gives
        one box per class scored ``confidence x P(class | object)``, then
        :func:`~cvlib.models.detection.select_per_class` as in :meth:`YOLO.postprocess`."""
        boxes, confidence, class_logits = self.split_output(output)
        boxes = clip_boxes_to_image(anchor_grid_boxes(boxes, self.anchors, grid_image_size), image_size)
        scores = confidence.sigmoid()[..., None] * class_logits.softmax(-1)  # [S, S, A, C]
        scores = scores.reshape(-1, self.num_classes)
        return detection.select_per_class(boxes.reshape(-1, 4), scores, self.settings)
