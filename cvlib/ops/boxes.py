"""Boxes: formats, areas, IoU, generalized IoU, the R-CNN box deltas, and the two clean-ups
every detector applies to its boxes (clip them into the image, drop the degenerate ones).

Boxes are float tensors ``[N, 4]``; the default format is ``xyxy`` = ``(x1, y1, x2, y2)`` in
pixels with ``x1 <= x2`` and ``y1 <= y2``. The functions give the same numbers as
``torchvision.ops`` (tests compare them).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cvlib._checks import all_finite, number, pair, tensor

__all__ = [
    "box_convert",
    "box_area",
    "box_iou",
    "generalized_box_iou",
    "encode_boxes",
    "decode_boxes",
    "BBOX_XFORM_CLIP",
    "clip_boxes_to_image",
    "remove_small_boxes",
]

FORMATS = ("xyxy", "xywh", "cxcywh")
BBOX_XFORM_CLIP = math.log(1000.0 / 16)  # largest tw, th before exp: a box grows at most 62.5x


NUMPY_DTYPES = {torch.float16, torch.float32, torch.float64, torch.uint8, torch.int8, torch.int16,
                torch.int32, torch.int64}  # the dtypes NumPy can view (not bfloat16)


def _numpy(values: torch.Tensor) -> np.ndarray | None:
    """A NumPy view of ``values`` (no copy) if it is on the CPU in a dtype NumPy knows, else None.

    Why: on a few boxes, a torch call costs several microseconds of dispatch and a NumPy call
    one, so the small-input paths of the ops (and the checks) run in NumPy; the arithmetic is
    the same IEEE arithmetic, so the numbers are equal.
    """
    if values.is_cpu and values.dtype in NUMPY_DTYPES and not values.is_neg():
        return (values.detach() if values.requires_grad else values).numpy()
    return None


def _check_boxes(boxes, name: str = "boxes", ordered: bool = True) -> None:
    """Raise a clear error unless ``boxes`` is a finite float tensor ``[N, 4]`` and (when
    ``ordered``) ``x1 <= x2`` and ``y1 <= y2``. Shared by every op of ``cvlib.ops``.

    Valid boxes are accepted by two NumPy tests (a few microseconds; the torch tests took a
    fifth of NMS on 100 boxes); anything else goes through the torch tests, which raise.
    """
    tensor(boxes, name, shape=("N", 4), dtype="float")
    values = _numpy(boxes)
    if values is not None and np.isfinite(values).all():
        if not ordered or (values[:, 2:] >= values[:, :2]).all():
            return
    all_finite(boxes, name)
    if ordered and (boxes[:, 2:] < boxes[:, :2]).any():  # x2 < x1 or y2 < y1
        raise ValueError(f"{name} must be xyxy with x1 <= x2 and y1 <= y2")


def clip_boxes_to_image(boxes: torch.Tensor, size) -> torch.Tensor:
    """Clamp xyxy ``boxes`` ``[..., 4]`` into an image of ``size`` ``(H, W)``: x into ``[0, W]``,
    y into ``[0, H]``. A box wholly outside the image becomes a line on its border (width or
    height 0), which :func:`remove_small_boxes` then drops."""
    tensor(boxes, "boxes", dtype="float", finite=True)
    if boxes.ndim == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [..., 4], got {tuple(boxes.shape)}")
    height, width = pair(size, "size")
    x = boxes[..., 0::2].clamp(0, width)
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], dim=-1)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """The indices ``[K]`` (int64, in order) of the xyxy ``boxes`` ``[N, 4]`` that are at least
    ``min_size`` wide **and** high: the rest are degenerate (a line or a point after clipping),
    and a detector drops them before NMS."""
    _check_boxes(boxes, ordered=False)
    number(min_size, "min_size", low=0)
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return torch.nonzero((widths >= min_size) & (heights >= min_size)).flatten()


def box_convert(boxes: torch.Tensor, in_fmt: str, out_fmt: str) -> torch.Tensor:
    """Convert ``boxes`` ``[N, 4]`` between ``xyxy``, ``xywh`` (top-left, size) and ``cxcywh``
    (centre, size)."""
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in FORMATS:
            raise ValueError(f"{name} must be one of {FORMATS}, got {fmt!r}")
    _check_boxes(boxes, ordered=False)
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    # now (a, b, c, d) is xyxy
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return torch.stack((a, b, c, d), dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas ``[N]`` of xyxy ``boxes`` ``[N, 4]``: ``(x2 - x1) * (y2 - y1)``."""
    _check_boxes(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _inter_union(boxes1: torch.Tensor, boxes2: torch.Tensor):
    """Intersection and union areas ``[N, M]`` of every pair of boxes (no input checks)."""
    # one contiguous row per coordinate: broadcasting reads them several times faster
    ax1, ay1, ax2, ay2 = boxes1.t().contiguous()[:, :, None]  # [N, 1] each
    bx1, by1, bx2, by2 = boxes2.t().contiguous()[:, None, :]  # [1, M] each
    # overlap along x times overlap along y; [N, M] temporaries updated in place
    inter = (torch.min(ax2, bx2) - torch.max(ax1, bx1)).clamp_(min=0)
    inter.mul_((torch.min(ay2, by2) - torch.max(ay1, by1)).clamp_(min=0))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter, union


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Intersection over union ``[N, M]`` of every box of ``boxes1`` ``[N, 4]`` with every box
    of ``boxes2`` ``[M, 4]`` (xyxy). Two zero-area boxes give NaN (0 / 0), as in torchvision."""
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    inter, union = _inter_union(boxes1, boxes2)
    return inter / union


def generalized_box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Generalized IoU ``[N, M]`` (Rezatofighi et al. 2019): ``IoU - (C - union) / C`` with ``C``
    the area of the smallest box enclosing both. In ``[-1, 1]``; used by DETR's loss."""
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / union
    top_left = torch.min(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.max(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    enclosing = wh[..., 0] * wh[..., 1]
    return iou - (enclosing - union) / enclosing


def _centre_size(boxes: torch.Tensor):
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return boxes[:, 0] + 0.5 * widths, boxes[:, 1] + 0.5 * heights, widths, heights


def _check_weights(weights) -> tuple[float, float, float, float]:
    if not isinstance(weights, (list, tuple)) or len(weights) != 4:
        raise ValueError(f"weights must be 4 positive numbers (wx, wy, ww, wh), got {weights!r}")
    return tuple(float(number(w, "weights", low=0, low_open=True)) for w in weights)


def encode_boxes(boxes: torch.Tensor, references: torch.Tensor, weights=(1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """R-CNN regression targets ``[N, 4]`` that move ``references`` (anchors or proposals,
    ``[N, 4]`` xyxy) onto ``boxes`` (ground truth, ``[N, 4]`` xyxy):

    ``tx = wx (x - xa) / wa``, ``ty = wy (y - ya) / ha``, ``tw = ww log(w / wa)``,
    ``th = wh log(h / ha)`` with ``(x, y, w, h)`` centre and size. Same numbers as
    torchvision's ``BoxCoder.encode_single``.
    """
    _check_boxes(boxes)
    _check_boxes(references, "references")
    if boxes.shape != references.shape:
        raise ValueError(
            f"boxes and references must have the same shape, got {tuple(boxes.shape)} "
            f"and {tuple(references.shape)}"
        )
    wx, wy, ww, wh = _check_weights(weights)
    xa, ya, wa, ha = _centre_size(references)
    x, y, w, h = _centre_size(boxes)
    return torch.stack(
        (wx * (x - xa) / wa, wy * (y - ya) / ha, ww * torch.log(w / wa), wh * torch.log(h / ha)),
        dim=1,
    )


def decode_boxes(
    deltas: torch.Tensor,
    references: torch.Tensor,
    weights=(1.0, 1.0, 1.0, 1.0),
    clip: float = BBOX_XFORM_CLIP,
) -> torch.Tensor:
    """Apply ``deltas`` ``[N, 4]`` (tx, ty, tw, th) to ``references`` ``[N, 4]`` xyxy: the
    inverse of :func:`encode_boxes`. ``tw`` and ``th`` are clamped to ``clip`` before ``exp`` so
    a bad prediction cannot overflow. Returns xyxy ``[N, 4]`` (torchvision's ``decode_single``).
    """
    _check_boxes(references, "references")
    tensor(deltas, "deltas", shape=(len(references), 4), dtype="float", finite=True)
    number(clip, "clip")
    wx, wy, ww, wh = _check_weights(weights)
    xa, ya, wa, ha = _centre_size(references.to(deltas.dtype))
    x = deltas[:, 0] / wx * wa + xa
    y = deltas[:, 1] / wy * ha + ya
    w = torch.exp((deltas[:, 2] / ww).clamp(max=clip)) * wa
    h = torch.exp((deltas[:, 3] / wh).clamp(max=clip)) * ha
    return torch.stack((x - 0.5 * w, y - 0.5 * h, x + 0.5 * w, y + 0.5 * h), dim=1)
