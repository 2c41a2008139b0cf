"""Datasets: deterministic synthetic shapes scenes (``cvlib.data.shapes``) and any COCO-format
folder with the same targets (``cvlib.data.coco``).

Every name of ``shapes.__all__`` (the scenes, how to batch them, the held-out sets, the COCO
export) is listed once, there, and re-exported here.
"""

from cvlib.data import shapes
from cvlib.data.coco import CocoDetection, export_coco
from cvlib.data.shapes import *  # noqa: F403 (exactly shapes.__all__)

__all__ = ["CocoDetection", "export_coco", *shapes.__all__]
