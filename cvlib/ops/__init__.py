"""The operations every detector and segmenter of the course is built from, written from the
lectures and checked against ``torchvision.ops`` (same signatures, same numbers).

- ``boxes``: box formats, areas, IoU, generalized IoU, R-CNN box deltas, clipping boxes into
  the image and removing degenerate ones
- ``nms``: non-maximum suppression, per class with ``batched_nms``
- ``anchors``: anchors over a feature map (or each level of a pyramid), their labels, balanced sampling
- ``roi``: RoI Pool and RoI Align; FPN's RoI-to-level rule and multi-scale RoI Align
- ``upsample``: nearest, bed of nails, max unpooling, bilinear, transposed convolution
- ``reference``: NMS (``nms_steps``: one iteration at a time), RoI Pool and RoI Align as the
  lecture's loops, one box at a time (read these first; the fast versions give the same numbers)
"""

from cvlib.ops import reference, upsample
from cvlib.ops.anchors import generate_anchors, label_anchors, sample_anchors
from cvlib.ops.boxes import (
    box_area,
    box_convert,
    box_iou,
    clip_boxes_to_image,
    decode_boxes,
    encode_boxes,
    generalized_box_iou,
    remove_small_boxes,
)
from cvlib.ops.nms import batched_nms, nms
from cvlib.ops.reference import nms_steps
from cvlib.ops.roi import roi_align, roi_pool

__all__ = [
    "reference",
    "upsample",
    "box_area",
    "box_convert",
    "box_iou",
    "generalized_box_iou",
    "encode_boxes",
    "decode_boxes",
    "clip_boxes_to_image",
    "remove_small_boxes",
    "nms",
    "nms_steps",
    "batched_nms",
    "generate_anchors",
    "label_anchors",
    "sample_anchors",
    "roi_pool",
    "roi_align",
]
