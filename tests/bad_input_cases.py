"""Bad inputs for every public function and class of cvlib: one table that both the property
tests (tests/test_bad_inputs.py, hypothesis) and the probe (bench/bad_inputs.py, every bad value
of every argument) read.

Each entry is a :class:`Case`: a call, a factory of valid keyword arguments, and for each
argument the *kinds* of bad value it must refuse (see :data:`KINDS`): a ``TypeError`` or
``ValueError`` whose message names that argument. :data:`EXEMPT` lists the public callables
without a case and why.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import cvlib


@dataclass
class Case:
    call: Callable  # called with the keyword arguments
    valid: Callable[[], dict]  # fresh valid keyword arguments
    bad: dict  # argument -> tuple of kinds of bad value (keys of KINDS)
    public: dict | None = None  # argument -> the public name its error must give, when they differ

    def named(self, argument: str) -> str:
        """The public argument name an error about ``argument`` must give."""
        return (self.public or {}).get(argument, argument)


# ---------------------------------------------------------------------------------------------
# Kinds of bad value: each gives (label, bad value) pairs from the valid value


def _flat_set(value: torch.Tensor, number: float) -> torch.Tensor:
    bad = value.clone() if value.is_floating_point() else value.double()
    bad.reshape(-1)[0] = number
    return bad


def _tensor_kinds(value):
    return {
        "list": lambda v: [("list", v.tolist()), ("numpy", v.numpy()), ("string", "x")],
        "extra_dim": lambda v: [("extra dim", v[None])],
        "fewer_dims": lambda v: [("fewer dims", v.flatten()[0] if v.ndim == 1 else v[0])],
        "int": lambda v: [("int dtype", v.round().long())],
        "float": lambda v: [("fractional float", v.double() + 0.5)],
        "uint8": lambda v: [("uint8", (v * 255).to(torch.uint8))],
        "float64": lambda v: [("float64", v.double())],
        "nan": lambda v: [("NaN", _flat_set(v, math.nan))],
        "inf": lambda v: [("inf", _flat_set(v, math.inf))],
        "reversed": lambda v: [("x2 < x1", v[:, [2, 1, 0, 3]])],
        "negative": lambda v: [("negative", v - v.max() - 1)],
        "too_big": lambda v: [("out of range", v + 1000)],
        "above_one": lambda v: [("above 1", v + 1.5)],
        "empty": lambda v: [("empty", v[:0])],
    }


NUMBER_KINDS = {
    "positive": [
        ("zero", 0),
        ("negative", -1.0),
        ("NaN", math.nan),
        ("inf", math.inf),
        ("string", "1"),
        ("bool", True),
    ],
    "nonneg": [("negative", -1.0), ("NaN", math.nan), ("inf", math.inf), ("string", "1")],
    "unit": [("below 0", -0.5), ("above 1", 1.5), ("NaN", math.nan), ("string", "0.5")],
    "finite": [("NaN", math.nan), ("inf", math.inf), ("string", "1")],
    "posint": [("zero", 0), ("negative", -1), ("float", 1.5), ("string", "2"), ("bool", True)],
    "nonnegint": [("negative", -1), ("float", 1.5), ("string", "2")],
    "int": [("float", 1.5), ("string", "2"), ("bool", True)],
    "choice": [("unknown", "nope"), ("number", 3)],
    "module": [("string", "net"), ("None", None), ("number", 3)],
    "settings": [("string", "fast"), ("number", 3), ("dict", {"score_thresh": 0.5})],
    "sequence": [("string", "text"), ("number", 3), ("None", None)],
    "layer": [("unknown name", "nope"), ("foreign module", nn.Linear(1, 1))],
    "seed": [("negative", -1), ("string", "0"), ("float", 1.5)],
    "pair": [("zero", (0, 4)), ("one number", (4,)), ("string", "ab"), ("negative", -2), ("NaN", math.nan)],
    "name": [("path", "../../x"), ("number", 3), ("upper case", "Tiny")],
    "dict": [("string", "x"), ("list", [1]), ("None", None)],
}
TENSOR_KINDS = tuple(_tensor_kinds(None))
KINDS = (*TENSOR_KINDS, *NUMBER_KINDS)

FLOAT = ("list", "int", "nan", "inf")  # a finite floating point tensor
IMAGES = ("list", "extra_dim", "uint8", "float64", "nan")  # a float32 [B, 3, H, W] batch
BOXES = ("list", "extra_dim", "int", "nan", "inf", "reversed")
INTS = ("list", "float")


def bad_values(kind: str, value) -> list[tuple[str, object]]:
    """The representative bad values of ``kind`` for an argument whose valid value is ``value``."""
    if kind in NUMBER_KINDS:
        return NUMBER_KINDS[kind]
    if isinstance(value, list) and value and isinstance(value[0], torch.Tensor):  # spoil the first
        return [(label, [bad, *value[1:]]) for label, bad in bad_values(kind, value[0])]
    return _tensor_kinds(value)[kind](torch.as_tensor(value))


# ---------------------------------------------------------------------------------------------
# Valid inputs


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def boxes(n: int = 3, seed: int = 0) -> torch.Tensor:
    """``n`` xyxy float boxes inside a 32 x 32 image, each at least 2 pixels wide."""
    xy = torch.rand(n, 2, generator=_g(seed)) * 20
    return torch.cat([xy, xy + 2 + torch.rand(n, 2, generator=_g(seed + 1)) * 10], 1)


def images(b: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=_g(3))


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return __import__("cvlib.models.blocks", fromlist=["x"]).SmallCNN(3, width=2).eval()


def _target(n: int = 2, seed: int = 0) -> dict:
    return {"boxes": boxes(n, seed), "labels": torch.arange(1, n + 1) % 3 + 1}


def _detector(name: str, **kwargs):
    from cvlib.models import detr, mask_rcnn, rcnn, ssd, yolo

    torch.manual_seed(0)
    build = {
        "rcnn": lambda: rcnn.RCNN(width=2, hidden=8, crop_size=16, **kwargs),
        "fast": lambda: rcnn.build_fast_rcnn(width=2, hidden=8, **kwargs),
        "faster": lambda: rcnn.build_faster_rcnn(width=2, hidden=8, **kwargs),
        "mask": lambda: mask_rcnn.build_mask_rcnn(width=2, hidden=8, **kwargs),
        "yolo": lambda: yolo.YOLO(width=2, grid_size=4, **kwargs),
        "yolov2": lambda: yolo.YOLOv2(PRIORS, width=2, grid_size=4, **kwargs),
        "ssd": lambda: ssd.SSD(width=2, scales=(8.0, 16.0), **kwargs),
        "detr": lambda: detr.DETR(
            width=2,
            d_model=16,
            num_heads=2,
            num_encoder_layers=1,
            num_decoder_layers=1,
            dim_feedforward=16,
            **kwargs,
        ),
    }
    return build[name]().train()


PRIORS = torch.tensor([[6.0, 6.0], [12.0, 5.0]])  # YOLOv2's (width, height) priors in the cases


def _detector_inputs(name: str) -> dict:
    target = _target()
    if name == "mask":
        masks = torch.zeros(2, 32, 32, dtype=torch.bool)
        masks[:, 4:12, 4:12] = True
        target["masks"] = masks
    return {"model": _detector(name), "images": [torch.rand(3, 32, 32, generator=_g(4))], "targets": [target]}


def _forward(model, **kwargs):
    return model(**kwargs)


def _pr() -> dict:
    return {"recall": torch.tensor([0.25, 0.5, 0.5, 1.0]), "precision": torch.tensor([1.0, 1.0, 0.67, 0.75])}


def _attentions() -> list[torch.Tensor]:
    return [torch.rand(2, 2, 5, 5, generator=_g(i)).softmax(-1) for i in range(2)]


def _prediction() -> dict:
    return {"boxes": boxes(2), "scores": torch.tensor([0.9, 0.4]), "labels": torch.tensor([1, 2])}


# ---------------------------------------------------------------------------------------------
# The cases, module by module


def _cases() -> dict[str, Case]:
    from cvlib import explain, losses, metrics, ops, recipes, train, viz, weights, widgets
    from cvlib.data import shapes
    from cvlib.explain import hooks
    from cvlib.models import (
        blocks,
        detection,
        detr,
        fcn,
        keypoint_rcnn,
        mask_rcnn,
        rcnn,
        rcnn_torchvision,
        resnet,
        single,
        ssd,
        swin,
        unet,
        vit,
        yolo,
    )
    from cvlib.ops import upsample

    cases: dict[str, Case] = {}

    def add(key, call, valid, /, public=None, **bad):
        cases[key] = Case(call, valid, bad, public)

    # cvlib.ops --------------------------------------------------------------------------------
    add(
        "cvlib.ops.boxes.box_convert",
        ops.box_convert,
        lambda: {"boxes": boxes(), "in_fmt": "xyxy", "out_fmt": "cxcywh"},
        boxes=("list", "extra_dim", "int", "nan", "inf"),
        in_fmt=("choice",),
        out_fmt=("choice",),
    )
    add("cvlib.ops.boxes.box_area", ops.box_area, lambda: {"boxes": boxes()}, boxes=BOXES)
    for fn in ("box_iou", "generalized_box_iou"):
        add(
            f"cvlib.ops.boxes.{fn}",
            getattr(ops, fn),
            lambda: {"boxes1": boxes(3), "boxes2": boxes(2, 5)},
            boxes1=BOXES,
            boxes2=BOXES,
        )
    add(
        "cvlib.ops.boxes.encode_boxes",
        ops.encode_boxes,
        lambda: {"boxes": boxes(), "references": boxes(3, 7), "weights": (1.0, 1.0, 1.0, 1.0)},
        boxes=BOXES,
        references=BOXES,
        weights=("sequence", "positive"),
    )
    add(
        "cvlib.ops.boxes.decode_boxes",
        ops.decode_boxes,
        lambda: {"deltas": torch.rand(3, 4, generator=_g()), "references": boxes(), "clip": 4.0},
        deltas=("list", "extra_dim", "int", "nan", "inf"),
        references=BOXES,
        clip=("finite",),
    )
    add(
        "cvlib.ops.boxes.clip_boxes_to_image",
        ops.clip_boxes_to_image,
        lambda: {"boxes": boxes(), "size": (16, 16)},
        boxes=("list", "int", "nan"),
        size=("pair",),
    )
    add(
        "cvlib.ops.boxes.remove_small_boxes",
        ops.remove_small_boxes,
        lambda: {"boxes": boxes(), "min_size": 1e-2},
        boxes=("list", "extra_dim", "int", "nan", "inf"),
        min_size=("nonneg",),
    )
    add(
        "cvlib.ops.nms.nms",
        ops.nms,
        lambda: {"boxes": boxes(), "scores": torch.rand(3, generator=_g()), "iou_threshold": 0.5},
        boxes=BOXES,
        scores=("list", "extra_dim", "nan"),
        iou_threshold=("nonneg",),
    )
    add(
        "cvlib.ops.nms.batched_nms",
        ops.batched_nms,
        lambda: {
            "boxes": boxes(),
            "scores": torch.rand(3, generator=_g()),
            "idxs": torch.tensor([0, 1, 0]),
            "iou_threshold": 0.5,
        },
        boxes=BOXES,
        scores=("list", "extra_dim", "nan"),
        idxs=("list", "extra_dim", "float"),
        iou_threshold=("nonneg",),
    )
    add(
        "cvlib.ops.anchors.generate_anchors",
        ops.generate_anchors,
        lambda: {"feature_size": (2, 3), "stride": 8, "scales": (16.0,), "aspect_ratios": (1.0,)},
        feature_size=("pair",),
        stride=("pair",),
        scales=("sequence",),
        aspect_ratios=("sequence",),
    )
    add(
        "cvlib.ops.anchors.label_anchors",
        ops.label_anchors,
        lambda: {"anchors": boxes(4), "gt_boxes": boxes(2, 5), "fg_iou": 0.7, "bg_iou": 0.3},
        anchors=BOXES,
        gt_boxes=BOXES,
        fg_iou=("unit",),
        bg_iou=("unit",),
    )
    add(
        "cvlib.ops.anchors.sample_anchors",
        ops.sample_anchors,
        lambda: {"labels": torch.tensor([1, 0, -1, 0]), "batch_size": 2, "positive_fraction": 0.5},
        labels=("list", "extra_dim", "float"),
        batch_size=("posint",),
        positive_fraction=("unit",),
    )
    feature = lambda: torch.rand(1, 2, 8, 8, generator=_g())  # noqa: E731
    rois = lambda: torch.cat([torch.zeros(3, 1), boxes() / 4], 1)  # noqa: E731
    add(
        "cvlib.ops.roi.roi_pool",
        ops.roi_pool,
        lambda: {"input": feature(), "boxes": rois(), "output_size": 2, "spatial_scale": 1.0},
        input=("list", "extra_dim", "int"),
        boxes=("list", "extra_dim", "int", "nan", "inf", "too_big"),
        output_size=("posint",),
        spatial_scale=("positive",),
    )
    add(
        "cvlib.ops.roi.roi_align",
        ops.roi_align,
        lambda: {
            "input": feature(),
            "boxes": rois(),
            "output_size": 2,
            "spatial_scale": 1.0,
            "sampling_ratio": 2,
        },
        input=("list", "extra_dim", "int"),
        boxes=("list", "extra_dim", "int", "nan", "inf", "too_big"),
        output_size=("posint",),
        spatial_scale=("positive",),
        sampling_ratio=("int",),
    )
    add(
        "cvlib.ops.roi.rois_from_boxes",
        ops.roi.rois_from_boxes,
        lambda: {"boxes": rois(), "num_images": 1},
        boxes=("extra_dim", "int", "nan", "inf", "too_big"),
        num_images=("posint",),
    )
    x4 = lambda: torch.rand(1, 2, 3, 3, generator=_g())  # noqa: E731
    for fn in ("nearest", "bed_of_nails"):
        add(
            f"cvlib.ops.upsample.{fn}",
            getattr(upsample, fn),
            lambda: {"x": x4(), "scale": 2},
            x=("list", "extra_dim"),
            scale=("posint",),
        )
    add(
        "cvlib.ops.upsample.max_unpool",
        upsample.max_unpool,
        lambda: dict(
            zip(
                ("x", "indices"),
                torch.nn.functional.max_pool2d(
                    torch.rand(1, 2, 4, 4, generator=_g()), 2, return_indices=True
                ),
            ),
            output_size=(4, 4),
        ),
        x=("list", "extra_dim"),
        indices=("list", "float", "too_big", "negative"),
        output_size=("pair",),
    )
    add(
        "cvlib.ops.upsample.bilinear",
        upsample.bilinear,
        lambda: {"x": x4(), "scale": 2.0},
        x=("list", "extra_dim", "uint8", "int"),
        scale=("positive",),
    )
    add(
        "cvlib.ops.upsample.bilinear_kernel",
        upsample.bilinear_kernel,
        lambda: {"kernel_size": 4},
        kernel_size=("posint",),
    )
    add(
        "cvlib.ops.upsample.transposed_output_size",
        upsample.transposed_output_size,
        lambda: {
            "in_size": 4,
            "kernel_size": 3,
            "stride": 2,
            "padding": 1,
            "output_padding": 1,
            "dilation": 1,
        },
        in_size=("posint",),
        kernel_size=("posint",),
        stride=("posint",),
        padding=("nonnegint",),
        output_padding=("nonnegint",),
        dilation=("posint",),
    )
    weight = lambda: torch.rand(2, 3, 3, 3, generator=_g())  # noqa: E731
    for fn in ("conv_transpose2d_scatter", "conv_transpose2d_matrix"):
        add(
            f"cvlib.ops.upsample.{fn}",
            getattr(upsample, fn),
            lambda: {"x": x4(), "weight": weight(), "bias": torch.zeros(3), "stride": 2},
            x=("list", "extra_dim", "int"),
            weight=("list", "extra_dim", "int", "float64"),
            bias=("list", "extra_dim"),
            stride=("posint",),
        )
    add(
        "cvlib.ops.upsample.conv_transpose1d_scatter",
        upsample.conv_transpose1d_scatter,
        lambda: {
            "x": torch.rand(1, 2, 3, generator=_g()),
            "weight": torch.rand(2, 1, 3, generator=_g()),
            "stride": 2,
        },
        x=("list", "extra_dim", "int"),
        weight=("list", "extra_dim", "int"),
        stride=("posint",),
    )
    add(
        "cvlib.ops.upsample.conv_matrix",
        upsample.conv_matrix,
        lambda: {"weight": torch.rand(3, 3, generator=_g()), "input_size": (4, 4), "stride": 1},
        weight=("list", "extra_dim", "int"),
        input_size=("pair",),
        stride=("posint",),
    )
    add(
        "cvlib.ops.upsample.overlap_count",
        upsample.overlap_count,
        lambda: {"in_size": 4, "kernel_size": 3, "stride": 2},
        in_size=("posint",),
        kernel_size=("posint",),
        stride=("posint",),
    )
    add(
        "cvlib.ops.upsample.checkerboard_score",
        upsample.checkerboard_score,
        lambda: {"kernel_size": 3, "stride": 2, "in_size": 12},
        kernel_size=("posint",),
        stride=("posint",),
        in_size=("posint",),
    )

    # cvlib.metrics ----------------------------------------------------------------------------
    add(
        "cvlib.metrics.accuracy",
        metrics.accuracy,
        lambda: {"logits": torch.rand(4, 3, generator=_g()), "labels": torch.tensor([0, 1, 2, 0])},
        logits=("list", "extra_dim", "int", "nan", "inf"),
        labels=("list", "float", "too_big", "negative"),
    )
    label_map = lambda: torch.randint(0, 3, (2, 6, 6), generator=_g())  # noqa: E731
    add(
        "cvlib.metrics.confusion_matrix",
        metrics.confusion_matrix,
        lambda: {"pred": label_map(), "target": label_map(), "num_classes": 3},
        pred=("list", "float", "too_big", "negative"),
        target=("list", "float", "too_big"),
        num_classes=("posint",),
        ignore_index=("int",),
    )
    cm = lambda: torch.tensor([[5, 1], [2, 7]])  # noqa: E731
    for fn in ("per_class_iou", "mean_iou", "pixel_accuracy"):
        add(
            f"cvlib.metrics.{fn}",
            getattr(metrics, fn),
            lambda: {"confusion": cm()},
            confusion=("list", "extra_dim", "negative", "nan"),
        )
    add(
        "cvlib.metrics.boundary_mask",
        metrics.boundary_mask,
        lambda: {"labels": label_map()},
        labels=("list", "float", ("one dimension", torch.zeros(5, dtype=torch.long))),
    )
    add(
        "cvlib.metrics.boundary_f_score",
        metrics.boundary_f_score,
        lambda: {"pred": label_map(), "target": label_map(), "tolerance": 1},
        pred=("list", "float", "extra_dim"),
        target=("list", "float"),
        tolerance=("nonnegint",),
    )
    add(
        "cvlib.metrics.match_detections",
        metrics.match_detections,
        lambda: {"iou": torch.rand(3, 2, generator=_g()), "iou_thresholds": metrics.IOU_THRESHOLDS.clone()},
        iou=("list", "extra_dim", "int", "nan", "above_one", "negative"),
        iou_thresholds=("list", "extra_dim", "nan", "above_one"),
    )
    add(
        "cvlib.metrics.precision_recall",
        metrics.precision_recall,
        lambda: {
            "scores": torch.tensor([0.9, 0.8, 0.7]),
            "matched": torch.tensor([True, False, True]),
            "num_gt": 2,
        },
        scores=("list", "extra_dim", "nan"),
        matched=("list", "float"),
        num_gt=("posint",),
    )
    add(
        "cvlib.metrics.precision_envelope",
        metrics.precision_envelope,
        lambda: {"precision": _pr()["precision"]},
        precision=("list", "int", "nan", "above_one"),
    )
    add(
        "cvlib.metrics.interpolated_precision",
        metrics.interpolated_precision,
        lambda: {**_pr(), "recall_thresholds": metrics.RECALL_THRESHOLDS.clone()},
        recall=("list", "nan", "above_one"),
        precision=("list", "nan", "above_one"),
        recall_thresholds=("list", "extra_dim", "nan", "above_one"),
    )
    for fn in ("average_precision_voc11", "average_precision_all_points", "average_precision_coco"):
        add(
            f"cvlib.metrics.{fn}",
            getattr(metrics, fn),
            _pr,
            recall=("list", "int", "nan", "above_one", "extra_dim"),
            precision=("list", "nan", "above_one", "extra_dim"),
        )
    add(
        "cvlib.metrics.evaluate_detections",
        metrics.evaluate_detections,
        lambda: {
            "predictions": [_prediction()],
            "targets": [_target()],
            "iou_type": "bbox",
            "max_detections": 10,
        },
        predictions=("sequence",),
        targets=("sequence",),
        iou_type=("choice",),
        max_detections=("posint",),
    )
    def keypoint_scene() -> tuple[dict, dict]:
        points = torch.cat([torch.rand(2, 3, 2, generator=_g()) * 20, torch.full((2, 3, 1), 2.0)], 2)
        return {**_prediction(), "keypoints": points}, {**_target(2), "keypoints": points}

    add(
        "cvlib.metrics.evaluate_detections[keypoints]",
        lambda area_ranges, sigmas: metrics.evaluate_detections(
            [keypoint_scene()[0]], [keypoint_scene()[1]], "keypoints", 20, area_ranges, sigmas
        ),
        lambda: {"area_ranges": {"small": (0.0, 100.0)}, "sigmas": torch.tensor([0.025, 0.079, 0.107])},
        area_ranges=(("string", "x"), ("list", [1]), ("high < low", {"small": (100.0, 1.0)}),
                     ("NaN", {"small": (0.0, math.nan)})),  # None is the default ranges
        sigmas=("list", "extra_dim", "int", "nan", "negative", ("one too many", torch.full((4,), 0.1))),
    )
    add(
        "cvlib.metrics.evaluate_detections[entries]",
        lambda box, score, label: metrics.evaluate_detections(
            [{"boxes": box, "scores": score, "labels": label}], [_target()]
        ),
        lambda: {"box": boxes(2), "score": torch.tensor([0.9, 0.4]), "label": torch.tensor([1, 2])},
        public={"box": "predictions", "score": "predictions", "label": "predictions"},
        box=("nan", "inf", "reversed", "extra_dim"),
        score=("nan", "inf", "extra_dim"),
        label=("float", "extra_dim"),
    )

    # cvlib.losses -----------------------------------------------------------------------------
    pair = lambda: {"input": torch.rand(2, 4, generator=_g()), "target": torch.rand(2, 4, generator=_g(1))}  # noqa: E731
    add(
        "cvlib.losses.smooth_l1",
        losses.smooth_l1,
        lambda: {**pair(), "beta": 1.0},
        input=("list", "int", "nan", "extra_dim"),
        target=("list", "int", "inf"),
        beta=("positive",),
    )
    add(
        "cvlib.losses.single_object_loss",
        losses.single_object_loss,
        lambda: {
            "outputs": {"logits": torch.rand(2, 3, generator=_g()), "box_params": torch.rand(2, 4)},
            "targets": {"labels": torch.tensor([0, 2]), "box_params": torch.rand(2, 4)},
            "box_weight": 1.0,
            "box_loss": "l2",
        },
        outputs=("dict",),
        targets=("dict",),
        box_weight=("nonneg",),
        box_loss=("choice",),
    )
    add(
        "cvlib.losses.single_object_loss[entries]",
        lambda logits, labels, params: losses.single_object_loss(
            {"logits": logits, "box_params": params}, {"labels": labels, "box_params": torch.rand(2, 4)}
        ),
        lambda: {
            "logits": torch.rand(2, 3, generator=_g()),
            "labels": torch.tensor([0, 2]),
            "params": torch.rand(2, 4),
        },
        public={"logits": "outputs", "labels": "targets", "params": "outputs"},
        logits=("nan", "extra_dim", "int"),
        labels=("float", "too_big", "negative"),
        params=("nan", "extra_dim"),
    )
    add(
        "cvlib.losses.sigmoid_focal_loss",
        losses.sigmoid_focal_loss,
        lambda: {
            "inputs": torch.randn(2, 4, generator=_g()),
            "targets": torch.ones(2, 4),
            "alpha": 0.25,
            "gamma": 2.0,
            "reduction": "mean",
        },
        inputs=("list", "int", "nan"),
        targets=("list", "nan", "above_one", "extra_dim"),
        alpha=("finite",),
        gamma=("nonneg",),
        reduction=("choice",),
    )

    # cvlib.models -----------------------------------------------------------------------------
    for path, cls, kwargs in (
        ("blocks.SmallCNN", blocks.SmallCNN, {"num_classes": 3, "width": 2}),
        ("fcn.PatchClassifier", fcn.PatchClassifier, {"num_classes": 3, "width": 2, "layers": 2}),
        ("fcn.FCN", fcn.FCN, {"num_classes": 3, "width": 2}),
        ("fcn.DilatedFCN", fcn.DilatedFCN, {"num_classes": 3, "width": 2}),
        ("unet.UNet", unet.UNet, {"num_classes": 3, "width": 2, "depth": 2}),
        ("resnet.ResNet", resnet.ResNet, {"num_classes": 3, "width": 2, "blocks": 1}),
    ):
        add(
            f"cvlib.models.{path}",
            cls,
            lambda kwargs=kwargs: dict(kwargs),
            **{k: ("posint",) for k in kwargs},
        )
        add(
            f"cvlib.models.{path}.forward",
            _forward,
            lambda cls=cls, kwargs=kwargs: {"model": cls(**kwargs).eval(), "images": images(1, 16)},
            images=IMAGES,
        )
    add(
        "cvlib.models.single.SingleObjectDetector",
        single.SingleObjectDetector,
        lambda: {"num_classes": 3, "image_size": 16, "width": 2, "hidden": 4},
        num_classes=("posint",),
        image_size=("posint",),
        width=("posint",),
        hidden=("posint",),
    )
    add(
        "cvlib.models.single.SingleObjectDetector.forward",
        _forward,
        lambda: {"model": single.SingleObjectDetector(3, 16, 2, 4).eval(), "images": images(1, 16)},
        images=IMAGES,
    )
    add(
        "cvlib.models.single.box_params",
        single.box_params,
        lambda: {"boxes": boxes(), "image_size": 32},
        boxes=BOXES,
        image_size=("posint",),
    )
    add(
        "cvlib.models.single.evaluate",
        single.evaluate,
        lambda: {
            "model": single.SingleObjectDetector(3, 16, 2, 4),
            "images": images(2, 16),
            "targets": {"labels": torch.tensor([0, 1]), "boxes": boxes(2)},
            "batch_size": 2,
        },
        model=("module",),
        images=IMAGES,
        targets=("dict",),
        batch_size=("posint",),
    )
    add(
        "cvlib.models.resnet.drop_path",
        resnet.drop_path,
        lambda: {"x": torch.rand(2, 3), "p": 0.5},
        x=("list",),
        p=("unit",),
    )
    add(
        "cvlib.models.vit.ViT",
        vit.ViT,
        lambda: {"image_size": 16, "patch_size": 8, "num_classes": 3, "dim": 8, "depth": 1, "heads": 2},
        image_size=("pair",),
        patch_size=("posint",),
        num_classes=("posint",),
        dim=("posint",),
        depth=("posint",),
        heads=("posint",),
    )
    add(
        "cvlib.models.vit.ViT.forward",
        _forward,
        lambda: {"model": vit.ViT(16, 8, 3, 8, 1, 2).eval(), "images": images(1, 16)},
        images=IMAGES,
    )
    add(
        "cvlib.models.vit.PatchEmbedding",
        vit.PatchEmbedding,
        lambda: {"patch_size": 4, "dim": 8, "channels": 3, "method": "conv"},
        patch_size=("posint",),
        dim=("posint",),
        channels=("posint",),
        method=("choice",),
    )
    add(
        "cvlib.models.vit.causal_mask",
        vit.causal_mask,
        lambda: {"queries": 3, "keys": 4},
        queries=("posint",),
        keys=("posint",),
    )
    qkv = lambda: {n: torch.rand(1, 3, 4, generator=_g(i)) for i, n in enumerate("qkv")}  # noqa: E731
    add(
        "cvlib.models.vit.scaled_dot_product_attention",
        vit.scaled_dot_product_attention,
        lambda: {**qkv(), "mask": torch.ones(3, 3, dtype=torch.bool)},
        q=("list", "int", "nan", ("one dimension", torch.rand(4))),
        k=("list", "int", "nan"),
        v=("list", "int", "nan"),
        mask=("list", "float"),
    )
    add(
        "cvlib.models.vit.self_attention",
        vit.self_attention,
        lambda: {
            "x": torch.rand(1, 3, 4),
            **{f"w_{n}": torch.rand(4, 4, generator=_g(i)) for i, n in enumerate("qkv")},
        },
        x=("list", "int", "nan"),
        w_q=("list", "int", "extra_dim"),
        w_k=("list", "int"),
        w_v=("list", "int"),
    )
    add(
        "cvlib.models.vit.vit_cost",
        vit.vit_cost,
        lambda: {"image_size": 32, "patch_size": 8, "dim": 16, "depth": 2, "heads": 2},
        image_size=("posint",),
        patch_size=("posint",),
        dim=("posint",),
        depth=("posint",),
        heads=("posint",),
    )
    add(
        "cvlib.models.vit.CrossAttention",
        vit.CrossAttention,
        lambda: {"query_dim": 8, "input_dim": 6, "heads": 2},
        query_dim=("posint",),
        input_dim=("posint",),
        heads=("posint",),
    )
    add(
        "cvlib.models.vit.CrossAttention.forward",
        _forward,
        lambda: {"model": vit.CrossAttention(8, 6, 2), "queries": torch.rand(1, 3, 8),
                 "inputs": torch.rand(1, 5, 6)},
        queries=(*FLOAT, "extra_dim"),
        inputs=(*FLOAT, "extra_dim"),
    )
    add(
        "cvlib.models.swin.window_partition",
        swin.window_partition,
        lambda: {"x": torch.rand(1, 4, 4, 3), "window": 2},
        x=("list", "extra_dim"),
        window=("posint",),
    )
    add(
        "cvlib.models.swin.window_merge",
        swin.window_merge,
        lambda: {"windows": torch.rand(4, 4, 3), "window": 2, "height": 4, "width": 4},
        windows=("list", "extra_dim"),
        window=("posint",),
        height=("posint",),
        width=("posint",),
    )
    add(
        "cvlib.models.swin.shifted_window_mask",
        swin.shifted_window_mask,
        lambda: {"height": 8, "width": 8, "window": 4, "shift": 2},
        height=("posint",),
        width=("posint",),
        window=("posint",),
        shift=("nonnegint", ("not below the window", 4)),
    )
    add(
        "cvlib.models.swin.WindowAttention",
        swin.WindowAttention,
        lambda: {"dim": 8, "heads": 2, "window": 2, "shift": 1},
        window=("posint",),
        shift=("nonnegint", ("not below the window", 2)),
    )
    add(
        "cvlib.models.swin.WindowAttention.forward",
        _forward,
        lambda: {"model": swin.WindowAttention(8, 2, 2, 1), "x": torch.rand(1, 4, 4, 8)},
        x=(*FLOAT, "extra_dim", ("grid not a multiple of the window", torch.rand(1, 3, 4, 8))),
    )
    add(
        "cvlib.models.swin.attention_macs",
        swin.attention_macs,
        lambda: {"tokens": 64, "dim": 16, "window": 4},
        tokens=("posint",),
        dim=("posint",),
        window=("posint", ("larger than the grid", 9)),
    )
    add(
        "cvlib.models.detr.DETR.encoder_attention",
        lambda model, images: model.encoder_attention(images),
        lambda: {"model": _detector("detr").eval(), "images": [torch.rand(3, 32, 32, generator=_g(4))]},
        images=("sequence", "extra_dim", "nan"),
    )
    detectors = {
        "rcnn": "rcnn.RCNN",
        "fast": "rcnn.FastRCNN",
        "faster": "rcnn.FasterRCNN",
        "mask": "mask_rcnn.MaskRCNN",
        "yolo": "yolo.YOLO",
        "yolov2": "yolo.YOLOv2",
        "ssd": "ssd.SSD",
        "detr": "detr.DETR",
    }
    for name, path in detectors.items():
        add(
            f"cvlib.models.{path}.forward",
            _forward,
            lambda name=name: _detector_inputs(name),
            images=("sequence", "extra_dim"),
            targets=("sequence",),
        )
        add(
            f"cvlib.models.{path}.forward[image]",
            lambda model, image, target: model([image], [target]),
            lambda name=name: dict(
                zip(
                    ("model", "image", "target"),
                    (lambda d: (d["model"], d["images"][0], d["targets"][0]))(_detector_inputs(name)),
                )
            ),
            public={"image": "images", "target": "targets"},
            image=("list", "uint8", "float64", "nan", "inf", "extra_dim"),
            target=("dict",),
        )
        add(
            f"cvlib.models.{path}.forward[target]",
            lambda model, box, label, rest: model(
                rest["images"], [{**rest["targets"][0], "boxes": box, "labels": label}]
            ),
            lambda name=name: (
                lambda d: {
                    "model": d["model"],
                    "box": d["targets"][0]["boxes"],
                    "label": d["targets"][0]["labels"],
                    "rest": d,
                }
            )(_detector_inputs(name)),
            public={"box": "targets", "label": "targets"},
            box=("list", "int", "nan", "inf", "reversed", "extra_dim"),
            label=("float", "too_big", "negative"),
        )
    for path, cls in (
        ("rcnn.RCNN", rcnn.RCNN),
        ("rcnn.build_fast_rcnn", rcnn.build_fast_rcnn),
        ("rcnn.build_faster_rcnn", rcnn.build_faster_rcnn),
        ("mask_rcnn.build_mask_rcnn", mask_rcnn.build_mask_rcnn),
        ("yolo.YOLO", yolo.YOLO),
        ("ssd.SSD", ssd.SSD),
        ("detr.DETR", detr.DETR),
    ):
        add(
            f"cvlib.models.{path}",
            cls,
            lambda: {"num_classes": 3, "width": 2},
            num_classes=("posint",),
            width=("posint",),
        )
    def _faster_parts():
        torch.manual_seed(0)
        model = rcnn.build_faster_rcnn(width=2, hidden=8)
        return {"backbone": model.backbone, "rpn": model.rpn, "roi_heads": model.roi_heads}

    add("cvlib.models.rcnn.FasterRCNN", rcnn.FasterRCNN, _faster_parts,
        backbone=("module",), rpn=("module",), roi_heads=("module", ("a plain module", nn.Linear(1, 1))))
    add(
        "cvlib.models.rcnn.FastRCNN",
        rcnn.FastRCNN,
        lambda: {k: v for k, v in _faster_parts().items() if k != "rpn"},
        backbone=("module",),
        roi_heads=("module", ("a plain module", nn.Linear(1, 1))),
    )

    def _mask_parts():
        torch.manual_seed(0)
        model = mask_rcnn.build_mask_rcnn(width=2, hidden=8)
        return {"backbone": model.backbone, "rpn": model.rpn, "roi_heads": model.roi_heads}

    add("cvlib.models.mask_rcnn.MaskRCNN", mask_rcnn.MaskRCNN, _mask_parts,
        backbone=("module",), rpn=("module",),
        roi_heads=("module", ("box heads only", _faster_parts()["roi_heads"])))
    add(
        "cvlib.models.rcnn.RoIPooler",
        rcnn.RoIPooler,
        lambda: {"method": "align", "output_size": 7, "spatial_scale": 0.125, "sampling_ratio": 2},
        method=("choice",),
        output_size=("posint",),
        spatial_scale=("positive",),
        sampling_ratio=("posint",),
    )
    add(
        "cvlib.models.detection.DetectionSettings",
        detection.DetectionSettings,
        lambda: {"score_thresh": 0.05, "nms_thresh": 0.5, "detections_per_img": 100},
        score_thresh=("unit",),
        nms_thresh=("unit",),
        detections_per_img=("posint",),
    )
    add(
        "cvlib.models.rcnn.window_proposals",
        rcnn.window_proposals,
        lambda: {"image_size": (32, 32), "stride": 8},
        image_size=("pair",),
        stride=("positive",),
    )
    add(
        "cvlib.models.detection.check_detection_inputs",
        detection.check_detection_inputs,
        lambda: {"images": [torch.rand(3, 8, 8)], "targets": [_target()], "num_classes": 3, "training": True},
        images=("sequence",),
        targets=("sequence",),
        num_classes=("posint",),
    )
    add(
        "cvlib.models.detection.batch_images",
        detection.batch_images,
        lambda: {"images": [torch.rand(3, 8, 8)]},
        images=("sequence",),
    )
    add(
        "cvlib.models.detection.select_detections",
        detection.select_detections,
        lambda: {
            "boxes": boxes(),
            "scores": torch.rand(3, generator=_g()),
            "labels": torch.tensor([1, 2, 1]),
            "settings": detection.DetectionSettings(0.05, 0.5, 10),
            "min_size": 1e-2,
        },
        boxes=("list", "extra_dim", "int", "nan", "inf"),
        scores=("list", "extra_dim", "int"),
        labels=("list", "float", "extra_dim"),
        settings=("settings",),
        min_size=("nonneg",),
    )
    add(
        "cvlib.models.detection.select_per_class",
        detection.select_per_class,
        lambda: {"boxes": boxes(), "scores": torch.rand(3, 2, generator=_g()),
                 "settings": detection.DetectionSettings(0.05, 0.5, 10)},
        boxes=("list", "int", "extra_dim"),
        scores=("list", "extra_dim", "int"),
        settings=("settings",),
    )
    add(
        "cvlib.models.rcnn.match_proposals",
        rcnn.match_proposals,
        lambda: {"proposals": boxes(4), "target": _target(), "fg_iou": 0.5},
        proposals=BOXES,
        target=("dict",),
        fg_iou=("unit",),
    )
    add(
        "cvlib.models.rcnn.sample_proposals",
        rcnn.sample_proposals,
        lambda: {"proposals": boxes(4), "target": _target(), "batch_size": 4, "positive_fraction": 0.5},
        proposals=BOXES,
        target=("dict",),
        batch_size=("posint",),
        positive_fraction=("unit",),
    )
    add(
        "cvlib.models.rcnn.box_losses",
        rcnn.box_losses,
        lambda: {
            "class_logits": torch.rand(3, 4),
            "box_deltas": torch.rand(3, 16),
            "labels": torch.tensor([1, 2, 3]),  # objects only: a background RoI's target is never read
            "regression_targets": torch.rand(3, 4),
        },
        class_logits=("list", "nan", "int"),
        box_deltas=("list", "nan", "extra_dim"),
        labels=("list", "float", "too_big"),
        regression_targets=("list", "nan"),
    )
    add(
        "cvlib.models.rcnn.postprocess_detections",
        rcnn.postprocess_detections,
        lambda: {
            "class_logits": torch.rand(3, 4),
            "box_deltas": torch.rand(3, 16),
            "rois": boxes(),
            "image_size": (32, 32),
            "settings": detection.DetectionSettings(0.05, 0.5, 10),
        },
        class_logits=("list", "nan", "int"),
        box_deltas=("list", "nan", "extra_dim"),
        rois=BOXES,
        image_size=("pair",),
        settings=("settings",),
    )
    add(
        "cvlib.models.rcnn_torchvision.torchvision_twin",
        rcnn_torchvision.torchvision_twin,
        lambda: {"model": rcnn.build_faster_rcnn(width=2, hidden=8), "image_size": 32},
        model=("module",),
        image_size=("posint",),
    )
    add(
        "cvlib.models.yolo.encode_targets",
        yolo.encode_targets,
        lambda: {"boxes": boxes(), "labels": torch.tensor([1, 2, 3]), "grid_size": 4, "image_size": (32, 32)},
        boxes=BOXES,
        labels=("list", "float", "negative"),
        grid_size=("posint",),
        image_size=("pair",),
    )
    add(
        "cvlib.models.yolo.YOLOv2",
        yolo.YOLOv2,
        lambda: {"anchors": PRIORS, "num_classes": 3, "width": 2},
        anchors=("list", "int", "nan", "negative", "fewer_dims", "empty"),
        num_classes=("posint",),
        width=("posint",),
    )
    add(
        "cvlib.models.yolo.encode_anchor_targets",
        yolo.encode_anchor_targets,
        lambda: {"boxes": boxes(), "labels": torch.tensor([1, 2, 3]), "anchors": PRIORS, "grid_size": 4,
                 "image_size": (32, 32)},
        boxes=BOXES,
        labels=("list", "float", "negative"),
        anchors=("list", "int", "nan", "negative", "empty"),
        grid_size=("posint",),
        image_size=("pair",),
    )
    add(
        "cvlib.models.yolo.anchor_grid_boxes",
        yolo.anchor_grid_boxes,
        lambda: {"params": torch.rand(4, 4, 2, 4, generator=_g()), "anchors": PRIORS, "image_size": (32, 32)},
        params=("list", "int", "nan", "fewer_dims"),
        anchors=("list", "nan", "negative"),
        image_size=("pair",),
    )
    add(
        "cvlib.models.ssd.default_boxes",
        ssd.default_boxes,
        lambda: {"feature_sizes": [(4, 4), (2, 2)], "strides": [8, 16], "scales": [8.0, 16.0],
                 "aspect_ratios": [0.5, 1.0, 2.0]},
        feature_sizes=("sequence",),
        strides=("sequence",),
        scales=("sequence",),
        aspect_ratios=("sequence",),
    )
    add(
        "cvlib.models.yolo.grid_boxes",
        yolo.grid_boxes,
        lambda: {"params": torch.rand(4, 4, 1, 4, generator=_g()), "image_size": (32, 32)},
        params=("list", "int", "nan", "fewer_dims"),
        image_size=("pair",),
    )
    add(
        "cvlib.models.detr.sine_position_encoding",
        detr.sine_position_encoding,
        lambda: {"height": 2, "width": 3, "d_model": 8, "temperature": 100.0},
        height=("posint",),
        width=("posint",),
        d_model=("posint",),
        temperature=("positive",),
    )
    for fn in ("hungarian_assignment", "brute_force_assignment"):
        add(
            f"cvlib.models.detr.{fn}",
            getattr(detr, fn),
            lambda: {"cost": torch.rand(3, 2, generator=_g())},
            cost=("list", "extra_dim", "nan", "inf", "int"),
        )
    add(
        "cvlib.models.detr.HungarianMatcher",
        detr.HungarianMatcher,
        lambda: {"cost_class": 1.0, "cost_l1": 5.0, "cost_giou": 2.0},
        cost_class=("nonneg",),
        cost_l1=("nonneg",),
        cost_giou=("nonneg",),
    )
    add(
        "cvlib.models.detr.SetCriterion",
        detr.SetCriterion,
        lambda: {"num_classes": 3, "no_object_weight": 0.1},
        num_classes=("posint",),
        no_object_weight=("nonneg",),
    )
    add(
        "cvlib.models.mask_rcnn.project_masks",
        mask_rcnn.project_masks,
        lambda: {
            "gt_masks": torch.ones(2, 16, 16, dtype=torch.bool),
            "rois": boxes(3) / 2,
            "matched": torch.tensor([0, 1, 1]),
            "size": 4,
        },
        gt_masks=("list", "extra_dim"),
        rois=BOXES,
        matched=("list", "float", "too_big"),
        size=("posint",),
    )
    for fn in ("mask_loss", "softmax_mask_loss"):
        add(
            f"cvlib.models.mask_rcnn.{fn}",
            getattr(mask_rcnn, fn),
            lambda: {
                "mask_logits": torch.randn(2, 4, 4, 4, generator=_g()),
                "labels": torch.tensor([1, 3]),
                "mask_targets": torch.rand(2, 4, 4, generator=_g()),
            },
            mask_logits=("list", "nan", "int", "fewer_dims"),
            labels=("list", "float", "too_big"),
            mask_targets=("list", "nan", "above_one"),
        )
    add(
        "cvlib.models.mask_rcnn.paste_masks",
        mask_rcnn.paste_masks,
        lambda: {"masks": torch.rand(3, 4, 4, generator=_g()), "boxes": boxes(), "image_size": (32, 32)},
        masks=("list", "nan", "extra_dim"),
        boxes=BOXES,
        image_size=("pair",),
    )
    add(
        "cvlib.models.mask_rcnn.check_masks",
        mask_rcnn.check_masks,
        lambda: {
            "images": [torch.rand(3, 8, 8)],
            "targets": [{**_target(), "masks": torch.zeros(2, 8, 8, dtype=torch.bool)}],
        },
        images=("sequence",),
        targets=("sequence",),
    )
    # cvlib.models.keypoint_rcnn
    def _keypoints(n: int = 2) -> torch.Tensor:
        return torch.cat([torch.rand(n, 5, 2, generator=_g()) * 30, torch.full((n, 5, 1), 2.0)], 2)

    def _keypoint_inputs() -> dict:
        inputs = _detector_inputs("mask")
        torch.manual_seed(0)
        inputs["model"] = keypoint_rcnn.build_keypoint_rcnn(width=2, hidden=8).train()
        inputs["targets"][0]["keypoints"] = _keypoints()
        return inputs

    add("cvlib.models.keypoint_rcnn.KeypointRCNN.forward", _forward, _keypoint_inputs,
        images=("sequence", "extra_dim"), targets=("sequence",))
    add(
        "cvlib.models.keypoint_rcnn.KeypointRCNN.forward[keypoints]",
        lambda model, keypoints, rest: model(rest["images"],
                                             [{**rest["targets"][0], "keypoints": keypoints}]),
        lambda: (lambda d: {"model": d["model"], "keypoints": d["targets"][0]["keypoints"], "rest": d})(
            _keypoint_inputs()),
        public={"keypoints": "targets"},
        keypoints=("list", "int", "nan", "inf", "extra_dim"),
    )

    def _keypoint_parts():
        model = _keypoint_inputs()["model"]
        return {"backbone": model.backbone, "rpn": model.rpn, "roi_heads": model.roi_heads}

    add("cvlib.models.keypoint_rcnn.KeypointRCNN", keypoint_rcnn.KeypointRCNN, _keypoint_parts,
        backbone=("module",), rpn=("module",),
        roi_heads=("module", ("mask heads only", _detector("mask").roi_heads)))
    add("cvlib.models.keypoint_rcnn.build_keypoint_rcnn", keypoint_rcnn.build_keypoint_rcnn,
        lambda: {"num_classes": 3, "width": 2, "num_keypoints": 5, "keypoint_pool_size": 4},
        num_classes=("posint",), width=("posint",), num_keypoints=("posint",), keypoint_pool_size=("posint",))
    add("cvlib.models.keypoint_rcnn.keypoint_targets", keypoint_rcnn.keypoint_targets,
        lambda: {"keypoints": _keypoints(3), "rois": boxes(3), "size": 8},
        keypoints=("list", "int", "nan", "extra_dim"), rois=BOXES, size=("posint",))
    add("cvlib.models.keypoint_rcnn.keypoint_loss", keypoint_rcnn.keypoint_loss,
        lambda: {"heatmap_logits": torch.randn(2, 5, 4, 4, generator=_g()),
                 "targets": torch.randint(0, 16, (2, 5), generator=_g()),
                 "valid": torch.ones(2, 5, dtype=torch.bool)},
        heatmap_logits=("list", "nan", "int", "fewer_dims"), targets=("list", "float", "too_big"),
        valid=("list", "float", "extra_dim"))
    add("cvlib.models.keypoint_rcnn.heatmaps_to_keypoints", keypoint_rcnn.heatmaps_to_keypoints,
        lambda: {"heatmap_logits": torch.randn(3, 5, 4, 4, generator=_g()), "boxes": boxes(3)},
        heatmap_logits=("list", "nan", "int", "extra_dim"), boxes=BOXES)
    add("cvlib.models.keypoint_rcnn.check_keypoints", keypoint_rcnn.check_keypoints,
        lambda: {"targets": [{**_target(), "keypoints": _keypoints()}], "num_keypoints": 5},
        targets=("sequence",), num_keypoints=("posint",))
    add("cvlib.models.keypoint_rcnn.mean_keypoint_layout", keypoint_rcnn.mean_keypoint_layout,
        lambda: {"targets": [{**_target(), "keypoints": _keypoints()}], "num_classes": 3},
        targets=("sequence",), num_classes=("posint",))
    add("cvlib.models.keypoint_rcnn.keypoints_from_boxes", keypoint_rcnn.keypoints_from_boxes,
        lambda: {"boxes": boxes(2), "labels": torch.tensor([1, 3]),
                 "layout": torch.rand(4, 5, 2, generator=_g())},
        boxes=BOXES, labels=("list", "float", "too_big", "negative"),
        layout=("list", "nan", "int", "extra_dim"))
    add(
        "cvlib.models.fcn.receptive_field",
        fcn.receptive_field,
        lambda: {"model": fcn.DilatedFCN(3, 2, (1, 2)), "size": 17},
        model=("module",),
        size=("posint",),
    )

    # cvlib.explain ----------------------------------------------------------------------------
    maps_args = dict(model=("module",), images=IMAGES, target=("float", "too_big", "negative"))
    target = lambda: torch.tensor([0, 1])  # noqa: E731
    for fn in ("input_gradient", "saliency", "guided_backprop", "guided_grad_cam"):
        add(
            f"cvlib.explain.{fn}",
            getattr(explain, fn),
            lambda: {"model": small_cnn(), "images": images(), "target": target()},
            **maps_args,
        )
    add(
        "cvlib.explain.smoothgrad",
        explain.smoothgrad,
        lambda: {
            "model": small_cnn(),
            "images": images(),
            "target": target(),
            "samples": 1,
            "sigma": 0.1,
            "seed": 0,
        },
        **maps_args,
        samples=("posint",),
        sigma=("nonneg",),
        seed=("seed",),
    )
    add(
        "cvlib.explain.cam",
        explain.cam,
        lambda: {
            "model": small_cnn(),
            "images": images(),
            "target": target(),
            "features": "features",
            "fc": "fc",
        },
        **maps_args,
        features=("layer",),
        fc=("layer",),
    )
    add(
        "cvlib.explain.grad_cam",
        explain.grad_cam,
        lambda: {"model": small_cnn(), "images": images(), "target": target(), "layer": "features"},
        **maps_args,
        layer=("layer",),
    )
    add(
        "cvlib.explain.occlusion",
        explain.occlusion,
        lambda: {
            "model": small_cnn(),
            "images": images(1),
            "target": 0,
            "patch": 16,
            "stride": 16,
            "fill": 0.5,
            "batch_size": 4,
        },
        model=("module",),
        images=IMAGES,
        target=("float", "too_big", "negative"),
        patch=("posint",),
        stride=("posint",),
        fill=("finite",),
        batch_size=("posint",),
    )
    add(
        "cvlib.explain.upsample_map",
        explain.upsample_map,
        lambda: {"maps": torch.rand(2, 4, 4), "size": (8, 8)},
        maps=("list", "int", "extra_dim"),
        size=("pair",),
    )
    add(
        "cvlib.explain.layer_features",
        explain.layer_features,
        lambda: {"model": small_cnn(), "images": images(), "layer": "features.2", "batch_size": 2},
        model=("module",),
        images=IMAGES,
        layer=("layer",),
        batch_size=("posint",),
    )
    add(
        "cvlib.explain.first_layer_filters",
        explain.first_layer_filters,
        lambda: {"model": small_cnn()},
        model=("module",),
    )
    add(
        "cvlib.explain.nearest_neighbours",
        explain.nearest_neighbours,
        lambda: {"queries": torch.rand(2, 3), "gallery": torch.rand(5, 3), "k": 2},
        queries=("list", "nan", "extra_dim"),
        gallery=("list", "nan", "extra_dim"),
        k=("posint",),
    )
    add(
        "cvlib.explain.pca",
        explain.pca,
        lambda: {"features": torch.rand(5, 3), "components": 2},
        features=("list", "nan", "extra_dim"),
        components=("posint",),
    )
    add(
        "cvlib.explain.max_activating_patches",
        explain.max_activating_patches,
        lambda: {"model": small_cnn(), "images": images(), "layer": "features.2", "channel": 0, "k": 1},
        model=("module",),
        images=IMAGES,
        layer=("layer",),
        channel=("nonnegint",),
        k=("posint",),
    )
    add(
        "cvlib.explain.class_visualization",
        explain.class_visualization,
        lambda: {
            "model": small_cnn(),
            "target": 1,
            "size": 8,
            "steps": 1,
            "lr": 0.01,
            "l2": 1e-3,
            "blur_every": 1,
            "seed": 0,
        },
        model=("module",),
        target=("int",),
        size=("posint",),
        steps=("posint",),
        lr=("positive",),
        l2=("nonneg",),
        blur_every=("posint",),
        seed=("seed",),
    )
    add(
        "cvlib.explain.deep_dream",
        explain.deep_dream,
        lambda: {"model": small_cnn(), "image": images(1)[0], "layer": "features.2", "steps": 1, "lr": 0.02},
        model=("module",),
        image=("list", "uint8", "nan", "extra_dim"),
        layer=("layer",),
        steps=("posint",),
        lr=("positive",),
    )
    add(
        "cvlib.explain.fgsm",
        explain.fgsm,
        lambda: {"model": small_cnn(), "images": images(), "labels": torch.tensor([0, 1]), "eps": 0.03},
        model=("module",),
        images=IMAGES,
        labels=("float", "too_big", "negative"),
        eps=("nonneg",),
    )
    add(
        "cvlib.explain.iterative_attack",
        explain.iterative_attack,
        lambda: {
            "model": small_cnn(),
            "images": images(),
            "labels": torch.tensor([0, 1]),
            "eps": 0.03,
            "step_size": 0.01,
            "steps": 1,
        },
        model=("module",),
        images=IMAGES,
        labels=("float", "too_big"),
        eps=("nonneg",),
        step_size=("positive",),
        steps=("nonnegint",),
    )
    add(
        "cvlib.explain.cls_attention",
        explain.cls_attention,
        lambda: {"attentions": _attentions(), "layer": -1},
        attentions=("sequence",),
        layer=("int",),
    )
    add(
        "cvlib.explain.attention_rollout",
        explain.attention_rollout,
        lambda: {"attentions": _attentions(), "residual": 0.5, "head_fusion": "mean"},
        attentions=("sequence",),
        residual=("unit",),
        head_fusion=("choice",),
    )
    add(
        "cvlib.explain.attention_rollout[layer]",
        lambda attention: explain.attention_rollout([attention]),
        lambda: {"attention": _attentions()[0]},
        public={"attention": "attentions"},
        attention=("list", "nan", "int", "negative", "fewer_dims"),
    )
    add(
        "cvlib.explain.tokens_to_grid",
        explain.tokens_to_grid,
        lambda: {"values": torch.rand(2, 4)},
        values=("list",),
    )
    score_args = lambda: {"maps": torch.rand(2, 8, 8), "masks": torch.rand(2, 8, 8) > 0.5}  # noqa: E731
    add(
        "cvlib.explain.pointing_game",
        explain.pointing_game,
        lambda: {**score_args(), "tolerance": 1},
        maps=("list", "nan", "extra_dim"),
        masks=("list", "extra_dim"),
        tolerance=("nonnegint",),
    )
    add(
        "cvlib.explain.map_iou",
        explain.map_iou,
        lambda: {**score_args(), "threshold": 0.5},
        maps=("list", "nan", "extra_dim"),
        masks=("list", "extra_dim"),
        threshold=("unit",),
    )
    add("cvlib.explain.hooks.check_images", hooks.check_images, lambda: {"images": images()}, images=IMAGES)
    add(
        "cvlib.explain.hooks.pick_target",
        hooks.pick_target,
        lambda: {"logits": torch.rand(2, 3), "target": torch.tensor([0, 2])},
        logits=("list", "nan", "extra_dim"),
        target=("float", "too_big", "negative"),
    )
    add(
        "cvlib.explain.hooks.resolve_layer",
        hooks.resolve_layer,
        lambda: {"model": small_cnn(), "layer": "features"},
        model=("module",),
        layer=("layer",),
    )
    add(
        "cvlib.explain.hooks.prepared",
        lambda model: hooks.prepared(model).__enter__(),
        lambda: {"model": small_cnn()},
        model=("module",),
    )

    # cvlib.data -------------------------------------------------------------------------------
    for cls in ("ShapesDataset", "SingleObjectDataset", "ShapesClassification"):
        add(
            f"cvlib.data.shapes.{cls}",
            getattr(shapes, cls),
            lambda: {"num_images": 2, "image_size": 32, "seed": 0},
            num_images=("posint",),
            image_size=("posint",),
            seed=("seed",),
        )
    add(
        "cvlib.data.shapes.ShapesDataset[elongation]",
        shapes.ShapesDataset,
        lambda: {"num_images": 2, "image_size": 32, "elongation": 2.0},
        elongation=("positive", ("too long", 7.0)),
    )
    add(
        "cvlib.data.shapes.ShapesDataset[size]",
        shapes.ShapesDataset,
        lambda: {"num_images": 2, "image_size": 32},
        image_size=(("huge", 100_000),),
    )
    for fn in (
        "collate_single_object",
        "collate_detection",
        "collate_segmentation",
        "collate_classification",
    ):
        data = shapes.ShapesClassification if fn == "collate_classification" else shapes.SingleObjectDataset
        add(
            f"cvlib.data.shapes.{fn}",
            getattr(shapes, fn),
            lambda data=data: {"batch": list(data(2, 16))},
            batch=("sequence",),
        )
    add("cvlib.data.shapes.held_out_classification", shapes.held_out_classification, lambda: {"n": 2},
        n=("posint",))
    add("cvlib.data.shapes.held_out_detection", shapes.held_out_detection, lambda: {"n": 2}, n=("posint",))
    add("cvlib.data.shapes.ShapesDataset[keypoints]", shapes.ShapesDataset,
        lambda: {"num_images": 2, "image_size": 32, "keypoints": True}, keypoints=("choice",))
    add("cvlib.data.shapes.held_out_detection[keypoints]", shapes.held_out_detection,
        lambda: {"n": 2, "keypoints": True}, keypoints=("choice",))
    add(
        "cvlib.data.shapes.to_coco",
        shapes.to_coco,
        lambda: {"dataset": shapes.ShapesDataset(1, 16)},
        dataset=("sequence",),
    )

    # cvlib.train ------------------------------------------------------------------------------
    loader = lambda: [(images(2, 16), torch.tensor([0, 1]))]  # noqa: E731
    add(
        "cvlib.train.fit",
        train.fit,
        lambda: {
            "model": small_cnn(),
            "loader": loader(),
            "loss_fn": nn.functional.cross_entropy,
            "epochs": 1,
            "lr": 1e-3,
            "grad_clip": 1.0,
            "seed": 0,
            "device": "cpu",
            "progress": False,
        },
        model=("module",),
        loader=(("empty", []), ("number", 3)),
        epochs=("posint",),
        lr=("positive",),
        grad_clip=("positive",),
        seed=("seed",),
    )
    add("cvlib.train.seed_everything", train.seed_everything, lambda: {"seed": 0}, seed=("seed",))
    add(
        "cvlib.train.to_device",
        train.to_device,
        lambda: {"obj": [torch.zeros(1)], "device": "cpu"},
        device=(("unknown", "gpu9"), ("number", 3.5)),
    )
    add(
        "cvlib.train.predict",
        train.predict,
        lambda: {"model": small_cnn(), "images": images(2, 16), "batch_size": 1},
        model=("module",),
        images=("list",),
        batch_size=("posint",),
    )
    add(
        "cvlib.train.detect",
        train.detect,
        lambda: {"model": _detector("faster").eval(), "images": [torch.rand(3, 16, 16)], "batch_size": 1},
        model=("module",),
        images=("sequence",),
        batch_size=("posint",),
    )
    add(
        "cvlib.train.seconds_per_image",
        train.seconds_per_image,
        lambda: {"model": _detector("faster").eval(), "images": [torch.rand(3, 16, 16)], "repeats": 1},
        model=("module",),
        images=(*NUMBER_KINDS["sequence"], ("empty", [])),
        repeats=("posint",),
    )

    # cvlib.weights ----------------------------------------------------------------------------
    for fn, name in (("load", "shapes_cnn"), ("load_json", "resnet")):
        add(f"cvlib.weights.{fn}", getattr(weights, fn), lambda name=name: {"name": name}, name=("name",))
    add("cvlib.recipes.load_model", recipes.load_model, lambda: {"name": "shapes_cnn"}, name=("name",))
    meta = {
        "command": "python -m cvlib.train tiny",
        "seed": 0,
        "device": "cpu",
        "train_seconds": 1.0,
        "created": "now",
        "metrics": {},
    }
    add(
        "cvlib.weights.save",
        weights.save,
        lambda: {"name": "tiny", "model": small_cnn(), "meta": dict(meta), "directory": _tmp()},
        name=("name",),
        model=("module",),
    )
    add(
        "cvlib.weights.save_json",
        weights.save_json,
        lambda: {"name": "tiny", "data": [1], "directory": _tmp()},
        name=("name",),
    )
    add(
        "cvlib.weights.sha256",
        weights.sha256,
        lambda: {"path": __file__},
        path=(("missing", "/nonexistent"),),
    )
    add(
        "cvlib.weights.available",
        weights.available,
        lambda: {"directory": _tmp()},
        directory=(("missing", "/nonexistent/weights"),),
    )

    # cvlib.viz --------------------------------------------------------------------------------
    add("cvlib.viz.class_color", viz.class_color, lambda: {"label": 1}, label=("int",))
    add(
        "cvlib.viz.to_numpy_image",
        viz.to_numpy_image,
        lambda: {"image": images(1)[0]},
        image=(("string", "x"), ("4-D", torch.rand(1, 1, 3, 4, 4))),
    )
    add(
        "cvlib.viz.show_image",
        viz.show_image,
        lambda: {"ax": _ax(), "image": images(1)[0]},
        ax=(("string", "ax"),),
        image=(("string", "x"),),
    )
    add(
        "cvlib.viz.overlay_heatmap",
        viz.overlay_heatmap,
        lambda: {"ax": _ax(), "image": images(1)[0], "heat": torch.rand(8, 8)},
        ax=(("string", "ax"),),
        image=(("string", "x"),),
        heat=("extra_dim", "fewer_dims"),
        alpha=("unit",),
    )
    add(
        "cvlib.viz.draw_boxes",
        viz.draw_boxes,
        lambda: {
            "ax": _ax(),
            "boxes": boxes(2),
            "labels": torch.tensor([1, 2]),
            "scores": torch.tensor([0.5, 0.9]),
        },
        ax=(("string", "ax"),),
        boxes=("nan", "inf", "fewer_dims"),
        labels=("extra_dim", "empty"),
        scores=("extra_dim", "empty"),
    )
    add(
        "cvlib.viz.colorize_semantic",
        viz.colorize_semantic,
        lambda: {"semantic": torch.zeros(4, 4, dtype=torch.long)},
        semantic=("extra_dim", "float", "negative"),
    )
    add(
        "cvlib.viz.overlay_masks",
        viz.overlay_masks,
        lambda: {"image": images(1)[0], "masks": torch.ones(1, 32, 32, dtype=torch.bool), "alpha": 0.5},
        masks=("fewer_dims", "nan"),
        alpha=("unit",),
    )
    add(
        "cvlib.viz.image_grid",
        viz.image_grid,
        lambda: {"images": [images(1)[0]], "ncols": 2},
        images=(("empty", []), ("number", 3)),
        ncols=("posint",),
    )
    add(
        "cvlib.viz.class_legend",
        viz.class_legend,
        lambda: {"ax": _ax(), "class_names": ["a", "b"]},
        ax=(("string", "ax"),),
        class_names=(("string", "ab"), ("number", 3)),
    )
    add(
        "cvlib.viz.show_matrix",
        viz.show_matrix,
        lambda: {"ax": _ax(), "values": torch.rand(2, 3)},
        ax=(("string", "ax"),),
        values=("extra_dim", ("string", "x")),
    )

    # cvlib.widgets ----------------------------------------------------------------------------
    add(
        "cvlib.widgets.explore",
        widgets.explore,
        lambda: {"fig": _figure(), "update": lambda k: None, "k": widgets.int_slider("k", 1, 3)},
        fig=(("string", "fig"),),
        update=(("number", 3),),
        k=(("string", "k"),),
    )
    add(
        "cvlib.widgets.slider",
        widgets.slider,
        lambda: {"description": "s", "min": 0.0, "max": 1.0, "value": 0.5},
        min=("finite",),
        max=("finite",),
        value=("finite", ("outside", 2.0)),
    )
    add(
        "cvlib.widgets.int_slider",
        widgets.int_slider,
        lambda: {"description": "s", "min": 0, "max": 3, "value": 1},
        min=("int",),
        max=("int",),
        value=("int", ("outside", 9)),
    )
    add(
        "cvlib.widgets.dropdown",
        widgets.dropdown,
        lambda: {"description": "d", "options": ["a", "b"], "value": "a"},
        options=(("empty", []), ("number", 3)),
        value=(("unknown", "zz"),),
    )
    _pending_cases(add)
    _fpn_cases(add)
    return cases


def _pending_cases(add) -> None:
    """The cases of the callables that landed on main late in issue 23's session."""
    from cvlib import metrics, ops, runtime, weights
    from cvlib.explain import dissection, faithfulness, inversion, sanity, style
    from cvlib.models import fpn
    from cvlib.ops import reference

    add(
        "cvlib.ops.reference.nms_loop",
        reference.nms_loop,
        lambda: {"boxes": boxes(), "scores": torch.rand(3, generator=_g()), "iou_threshold": 0.5},
        boxes=BOXES,
        scores=("list", "extra_dim", "nan"),
        iou_threshold=("nonneg",),
    )
    feature = lambda: torch.rand(1, 2, 8, 8, generator=_g())  # noqa: E731
    rois = lambda: torch.cat([torch.zeros(3, 1), boxes() / 4], 1)  # noqa: E731
    for fn in ("roi_pool_loop", "roi_align_loop"):
        add(
            f"cvlib.ops.reference.{fn}",
            getattr(reference, fn),
            lambda: {"input": feature(), "rois": rois(), "output_size": 2, "spatial_scale": 1.0},
            input=("list", "extra_dim", "int"),
            rois=("list", "extra_dim", "int", "nan", "inf", "too_big"),
            output_size=("posint",),
            spatial_scale=("positive",),
        )
    add(
        "cvlib.ops.reference.roi_pool_bins",
        reference.roi_pool_bins,
        lambda: {"start": 20.0, "end": 70.0, "bins": 4, "spatial_scale": 0.125, "limit": 16},
        start=("finite",),
        end=("finite",),
        bins=("posint",),
        spatial_scale=("positive",),
        limit=("nonnegint",),
    )
    add(
        "cvlib.ops.reference.roi_align_points",
        reference.roi_align_points,
        lambda: {"start": 20.0, "end": 70.0, "bins": 4, "sampling_ratio": 2, "spatial_scale": 0.125},
        start=("finite",),
        end=("finite",),
        bins=("posint",),
        sampling_ratio=("int",),
        spatial_scale=("positive",),
    )
    add(
        "cvlib.ops.roi.roi_levels",
        ops.roi.roi_levels,
        lambda: {"boxes": boxes() * 8, "k_min": 2, "k_max": 5, "canonical_scale": 224.0,
                 "canonical_level": 4},
        boxes=BOXES,
        k_min=("int",),
        k_max=("int", ("below k_min", 1)),
        canonical_scale=("positive",),
        canonical_level=("int",),
    )
    sizes = lambda n, seed: 1 + torch.rand(n, 2, generator=_g(seed)) * 10  # noqa: E731
    add(
        "cvlib.ops.anchors.shape_iou",
        ops.anchors.shape_iou,
        lambda: {"sizes1": sizes(3, 0), "sizes2": sizes(2, 5)},
        sizes1=("list", "extra_dim", "int", "nan", "inf", "negative"),
        sizes2=("list", "extra_dim", "int", "nan", "inf", "negative"),
    )
    add(
        "cvlib.ops.anchors.kmeans_anchors",
        ops.anchors.kmeans_anchors,
        lambda: {"boxes": boxes(6), "k": 2, "iterations": 5, "seed": 0},
        boxes=BOXES,
        k=("posint", ("more than the boxes", 7)),
        iterations=("posint",),
        seed=("seed",),
    )

    # metrics
    add(
        "cvlib.metrics.object_keypoint_similarity",
        metrics.object_keypoint_similarity,
        lambda: {
            "pred_keypoints": torch.rand(2, 3, 3, generator=_g()) * 20,
            "true_keypoints": torch.cat(
                [torch.rand(1, 3, 2, generator=_g(1)) * 20, torch.full((1, 3, 1), 2.0)], 2
            ),
            "true_boxes": boxes(1),
            "true_areas": torch.tensor([50.0]),
            "sigmas": torch.tensor([0.025, 0.079, 0.107]),
        },
        pred_keypoints=("list", "extra_dim", "int", "nan", "inf"),
        true_keypoints=("list", "extra_dim", "int", "nan", "inf"),
        true_boxes=BOXES,
        true_areas=("list", "extra_dim", "int", "nan", "negative"),
        sigmas=("list", "extra_dim", "int", "nan", "negative", "empty"),
    )
    scene = lambda: {"classes": torch.tensor([[1, 1], [2, 2]]), "instances": torch.tensor([[1, 1], [0, 0]])}  # noqa: E731
    add(
        "cvlib.metrics.panoptic_quality",
        metrics.panoptic_quality,
        lambda: {"predictions": [scene()], "targets": [scene()], "things": [1], "stuff": [2], "void": -1},
        predictions=("sequence", ("not a dict", [3]), ("one too many", [scene(), scene()])),
        targets=("sequence", ("not a dict", ["x"])),
        things=("sequence", ("overlaps stuff", [1, 2])),
        stuff=("sequence",),
        void=("int",),
    )

    # explain
    add("cvlib.explain.style.gram_matrix", style.gram_matrix, lambda: {"features": images()},
        features=("list", "extra_dim", "fewer_dims", "int"))
    add("cvlib.explain.inversion.total_variation", inversion.total_variation, lambda: {"images": images()},
        images=("list", "extra_dim", "int", "nan"))
    maps = lambda seed=0: torch.rand(2, 32, 32, generator=_g(seed))  # noqa: E731
    add(
        "cvlib.explain.sanity.rank_correlation",
        sanity.rank_correlation,
        lambda: {"maps_a": maps(), "maps_b": maps(1)},
        maps_a=("list", "extra_dim", "nan", "inf", "empty"),
        maps_b=("list", "extra_dim", "nan", "inf"),
    )
    add(
        "cvlib.explain.faithfulness.area_under_curve",
        faithfulness.area_under_curve,
        lambda: {"curves": torch.rand(2, 5, generator=_g())},
        curves=("list", "extra_dim", "int", "nan", "inf"),
    )
    add(
        "cvlib.explain.faithfulness.blur",
        faithfulness.blur,
        lambda: {"images": images(), "kernel": 5, "sigma": 2.0},
        images=("list", "extra_dim", "int", "nan"),
        kernel=("posint", ("even", 4)),
        sigma=("positive",),
    )
    add(
        "cvlib.explain.faithfulness.pixel_order",
        faithfulness.pixel_order,
        lambda: {"maps": maps(), "seed": 0},
        maps=("list", "extra_dim", "nan", "inf"),
        seed=("seed",),
    )
    for fn in ("deletion_curve", "insertion_curve"):
        add(
            f"cvlib.explain.faithfulness.{fn}",
            getattr(faithfulness, fn),
            lambda: {"model": small_cnn(), "images": images(), "maps": maps(), "target": 1, "steps": 3},
            model=("module",),
            images=IMAGES,
            maps=("list", "extra_dim", "nan", "inf"),
            target=(("fractional", 1.7), ("out of range", 99)),
            steps=("posint",),
        )
    add(
        "cvlib.explain.sanity.randomized_copy",
        sanity.randomized_copy,
        lambda: {"model": small_cnn(), "layers": ["fc"], "seed": 0},
        model=("module",),
        layers=("sequence", ("unknown name", ["nope"])),
        seed=("seed",),
    )
    add(
        "cvlib.explain.sanity.cascading_randomization",
        sanity.cascading_randomization,
        lambda: {"model": small_cnn(), "layers": ["fc"], "seed": 0},
        model=("module",),
        layers=("sequence", ("unknown name", ["nope"])),
        seed=("seed",),
    )

    # models, runtime, weights
    pyramid = lambda: [torch.rand(1, 4, 8, 8, generator=_g()), torch.rand(1, 6, 4, 4, generator=_g(1))]  # noqa: E731
    add(
        "cvlib.models.fpn.FeaturePyramidNetwork",
        fpn.FeaturePyramidNetwork,
        lambda: {"in_channels": [4, 6], "out_channels": 8},
        in_channels=("sequence", ("zero", [4, 0]), ("float", [4, 1.5])),
        out_channels=("posint",),
    )
    torch.manual_seed(0)
    add(
        "cvlib.models.fpn.FeaturePyramidNetwork.forward",
        lambda features: fpn.FeaturePyramidNetwork([4, 6], 8)(features),
        lambda: {"features": pyramid()},
        features=("sequence", "list", "extra_dim", "int", ("one level", pyramid()[:1])),
    )
    add(
        "cvlib.runtime.start",
        runtime.start,
        lambda: {"seed": 0, "threads": 1},
        seed=("seed",),
        threads=("posint",),
    )
    add(
        "cvlib.weights.transfer",
        weights.transfer,
        lambda: {"model": small_cnn(), "state_dict": small_cnn().state_dict()},
        model=("module",),
        state_dict=("dict", ("nothing matches", {"x": torch.zeros(1)})),
    )

    # merged later: the lecture's loops, selective search's pieces, timing
    from cvlib import train
    from cvlib.models import rcnn

    add(
        "cvlib.ops.reference.nms_steps",
        reference.nms_steps,
        lambda: {"boxes": boxes(), "scores": torch.rand(3, generator=_g()), "iou_threshold": 0.5},
        boxes=BOXES,
        scores=("list", "extra_dim", "nan"),
        iou_threshold=("nonneg",),
    )
    add(
        "cvlib.ops.reference.bilinear_sample",
        reference.bilinear_sample,
        lambda: {"feature": torch.rand(2, 5, 5, generator=_g()), "ys": torch.tensor([0.5, 3.2]),
                 "xs": torch.tensor([1.0, 2.5, 4.0])},
        feature=("list", "extra_dim", "int"),
        ys=("list", "extra_dim", "int", "nan", "inf"),
        xs=("list", "extra_dim", "int", "nan", "inf"),
    )
    segments = lambda: torch.tensor([[0, 0, 1, 1], [0, 2, 2, 1], [3, 3, 2, 1]])  # noqa: E731
    for fn in ("segment_boxes", "touching_segments"):
        add(f"cvlib.models.rcnn.{fn}", getattr(rcnn, fn), lambda: {"segments": segments()},
            segments=("list", "extra_dim", "float", "negative", ("a label missing", segments() * 2)))
    add(
        "cvlib.models.rcnn.segment_proposals",
        rcnn.segment_proposals,
        lambda: {"image": images(1, 16)[0], "scales": (50,), "sigma": 0.5, "min_size": 10},
        image=("list", "extra_dim", "int", "nan"),
        scales=("sequence", ("zero", (0,)), ("empty", ())),
        sigma=("nonneg",),
        min_size=("nonnegint",),
    )
    add(
        "cvlib.train.seconds_per_call",
        train.seconds_per_call,
        lambda: {"fn": torch.relu, "inputs": [torch.zeros(2)], "repeats": 1},
        fn=(("not callable", 3),),
        inputs=("sequence", ("empty", [])),
        repeats=("posint",),
    )

    # explain: the optimisations and network dissection, on a small CNN for two steps
    add(
        "cvlib.explain.dissection.unit_concept_iou",
        dissection.unit_concept_iou,
        lambda: {"model": small_cnn(), "images": images(), "layer": "features.1",
                 "masks": torch.rand(2, 32, 32, generator=_g()) > 0.5, "labels": torch.tensor([0, 1]),
                 "num_concepts": 2, "quantile": 0.9},
        model=("module",),
        images=IMAGES,
        layer=("layer",),
        masks=("list", "extra_dim", "float"),
        labels=("list", "extra_dim", "float", "negative", "too_big"),
        num_concepts=("posint",),
        quantile=("unit",),
    )
    add(
        "cvlib.explain.inversion.invert_features",
        inversion.invert_features,
        lambda: {"model": small_cnn(), "images": images(1), "layer": "features.1", "steps": 2, "lr": 0.05,
                 "tv_weight": 0.5, "seed": 0},
        model=("module",),
        images=IMAGES,
        layer=("layer",),
        steps=("posint",),
        lr=("positive",),
        tv_weight=("nonneg",),
        seed=("seed",),
    )
    add(
        "cvlib.explain.style.style_transfer",
        style.style_transfer,
        lambda: {"model": small_cnn(), "content": images(1)[0], "style": images(1, 16)[0],
                 "content_layer": "features.1", "style_layers": ["features.0", "features.1"], "steps": 2,
                 "lr": 0.03, "content_weight": 1.0, "style_weight": 10.0, "init": "content", "seed": 0},
        model=("module",),
        content=("list", "extra_dim", "uint8", "float64", "nan"),
        style=("list", "extra_dim", "uint8", "float64", "nan"),
        content_layer=("layer",),
        style_layers=("sequence", ("unknown name", ["nope"])),
        steps=("posint",),
        lr=("positive",),
        content_weight=("nonneg",),
        style_weight=("nonneg",),
        init=("choice",),
        seed=("seed",),
    )
    add(
        "cvlib.explain.style.synthesize_texture",
        style.synthesize_texture,
        lambda: {"model": small_cnn(), "texture": images(1, 16)[0], "size": (16, 16),
                 "style_layers": ["features.0", "features.1"], "steps": 2, "lr": 0.03, "seed": 0},
        model=("module",),
        texture=("list", "extra_dim", "uint8", "float64", "nan"),
        size=("pair",),
        style_layers=("sequence", ("unknown name", ["nope"])),
        steps=("posint",),
        lr=("positive",),
        seed=("seed",),
    )
    _photo_cases(add)
    _coco_cases(add)
    _pretrained_cases(add)
    _scale_out_cases(add)
    _exercise_cases(add)
    _stuff_and_dilation_cases(add)


def _fpn_cases(add) -> None:
    """Feature pyramids in the R-CNN family: anchors per level, RoIs pooled from their level."""
    from cvlib import ops
    from cvlib.data import shapes
    from cvlib.models import fpn

    add(
        "cvlib.ops.anchors.pyramid_anchors",
        ops.anchors.pyramid_anchors,
        lambda: {"feature_sizes": [(4, 4), (2, 2)], "strides": [4, 8], "scales": [(8.0,), (16.0,)],
                 "aspect_ratios": (1.0,)},
        feature_sizes=("sequence", ("one level short", [(4, 4)]), ("zero", [(0, 4), (2, 2)])),
        strides=("sequence", ("zero", [0, 8])),
        scales=("sequence", ("flat numbers", [8.0, 16.0]), ("negative", [(-8.0,), (16.0,)])),
        aspect_ratios=("sequence",),
    )
    levels = lambda: [torch.rand(1, 2, 8, 8, generator=_g()), torch.rand(1, 2, 4, 4, generator=_g(1))]  # noqa: E731
    add(
        "cvlib.ops.roi.multiscale_roi_align",
        ops.roi.multiscale_roi_align,
        lambda: {"features": levels(), "boxes": torch.cat([torch.zeros(3, 1), boxes()], 1), "output_size": 2,
                 "spatial_scales": [0.25, 0.125], "sampling_ratio": 2, "canonical_scale": 16.0,
                 "canonical_level": 3},
        features=("sequence", ("one level", levels()[:1]), ("int maps", [f.long() for f in levels()])),
        boxes=("list", "extra_dim", "int", "nan", "inf", "too_big"),
        output_size=("posint",),
        spatial_scales=("sequence", ("coarse to fine", [0.125, 0.25]), ("not a power of two", [0.25, 0.1]),
                        ("zero", [0.0, 0.125])),
        sampling_ratio=("int",),
        canonical_scale=("positive",),
        canonical_level=("int",),
    )
    add(
        "cvlib.models.fpn.FPNBackbone",
        fpn.FPNBackbone,
        lambda: {"width": 2, "strides": (4, 8), "out_channels": 8},
        width=("posint",),
        strides=("sequence", ("unknown stride", (3, 8)), ("decreasing", (8, 4))),
    )
    add(
        "cvlib.models.fpn.MultiScaleRoIAlign",
        fpn.MultiScaleRoIAlign,
        lambda: {"strides": (4, 8), "output_size": 7, "sampling_ratio": 2, "canonical_scale": 32.0,
                 "canonical_level": 3},
        strides=("sequence", ("zero", (0, 8))),
        output_size=("posint",),
        sampling_ratio=("posint",),
        canonical_scale=("positive",),
        canonical_level=("int",),
    )
    add(
        "cvlib.models.fpn.build_fpn_faster_rcnn",
        fpn.build_fpn_faster_rcnn,
        lambda: {"num_classes": 3, "width": 2, "hidden": 8},
        num_classes=("posint",),
        width=("posint",),
        strides=("sequence", ("unknown stride", (4, 16))),
        scales=("sequence", ("levels of unequal length", ((8.0,), (16.0, 32.0))),
                ("one level", ((8.0, 16.0),))),
        canonical=("sequence", ("one number", (32.0,)), ("zero scale", (0.0, 3))),
        rpn_top_n=("sequence", ("zero", (0, 3))),
        batch_size_per_image=("posint",),
    )
    add(
        "cvlib.data.shapes.ShapesDataset[radius_range]",
        shapes.ShapesDataset,
        lambda: {"num_images": 2, "image_size": 32, "radius_range": (3.0, 8.0)},
        radius_range=(("one number", (3.0,)), ("string", "3, 8"), ("below one pixel", (0.5, 8.0)),
                      ("reversed", (8.0, 3.0)), ("wider than the image", (3.0, 40.0))),
    )
    add("cvlib.data.shapes.held_out_segmentation", shapes.held_out_segmentation, lambda: {"n": 2},
        n=("posint",))
    add(
        "cvlib.data.shapes.held_out_detection[options]",
        shapes.held_out_detection,
        lambda: {"n": 2, "radius_range": (3.0, 8.0)},
        radius_range=(("reversed", (8.0, 3.0)),),
    )


def _tmp():
    import tempfile

    return tempfile.mkdtemp(prefix="cvlib-bad-")


def _ax():
    return _figure().add_subplot()


def _figure():
    from matplotlib.figure import Figure

    return Figure()  # not pyplot's: nothing to close



def _png(size: int = 20) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size + 4, 3), 128, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _photo_cases(add) -> None:
    import numpy as np

    from cvlib.data import photos

    name = photos.names()[0]
    add(
        "cvlib.data.photos.from_array",
        photos.from_array,
        lambda: {"array": np.full((4, 5, 3), 200, dtype=np.uint8)},
        array=(
            ("string", "x"),
            ("int64", np.zeros((4, 5, 3), dtype=np.int64)),
            ("NaN", np.full((4, 5, 3), np.nan)),
            ("above 1", np.full((4, 5, 3), 2.0)),
            ("two channels", np.zeros((4, 5, 2), dtype=np.uint8)),
            ("empty", np.zeros((0, 5, 3), dtype=np.uint8)),
        ),
    )
    add(
        "cvlib.data.photos.fitted_size",
        photos.fitted_size,
        lambda: {"height": 40, "width": 60, "max_side": 32},
        height=("posint",),
        width=("posint",),
        max_side=("posint", ("below 16", 8)),
    )
    add(
        "cvlib.data.photos.resize",
        photos.resize,
        lambda: {"image": images(1)[0], "max_side": 16},
        image=("list", "extra_dim", "int", "nan"),
        max_side=("posint",),
    )
    for fn in ("load", "target"):
        add(f"cvlib.data.photos.{fn}", getattr(photos, fn), lambda: {"name": name, "max_side": 64},
            name=("name",), max_side=("posint",))
    add(
        "cvlib.data.photos.from_path",
        photos.from_path,
        lambda: {"path": _png_file(), "max_side": 16},
        path=(("missing", "/nonexistent/x.png"), ("number", 3), ("None", None), ("not an image", __file__)),
        max_side=("posint",),
    )
    add(
        "cvlib.data.photos.from_upload",
        photos.from_upload,
        lambda: {"value": ({"name": "a.png", "content": memoryview(_png())},), "max_side": 16, "index": 0},
        value=("dict", ("no file", ()), ("not an image", ({"name": "a", "content": b"xx"},))),
        max_side=("posint",),
        index=("int", ("out of range", 3)),
    )


def _coco_cases(add) -> None:
    from torchvision.models import VisionTransformer

    from cvlib.data import coco, shapes
    from cvlib.models import backbones, vit

    scenes = lambda: shapes.ShapesDataset(2, seed=0, image_size=32)  # noqa: E731
    add(
        "cvlib.data.coco.export_coco",
        coco.export_coco,
        lambda: {"dataset": scenes(), "directory": _tmp()},
        dataset=("module",),
        directory=(("number", 3), ("None", None)),
    )

    def exported() -> dict:
        annotation_file, image_dir = coco.export_coco(scenes(), _tmp())
        return {"annotation_file": annotation_file, "image_dir": image_dir, "transforms": None}

    add(
        "cvlib.data.coco.CocoDetection",
        coco.CocoDetection,
        exported,
        # a missing annotation_file raises FileNotFoundError naming it (tests/test_coco.py)
        annotation_file=(("number", 3), ("not JSON", __file__)),
        image_dir=(("missing", "/nonexistent"), ("number", 3)),
        transforms=(("not callable", 3),),
    )
    add(
        "cvlib.models.backbones.torchvision_backbone",
        backbones.torchvision_backbone,
        lambda: {"name": "resnet18", "pretrained": False},
        public={"name": "backbone"},  # the error names the backbone, as tests/test_train_scale.py expects
        name=("choice",),
        pretrained=(("string", "yes"), ("number", 3)),
    )
    torch.manual_seed(0)
    add(
        "cvlib.models.vit.from_torchvision",
        vit.from_torchvision,
        lambda: {"model": VisionTransformer(32, 16, 1, 2, 8, 16, num_classes=3)},
        model=("module", ("another model", nn.Linear(1, 1))),
    )
    add(
        "cvlib.models.vit.torchvision_key",
        vit.torchvision_key,
        lambda: {"name": "encoder.layers.encoder_layer_3.ln_1.weight"},
        name=(("number", 3), ("None", None), ("unknown", "fc.weight")),
    )


def _pretrained_cases(add) -> None:
    from cvlib import pretrained

    for fn in ("weights_of", "checkpoint_path", "download_mb"):
        add(f"cvlib.pretrained.{fn}", getattr(pretrained, fn), lambda: {"name": "resnet18"}, name=("name",))
    _pretrained_loading_cases(add)
    _pretrained_tracing_cases(add)


def _offline(fn):
    """``fn`` with ``$TORCH_HOME`` in a fresh temporary folder and no network: the reachability
    probe says offline and torch.hub's download raises, as tests/test_pretrained.py fakes it."""
    import os
    import tempfile
    import urllib.error
    from unittest import mock

    from cvlib import pretrained

    def no_download(*args, **kwargs):
        raise urllib.error.URLError("no network in tests")

    def call(**kwargs):
        with (
            tempfile.TemporaryDirectory(prefix="cvlib-bad-") as home,
            mock.patch.dict(os.environ, {"TORCH_HOME": home}),
            mock.patch.object(pretrained, "_reachable", lambda url, timeout=5.0: False),
            mock.patch.object(torch.hub, "download_url_to_file", no_download),
        ):
            return fn(**kwargs)

    return call


def _pretrained_loading_cases(add) -> None:
    from cvlib import pretrained

    add(
        "cvlib.pretrained.is_genuine",
        pretrained.is_genuine,
        lambda: {"path": __file__},
        path=(("number", 3), ("None", None), ("list", ["resnet18-f37072fd.pth"])),
    )
    add(
        "cvlib.pretrained.load",
        _offline(pretrained.load),
        lambda: {"name": "resnet18", "download": False, "verbose": False},
        name=("name", ("list", ["resnet18"])),
        download=(("string", "no"), ("number", 0)),
        verbose=(("string", "no"), ("None", None)),
    )
    add(
        "cvlib.pretrained.write_random_weights",
        _offline(pretrained.write_random_weights),
        lambda: {"name": "resnet18", "seed": 0},
        name=("name",),
        seed=("seed",),
    )


_RCNN = {}


def _torchvision_rcnn():
    """torchvision's Faster R-CNN (MobileNet, random weights, 64-pixel inputs), built once:
    trace_rcnn leaves it unchanged."""
    if not _RCNN:
        from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

        torch.manual_seed(0)
        _RCNN["model"] = fasterrcnn_mobilenet_v3_large_320_fpn(
            weights=None, weights_backbone=None, num_classes=3, min_size=64, max_size=64
        ).eval()
    return _RCNN["model"]


def _pretrained_tracing_cases(add) -> None:
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    from cvlib import pretrained

    add(
        "cvlib.pretrained.trace_rcnn",
        pretrained.trace_rcnn,
        lambda: {"model": _torchvision_rcnn(), "image": images(1, 64)[0]},
        model=("module", ("another model", small_cnn())),
        image=("list", "extra_dim", "int", "uint8", "float64", "nan", "above_one", "negative"),
    )
    maps = lambda: {"0": torch.rand(1, 4, 8, 8, generator=_g()), "1": torch.rand(1, 4, 4, 4, generator=_g(1))}  # noqa: E731
    add(
        "cvlib.pretrained.multiscale_anchors",
        pretrained.multiscale_anchors,
        lambda: {
            "generator": AnchorGenerator(sizes=((16,), (32,)), aspect_ratios=((0.5, 1.0, 2.0),) * 2),
            "image_size": (32, 32),
            "features": maps(),
        },
        generator=("module", ("another module", nn.Linear(1, 1))),
        image_size=("pair",),
        features=(
            "dict",
            ("a map too few", {"0": torch.rand(1, 4, 8, 8)}),
            ("not a tensor", {"0": [[0.0]], "1": torch.rand(1, 4, 4, 4)}),
            ("three dims", {"0": torch.rand(4, 8, 8), "1": torch.rand(1, 4, 4, 4)}),
            ("larger than the image", {"0": torch.rand(1, 4, 64, 64), "1": torch.rand(1, 4, 4, 4)}),
        ),
    )

    def roi_inputs() -> dict:
        pool = MultiScaleRoIAlign(["0", "1"], 2, 2)
        features = {"0": torch.rand(1, 4, 16, 16, generator=_g()),
                    "1": torch.rand(1, 4, 8, 8, generator=_g(1))}
        pool(features, [boxes() * 2], [(64, 64)])  # sets its scales, as the model's forward does
        return {"pool": pool, "features": features, "boxes": boxes() * 2}

    add(
        "cvlib.pretrained.multiscale_roi_align",
        pretrained.multiscale_roi_align,
        roi_inputs,
        pool=(
            "module",
            ("not run yet", MultiScaleRoIAlign(["0", "1"], 2, 2)),
            ("another module", nn.Linear(1, 1)),
        ),
        features=(
            "dict",
            ("a map missing", {"0": torch.rand(1, 4, 16, 16)}),
            ("int maps", {"0": torch.ones(1, 4, 16, 16, dtype=torch.long),
                          "1": torch.ones(1, 4, 8, 8, dtype=torch.long)}),
        ),
        boxes=BOXES,
    )


def _scale_out_cases(add) -> None:
    """The scale-out helpers of cvlib.train (issue 17): metrics log, sharding, --data, processes."""
    import argparse
    import os
    import tempfile

    from torch.utils.data import DataLoader

    from cvlib import train

    def metrics_log(**kwargs):  # closes the file it opens
        train.MetricsLog(**kwargs).close()

    add(
        "cvlib.train.MetricsLog",
        metrics_log,
        lambda: {"out": _tmp(), "resume_step": 0},
        out=(("number", 3), ("None", None), ("a file", __file__)),
        resume_step=("nonnegint",),
    )
    add(
        "cvlib.train.shard_loader",
        train.shard_loader,
        lambda: {"loader": DataLoader(list(range(4)), batch_size=2), "seed": 0},
        loader=(("number", 3), ("None", None), ("string", "batches")),
        seed=("seed",),
    )
    add(
        "cvlib.train.open_dataset",
        train.open_dataset,
        lambda: {"spec": "shapes:2"},
        spec=(
            ("number", 3),
            ("None", None),
            ("unknown kind", "voc:x"),
            ("no count", "shapes:"),
            ("negative count", "shapes:-1"),
            ("no image folder", "coco:a.json"),
        ),
    )
    add(
        "cvlib.train.start_processes",
        train.start_processes,
        lambda: {"device": torch.device("cpu")},
        device=(("string", "cpu"), ("number", 0), ("None", None)),
    )
    unused = os.path.join(tempfile.gettempdir(), "cvlib-bad-unused")  # bad args fail before writing

    def data_args(out=unused, **changes) -> argparse.Namespace:
        flags = {"name": "yolo", "data": "shapes:2", "backbone": None, "epochs": 1, "max_steps": 1,
                 "batch_size": 2, "lr": 1e-3, "out": out, "resume": False, "amp": False}
        return argparse.Namespace(**{**flags, **changes})

    add(
        "cvlib.train.train_on_data",
        train.train_on_data,
        lambda: {"args": data_args(_tmp()), "device": torch.device("cpu"),
                 "command": "python -m cvlib.train yolo --data shapes:2"},
        args=(
            ("dict", vars(data_args())),
            ("None", None),
            ("a field missing", argparse.Namespace(name="yolo", data="shapes:2")),
            ("unknown model", data_args(name="rcnn")),
            ("bad data", data_args(data="voc:x")),
            ("unknown backbone", data_args(backbone="vgg")),
            ("zero epochs", data_args(epochs=0)),
            ("fractional batch size", data_args(batch_size=1.5)),
            ("negative lr", data_args(lr=-1.0)),
            ("NaN lr", data_args(lr=math.nan)),
            ("out a file", data_args(out=__file__)),
            ("string resume", data_args(resume="yes")),
        ),
        device=(("string", "cpu"), ("None", None)),
        command=(("number", 3), ("None", None)),
    )


def _exercise_cases(add) -> None:
    from cvlib import exercises, ops

    add(
        "cvlib.exercises.exercise",
        exercises.exercise,
        lambda: {"name": "box_iou"},
        name=("choice", ("list", ["box_iou"]), ("None", None)),
    )
    add(
        "cvlib.exercises.check",
        exercises.check,
        lambda: {"name": "box_iou", "fn": ops.box_iou},
        name=("choice", ("list", ["box_iou"])),
        fn=(("number", 3), ("None", None), ("string", "box_iou")),
    )


def _stuff_and_dilation_cases(add) -> None:
    from cvlib import metrics
    from cvlib.data import shapes
    from cvlib.models import fcn, panoptic

    add(
        "cvlib.models.fcn.dilated_receptive_field",
        fcn.dilated_receptive_field,
        lambda: {"dilations": [1, 2], "kernel_size": 3},
        dilations=(("number", 3), ("a zero rate", [1, 0]), ("a float rate", [1.5])),
        kernel_size=("posint",),
    )
    for name in ("input_gradient", "receptive_field_coverage"):
        add(
            f"cvlib.models.fcn.{name}",
            getattr(fcn, name),
            lambda: {"model": fcn.DilatedFCN(3, 2, (1, 2)), "size": 17},
            model=("module",),
            size=("posint",),
        )

    add(
        "cvlib.data.shapes.ShapesDataset[stuff]",
        shapes.ShapesDataset,
        lambda: {"num_images": 2, "image_size": 32, "stuff": True},
        stuff=(("number", 1), ("string", "yes"), ("None", None)),
    )
    add("cvlib.data.shapes.held_out_detection[stuff]", shapes.held_out_detection,
        lambda: {"n": 2, "stuff": True}, stuff=(("number", 1), ("None", None)))
    add(
        "cvlib.metrics.mask_iou",
        metrics.mask_iou,
        lambda: {"masks1": torch.rand(2, 5, 6, generator=_g()) > 0.5,
                 "masks2": torch.rand(3, 5, 6, generator=_g(1)) > 0.5},
        masks1=("list", "extra_dim", "fewer_dims", "float"),
        masks2=("list", "extra_dim", ("another size", torch.ones(3, 5, 5, dtype=torch.bool))),
    )
    semantic = lambda: torch.tensor([[10, 10, 1], [10, 11, 1]])  # noqa: E731
    detections = lambda: {"labels": torch.tensor([1]), "scores": torch.tensor([0.9]),  # noqa: E731
                          "masks": torch.rand(1, 1, 2, 3, generator=_g())}
    add(
        "cvlib.models.panoptic.panoptic_merge",
        panoptic.panoptic_merge,
        lambda: {"detections": detections(), "semantic": semantic(), "stuff": [10, 11],
                 "score_threshold": 0.5, "mask_threshold": 0.5, "overlap_threshold": 0.5, "stuff_area": 1,
                 "void": -1},
        detections=("dict", ("masks of another size", {**detections(), "masks": torch.rand(1, 1, 3, 3)}),
                    ("NaN score", {**detections(), "scores": torch.tensor([math.nan])})),
        semantic=("list", "extra_dim", "float"),
        stuff=("sequence", ("a float class", [10.5])),
        score_threshold=("finite",),
        mask_threshold=("finite",),
        overlap_threshold=("unit",),
        stuff_area=("nonnegint",),
        void=("int",),
    )
    add(
        "cvlib.models.panoptic.panoptic_from_semantic",
        panoptic.panoptic_from_semantic,
        lambda: {"semantic": semantic(), "things": [1]},
        semantic=("list", "extra_dim", "float"),
        things=("sequence", ("a float class", [1.5])),
    )
    add(
        "cvlib.models.panoptic.panoptic_target",
        panoptic.panoptic_target,
        lambda: {"target": {"semantic": semantic(), "masks": semantic()[None] == 1}},
        target=("dict", ("masks of another size",
                         {"semantic": semantic(), "masks": torch.ones(1, 3, 3).bool()})),
    )


def _png_file() -> str:
    import os

    path = os.path.join(_tmp(), "a.png")
    with open(path, "wb") as f:
        f.write(_png())
    return path

# Public callables without a case, and why.
INTERNAL_LAYER = "a layer inside a model: its inputs are the model's own tensors, checked by the model"
EXEMPT = {
    "cvlib.models.blocks.conv_bn_relu": INTERNAL_LAYER,
    "cvlib.models.blocks.vgg_features": INTERNAL_LAYER,
    "cvlib.models.resnet.BasicBlock": INTERNAL_LAYER,
    "cvlib.models.detection.Backbone": INTERNAL_LAYER,
    "cvlib.models.rcnn.BoxHead": INTERNAL_LAYER,
    "cvlib.models.rcnn.RoIHeads": INTERNAL_LAYER,
    "cvlib.models.rpn.RegionProposalNetwork": INTERNAL_LAYER,
    "cvlib.models.mask_rcnn.MaskHead": INTERNAL_LAYER,
    "cvlib.models.mask_rcnn.MaskRoIHeads": INTERNAL_LAYER,
    "cvlib.models.keypoint_rcnn.KeypointHead": INTERNAL_LAYER,
    "cvlib.models.keypoint_rcnn.KeypointRoIHeads": INTERNAL_LAYER,
    "cvlib.models.detr.EncoderLayer": INTERNAL_LAYER,
    "cvlib.models.detr.DecoderLayer": INTERNAL_LAYER,
    "cvlib.models.detr.MLP": INTERNAL_LAYER,
    "cvlib.models.vit.MultiHeadAttention": INTERNAL_LAYER,
    "cvlib.models.vit.RMSNorm": INTERNAL_LAYER,
    "cvlib.models.vit.MLP": INTERNAL_LAYER,
    "cvlib.models.vit.SwiGLU": INTERNAL_LAYER,
    "cvlib.models.vit.MixtureOfExperts": INTERNAL_LAYER,
    "cvlib.models.vit.Block": INTERNAL_LAYER,
    "cvlib.explain.hooks.capture": "a context manager that registers a hook on a layer resolve_layer checked",
    "cvlib.recipes.Recipe": "a row of the recipe table (a dataclass), written in cvlib/recipes.py itself",
    "cvlib.recipes.run": "trains for minutes; its name is checked like recipes.load_model's (same lookup)",
    "cvlib.train.main": "the command line (issue 17 owns it); argparse rejects bad arguments",
    "cvlib.train.default_device": "takes no argument",
    "cvlib.train.rank": "takes no argument",
    "cvlib.train.is_distributed": "takes no argument",
    "cvlib.pretrained.main": "the command line; argparse rejects bad arguments",
    "cvlib.data.photos.names": "takes no argument",
    "cvlib.models.backbones.ImageNetBackbone": "built by torchvision_backbone; its images come from a model",
    "cvlib.data.photos.coco": "takes no argument",
    "cvlib.data.photos.category_names": "takes no argument",
    "cvlib.weights.ChecksumError": "an exception class",
    "cvlib.weights.CheckpointError": "an exception class",
    "cvlib.widgets.Explorer": "built by explore, which checks the figure and controls",
    "cvlib.pretrained.Pretrained": "a record (a NamedTuple) that pretrained.load returns",
}


def public_callables() -> list[str]:
    """Qualified names of every function and class in the ``__all__`` of a cvlib module."""
    names = []
    for info in pkgutil.walk_packages(cvlib.__path__, "cvlib."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        for attr in getattr(module, "__all__", ()):
            obj = getattr(module, attr)
            if callable(obj) and not inspect.ismodule(obj) and getattr(obj, "__module__", None) == info.name:
                names.append(f"{info.name}.{attr}")
    return sorted(names)


CASES = _cases()


def covered(name: str) -> bool:
    """Whether the public callable ``name`` has a case: by name (a class's ``.forward`` counts
    too) or by the object a case calls (``cvlib.explain.saliency`` is ``...gradients.saliency``)."""
    module, _, attr = name.rpartition(".")
    obj = getattr(importlib.import_module(module), attr)
    return (
        name in CASES
        or any(key.startswith((name + ".", name + "[")) for key in CASES)
        or any(case.call is obj for case in CASES.values())
    )


def attempts(name: str):
    """Every (public argument name, label, kwargs) of the battery of case ``name``: one bad value
    at a time."""
    case = CASES[name]
    for argument, kinds in case.bad.items():
        for kind in kinds:
            if isinstance(kind, tuple):  # an explicit (label, value)
                pairs = [kind]
            else:
                pairs = bad_values(kind, case.valid().get(argument))
            for label, value in pairs:
                kwargs = case.valid()
                kwargs[argument] = value
                yield case.named(argument), f"{kind if isinstance(kind, str) else 'value'}: {label}", kwargs


def clear(error: BaseException, argument: str) -> bool:
    """A clear rejection: a ``TypeError`` / ``ValueError`` whose message names ``argument``."""
    import re

    return isinstance(error, (TypeError, ValueError)) and re.search(rf"\b{re.escape(argument)}\b", str(error))
