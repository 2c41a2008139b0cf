"""Datasets: deterministic synthetic shapes scenes (``cvlib.data.shapes``) and any COCO-format
folder with the same targets (``cvlib.data.coco``)."""

from cvlib.data.coco import CocoDetection, export_coco
from cvlib.data.shapes import (
    CLASSES,
    STUFF_CLASSES,
    ShapesClassification,
    ShapesDataset,
    SingleObjectDataset,
    collate_classification,
    collate_detection,
    collate_segmentation,
    collate_single_object,
    held_out_classification,
    held_out_detection,
    held_out_segmentation,
    to_coco,
)

__all__ = [
    "CLASSES",
    "CocoDetection",
    "STUFF_CLASSES",
    "ShapesClassification",
    "ShapesDataset",
    "SingleObjectDataset",
    "collate_classification",
    "collate_detection",
    "collate_segmentation",
    "collate_single_object",
    "export_coco",
    "held_out_classification",
    "held_out_detection",
    "held_out_segmentation",
    "to_coco",
]
