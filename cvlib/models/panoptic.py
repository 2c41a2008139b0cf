"""Panoptic segmentation from a semantic and an instance segmentation (lecture 08).

A panoptic segmentation gives every pixel a class and, for *things* (countable objects), an
instance id; *stuff* (sky, ground) gets a class only (Kirillov et al. 2019). Its baseline
builds it from two models' outputs with the heuristic merge of the paper (and detectron2's
``combine_semantic_and_instance_outputs``):

1. **Things first.** The instance model's detections with score >= ``score_threshold``, in
   order of descending score, each mask thresholded at ``mask_threshold``. A detection whose
   mask is already taken by higher-scoring ones for more than ``overlap_threshold`` of its
   pixels is dropped (a duplicate); otherwise it gets its pixels that are still free.
2. **Then stuff.** Each still free pixel takes the semantic model's class if that class is a
   stuff class; a stuff region (one class in the image) of fewer than ``stuff_area`` pixels is
   dropped.
3. **Void** for the rest: pixels the semantic model calls a thing that no kept instance
   covers, and dropped stuff.

The output is what :func:`cvlib.metrics.panoptic_quality` measures: ``{"classes", "instances"}``,
int64 ``[H, W]`` each (instance ``1..K`` on things, 0 on stuff and void).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from cvlib._checks import describe, integer, number, sequence, tensor

__all__ = ["panoptic_merge", "panoptic_from_semantic", "panoptic_target"]


def _check_classes(stuff, name: str = "stuff") -> list[int]:
    values = sequence(stuff, name)
    for v in values:
        integer(v, name)
    return values


def panoptic_merge(
    detections: dict,
    semantic: torch.Tensor,
    stuff: Sequence[int],
    score_threshold: float = 0.5,
    mask_threshold: float = 0.5,
    overlap_threshold: float = 0.5,
    stuff_area: int = 64,
    void: int = -1,
) -> dict:
    """One image's panoptic segmentation from an instance and a semantic segmentation.

    Args:
        detections: the instance model's output for the image (torchvision's contract):
            ``labels`` int ``[N]``, ``scores`` float ``[N]``, ``masks`` float ``[N, 1, H, W]``
            (probabilities pasted into the image).
        semantic: the semantic model's class per pixel, int ``[H, W]``.
        stuff: the stuff classes (a semantic class not in it is a thing or unused).
        score_threshold: detections below it are ignored.
        mask_threshold: a detection's pixels are those with probability > it.
        overlap_threshold: a detection is dropped when more than this fraction of its pixels
            is already taken.
        stuff_area: stuff regions smaller than this (pixels) become void.
        void: the class of pixels that get no segment.

    Returns:
        ``{"classes": int64 [H, W], "instances": int64 [H, W]}``: each kept detection ``k``
        (``1..K``, by descending score) has ``instances == k`` and its label as class.
    """
    semantic = tensor(semantic, "semantic", ndim=2, dtype="int")
    height, width = semantic.shape
    if not isinstance(detections, dict) or not {"labels", "scores", "masks"} <= detections.keys():
        raise TypeError(f"detections must be a dict with 'labels', 'scores' and 'masks', "
                        f"got {describe(detections)}")
    scores = tensor(detections["scores"], "detections['scores']", ndim=1, dtype="float", finite=True)
    n = len(scores)
    labels = tensor(detections["labels"], "detections['labels']", shape=(n,), dtype="int")
    masks = tensor(detections["masks"], "detections['masks']", shape=(n, 1, height, width), dtype="float")
    stuff = _check_classes(stuff)
    number(score_threshold, "score_threshold")
    number(mask_threshold, "mask_threshold")
    number(overlap_threshold, "overlap_threshold", low=0, high=1)
    integer(stuff_area, "stuff_area", low=0)
    integer(void, "void")

    classes = torch.full((height, width), void, dtype=torch.int64)
    instances = torch.zeros((height, width), dtype=torch.int64)
    taken = torch.zeros((height, width), dtype=torch.bool)
    for k in torch.argsort(scores.cpu(), descending=True, stable=True).tolist():  # 1. things
        mask = masks[k, 0].cpu() > mask_threshold
        area = int(mask.sum())
        if scores[k] < score_threshold or area == 0:
            continue
        if int((mask & taken).sum()) > overlap_threshold * area:
            continue  # mostly covered by higher-scoring instances: a duplicate
        free = mask & ~taken
        instances[free] = int(instances.max()) + 1
        classes[free] = int(labels[k])
        taken |= free
    semantic = semantic.cpu()
    for c in stuff:  # 2. stuff, on the pixels still free; 3. the rest stays void
        region = (semantic == c) & ~taken
        if int(region.sum()) >= max(stuff_area, 1):
            classes[region] = c
    return {"classes": classes, "instances": instances}


def panoptic_from_semantic(semantic: torch.Tensor, things: Sequence[int]) -> dict:
    """A panoptic segmentation from a semantic segmentation alone: each 4-connected region of a
    thing class is taken for one instance (so touching objects of one class merge into one).
    ``semantic`` int ``[H, W]`` -> ``{"classes": semantic, "instances": int64 [H, W]}``."""
    semantic = tensor(semantic, "semantic", ndim=2, dtype="int")
    things = _check_classes(things, "things")
    instances = np.zeros(tuple(semantic.shape), dtype=np.int64)
    for c in things:
        regions, _ = ndimage.label((semantic == c).cpu().numpy())  # 0 outside, 1..count inside
        instances = np.where(regions > 0, regions + instances.max(), instances)
    return {"classes": semantic.cpu().long(), "instances": torch.from_numpy(instances)}


def panoptic_target(target: dict) -> dict:
    """The true panoptic segmentation of a scene target with ``semantic`` (int ``[H, W]``) and
    ``masks`` (bool ``[N, H, W]``): ``{"classes": semantic, "instances": k + 1 on mask k, else 0}``."""
    if not isinstance(target, dict) or not {"semantic", "masks"} <= target.keys():
        raise TypeError(f"target must be a dict with 'semantic' and 'masks', got {describe(target)}")
    semantic = tensor(target["semantic"], "target['semantic']", ndim=2, dtype="int")
    masks = tensor(target["masks"], "target['masks']", shape=(None, *semantic.shape), dtype="bool")
    instances = torch.zeros(semantic.shape, dtype=torch.int64)
    for k, mask in enumerate(masks, start=1):
        instances[mask] = k
    return {"classes": semantic.long(), "instances": instances}
