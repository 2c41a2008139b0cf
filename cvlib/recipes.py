"""Named training recipes: the models that the notebooks load instead of training them.

A recipe is a row of one table, :data:`RECIPES` (at the end of the training functions, read it
like nanoGPT's config): its **name**, its architecture (``build``: a model class or builder with
its arguments), **how it is trained** (``train(model, device) -> held-out metrics``: one of the
training functions below, with its budget) and a description. Both the architecture and the
training live here, so a checkpoint is always rebuilt with the architecture it was trained with:
:func:`load_model` rebuilds a recipe's model and loads its checkpoint.

``python -m cvlib.train NAME`` (:func:`run`) trains one and saves ``data/weights/NAME.pt`` with
its checksum and provenance (``cvlib.weights``, which stores files and knows no recipe).
:data:`DATA_RECIPES`, at the end, are the architectures that train on your own data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache, partial
from itertools import islice
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cvlib import weights
from cvlib._checks import describe
from cvlib.data import (
    CLASSES,
    KEYPOINT_SIGMAS,
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
)
from cvlib.metrics import (
    accuracy,
    boundary_f_score,
    confusion_matrix,
    evaluate_detections,
    mean_iou,
    pixel_accuracy,
)
from cvlib.models.backbones import torchvision_backbone
from cvlib.models.blocks import SmallCNN
from cvlib.models.detr import DETR
from cvlib.models.fcn import FCN, DilatedFCN, PatchClassifier
from cvlib.models.fpn import build_fpn_faster_rcnn
from cvlib.models.keypoint_rcnn import build_keypoint_rcnn, keypoints_from_boxes, mean_keypoint_layout
from cvlib.models.mask_rcnn import build_mask_rcnn
from cvlib.models.rcnn import RCNN, build_fast_rcnn, build_faster_rcnn
from cvlib.models.resnet import ResNet
from cvlib.models.single import SingleObjectDetector
from cvlib.models.single import evaluate as evaluate_single_object
from cvlib.models.ssd import SSD
from cvlib.models.unet import UNet
from cvlib.models.vit import ViT
from cvlib.models.yolo import YOLO, YOLOv2
from cvlib.ops.anchors import kmeans_anchors
from cvlib.train import default_device, detect, fit, predict, seed_everything

__all__ = ["Recipe", "RECIPES", "run", "load_model"]


@dataclass(frozen=True)
class Recipe:
    """``build()`` makes the untrained model; ``train(model, device)`` trains it in place and
    returns the held-out metrics recorded with the checkpoint."""

    name: str
    build: Callable[[], nn.Module]
    train: Callable[[nn.Module, torch.device], dict[str, float]]
    description: str
    seed: int = 0


def run(name: str, device: str | torch.device | None = None, command: str | None = None) -> Path:
    """Train recipe ``name`` from scratch and save its checkpoint; return the file's path."""
    recipe = RECIPES[_check_recipe(name)]
    device = torch.device(device) if device is not None else default_device()
    seed_everything(recipe.seed)
    model = recipe.build()
    start = time.perf_counter()
    metrics = recipe.train(model, device)
    seconds = time.perf_counter() - start
    meta = {
        "recipe": name,
        "description": recipe.description,
        "command": command or f"python -m cvlib.train {name}",
        "seed": recipe.seed,
        "device": str(device),
        "train_seconds": round(seconds, 1),
        "torch": str(torch.__version__),
        "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "metrics": {k: round(float(v), 4) for k, v in metrics.items()},
    }
    return weights.save(name, model.cpu(), meta)


def load_model(
    name: str, device: torch.device | str = "cpu", directory: str | Path = weights.WEIGHTS_DIR
) -> nn.Module:
    """The trained model of recipe ``name``, rebuilt by the recipe, in eval mode on ``device``."""
    checkpoint = weights.load(_check_recipe(name), directory)
    model = RECIPES[name].build()
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as error:
        raise weights.CheckpointError(
            f"{name}.pt does not fit the model of recipe {name!r} ({str(error).splitlines()[0]}); "
            f"rebuild it with `python -m cvlib.train {name}`"
        ) from error
    return model.to(device).eval()


def _check_recipe(name) -> str:
    if not isinstance(name, str) or name not in RECIPES:
        raise ValueError(f"name must be a recipe, one of {sorted(RECIPES)}, got {describe(name)}")
    return name


# ---------------------------------------------------------------------------------------------
# 00 tasks and data, 11 understanding: a small classifier of single-object scenes


def train_classifier(model: nn.Module, device: torch.device) -> dict[str, float]:
    """2,000 single-object scenes (seed 0), 8 epochs of batches of 64, AdamW lr 1e-3."""
    train_set = ShapesClassification(2000, seed=0)
    loader = DataLoader(train_set, batch_size=64, shuffle=True, collate_fn=collate_classification)
    fit(model, loader, loss_fn=nn.functional.cross_entropy, epochs=8, lr=1e-3, device=device)
    return {"val_accuracy": _val_accuracy(model, device)}


def fit_random_labels(model: nn.Module, device: torch.device, num_scenes: int = 256, epochs: int = 40,
                      seed: int = 0, held_out: int = 500) -> dict[str, float]:
    """Train ``model`` as ``shapes_cnn`` is trained (scenes of seed 0, batches of 64, AdamW lr
    1e-3) but on labels shuffled by a fixed permutation (``torch.randperm`` seeded ``seed``): the
    label-randomisation check of Adebayo et al. (2018). The model must *memorise* the shuffled
    labels, as in the paper: the first ``num_scenes`` scenes, ``epochs`` passes (the default,
    256 scenes x 40 passes = 160 steps, fits them all; 2000 scenes x 8 passes fit 36%).
    Returns the accuracy on the training scenes against the shuffled labels (memorisation) and
    on ``held_out`` held-out scenes (seed 1) against the true labels (chance is 1/3)."""
    images, labels = collate_classification(list(ShapesClassification(num_scenes, seed=0)))
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    loader = DataLoader(TensorDataset(images, shuffled), batch_size=64, shuffle=True)
    fit(model, loader, loss_fn=nn.functional.cross_entropy, epochs=epochs, lr=1e-3, device=device, seed=seed)
    unseen, true_labels, _ = held_out_classification(held_out)
    return {"train_accuracy_shuffled_labels": accuracy(predict(model, images, device=device), shuffled),
            "val_accuracy_true_labels": accuracy(predict(model, unseen, device=device), true_labels)}


def _val_accuracy(model: nn.Module, device: torch.device) -> float:
    """Accuracy on the 500 held-out classification scenes (``held_out_classification(500)``)."""
    images, labels, _ = held_out_classification(500)
    return accuracy(predict(model, images, device=device), labels)


# ---------------------------------------------------------------------------------------------
# 04 detection basics: single-object detection (classification + localization)


def train_single_object(model: nn.Module, device: torch.device) -> dict[str, float]:
    """3,000 one-object scenes, 10 epochs of batches of 64, box loss weighted 10."""
    loader = DataLoader(SingleObjectDataset(3000, seed=0), batch_size=64, shuffle=True,
                        collate_fn=collate_single_object)
    fit(model, loader, loss_fn=partial(model.loss, box_weight=10.0), epochs=10, lr=1e-3, device=device)
    return evaluate_single_object(model, *collate_single_object(list(SingleObjectDataset(500, seed=1))))


# ---------------------------------------------------------------------------------------------
# 03 semantic segmentation: U-Net with and without skips, FCN, the sliding-window patch classifier

SEGMENTATION_STEPS = 500  # the same budget for every segmenter: 500 batches of 32 scenes


def train_segmenter(model: nn.Module, device: torch.device) -> dict[str, float]:
    """``SEGMENTATION_STEPS`` batches of 32 of 4,000 scenes, AdamW lr 3e-3, per-pixel cross-entropy."""
    scenes = ShapesDataset(4000, seed=0)
    loader = DataLoader(scenes, batch_size=32, shuffle=True, collate_fn=collate_segmentation)
    fit(model, loader, loss_fn=nn.functional.cross_entropy, epochs=10, max_steps=SEGMENTATION_STEPS,
        lr=3e-3, device=device)
    return _segmentation_metrics(model, device, num_scenes=200)


def _segmentation_metrics(model: nn.Module, device: torch.device, num_scenes: int) -> dict[str, float]:
    """mIoU, pixel accuracy and boundary F (tolerance 2) on the first ``num_scenes`` held-out
    scenes (``held_out_segmentation(num_scenes)``), and the boundary F at tolerance 0."""
    images, semantic = held_out_segmentation(num_scenes)
    pred = predict(model, images, batch_size=50, device=device).argmax(1)
    confusion = confusion_matrix(pred, semantic, num_classes=4)
    return {"miou": mean_iou(confusion), "pixel_accuracy": pixel_accuracy(confusion),
            "boundary_f": boundary_f_score(pred, semantic),
            "boundary_f0": boundary_f_score(pred, semantic, tolerance=0)}


STUFF_SEGMENTER_CLASSES = 6  # 0 (unused in stuff scenes), 3 things, sky and ground


def train_stuff_segmenter(model: nn.Module, device: torch.device) -> dict[str, float]:
    """:func:`train_segmenter` on stuff scenes (``ShapesDataset(4000, seed=0, stuff=True)``: sky
    and ground behind the objects); mIoU on the first 200 held-out stuff scenes (over the
    classes true or predicted there)."""
    scenes = ShapesDataset(4000, seed=0, stuff=True)
    loader = DataLoader(scenes, batch_size=32, shuffle=True, collate_fn=collate_segmentation)
    fit(model, loader, loss_fn=nn.functional.cross_entropy, epochs=10, max_steps=SEGMENTATION_STEPS,
        lr=3e-3, device=device)
    images, semantic = collate_segmentation(list(ShapesDataset(200, seed=1, stuff=True)))
    pred = predict(model, images, batch_size=50, device=device).argmax(1)
    return {"miou": mean_iou(confusion_matrix(pred, semantic, num_classes=STUFF_SEGMENTER_CLASSES))}


UNET_CURVE_STEPS = 1500  # 3x the segmentation budget, for the U-Net with and without skips
UNET_CURVE_EVERY = 100  # a held-out evaluation every 100 steps
UNET_CURVE_SCENES = 100  # on the first 100 held-out scenes


def unet_curves() -> dict:
    """Held-out quality of both U-Nets along training (``data/weights/unet_curves.json``,
    checksummed): ``{"step": [...], "unet": {"miou": [...], "boundary_f0": [...], ...},
    "unet_noskip": {...}}``, one value per evaluation step."""
    return weights.load_json("unet_curves")


def _segmentation_batches(seed: int):
    """Endless shuffled batches of 32 of the 4,000 training scenes, epoch after epoch."""
    loader = DataLoader(ShapesDataset(4000, seed=0), batch_size=32, shuffle=True,
                        collate_fn=collate_segmentation, generator=torch.Generator().manual_seed(seed))
    while True:
        yield from loader


def train_unet_curves(model: nn.Module, device: torch.device) -> dict[str, float]:
    """Train the U-Net without skips (``model``, saved) and a U-Net with skips (seed 0 too) for
    ``UNET_CURVE_STEPS`` steps of the segmentation recipe (AdamW, lr 3e-3, batches of 32),
    evaluating both every ``UNET_CURVE_EVERY`` steps; write the curves to ``unet_curves.json``."""
    steps = list(range(UNET_CURVE_EVERY, UNET_CURVE_STEPS + 1, UNET_CURVE_EVERY))
    curves = {"recipe": "unet_curves", "step": steps, "held_out_scenes": UNET_CURVE_SCENES}
    for name in ("unet_noskip", "unet"):
        net = model  # trained in place: the checkpoint is the U-Net without skips
        if name == "unet":  # a fresh U-Net with skips, initialised like the shipped one
            seed_everything(0)
            net = RECIPES["unet"].build()
        optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
        batches, curve = _segmentation_batches(seed=0), {}
        for _ in steps:
            fit(net, islice(batches, UNET_CURVE_EVERY), loss_fn=nn.functional.cross_entropy,
                optimizer=optimizer, device=device, seed=None, desc=name)
            for key, value in _segmentation_metrics(net, device, UNET_CURVE_SCENES).items():
                curve.setdefault(key, []).append(round(value, 4))
        curves[name] = curve
    weights.save_json("unet_curves", curves)
    return {f"{name}_{key}": curves[name][key][-1]
            for name in ("unet_noskip", "unet") for key in ("miou", "boundary_f0")}


# ---------------------------------------------------------------------------------------------
# 05 R-CNN family and 08 Mask R-CNN: two-stage detectors on 64x64 scenes (width-8 backbone)


def train_detector(model: nn.Module, device: torch.device, steps: int, start_from: str | None = None,
                   iou_types: tuple[str, ...] = ("bbox",)) -> dict[str, float]:
    """``steps`` batches of 8 of 8,000 scenes (seed 0), AdamW lr 1e-3. ``start_from``: a shipped
    checkpoint to start from (checksum checked; only the new heads stay as initialised). Returns
    the COCO metrics of :func:`_evaluate_detector` for ``iou_types``."""
    if start_from is not None:
        missing = model.load_state_dict(weights.load(start_from)["state_dict"], strict=False).missing_keys
        if not all(key.startswith("roi_heads.mask_head.") for key in missing):
            raise RuntimeError(f"{start_from}.pt does not fit this model: {missing}")
    loader = DataLoader(ShapesDataset(8000, seed=0), batch_size=8, shuffle=True, collate_fn=collate_detection)
    fit(model, loader, epochs=10, max_steps=steps, lr=1e-3, device=device)
    return _evaluate_detector(model, device, iou_types)


def _evaluate_detector(model: nn.Module, device: torch.device, iou_types=("bbox",)) -> dict[str, float]:
    """COCO mAP, mAP50 and mAP75 of a detector on ``held_out_detection(200)``, the held-out
    scenes of every detection recipe. With ``iou_types=("bbox", "segm")`` (Mask R-CNN) both box
    and mask metrics, prefixed ``box_`` and ``mask_``."""
    images, targets = held_out_detection(200)
    detections = detect(model, images, device=device)
    metrics = {}
    for iou_type in iou_types:
        coco = evaluate_detections(detections, targets, iou_type=iou_type)
        prefix = {"bbox": "box_", "segm": "mask_"}[iou_type] if len(iou_types) > 1 else ""
        metrics.update({prefix + key: coco[key] for key in ("map", "map_50", "map_75")})
    return metrics


# ---------------------------------------------------------------------------------------------
# 06 YOLO: a single-stage detector (S = 8, B = 2), plain and focal confidence, width-16 and -8 backbones

YOLO_STEPS = 2000  # batches of 32 scenes, each scene seen once


def train_yolo(model: nn.Module, device: torch.device) -> dict[str, float]:
    """``YOLO_STEPS`` batches of 32 new scenes, AdamW with a one-cycle learning rate up to 2e-3."""
    scenes = ShapesDataset(YOLO_STEPS * 32, seed=0)
    loader = DataLoader(scenes, batch_size=32, shuffle=True, collate_fn=collate_detection)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=YOLO_STEPS)
    fit(model, loader, max_steps=YOLO_STEPS, optimizer=optimizer, scheduler=scheduler, device=device)
    return _evaluate_detector(model, device)


# ---------------------------------------------------------------------------------------------
# 06 Anchors in single-stage detectors: YOLO v1, YOLO with k-means priors (v2) and an SSD-style
# multi-scale head, trained alike on scenes of elongated shapes

ELONGATION = 3.0  # shapes stretched to aspect ratios between 1 and 3
ANCHOR_STEPS = 1000  # batches of 32 elongated scenes, the same for the three compared models
NUM_PRIORS = 5  # YOLO v2's k


def elongated_scenes(num_images: int, seed: int = 0) -> ShapesDataset:
    """The elongated scenes of the anchor comparison (seed 0 trains, seed 1 is held out)."""
    return ShapesDataset(num_images, seed=seed, elongation=ELONGATION)


@lru_cache(maxsize=1)
def anchor_training_boxes() -> torch.Tensor:
    """The xyxy boxes ``[N, 4]`` of the first 1,000 elongated training scenes, where the
    priors come from."""
    return torch.cat([target["boxes"] for _, target in elongated_scenes(1000)])


def anchor_priors() -> torch.Tensor:
    """YOLO v2's priors ``[NUM_PRIORS, 2]`` (width, height in pixels): k-means with a 1 - IoU
    distance on :func:`anchor_training_boxes`."""
    return kmeans_anchors(anchor_training_boxes(), NUM_PRIORS)


def yolo_with_priors(**kwargs) -> YOLOv2:
    """``YOLOv2`` with the priors of :func:`anchor_priors` (``kwargs``: the rest of its arguments)."""
    return YOLOv2(anchor_priors(), **kwargs)


def train_on_elongated(model: nn.Module, device: torch.device) -> dict[str, float]:
    """``ANCHOR_STEPS`` batches of 32 new elongated scenes, as ``train_yolo`` trains (AdamW,
    one-cycle learning rate up to 2e-3); then :func:`evaluate_on_elongated`."""
    loader = DataLoader(elongated_scenes(ANCHOR_STEPS * 32), batch_size=32, shuffle=True,
                        collate_fn=collate_detection)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=ANCHOR_STEPS)
    fit(model, loader, max_steps=ANCHOR_STEPS, optimizer=optimizer, scheduler=scheduler, device=device)
    return evaluate_on_elongated(model, device)


def evaluate_on_elongated(model: nn.Module, device: torch.device) -> dict[str, float]:
    """COCO mAP, AP50 and AP75 on 200 held-out elongated scenes, and mAP on the default
    held-out scenes (``default_scenes_map``)."""
    images, targets = collate_detection(list(elongated_scenes(200, seed=1)))
    elongated = evaluate_detections(detect(model, images, device=device), targets)
    images, targets = held_out_detection(200)
    default = evaluate_detections(detect(model, images, device=device), targets)
    return {"map": elongated["map"], "map_50": elongated["map_50"], "map_75": elongated["map_75"],
            "default_scenes_map": default["map"]}


# ---------------------------------------------------------------------------------------------
# 01 attention and ViT: a ViT of single-object scenes; Pre-LN vs Post-LN and ResNet vs plain twins;
# plain-20 vs plain-56 (the degradation problem)

VIT_STEPS = 1500  # batches of 64 single-object scenes
TWIN_STEPS = 400  # the same budget for both twins of a pair, each trained with seeds 0, 1 and 2
TWIN_SEEDS = (0, 1, 2)
TWIN_WARMUP = {"vit_postln_warmup": 100}  # steps of linear learning-rate warm-up; the others have none
TWIN_NAMES = ("vit_preln", "vit_postln", "vit_postln_warmup", "resnet", "resnet_plain", "resnet_plain20")
DEEP_VIT = {"image_size": 64, "patch_size": 16, "dim": 64, "depth": 12, "heads": 4}  # the ViT twins


def _classification_batches(num_images: int, seed: int):
    """Shuffled batches of 64 ``ShapesClassification`` scenes, made once (the dataset draws each
    scene on the fly) and reshuffled with ``seed``."""
    images, labels = collate_classification(list(ShapesClassification(num_images, seed=0)))
    return DataLoader(TensorDataset(images, labels), batch_size=64, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def train_vit(model: nn.Module, device: torch.device) -> dict[str, float]:
    """``VIT_STEPS`` batches of 64 of 6,000 scenes, AdamW lr 1e-3, weight decay 0.05."""
    fit(model, _classification_batches(6000, seed=0), loss_fn=nn.functional.cross_entropy, epochs=100,
        max_steps=VIT_STEPS, lr=1e-3, weight_decay=0.05, device=device)
    return {"val_accuracy": _val_accuracy(model, device)}


def twin_history(name: str) -> dict:
    """The training losses of twin recipe ``name`` (``data/weights/NAME.json``, checksummed):
    ``{"seeds": [...], "loss": [[one value per step] per seed], "val_accuracy": [per seed]}``."""
    return weights.load_json(name)


def train_twin(name: str, seed: int, steps: int = TWIN_STEPS, device: str | torch.device = "cpu",
               model: nn.Module | None = None, progress: bool | None = None) -> tuple[nn.Module, list[float]]:
    """One seed of twin recipe ``name``: a fresh model (initialised after seeding with ``seed``,
    unless ``model`` is given) trained for ``steps`` steps of AdamW at lr 1e-3 (warm-up:
    ``TWIN_WARMUP``) on batches of 64 scenes shuffled with ``seed``. Returns the model and its
    loss at every step; the first ``steps`` losses of the stored curve are reproduced (notebook 01)."""
    if name not in TWIN_NAMES:
        raise ValueError(f"name must be a twin recipe, one of {TWIN_NAMES}, got {name!r}")
    if model is None:
        seed_everything(seed)
        model = RECIPES[name].build()
    warmup = TWIN_WARMUP.get(name, 1)  # lr factor min(1, (step + 1) / warmup): 1 = no warm-up
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    ramp = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1, (step + 1) / warmup))
    losses = fit(model, _classification_batches(3000, seed), loss_fn=nn.functional.cross_entropy,
                 epochs=100, max_steps=steps, optimizer=optimizer, scheduler=ramp,
                 device=device, seed=seed, progress=progress)["loss"]
    return model, losses


def train_twins(model: nn.Module, device: torch.device, name: str) -> dict[str, float]:
    """Train the recipe's model (seed 0) and two more of the same build (seeds 1, 2) with
    :func:`train_twin`; write every loss curve to ``data/weights/NAME.json``."""
    history = {"recipe": name, "steps": TWIN_STEPS, "seeds": list(TWIN_SEEDS), "loss": [], "val_accuracy": []}
    for seed in TWIN_SEEDS:
        first = seed == TWIN_SEEDS[0]  # seed 0 trains the recipe's model, the others a fresh twin
        model, losses = train_twin(name, seed, device=device, model=model if first else None)
        history["loss"].append([round(v, 4) for v in losses])
        history["val_accuracy"].append(round(_val_accuracy(model, device), 4))
    weights.save_json(name, history)
    last = [sum(losses[-50:]) / 50 for losses in history["loss"]]
    return {"val_accuracy": history["val_accuracy"][0], "last50_loss_seed0": last[0],
            "last50_loss_mean_3_seeds": sum(last) / len(last)}


# ---------------------------------------------------------------------------------------------
# 07 DETR: set prediction with a transformer, Hungarian matching, no anchors, no NMS

DETR_STEPS = 4000  # batches of 32 scenes; the learning rate drops 10x for the last quarter
DETR_TIME_LIMIT = 45 * 60  # seconds: a safety stop on a slow, shared CPU
SMALL_DETR = {"width": 16, "d_model": 128, "num_heads": 4, "num_encoder_layers": 3, "num_decoder_layers": 3,
              "dim_feedforward": 256, "num_queries": 10}


def train_detr(model: nn.Module, device: torch.device) -> dict[str, float]:
    """``DETR_STEPS`` batches of 32 new scenes, AdamW lr 5e-4 (x0.1 for the last quarter),
    gradients clipped at 0.1."""
    scenes = ShapesDataset(200_000, seed=0)
    loader = DataLoader(scenes, batch_size=32, shuffle=True, collate_fn=collate_detection)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[DETR_STEPS * 3 // 4], gamma=0.1)
    history = fit(model, loader, max_steps=DETR_STEPS, time_limit=DETR_TIME_LIMIT, optimizer=optimizer,
                  scheduler=scheduler, grad_clip=0.1, device=device)
    return {**_evaluate_detector(model, device), "steps": history["step"][-1]}


# ---------------------------------------------------------------------------------------------
# 08 Keypoints: the shipped Mask R-CNN plus a keypoint head (Keypoint R-CNN)

KEYPOINT_LAYOUT_SCENES = 300  # training scenes whose average keypoint layout the baseline uses


def keypoint_baseline(detections: list[dict]) -> list[dict]:
    """``detections`` with the keypoints of a baseline that has no keypoint head: each class's
    average keypoint layout inside its box (over ``KEYPOINT_LAYOUT_SCENES`` training scenes,
    :func:`~cvlib.models.keypoint_rcnn.mean_keypoint_layout`) placed in each detected box."""
    train = ShapesDataset(KEYPOINT_LAYOUT_SCENES, seed=0, keypoints=True)
    layout = mean_keypoint_layout([train[i][1] for i in range(len(train))], train.num_classes)
    return [{**d, "keypoints": keypoints_from_boxes(d["boxes"], d["labels"], layout)} for d in detections]


def keypoint_metrics(detections: list[dict], targets: list[dict]) -> dict[str, float]:
    """Keypoint AP (OKS with ``cvlib.data.shapes.KEYPOINT_SIGMAS``, COCO's 20 detections per image)
    of ``detections`` (with ``keypoints``) on ``targets`` (with ``keypoints``), and of
    :func:`keypoint_baseline` in the same boxes: ``keypoint_map``, ``keypoint_map_50``,
    ``keypoint_map_75``, ``keypoint_map_<class>`` and the same prefixed ``baseline_``."""
    metrics = {}
    for prefix, dets in (("keypoint_", detections), ("baseline_keypoint_", keypoint_baseline(detections))):
        coco = evaluate_detections(dets, targets, "keypoints", max_detections=20, sigmas=KEYPOINT_SIGMAS)
        metrics.update({prefix + key: coco[key] for key in ("map", "map_50", "map_75")})
        metrics.update({f"{prefix}map_{CLASSES[label - 1]}": ap for label, ap in coco["per_class"].items()})
    return metrics


def train_keypoint_rcnn(model: nn.Module, device: torch.device, steps: int) -> dict[str, float]:
    """Start from the shipped ``mask_rcnn`` weights (checksum checked; only the keypoint head stays
    as initialised), ``steps`` batches of 8 of 8,000 scenes with keypoints (seed 0), AdamW lr 1e-3;
    box, mask and keypoint COCO metrics (and the baseline's keypoint AP) on the held-out scenes."""
    missing = model.load_state_dict(weights.load("mask_rcnn")["state_dict"], strict=False).missing_keys
    if not all(key.startswith("roi_heads.keypoint_head.") for key in missing):
        raise RuntimeError(f"mask_rcnn.pt does not fit this Keypoint R-CNN: {missing}")
    scenes = ShapesDataset(8000, seed=0, keypoints=True)
    loader = DataLoader(scenes, batch_size=8, shuffle=True, collate_fn=collate_detection)
    fit(model, loader, epochs=10, max_steps=steps, lr=1e-3, device=device)
    images, targets = held_out_detection(200, keypoints=True)
    detections = detect(model, images, device=device)
    metrics = {}
    for prefix, iou_type in (("box_", "bbox"), ("mask_", "segm")):
        coco = evaluate_detections(detections, targets, iou_type=iou_type)
        metrics.update({prefix + key: coco[key] for key in ("map", "map_50", "map_75")})
    return {**metrics, **keypoint_metrics(detections, targets)}


# ---------------------------------------------------------------------------------------------
# 05 feature pyramid: Faster R-CNN with and without FPN on scenes of tiny and large objects

FPN_STEPS = 1000  # batches of 8 scenes, the same for both models
SIZE_RANGE_SCENES = {"radius_range": (3.0, 24.0), "max_objects": 4}  # ShapesDataset options
# object areas (visible pixels) at 64 x 64: small under 12 x 12, large from 24 x 24 (COCO's are
# 32^2 and 96^2 on photos ten times larger)
SIZE_RANGE_AREAS = {"small": (0.0, 144.0), "medium": (144.0, 576.0), "large": (576.0, 1e10)}


def _evaluate_by_size(model: nn.Module, device: torch.device) -> dict[str, float]:
    """COCO mAP, mAP50 and AP by object size (``SIZE_RANGE_AREAS``) of a detector on 200 held-out
    size-range scenes (``held_out_detection(200, **SIZE_RANGE_SCENES)``)."""
    images, targets = held_out_detection(200, **SIZE_RANGE_SCENES)
    coco = evaluate_detections(detect(model, images, device=device), targets, area_ranges=SIZE_RANGE_AREAS)
    return {key: coco[key] for key in ("map", "map_50", "map_small", "map_medium", "map_large")}


def train_size_range_detector(model: nn.Module, device: torch.device) -> dict[str, float]:
    """``FPN_STEPS`` batches of 8 of the 8,000 size-range scenes (seed 0), AdamW lr 1e-3; then
    :func:`_evaluate_by_size`."""
    scenes = ShapesDataset(8000, seed=0, **SIZE_RANGE_SCENES)
    loader = DataLoader(scenes, batch_size=8, shuffle=True, collate_fn=collate_detection)
    fit(model, loader, epochs=10, max_steps=FPN_STEPS, lr=1e-3, device=device)
    return _evaluate_by_size(model, device)


# ---------------------------------------------------------------------------------------------
# The table: every shipped checkpoint, by the notebook that loads it

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in [
    # 00 tasks and data; 09 and 11 explain this classifier
    Recipe("shapes_cnn", partial(SmallCNN, num_classes=3, width=16), train_classifier,
           "SmallCNN (GAP + FC) classifying single-object 64x64 scenes"),
    Recipe("shapes_cnn_random_labels", partial(SmallCNN, num_classes=3, width=16), fit_random_labels,
           "the shapes_cnn architecture on 256 of its scenes with shuffled labels, 160 steps (memorised)"),
    # 01 attention and ViT
    Recipe("vit", partial(ViT, image_size=64, patch_size=8, num_classes=3, dim=64, depth=4, heads=4),
           train_vit,
           "ViT (8x8 patches, CLS, 4 Pre-LN blocks, width 64, 4 heads), 1500 steps"),
    Recipe("vit_preln", partial(ViT, norm_first=True, **DEEP_VIT), partial(train_twins, name="vit_preln"),
           "deep ViT (12 Pre-LN blocks, 16x16 patches), lr 1e-3, no warm-up, 400 steps x 3 seeds"),
    Recipe("vit_postln", partial(ViT, norm_first=False, **DEEP_VIT), partial(train_twins, name="vit_postln"),
           "the same ViT with Post-LN blocks, same lr, no warm-up, 400 steps x 3 seeds"),
    Recipe("vit_postln_warmup", partial(ViT, norm_first=False, **DEEP_VIT),
           partial(train_twins, name="vit_postln_warmup"),
           "the Post-LN ViT with 100 steps of linear lr warm-up, 400 steps x 3 seeds"),
    Recipe("resnet", partial(ResNet, width=8, blocks=9, residual=True), partial(train_twins, name="resnet"),
           "ResNet-56 (3 x 9 basic blocks, width 8), 400 steps x 3 seeds"),
    Recipe("resnet_plain", partial(ResNet, width=8, blocks=9, residual=False),
           partial(train_twins, name="resnet_plain"),
           "its plain twin (no shortcuts), same 400 steps x 3 seeds"),
    Recipe("resnet_plain20", partial(ResNet, width=8, blocks=3, residual=False),
           partial(train_twins, name="resnet_plain20"),
           "a shallower plain net, plain-20 (3 x 3 blocks, width 8), same 400 steps x 3 seeds"),
    # 03 semantic segmentation
    Recipe("unet", partial(UNet, width=16, skip=True), train_segmenter,
           "U-Net (depth 3, width 16) with skip connections, 500 steps"),
    Recipe("unet_noskip", partial(UNet, width=16, skip=False), train_segmenter,
           "the same U-Net without skip connections, same 500 steps"),
    Recipe("fcn", partial(FCN, width=16), train_segmenter,
           "FCN: features at 1/8, transposed conv x8 initialised bilinear, 500 steps"),
    Recipe("patch_classifier", partial(PatchClassifier, width=16), train_segmenter,
           "15x15 sliding-window patch classifier (unpadded convs), 500 steps"),
    Recipe("unet_curves", partial(UNet, width=16, skip=False), train_unet_curves,
           "the U-Net without skips trained 3x longer (1500 steps); its json: held-out mIoU and boundary F "
           "every 100 steps of it and of the U-Net with skips, trained alike"),
    Recipe("fcn_dilated", partial(DilatedFCN, width=16, dilations=(2, 2, 2, 2, 2, 2)), train_segmenter,
           "dilated FCN, six 3x3 layers of rate 2 (receptive field 25), width 16, 500 steps"),
    Recipe("fcn_dilated_hybrid", partial(DilatedFCN, width=16, dilations=(1, 2, 3, 1, 2, 3)), train_segmenter,
           "dilated FCN, rates 1,2,3,1,2,3 (receptive field 25), width 16, 500 steps"),
    # 04 detection basics
    Recipe("single_object", partial(SingleObjectDetector, num_classes=3, image_size=64, width=16),
           train_single_object, "SingleObjectDetector: class + box of one-object 64x64 scenes"),
    # 05 the R-CNN family (batches of 8 scenes)
    Recipe("rcnn", partial(RCNN, num_classes=3, width=8), partial(train_detector, steps=600),
           "R-CNN: 2,055 windows warped to 32x32, CNN per region, 600 steps of 8 scenes"),
    Recipe("fast_rcnn", partial(build_fast_rcnn, num_classes=3, width=8), partial(train_detector, steps=1000),
           "Fast R-CNN: the same windows, RoI Align 7x7 on the shared feature map, 1000 steps"),
    Recipe("faster_rcnn", partial(build_faster_rcnn, num_classes=3, width=8),
           partial(train_detector, steps=1500),
           "Faster R-CNN: RPN (2 scales x 3 ratios) + RoI Align heads, 1500 steps"),
    # 05 feature pyramid: scenes of radii 3-24 px (SIZE_RANGE_SCENES), the same 1000 steps of 8
    Recipe("faster_rcnn_single_sizes",
           partial(build_fpn_faster_rcnn, num_classes=3, width=8, strides=(8,), scales=((8.0, 16.0, 32.0),)),
           train_size_range_detector,
           "Faster R-CNN, one level (stride 8, anchors 8, 16, 32), on scenes of radii 3-24 px, "
           "1000 steps of 8"),
    Recipe("faster_rcnn_fpn", partial(build_fpn_faster_rcnn, num_classes=3, width=8),
           train_size_range_detector,
           "Faster R-CNN on an FPN (strides 4 and 8, anchors 8, 16 | 16, 32), same scenes, same 1000 steps"),
    # 06 YOLO
    Recipe("yolo", partial(YOLO, num_classes=3, grid_size=8, boxes_per_cell=2, width=16), train_yolo,
           "YOLO v1 (S=8, B=2, width 16): BCE confidence with lambda_noobj, 2000 steps of 32"),
    Recipe("yolo_focal", partial(YOLO, num_classes=3, grid_size=8, boxes_per_cell=2, width=16, focal=True),
           train_yolo, "the same YOLO with focal-loss confidence (alpha 0.25, gamma 2), same 2000 steps"),
    Recipe("yolo_width8", partial(YOLO, num_classes=3, grid_size=8, boxes_per_cell=2, width=8), train_yolo,
           "the same YOLO on Faster R-CNN's width-8 backbone, same 2000 steps"),
    # 06 anchors: three single-stage detectors, the same budget on elongated scenes
    Recipe("yolo_elongated", partial(YOLO, num_classes=3, grid_size=8, boxes_per_cell=2, width=16),
           train_on_elongated, "YOLO v1 (S=8, B=2, width 16) on elongated scenes (aspect 1-3), 1000 steps"),
    Recipe("yolo_anchors", partial(yolo_with_priors, num_classes=3, grid_size=8, width=16),
           train_on_elongated,
           "YOLO with 5 k-means priors (v2 style, S=8, width 16), the same 1000 steps of 32 elongated"),
    Recipe("ssd", partial(SSD, num_classes=3, width=16), train_on_elongated,
           "SSD-style head on strides 8, 16, 32 (5 default boxes per cell, width 16), the same 1000 steps"),
    # the same three with training seed 1 (weights and batch order): the spread between runs
    Recipe("yolo_elongated_seed1", partial(YOLO, num_classes=3, grid_size=8, boxes_per_cell=2, width=16),
           train_on_elongated, "yolo_elongated with training seed 1", seed=1),
    Recipe("yolo_anchors_seed1", partial(yolo_with_priors, num_classes=3, grid_size=8, width=16),
           train_on_elongated, "yolo_anchors with training seed 1", seed=1),
    Recipe("ssd_seed1", partial(SSD, num_classes=3, width=16), train_on_elongated, "ssd with training seed 1",
           seed=1),
    # 07 DETR
    Recipe("detr", partial(DETR, num_classes=3, **SMALL_DETR), train_detr,
           "DETR: width-16 CNN, 3+3 transformer layers (d 128), 10 queries, aux losses"),
    # 08 Mask R-CNN: the shipped faster_rcnn plus a mask head, 600 more steps of 8 scenes
    Recipe("mask_rcnn", partial(build_mask_rcnn, num_classes=3, width=8),
           partial(train_detector, steps=600, start_from="faster_rcnn", iou_types=("bbox", "segm")),
           "Mask R-CNN: faster_rcnn.pt + a mask head on RoI Align 14x14, 600 more steps"),
    Recipe("mask_rcnn_roipool", partial(build_mask_rcnn, num_classes=3, width=8, mask_pooler="pool"),
           partial(train_detector, steps=600, start_from="faster_rcnn", iou_types=("bbox", "segm")),
           "the same Mask R-CNN with RoI Pool 14x14 for the masks, same 600 steps"),
    Recipe("mask_rcnn_softmax", partial(build_mask_rcnn, num_classes=3, width=8, mask_loss_type="softmax"),
           partial(train_detector, steps=600, start_from="faster_rcnn", iou_types=("bbox", "segm")),
           "the same Mask R-CNN with a per-pixel softmax over classes as mask loss, same 600 steps"),
    # 08 keypoints: the shipped mask_rcnn plus a keypoint head, 600 more steps of 8 scenes
    Recipe("keypoint_rcnn", partial(build_keypoint_rcnn, num_classes=3, width=8),
           partial(train_keypoint_rcnn, steps=600),
           "Keypoint R-CNN: mask_rcnn.pt + a keypoint head (5 maps of 56x56, RoI Align 14x14), "
           "600 more steps"),
    # 08 panoptic segmentation: the semantic model of stuff scenes (things come from mask_rcnn)
    Recipe("unet_stuff", partial(UNet, num_classes=STUFF_SEGMENTER_CLASSES, width=16), train_stuff_segmenter,
           "U-Net (depth 3, width 16) on stuff scenes: 3 things + sky + ground, 500 steps"),
]}


# ---------------------------------------------------------------------------------------------
# Your own data: `python -m cvlib.train NAME --data coco:ANNOTATIONS.json:IMAGE_DIR` builds the
# course's architecture of NAME with the class count of the data (and optionally a torchvision
# backbone); cvlib.train.main trains it with fit's checkpoints, resume, AMP and torchrun.


@dataclass(frozen=True)
class DataRecipe:
    """A model for any dataset: ``build(num_classes, backbone)`` (``backbone`` a module or
    ``None`` for the course's own); ``task`` is ``"detection"`` (the model returns its losses,
    batches of ``collate_detection``) or ``"segmentation"`` (``num_classes + 1`` per-pixel scores,
    0 = background, cross-entropy against ``target["semantic"]``)."""

    build: Callable[[int, nn.Module | None], nn.Module]
    task: str
    accepts_backbone: bool = True


DATA_RECIPES: dict[str, DataRecipe] = {  # build(c, b): c object classes, backbone b
    "faster_rcnn": DataRecipe(lambda c, b: build_faster_rcnn(c, width=8, backbone=b), "detection"),
    "mask_rcnn": DataRecipe(lambda c, b: build_mask_rcnn(c, width=8, backbone=b), "detection"),
    "yolo": DataRecipe(lambda c, b: YOLO(c, grid_size=8, boxes_per_cell=2, width=16, backbone=b),
                       "detection"),
    "detr": DataRecipe(lambda c, b: DETR(c, backbone=b, **SMALL_DETR), "detection"),
    "unet": DataRecipe(lambda c, b: UNet(c + 1, depth=3, width=16), "segmentation",
                       accepts_backbone=False),  # its skips need every scale of its own encoder
    "fcn": DataRecipe(lambda c, b: FCN(c + 1, width=16, backbone=b), "segmentation"),
}


def build_for_data(name: str, num_classes: int, backbone: str | None = None,
                   pretrained: bool = True) -> nn.Module:
    """The untrained model ``name`` (a key of :data:`DATA_RECIPES`) for ``num_classes`` object
    classes, on the course's backbone or on torchvision's ``backbone`` (``resnet18``,
    ``resnet50``, ``mobilenet_v3``; ImageNet weights when ``pretrained`` and they can be had)."""
    if name not in DATA_RECIPES:
        raise ValueError(f"name must be one of {sorted(DATA_RECIPES)} to train on a dataset, got {name!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    recipe = DATA_RECIPES[name]
    if backbone is not None and not recipe.accepts_backbone:
        accepting = sorted(k for k, r in DATA_RECIPES.items() if r.accepts_backbone)
        raise ValueError(f"{name} has no backbone option (it accepts none); these do: {accepting}")
    return recipe.build(num_classes, torchvision_backbone(backbone, pretrained) if backbone else None)
