"""Datasets: deterministic synthetic shapes scenes (``cvlib.data.shapes``)."""

from cvlib.data.shapes import (
    CLASSES,
    ShapesClassification,
    ShapesDataset,
    SingleObjectDataset,
    collate_classification,
    collate_detection,
    collate_segmentation,
    collate_single_object,
    to_coco,
)

__all__ = [
    "CLASSES",
    "ShapesClassification",
    "ShapesDataset",
    "SingleObjectDataset",
    "collate_classification",
    "collate_detection",
    "collate_segmentation",
    "collate_single_object",
    "to_coco",
]
