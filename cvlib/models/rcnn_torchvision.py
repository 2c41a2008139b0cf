"""torchvision's ``FasterRCNN`` built like a cvlib :class:`~cvlib.models.rcnn.FasterRCNN`: the
reference a notebook and the tests compare cvlib's detector against, with the same weights.

``torchvision_twin(model)`` uses the same backbone class, anchors, RoI Align, heads and settings,
and renames cvlib's parameters to torchvision's (``_TORCHVISION_NAMES``), so that both models give
the same detections.
"""

from __future__ import annotations

from torch import nn

from cvlib._checks import integer, module
from cvlib.models.detection import Backbone
from cvlib.models.rcnn import FasterRCNN

__all__ = ["torchvision_twin"]

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
    if (not isinstance(module(model), FasterRCNN) or not isinstance(model.backbone, Backbone)
            or getattr(model.roi_heads.box_roi_pool, "method", None) != "align"):
        raise ValueError(
            "model must be a cvlib FasterRCNN on the course's Backbone with pooler='align' (torchvision "
            "has no RoI Pool head; a feature-pyramid model has no twin here)"
        )
    rpn, heads, pool, settings = model.rpn, model.roi_heads, model.roi_heads.box_roi_pool, model.settings
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
        box_roi_pool=MultiScaleRoIAlign(["0"], pool.output_size, pool.sampling_ratio),
        box_head=TwoMLPHead(backbone.out_channels * pool.output_size**2, hidden),
        box_predictor=FastRCNNPredictor(hidden, heads.num_classes + 1),
        box_score_thresh=settings.score_thresh,
        box_nms_thresh=settings.nms_thresh,
        box_detections_per_img=settings.detections_per_img,
        box_batch_size_per_image=heads.batch_size_per_image,
        box_positive_fraction=heads.positive_fraction,
    )
    if copy_weights:

        def rename(key: str) -> str:
            prefix = next((p for p in _TORCHVISION_NAMES if key.startswith(p)), None)
            return key if prefix is None else _TORCHVISION_NAMES[prefix] + key[len(prefix) :]

        twin.load_state_dict({rename(k): v for k, v in model.state_dict().items()})
    return twin
