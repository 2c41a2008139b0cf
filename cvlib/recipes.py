"""Named training recipes: the models that the notebooks load instead of training them.

A recipe is the architecture (``build``) and how to train it (``train``); both live here so a
checkpoint is always rebuilt with the architecture it was trained with. Each family adds its
recipes below its own heading. ``python -m cvlib.train NAME`` runs one and saves
``data/weights/NAME.pt`` with its checksum and provenance (``cvlib.weights``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["Recipe", "RECIPES", "register", "run"]


@dataclass(frozen=True)
class Recipe:
    """``build()`` makes the untrained model; ``train(model, device)`` trains it in place and
    returns the held-out metrics recorded with the checkpoint."""

    name: str
    build: Callable[[], nn.Module]
    train: Callable[[nn.Module, torch.device], dict[str, float]]
    description: str
    seed: int = 0


RECIPES: dict[str, Recipe] = {}


def register(name: str, build: Callable[[], nn.Module], description: str, seed: int = 0):
    """Decorator: register ``train(model, device) -> metrics`` as the recipe ``name``."""

    def decorator(train):
        if name in RECIPES:
            raise ValueError(f"recipe {name!r} is registered twice")
        RECIPES[name] = Recipe(name, build, train, description, seed)
        return train

    return decorator


def run(name: str, device: str | torch.device | None = None, command: str | None = None) -> Path:
    """Train recipe ``name`` from scratch and save its checkpoint; return the file's path."""
    from cvlib import train as training
    from cvlib import weights

    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    recipe = RECIPES[name]
    device = torch.device(device) if device is not None else training.default_device()
    training.seed_everything(recipe.seed)
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


# ---------------------------------------------------------------------------------------------
# 00 tasks and data: a small GAP + FC classifier of single-object scenes


def _small_cnn() -> nn.Module:
    from cvlib.models.blocks import SmallCNN

    return SmallCNN(num_classes=3, width=16)


@register("shapes_cnn", _small_cnn, "SmallCNN (GAP + FC) classifying single-object 64x64 scenes")
def _train_shapes_cnn(model: nn.Module, device: torch.device) -> dict[str, float]:
    from torch.utils.data import DataLoader

    from cvlib.data import ShapesClassification, collate_classification
    from cvlib.train import fit

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
    from torch.utils.data import DataLoader, TensorDataset

    from cvlib.data import ShapesClassification, collate_classification, held_out_classification
    from cvlib.metrics import accuracy
    from cvlib.train import fit, predict

    images, labels = collate_classification(list(ShapesClassification(num_scenes, seed=0)))
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    loader = DataLoader(TensorDataset(images, shuffled), batch_size=64, shuffle=True)
    fit(model, loader, loss_fn=nn.functional.cross_entropy, epochs=epochs, lr=1e-3, device=device, seed=seed)
    unseen, true_labels, _ = held_out_classification(held_out)
    return {"train_accuracy_shuffled_labels": accuracy(predict(model, images, device=device), shuffled),
            "val_accuracy_true_labels": accuracy(predict(model, unseen, device=device), true_labels)}


@register("shapes_cnn_random_labels", _small_cnn,
          "the shapes_cnn architecture on 256 of its scenes with shuffled labels, 160 steps (memorised)")
def _train_shapes_cnn_random_labels(model: nn.Module, device: torch.device) -> dict[str, float]:
    return fit_random_labels(model, device)


# ---------------------------------------------------------------------------------------------
# 04 detection basics: single-object detection (classification + localization)


def _single_object() -> nn.Module:
    from cvlib.models.single import SingleObjectDetector

    return SingleObjectDetector(num_classes=3, image_size=64, width=16)


@register("single_object", _single_object, "SingleObjectDetector: class + box of one-object 64x64 scenes")
def _train_single_object(model: nn.Module, device: torch.device) -> dict[str, float]:
    from functools import partial

    from torch.utils.data import DataLoader

    from cvlib.data import SingleObjectDataset, collate_single_object
    from cvlib.models.single import evaluate
    from cvlib.train import fit

    loader = DataLoader(SingleObjectDataset(3000, seed=0), batch_size=64, shuffle=True,
                        collate_fn=collate_single_object)
    fit(model, loader, loss_fn=partial(model.loss, box_weight=10.0), epochs=10, lr=1e-3, device=device)
    return evaluate(model, *collate_single_object(list(SingleObjectDataset(500, seed=1))))


# ---------------------------------------------------------------------------------------------
# 03 semantic segmentation: U-Net with and without skips, FCN, the sliding-window patch classifier

SEGMENTATION_STEPS = 500  # the same budget for every segmenter: 500 batches of 32 scenes


def _train_segmenter(model: nn.Module, device: torch.device) -> dict[str, float]:
    from torch.utils.data import DataLoader

    from cvlib.data import ShapesDataset, collate_segmentation
    from cvlib.train import fit

    scenes = ShapesDataset(4000, seed=0)
    loader = DataLoader(scenes, batch_size=32, shuffle=True, collate_fn=collate_segmentation)
    fit(model, loader, loss_fn=nn.functional.cross_entropy, epochs=10, max_steps=SEGMENTATION_STEPS,
        lr=3e-3, device=device)
    return _segmentation_metrics(model, device, num_scenes=200)


def _segmentation_metrics(model: nn.Module, device: torch.device, num_scenes: int) -> dict[str, float]:
    """mIoU, pixel accuracy and boundary F (tolerance 2) on the first ``num_scenes`` held-out
    scenes (``ShapesDataset(num_scenes, seed=1)``), and the boundary F at tolerance 0."""
    from cvlib.data import ShapesDataset, collate_segmentation
    from cvlib.metrics import boundary_f_score, confusion_matrix, mean_iou, pixel_accuracy
    from cvlib.train import predict

    images, semantic = collate_segmentation(list(ShapesDataset(num_scenes, seed=1)))
    pred = predict(model, images, batch_size=50, device=device).argmax(1)
    confusion = confusion_matrix(pred, semantic, num_classes=4)
    return {"miou": mean_iou(confusion), "pixel_accuracy": pixel_accuracy(confusion),
            "boundary_f": boundary_f_score(pred, semantic),
            "boundary_f0": boundary_f_score(pred, semantic, tolerance=0)}


def _segmenter(name: str):
    def build() -> nn.Module:
        from cvlib.models.fcn import FCN, PatchClassifier
        from cvlib.models.unet import UNet

        return {"unet": lambda: UNet(width=16, skip=True), "unet_noskip": lambda: UNet(width=16, skip=False),
                "fcn": lambda: FCN(width=16), "patch_classifier": lambda: PatchClassifier(width=16)}[name]()

    return build


for _name, _description in [
    ("unet", "U-Net (depth 3, width 16) with skip connections, 500 steps"),
    ("unet_noskip", "the same U-Net without skip connections, same 500 steps"),
    ("fcn", "FCN: features at 1/8, transposed conv x8 initialised bilinear, 500 steps"),
    ("patch_classifier", "15x15 sliding-window patch classifier (unpadded convs), 500 steps"),
]:
    register(_name, _segmenter(_name), _description)(_train_segmenter)

UNET_CURVE_STEPS = 1500  # 3x the segmentation budget, for the U-Net with and without skips
UNET_CURVE_EVERY = 100  # a held-out evaluation every 100 steps
UNET_CURVE_SCENES = 100  # on the first 100 held-out scenes


def unet_curves() -> dict:
    """Held-out quality of both U-Nets along training (``data/weights/unet_curves.json``,
    checksummed): ``{"step": [...], "unet": {"miou": [...], "boundary_f0": [...], ...},
    "unet_noskip": {...}}``, one value per evaluation step."""
    from cvlib import weights

    return weights.load_json("unet_curves")


def _segmentation_batches(seed: int):
    """Endless shuffled batches of 32 of the 4,000 training scenes, epoch after epoch."""
    from torch.utils.data import DataLoader

    from cvlib.data import ShapesDataset, collate_segmentation

    loader = DataLoader(ShapesDataset(4000, seed=0), batch_size=32, shuffle=True,
                        collate_fn=collate_segmentation, generator=torch.Generator().manual_seed(seed))
    while True:
        yield from loader


@register("unet_curves", _segmenter("unet_noskip"),
          "the U-Net without skips trained 3x longer (1500 steps); its json: held-out mIoU and boundary F "
          "every 100 steps of it and of the U-Net with skips, trained alike")
def _train_unet_curves(model: nn.Module, device: torch.device) -> dict[str, float]:
    """Train the U-Net without skips (``model``, saved) and a U-Net with skips (seed 0 too) for
    ``UNET_CURVE_STEPS`` steps of the segmentation recipe (AdamW, lr 3e-3, batches of 32),
    evaluating both every ``UNET_CURVE_EVERY`` steps; write the curves to ``unet_curves.json``."""
    from itertools import islice

    from cvlib import weights
    from cvlib.train import fit, seed_everything

    steps = list(range(UNET_CURVE_EVERY, UNET_CURVE_STEPS + 1, UNET_CURVE_EVERY))
    curves = {"recipe": "unet_curves", "step": steps, "held_out_scenes": UNET_CURVE_SCENES}
    for name in ("unet_noskip", "unet"):
        net = model  # trained in place: the checkpoint is the U-Net without skips
        if name == "unet":  # a fresh U-Net with skips, initialised like the shipped one
            seed_everything(0)
            net = _segmenter("unet")()
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
# 05 R-CNN family: R-CNN, Fast R-CNN and Faster R-CNN on 64x64 scenes (width-8 backbone)

RCNN_FAMILY_STEPS = {"rcnn": 600, "fast_rcnn": 1000, "faster_rcnn": 1500}  # batches of 8 scenes


def _rcnn_family(name: str):
    def build() -> nn.Module:
        from cvlib.models.rcnn import RCNN, build_fast_rcnn, build_faster_rcnn

        builders = {"rcnn": RCNN, "fast_rcnn": build_fast_rcnn, "faster_rcnn": build_faster_rcnn}
        return builders[name](num_classes=3, width=8)

    return build


def _evaluate_detector(model: nn.Module, device: torch.device, iou_types=("bbox",)) -> dict[str, float]:
    """COCO mAP, mAP50 and mAP75 of a detector on ``held_out_detection(200)``, the held-out
    scenes of every detection recipe. With ``iou_types=("bbox", "segm")`` (Mask R-CNN) both box
    and mask metrics, prefixed ``box_`` and ``mask_``."""
    from cvlib.data import held_out_detection
    from cvlib.metrics import evaluate_detections
    from cvlib.train import detect

    images, targets = held_out_detection(200)
    detections = detect(model, images, device=device)
    metrics = {}
    for iou_type in iou_types:
        coco = evaluate_detections(detections, targets, iou_type=iou_type)
        prefix = {"bbox": "box_", "segm": "mask_"}[iou_type] if len(iou_types) > 1 else ""
        metrics.update({prefix + key: coco[key] for key in ("map", "map_50", "map_75")})
    return metrics


def _train_rcnn_family(name: str):
    def train(model: nn.Module, device: torch.device) -> dict[str, float]:
        from torch.utils.data import DataLoader

        from cvlib.data import ShapesDataset, collate_detection
        from cvlib.train import fit

        scenes = ShapesDataset(8000, seed=0)
        loader = DataLoader(scenes, batch_size=8, shuffle=True, collate_fn=collate_detection)
        fit(model, loader, epochs=10, max_steps=RCNN_FAMILY_STEPS[name], lr=1e-3, device=device)
        return _evaluate_detector(model, device)

    return train


for _name, _description in [
    ("rcnn", "R-CNN: 2,055 windows warped to 32x32, CNN per region, 600 steps of 8 scenes"),
    ("fast_rcnn", "Fast R-CNN: the same windows, RoI Align 7x7 on the shared feature map, 1000 steps"),
    ("faster_rcnn", "Faster R-CNN: RPN (2 scales x 3 ratios) + RoI Align heads, 1500 steps"),
]:
    register(_name, _rcnn_family(_name), _description)(_train_rcnn_family(_name))


# ---------------------------------------------------------------------------------------------
# 06 YOLO: a single-stage detector (S = 8, B = 2), plain and focal confidence, width-16 and -8 backbones

YOLO_STEPS = 2000  # batches of 32 scenes, each scene seen once


def _yolo(focal: bool, width: int = 16):
    def build() -> nn.Module:
        from cvlib.models.yolo import YOLO

        return YOLO(num_classes=3, grid_size=8, boxes_per_cell=2, width=width, focal=focal)

    return build


def _train_yolo(model: nn.Module, device: torch.device) -> dict[str, float]:
    from torch.utils.data import DataLoader

    from cvlib.data import ShapesDataset, collate_detection
    from cvlib.train import fit

    scenes = ShapesDataset(YOLO_STEPS * 32, seed=0)
    loader = DataLoader(scenes, batch_size=32, shuffle=True, collate_fn=collate_detection)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=YOLO_STEPS)
    fit(model, loader, max_steps=YOLO_STEPS, optimizer=optimizer, scheduler=scheduler, device=device)
    return _evaluate_detector(model, device)


for _name, _focal, _width, _description in [
    ("yolo", False, 16, "YOLO v1 (S=8, B=2, width 16): BCE confidence with lambda_noobj, 2000 steps of 32"),
    ("yolo_focal", True, 16,
     "the same YOLO with focal-loss confidence (alpha 0.25, gamma 2), same 2000 steps"),
    ("yolo_width8", False, 8, "the same YOLO on Faster R-CNN's width-8 backbone, same 2000 steps"),
]:
    register(_name, _yolo(_focal, _width), _description)(_train_yolo)


# ---------------------------------------------------------------------------------------------
# 08 Mask R-CNN: the shipped Faster R-CNN plus a mask head, with RoI Align or RoI Pool masks

MASK_RCNN_STEPS = 600  # batches of 8 scenes, after the faster_rcnn recipe's 1500


def _mask_rcnn(mask_pooler: str, mask_loss: str = "sigmoid"):
    def build() -> nn.Module:
        from cvlib.models.mask_rcnn import build_mask_rcnn

        return build_mask_rcnn(num_classes=3, width=8, mask_pooler=mask_pooler, mask_loss=mask_loss)

    return build


def _train_mask_rcnn(model: nn.Module, device: torch.device) -> dict[str, float]:
    """Start from the shipped ``faster_rcnn`` weights (its checksum is checked), train all five
    losses for ``MASK_RCNN_STEPS``; box and mask COCO metrics on the held-out scenes."""
    from torch.utils.data import DataLoader

    from cvlib import weights
    from cvlib.data import ShapesDataset, collate_detection
    from cvlib.train import fit

    missing = model.load_state_dict(weights.load("faster_rcnn")["state_dict"], strict=False).missing_keys
    if not all(key.startswith("roi_heads.mask_head.") for key in missing):
        raise RuntimeError(f"faster_rcnn.pt does not fit this Mask R-CNN: {missing}")
    loader = DataLoader(ShapesDataset(8000, seed=0), batch_size=8, shuffle=True, collate_fn=collate_detection)
    fit(model, loader, epochs=10, max_steps=MASK_RCNN_STEPS, lr=1e-3, device=device)
    return _evaluate_detector(model, device, iou_types=("bbox", "segm"))


for _name, _pooler, _loss, _description in [
    ("mask_rcnn", "align", "sigmoid",
     "Mask R-CNN: faster_rcnn.pt + a mask head on RoI Align 14x14, 600 more steps"),
    ("mask_rcnn_roipool", "pool", "sigmoid",
     "the same Mask R-CNN with RoI Pool 14x14 for the masks, same 600 steps"),
    ("mask_rcnn_softmax", "align", "softmax",
     "the same Mask R-CNN with a per-pixel softmax over classes as mask loss, same 600 steps"),
]:
    register(_name, _mask_rcnn(_pooler, _loss), _description)(_train_mask_rcnn)


# ---------------------------------------------------------------------------------------------
# 01 attention and ViT: a ViT of single-object scenes; Pre-LN vs Post-LN and ResNet vs plain twins

VIT_STEPS = 1500  # batches of 64 single-object scenes
TWIN_STEPS = 400  # the same budget for both twins of a pair, each trained with seeds 0, 1 and 2
TWIN_SEEDS = (0, 1, 2)
TWIN_WARMUP = {"vit_postln_warmup": 100}  # steps of linear learning-rate warm-up; the others have none
TWIN_NAMES = ("vit_preln", "vit_postln", "vit_postln_warmup", "resnet", "resnet_plain")


def _classification_batches(num_images: int, seed: int):
    """Shuffled batches of 64 ``ShapesClassification`` scenes, made once (the dataset draws each
    scene on the fly) and reshuffled with ``seed``."""
    from torch.utils.data import DataLoader, TensorDataset

    from cvlib.data import ShapesClassification, collate_classification

    images, labels = collate_classification(list(ShapesClassification(num_images, seed=0)))
    return DataLoader(TensorDataset(images, labels), batch_size=64, shuffle=True,
                      generator=torch.Generator().manual_seed(seed))


def _val_accuracy(model: nn.Module, device: torch.device) -> float:
    """Accuracy on the 500 held-out classification scenes (``ShapesClassification(500, seed=1)``)."""
    from cvlib.data import held_out_classification
    from cvlib.metrics import accuracy
    from cvlib.train import predict

    images, labels, _ = held_out_classification(500)
    return accuracy(predict(model, images, device=device), labels)


def _vit() -> nn.Module:
    from cvlib.models.vit import ViT

    return ViT(image_size=64, patch_size=8, num_classes=3, dim=64, depth=4, heads=4)


@register("vit", _vit, "ViT (8x8 patches, CLS, 4 Pre-LN blocks, width 64, 4 heads), 1500 steps")
def _train_vit(model: nn.Module, device: torch.device) -> dict[str, float]:
    from cvlib.train import fit

    fit(model, _classification_batches(6000, seed=0), loss_fn=nn.functional.cross_entropy, epochs=100,
        max_steps=VIT_STEPS, lr=1e-3, weight_decay=0.05, device=device)
    return {"val_accuracy": _val_accuracy(model, device)}


def twin_history(name: str) -> dict:
    """The training losses of twin recipe ``name`` (``data/weights/NAME.json``, checksummed):
    ``{"seeds": [...], "loss": [[one value per step] per seed], "val_accuracy": [per seed]}``."""
    from cvlib import weights

    return weights.load_json(name)


def train_twin(name: str, seed: int, steps: int = TWIN_STEPS, device: str | torch.device = "cpu",
               model: nn.Module | None = None, progress: bool | None = None) -> tuple[nn.Module, list[float]]:
    """One seed of twin recipe ``name``: a fresh model (initialised after seeding with ``seed``,
    unless ``model`` is given) trained for ``steps`` steps of AdamW at lr 1e-3 (warm-up:
    ``TWIN_WARMUP``) on batches of 64 scenes shuffled with ``seed``. Returns the model and its
    loss at every step; the first ``steps`` losses of the stored curve are reproduced (notebook 01)."""
    from cvlib.train import fit, seed_everything

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


def _train_twin(name: str):
    """Train the recipe's model (seed 0) and two more of the same build (seeds 1, 2) with
    ``train_twin``; write every loss curve to ``data/weights/NAME.json``."""

    def train(model: nn.Module, device: torch.device) -> dict[str, float]:
        from cvlib import weights

        history = {"recipe": name, "steps": TWIN_STEPS, "seeds": list(TWIN_SEEDS), "loss": [],
                   "val_accuracy": []}
        for seed in TWIN_SEEDS:
            first = seed == TWIN_SEEDS[0]  # seed 0 trains the recipe's model, the others a fresh twin
            model, losses = train_twin(name, seed, device=device, model=model if first else None)
            history["loss"].append([round(v, 4) for v in losses])
            history["val_accuracy"].append(round(_val_accuracy(model, device), 4))
        weights.save_json(name, history)
        last = [sum(losses[-50:]) / 50 for losses in history["loss"]]
        return {"val_accuracy": history["val_accuracy"][0], "last50_loss_seed0": last[0],
                "last50_loss_mean_3_seeds": sum(last) / len(last)}

    return train


def _twin(name: str):
    def build() -> nn.Module:
        from cvlib.models.resnet import ResNet
        from cvlib.models.vit import ViT

        deep_vit = {"image_size": 64, "patch_size": 16, "dim": 64, "depth": 12, "heads": 4}
        return {"vit_preln": lambda: ViT(norm_first=True, **deep_vit),
                "vit_postln": lambda: ViT(norm_first=False, **deep_vit),
                "vit_postln_warmup": lambda: ViT(norm_first=False, **deep_vit),
                "resnet": lambda: ResNet(width=8, blocks=9, residual=True),
                "resnet_plain": lambda: ResNet(width=8, blocks=9, residual=False)}[name]()

    return build


for _name, _description in [
    ("vit_preln", "deep ViT (12 Pre-LN blocks, 16x16 patches), lr 1e-3, no warm-up, 400 steps x 3 seeds"),
    ("vit_postln", "the same ViT with Post-LN blocks, same lr, no warm-up, 400 steps x 3 seeds"),
    ("vit_postln_warmup", "the Post-LN ViT with 100 steps of linear lr warm-up, 400 steps x 3 seeds"),
    ("resnet", "ResNet-56 (3 x 9 basic blocks, width 8), 400 steps x 3 seeds"),
    ("resnet_plain", "its plain twin (no shortcuts), same 400 steps x 3 seeds"),
]:
    register(_name, _twin(_name), _description)(_train_twin(_name))


# ---------------------------------------------------------------------------------------------
# 07 DETR: set prediction with a transformer, Hungarian matching, no anchors, no NMS

DETR_STEPS = 4000  # batches of 32 scenes; the learning rate drops 10x for the last quarter
DETR_TIME_LIMIT = 45 * 60  # seconds: a safety stop on a slow, shared CPU


def _detr() -> nn.Module:
    return _detr_for_data(num_classes=3, backbone=None)


@register("detr", _detr, "DETR: width-16 CNN, 3+3 transformer layers (d 128), 10 queries, aux losses")
def _train_detr(model: nn.Module, device: torch.device) -> dict[str, float]:
    from torch.utils.data import DataLoader

    from cvlib.data import ShapesDataset, collate_detection
    from cvlib.train import fit

    scenes = ShapesDataset(200_000, seed=0)
    loader = DataLoader(scenes, batch_size=32, shuffle=True, collate_fn=collate_detection)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[DETR_STEPS * 3 // 4], gamma=0.1)
    history = fit(model, loader, max_steps=DETR_STEPS, time_limit=DETR_TIME_LIMIT, optimizer=optimizer,
                  scheduler=scheduler, grad_clip=0.1, device=device)
    return {**_evaluate_detector(model, device), "steps": history["step"][-1]}


# ---------------------------------------------------------------------------------------------
# 03 dilated convolution (equal rates vs hybrid rates) and 08 the stuff segmenter of panoptic
# segmentation: the segmentation recipe and budget (SEGMENTATION_STEPS) of section 03

DILATIONS = {"fcn_dilated": (2, 2, 2, 2, 2, 2),  # equal rates: every tap on the even lattice
             "fcn_dilated_hybrid": (1, 2, 3, 1, 2, 3)}  # hybrid rates: the same receptive field, no holes


def _dilated(name: str):
    def build() -> nn.Module:
        from cvlib.models.fcn import DilatedFCN

        return DilatedFCN(width=16, dilations=DILATIONS[name])

    return build


for _name, _description in [
    ("fcn_dilated", "dilated FCN, six 3x3 layers of rate 2 (receptive field 25), width 16, 500 steps"),
    ("fcn_dilated_hybrid", "dilated FCN, rates 1,2,3,1,2,3 (receptive field 25), width 16, 500 steps"),
]:
    register(_name, _dilated(_name), _description)(_train_segmenter)

STUFF_SEGMENTER_CLASSES = 6  # 0 (unused in stuff scenes), 3 things, sky and ground


def _segmenter_of_stuff() -> nn.Module:
    from cvlib.models.unet import UNet

    return UNet(num_classes=STUFF_SEGMENTER_CLASSES, width=16)


@register("unet_stuff", _segmenter_of_stuff,
          "U-Net (depth 3, width 16) on stuff scenes: 3 things + sky + ground, 500 steps")
def _train_unet_stuff(model: nn.Module, device: torch.device) -> dict[str, float]:
    """The segmentation recipe on ``ShapesDataset(4000, seed=0, stuff=True)``; mIoU on the first
    200 held-out stuff scenes (over the classes true or predicted there)."""
    from torch.utils.data import DataLoader

    from cvlib.data import ShapesDataset, collate_segmentation
    from cvlib.metrics import confusion_matrix, mean_iou
    from cvlib.train import fit, predict

    scenes = ShapesDataset(4000, seed=0, stuff=True)
    loader = DataLoader(scenes, batch_size=32, shuffle=True, collate_fn=collate_segmentation)
    fit(model, loader, loss_fn=nn.functional.cross_entropy, epochs=10, max_steps=SEGMENTATION_STEPS,
        lr=3e-3, device=device)
    images, semantic = collate_segmentation(list(ShapesDataset(200, seed=1, stuff=True)))
    pred = predict(model, images, batch_size=50, device=device).argmax(1)
    confusion = confusion_matrix(pred, semantic, num_classes=STUFF_SEGMENTER_CLASSES)
    return {"miou": mean_iou(confusion)}


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


def _faster_rcnn(num_classes: int, backbone: nn.Module | None) -> nn.Module:
    from cvlib.models.rcnn import build_faster_rcnn

    return build_faster_rcnn(num_classes, width=8, backbone=backbone)


def _mask_rcnn_for_data(num_classes: int, backbone: nn.Module | None) -> nn.Module:
    from cvlib.models.mask_rcnn import build_mask_rcnn

    return build_mask_rcnn(num_classes, width=8, backbone=backbone)


def _yolo_for_data(num_classes: int, backbone: nn.Module | None) -> nn.Module:
    from cvlib.models.yolo import YOLO

    return YOLO(num_classes, grid_size=8, boxes_per_cell=2, width=16, backbone=backbone)


def _detr_for_data(num_classes: int, backbone: nn.Module | None) -> nn.Module:
    from cvlib.models.detr import DETR

    return DETR(num_classes, width=16, d_model=128, num_heads=4, num_encoder_layers=3, num_decoder_layers=3,
                dim_feedforward=256, num_queries=10, backbone=backbone)


def _unet_for_data(num_classes: int, backbone: nn.Module | None) -> nn.Module:
    from cvlib.models.unet import UNet

    return UNet(num_classes + 1, depth=3, width=16)


def _fcn_for_data(num_classes: int, backbone: nn.Module | None) -> nn.Module:
    from cvlib.models.fcn import FCN

    return FCN(num_classes + 1, width=16, backbone=backbone)


DATA_RECIPES: dict[str, DataRecipe] = {
    "faster_rcnn": DataRecipe(_faster_rcnn, "detection"),
    "mask_rcnn": DataRecipe(_mask_rcnn_for_data, "detection"),
    "yolo": DataRecipe(_yolo_for_data, "detection"),
    "detr": DataRecipe(_detr_for_data, "detection"),
    "unet": DataRecipe(_unet_for_data, "segmentation", accepts_backbone=False),  # skips need every scale
    "fcn": DataRecipe(_fcn_for_data, "segmentation"),
}


def build_for_data(name: str, num_classes: int, backbone: str | None = None,
                   pretrained: bool = True) -> nn.Module:
    """The untrained model ``name`` (a key of :data:`DATA_RECIPES`) for ``num_classes`` object
    classes, on the course's backbone or on torchvision's ``backbone`` (``resnet18``,
    ``resnet50``, ``mobilenet_v3``; ImageNet weights when ``pretrained`` and they can be had)."""
    from cvlib.models.backbones import torchvision_backbone

    if name not in DATA_RECIPES:
        raise ValueError(f"name must be one of {sorted(DATA_RECIPES)} to train on a dataset, got {name!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    recipe = DATA_RECIPES[name]
    if backbone is not None and not recipe.accepts_backbone:
        accepting = sorted(k for k, r in DATA_RECIPES.items() if r.accepts_backbone)
        raise ValueError(f"{name} has no backbone option (it accepts none); these do: {accepting}")
    return recipe.build(num_classes, torchvision_backbone(backbone, pretrained) if backbone else None)
